//! The registry's service: what the registration, reading, decision and training paths share
//! (the store, the matcher in use, the directory and the access gate), and the link rules they
//! all apply: the golden record recomputed from a person's records, a person emptied by a move
//! retired into where its records went, and the outbox event of every link.

use std::sync::Arc;

use hie_access::{AccessGate, UnitOfWork};
use hie_core::Error;
use hie_core::db::Database;
use hie_core::domain::OrganisationCode;
use hie_core::outbox::OutboxEvent;
use hie_core::vocabulary::EventType;
use hie_directory::DirectoryService;
use serde_json::json;

use super::golden::{Statement, golden_record, trust_of};
use super::resolve::ResolveBatcher;
use super::{MatchThresholds, Matcher, PersonId, SourceRecordId};
use crate::store::PopulationStore;

/// The registry's operations: registration with matching (PIX feed, `registration.rs`), resolve
/// (PIX query, `resolve.rs`), search and reads (PDQ, `reads.rs`), stewards' decisions
/// (`decisions.rs`) and training (`training.rs`).
#[derive(Clone, Debug)]
pub struct PopulationService {
    pub(super) store: PopulationStore,
    pub(super) resolver: ResolveBatcher,
    pub(super) directory: DirectoryService,
    pub(super) access: AccessGate,
    /// The matcher in use; replaced when a newer model is trained ([`Self::reload_matcher`]).
    matcher: Arc<std::sync::RwLock<Arc<dyn Matcher>>>,
    pub(super) thresholds: MatchThresholds,
}

impl PopulationService {
    pub fn new(
        database: Database,
        directory: DirectoryService,
        access: AccessGate,
        matcher: Arc<dyn Matcher>,
        thresholds: MatchThresholds,
    ) -> PopulationService {
        let store = PopulationStore::new(database);
        PopulationService {
            resolver: ResolveBatcher::new(store.clone(), access.clone()),
            store,
            directory,
            access,
            matcher: Arc::new(std::sync::RwLock::new(matcher)),
            thresholds,
        }
    }

    /// The matcher in use.
    pub fn matcher(&self) -> Arc<dyn Matcher> {
        self.matcher
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Takes up the newest model `hie population train` stored, if it is newer than the one in
    /// use (same thresholds and blocking rules); returns its version when it did. Servers call
    /// this periodically, so that a model trained by another process is used without a restart.
    pub async fn reload_matcher(&self) -> Result<Option<i64>, Error> {
        let current = self.matcher();
        let Some((version, json)) = self.store.latest_model().await? else {
            return Ok(None);
        };
        if version <= current.model_version() {
            return Ok(None);
        }
        let stored = crate::stored_matcher(version, &json, self.thresholds)?;
        // Rules the settings fix stay; otherwise the new model's (chosen when it was trained).
        let matcher = if current.rules_are_configured() {
            stored.with_rules(current.blocking_rules())
        } else {
            stored
        };
        *self
            .matcher
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(matcher);
        Ok(Some(version))
    }

    /// The store, for operator jobs' checkpoints.
    pub fn store(&self) -> &PopulationStore {
        &self.store
    }

    /// Recomputes a person's golden record from their records (survivorship, [`super::golden`]);
    /// a person left without records keeps what they had.
    pub(super) async fn refresh_golden_record(
        &self,
        unit: &mut UnitOfWork,
        person: &PersonId,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), Error> {
        let stored = self.store.statements_of(unit, person).await?;
        let statements: Vec<Statement<'_>> = stored
            .iter()
            .map(|s| Statement {
                record: &s.record,
                demographics: &s.demographics,
                updated_at: s.updated_at,
                trust: trust_of(s.kind),
            })
            .collect();
        if let Some((golden, _)) = golden_record(&statements) {
            self.store
                .set_person_demographics(unit, person, &golden, now)
                .await?;
        }
        Ok(())
    }

    /// After a record left `person` for `to`: a person left without records is marked as merged
    /// into `to`, so that whoever still holds the old id is told where the records went;
    /// otherwise the person's golden record is recomputed from the records that stayed.
    pub(super) async fn retire_if_empty(
        &self,
        unit: &mut UnitOfWork,
        person: &PersonId,
        to: &PersonId,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), Error> {
        if self.store.record_links_of(unit, person).await?.is_empty() {
            self.store.set_merged_into(unit, person, Some(to), now).await
        } else {
            self.refresh_golden_record(unit, person, now).await
        }
    }
}

/// The outbox event of a record joining a person (`previous`: the one it left), kept by
/// `organisation` when the caller knows it.
pub(crate) fn link_event(
    record: &SourceRecordId,
    person: &PersonId,
    previous: Option<&PersonId>,
    organisation: Option<&OrganisationCode>,
    how: serde_json::Value,
) -> OutboxEvent {
    OutboxEvent::new(
        EventType::RecordLinked,
        Some(person),
        organisation,
        &json!({
            "source_record_id": record.as_str(),
            "person_id": person.as_str(),
            "previous_person_id": previous.map(PersonId::as_str),
            "how": how,
        }),
    )
}
