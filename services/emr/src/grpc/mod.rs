//! The `hie.emr.v1.EmrRegistry` gRPC service: maps proto messages to domain types, with every
//! malformed field answered as `INVALID_ARGUMENT` naming it, and domain results back. The client
//! of hospitals' gateways is in `gateway_client`.

pub mod gateway_client;

use chrono::{DateTime, Utc};
use hie_access::domain::consent::DataCategory;
use hie_core::context::RequestContext;
use hie_core::domain::{Icd10Code, OrganisationCode};
use hie_core::page::{PageSize, PageToken};
use hie_core::service::ServiceModule;
use hie_core::{Error, ResultExt, time};
use hie_population::grpc::{demographics_to_proto, parse_identifier};
use hie_proto::emr as proto;
use hie_proto::emr::emr_registry_server::EmrRegistry;
use hie_records::domain::payload::{diagnoses, text};
use hie_records::grpc::{
    allergy_to_proto, immunisation_to_proto, medication_to_proto, person_selector, vital_signs_to_proto,
};
use tonic::{Request, Response, Status};

use crate::domain::encounters::Encounter;
use crate::domain::{
    Association, AssociationKind, Author, AvailabilityStatus, Code, Confidentiality, Document,
    DocumentMetadata, DocumentQuery, DocumentSubmission, EmrService, EncounterDraft, EncounterKind,
    Observation, PatientSummary, SubmissionSet,
};

/// The name `--services` knows the EMR registry by.
pub const SERVICE_NAME: &str = "emr";

/// The EMR registry as the server mounts it.
pub fn module(emr: EmrService) -> ServiceModule {
    ServiceModule::new(
        SERVICE_NAME,
        proto::emr_registry_server::EmrRegistryServer::new(EmrGrpc { emr })
            .max_decoding_message_size(MAX_MESSAGE_BYTES),
    )
}

/// The largest request the registry reads: a submission set of documents with their content.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

#[derive(Clone, Debug)]
struct EmrGrpc {
    emr: EmrService,
}

#[tonic::async_trait]
impl EmrRegistry for EmrGrpc {
    #[tracing::instrument(skip_all)]
    async fn register_document_set(
        &self,
        request: Request<proto::RegisterDocumentSetRequest>,
    ) -> Result<Response<proto::RegisterDocumentSetResponse>, Status> {
        let context = RequestContext::of(&request)?;
        let message = request.into_inner();
        let set = SubmissionSet {
            unique_id: message.submission_set_unique_id.trim().to_owned(),
            source_organisation: context
                .submitting_organisation("source_organisation_code", &message.source_organisation_code)?,
            documents: message
                .documents
                .into_iter()
                .enumerate()
                .map(|(i, d)| submission(&format!("documents[{i}]"), d))
                .collect::<Result<_, _>>()?,
            associations: message
                .associations
                .into_iter()
                .enumerate()
                .map(|(i, a)| association(&format!("associations[{i}]"), a))
                .collect::<Result<_, _>>()?,
        };
        let registered = self.emr.register_set(&context, set).await?;
        tracing::info!(
            documents = registered.documents.len(),
            changed = registered.changed,
            "document set registered"
        );
        Ok(Response::new(proto::RegisterDocumentSetResponse {
            documents: registered.documents.iter().map(document_to_proto).collect(),
            deprecated_unique_ids: registered.deprecated,
            changed: registered.changed,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn find_documents(
        &self,
        request: Request<proto::FindDocumentsRequest>,
    ) -> Result<Response<proto::FindDocumentsResponse>, Status> {
        let context = RequestContext::of(&request)?;
        let m = request.into_inner();
        let query = DocumentQuery {
            person: person_selector("person", m.person)?,
            statuses: m
                .statuses
                .iter()
                .enumerate()
                .map(|(i, s)| match proto::AvailabilityStatus::try_from(*s) {
                    Ok(proto::AvailabilityStatus::Approved) => Ok(AvailabilityStatus::Approved),
                    Ok(proto::AvailabilityStatus::Deprecated) => Ok(AvailabilityStatus::Deprecated),
                    _ => Err(Error::invalid(
                        format!("statuses[{i}]"),
                        "expected APPROVED or DEPRECATED",
                    )),
                })
                .collect::<Result<_, _>>()?,
            class_codes: trimmed(m.class_codes),
            type_codes: trimmed(m.type_codes),
            creation_from: m.creation_from.map(|t| instant("creation_from", t)).transpose()?,
            creation_to: m.creation_to.map(|t| instant("creation_to", t)).transpose()?,
            service_from: m.service_from.map(|t| instant("service_from", t)).transpose()?,
            service_to: m.service_to.map(|t| instant("service_to", t)).transpose()?,
            author_institutions: m
                .author_institutions
                .iter()
                .enumerate()
                .map(|(i, o)| OrganisationCode::parse(o).field(&format!("author_institutions[{i}]")))
                .collect::<Result<_, _>>()?,
            event_codes: diagnoses("event_codes", &m.event_codes)?,
            confidentiality: m
                .confidentiality_codes
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    Confidentiality::parse(c).ok_or_else(|| {
                        Error::invalid(format!("confidentiality_codes[{i}]"), "expected N, R or V")
                    })
                })
                .collect::<Result<_, _>>()?,
            page_size: PageSize::parse_or_default(m.page_size).field("page_size")?,
            page_token: PageToken::parse(&m.page_token).field("page_token")?,
        };
        let (person, documents, next, withheld) = self.emr.find_documents(&context, &query).await?;
        Ok(Response::new(proto::FindDocumentsResponse {
            person_id: person.as_str().to_owned(),
            documents: documents.iter().map(document_to_proto).collect(),
            next_page_token: next.map(|t| t.encode()).unwrap_or_default(),
            some_withheld: withheld,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn retrieve_document(
        &self,
        request: Request<proto::RetrieveDocumentRequest>,
    ) -> Result<Response<proto::RetrieveDocumentResponse>, Status> {
        let context = RequestContext::of(&request)?;
        let unique_id = request.into_inner().unique_id;
        let unique_id = text("unique_id", &unique_id, 128, true)?;
        let retrieved = self.emr.retrieve(&context, &unique_id).await?;
        Ok(Response::new(proto::RetrieveDocumentResponse {
            entry: Some(document_to_proto(&retrieved.document)),
            content: retrieved.content,
            retrieved_from: retrieved
                .retrieved_from
                .map(|o| o.to_string())
                .unwrap_or_default(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn register_encounter(
        &self,
        request: Request<proto::RegisterEncounterRequest>,
    ) -> Result<Response<proto::RegisterEncounterResponse>, Status> {
        let context = RequestContext::of(&request)?;
        let m = request.into_inner();
        let organisation = context.submitting_organisation("organisation_code", &m.organisation_code)?;
        let person = person_selector("person", m.person)?;
        let draft = encounter_draft(organisation, m.encounter)?;
        let (encounter, changed) = self.emr.register_encounter(&context, &person, draft).await?;
        tracing::info!(
            kind = encounter.draft.kind.code(),
            changed,
            "encounter registered"
        );
        Ok(Response::new(proto::RegisterEncounterResponse {
            encounter: Some(encounter_to_proto(&encounter)),
            changed,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_encounters(
        &self,
        request: Request<proto::ListEncountersRequest>,
    ) -> Result<Response<proto::ListEncountersResponse>, Status> {
        let context = RequestContext::of(&request)?;
        let m = request.into_inner();
        let person = person_selector("person", m.person)?;
        let size = PageSize::parse_or_default(m.page_size).field("page_size")?;
        let token = PageToken::parse(&m.page_token).field("page_token")?;
        let (person, encounters, next, withheld) =
            self.emr.encounters(&context, &person, size, token).await?;
        Ok(Response::new(proto::ListEncountersResponse {
            person_id: person.as_str().to_owned(),
            encounters: encounters.iter().map(encounter_to_proto).collect(),
            next_page_token: next.map(|t| t.encode()).unwrap_or_default(),
            some_withheld: withheld,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_patient_summary(
        &self,
        request: Request<proto::GetPatientSummaryRequest>,
    ) -> Result<Response<proto::GetPatientSummaryResponse>, Status> {
        let context = RequestContext::of(&request)?;
        let person = person_selector("person", request.into_inner().person)?;
        let summary = self.emr.summary(&context, &person).await?;
        Ok(Response::new(proto::GetPatientSummaryResponse {
            summary: Some(summary_to_proto(&summary)),
        }))
    }
}

fn trimmed(values: Vec<String>) -> Vec<String> {
    values.into_iter().map(|v| v.trim().to_owned()).collect()
}

fn instant(field: &str, timestamp: prost_types::Timestamp) -> Result<DateTime<Utc>, Error> {
    let nanos =
        u32::try_from(timestamp.nanos).map_err(|_| Error::invalid(field, "has negative nanoseconds"))?;
    DateTime::from_timestamp(timestamp.seconds, nanos).ok_or_else(|| Error::invalid(field, "is out of range"))
}

fn required_instant(field: &str, timestamp: Option<prost_types::Timestamp>) -> Result<DateTime<Utc>, Error> {
    instant(
        field,
        timestamp.ok_or_else(|| Error::invalid(field, "is required"))?,
    )
}

fn code(field: &str, message: Option<proto::Code>) -> Result<Code, Error> {
    let m = message.ok_or_else(|| Error::invalid(field, "is required"))?;
    Code::checked(field, &m.scheme, &m.code, &m.display)
}

fn submission(field: &str, message: proto::DocumentSubmission) -> Result<DocumentSubmission, Error> {
    let entry = message
        .entry
        .ok_or_else(|| Error::invalid(format!("{field}.entry"), "is required"))?;
    let metadata = document_metadata(&format!("{field}.entry"), entry)?;
    let content = (!message.content.is_empty()).then_some(message.content);
    Ok(DocumentSubmission { metadata, content })
}

fn document_metadata(field: &str, m: proto::DocumentEntry) -> Result<DocumentMetadata, Error> {
    let at = |name: &str| format!("{field}.{name}");
    let author = m
        .author
        .ok_or_else(|| Error::invalid(at("author"), "is required"))?;
    let category = match m.sensitive_category.trim() {
        "" => None,
        named => Some(DataCategory::sensitive_from_code(named).ok_or_else(|| {
            Error::invalid(
                at("sensitive_category"),
                "expected mental_health, hiv_sti, reproductive_health or substance_use",
            )
        })?),
    };
    let repository = match m.repository_organisation_code.trim() {
        "" => None,
        code => Some(OrganisationCode::parse(code).field(&at("repository_organisation_code"))?),
    };
    Ok(DocumentMetadata {
        unique_id: m.unique_id.trim().to_owned(),
        source_patient: parse_identifier(m.source_patient_id, &at("source_patient_id"))?,
        class_code: code(&at("class_code"), m.class_code)?,
        type_code: code(&at("type_code"), m.type_code)?,
        format_code: code(&at("format_code"), m.format_code)?,
        confidentiality: Confidentiality::parse(&m.confidentiality_code)
            .ok_or_else(|| Error::invalid(at("confidentiality_code"), "expected N, R or V"))?,
        sensitive_category: category,
        event_codes: diagnoses(&at("event_codes"), &m.event_codes)?,
        facility_type_code: code(
            &at("healthcare_facility_type_code"),
            m.healthcare_facility_type_code,
        )?,
        practice_setting_code: code(&at("practice_setting_code"), m.practice_setting_code)?,
        creation_time: required_instant(&at("creation_time"), m.creation_time)?,
        service_start_time: m
            .service_start_time
            .map(|t| instant(&at("service_start_time"), t))
            .transpose()?,
        service_stop_time: m
            .service_stop_time
            .map(|t| instant(&at("service_stop_time"), t))
            .transpose()?,
        author: Author {
            person: text(&at("author.person"), &author.person, 100, false)?,
            institution: OrganisationCode::parse(&author.institution).field(&at("author.institution"))?,
            role: text(&at("author.role"), &author.role, 64, false)?,
            specialty: text(&at("author.specialty"), &author.specialty, 64, false)?,
        },
        language_code: {
            let language = text(&at("language_code"), &m.language_code, 35, true)?;
            if language.len() < 2 || !language.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                return Err(Error::invalid(
                    at("language_code"),
                    "expected a BCP 47 tag such as zh-CN",
                ));
            }
            language
        },
        mime_type: {
            let mime = text(&at("mime_type"), &m.mime_type, 100, true)?;
            if !mime.contains('/') || mime.contains(char::is_whitespace) {
                return Err(Error::invalid(
                    at("mime_type"),
                    "expected a MIME type such as text/plain",
                ));
            }
            mime
        },
        hash: m.hash.trim().to_owned(),
        size: m.size,
        repository,
        title: text(&at("title"), &m.title, 200, true)?,
        legal_authenticator: text(&at("legal_authenticator"), &m.legal_authenticator, 100, false)?,
        observations: m
            .observations
            .iter()
            .enumerate()
            .map(|(i, o)| {
                let field = at(&format!("observations[{i}]"));
                if !o.value.is_finite() {
                    return Err(Error::invalid(
                        format!("{field}.value"),
                        "must be a finite number",
                    ));
                }
                Ok(Observation {
                    code: text(&format!("{field}.code"), &o.code, 40, true)?,
                    name: text(&format!("{field}.name"), &o.name, 100, true)?,
                    value: o.value,
                    unit: text(&format!("{field}.unit"), &o.unit, 20, true)?,
                })
            })
            .collect::<Result<_, _>>()?,
    })
}

fn association(field: &str, m: proto::Association) -> Result<Association, Error> {
    let kind = match proto::AssociationKind::try_from(m.kind) {
        Ok(proto::AssociationKind::Replace) => AssociationKind::Replace,
        Ok(proto::AssociationKind::Append) => AssociationKind::Append,
        Ok(proto::AssociationKind::Transform) => AssociationKind::Transform,
        _ => {
            return Err(Error::invalid(
                format!("{field}.kind"),
                "expected REPLACE, APPEND or TRANSFORM",
            ));
        }
    };
    Ok(Association {
        kind,
        source_unique_id: text(
            &format!("{field}.source_unique_id"),
            &m.source_unique_id,
            128,
            true,
        )?,
        target_unique_id: text(
            &format!("{field}.target_unique_id"),
            &m.target_unique_id,
            128,
            true,
        )?,
    })
}

fn code_to_proto(code: &Code) -> proto::Code {
    proto::Code {
        scheme: code.scheme.clone(),
        code: code.code.clone(),
        display: code.display.clone(),
    }
}

fn observation_to_proto(o: &Observation) -> proto::Observation {
    proto::Observation {
        code: o.code.clone(),
        name: o.name.clone(),
        value: o.value,
        unit: o.unit.clone(),
    }
}

fn codes(codes: &[Icd10Code]) -> Vec<String> {
    codes.iter().map(|c| c.as_str().to_owned()).collect()
}

pub fn document_to_proto(document: &Document) -> proto::DocumentEntry {
    let m = &document.metadata;
    proto::DocumentEntry {
        unique_id: m.unique_id.clone(),
        entry_id: document.id.as_str().to_owned(),
        person_id: document.person_id.as_str().to_owned(),
        source_patient_id: Some(hie_proto::population::Identifier {
            system: m.source_patient.system_uri(),
            value: m.source_patient.value().to_owned(),
        }),
        class_code: Some(code_to_proto(&m.class_code)),
        type_code: Some(code_to_proto(&m.type_code)),
        format_code: Some(code_to_proto(&m.format_code)),
        confidentiality_code: m.confidentiality.code().to_owned(),
        sensitive_category: m
            .sensitive_category
            .map(|c| c.code().to_owned())
            .unwrap_or_default(),
        event_codes: codes(&m.event_codes),
        healthcare_facility_type_code: Some(code_to_proto(&m.facility_type_code)),
        practice_setting_code: Some(code_to_proto(&m.practice_setting_code)),
        creation_time: Some(hie_proto::timestamp(m.creation_time)),
        service_start_time: m.service_start_time.map(hie_proto::timestamp),
        service_stop_time: m.service_stop_time.map(hie_proto::timestamp),
        author: Some(proto::Author {
            person: m.author.person.clone(),
            institution: m.author.institution.to_string(),
            role: m.author.role.clone(),
            specialty: m.author.specialty.clone(),
        }),
        language_code: m.language_code.clone(),
        mime_type: m.mime_type.clone(),
        hash: m.hash.clone(),
        size: m.size,
        repository_organisation_code: m.repository.as_ref().map(|o| o.to_string()).unwrap_or_default(),
        availability_status: match document.status {
            AvailabilityStatus::Approved => proto::AvailabilityStatus::Approved,
            AvailabilityStatus::Deprecated => proto::AvailabilityStatus::Deprecated,
        }
        .into(),
        title: m.title.clone(),
        legal_authenticator: m.legal_authenticator.clone(),
        observations: m.observations.iter().map(observation_to_proto).collect(),
        registered_at: Some(hie_proto::timestamp(document.registered_at)),
        source_organisation_code: document.source_organisation.to_string(),
    }
}

/// Parses a visit as the registry takes it (also used by the HL7 adapter to check a visit before
/// it acknowledges the message).
pub fn encounter_draft(
    organisation: OrganisationCode,
    message: Option<proto::Encounter>,
) -> Result<EncounterDraft, Error> {
    let m = message.ok_or_else(|| Error::invalid("encounter", "is required"))?;
    let kind = match proto::EncounterKind::try_from(m.kind) {
        Ok(proto::EncounterKind::Outpatient) => EncounterKind::Outpatient,
        Ok(proto::EncounterKind::Emergency) => EncounterKind::Emergency,
        Ok(proto::EncounterKind::Admission) => EncounterKind::Admission,
        Ok(proto::EncounterKind::Transfer) => EncounterKind::Transfer,
        Ok(proto::EncounterKind::Discharge) => EncounterKind::Discharge,
        Ok(proto::EncounterKind::Cancelled) => EncounterKind::Cancelled,
        _ => {
            return Err(Error::invalid(
                "encounter.kind",
                "expected OUTPATIENT, EMERGENCY, ADMISSION, TRANSFER, DISCHARGE or CANCELLED",
            ));
        }
    };
    EncounterDraft::new(
        organisation,
        &m.visit_number,
        kind,
        &m.department,
        &m.attending_practitioner,
        diagnoses("encounter.diagnoses", &m.diagnoses)?,
        required_instant("encounter.started_at", m.started_at)?,
        m.ended_at.map(|t| instant("encounter.ended_at", t)).transpose()?,
    )
}

pub fn encounter_to_proto(encounter: &Encounter) -> proto::Encounter {
    let d = &encounter.draft;
    proto::Encounter {
        encounter_id: encounter.id.as_str().to_owned(),
        person_id: encounter.person_id.as_str().to_owned(),
        organisation_code: d.organisation.to_string(),
        visit_number: d.visit_number.clone(),
        kind: match d.kind {
            EncounterKind::Outpatient => proto::EncounterKind::Outpatient,
            EncounterKind::Emergency => proto::EncounterKind::Emergency,
            EncounterKind::Admission => proto::EncounterKind::Admission,
            EncounterKind::Transfer => proto::EncounterKind::Transfer,
            EncounterKind::Discharge => proto::EncounterKind::Discharge,
            EncounterKind::Cancelled => proto::EncounterKind::Cancelled,
        }
        .into(),
        department: d.department.clone(),
        attending_practitioner: d.attending_practitioner.clone(),
        diagnoses: codes(&d.diagnoses),
        started_at: Some(hie_proto::timestamp(d.started_at)),
        ended_at: d.ended_at.map(hie_proto::timestamp),
        updated_at: Some(hie_proto::timestamp(encounter.updated_at)),
    }
}

pub fn summary_to_proto(summary: &PatientSummary) -> proto::PatientSummary {
    proto::PatientSummary {
        person_id: summary.person_id.as_str().to_owned(),
        demographics: Some(demographics_to_proto(&summary.demographics)),
        allergies: summary.allergies.iter().map(allergy_to_proto).collect(),
        active_problems: summary
            .active_problems
            .iter()
            .map(|p| proto::Problem {
                code: p.value.as_str().to_owned(),
                last_recorded_at: Some(hie_proto::timestamp(p.at)),
            })
            .collect(),
        current_medications: summary
            .current_medications
            .iter()
            .map(|m| proto::SummaryMedication {
                medication: Some(medication_to_proto(&m.value)),
                recorded_at: Some(hie_proto::timestamp(m.at)),
            })
            .collect(),
        latest_encounters: summary.latest_encounters.iter().map(encounter_to_proto).collect(),
        immunisations: summary
            .immunisations
            .iter()
            .map(|i| proto::SummaryImmunisation {
                immunisation: Some(immunisation_to_proto(&i.value)),
                given_on: time::date_in_china(i.at).to_string(),
            })
            .collect(),
        latest_vital_signs: summary
            .latest_vital_signs
            .as_ref()
            .map(|v| proto::LatestVitalSigns {
                vital_signs: Some(vital_signs_to_proto(&v.value)),
                measured_at: Some(hie_proto::timestamp(v.at)),
            }),
        latest_results: summary
            .latest_results
            .iter()
            .map(|r| proto::SummaryResult {
                observation: Some(observation_to_proto(&r.value)),
                observed_at: Some(hie_proto::timestamp(r.at)),
            })
            .collect(),
        some_withheld: summary.some_withheld,
    }
}
