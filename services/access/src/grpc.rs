//! The `hie.access.v1.AccessService` gRPC service.

use std::sync::Arc;

use hie_core::context::{RequestContext, Role};
use hie_core::id::PersonId;
use hie_core::page::{PageSize, PageToken, next_page};
use hie_core::vocabulary::AuditAction;
use hie_core::{Error, ResultExt};
use hie_proto::access as proto;
use hie_proto::access::access_service_server::AccessService;
use tonic::{Request, Response, Status};

use crate::domain::consent::{ConsentDirectives, DataCategory, Grant};
use crate::domain::{AuditEvent, Outcome};
use crate::store::{AuditFilter, AuditPosition, AuditTrail};
use crate::{AccessGate, Subject};

/// Where a grant to a practitioner finds the organisation the practitioner works for: the
/// directory (which depends on this crate, so it is handed in).
#[tonic::async_trait]
pub trait PractitionerDirectory: Send + Sync + std::fmt::Debug {
    /// The code of the organisation the directory lists this practitioner under, or `None` when
    /// it does not list them.
    async fn organisation_of(&self, practitioner_id: &str) -> Result<Option<String>, Error>;
}

/// What the access service asks the population registry about a person (the registry depends on
/// this crate, so it is handed in).
#[tonic::async_trait]
pub trait PersonRegistry: Send + Sync + std::fmt::Debug {
    /// Whether an organisation keeps a record of a person: a registration clerk acts for a patient
    /// at the desk of an organisation that treats them, not for anyone in the region.
    async fn keeps_a_record_of(&self, organisation: &str, person_id: &PersonId) -> Result<bool, Error>;

    /// `None` when no such person exists; else the person it was merged into, if it was.
    async fn person_state(&self, person_id: &PersonId) -> Result<Option<Option<String>>, Error>;
}

/// The name `--services` knows the access service by.
pub const SERVICE_NAME: &str = "access";

#[derive(Clone, Debug)]
pub struct AccessGrpc {
    access: AccessGate,
    audit: AuditTrail,
    practitioners: Arc<dyn PractitionerDirectory>,
    persons: Arc<dyn PersonRegistry>,
}

impl AccessGrpc {
    pub fn new(
        access: AccessGate,
        practitioners: Arc<dyn PractitionerDirectory>,
        persons: Arc<dyn PersonRegistry>,
    ) -> AccessGrpc {
        AccessGrpc {
            audit: access.audit().clone(),
            access,
            practitioners,
            persons,
        }
    }

    /// Binds each grant to a practitioner to the organisation the directory lists them under: a
    /// grant holds only for calls from that organisation whose user is that practitioner, so that
    /// no other organisation can pose as them.
    async fn bind_practitioner_grants(&self, directives: &mut ConsentDirectives) -> Result<(), Error> {
        for (i, grant) in directives.grants.iter_mut().enumerate() {
            if let Some(practitioner) = &grant.practitioner {
                let organisation = self.practitioners.organisation_of(practitioner).await?;
                grant.organisation = Some(organisation.ok_or_else(|| {
                    Error::invalid(
                        format!("directives.grants[{i}].practitioner_id"),
                        "is not a practitioner in the directory",
                    )
                })?);
            }
        }
        Ok(())
    }

    /// The person must exist (`NOT_FOUND` otherwise) and, to have directives set, must not have
    /// been merged away (`FAILED_PRECONDITION` naming the person they were merged into, whose
    /// directives now govern). Asked only after the caller was found entitled, so that the answer
    /// tells nobody else whether the person exists.
    async fn require_person(&self, person_id: &PersonId, to_set: bool) -> Result<(), Error> {
        match self.persons.person_state(person_id).await? {
            None => Err(Error::NotFound(format!("person {person_id} does not exist"))),
            Some(Some(into)) if to_set => Err(Error::precondition(
                "person_id",
                format!("person {person_id} was merged into {into}; set the consent of {into}"),
            )),
            Some(_) => Ok(()),
        }
    }

    /// The access service as the server mounts it (`--services access`).
    pub fn module(self) -> hie_core::service::ServiceModule {
        hie_core::service::ServiceModule::new(
            SERVICE_NAME,
            proto::access_service_server::AccessServiceServer::new(self),
        )
    }

    /// The person's own business (their consent, their access log) is for the person (through a
    /// patient portal, and for themselves only), a clerk helping them at a desk, or an
    /// administrator; anyone else is refused, and the refusal is audited. Once the caller is
    /// entitled, the person must exist ([`Self::require_person`], `to_set` for a change).
    async fn require_patient_side(
        &self,
        context: &RequestContext,
        subject: &Subject,
        what: &str,
        to_set: bool,
    ) -> Result<(), Error> {
        let Some(person_id) = &subject.person_id else {
            return Err(Error::Internal("a patient-side call without its person".into()));
        };
        let refusal = match context.role {
            Role::Patient => context
                .require_acting_for(person_id.as_str())
                .err()
                .map(|e| e.to_string()),
            Role::Administrator => None,
            Role::RegistrationClerk => match &context.organisation {
                None => None,
                Some(organisation)
                    if self
                        .persons
                        .keeps_a_record_of(organisation.as_str(), person_id)
                        .await? =>
                {
                    None
                }
                // Worded alike whether or not the person exists, so that it tells nothing.
                Some(organisation) => Some(format!(
                    "a registration clerk may {what} only for a patient of their own organisation, and \
                     {organisation} keeps no record of person {person_id}"
                )),
            },
            role => Some(format!("role {} may not {what}", role.code())),
        };
        let Some(reason) = refusal else {
            return self.require_person(person_id, to_set).await;
        };
        Err(self.audit.refuse(context, subject, reason).await)
    }

    /// A page of events newest first, and the token of the next.
    async fn page(
        &self,
        filter: &AuditFilter,
        page_size: i32,
        page_token: &str,
    ) -> Result<(Vec<proto::AccessEvent>, String), Error> {
        let size = PageSize::parse(page_size).field("page_size")?;
        let before = match PageToken::parse(page_token).field("page_token")? {
            Some(token) => AuditPosition::parse(token.last_key())
                .ok_or_else(|| Error::invalid("page_token", "is not a token this server issued"))?,
            None => AuditPosition::START,
        };
        let mut events: Vec<(String, proto::AccessEvent)> = self
            .audit
            .events(filter, before, size.get() + 1)
            .await?
            .iter()
            .map(|(position, event)| (position.key(), event_to_proto(position.sequence, event)))
            .collect();
        let next = next_page(&mut events, size, |(key, _)| key.as_str());
        Ok((
            events.into_iter().map(|(_, event)| event).collect(),
            next.map(|token| token.encode()).unwrap_or_default(),
        ))
    }
}

#[tonic::async_trait]
impl AccessService for AccessGrpc {
    #[tracing::instrument(skip_all)]
    async fn set_consent(
        &self,
        request: Request<proto::SetConsentRequest>,
    ) -> Result<Response<proto::SetConsentResponse>, Status> {
        let context = RequestContext::of(&request)?;
        let request = request.into_inner();
        let person_id = PersonId::parse(&request.person_id).field("person_id")?;
        let mut directives = directives_from_proto(request.directives)?;
        let subject = Subject::new(AuditAction::SetConsent, "consent")
            .person(&person_id)
            .resource(person_id.as_str());
        self.require_patient_side(&context, &subject, "set a patient's consent", true)
            .await?;
        self.bind_practitioner_grants(&mut directives).await?;
        let consent = self.access.consent();
        self.audit
            .write(&context, subject, Ok(()), async |unit| {
                consent
                    .set_in(unit, &person_id, &directives, &context.user_id)
                    .await
            })
            .await?;
        Ok(Response::new(proto::SetConsentResponse {
            directives: Some(directives_to_proto(&directives)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_consent(
        &self,
        request: Request<proto::GetConsentRequest>,
    ) -> Result<Response<proto::GetConsentResponse>, Status> {
        let context = RequestContext::of(&request)?;
        let person_id = PersonId::parse(&request.into_inner().person_id).field("person_id")?;
        let subject = Subject::new(AuditAction::GetConsent, "consent")
            .person(&person_id)
            .resource(person_id.as_str());
        self.require_patient_side(&context, &subject, "read a patient's consent", false)
            .await?;
        let directives = self.access.consent().directives(person_id.as_str()).await?;
        self.audit
            .record(subject.event(&context, Outcome::Permitted))
            .await?;
        Ok(Response::new(proto::GetConsentResponse {
            directives: Some(directives_to_proto(&directives)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn patient_access_log(
        &self,
        request: Request<proto::PatientAccessLogRequest>,
    ) -> Result<Response<proto::PatientAccessLogResponse>, Status> {
        let context = RequestContext::of(&request)?;
        let request = request.into_inner();
        let person_id = PersonId::parse(&request.person_id).field("person_id")?;
        // The log tells which hospitals a person visited: the person, a clerk helping them at a
        // desk, or a privacy officer may read it, and the reading is audited like any other.
        let subject = Subject::new(AuditAction::PatientAccessLog, "access_log").person(&person_id);
        self.require_patient_side(&context, &subject, "read a patient's access log", false)
            .await?;
        let filter = AuditFilter {
            person_id: Some(person_id.as_str().to_owned()),
            ..AuditFilter::default()
        };
        let (events, next_page_token) = self.page(&filter, request.page_size, &request.page_token).await?;
        let subject = subject.resource(person_id.as_str());
        self.audit
            .record(subject.event(&context, Outcome::Permitted))
            .await?;
        Ok(Response::new(proto::PatientAccessLogResponse {
            events,
            next_page_token,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn query_audit(
        &self,
        request: Request<proto::QueryAuditRequest>,
    ) -> Result<Response<proto::QueryAuditResponse>, Status> {
        let context = RequestContext::of(&request)?;
        let subject = Subject::new(AuditAction::QueryAudit, "audit_trail");
        // The trail is for the region's privacy officers (role administrator).
        if let Err(reason) = context.administrators_only("query the audit trail") {
            return Err(self.audit.refuse(&context, &subject, reason).await.into());
        }
        let request = request.into_inner();
        let optional = |text: &str| Some(text.trim().to_owned()).filter(|t| !t.is_empty());
        let outcome = optional(&request.outcome);
        if let Some(outcome) = &outcome
            && !matches!(outcome.as_str(), "permitted" | "denied" | "failed")
        {
            return Err(Error::invalid("outcome", "expected permitted, denied or failed").into());
        }
        let time = |t: &Option<prost_types::Timestamp>| {
            t.as_ref()
                .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32))
        };
        let filter = AuditFilter {
            person_id: match optional(&request.person_id) {
                Some(id) => Some(PersonId::parse(&id).field("person_id")?.as_str().to_owned()),
                None => None,
            },
            organisation: optional(&request.organisation_code).map(|c| c.to_ascii_uppercase()),
            user_id: optional(&request.user_id),
            outcome,
            from: time(&request.start_time),
            to: time(&request.end_time),
        };
        let (events, next_page_token) = self.page(&filter, request.page_size, &request.page_token).await?;
        // Who read the trail is itself in the trail: the privacy officer's queries are audited too.
        self.audit
            .record(subject.event(&context, Outcome::Permitted))
            .await?;
        Ok(Response::new(proto::QueryAuditResponse {
            events,
            next_page_token,
        }))
    }
}

fn event_to_proto(sequence: i64, event: &AuditEvent) -> proto::AccessEvent {
    proto::AccessEvent {
        sequence,
        time: Some(hie_proto::timestamp(event.occurred_at)),
        organisation_code: event.organisation.clone().unwrap_or_default(),
        user_id: event.user_id.clone(),
        role: event.role.clone(),
        purpose: event.purpose.clone(),
        reason: event.reason.clone().unwrap_or_default(),
        action: event.action.clone(),
        person_id: event.person_id.clone().unwrap_or_default(),
        resource_type: event.resource_type.clone(),
        resource_id: event.resource_id.clone().unwrap_or_default(),
        outcome: event.outcome.code().to_owned(),
        outcome_reason: event.outcome.reason().unwrap_or_default().to_owned(),
        emergency: event.emergency,
        request_id: event.request_id.clone(),
    }
}

fn directives_from_proto(message: Option<proto::ConsentDirectives>) -> Result<ConsentDirectives, Error> {
    let d = message.ok_or_else(|| Error::invalid("directives", "is required"))?;
    let organisations =
        |codes: &[String], field: &str| -> Result<std::collections::BTreeSet<String>, Error> {
            codes
                .iter()
                .enumerate()
                .map(|(i, code)| {
                    hie_core::domain::OrganisationCode::parse(code)
                        .map(|c| c.to_string())
                        .field(&format!("directives.{field}[{i}]"))
                })
                .collect()
        };
    let sharing = match proto::Sharing::try_from(d.sharing) {
        Ok(proto::Sharing::Unspecified) => None,
        Ok(proto::Sharing::Share) => Some(true),
        Ok(proto::Sharing::Withhold) => Some(false),
        Err(_) => {
            return Err(Error::invalid(
                "directives.sharing",
                format!("{} is not a sharing choice", d.sharing),
            ));
        }
    };
    let consented_categories = d
        .consented_categories
        .iter()
        .enumerate()
        .map(|(i, code)| {
            DataCategory::sensitive_from_code(code.trim()).ok_or_else(|| {
                Error::invalid(
                    format!("directives.consented_categories[{i}]"),
                    "expected mental_health, hiv_sti, reproductive_health or substance_use",
                )
            })
        })
        .collect::<Result<_, _>>()?;
    let grants = d
        .grants
        .iter()
        .enumerate()
        .map(|(i, g)| {
            let field = format!("directives.grants[{i}]");
            let organisation = match g.organisation_code.trim() {
                "" => None,
                code => Some(
                    hie_core::domain::OrganisationCode::parse(code)
                        .field(&format!("{field}.organisation_code"))?
                        .to_string(),
                ),
            };
            let practitioner = Some(g.practitioner_id.trim().to_owned()).filter(|p| !p.is_empty());
            if let Some(p) = &practitioner
                && (p.len() > 64 || p.contains(['|', ';', ',']))
            {
                return Err(Error::invalid(
                    format!("{field}.practitioner_id"),
                    "at most 64 characters, without | ; or ,",
                ));
            }
            if organisation.is_none() == practitioner.is_none() {
                return Err(Error::invalid(
                    field,
                    "name exactly one of organisation_code and practitioner_id",
                ));
            }
            let expires_at = g
                .expire_time
                .as_ref()
                .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32))
                .ok_or_else(|| Error::invalid(format!("{field}.expire_time"), "is required"))?;
            Ok(Grant {
                organisation,
                practitioner,
                expires_at,
            })
        })
        .collect::<Result<_, Error>>()?;
    Ok(ConsentDirectives {
        sharing,
        allowed_organisations: organisations(&d.allowed_organisations, "allowed_organisations")?,
        denied_organisations: organisations(&d.denied_organisations, "denied_organisations")?,
        consented_categories,
        grants,
    })
}

fn directives_to_proto(d: &ConsentDirectives) -> proto::ConsentDirectives {
    proto::ConsentDirectives {
        sharing: match d.sharing {
            None => proto::Sharing::Unspecified,
            Some(true) => proto::Sharing::Share,
            Some(false) => proto::Sharing::Withhold,
        }
        .into(),
        allowed_organisations: d.allowed_organisations.iter().cloned().collect(),
        denied_organisations: d.denied_organisations.iter().cloned().collect(),
        consented_categories: d
            .consented_categories
            .iter()
            .map(|c| c.code().to_owned())
            .collect(),
        grants: d
            .grants
            .iter()
            .map(|g| proto::ConsentGrant {
                organisation_code: g.organisation.clone().unwrap_or_default(),
                practitioner_id: g.practitioner.clone().unwrap_or_default(),
                expire_time: Some(hie_proto::timestamp(g.expires_at)),
            })
            .collect(),
    }
}
