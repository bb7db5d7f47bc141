use std::collections::BTreeSet;
use std::sync::Arc;

use hie_access::domain::consent::DataCategory;
use hie_access::gate::Read;
use hie_access::{AccessGate, AuditEvent, Outcome};
use hie_core::context::RequestContext;
use hie_core::db::Database;
use hie_core::domain::{Identifier, IdentifierSystem, OrganisationCode};
use hie_core::page::{PageSize, PageToken, next_page};
use hie_core::{Error, time};
use hie_directory::DirectoryService;
use sqlx::AnyConnection;

use super::{
    CrossReference, MatchDecision, Matcher, Person, PersonId, SearchCriteria, SourceRecord,
    SourceRecordDraft, SourceRecordId, visibility,
};
use crate::store::{PopulationStore, ResolveBatcher};

/// What a registration did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistrationOutcome {
    CreatedPerson,
    JoinedPerson,
    UpdatedRecord,
}

/// The result of registering a source record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub person_id: PersonId,
    pub source_record_id: SourceRecordId,
    pub outcome: RegistrationOutcome,
}

/// The registry's operations: registration with matching (PIX feed), resolve (PIX query),
/// search (PDQ) and reads.
#[derive(Clone, Debug)]
pub struct PopulationService {
    store: PopulationStore,
    resolver: ResolveBatcher,
    directory: DirectoryService,
    access: AccessGate,
    matcher: Arc<dyn Matcher>,
}

impl PopulationService {
    pub fn new(
        database: Database,
        directory: DirectoryService,
        access: AccessGate,
        matcher: Arc<dyn Matcher>,
    ) -> PopulationService {
        let store = PopulationStore::new(database);
        PopulationService {
            resolver: ResolveBatcher::new(store.clone(), access.clone()),
            store,
            directory,
            access,
            matcher,
        }
    }

    /// Registers or updates one source record, in one transaction.
    /// The audit event of a registration is written in the same transaction; a registration
    /// that fails leaves an event of its own.
    pub async fn register(
        &self,
        context: &RequestContext,
        draft: &SourceRecordDraft,
    ) -> Result<Registration, Error> {
        let registered = async {
            self.directory
                .require_active_organisation("organisation_code", draft.organisation())
                .await?;
            let mut transaction = self.store.begin_write().await?;
            let registration = self.register_in(&mut transaction, draft).await?;
            hie_access::store::append_in(&mut transaction, &[registered_event(context, &registration)])
                .await?;
            transaction.commit().await?;
            Ok(registration)
        }
        .await;
        if let Err(error) = &registered {
            let event = AuditEvent::new(
                context,
                "population.register",
                None,
                "source_record",
                None,
                outcome_of(error),
            );
            self.access.audit().record(event).await?;
        }
        registered
    }

    /// Registers many records in one transaction: all of them or, on the first error, none. For
    /// bulk loads (migrations, the demo, benchmarks), where one transaction per record would be
    /// dominated by commits.
    pub async fn register_batch(
        &self,
        context: &RequestContext,
        drafts: &[SourceRecordDraft],
    ) -> Result<Vec<Registration>, Error> {
        let organisations: BTreeSet<&OrganisationCode> =
            drafts.iter().map(SourceRecordDraft::organisation).collect();
        for organisation in organisations {
            self.directory
                .require_active_organisation("organisation_code", organisation)
                .await?;
        }
        let mut transaction = self.store.begin_write().await?;
        let mut registrations = Vec::with_capacity(drafts.len());
        for draft in drafts {
            registrations.push(self.register_in(&mut transaction, draft).await?);
        }
        let events: Vec<AuditEvent> = registrations
            .iter()
            .map(|r| registered_event(context, r))
            .collect();
        hie_access::store::append_in(&mut transaction, &events).await?;
        transaction.commit().await?;
        Ok(registrations)
    }

    async fn register_in(
        &self,
        conn: &mut AnyConnection,
        draft: &SourceRecordDraft,
    ) -> Result<Registration, Error> {
        let keys = self.matcher.blocking_keys(draft);
        // Lock the record's own key and its blocking keys, in one global order so that two
        // registrations never wait on each other in a cycle.
        let mut locks: Vec<String> = keys.iter().map(|k| k.lock_name()).collect();
        locks.push(format!(
            "record|{}|{}",
            draft.organisation(),
            draft.local_patient_number().value()
        ));
        locks.sort();
        locks.dedup();
        self.store.lock(conn, &locks).await?;

        let existing = self
            .store
            .source_record_key(conn, draft.organisation(), draft.local_patient_number().value())
            .await?;
        let candidates = self
            .store
            .candidates(conn, &keys, existing.as_ref().map(|(id, _)| id))
            .await?;
        let decision = self.matcher.decide(draft, &candidates);
        let now = time::now();
        let demographics = draft.demographics();

        let Some((record_id, current_person)) = existing else {
            let (person_id, outcome) = match decision {
                MatchDecision::Link(person_id) => {
                    self.store
                        .set_person_demographics(conn, &person_id, demographics, now)
                        .await?;
                    (person_id, RegistrationOutcome::JoinedPerson)
                }
                MatchDecision::NewPerson => {
                    let person_id = PersonId::generate();
                    self.store
                        .insert_person(conn, &person_id, demographics, now)
                        .await?;
                    (person_id, RegistrationOutcome::CreatedPerson)
                }
            };
            let record_id = SourceRecordId::generate();
            self.store
                .insert_source_record(conn, &record_id, &person_id, draft, now)
                .await?;
            self.store
                .replace_identifiers(conn, &record_id, &person_id, draft)
                .await?;
            return Ok(Registration {
                person_id,
                source_record_id: record_id,
                outcome,
            });
        };

        let person_id = match decision {
            MatchDecision::Link(person_id) => person_id,
            // The record no longer matches its siblings (its resident identity number changed):
            // it leaves them for a person of its own. Without a strong identifier nothing
            // contradicts the earlier link, so it stays.
            MatchDecision::NewPerson
                if draft.resident_id().is_some()
                    && self
                        .store
                        .has_other_records(conn, &current_person, &record_id)
                        .await? =>
            {
                let person_id = PersonId::generate();
                self.store
                    .insert_person(conn, &person_id, demographics, now)
                    .await?;
                person_id
            }
            MatchDecision::NewPerson => current_person.clone(),
        };
        self.store
            .update_source_record(conn, &record_id, &person_id, draft, now)
            .await?;
        self.store
            .replace_identifiers(conn, &record_id, &person_id, draft)
            .await?;
        self.store
            .set_person_demographics(conn, &person_id, demographics, now)
            .await?;
        if person_id != current_person {
            self.store
                .refresh_person_from_latest_record(conn, &current_person, now)
                .await?;
        }
        Ok(Registration {
            person_id,
            source_record_id: record_id,
            outcome: RegistrationOutcome::UpdatedRecord,
        })
    }

    /// The person with the source records linked to it.
    pub async fn person(
        &self,
        context: &RequestContext,
        id: &PersonId,
    ) -> Result<(Person, Vec<SourceRecord>), Error> {
        let person = self
            .store
            .persons(std::slice::from_ref(id))
            .await?
            .pop()
            .ok_or_else(|| Error::NotFound(format!("person {} does not exist", id.as_str())))?;
        let records = self.store.source_records_of(id).await?;
        // Records are in organisation order: one directory look-up per organisation.
        let mut kept_by: Vec<(OrganisationCode, Option<DataCategory>)> = Vec::with_capacity(records.len());
        for record in &records {
            let category = match kept_by.last() {
                Some((organisation, category)) if *organisation == record.organisation => *category,
                _ => {
                    self.directory
                        .get_organisation(&record.organisation)
                        .await?
                        .draft
                        .sensitive_category
                }
            };
            kept_by.push((record.organisation.clone(), category));
        }
        let categories = visibility::sensitive_categories(
            context,
            kept_by.iter().map(|(code, category)| (code, *category)),
        );
        let reads: Vec<Read> = std::iter::once(DataCategory::Demographics)
            .chain(categories.iter().copied())
            .map(|category| Read {
                context,
                action: "population.get_person",
                person_id: person.id.as_str(),
                category,
            })
            .collect();
        let mut decisions = self.access.decide_all(&reads).await?.into_iter();
        decisions
            .next()
            .unwrap_or_else(|| Err(Error::Internal("a read went undecided".into())))?;
        let permitted: Vec<DataCategory> = categories
            .iter()
            .zip(decisions)
            .filter(|(_, decision)| decision.is_ok())
            .map(|(category, _)| *category)
            .collect();
        let records = records
            .into_iter()
            .zip(kept_by)
            .filter(|(record, (_, category))| {
                visibility::is_visible(context, &record.organisation, *category, &permitted)
            })
            .map(|(record, _)| record)
            .collect::<Vec<_>>();
        // The person's identifiers are those of the records the caller sees.
        let mut identifiers: Vec<Identifier> = records
            .iter()
            .flat_map(|r| r.identifiers.iter().cloned())
            .collect();
        identifiers.sort_by_key(|i| (i.system_uri(), i.value().to_owned()));
        identifiers.dedup();
        let person = Person {
            identifiers,
            ..person
        };
        Ok((person, records))
    }

    /// PIX query: the person an identifier belongs to, and every identifier of that person.
    pub async fn resolve(
        &self,
        context: &RequestContext,
        identifier: &Identifier,
    ) -> Result<(PersonId, Vec<CrossReference>), Error> {
        self.resolver.resolve(context, identifier).await
    }

    /// PDQ: persons matching every criterion, in id order.
    pub async fn search(
        &self,
        context: &RequestContext,
        criteria: &SearchCriteria,
        page_size: PageSize,
        page_token: Option<PageToken>,
    ) -> Result<(Vec<Person>, Option<PageToken>), Error> {
        if criteria.is_empty() {
            return Err(Error::invalid(
                "request",
                "give at least one criterion: name, birth date, sex, division or identifier",
            ));
        }
        if let (Some(from), Some(to)) = (criteria.born_from, criteria.born_to)
            && from > to
        {
            return Err(Error::invalid(
                "birth_date_to",
                format!("{} is before birth_date_from", to.to_iso()),
            ));
        }
        let after = page_token.as_ref().map_or("", PageToken::last_key);
        let mut persons = self.store.search(criteria, after, page_size.get() + 1).await?;
        let next = next_page(&mut persons, page_size, |p| p.id.as_str());
        // Each person found sees the search in their access log; those who withheld consent
        // from the caller are left out of the page (and their log says so).
        let ids: Vec<String> = persons.iter().map(|p| p.id.as_str().to_owned()).collect();
        let visible = self
            .access
            .filter(context, "population.search", &ids, DataCategory::Demographics)
            .await?;
        let mut visible = visible.into_iter();
        persons.retain(|_| visible.next().unwrap_or(false));
        // A search finds people; it never shows that someone is a patient of an organisation
        // whose records reveal a sensitive category (GetPerson does, with consent).
        let mut sensitive: BTreeSet<OrganisationCode> = BTreeSet::new();
        let mut checked: BTreeSet<OrganisationCode> = BTreeSet::new();
        for person in &persons {
            for identifier in &person.identifiers {
                if let IdentifierSystem::LocalPatientNumber(organisation) = identifier.system()
                    && checked.insert(organisation.clone())
                    && self
                        .directory
                        .get_organisation(organisation)
                        .await?
                        .draft
                        .sensitive_category
                        .is_some()
                    && context.organisation.as_ref() != Some(organisation)
                {
                    sensitive.insert(organisation.clone());
                }
            }
        }
        for person in &mut persons {
            person.identifiers.retain(|identifier| {
                !matches!(identifier.system(), IdentifierSystem::LocalPatientNumber(o) if sensitive.contains(o))
            });
        }
        Ok((persons, next))
    }
}

fn registered_event(context: &RequestContext, registration: &Registration) -> AuditEvent {
    AuditEvent::new(
        context,
        "population.register",
        Some(registration.person_id.as_str().to_owned()),
        "source_record",
        Some(registration.source_record_id.as_str().to_owned()),
        Outcome::Permitted,
    )
}

/// How a failed call is recorded: a refusal as denied, anything else as failed.
fn outcome_of(error: &Error) -> Outcome {
    match error {
        Error::PermissionDenied(reason) => Outcome::Denied(reason.clone()),
        other => Outcome::Failed(other.to_string()),
    }
}
