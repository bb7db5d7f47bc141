//! One linkage run over a set of profiles: block, compare every candidate pair (on every core),
//! train the model unless one is given, and keep the pairs at or above the threshold.

use super::Profile;
use super::blocking::{BlockingRule, candidate_pairs, parse_rules};
use super::choice::{BlockingChoice, DEFAULT_PAIRS_PER_RECORD, choose};
use super::comparison::{Pattern, Schema};
use super::model::{LinkageModel, count_patterns, train};

/// The stages a run reports progress for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Blocking,
    Comparing,
    Training,
    Scoring,
}

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::Blocking => "blocking",
            Stage::Comparing => "comparing",
            Stage::Training => "training",
            Stage::Scoring => "scoring",
        }
    }
}

/// Told how far a run has got: the stage, the work done and the work in all.
pub trait Progress: Sync {
    fn report(&self, stage: Stage, done: usize, total: usize);
}

/// Reports nothing.
#[derive(Debug)]
pub struct Quiet;

impl Progress for Quiet {
    fn report(&self, _: Stage, _: usize, _: usize) {}
}

/// A pair at or above the threshold. `first < second` index the run's profiles.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoredPair {
    pub first: u32,
    pub second: u32,
    pub probability: f64,
    pub pattern: Pattern,
}

/// What a run found, and the figures an operator wants to see.
#[derive(Debug)]
pub struct LinkageRun {
    pub pairs: Vec<ScoredPair>,
    pub model: LinkageModel,
    /// The prior the pairs were scored with (see [`LinkageModel::prior`]).
    pub prior: f64,
    pub candidate_pairs: usize,
    pub oversized_blocks: usize,
    /// The rules blocked by.
    pub rules: Vec<BlockingRule>,
    /// How the rules were chosen from the data, when they were.
    pub choice: Option<BlockingChoice>,
}

/// How a run goes.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// The identifier systems compared besides the fixed fields.
    pub schema: Schema,
    /// The blocking rules; none: the model's, or if it has none, chosen from the data.
    pub rules: Vec<BlockingRule>,
    /// At most this many pairs compared when the rules are chosen from the data; 0: 50 per
    /// record.
    pub max_pairs: u64,
    /// A saved model to use instead of training one on the data.
    pub model: Option<LinkageModel>,
    pub threshold: f64,
    /// `Some(n)`: the first `n` profiles are the left file, the rest the right (linkage).
    pub left_len: Option<usize>,
}

/// Compares the pairs on every available core, reporting progress as chunks finish.
fn compare_all(
    profiles: &[Profile],
    schema: &Schema,
    pairs: &[(u32, u32)],
    progress: &dyn Progress,
) -> Vec<Pattern> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).max(1);
    let chunk = 65_536;
    let total = pairs.len();
    let done = std::sync::atomic::AtomicUsize::new(0);
    let mut patterns = vec![0 as Pattern; pairs.len()];
    type Slice<'a> = (&'a [(u32, u32)], &'a mut [Pattern]);
    let slices: Vec<Slice<'_>> = pairs.chunks(chunk).zip(patterns.chunks_mut(chunk)).collect();
    let queue = std::sync::Mutex::new(slices);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let next = queue.lock().map(|mut q| q.pop()).ok().flatten();
                    let Some((pairs, out)) = next else { break };
                    for ((i, j), pattern) in pairs.iter().zip(out.iter_mut()) {
                        *pattern = schema.compare_packed(&profiles[*i as usize], &profiles[*j as usize]);
                    }
                    let now = done.fetch_add(pairs.len(), std::sync::atomic::Ordering::Relaxed) + pairs.len();
                    progress.report(Stage::Comparing, now, total);
                }
            });
        }
    });
    patterns
}

/// The rules a run blocks by: the options', the model's, or chosen from the data.
fn rules_of(
    profiles: &[Profile],
    options: &RunOptions,
) -> Result<(Vec<BlockingRule>, Option<BlockingChoice>), String> {
    if !options.rules.is_empty() {
        return Ok((options.rules.clone(), None));
    }
    if let Some(model) = &options.model
        && !model.blocking_rules.is_empty()
    {
        let rules =
            parse_rules(&model.blocking_rules).map_err(|e| format!("the model's blocking rules: {e}"))?;
        return Ok((rules, None));
    }
    let budget = if options.max_pairs == 0 {
        (profiles.len() as u64 * DEFAULT_PAIRS_PER_RECORD).max(1)
    } else {
        options.max_pairs
    };
    let choice = choose(profiles, &options.schema, options.left_len, budget)?;
    Ok((choice.rules.clone(), Some(choice)))
}

/// Blocks, compares, trains (unless given a model) and scores. `Err` when no blocking rule can
/// be chosen within the budget, or the model's rules do not parse.
pub fn run(
    profiles: &[Profile],
    options: &RunOptions,
    progress: &dyn Progress,
) -> Result<LinkageRun, String> {
    progress.report(Stage::Blocking, 0, profiles.len());
    let (rules, choice) = rules_of(profiles, options)?;
    let blocking = candidate_pairs(profiles, &rules, options.left_len);
    progress.report(Stage::Blocking, profiles.len(), profiles.len());
    let schema = &options.schema;
    let patterns = compare_all(profiles, schema, &blocking.pairs, progress);
    progress.report(Stage::Comparing, patterns.len(), patterns.len());
    let n = profiles.len() as f64;
    let all_pairs = match options.left_len {
        Some(left) => left as f64 * (n - left as f64),
        None => n * (n - 1.0) / 2.0,
    };
    let (model, prior) = match &options.model {
        Some(model) => (model.clone(), model.prior(blocking.pairs.len(), all_pairs)),
        None => {
            progress.report(Stage::Training, 0, 1);
            let counts = count_patterns(schema, patterns.iter().copied());
            let mut model = train(profiles, schema, &counts, all_pairs);
            model.blocking_rules = rules.iter().map(ToString::to_string).collect();
            progress.report(Stage::Training, 1, 1);
            (model.clone(), model.pair_prior)
        }
    };
    let table = model.score_table(prior);
    let pairs: Vec<ScoredPair> = blocking
        .pairs
        .iter()
        .zip(&patterns)
        .filter_map(|(&(first, second), &pattern)| {
            let probability = table.probability(pattern, profiles[first as usize].name.as_ref());
            (probability >= options.threshold).then_some(ScoredPair {
                first,
                second,
                probability,
                pattern,
            })
        })
        .collect();
    progress.report(Stage::Scoring, patterns.len(), patterns.len());
    Ok(LinkageRun {
        pairs,
        model,
        prior,
        candidate_pairs: blocking.pairs.len(),
        oversized_blocks: blocking.oversized_blocks,
        rules,
        choice,
    })
}
