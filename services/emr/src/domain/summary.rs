//! The patient summary: assembled from the archive, the visits and the documents, in one read of
//! the gate, so that what consent withholds is left out everywhere at once and the summary says
//! only that something was withheld.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use hie_access::require_patient_is_one_of;
use hie_core::Error;
use hie_core::context::RequestContext;
use hie_core::domain::{Icd10Code, OrganisationCode};
use hie_core::id::PersonId;
use hie_core::vocabulary::AuditAction;
use hie_population::domain::{Demographics, Lineage, PersonSelector};
use hie_records::domain::payload::{Allergy, Immunisation, Medication, VitalSigns};
use hie_records::domain::{Entry, EntryPayload, EntryType};

use super::documents::document_item;
use super::encounters::{Encounter, encounter_item};
use super::service::Item;
use super::{Document, EmrService, Observation};

/// The most visits and documents a summary looks through (the newest).
pub const SUMMARY_DEPTH: usize = 500;

/// A value with when it was recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct Timed<T> {
    pub value: T,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PatientSummary {
    pub person_id: PersonId,
    pub demographics: Demographics,
    pub allergies: Vec<Allergy>,
    /// Each problem with when it was last recorded, the latest first.
    pub active_problems: Vec<Timed<Icd10Code>>,
    pub current_medications: Vec<Timed<Medication>>,
    pub latest_encounters: Vec<Encounter>,
    pub immunisations: Vec<Timed<Immunisation>>,
    pub latest_vital_signs: Option<Timed<VitalSigns>>,
    pub latest_results: Vec<Timed<Observation>>,
    pub some_withheld: bool,
}

/// One thing the summary draws on.
enum Source {
    Entry(Entry),
    Encounter(Encounter),
    Document(Box<Document>),
}

impl EmrService {
    /// The patient summary as consent permits the caller.
    pub async fn summary(
        &self,
        context: &RequestContext,
        person: &PersonSelector,
    ) -> Result<PatientSummary, Error> {
        let lineage = self.population.lineage(context, person).await?;
        self.summary_of(context, &lineage).await
    }

    /// The summary of a person the caller resolved already (the card service's check-in).
    pub async fn summary_of(
        &self,
        context: &RequestContext,
        lineage: &Lineage,
    ) -> Result<PatientSummary, Error> {
        require_patient_is_one_of(context, &lineage.members)?;
        // The four reads are independent: in flight together, the summary waits for the slowest,
        // not for their sum. Demographics come through the registry's own read (its gate
        // decision and audit).
        let ((person, _), entries, encounters, documents) = futures_util::future::try_join4(
            self.population.person(context, &lineage.person),
            self.records.all_current(lineage),
            self.store.encounters(&lineage.members, None, SUMMARY_DEPTH),
            self.store.recent_approved(&lineage.members, SUMMARY_DEPTH),
        )
        .await?;
        let items: Vec<Item<Source>> = entries
            .into_iter()
            .map(|entry| Item::of_entry(entry).map(Source::Entry))
            .chain(
                encounters
                    .into_iter()
                    .map(|e| encounter_item(e).map(Source::Encounter)),
            )
            .chain(
                documents
                    .into_iter()
                    .map(|d| document_item(d).map(|d| Source::Document(Box::new(d)))),
            )
            .collect();
        let seen = self
            .gate(context, AuditAction::GetPatientSummary, lineage, items)
            .await?;
        let mut summary = PatientSummary {
            person_id: lineage.person.clone(),
            demographics: person.demographics,
            allergies: Vec::new(),
            active_problems: Vec::new(),
            current_medications: Vec::new(),
            latest_encounters: Vec::new(),
            immunisations: Vec::new(),
            latest_vital_signs: None,
            latest_results: Vec::new(),
            some_withheld: !seen.hidden.is_empty(),
        };
        assemble(&mut summary, seen.visible);
        Ok(summary)
    }
}

/// Keeps the later of two values per key.
fn keep_latest<K: Ord, T>(map: &mut BTreeMap<K, Timed<T>>, key: K, value: T, at: DateTime<Utc>) {
    match map.get(&key) {
        Some(kept) if kept.at >= at => {}
        _ => {
            map.insert(key, Timed { value, at });
        }
    }
}

fn newest_first<T>(map: BTreeMap<impl Ord, Timed<T>>) -> Vec<Timed<T>> {
    let mut values: Vec<Timed<T>> = map.into_values().collect();
    values.sort_by_key(|v| std::cmp::Reverse(v.at));
    values
}

fn assemble(summary: &mut PatientSummary, visible: Vec<Source>) {
    let mut allergies: BTreeSet<String> = BTreeSet::new();
    let mut problems: BTreeMap<Icd10Code, Timed<Icd10Code>> = BTreeMap::new();
    let mut results: BTreeMap<String, Timed<Observation>> = BTreeMap::new();
    let mut latest_follow_up: BTreeMap<EntryType, (DateTime<Utc>, Vec<Medication>)> = BTreeMap::new();
    let mut latest_visit: BTreeMap<OrganisationCode, Encounter> = BTreeMap::new();
    for source in visible {
        match source {
            Source::Entry(entry) => {
                let at = entry.recorded_at();
                for problem in entry.payload.problems() {
                    keep_latest(&mut problems, problem.clone(), problem, at);
                }
                if let Some(vitals) = entry.payload.vital_signs()
                    && summary
                        .latest_vital_signs
                        .as_ref()
                        .is_none_or(|kept| kept.at < at)
                {
                    summary.latest_vital_signs = Some(Timed {
                        value: vitals.clone(),
                        at,
                    });
                }
                if !entry.payload.medications().is_empty()
                    || matches!(
                        entry.entry_type(),
                        EntryType::HypertensionFollowUp
                            | EntryType::DiabetesFollowUp
                            | EntryType::MentalIllnessFollowUp
                    )
                {
                    let later = latest_follow_up
                        .get(&entry.entry_type())
                        .is_none_or(|(kept, _)| *kept < at);
                    if later {
                        latest_follow_up
                            .insert(entry.entry_type(), (at, entry.payload.medications().to_vec()));
                    }
                }
                match entry.payload {
                    EntryPayload::BasicProfile(profile) => {
                        for allergy in profile.allergies {
                            if allergies.insert(allergy.substance.clone()) {
                                summary.allergies.push(allergy);
                            }
                        }
                    }
                    EntryPayload::PhysicalExamination(exam) => {
                        for result in exam.lab_results {
                            let observation = Observation {
                                code: result.code,
                                name: result.name,
                                value: result.value,
                                unit: result.unit,
                            };
                            keep_latest(&mut results, observation.code.clone(), observation, at);
                        }
                    }
                    EntryPayload::Immunisation(dose) => summary.immunisations.push(Timed { value: dose, at }),
                    _ => {}
                }
            }
            // A cancelled visit did not happen: its diagnoses are not the patient's problems.
            Source::Encounter(encounter)
                if encounter.draft.kind == super::encounters::EncounterKind::Cancelled => {}
            Source::Encounter(encounter) => {
                for diagnosis in &encounter.draft.diagnoses {
                    keep_latest(
                        &mut problems,
                        diagnosis.clone(),
                        diagnosis.clone(),
                        encounter.draft.started_at,
                    );
                }
                let later = latest_visit
                    .get(&encounter.draft.organisation)
                    .is_none_or(|kept| kept.draft.started_at < encounter.draft.started_at);
                if later {
                    latest_visit.insert(encounter.draft.organisation.clone(), encounter);
                }
            }
            Source::Document(document) => {
                let document = *document;
                let at = document.metadata.creation_time;
                for code in &document.metadata.event_codes {
                    keep_latest(&mut problems, code.clone(), code.clone(), at);
                }
                for observation in document.metadata.observations {
                    keep_latest(&mut results, observation.code.clone(), observation, at);
                }
            }
        }
    }
    summary.active_problems = newest_first(problems);
    summary.latest_results = newest_first(results);
    summary.immunisations.sort_by_key(|i| i.at);
    let mut medications: Vec<Timed<Medication>> = latest_follow_up
        .into_values()
        .flat_map(|(at, list)| list.into_iter().map(move |value| Timed { value, at }))
        .collect();
    medications.sort_by_key(|m| std::cmp::Reverse(m.at));
    summary.current_medications = medications;
    let mut visits: Vec<Encounter> = latest_visit.into_values().collect();
    visits.sort_by_key(|v| std::cmp::Reverse(v.draft.started_at));
    summary.latest_encounters = visits;
}
