//! A hospital merging two of its own patient numbers (HL7 ADT^A40): the prior number's record
//! is retired into the surviving one. It is not a merge of persons — that stays a steward's
//! decision — but the registry follows it: the retired record joins the surviving record's
//! person, a person it leaves empty is merged into that one (consent combined, as any merge),
//! and the retired record no longer speaks for the golden record. Its number still resolves.

use hie_access::Subject;
use hie_core::context::{RequestContext, Role};
use hie_core::domain::OrganisationCode;
use hie_core::vocabulary::AuditAction;
use hie_core::{Error, time};
use serde_json::json;

use super::{PersonId, PopulationService, SourceRecordId};

/// The roles of the systems that keep a hospital's patient index: its registration desk, its
/// clinical staff and its administrators (a patient portal may not).
const MERGING_ROLES: [Role; 4] = [
    Role::RegistrationClerk,
    Role::Clinician,
    Role::Nurse,
    Role::Administrator,
];

/// What a local merge did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalMerge {
    /// The person both records now belong to.
    pub person_id: PersonId,
    pub retired_source_record_id: SourceRecordId,
    /// False when the prior record had been retired into the surviving one before (a retry).
    pub changed: bool,
}

impl PopulationService {
    /// Retires `organisation`'s record under `prior` into its record under `surviving`. Both
    /// numbers must be registered (NOT_FOUND otherwise, naming which); a prior number retired
    /// into another record is FAILED_PRECONDITION. A hospital system of the organisation (not a
    /// patient portal) may do this, for the organisation's own numbers only.
    pub async fn merge_local_patients(
        &self,
        context: &RequestContext,
        organisation: &OrganisationCode,
        prior: &str,
        surviving: &str,
    ) -> Result<LocalMerge, Error> {
        if prior.trim() == surviving.trim() {
            return Err(Error::invalid(
                "prior_local_patient_number",
                "is the surviving number: a number cannot be merged into itself",
            ));
        }
        let subject = Subject::new(AuditAction::MergeLocalPatients, "source_record");
        self.access
            .audit()
            .write(
                context,
                subject,
                context.role_among(&MERGING_ROLES, "merge patient numbers"),
                async |unit| {
                    let store = &self.store;
                    let not_registered = |field: &str| {
                        Error::NotFound(format!(
                            "{field}: organisation {organisation} has registered no patient under this number"
                        ))
                    };
                    let (prior_record, _, retired) = store
                        .record_of_local_number(unit, organisation, prior.trim())
                        .await?
                        .ok_or_else(|| not_registered("prior_local_patient_number"))?;
                    let (surviving_record, surviving_person, _) = store
                        .record_of_local_number(unit, organisation, surviving.trim())
                        .await?
                        .ok_or_else(|| not_registered("surviving_local_patient_number"))?;
                    match retired {
                        Some(into) if into == surviving_record.as_str() => {
                            let (person, _) =
                                store.record_link(unit, &prior_record).await?.ok_or_else(|| {
                                    Error::Internal("a record vanished inside its transaction".into())
                                })?;
                            unit.concerns(Some(&person), None);
                            return Ok(LocalMerge {
                                person_id: person,
                                retired_source_record_id: prior_record,
                                changed: false,
                            });
                        }
                        Some(_) => {
                            return Err(Error::precondition(
                                "prior_local_patient_number",
                                "was merged into another of the organisation's numbers before",
                            ));
                        }
                        None => {}
                    }
                    let current = self
                        .record_link_locked(unit, &prior_record, Some(&surviving_person))
                        .await?;
                    store
                        .set_retired_into(unit, &prior_record, &surviving_record)
                        .await?;
                    let now = time::now();
                    if current == surviving_person {
                        self.refresh_golden_record(unit, &surviving_person, now).await?;
                    } else {
                        let emptied = store.record_links_of(unit, &current).await?.len() < 2;
                        let how = json!({
                            "by": "local patient merge (A40)", "organisation": organisation.as_str(),
                            "user": context.user_id, "retired_into": surviving_record.as_str(),
                        });
                        self.move_record_by_hand(unit, &prior_record, &current, &surviving_person, how, now)
                            .await?;
                        if emptied {
                            self.combine_consent(unit, &current, &surviving_person, &context.user_id)
                                .await?;
                        }
                    }
                    unit.concerns(Some(&surviving_person), None);
                    Ok(LocalMerge {
                        person_id: surviving_person,
                        retired_source_record_id: prior_record,
                        changed: true,
                    })
                },
            )
            .await
    }
}
