//! Visits: registered by hospitals and clinics (and by the card check-in and the HL7 adapter),
//! one per (organisation, visit number), updated as the visit moves on.

use chrono::{DateTime, Utc};
use hie_access::domain::consent::DataCategory;
use hie_access::{Subject, UnitOfWork, require_patient_is_one_of};
use hie_core::context::{RequestContext, Role};
use hie_core::domain::{Icd10Code, OrganisationCode};
use hie_core::id::PersonId;
use hie_core::outbox::OutboxEvent;
use hie_core::page::{PageSize, PageToken, next_page_by};
use hie_core::vocabulary::{AuditAction, EventType};
use hie_core::{Error, time};
use hie_population::domain::{Lineage, PersonSelector};
use hie_records::domain::payload::text;
use serde_json::json;

use super::service::Item;
use super::{EmrService, EncounterId};
use crate::store::encounter_page_key;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncounterKind {
    Outpatient,
    Emergency,
    Admission,
    Transfer,
    Discharge,
    /// The admission or registration was cancelled: the visit did not happen.
    Cancelled,
}

impl EncounterKind {
    pub const ALL: [EncounterKind; 6] = [
        EncounterKind::Outpatient,
        EncounterKind::Emergency,
        EncounterKind::Admission,
        EncounterKind::Transfer,
        EncounterKind::Discharge,
        EncounterKind::Cancelled,
    ];

    pub fn code(self) -> &'static str {
        match self {
            EncounterKind::Outpatient => "outpatient",
            EncounterKind::Emergency => "emergency",
            EncounterKind::Admission => "admission",
            EncounterKind::Transfer => "transfer",
            EncounterKind::Discharge => "discharge",
            EncounterKind::Cancelled => "cancelled",
        }
    }

    pub fn parse(code: &str) -> Option<EncounterKind> {
        Self::ALL.into_iter().find(|k| k.code() == code)
    }
}

/// A visit as its organisation states it, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct EncounterDraft {
    pub organisation: OrganisationCode,
    pub visit_number: String,
    pub kind: EncounterKind,
    pub department: String,
    pub attending_practitioner: String,
    pub diagnoses: Vec<Icd10Code>,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
}

impl EncounterDraft {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        organisation: OrganisationCode,
        visit_number: &str,
        kind: EncounterKind,
        department: &str,
        attending_practitioner: &str,
        diagnoses: Vec<Icd10Code>,
        started_at: DateTime<Utc>,
        ended_at: Option<DateTime<Utc>>,
    ) -> Result<EncounterDraft, Error> {
        let visit_number = visit_number.trim();
        if visit_number.is_empty()
            || visit_number.len() > 40
            || !visit_number.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(Error::invalid(
                "encounter.visit_number",
                "expected 1 to 40 printable ASCII characters",
            ));
        }
        if let Some(ended) = ended_at
            && ended < started_at
        {
            return Err(Error::invalid(
                "encounter.ended_at",
                format!("{ended} is before the start {started_at}"),
            ));
        }
        if kind == EncounterKind::Discharge && ended_at.is_none() {
            return Err(Error::invalid(
                "encounter.ended_at",
                "a discharge needs the time it ended",
            ));
        }
        let latest = time::now() + chrono::Duration::minutes(10);
        if started_at > latest {
            return Err(Error::invalid(
                "encounter.started_at",
                format!("{started_at} is in the future"),
            ));
        }
        Ok(EncounterDraft {
            organisation,
            visit_number: visit_number.to_owned(),
            kind,
            department: text("encounter.department", department, 100, true)?,
            attending_practitioner: text(
                "encounter.attending_practitioner",
                attending_practitioner,
                100,
                false,
            )?,
            diagnoses,
            started_at,
            ended_at,
        })
    }

    /// The sensitive category the visit's diagnoses reveal.
    pub fn reveals(&self) -> Option<DataCategory> {
        self.diagnoses.iter().find_map(DataCategory::revealed_by)
    }
}

/// A registered visit.
#[derive(Debug, Clone, PartialEq)]
pub struct Encounter {
    pub id: EncounterId,
    pub person_id: PersonId,
    pub draft: EncounterDraft,
    pub updated_at: DateTime<Utc>,
}

/// The roles whose systems register visits: those who see the patient and the reception desk.
const REGISTERING_ROLES: [Role; 4] = [
    Role::Clinician,
    Role::Nurse,
    Role::RegistrationClerk,
    Role::Administrator,
];

/// The person a call is about: named by the request (resolved here), or resolved already by the
/// caller (the card service, from its replica's view of persons).
#[derive(Debug, Clone, Copy)]
pub enum Whose<'a> {
    Selected(&'a PersonSelector),
    Resolved(&'a Lineage),
}

impl EmrService {
    /// Registers a visit or its next step; `true` when something changed.
    pub async fn register_encounter(
        &self,
        context: &RequestContext,
        person: &PersonSelector,
        draft: EncounterDraft,
    ) -> Result<(Encounter, bool), Error> {
        self.register_encounter_for(context, Whose::Selected(person), draft)
            .await
    }

    /// [`EmrService::register_encounter`] for a person named either way.
    pub async fn register_encounter_for(
        &self,
        context: &RequestContext,
        person: Whose<'_>,
        draft: EncounterDraft,
    ) -> Result<(Encounter, bool), Error> {
        self.directory
            .require_active_organisation("organisation_code", &draft.organisation)
            .await?;
        let subject = Subject::new(AuditAction::RegisterEncounter, "encounter");
        // The role is checked before the person is looked up, as for archive entries.
        let permitted = context.role_among(&REGISTERING_ROLES, "register a visit");
        let whose = person;
        self.access
            .audit()
            .write_retrying(context, subject, permitted, 3, || async |unit: &mut UnitOfWork| {
                let person = match whose {
                    Whose::Selected(selector) => self.population.lineage(context, selector).await?.person,
                    Whose::Resolved(lineage) => lineage.person.clone(),
                };
                unit.concerns(Some(&person), None);
                let existing = self
                    .store
                    .encounter_by_visit(unit, &draft.organisation, &draft.visit_number)
                    .await?;
                if let Some(existing) = &existing
                    && existing.draft == draft
                    && existing.person_id == person
                {
                    unit.concerns(None, Some(existing.id.as_str().to_owned()));
                    return Ok((existing.clone(), false));
                }
                let encounter = Encounter {
                    id: existing.as_ref().map_or_else(EncounterId::generate, |e| e.id.clone()),
                    person_id: person.clone(),
                    draft: draft.clone(),
                    updated_at: time::now(),
                };
                self.store.write_encounter(unit, &encounter, existing.is_none()).await?;
                unit.concerns(None, Some(encounter.id.as_str().to_owned()));
                unit.emit(OutboxEvent::new(
                    EventType::EncounterRegistered,
                    Some(&person),
                    Some(&encounter.draft.organisation),
                    &json!({
                        "encounter_id": encounter.id.as_str(),
                        "visit_number": encounter.draft.visit_number,
                        "kind": encounter.draft.kind.code(),
                        "department": encounter.draft.department,
                        "diagnoses": encounter.draft.diagnoses.iter().map(Icd10Code::as_str).collect::<Vec<_>>(),
                    }),
                ));
                Ok((encounter, true))
            })
            .await
    }

    /// The person's visits as the caller may see them, newest first; with the surviving person,
    /// the next page and whether consent withheld any.
    pub async fn encounters(
        &self,
        context: &RequestContext,
        person: &PersonSelector,
        page_size: PageSize,
        page_token: Option<PageToken>,
    ) -> Result<(PersonId, Vec<Encounter>, Option<PageToken>, bool), Error> {
        let lineage = self.population.lineage(context, person).await?;
        require_patient_is_one_of(context, &lineage.members)?;
        let size = page_size.get() as usize;
        let mut encounters = self
            .store
            .encounters(
                &lineage.members,
                page_token.as_ref().map(PageToken::last_key),
                size + 1,
            )
            .await?;
        let next = next_page_by(&mut encounters, page_size, encounter_page_key);
        let items = encounters.into_iter().map(encounter_item).collect();
        let seen = self
            .gate(context, AuditAction::ListEncounters, &lineage, items)
            .await?;
        let withheld = !seen.hidden.is_empty();
        Ok((lineage.person, seen.visible, next, withheld))
    }
}

/// A visit, kept by the organisation it was at.
pub(super) fn encounter_item(encounter: Encounter) -> Item<Encounter> {
    Item {
        kept_by: encounter.draft.organisation.clone(),
        reveals: encounter.draft.reveals(),
        item: encounter,
    }
}
