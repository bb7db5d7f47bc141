//! Reading the registry: a person with their records (`GetPerson`), resolve (the PIX query,
//! batched in `resolve.rs`) and search (PDQ). Every read of a person asks the read gate
//! ([`hie_access::AccessGate::read`]) and shows only what it allows.

use hie_access::domain::consent::{ConsentDirectives, DataCategory};
use hie_access::{Kept, PersonRead};
use hie_core::Error;
use hie_core::context::RequestContext;
use hie_core::domain::Identifier;
use hie_core::vocabulary::AuditAction;

use super::golden::{Statement, golden_record, trust_of};
use super::{CrossReference, Person, PersonId, PopulationService, SourceRecord};

impl PopulationService {
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
        if let Some(into) = self.store.merged_into(id).await? {
            return Err(Error::NotFound(format!(
                "person {} was merged into {}",
                id.as_str(),
                into.as_str()
            )));
        }
        let records = self.store.source_records_of(id).await?;
        self.as_seen_by(context, AuditAction::GetPerson, person, records)
            .await
    }

    /// The person as the caller may see them, through the read gate: the records kept by
    /// sensitive organisations that the caller may not see left out (each sensitive category one
    /// audited read), and the identifiers and golden record computed from the rest.
    /// `PERMISSION_DENIED` when the caller may not read the person at all.
    pub(super) async fn as_seen_by(
        &self,
        context: &RequestContext,
        action: AuditAction,
        person: Person,
        records: Vec<SourceRecord>,
    ) -> Result<(Person, Vec<SourceRecord>), Error> {
        // Records are in organisation order: one directory look-up per organisation.
        let mut items: Vec<Kept<(SourceRecord, u8)>> = Vec::with_capacity(records.len());
        for record in records {
            let (sensitive, trust) = match items.last() {
                Some(previous) if previous.kept_by == record.organisation => {
                    (previous.sensitive, previous.item.1)
                }
                _ => {
                    let draft = self
                        .directory
                        .organisation_seen_recently(&record.organisation)
                        .await?
                        .ok_or_else(|| {
                            Error::Internal("a source record's organisation is not in the directory".into())
                        })?
                        .draft;
                    (draft.sensitive_category, trust_of(Some(draft.kind)))
                }
            };
            items.push(Kept {
                kept_by: record.organisation.clone(),
                sensitive,
                item: (record, trust),
            });
        }
        let read = PersonRead {
            context,
            action,
            person_id: &person.id,
            category: DataCategory::Demographics,
            directives: None,
            items,
        };
        let seen = self
            .access
            .read(vec![read])
            .await?
            .pop()
            .unwrap_or_else(|| Err(Error::Internal("a read went undecided".into())))?;
        let (records, trusts): (Vec<SourceRecord>, Vec<u8>) = seen.visible.into_iter().unzip();
        // The person's identifiers are those of the records the caller sees.
        let mut identifiers: Vec<Identifier> = records
            .iter()
            .flat_map(|r| r.identifiers.iter().cloned())
            .collect();
        identifiers.sort_by_key(|i| (i.system_uri(), i.value().to_owned()));
        identifiers.dedup();
        // The golden record the caller sees: from the records they may see.
        let statements: Vec<Statement<'_>> = records
            .iter()
            .zip(&trusts)
            .map(|(r, trust)| Statement {
                record: &r.id,
                demographics: &r.demographics,
                updated_at: r.updated_at,
                trust: *trust,
            })
            .collect();
        let (demographics, demographics_sources) =
            golden_record(&statements).unwrap_or_else(|| (person.demographics.clone(), Vec::new()));
        let person = Person {
            identifiers,
            demographics,
            demographics_sources,
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
}

/// Whom a request about a person's health data means: the person's id in the exchange, or any
/// identifier the registry knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PersonSelector {
    Id(PersonId),
    Identifier(Identifier),
}

/// A person as they stand now: the survivor of any merges, then everyone merged into them, whose
/// data is the survivor's too (until an unmerge takes it back); and the survivor's consent
/// directives as read with them, for the read gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lineage {
    pub person: PersonId,
    pub members: Vec<PersonId>,
    pub directives: ConsentDirectives,
}

impl PopulationService {
    /// Every person whose [`Lineage`] is more than themselves alone under the default consent:
    /// persons merged into others, the persons they were merged into, and persons with consent
    /// directives of their own. Anyone else stands alone, with the defaults: a cache of lineages
    /// may hold these and take everyone else as standing alone.
    pub async fn persons_not_standing_alone(&self) -> Result<Vec<PersonId>, Error> {
        let mut persons: Vec<PersonId> = self
            .store
            .merged_persons()
            .await?
            .into_iter()
            .flat_map(|(merged, into)| [merged, into])
            .collect();
        persons.extend(self.access.consent().persons_with_directives().await?);
        persons.sort();
        persons.dedup();
        Ok(persons)
    }

    /// The person a request about health data means, followed through merges. An identifier is
    /// resolved as `ResolveIdentifier` resolves it (through the read gate, audited), so that a
    /// number only a hidden record carries answers as one nobody carries. `NOT_FOUND` for an
    /// unknown person or identifier.
    pub async fn lineage(
        &self,
        context: &RequestContext,
        selector: &PersonSelector,
    ) -> Result<Lineage, Error> {
        let named = match selector {
            PersonSelector::Id(id) => id.clone(),
            PersonSelector::Identifier(identifier) => self.resolve(context, identifier).await?.0,
        };
        match self.store.lineage(&named).await? {
            Some((members, directives)) => Ok(Lineage {
                person: members.first().cloned().unwrap_or(named),
                members,
                directives,
            }),
            None => Err(Error::NotFound(format!(
                "person {} does not exist",
                named.as_str()
            ))),
        }
    }
}
