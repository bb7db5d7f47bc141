//! The ordered event log over the outbox. Outbox ids are made inside the writing transactions,
//! so they are not in commit order; the sequencer gives each committed event a position (see
//! `store::EventStore::sequence_pending`), and readers go by position. The newest events are
//! kept in memory, so that live subscribers read them without a query each; a reader behind
//! that window reads from the database.

use std::collections::VecDeque;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hie_core::Error;
use hie_core::domain::OrganisationCode;
use hie_core::id::PersonId;
use hie_core::vocabulary::EventType;
use tokio::sync::{Notify, watch};

use crate::store::{EventStore, SEQUENCE_BATCH};

/// How many of the newest events are kept in memory.
const RECENT_EVENTS: usize = 50_000;
/// How often the sequencer looks for events without being woken: other replicas' commits, and
/// writes that do not go through this process's audit trail.
const SEQUENCER_POLL: Duration = Duration::from_millis(100);
/// The most events a reader takes from the database at once.
const READ_BATCH: i64 = 1_000;

/// A committed event with its position, and the facts subscriptions filter on, read once from
/// its payload.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedEvent {
    pub position: i64,
    pub id: String,
    pub topic: String,
    pub event_type: Option<EventType>,
    pub person_id: Option<PersonId>,
    pub organisation: Option<OrganisationCode>,
    pub schema_version: i64,
    pub payload: String,
    pub created_at: i64,
    pub facts: EventFacts,
}

/// What the payload says that a filter or an entitlement asks about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFacts {
    /// ICD-10 codes (a visit's diagnoses, a document's event codes, an archive entry's
    /// diagnoses), upper case.
    pub codes: Vec<String>,
    pub class_code: Option<String>,
    /// An archive entry's type (`immunisation`, `maternal_health`).
    pub entry_type: Option<String>,
    /// The organisations party to it (a consult's requesting and consulting organisations).
    pub parties: Vec<String>,
}

impl EventFacts {
    pub fn of_payload(payload: &str) -> EventFacts {
        let Ok(serde_json::Value::Object(fields)) = serde_json::from_str::<serde_json::Value>(payload) else {
            return EventFacts::default();
        };
        let strings = |key: &str| -> Vec<String> {
            match fields.get(key) {
                Some(serde_json::Value::Array(items)) => items
                    .iter()
                    .filter_map(|item| item.as_str().map(str::to_uppercase))
                    .collect(),
                _ => Vec::new(),
            }
        };
        let text = |key: &str| fields.get(key).and_then(|v| v.as_str()).map(str::to_owned);
        let mut codes = strings("diagnoses");
        codes.extend(strings("event_codes"));
        EventFacts {
            codes,
            class_code: text("class_code"),
            entry_type: text("entry_type"),
            parties: ["requesting_organisation_code", "consulting_organisation_code"]
                .into_iter()
                .filter_map(text)
                .collect(),
        }
    }
}

impl LoggedEvent {
    #[allow(clippy::too_many_arguments)]
    pub fn from_row(
        position: i64,
        id: String,
        topic: String,
        person: Option<String>,
        organisation: Option<String>,
        schema_version: i64,
        payload: String,
        created_at: i64,
    ) -> LoggedEvent {
        LoggedEvent {
            position,
            id,
            event_type: EventType::parse(&topic),
            topic,
            person_id: person.and_then(|p| PersonId::parse(&p).ok()),
            organisation: organisation.and_then(|o| OrganisationCode::parse(&o).ok()),
            schema_version,
            facts: EventFacts::of_payload(&payload),
            payload,
            created_at,
        }
    }
}

/// The log: the sequencer's state and the newest events.
#[derive(Debug, Clone)]
pub struct EventLog {
    store: EventStore,
    recent: Arc<RwLock<VecDeque<Arc<LoggedEvent>>>>,
    head: Arc<watch::Sender<i64>>,
    wake: Arc<Notify>,
}

impl EventLog {
    pub fn new(store: EventStore) -> EventLog {
        EventLog {
            store,
            recent: Arc::default(),
            head: Arc::new(watch::channel(0).0),
            wake: Arc::new(Notify::new()),
        }
    }

    /// Has the sequencer look now (a write of this process committed events).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// The head as this process last saw it; changes as the sequencer moves it.
    pub fn watch_head(&self) -> watch::Receiver<i64> {
        self.head.subscribe()
    }

    /// The head in the database (what a new subscription starts after).
    pub async fn current_head(&self) -> Result<i64, Error> {
        self.store.head().await
    }

    /// Numbers what is pending and takes in what is new (numbered here or by another replica),
    /// until nothing is; runs for as long as the process serves events.
    pub async fn keep_sequencing(self) {
        let mut failing = false;
        loop {
            match self.sequence_once().await {
                Ok(numbered) => {
                    if failing {
                        tracing::info!("the event log's sequencer works again");
                        failing = false;
                    }
                    if numbered >= SEQUENCE_BATCH as u64 {
                        continue;
                    }
                }
                Err(error) => {
                    if !failing {
                        tracing::warn!(%error, "the event log's sequencer failed; retrying");
                        failing = true;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(SEQUENCER_POLL) => {}
            }
        }
    }

    /// One round: number the pending events, then read every event after what this process holds.
    pub async fn sequence_once(&self) -> Result<u64, Error> {
        let numbered = self.store.sequence_pending().await?;
        loop {
            let known = self.known_head().await?;
            let fresh = self.store.events_after(known, READ_BATCH).await?;
            let Some(last) = fresh.last().map(|e| e.position) else {
                break;
            };
            {
                let mut recent = self.recent.write().unwrap_or_else(|p| p.into_inner());
                for event in fresh {
                    recent.push_back(Arc::new(event));
                }
                while recent.len() > RECENT_EVENTS {
                    recent.pop_front();
                }
            }
            self.head.send_replace(last);
        }
        Ok(numbered)
    }

    /// The position this process has read up to: its newest event in memory, or on first use the
    /// head in the database less what fits in memory (older events are read from the database).
    async fn known_head(&self) -> Result<i64, Error> {
        let newest = self
            .recent
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .back()
            .map(|e| e.position);
        match newest {
            Some(position) => Ok(position),
            None => Ok((self.store.head().await? - RECENT_EVENTS as i64 / 2).max(0)),
        }
    }

    /// The events after `position` up to the head this process knows, in order, at most `limit`:
    /// from memory when they are there, else from the database.
    pub async fn after(&self, position: i64, limit: usize) -> Result<Vec<Arc<LoggedEvent>>, Error> {
        {
            let recent = self.recent.read().unwrap_or_else(|p| p.into_inner());
            if let Some(first) = recent.front()
                && first.position <= position + 1
            {
                let skip = usize::try_from(position + 1 - first.position).unwrap_or(0);
                return Ok(recent.iter().skip(skip).take(limit).cloned().collect());
            }
        }
        let head = *self.head.borrow();
        let limit = i64::try_from(limit).unwrap_or(READ_BATCH).min(READ_BATCH);
        Ok(self
            .store
            .events_after(position, limit)
            .await?
            .into_iter()
            .filter(|event| event.position <= head)
            .map(Arc::new)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_are_read_from_each_kind_of_payload() {
        let visit = EventFacts::of_payload(r#"{"encounter_id":"e","diagnoses":["a01.0","J10"]}"#);
        assert_eq!(visit.codes, vec!["A01.0", "J10"]);
        let document =
            EventFacts::of_payload(r#"{"class_code":"11488-4","event_codes":["F32.1"],"document_id":"d"}"#);
        assert_eq!(document.class_code.as_deref(), Some("11488-4"));
        assert_eq!(document.codes, vec!["F32.1"]);
        let consult = EventFacts::of_payload(
            r#"{"requesting_organisation_code":"QDN-C01","consulting_organisation_code":"QDN-H01"}"#,
        );
        assert_eq!(consult.parties, vec!["QDN-C01", "QDN-H01"]);
        assert_eq!(EventFacts::of_payload("not json"), EventFacts::default());
    }
}
