//! The linkage model: m and u per level of every compared field, trained on the data itself,
//! saved as a versioned JSON document, and turned into a table of scores by pattern.

use serde::{Deserialize, Serialize};

use std::sync::Arc;

use super::super::fellegi_sunter::{FieldModel, Model, Score, normalise};
use super::comparison::{Pattern, Schema};
use super::frequencies::{NameFrequencies, SavedFrequencies};
use super::{NameSound, Profile};

/// What a saved model file says it is; a file of another format or version is refused, because
/// its levels would be read as the wrong agreements.
pub const MODEL_FORMAT: &str = "hie-linkage-model";
/// Version 2 adds identifier systems, the blocking rules chosen from the data and the name
/// counts; a version 1 file reads as one without them.
pub const MODEL_VERSION: u32 = 2;

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
    #[serde(default)]
    identifiers: Vec<String>,
    #[serde(default)]
    blocking_rules: Vec<String>,
    #[serde(default)]
    name_frequencies: SavedFrequencies,
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
    /// The identifier systems compared besides the fixed fields.
    pub schema: Schema,
    /// The blocking rules chosen for the data the model was trained on (as text; empty: the
    /// model says nothing about blocking).
    pub blocking_rules: Vec<String>,
    /// How common each name is in that data (see [`NameFrequencies`]).
    pub frequencies: Arc<NameFrequencies>,
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
                .zip(self.schema.fields())
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
            identifiers: self.schema.identifiers().iter().map(|n| n.to_string()).collect(),
            blocking_rules: self.blocking_rules.clone(),
            name_frequencies: self.frequencies.to_saved(),
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
        if !(1..=MODEL_VERSION).contains(&saved.version) {
            return Err(format!(
                "is a version {} model, this hie reads version {MODEL_VERSION}: train a new one",
                saved.version
            ));
        }
        let names: Vec<&str> = saved.identifiers.iter().map(String::as_str).collect();
        let schema = Schema::new(&names).map_err(|e| format!("identifiers: {e}"))?;
        let expected = schema.fields();
        if saved.fields.len() != expected.len() {
            return Err(format!(
                "has {} fields, expected {}",
                saved.fields.len(),
                expected.len()
            ));
        }
        for (i, (field, (name, levels))) in saved.fields.iter().zip(expected).enumerate() {
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
            schema,
            blocking_rules: saved.blocking_rules,
            frequencies: Arc::new(NameFrequencies::from_saved(saved.name_frequencies)),
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

    /// The verdict on every possible pattern under `prior`, for look-up, with the name
    /// counts to adjust it by.
    pub fn score_table(&self, prior: f64) -> ScoreTable {
        let model = self.with_prior(prior);
        let log_odds = (0..self.schema.pattern_count() as Pattern)
            .map(|p| {
                let score = model.score(&self.schema.unpack(p));
                (score.weight + (prior / (1.0 - prior)).log2()) as f32
            })
            .collect();
        ScoreTable {
            log_odds,
            schema: self.schema.clone(),
            frequencies: self.frequencies.clone(),
            u_name_agrees: self.u_name_agrees(),
        }
    }

    /// The chance that two different people's names agree (the same characters, or sounding
    /// alike): what a name's own frequency replaces.
    fn u_name_agrees(&self) -> f64 {
        self.model
            .fields
            .first()
            .map_or(0.0, |name| name.u.iter().take(2).sum())
    }

    /// A pattern's score under `prior` with every field's weight, the name's adjusted for how
    /// common `name` is: why a pair was, or was not, linked.
    pub fn explain(&self, pattern: Pattern, prior: f64, name: Option<&NameSound>) -> Score {
        let mut score = self.with_prior(prior).score(&self.schema.unpack(pattern));
        let adjustment = name_adjustment(
            &self.schema,
            &self.frequencies,
            self.u_name_agrees(),
            pattern,
            name,
        );
        if adjustment != 0.0 {
            score.field_weights[0] += adjustment;
            score.weight += adjustment;
            score.probability = probability((score.weight + (prior / (1.0 - prior)).log2()) as f32);
        }
        score
    }
}

/// The bits a name agreement's weight moves by for how common the name is; 0 unless the names
/// agree (same characters or sounding alike).
fn name_adjustment(
    schema: &Schema,
    frequencies: &NameFrequencies,
    u_name_agrees: f64,
    pattern: Pattern,
    name: Option<&NameSound>,
) -> f64 {
    match (schema.name_level(pattern), name) {
        (Some(0 | 1), Some(name)) => frequencies.adjustment(name, u_name_agrees),
        _ => 0.0,
    }
}

fn probability(log_odds: f32) -> f64 {
    1.0 / (1.0 + 2f64.powf(-f64::from(log_odds)))
}

/// The log-odds of every pattern, and what adjusts them for a name's frequency.
#[derive(Debug, Clone)]
pub struct ScoreTable {
    log_odds: Vec<f32>,
    schema: Schema,
    frequencies: Arc<NameFrequencies>,
    u_name_agrees: f64,
}

impl ScoreTable {
    /// The match probability of a pair with `pattern` whose (agreeing) name is `name`.
    pub fn probability(&self, pattern: Pattern, name: Option<&NameSound>) -> f64 {
        let adjustment = name_adjustment(&self.schema, &self.frequencies, self.u_name_agrees, pattern, name);
        probability(self.log_odds[pattern as usize] + adjustment as f32)
    }
}

/// A deterministic generator (SplitMix64) for sampling, so that training is repeatable.
struct SplitMix(u64);

impl SplitMix {
    fn below(&mut self, n: usize) -> usize {
        let state = self.0;
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        (super::mix64(state) % n as u64) as usize
    }
}

/// How many random pairs u is estimated from.
pub const U_SAMPLE_PAIRS: usize = 1_000_000;

/// Trains a model on the records themselves, in the space of all pairs of records, of which the
/// candidate pairs are the few that can be matches:
///
/// - u from random pairs, which blocking has not filtered and which are almost all non-matches;
/// - m and the number of matches by expectation–maximisation over the candidate pairs, u
///   fixed, with the prior of a match among *all* pairs (matches ÷ all pairs), so that a pair
///   blocking brought together for its common name still needs the rest of its evidence; and
///   each field's m estimated from how likely each pair is a match judged by the *other*
///   fields (a field's own agreement would vouch for itself: pairs agreeing on a name would
///   count as matches because they agree on the name, and teach that matches often disagree on
///   everything else — which is how namesakes became links).
///
/// `counts[pattern]` is how many candidate pairs show each pattern; `all_pairs` how many pairs
/// of records there are.
pub fn train(profiles: &[Profile], schema: &Schema, counts: &[u64], all_pairs: f64) -> LinkageModel {
    let fields = schema.fields();
    let shape: Vec<(&str, usize)> = fields
        .iter()
        .map(|(name, levels)| (name.as_str(), levels.len()))
        .collect();
    let mut model = Model::initial(&shape, 0.5);
    for (field, u) in model.fields.iter_mut().zip(random_pair_levels(profiles, schema)) {
        field.u = normalise(&u);
    }
    let vectors: Vec<(Vec<Option<usize>>, f64)> = counts
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(p, n)| (schema.unpack(p as Pattern), *n as f64))
        .collect();
    let candidates: f64 = vectors.iter().map(|(_, n)| n).sum();
    let all_pairs = all_pairs.max(candidates).max(1.0);
    // A start of about one match per record (a file's duplicates, or one side of a linkage).
    let mut matches = (0.1 * candidates).min(profiles.len() as f64).max(1.0);
    let sigmoid = |x: f64| 1.0 / (1.0 + 2f64.powf(-x));
    for _ in 0..200 {
        let prior = (matches / (all_pairs - matches).max(1.0)).log2();
        let mut m_counts: Vec<Vec<f64>> = model.fields.iter().map(|f| vec![0.0; f.m.len()]).collect();
        let mut found = 0.0;
        for (vector, n) in &vectors {
            let weights = model.score(vector).field_weights;
            let total: f64 = weights.iter().sum();
            found += n * sigmoid(total + prior);
            for (f, level) in vector.iter().enumerate() {
                if let Some(level) = level {
                    m_counts[f][*level] += n * sigmoid(total + prior);
                }
            }
        }
        let mut moved = (found - matches).abs() / matches;
        for (field, counts) in model.fields.iter_mut().zip(&m_counts) {
            if counts.iter().sum::<f64>() > 0.0 {
                let m = normalise(counts);
                moved = field
                    .m
                    .iter()
                    .zip(&m)
                    .map(|(a, b)| (a - b).abs())
                    .fold(moved, f64::max);
                field.m = m;
            }
        }
        matches = found.max(1.0);
        if moved < 1e-6 {
            break;
        }
    }
    model.match_share = (matches / candidates.max(1.0)).clamp(1e-6, 1.0 - 1e-6);
    LinkageModel {
        model,
        trained_on_records: profiles.len() as u64,
        trained_on_pairs: candidates as u64,
        pair_prior: (matches / all_pairs).clamp(1e-12, 0.5),
        schema: schema.clone(),
        blocking_rules: Vec::new(),
        frequencies: Arc::new(NameFrequencies::count(profiles)),
    }
}

/// The candidate pairs' patterns, counted for training.
pub fn count_patterns(schema: &Schema, patterns: impl IntoIterator<Item = Pattern>) -> Vec<u64> {
    let mut counts = vec![0u64; schema.pattern_count()];
    for p in patterns {
        counts[p as usize] += 1;
    }
    counts
}

/// How often each level shows among random pairs, sampled on every core, each core with its own
/// fixed seed so that training is repeatable.
fn random_pair_levels(profiles: &[Profile], schema: &Schema) -> Vec<Vec<f64>> {
    let fields = schema.fields();
    let empty = || -> Vec<Vec<f64>> { fields.iter().map(|(_, l)| vec![0.0; l.len()]).collect() };
    let n = profiles.len();
    if n < 2 {
        return empty();
    }
    let samples = U_SAMPLE_PAIRS.min(n * (n - 1) / 2);
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get()).max(1);
    let parts: Vec<Vec<Vec<f64>>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let empty = &empty;
                scope.spawn(move || {
                    let mut counts = empty();
                    let mut rng = SplitMix(0x7261_6e64_6f6d + t as u64);
                    for _ in 0..samples / threads {
                        let (i, j) = (rng.below(n), rng.below(n));
                        if i == j {
                            continue;
                        }
                        for (f, level) in schema.compare(&profiles[i], &profiles[j]).iter().enumerate() {
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

#[cfg(test)]
mod tests {
    use super::super::comparison::FIELDS;
    use super::*;

    /// The pattern of a pair of records agreeing everywhere, or disagreeing everywhere.
    fn pattern(level: impl Fn(usize) -> usize) -> Pattern {
        let schema = Schema::default();
        (0..schema.pattern_count() as Pattern)
            .find(|p| {
                schema
                    .unpack(*p)
                    .iter()
                    .enumerate()
                    .all(|(f, l)| *l == Some(level(f)))
            })
            .unwrap()
    }

    fn a_model() -> LinkageModel {
        let model = Model::initial(&FIELDS.map(|(name, levels)| (name, levels.len())), 0.1);
        LinkageModel {
            model,
            trained_on_records: 10,
            trained_on_pairs: 5,
            pair_prior: 1e-5,
            schema: Schema::default(),
            blocking_rules: vec!["resident_id".to_owned()],
            frequencies: Arc::new(NameFrequencies::default()),
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
        let other_version = text.replace("\"version\": 2", "\"version\": 3");
        assert!(
            LinkageModel::from_json(&other_version)
                .unwrap_err()
                .contains("version 3")
        );
        let first_version = text.replace("\"version\": 2", "\"version\": 1");
        assert!(LinkageModel::from_json(&first_version).is_ok());
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
        assert!(table.probability(pattern(|_| 0), None) > 0.999);
        let disagree = pattern(|f| FIELDS[f].1.len() - 1);
        assert!(table.probability(disagree, None) < 0.001);
    }
}
