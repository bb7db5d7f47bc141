//! An audit event's own columns: the one mapping between [`AuditEvent`] and how the trail stores
//! it, shared by the chained rows of `audit_events` (read back for queries and verification,
//! written as JSON by the append statements) and the staged events of `audit_staged` (JSON).

use hie_core::time;
use serde::{Deserialize, Deserializer, Serialize};
use sqlx::FromRow;

use crate::domain::{AuditEvent, Outcome};

#[derive(Debug, Clone, FromRow, Serialize, Deserialize)]
pub(super) struct EventColumns {
    pub occurred_at: i64,
    pub request_id: String,
    pub organisation_code: Option<String>,
    pub user_id: String,
    pub role: String,
    pub purpose: String,
    pub reason: Option<String>,
    pub action: String,
    pub person_id: Option<String>,
    pub resource_type: String,
    pub resource_id: Option<String>,
    pub outcome: String,
    pub outcome_reason: Option<String>,
    /// 0 or 1, as the table stores it (`SMALLINT`).
    #[serde(deserialize_with = "flag")]
    pub emergency: i64,
}

/// A flag as 0/1, or as `true`/`false` (how events staged before this mapping kept it).
fn flag<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Flag {
        Number(i64),
        Bool(bool),
    }
    Ok(match Flag::deserialize(deserializer)? {
        Flag::Number(n) => n,
        Flag::Bool(b) => i64::from(b),
    })
}

impl EventColumns {
    pub fn of(event: &AuditEvent) -> EventColumns {
        EventColumns {
            occurred_at: time::to_micros(event.occurred_at),
            request_id: event.request_id.clone(),
            organisation_code: event.organisation.clone(),
            user_id: event.user_id.clone(),
            role: event.role.clone(),
            purpose: event.purpose.clone(),
            reason: event.reason.clone(),
            action: event.action.clone(),
            person_id: event.person_id.clone(),
            resource_type: event.resource_type.clone(),
            resource_id: event.resource_id.clone(),
            outcome: event.outcome.code().to_owned(),
            outcome_reason: event.outcome.reason().map(str::to_owned),
            emergency: i64::from(event.emergency),
        }
    }

    pub fn event(&self) -> AuditEvent {
        let reason = self.outcome_reason.clone().unwrap_or_default();
        AuditEvent {
            occurred_at: time::from_micros(self.occurred_at),
            request_id: self.request_id.clone(),
            organisation: self.organisation_code.clone(),
            user_id: self.user_id.clone(),
            role: self.role.clone(),
            purpose: self.purpose.clone(),
            reason: self.reason.clone(),
            action: self.action.clone(),
            person_id: self.person_id.clone(),
            resource_type: self.resource_type.clone(),
            resource_id: self.resource_id.clone(),
            // An unknown outcome code cannot re-encode to the stored hash, so it shows as an edit.
            outcome: stored_outcome(&self.outcome, reason),
            emergency: self.emergency != 0,
        }
    }

    /// Whether the columns hold only what the exchange writes.
    pub fn is_well_formed(&self) -> bool {
        let outcome = match self.outcome.as_str() {
            "permitted" => self.outcome_reason.is_none(),
            "denied" | "failed" => self.outcome_reason.is_some(),
            _ => false,
        };
        outcome && matches!(self.emergency, 0 | 1)
    }
}

/// An outcome from its stored code and reason.
fn stored_outcome(code: &str, reason: String) -> Outcome {
    match code {
        "permitted" => Outcome::Permitted,
        "denied" => Outcome::Denied(reason),
        _ => Outcome::Failed(reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_survives_its_columns_and_an_old_staged_flag_still_reads() {
        let context = hie_core::context::RequestContext::bulk_load("test", "test");
        let event = AuditEvent::new(
            &context,
            hie_core::vocabulary::AuditAction::QueryAudit,
            None,
            "audit_trail",
            None,
            Outcome::Denied("no".into()),
        );
        let columns = EventColumns::of(&event);
        assert_eq!(columns.event().canonical(1), event.canonical(1));
        let mut json = serde_json::to_value(&columns).unwrap();
        json["emergency"] = serde_json::Value::Bool(true);
        let old: EventColumns = serde_json::from_value(json).unwrap();
        assert_eq!(old.emergency, 1);
    }
}
