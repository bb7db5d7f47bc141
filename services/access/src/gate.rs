//! The access gate: every read of a person's data asks it, and it decides (consent), records
//! (audit) and answers, in that order, so that no read escapes either. Reads are decided in
//! batches (one look-up of directives, one audit append for all of them), because on the hot path
//! (a reception desk resolving a card) the round trips, not the decisions, are the cost.

use hie_core::Error;
use hie_core::context::RequestContext;

use hie_core::outbox::OutboxRow;

use crate::domain::consent::{ConsentDirectives, ConsentPolicy, DataCategory, Decision, decide, refusal};
use crate::domain::{AuditEvent, Outcome};
use crate::store::AuditTrail;
use crate::store::consent::ConsentStore;

/// One read to decide: who asks (the context) to do what (the action) with which category of
/// whose data.
#[derive(Debug, Clone, Copy)]
pub struct Read<'a> {
    pub context: &'a RequestContext,
    pub action: &'a str,
    pub person_id: &'a str,
    pub category: DataCategory,
}

/// The outbox topic of an emergency override (break-the-glass), for the privacy officer.
pub const EMERGENCY_OVERRIDE_TOPIC: &str = "access.emergency_override";

/// The outbox event of a read only the emergency override permitted: ids and codes, no reason
/// text (the audit trail has it).
fn override_event(read: &Read<'_>) -> OutboxRow {
    OutboxRow::new(
        EMERGENCY_OVERRIDE_TOPIC,
        &serde_json::json!({
            "person_id": read.person_id,
            "organisation_code": read.context.organisation.as_ref().map(|o| o.to_string()),
            "user_id": read.context.user_id,
            "role": read.context.role.code(),
            "action": read.action,
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

    /// Decides every read, records every decision in the audit trail, and answers each: permitted,
    /// or `PERMISSION_DENIED` with the reason. The events are committed behind the answer
    /// ([`AuditTrail::record_behind`]): waiting for the commit tripled the cost of a resolve. The
    /// outer error is a failure of the whole (the database), when nothing may be answered.
    pub async fn decide_all(&self, reads: &[Read<'_>]) -> Result<Vec<Result<(), Error>>, Error> {
        let persons: Vec<&str> = reads.iter().map(|read| read.person_id).collect();
        let directives = self.consent.directives_of(&persons).await?;
        self.decide_all_given(reads, &directives).await
    }

    /// Like [`AccessGate::decide_all`], with each person's directives already read (joined to
    /// the caller's own look-up; see [`crate::store::consent::directive_columns`]).
    pub async fn decide_all_given(
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
            let person = Some(read.person_id.to_owned());
            events.push(AuditEvent::new(
                read.context,
                read.action,
                person.clone(),
                "person",
                person,
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
            for row in &overrides {
                row.insert(&mut conn).await?;
            }
        }
        self.audit.record_behind(events).await?;
        Ok(answers)
    }

    /// For a search: which of these persons the caller may see. Every person found is audited,
    /// the hidden ones as denied.
    pub async fn filter(
        &self,
        context: &RequestContext,
        action: &str,
        person_ids: &[String],
        category: DataCategory,
    ) -> Result<Vec<bool>, Error> {
        let reads: Vec<Read> = person_ids
            .iter()
            .map(|person_id| Read {
                context,
                action,
                person_id,
                category,
            })
            .collect();
        Ok(self.decide_all(&reads).await?.iter().map(Result::is_ok).collect())
    }
}
