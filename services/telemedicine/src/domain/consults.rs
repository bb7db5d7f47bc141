//! Consults: request, accept (with the consultant's grant), decline, complete (with the report),
//! cancel; and the consult's view of the patient's records. Only the two parties see a consult.
//! Each step is one unit of work: the consult's row, its step, the grant (accept; ended by
//! complete and cancel) and the event commit together, and a step that no longer applies (the
//! consult moved on meanwhile) changes nothing.

use chrono::Duration;
use hie_access::Subject;
use hie_access::domain::consent::Grant;
use hie_access::grpc::PersonRegistry;
use hie_core::context::{RequestContext, Role};
use hie_core::domain::{Icd10Code, Identifier, OrganisationCode};
use hie_core::outbox::OutboxEvent;
use hie_core::page::{PageSize, PageToken};
use hie_core::vocabulary::{AuditAction, EventType};
use hie_core::{Error, ResultExt, time};
use hie_directory::domain::OrganisationKind;
use hie_emr::domain::{
    Author, Code, Confidentiality, Document, DocumentMetadata, DocumentQuery, DocumentSubmission,
    PatientSummary, SubmissionSet,
};
use hie_population::domain::PersonSelector;
use serde_json::json;

use super::{Consult, ConsultId, ConsultStatus, ConsultStep, TelemedicineService};

/// The roles that request, accept and complete consults.
const CLINICAL_ROLES: [Role; 2] = [Role::Clinician, Role::Nurse];
/// The longest and shortest grant an acceptance may give, and the default.
pub const LONGEST_ACCESS: Duration = Duration::days(30);
pub const SHORTEST_ACCESS: Duration = Duration::seconds(1);
pub const DEFAULT_ACCESS: Duration = Duration::hours(72);
/// The most documents a request attaches.
const MOST_ATTACHMENTS: usize = 20;
/// Report formats the EMR registry keeps for a consult.
const REPORT_MIME_TYPES: [&str; 4] = [
    "text/plain",
    "application/pdf",
    "text/xml",
    "application/fhir+json",
];

/// What a clinic asks for.
#[derive(Debug, Clone)]
pub struct ConsultRequest {
    pub patient: Identifier,
    pub consulting: OrganisationCode,
    pub specialty: String,
    pub reason: String,
    pub service_item_code: String,
    pub attachments: Vec<String>,
}

/// The report a consultant completes a consult with.
#[derive(Debug, Clone)]
pub struct ConsultReport {
    pub title: String,
    pub content: Vec<u8>,
    pub mime_type: String,
    pub diagnoses: Vec<String>,
}

/// What a party sees of the patient for a consult.
#[derive(Debug, Clone)]
pub struct ConsultRecords {
    pub summary: PatientSummary,
    pub documents: Vec<Document>,
    pub withheld: bool,
}

fn bounded(field: &str, text: &str, most: usize) -> Result<String, Error> {
    let text = text.trim();
    if text.is_empty() || text.chars().count() > most {
        return Err(Error::invalid(field, format!("must be 1 to {most} characters")));
    }
    Ok(text.to_owned())
}

fn calling_organisation(context: &RequestContext) -> Result<&OrganisationCode, Error> {
    context.organisation.as_ref().ok_or_else(|| {
        Error::PermissionDenied("consults are between organisations: call over mutual TLS".into())
    })
}

impl ConsultRequest {
    pub fn checked(self) -> Result<ConsultRequest, Error> {
        if self.attachments.len() > MOST_ATTACHMENTS {
            return Err(Error::invalid(
                "attachment_unique_ids",
                format!("has more than {MOST_ATTACHMENTS} documents"),
            ));
        }
        let mut attachments = Vec::with_capacity(self.attachments.len());
        for (i, id) in self.attachments.iter().enumerate() {
            let id = bounded(&format!("attachment_unique_ids[{i}]"), id, 128)?;
            if !attachments.contains(&id) {
                attachments.push(id);
            }
        }
        Ok(ConsultRequest {
            specialty: bounded("specialty", &self.specialty, 64)?,
            reason: bounded("reason", &self.reason, 2_000)?,
            service_item_code: bounded("service_item_code", &self.service_item_code, 32)?,
            attachments,
            ..self
        })
    }
}

impl TelemedicineService {
    /// A clinic's request to a hospital.
    pub async fn request(&self, context: &RequestContext, request: ConsultRequest) -> Result<Consult, Error> {
        let request = request.checked()?;
        let requesting = calling_organisation(context)?.clone();
        let requester = self
            .directory
            .require_active_organisation("organisation", &requesting)
            .await?;
        let consulting = self
            .directory
            .require_active_organisation("consulting_organisation_code", &request.consulting)
            .await?;
        if consulting.draft.kind != OrganisationKind::Hospital {
            return Err(Error::precondition(
                "consulting_organisation_code",
                format!("{} is not a hospital", request.consulting),
            ));
        }
        if request.consulting == requesting {
            return Err(Error::invalid(
                "consulting_organisation_code",
                "is the requesting organisation itself",
            ));
        }
        let now = time::now();
        let item = self
            .store
            .item(&request.service_item_code)
            .await?
            .ok_or_else(|| {
                Error::precondition(
                    "service_item_code",
                    format!("{} is not in the catalogue", request.service_item_code),
                )
            })?;
        if !item.is_active_at(now) {
            return Err(Error::precondition(
                "service_item_code",
                format!("{} is not active now", item.code),
            ));
        }
        let lineage = self
            .population
            .lineage(context, &PersonSelector::Identifier(request.patient.clone()))
            .await
            .map_err(|error| match error {
                Error::NotFound(reason) => Error::NotFound(format!("patient: {reason}")),
                other => other,
            })?;
        // A clinic asks about its own patients only: otherwise any clinic could have a hospital
        // granted access to anyone, whatever that person's consent says.
        let mut keeps_a_record = false;
        for member in &lineage.members {
            if self
                .population
                .keeps_a_record_of(requesting.as_str(), member)
                .await?
            {
                keeps_a_record = true;
                break;
            }
        }
        for (i, attachment) in request.attachments.iter().enumerate() {
            let owner = self.emr.person_of_document(attachment).await?;
            if !owner.is_some_and(|person| lineage.members.contains(&person)) {
                return Err(Error::NotFound(format!(
                    "attachment_unique_ids[{i}]: {attachment} is not a document of this patient"
                )));
            }
        }
        let consult = Consult {
            id: ConsultId::generate(),
            person_id: lineage.person.clone(),
            patient: request.patient,
            requesting: requesting.clone(),
            consulting: request.consulting,
            specialty: request.specialty,
            reason: request.reason,
            service_item_code: item.code,
            price_fen: item.price_fen,
            attachments: request.attachments,
            status: ConsultStatus::Requested,
            consultant: None,
            access_expires_at: None,
            report_unique_id: None,
            requested_at: now,
            steps: vec![ConsultStep {
                step: ConsultStatus::Requested,
                organisation: requesting.as_str().to_owned(),
                user_id: context.user_id.clone(),
                at: now,
                note: String::new(),
            }],
        };
        let subject = Subject::new(AuditAction::RequestConsult, "consult")
            .resource(consult.id.as_str().to_owned())
            .person(&consult.person_id);
        let permitted = context
            .role_among(&CLINICAL_ROLES, "request a consult")
            .and_then(|()| {
                if !requester.draft.kind.is_care_giving() {
                    Err(format!("organisation {requesting} does not treat patients"))
                } else if !keeps_a_record {
                    Err(format!(
                        "organisation {requesting} keeps no record of this patient"
                    ))
                } else {
                    Ok(())
                }
            });
        self.access
            .audit()
            .write(context, subject, permitted, async |unit| {
                self.store.insert_consult(unit, &consult).await?;
                self.store
                    .insert_step(unit, &consult.id, 1, &consult.steps[0])
                    .await?;
                unit.emit(event(
                    EventType::ConsultRequested,
                    &consult,
                    &requesting,
                    json!({}),
                ));
                Ok(())
            })
            .await?;
        Ok(consult)
    }

    /// The consult as one of its parties sees it; to anyone else it does not exist.
    pub async fn consult(&self, context: &RequestContext, id: &str) -> Result<Consult, Error> {
        let not_found = || {
            Error::NotFound(format!(
                "consult {} does not exist",
                id.chars().take(64).collect::<String>()
            ))
        };
        let consult = self.store.consult(id.trim()).await?.ok_or_else(not_found)?;
        let party = context
            .organisation
            .as_ref()
            .is_some_and(|o| *o == consult.requesting || *o == consult.consulting);
        if !party {
            return Err(not_found());
        }
        Ok(consult)
    }

    /// One step of a consult by one of its parties, from the statuses it applies to.
    #[allow(clippy::too_many_arguments)]
    async fn step(
        &self,
        context: &RequestContext,
        id: &str,
        action: AuditAction,
        by_consulting: bool,
        from: &[ConsultStatus],
        to: ConsultStatus,
        note: String,
        change: impl AsyncFnOnce(&mut hie_access::UnitOfWork, &mut Consult) -> Result<serde_json::Value, Error>,
    ) -> Result<Consult, Error> {
        let mut consult = self.consult(context, id).await?;
        let (party, party_name) = if by_consulting {
            (&consult.consulting, "the consulting hospital")
        } else {
            (&consult.requesting, "the requesting organisation")
        };
        let subject = Subject::new(action, "consult")
            .resource(consult.id.as_str().to_owned())
            .person(&consult.person_id);
        let permitted = context
            .role_among(&CLINICAL_ROLES, "act on a consult")
            .and_then(|()| {
                if context.organisation.as_ref() == Some(party) {
                    Ok(())
                } else {
                    Err(format!(
                        "only {party_name} may {}",
                        // The action's verb: accept, decline, complete, cancel.
                        action.code().rsplit('.').next().unwrap_or_default()
                    ))
                }
            });
        if permitted.is_ok() && !from.contains(&consult.status) {
            return Err(Error::precondition(
                "consult_id",
                format!("consult {} is {}", consult.id, consult.status.code()),
            ));
        }
        let now = time::now();
        let step = ConsultStep {
            step: to,
            organisation: context
                .organisation
                .as_ref()
                .map(|o| o.as_str().to_owned())
                .unwrap_or_default(),
            user_id: context.user_id.clone(),
            at: now,
            note,
        };
        let from_status = consult.status;
        let organisation = party.clone();
        let event_type = match to {
            ConsultStatus::Requested => EventType::ConsultRequested,
            ConsultStatus::Accepted => EventType::ConsultAccepted,
            ConsultStatus::Declined => EventType::ConsultDeclined,
            ConsultStatus::Completed => EventType::ConsultCompleted,
            ConsultStatus::Cancelled => EventType::ConsultCancelled,
        };
        self.access
            .audit()
            .write(context, subject, permitted, async |unit| {
                let details = change(unit, &mut consult).await?;
                consult.status = to;
                // The row moves only from the status it was read in: a step that raced another
                // (accepted twice, cancelled while completing) finds nothing to change.
                if !self
                    .store
                    .update_consult(unit, &consult, from_status, now)
                    .await?
                {
                    return Err(Error::precondition(
                        "consult_id",
                        format!("consult {} changed meanwhile; read it again", consult.id),
                    ));
                }
                self.store
                    .insert_step(unit, &consult.id, consult.steps.len() as i64 + 1, &step)
                    .await?;
                unit.emit(event(event_type, &consult, &organisation, details));
                Ok(())
            })
            .await?;
        consult.steps.push(step);
        Ok(consult)
    }

    /// The hospital accepts: `consultant` (the caller when `None`) may read the patient's records
    /// until the grant expires.
    pub async fn accept(
        &self,
        context: &RequestContext,
        id: &str,
        consultant: Option<String>,
        access: Option<Duration>,
    ) -> Result<Consult, Error> {
        let access = access.unwrap_or(DEFAULT_ACCESS);
        if !(SHORTEST_ACCESS..=LONGEST_ACCESS).contains(&access) {
            return Err(Error::invalid("access_duration", "must be 1 second to 30 days"));
        }
        let consultant = match consultant {
            Some(named) => bounded("consultant", &named, 64)?,
            None => context.user_id.clone(),
        };
        let consent = self.access.consent().clone();
        self.step(
            context,
            id,
            AuditAction::AcceptConsult,
            true,
            &[ConsultStatus::Requested],
            ConsultStatus::Accepted,
            String::new(),
            async |unit, consult| {
                let expires_at = time::now() + access;
                let mut directives = consent
                    .directives_in(unit, &consult.person_id)
                    .await?
                    .unwrap_or_default();
                directives.grants.retain(|g| g.expires_at > time::now());
                directives.grants.push(Grant {
                    organisation: Some(consult.consulting.as_str().to_owned()),
                    practitioner: Some(consultant.clone()),
                    expires_at,
                });
                consent
                    .set_in(unit, &consult.person_id, &directives, &context.user_id)
                    .await?;
                consult.consultant = Some(consultant.clone());
                consult.access_expires_at = Some(expires_at);
                Ok(json!({
                    "consultant": consultant,
                    "access_expires_at": expires_at.to_rfc3339(),
                }))
            },
        )
        .await
    }

    pub async fn decline(&self, context: &RequestContext, id: &str, reason: &str) -> Result<Consult, Error> {
        let reason = bounded("reason", reason, 500)?;
        self.step(
            context,
            id,
            AuditAction::DeclineConsult,
            true,
            &[ConsultStatus::Requested],
            ConsultStatus::Declined,
            reason,
            async |_, _| Ok(json!({})),
        )
        .await
    }

    pub async fn cancel(&self, context: &RequestContext, id: &str, reason: &str) -> Result<Consult, Error> {
        let reason = bounded("reason", reason, 500)?;
        let consent = self.access.consent().clone();
        self.step(
            context,
            id,
            AuditAction::CancelConsult,
            false,
            &[ConsultStatus::Requested, ConsultStatus::Accepted],
            ConsultStatus::Cancelled,
            reason,
            async |unit, consult| {
                end_grant(&consent, unit, consult, &context.user_id).await?;
                Ok(json!({}))
            },
        )
        .await
    }

    /// The consultant completes the consult: the report is registered in the EMR registry as the
    /// hospital's document (idempotent: its unique id is the consult's), then the consult moves
    /// to completed and the grant ends.
    pub async fn complete(
        &self,
        context: &RequestContext,
        id: &str,
        report: ConsultReport,
    ) -> Result<Consult, Error> {
        let title = bounded("title", &report.title, 200)?;
        if report.content.is_empty() {
            return Err(Error::invalid("content", "must not be empty"));
        }
        let mime_type = report.mime_type.trim().to_owned();
        if !REPORT_MIME_TYPES.contains(&mime_type.as_str()) {
            return Err(Error::invalid(
                "mime_type",
                format!("expected one of {}", REPORT_MIME_TYPES.join(", ")),
            ));
        }
        let consult = self.consult(context, id).await?;
        if context.organisation.as_ref() == Some(&consult.consulting) {
            if consult.status != ConsultStatus::Accepted {
                return Err(Error::precondition(
                    "consult_id",
                    format!("consult {} is {}", consult.id, consult.status.code()),
                ));
            }
            if consult.consultant.as_deref() != Some(context.user_id.as_str()) {
                return Err(Error::PermissionDenied(
                    "only the consult's consultant may complete it".into(),
                ));
            }
        }
        let report_unique_id = if context.organisation.as_ref() == Some(&consult.consulting)
            && consult.status == ConsultStatus::Accepted
        {
            let registered = self
                .emr
                .register_set(
                    context,
                    report_set(&consult, &title, &report.content, &mime_type, &report.diagnoses)?,
                )
                .await?;
            registered.documents.first().map(|d| d.metadata.unique_id.clone())
        } else {
            None
        };
        let consent = self.access.consent().clone();
        self.step(
            context,
            id,
            AuditAction::CompleteConsult,
            true,
            &[ConsultStatus::Accepted],
            ConsultStatus::Completed,
            String::new(),
            async |unit, consult| {
                end_grant(&consent, unit, consult, &context.user_id).await?;
                consult.report_unique_id = report_unique_id.clone();
                Ok(json!({ "report_unique_id": report_unique_id }))
            },
        )
        .await
    }

    /// The consults the caller's organisation requested or was asked for, newest first.
    pub async fn consults(
        &self,
        context: &RequestContext,
        status: Option<ConsultStatus>,
        page_size: PageSize,
        page_token: Option<PageToken>,
    ) -> Result<(Vec<Consult>, Option<PageToken>), Error> {
        let organisation = calling_organisation(context)?;
        let before = page_token.as_ref().map(PageToken::last_key);
        let mut consults = self
            .store
            .consults_of(organisation, status, before, page_size.get() as i64 + 1)
            .await?;
        let next = (consults.len() > page_size.get() as usize).then(|| {
            consults.truncate(page_size.get() as usize);
            PageToken::after(consults.last().map_or("", |c| c.id.as_str()))
        });
        Ok((consults, next))
    }

    /// The patient's summary and documents for a consult: for the requesting clinic, and for the
    /// consultant while the grant lasts. The reads are the EMR registry's own (consent, audit).
    pub async fn records(&self, context: &RequestContext, id: &str) -> Result<ConsultRecords, Error> {
        let consult = self.consult(context, id).await?;
        if context.organisation.as_ref() == Some(&consult.consulting) {
            let refuse = |reason: String| async {
                let subject = Subject::new(AuditAction::GetConsultRecords, "consult")
                    .resource(consult.id.as_str().to_owned())
                    .person(&consult.person_id);
                Err(self.access.audit().refuse(context, &subject, reason).await)
            };
            if consult.status != ConsultStatus::Accepted {
                return refuse(format!(
                    "the consult is {}; its access has ended",
                    consult.status.code()
                ))
                .await;
            }
            if consult.consultant.as_deref() != Some(context.user_id.as_str()) {
                return refuse("the consult's access is its consultant's".into()).await;
            }
            if consult.access_expires_at.is_none_or(|at| at <= time::now()) {
                return refuse("the consult's access has expired".into()).await;
            }
        }
        let person = PersonSelector::Id(consult.person_id.clone());
        let summary = self.emr.summary(context, &person).await?;
        let query = DocumentQuery {
            person,
            statuses: Vec::new(),
            class_codes: Vec::new(),
            type_codes: Vec::new(),
            creation_from: None,
            creation_to: None,
            service_from: None,
            service_to: None,
            author_institutions: Vec::new(),
            event_codes: Vec::new(),
            confidentiality: Vec::new(),
            page_size: PageSize::parse(100).map_err(|e| Error::invalid("page_size", e.0))?,
            page_token: None,
        };
        let (_, documents, _, withheld) = self.emr.find_documents(context, &query).await?;
        Ok(ConsultRecords {
            summary,
            documents,
            withheld,
        })
    }
}

/// Ends the consultant's grant now (a consult completed or cancelled).
async fn end_grant(
    consent: &hie_access::ConsentStore,
    unit: &mut hie_access::UnitOfWork,
    consult: &mut Consult,
    user: &str,
) -> Result<(), Error> {
    let Some(consultant) = consult.consultant.clone() else {
        return Ok(());
    };
    let Some(mut directives) = consent.directives_in(unit, &consult.person_id).await? else {
        return Ok(());
    };
    let organisation = consult.consulting.as_str().to_owned();
    let before = directives.grants.len();
    directives.grants.retain(|g| {
        !(g.organisation.as_deref() == Some(organisation.as_str())
            && g.practitioner.as_deref() == Some(consultant.as_str()))
    });
    if directives.grants.len() != before {
        consent
            .set_in(unit, &consult.person_id, &directives, user)
            .await?;
    }
    let now = time::now();
    if consult.access_expires_at.is_some_and(|at| at > now) {
        consult.access_expires_at = Some(now);
    }
    Ok(())
}

fn event(
    event_type: EventType,
    consult: &Consult,
    at: &OrganisationCode,
    details: serde_json::Value,
) -> OutboxEvent {
    let mut payload = json!({
        "consult_id": consult.id.as_str(),
        "requesting_organisation_code": consult.requesting.as_str(),
        "consulting_organisation_code": consult.consulting.as_str(),
        "specialty": consult.specialty,
        "service_item_code": consult.service_item_code,
    });
    if let (Some(payload), serde_json::Value::Object(details)) = (payload.as_object_mut(), details) {
        payload.extend(details);
    }
    OutboxEvent::new(event_type, Some(&consult.person_id), Some(at), &payload)
}

/// The report as a submission set of one document, kept in the exchange, filed by the hospital
/// under the patient as the clinic named them (class LOINC 11488-4, consult note).
pub fn report_set(
    consult: &Consult,
    title: &str,
    content: &[u8],
    mime_type: &str,
    diagnoses: &[String],
) -> Result<SubmissionSet, Error> {
    if diagnoses.len() > 20 {
        return Err(Error::invalid("diagnoses", "has more than 20 codes"));
    }
    let event_codes = diagnoses
        .iter()
        .enumerate()
        .map(|(i, code)| Icd10Code::parse(code).field(&format!("diagnoses[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    let unique_id = format!("urn:hie:consult:{}:report", consult.id);
    let specialty: String = consult.specialty.chars().take(64).collect();
    let metadata = DocumentMetadata {
        unique_id: unique_id.clone(),
        source_patient: consult.patient.clone(),
        class_code: Code::checked("class_code", "LOINC", "11488-4", "Consult note")?,
        type_code: Code::checked("type_code", "LOINC", "11488-4", "会诊记录")?,
        format_code: Code::checked("mime_type", "urn:ietf:bcp:13", mime_type, "")?,
        confidentiality: Confidentiality::Normal,
        sensitive_category: None,
        event_codes,
        facility_type_code: Code::checked("facility_type", "urn:hie:organisation-kind", "hospital", "")?,
        practice_setting_code: Code::checked("specialty", "urn:hie:specialty", &specialty, "")?,
        creation_time: time::now(),
        service_start_time: None,
        service_stop_time: None,
        author: Author {
            person: consult.consultant.clone().unwrap_or_default(),
            institution: consult.consulting.clone(),
            role: "consultant".into(),
            specialty,
        },
        language_code: "zh-CN".into(),
        mime_type: mime_type.into(),
        hash: hie_core::digest::sha256_hex(content),
        size: content.len() as i64,
        repository: None,
        title: title.into(),
        legal_authenticator: String::new(),
        observations: Vec::new(),
    };
    Ok(SubmissionSet {
        unique_id: format!("{unique_id}-set"),
        source_organisation: consult.consulting.clone(),
        documents: vec![DocumentSubmission {
            metadata,
            content: Some(content.to_vec()),
        }],
        associations: Vec::new(),
    })
}
