//! The archive's operations: submit (one unit of work: the entry or its new version, the audit
//! event and the outbox event together), query and get (through the read gate).

use chrono::NaiveDate;
use hie_access::domain::consent::DataCategory;
use hie_access::{AccessGate, Kept, PersonRead, Seen, Subject, UnitOfWork, require_patient_is_one_of};
use hie_core::context::{RequestContext, Role};
use hie_core::domain::OrganisationCode;
use hie_core::id::PersonId;
use hie_core::outbox::OutboxEvent;
use hie_core::page::{PageSize, PageToken, next_page_by};
use hie_core::vocabulary::{AuditAction, EventType};
use hie_core::{Error, time};
use hie_directory::DirectoryService;
use hie_population::PopulationService;
use hie_population::domain::{Lineage, PersonSelector};
use serde_json::json;

use super::{Entry, EntryDraft, EntryId, EntryType};
use crate::store::{RecordsStore, entry_page_key};

/// How often a submission is tried when a concurrent one of the same entry gets in the way.
const SUBMIT_ATTEMPTS: u32 = 3;

/// The roles whose systems write to the archive: those who care for the person, the public-health
/// officers who record immunisations, and administrators loading data in bulk.
const SUBMITTING_ROLES: [Role; 4] = [
    Role::Clinician,
    Role::Nurse,
    Role::PublicHealthOfficer,
    Role::Administrator,
];

/// A query of one person's entries.
#[derive(Debug, Clone)]
pub struct EntryQuery {
    pub person: PersonSelector,
    /// Every type when empty.
    pub types: Vec<EntryType>,
    pub recorded_from: Option<NaiveDate>,
    pub recorded_to: Option<NaiveDate>,
    pub page_size: PageSize,
    pub page_token: Option<PageToken>,
}

/// The resident health archive.
#[derive(Clone, Debug)]
pub struct RecordsService {
    store: RecordsStore,
    access: AccessGate,
    population: PopulationService,
    directory: DirectoryService,
}

impl RecordsService {
    pub fn new(
        database: hie_core::db::Database,
        access: AccessGate,
        population: PopulationService,
        directory: DirectoryService,
    ) -> RecordsService {
        RecordsService {
            store: RecordsStore::new(database),
            access,
            population,
            directory,
        }
    }

    /// Submits an entry: a new entry, a new version of a changed one, or (the same content again)
    /// nothing; `true` when something changed.
    pub async fn submit(&self, context: &RequestContext, draft: EntryDraft) -> Result<(Entry, bool), Error> {
        self.directory
            .require_active_organisation("source_organisation_code", &draft.source_organisation)
            .await?;
        let hash = draft.content_hash()?;
        let subject = Subject::new(AuditAction::SubmitHealthRecord, "health_record_entry");
        // The role is checked before the person is looked up: a refused caller learns nothing
        // about who is registered.
        let permitted = context.role_among(&SUBMITTING_ROLES, "submit to the health archive");
        self.access
            .audit()
            .write_retrying(context, subject, permitted, SUBMIT_ATTEMPTS, || {
                async |unit: &mut UnitOfWork| {
                    // Before any store write, so the unit's transaction has not begun.
                    let person = self.population.lineage(context, &draft.person).await?.person;
                    unit.concerns(Some(&person), None);
                    let existing = self
                        .store
                        .entry_by_source(unit, &draft.source_organisation, &draft.source_entry_id)
                        .await?;
                    if let Some(existing) = &existing
                        && existing.content_hash == hash
                        && existing.person_id == person
                    {
                        unit.concerns(None, Some(existing.id.as_str().to_owned()));
                        return Ok((existing.clone(), false));
                    }
                    let entry = Entry {
                        id: existing.as_ref().map_or_else(EntryId::generate, |e| e.id.clone()),
                        person_id: person.clone(),
                        source_organisation: draft.source_organisation.clone(),
                        source_entry_id: draft.source_entry_id.clone(),
                        recorded_on: draft.recorded_on,
                        version: existing.as_ref().map_or(1, |e| e.version + 1),
                        content_hash: hash.clone(),
                        sensitive_category: draft.payload.sensitive_category(),
                        payload: draft.payload.clone(),
                        submitted_at: time::now(),
                    };
                    self.store
                        .write_version(unit, &entry, existing.is_none(), &context.user_id)
                        .await?;
                    unit.concerns(None, Some(entry.id.as_str().to_owned()));
                    unit.emit(OutboxEvent::new(
                        EventType::HealthRecordSubmitted,
                        Some(&person),
                        Some(&entry.source_organisation),
                        &json!({
                            "entry_id": entry.id.as_str(),
                            "entry_type": entry.entry_type().code(),
                            "version": entry.version,
                            "recorded_on": entry.recorded_on.to_string(),
                            "source_entry_id": entry.source_entry_id,
                            // For subscribers' filters (a notifiable disease in a follow-up).
                            "diagnoses": entry.payload.diagnoses().iter().map(|c| c.as_str()).collect::<Vec<_>>(),
                        }),
                    ));
                    Ok((entry, true))
                }
            })
            .await
    }

    /// The person's entries (current versions) as the caller may see them, newest first; with
    /// the surviving person, the next page, and whether consent withheld any.
    pub async fn query(
        &self,
        context: &RequestContext,
        query: &EntryQuery,
    ) -> Result<(PersonId, Vec<Entry>, Option<PageToken>, bool), Error> {
        if let (Some(from), Some(to)) = (query.recorded_from, query.recorded_to)
            && from > to
        {
            return Err(Error::invalid(
                "recorded_to",
                format!("{to} is before recorded_from {from}"),
            ));
        }
        let lineage = self.population.lineage(context, &query.person).await?;
        require_patient_is_one_of(context, &lineage.members)?;
        let after = query.page_token.as_ref().map(PageToken::last_key);
        let size = query.page_size.get() as usize;
        let mut entries = self.store.query(&lineage.members, query, after, size + 1).await?;
        let next = next_page_by(&mut entries, query.page_size, entry_page_key);
        let seen = self
            .gate(context, AuditAction::QueryHealthRecords, &lineage, entries)
            .await?;
        let withheld = !seen.hidden.is_empty();
        Ok((lineage.person, seen.visible, next, withheld))
    }

    /// Every current entry of the person (the current version of each), for the patient summary,
    /// which reads them through the read gate itself: not gated or audited here.
    pub async fn all_current(&self, lineage: &Lineage) -> Result<Vec<Entry>, Error> {
        self.store.all_current(&lineage.members).await
    }

    /// One entry with every version, newest first. An entry the caller may not see answers as
    /// one that does not exist.
    pub async fn entry(&self, context: &RequestContext, id: &EntryId) -> Result<Vec<Entry>, Error> {
        let not_found = || Error::NotFound(format!("health record entry {} does not exist", id.as_str()));
        let versions = self.store.versions(id).await?;
        let Some(current) = versions.first() else {
            return Err(not_found());
        };
        let lineage = self
            .population
            .lineage(context, &PersonSelector::Id(current.person_id.clone()))
            .await?;
        require_patient_is_one_of(context, &lineage.members)?;
        let seen = self
            .gate(context, AuditAction::GetHealthRecord, &lineage, versions)
            .await?;
        if seen.visible.is_empty() {
            return Err(not_found());
        }
        Ok(seen.visible)
    }

    /// The read gate over entries of one person: each kept by its source organisation, with the
    /// sensitive category its content reveals.
    async fn gate(
        &self,
        context: &RequestContext,
        action: AuditAction,
        lineage: &Lineage,
        entries: Vec<Entry>,
    ) -> Result<Seen<Entry>, Error> {
        let items = entries.into_iter().map(Item::of_entry).collect();
        read_items(&self.access, &self.directory, context, action, lineage, items).await
    }
}

/// One thing of a person's clinical data, for [`read_items`]: who keeps it and the sensitive
/// category its own content reveals.
#[derive(Debug)]
pub struct Item<T> {
    pub item: T,
    pub kept_by: OrganisationCode,
    pub reveals: Option<DataCategory>,
}

impl<T> Item<T> {
    /// The same item, holding something else (a summary's sources of several kinds).
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Item<U> {
        Item {
            item: f(self.item),
            kept_by: self.kept_by,
            reveals: self.reveals,
        }
    }
}

impl Item<Entry> {
    /// An entry, kept by its source organisation.
    pub fn of_entry(entry: Entry) -> Item<Entry> {
        Item {
            kept_by: entry.source_organisation.clone(),
            reveals: entry.sensitive_category,
            item: entry,
        }
    }
}

/// The read gate over one person's clinical items, as every registry reads them: an item is
/// shown unless what it reveals (its own content, or else its keeping organisation's records, a
/// psychiatric hospital's for example) is a category the caller may not see.
pub async fn read_items<T>(
    access: &AccessGate,
    directory: &DirectoryService,
    context: &RequestContext,
    action: AuditAction,
    lineage: &Lineage,
    items: Vec<Item<T>>,
) -> Result<Seen<T>, Error> {
    let organisations: Vec<&OrganisationCode> = items.iter().map(|i| &i.kept_by).collect();
    let keepers = directory.sensitive_categories(&organisations).await?;
    let items = items
        .into_iter()
        .map(|i| Kept {
            sensitive: i.reveals.or_else(|| keepers.get(&i.kept_by).copied().flatten()),
            kept_by: i.kept_by,
            item: i.item,
        })
        .collect();
    access
        .read_one(PersonRead {
            context,
            action,
            person_id: &lineage.person,
            category: DataCategory::General,
            directives: Some(lineage.directives.clone()),
            items,
        })
        .await
}
