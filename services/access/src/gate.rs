//! The access gate: every read of a person's data asks it, and it decides (consent), records
//! (audit) and answers, in that order, so that no read escapes either. Reads are decided in
//! batches (one look-up of directives, one audit append for all of them), because on the hot path
//! (a reception desk resolving a card) the round trips, not the decisions, are the cost.

use hie_core::Error;
use hie_core::context::RequestContext;

use hie_core::domain::OrganisationCode;
use hie_core::id::PersonId;
use hie_core::outbox::OutboxEvent;
use hie_core::vocabulary::{AuditAction, EventType};

use crate::domain::consent::{ConsentDirectives, ConsentPolicy, DataCategory, Decision, decide, refusal};
use crate::domain::{AuditEvent, Outcome};
use crate::store::AuditTrail;
use crate::store::consent::ConsentStore;

/// One decision to make: who asks (the context) to do what (the action) with which category of
/// whose data. Services ask through [`AccessGate::read`] (the read gate), which makes these.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Read<'a> {
    pub context: &'a RequestContext,
    pub action: AuditAction,
    pub person_id: &'a PersonId,
    pub category: DataCategory,
}

/// The outbox event of a read only the emergency override permitted: ids and codes, no reason
/// text (the audit trail has it).
fn override_event(read: &Read<'_>) -> OutboxEvent {
    OutboxEvent::new(
        EventType::EmergencyOverride,
        Some(read.person_id),
        read.context.organisation.as_ref(),
        &serde_json::json!({
            "person_id": read.person_id.as_str(),
            "organisation_code": read.context.organisation.as_ref().map(OrganisationCode::as_str),
            "user_id": read.context.user_id,
            "role": read.context.role.code(),
            "action": read.action.code(),
            "category": read.category.code(),
            "request_id": read.context.request_id,
        }),
    )
}

#[derive(Clone, Debug)]
pub struct AccessGate {
    consent: ConsentStore,
    audit: AuditTrail,
    policy: ConsentPolicy,
}

impl AccessGate {
    pub fn new(consent: ConsentStore, audit: AuditTrail, policy: ConsentPolicy) -> AccessGate {
        AccessGate {
            consent,
            audit,
            policy,
        }
    }

    pub fn audit(&self) -> &AuditTrail {
        &self.audit
    }

    pub fn consent(&self) -> &ConsentStore {
        &self.consent
    }

    /// Decides every read with each person's directives (looked up, or joined to the caller's
    /// own look-up; see [`crate::store::consent::directive_columns`]), records every decision in
    /// the audit trail, and answers each: permitted, or `PERMISSION_DENIED` with the reason. The
    /// events are committed behind the answer ([`AuditTrail::record_behind`]): waiting for the
    /// commit tripled the cost of a resolve. The outer error is a failure of the whole (the
    /// database), when nothing may be answered.
    pub(crate) async fn decide_all_given(
        &self,
        reads: &[Read<'_>],
        directives: &[ConsentDirectives],
    ) -> Result<Vec<Result<(), Error>>, Error> {
        if directives.len() != reads.len() {
            return Err(Error::Internal("reads and directives do not pair up".into()));
        }
        let now = hie_core::time::now();
        let mut answers = Vec::with_capacity(reads.len());
        let mut events = Vec::with_capacity(reads.len());
        let mut overrides = Vec::new();
        for (read, directives) in reads.iter().zip(directives) {
            let (outcome, answer) = match decide(read.context, read.category, directives, &self.policy, now) {
                Decision::Permit { emergency: true }
                    if refusal(read.context, read.category, directives, &self.policy, now).is_some() =>
                {
                    overrides.push(override_event(read));
                    (Outcome::Permitted, Ok(()))
                }
                Decision::Permit { .. } => (Outcome::Permitted, Ok(())),
                Decision::Deny(reason) => (
                    Outcome::Denied(reason.clone()),
                    Err(Error::PermissionDenied(reason)),
                ),
            };
            events.push(AuditEvent::new(
                read.context,
                read.action,
                Some(read.person_id),
                "person",
                Some(read.person_id.as_str().to_owned()),
                outcome,
            ));
            answers.push(answer);
        }
        if !overrides.is_empty() {
            // The privacy officer hears of every broken glass through the outbox, written before
            // the answer: overrides are rare, and one must never go unannounced.
            let mut conn = self
                .consent
                .database()
                .pool()
                .acquire()
                .await
                .map_err(Error::from)?;
            OutboxEvent::insert_all(&mut conn, &overrides).await?;
        }
        self.audit.record_behind(events).await?;
        Ok(answers)
    }
}
