//! The `hie.access.v1.AccessService` gRPC service.

use hie_core::context::{RequestContext, Role};
use hie_core::page::{PageSize, PageToken};
use hie_core::{Error, FieldError, ResultExt};
use hie_proto::access as proto;
use hie_proto::access::access_service_server::AccessService;
use tonic::{Request, Response, Status};

use crate::domain::{AuditEvent, Outcome};
use crate::store::{AuditFilter, AuditTrail};

#[derive(Clone, Debug)]
pub struct AccessGrpc {
    audit: AuditTrail,
}

impl AccessGrpc {
    pub fn new(audit: AuditTrail) -> AccessGrpc {
        AccessGrpc { audit }
    }

    pub fn into_server(self) -> proto::access_service_server::AccessServiceServer<AccessGrpc> {
        proto::access_service_server::AccessServiceServer::new(self)
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
            Some(token) => token
                .last_key()
                .parse::<i64>()
                .map_err(|_| Error::invalid("page_token", "is not a token this server issued"))?,
            None => i64::MAX,
        };
        let mut events = self.audit.events(filter, before, size.get() + 1).await?;
        let next = if events.len() as u32 > size.get() {
            events.truncate(size.get() as usize);
            events
                .last()
                .map(|(sequence, _)| PageToken::after(&sequence.to_string()).encode())
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok((
            events
                .iter()
                .map(|(sequence, event)| event_to_proto(*sequence, event))
                .collect(),
            next,
        ))
    }
}

#[tonic::async_trait]
impl AccessService for AccessGrpc {
    #[tracing::instrument(skip_all)]
    async fn patient_access_log(
        &self,
        request: Request<proto::PatientAccessLogRequest>,
    ) -> Result<Response<proto::PatientAccessLogResponse>, Status> {
        let context = RequestContext::of(&request)?;
        let request = request.into_inner();
        let person_id = parse_person_id(&request.person_id).field("person_id")?;
        // The log tells which hospitals a person visited: the person, a clerk helping them at a
        // desk, or a privacy officer may read it, and the reading is audited like any other.
        if !matches!(
            context.role,
            Role::Patient | Role::RegistrationClerk | Role::Administrator
        ) {
            let reason = format!("role {} may not read a patient's access log", context.role.code());
            let event = AuditEvent::new(
                &context,
                "access.patient_access_log",
                Some(person_id),
                "access_log",
                None,
                Outcome::Denied(reason.clone()),
            );
            self.audit.record(event).await?;
            return Err(Error::PermissionDenied(reason).into());
        }
        let filter = AuditFilter {
            person_id: Some(person_id.clone()),
            ..AuditFilter::default()
        };
        let (events, next_page_token) = self.page(&filter, request.page_size, &request.page_token).await?;
        let event = AuditEvent::new(
            &context,
            "access.patient_access_log",
            Some(person_id.clone()),
            "access_log",
            Some(person_id),
            Outcome::Permitted,
        );
        self.audit.record(event).await?;
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
        if context.role != Role::Administrator {
            return Err(Error::PermissionDenied(format!(
                "the audit trail is for privacy officers (role administrator), not role {}",
                context.role.code()
            ))
            .into());
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
                Some(id) => Some(parse_person_id(&id).field("person_id")?),
                None => None,
            },
            organisation: optional(&request.organisation_code).map(|c| c.to_ascii_uppercase()),
            user_id: optional(&request.user_id),
            outcome,
            from: time(&request.start_time),
            to: time(&request.end_time),
        };
        let (events, next_page_token) = self.page(&filter, request.page_size, &request.page_token).await?;
        Ok(Response::new(proto::QueryAuditResponse {
            events,
            next_page_token,
        }))
    }
}

fn parse_person_id(text: &str) -> Result<String, FieldError> {
    let text = text.trim();
    if text.is_empty() || text.len() > 64 || !text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(FieldError::new("is not a person id"));
    }
    Ok(text.to_owned())
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
