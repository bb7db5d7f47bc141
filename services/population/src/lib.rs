//! The population registry, the master patient index of the exchange. Each organisation submits
//! its own records of its patients ("source records"); the registry links the records that
//! describe one resident to one person, keeps every identifier they assert, answers which
//! identifiers belong together (PIX) and finds persons by demographics (PDQ).
//!
//! It owns the `persons`, `source_records`, `person_identifiers`, `match_keys`, `match_models`,
//! `match_reviews` and `person_merges` tables (and the unused `match_locks`). It must never
//! delete a source record, and it must never link two records except through the
//! [`domain::Matcher`] on the registration path or a person's recorded decision (review, link,
//! unlink, merge, unmerge); automatic matching never overrides a person's decision.

pub mod domain;
pub mod grpc;
pub mod store;

pub use domain::PopulationService;

use domain::linkage::model::LinkageModel;
use domain::{MatchThresholds, ProbabilisticMatcher};
use hie_core::Error;
use hie_core::db::Database;

/// The matcher with the latest model `hie population train` stored, or the built-in one.
pub async fn load_matcher(
    database: &Database,
    thresholds: MatchThresholds,
) -> Result<ProbabilisticMatcher, Error> {
    match store::PopulationStore::new(database.clone())
        .latest_model()
        .await?
    {
        Some((version, json)) => stored_matcher(version, &json, thresholds),
        None => Ok(ProbabilisticMatcher::built_in(thresholds)),
    }
}

/// The matcher of a model stored by `hie population train`.
pub fn stored_matcher(
    version: i64,
    json: &str,
    thresholds: MatchThresholds,
) -> Result<ProbabilisticMatcher, Error> {
    let model = LinkageModel::from_json(json)
        .map_err(|e| Error::Internal(format!("the stored matching model version {version} {e}").into()))?;
    Ok(ProbabilisticMatcher::new(model, version, thresholds))
}
