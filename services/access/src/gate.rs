//! The access gate: every read of a person's data asks it, and it decides (consent), records
//! (audit) and answers, in that order, so that no read escapes either.

use hie_core::Error;
use hie_core::context::RequestContext;

use crate::domain::consent::{ConsentPolicy, DataCategory, Decision, decide};
use crate::domain::{AuditEvent, Outcome};
use crate::store::AuditTrail;
use crate::store::consent::ConsentStore;

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

    async fn decision(
        &self,
        context: &RequestContext,
        person_id: &str,
        category: DataCategory,
    ) -> Result<Decision, Error> {
        let directives = self.consent.directives(person_id).await?;
        Ok(decide(
            context,
            category,
            &directives,
            &self.policy,
            hie_core::time::now(),
        ))
    }

    /// Permits a read of one person's data, or refuses it with the reason; audited either way.
    pub async fn read(
        &self,
        context: &RequestContext,
        action: &str,
        person_id: &str,
        category: DataCategory,
    ) -> Result<(), Error> {
        let decision = self.decision(context, person_id, category).await?;
        let (outcome, result) = match decision {
            Decision::Permit { .. } => (Outcome::Permitted, Ok(())),
            Decision::Deny(reason) => (
                Outcome::Denied(reason.clone()),
                Err(Error::PermissionDenied(reason)),
            ),
        };
        let person = Some(person_id.to_owned());
        self.audit
            .record(AuditEvent::new(
                context,
                action,
                person.clone(),
                "person",
                person,
                outcome,
            ))
            .await?;
        result
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
        let mut visible = Vec::with_capacity(person_ids.len());
        let mut events = Vec::with_capacity(person_ids.len());
        for person_id in person_ids {
            let outcome = match self.decision(context, person_id, category).await? {
                Decision::Permit { .. } => Outcome::Permitted,
                Decision::Deny(reason) => Outcome::Denied(reason),
            };
            visible.push(outcome == Outcome::Permitted);
            let person = Some(person_id.clone());
            events.push(AuditEvent::new(
                context,
                action,
                person.clone(),
                "person",
                person,
                outcome,
            ));
        }
        self.audit.record_all(events).await?;
        Ok(visible)
    }
}
