//! The linkage model: m and u per level of every compared field, trained on the data itself,
//! saved as a versioned JSON document, and turned into a table of scores by pattern.

use serde::{Deserialize, Serialize};

use super::super::fellegi_sunter::{FieldModel, Model, Score, normalise};
use super::Profile;
use super::comparison::{FIELDS, Pattern, compare, pattern_count, unpack};

/// What a saved model file says it is; a file of another format or version is refused, because
/// its levels would be read as the wrong agreements.
pub const MODEL_FORMAT: &str = "hie-linkage-model";
pub const MODEL_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct SavedField {
    name: String,
    levels: Vec<String>,
    m: Vec<f64>,
    u: Vec<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct SavedModel {
    format: String,
    version: u32,
    match_share: f64,
    fields: Vec<SavedField>,
    trained_on_records: u64,
    trained_on_pairs: u64,
    pair_prior: f64,
}

/// A trained model with what it was trained on.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkageModel {
    pub model: Model,
    pub trained_on_records: u64,
    pub trained_on_pairs: u64,
    /// The probability that two records of the training data match (see [`LinkageModel::prior`]):
    /// the prior online matching scores a new record's candidates with.
    pub pair_prior: f64,
}

impl LinkageModel {
    pub fn to_json(&self) -> String {
        let saved = SavedModel {
            format: MODEL_FORMAT.to_owned(),
            version: MODEL_VERSION,
            match_share: self.model.match_share,
            fields: self
                .model
                .fields
                .iter()
                .zip(FIELDS)
                .map(|(field, (_, levels))| SavedField {
                    name: field.name.clone(),
                    levels: levels.iter().map(|l| (*l).to_owned()).collect(),
                    m: field.m.clone(),
                    u: field.u.clone(),
                })
                .collect(),
            trained_on_records: self.trained_on_records,
            trained_on_pairs: self.trained_on_pairs,
            pair_prior: self.pair_prior,
        };
        serde_json::to_string_pretty(&saved).expect("a model always serialises")
    }

    /// Reads a saved model, refusing one of another format or version, or whose fields and
    /// levels are not the ones this version compares.
    pub fn from_json(text: &str) -> Result<LinkageModel, String> {
        let saved: SavedModel =
            serde_json::from_str(text).map_err(|e| format!("is not a linkage model file: {e}"))?;
        if saved.format != MODEL_FORMAT {
            return Err(format!(
                "has format '{}', expected '{MODEL_FORMAT}'",
                saved.format
            ));
        }
        if saved.version != MODEL_VERSION {
            return Err(format!(
                "is a version {} model, this hie reads version {MODEL_VERSION}: train a new one",
                saved.version
            ));
        }
        if saved.fields.len() != FIELDS.len() {
            return Err(format!(
                "has {} fields, expected {}",
                saved.fields.len(),
                FIELDS.len()
            ));
        }
        for (i, (field, (name, levels))) in saved.fields.iter().zip(FIELDS).enumerate() {
            if field.name != name || field.m.len() != levels.len() || field.u.len() != levels.len() {
                return Err(format!(
                    "fields[{i}] is '{}' with {} levels, expected '{name}' with {}",
                    field.name,
                    field.m.len(),
                    levels.len()
                ));
            }
            let valid = |p: &f64| p.is_finite() && (0.0..=1.0).contains(p);
            if !field.m.iter().chain(&field.u).all(valid) {
                return Err(format!("fields[{i}] ('{name}') has a probability outside 0..=1"));
            }
        }
        if !(saved.match_share > 0.0 && saved.match_share < 1.0) {
            return Err("match_share must lie strictly between 0 and 1".to_owned());
        }
        if !(saved.pair_prior > 0.0 && saved.pair_prior < 1.0) {
            return Err("pair_prior must lie strictly between 0 and 1".to_owned());
        }
        Ok(LinkageModel {
            model: Model {
                fields: saved
                    .fields
                    .into_iter()
                    .map(|f| FieldModel {
                        name: f.name,
                        m: f.m,
                        u: f.u,
                    })
                    .collect(),
                match_share: saved.match_share,
            },
            trained_on_records: saved.trained_on_records,
            trained_on_pairs: saved.trained_on_pairs,
            pair_prior: saved.pair_prior,
        })
    }

    /// The prior probability that two records of a run match: the matches the model expects among
    /// the run's candidate pairs, spread over every pair of records. The model's own match share
    /// is that of candidate pairs, which blocking has already filled with matches; scoring with it
    /// would let a shared common name (王艳 born the same year) outweigh disagreement everywhere
    /// else. With the prior over all pairs, the evidence must carry the decision.
    pub fn prior(&self, candidate_pairs: usize, all_pairs: f64) -> f64 {
        if all_pairs <= 0.0 {
            return self.model.match_share;
        }
        (self.model.match_share * candidate_pairs.max(1) as f64 / all_pairs).clamp(1e-12, 0.5)
    }

    fn with_prior(&self, prior: f64) -> Model {
        Model {
            fields: self.model.fields.clone(),
            match_share: prior,
        }
    }

    /// The verdict on every possible pattern under `prior`, for look-up.
    pub fn score_table(&self, prior: f64) -> ScoreTable {
        let model = self.with_prior(prior);
        let probabilities = (0..pattern_count() as Pattern)
            .map(|p| model.score(&unpack(p)).probability as f32)
            .collect();
        ScoreTable { probabilities }
    }

    /// A pattern's score under `prior` with every field's weight: why a pair was, or was not,
    /// linked.
    pub fn explain(&self, pattern: Pattern, prior: f64) -> Score {
        self.with_prior(prior).score(&unpack(pattern))
    }
}

/// The match probability of every pattern.
#[derive(Debug, Clone)]
pub struct ScoreTable {
    probabilities: Vec<f32>,
}

impl ScoreTable {
    pub fn probability(&self, pattern: Pattern) -> f64 {
        f64::from(self.probabilities[pattern as usize])
    }
}

/// A deterministic generator (SplitMix64) for sampling, so that training is repeatable.
struct SplitMix(u64);

impl SplitMix {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) % n as u64) as usize
    }
}

/// How many random pairs u is estimated from.
pub const U_SAMPLE_PAIRS: usize = 1_000_000;

/// Trains a model on the records themselves. m comes from expectation–maximisation over the
/// candidate pairs' patterns (`pattern_counts[pattern]` pairs each), with u free during the
/// estimation: candidate pairs that are not matches still agree on what blocked them (a common
/// name and a birth year), and a non-match class that cannot say so would push those pairs into
/// the matches and spoil m. u itself is then taken from random pairs, which blocking has not
/// filtered and which are almost all non-matches.
pub fn train(profiles: &[Profile], pattern_counts: &[u64]) -> LinkageModel {
    let u_counts = random_pair_levels(profiles);
    let start = Model::initial(&FIELDS.map(|(name, levels)| (name, levels.len())), 0.5);
    let vectors: Vec<(Vec<Option<usize>>, f64)> = pattern_counts
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(p, n)| (unpack(p as Pattern), *n as f64))
        .collect();
    let mut model = start.estimate_weighted(&vectors, 200, 1e-6, false);
    for (field, counts) in model.fields.iter_mut().zip(&u_counts) {
        field.u = normalise(counts);
    }
    LinkageModel {
        model,
        trained_on_records: profiles.len() as u64,
        trained_on_pairs: pattern_counts.iter().sum(),
        // Set by the run, which knows how many pairs there were in all.
        pair_prior: 1e-6,
    }
}

/// How often each level shows among random pairs, sampled on every core, each core with its own
/// fixed seed so that training is repeatable.
fn random_pair_levels(profiles: &[Profile]) -> Vec<Vec<f64>> {
    let empty = || -> Vec<Vec<f64>> { FIELDS.iter().map(|(_, l)| vec![0.0; l.len()]).collect() };
    let n = profiles.len();
    if n < 2 {
        return empty();
    }
    let samples = U_SAMPLE_PAIRS.min(n * (n - 1) / 2);
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get()).max(1);
    let parts: Vec<Vec<Vec<f64>>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    let mut counts = empty();
                    let mut rng = SplitMix(0x7261_6e64_6f6d + t as u64);
                    for _ in 0..samples / threads {
                        let (i, j) = (rng.below(n), rng.below(n));
                        if i == j {
                            continue;
                        }
                        for (f, level) in compare(&profiles[i], &profiles[j]).iter().enumerate() {
                            if let Some(level) = level {
                                counts[f][*level] += 1.0;
                            }
                        }
                    }
                    counts
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("comparing does not panic"))
            .collect()
    });
    let mut total = empty();
    for part in parts {
        for (t, p) in total.iter_mut().zip(part) {
            for (x, y) in t.iter_mut().zip(p) {
                *x += y;
            }
        }
    }
    total
}

/// The patterns of candidate pairs, counted for training.
pub fn count_patterns(patterns: impl IntoIterator<Item = Pattern>) -> Vec<u64> {
    let mut counts = vec![0u64; pattern_count()];
    for p in patterns {
        counts[p as usize] += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::super::comparison::pack;
    use super::*;

    /// The pattern of a pair of identical records: every field agrees at its best level.
    fn all_agree() -> Pattern {
        pack(&[Some(0); 6])
    }

    fn a_model() -> LinkageModel {
        let model = Model::initial(&FIELDS.map(|(name, levels)| (name, levels.len())), 0.1);
        LinkageModel {
            model,
            trained_on_records: 10,
            trained_on_pairs: 5,
            pair_prior: 1e-5,
        }
    }

    #[test]
    fn a_saved_model_reads_back_the_same() {
        let model = a_model();
        assert_eq!(LinkageModel::from_json(&model.to_json()).unwrap(), model);
    }

    #[test]
    fn a_model_of_another_version_or_shape_is_refused_with_the_reason() {
        let text = a_model().to_json();
        let other_version = text.replace("\"version\": 1", "\"version\": 2");
        assert!(
            LinkageModel::from_json(&other_version)
                .unwrap_err()
                .contains("version 2")
        );
        let other_format = text.replace(MODEL_FORMAT, "splink");
        assert!(
            LinkageModel::from_json(&other_format)
                .unwrap_err()
                .contains("format 'splink'")
        );
        let renamed = text.replace("\"name\": \"phone\"", "\"name\": \"email\"");
        assert!(
            LinkageModel::from_json(&renamed)
                .unwrap_err()
                .contains("fields[4]")
        );
        assert!(
            LinkageModel::from_json("{}")
                .unwrap_err()
                .contains("not a linkage model")
        );
    }

    #[test]
    fn agreement_everywhere_scores_far_above_disagreement() {
        let table = a_model().score_table(0.1);
        assert!(table.probability(all_agree()) > 0.999);
        let disagree = pack(&[Some(3), Some(3), Some(1), Some(2), Some(2), Some(3)]);
        assert!(table.probability(disagree) < 0.001);
    }
}
