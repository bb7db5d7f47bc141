//! Blocking chosen from the data. Which rules find a population's true pairs depends on what its
//! files hold and how they are spoiled: a Chinese registry with divisions, phones and identity
//! numbers wants other rules than a Latin-script file with suburbs and postcodes. So the rules
//! are chosen per data set:
//!
//! 1. every rule of one or two of the key parts the data has (in at least 1 % of records) is a
//!    candidate, and its pairs are counted exactly from its block sizes;
//! 2. the candidates within the comparison budget make a generous union; a fixed-size sample of
//!    its pairs (the same pairs whichever rule finds them) is compared and a first model trained
//!    on it scores them: the expected matches of the sample;
//! 3. a rule's estimated recall is the share of those expected matches it finds, and rules are
//!    added greedily, most recall per pair first, while the union stays within the budget and a
//!    rule still adds recall.
//!
//! The estimate is relative to the generous union: a true pair no candidate rule finds is
//! invisible to it.

use std::collections::HashMap;

use super::blocking::{BlockingRule, KeyPart, MAX_BLOCK, block_pairs};
use super::comparison::Schema;
use super::model::{count_patterns, train};
use super::{Profile, mix64};

/// How many pairs of the generous union are compared for the first model: enough for a few
/// thousand expected matches at any file size.
const SAMPLE_PAIRS: f64 = 2_000_000.0;

/// A part seen in fewer records than this share cannot block much.
const MIN_COVERAGE: f64 = 0.01;

/// A rule adding less than this share of the expected matches is not worth its pairs.
const MIN_ADDED_RECALL: f64 = 0.0005;

/// The default budget: this many compared pairs per record.
pub const DEFAULT_PAIRS_PER_RECORD: u64 = 50;

/// At most this many candidate rules (a bit each in a pair's mask).
const MAX_CANDIDATES: usize = 128;

/// One candidate rule and what it would do.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleEstimate {
    pub rule: BlockingRule,
    /// The pairs the rule alone makes (exact, from its block sizes).
    pub pairs: u64,
    /// The share of expected matches the rule alone finds; `None` when it is over the budget.
    pub estimated_recall: Option<f64>,
    /// The recall the rule added when chosen (in choice order); `None` if not chosen.
    pub added_recall: Option<f64>,
}

/// The rules chosen and the account of the choice.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockingChoice {
    /// In the order chosen.
    pub rules: Vec<BlockingRule>,
    /// Every candidate, fewest pairs first.
    pub estimates: Vec<RuleEstimate>,
    pub budget: u64,
    /// The union's pairs, estimated from the sample.
    pub estimated_pairs: u64,
    /// The union's share of the generous union's expected matches.
    pub estimated_recall: f64,
    pub sampled_pairs: usize,
    /// The expected matches among the sampled pairs (the sum of their probabilities).
    pub expected_matches_in_sample: f64,
}

/// A rule's keys for every profile.
fn keys(rule: &BlockingRule, profiles: &[Profile]) -> Vec<Option<u64>> {
    profiles.iter().map(|p| rule.key(p)).collect()
}

/// The pairs a rule makes: within blocks for deduplication, across the files for linkage.
fn count_pairs(keys: &[Option<u64>], left_len: Option<usize>) -> u64 {
    let mut entries: Vec<(u64, bool)> = keys
        .iter()
        .enumerate()
        .filter_map(|(i, k)| k.map(|k| (k, left_len.is_some_and(|n| i < n))))
        .collect();
    entries.sort_unstable();
    entries
        .chunk_by(|a, b| a.0 == b.0)
        .filter(|block| block.len() >= 2 && block.len() <= MAX_BLOCK)
        .map(|block| match left_len {
            None => (block.len() as u64) * (block.len() as u64 - 1) / 2,
            Some(_) => {
                let left = block.iter().filter(|(_, on_left)| *on_left).count() as u64;
                left * (block.len() as u64 - left)
            }
        })
        .sum()
}

/// Whether a pair is in the sample: a function of the pair alone, so that every rule finding it
/// agrees.
fn sampled(i: u32, j: u32, threshold: u64) -> bool {
    mix64(u64::from(i) << 32 | u64::from(j)) < threshold
}

/// The candidate rules over the parts the data has: each part alone, and every two parts that
/// are not one inside the other.
fn candidates(profiles: &[Profile], schema: &Schema) -> Vec<BlockingRule> {
    let mut parts: Vec<KeyPart> = KeyPart::FIXED.to_vec();
    parts.extend(
        schema
            .identifiers()
            .iter()
            .map(|n| KeyPart::Identifier(n.clone())),
    );
    let stride = (profiles.len() / 20_000).max(1);
    let looked_at = profiles.len().div_ceil(stride).max(1) as f64;
    parts.retain(|part| {
        let present = profiles
            .iter()
            .step_by(stride)
            .filter(|p| part.present(p))
            .count();
        present as f64 / looked_at >= MIN_COVERAGE
    });
    let nested = |a: &KeyPart, b: &KeyPart| {
        use KeyPart::*;
        matches!(
            (a, b),
            (BirthDate, BirthYear)
                | (BirthYear, BirthDate)
                | (NameKey, SurnameKey | GivenKey)
                | (SurnameKey | GivenKey, NameKey)
        )
    };
    let mut rules: Vec<BlockingRule> = parts.iter().map(|p| BlockingRule::of(vec![p.clone()])).collect();
    for (x, a) in parts.iter().enumerate() {
        for b in &parts[x + 1..] {
            if !nested(a, b) {
                rules.push(BlockingRule::of(vec![a.clone(), b.clone()]));
            }
        }
    }
    rules
}

/// Chooses blocking rules for `profiles` within `budget` compared pairs.
pub fn choose(
    profiles: &[Profile],
    schema: &Schema,
    left_len: Option<usize>,
    budget: u64,
) -> Result<BlockingChoice, String> {
    if budget == 0 {
        return Err("the comparison budget must be at least 1 pair".to_owned());
    }
    let mut estimates: Vec<RuleEstimate> = candidates(profiles, schema)
        .into_iter()
        .map(|rule| RuleEstimate {
            pairs: count_pairs(&keys(&rule, profiles), left_len),
            rule,
            estimated_recall: None,
            added_recall: None,
        })
        .filter(|e| e.pairs > 0)
        .collect();
    estimates.sort_by(|a, b| {
        a.pairs
            .cmp(&b.pairs)
            .then_with(|| a.rule.to_string().cmp(&b.rule.to_string()))
    });
    let generous: Vec<usize> = (0..estimates.len())
        .filter(|&r| estimates[r].pairs <= budget)
        .take(MAX_CANDIDATES)
        .collect();
    if generous.is_empty() {
        let fewest = estimates.first().map_or(0, |e| e.pairs);
        return Err(format!(
            "no blocking rule makes {budget} pairs or fewer (the fewest is {fewest}): raise the budget"
        ));
    }
    let total: u64 = generous.iter().map(|&r| estimates[r].pairs).sum();
    let rate = (SAMPLE_PAIRS / total as f64).min(1.0);
    let threshold = if rate >= 1.0 {
        u64::MAX
    } else {
        (rate * u64::MAX as f64) as u64
    };

    // The sampled pairs, each with the mask of the generous rules that find it.
    let mut found: Vec<(u32, u32, u8)> = Vec::new();
    for (bit, &r) in generous.iter().enumerate() {
        block_pairs(&keys(&estimates[r].rule, profiles), left_len, |i, j| {
            if sampled(i, j, threshold) {
                found.push((i, j, bit as u8));
            }
        });
    }
    found.sort_unstable();
    let mut pairs: Vec<((u32, u32), u128)> = Vec::new();
    for run in found.chunk_by(|a, b| (a.0, a.1) == (b.0, b.1)) {
        let mask = run.iter().fold(0u128, |m, (_, _, bit)| m | 1u128 << bit);
        pairs.push(((run[0].0, run[0].1), mask));
    }
    drop(found);

    // The first model, trained on the sample, says how likely each sampled pair is a match.
    let patterns: Vec<_> = pairs
        .iter()
        .map(|((i, j), _)| schema.compare_packed(&profiles[*i as usize], &profiles[*j as usize]))
        .collect();
    let n = profiles.len() as f64;
    let all_pairs = match left_len {
        Some(left) => left as f64 * (n - left as f64),
        None => n * (n - 1.0) / 2.0,
    };
    // The sample stands for the union's pairs, and for as small a share of all pairs.
    let model = train(
        profiles,
        schema,
        &count_patterns(schema, patterns.iter().copied()),
        all_pairs * rate,
    );
    let table = model.score_table(model.pair_prior);
    let mut by_mask: HashMap<u128, (f64, f64)> = HashMap::new();
    for (((i, _), mask), pattern) in pairs.iter().zip(&patterns) {
        let name = profiles[*i as usize].name.as_ref();
        let entry = by_mask.entry(*mask).or_default();
        entry.0 += 1.0;
        entry.1 += table.probability(*pattern, name);
    }
    let expected: f64 = by_mask.values().map(|(_, w)| w).sum();
    let share = |w: f64| if expected > 0.0 { w / expected } else { 0.0 };
    for (bit, &r) in generous.iter().enumerate() {
        let found: f64 = by_mask
            .iter()
            .filter(|(mask, _)| *mask & (1u128 << bit) != 0)
            .map(|(_, (_, w))| w)
            .sum();
        estimates[r].estimated_recall = Some(share(found));
    }

    // Greedy: most expected matches per pair first, within the budget.
    let mut chosen: u128 = 0;
    let mut covered_pairs = 0.0;
    let mut covered_weight = 0.0;
    let mut order: Vec<usize> = Vec::new();
    loop {
        let mut best: Option<(usize, f64, f64, f64)> = None;
        for bit in 0..generous.len() {
            if chosen & (1u128 << bit) != 0 {
                continue;
            }
            let (mut new_pairs, mut gain) = (0.0, 0.0);
            for (mask, (count, weight)) in &by_mask {
                if mask & (1u128 << bit) != 0 && mask & chosen == 0 {
                    new_pairs += count;
                    gain += weight;
                }
            }
            let new_pairs = new_pairs / rate;
            if share(gain) < MIN_ADDED_RECALL || (covered_pairs + new_pairs) > budget as f64 {
                continue;
            }
            let value = gain / new_pairs.max(1.0);
            if best.is_none_or(|(_, v, _, _)| value > v) {
                best = Some((bit, value, new_pairs, gain));
            }
        }
        let Some((bit, _, new_pairs, gain)) = best else {
            break;
        };
        chosen |= 1u128 << bit;
        covered_pairs += new_pairs;
        covered_weight += gain;
        estimates[generous[bit]].added_recall = Some(share(gain));
        order.push(generous[bit]);
    }
    if order.is_empty() {
        // Nothing adds recall (no likely matches at all): the most selective rule still
        // finds exact duplicates.
        order.push(generous[0]);
        covered_pairs = estimates[generous[0]].pairs as f64;
    }
    Ok(BlockingChoice {
        rules: order.iter().map(|&r| estimates[r].rule.clone()).collect(),
        estimates,
        budget,
        estimated_pairs: covered_pairs as u64,
        estimated_recall: share(covered_weight),
        sampled_pairs: pairs.len(),
        expected_matches_in_sample: expected,
    })
}

#[cfg(test)]
mod tests {
    use super::super::{Field, PersonFields};
    use super::*;

    /// Persons with two records each: the second's surname misspelt, its birth date or its
    /// postcode changed, so that no single rule finds every pair.
    fn population(persons: usize) -> Vec<Profile> {
        let surnames = [
            "Smith", "Jones", "Brown", "Taylor", "Wilson", "Evans", "Walker", "Wright",
        ];
        let given = [
            "Oliver", "Amelia", "Jack", "Isla", "Harry", "Ava", "George", "Mia", "Noah",
        ];
        let mut records = Vec::new();
        for p in 0..persons {
            // A fixed pseudo-random draw per person and purpose.
            let draw = |purpose: u64, n: usize| (mix64((p as u64) << 8 | purpose) % n as u64) as usize;
            let s = format!(
                "{}{}",
                surnames[draw(1, surnames.len())],
                ["", "son", "ley", "ton", "field"][draw(2, 5)]
            );
            let g = given[draw(3, given.len())];
            let date = format!(
                "19{:02}-{:02}-{:02}",
                20 + draw(4, 80),
                1 + draw(5, 12),
                1 + draw(6, 28)
            );
            let postcode = format!("{}", 2000 + draw(7, 900));
            let sex = ["1", "2"][draw(8, 2)];
            let street = format!(
                "{} {} Street",
                1 + draw(9, 200),
                surnames[draw(10, surnames.len())]
            );
            let record = |surname: &str, date: &str, postcode: &str| {
                Profile::prepare(
                    &PersonFields::default()
                        .with(Field::Surname, surname)
                        .with(Field::GivenName, g)
                        .with(Field::BirthDate, date)
                        .with(Field::Sex, sex)
                        .with(Field::Address1, &street)
                        .with(Field::Postcode, postcode),
                )
                .0
            };
            records.push(record(&s, &date, &postcode));
            records.push(match p % 3 {
                0 => record(&format!("{s}x"), &date, &postcode),
                1 => record(&s, "2001-01-01", &postcode),
                _ => record(&s, &date, "9999"),
            });
        }
        records
    }

    #[test]
    fn the_union_chosen_finds_pairs_no_single_rule_finds_and_keeps_to_the_budget() {
        let profiles = population(2_000);
        let budget = 20_000;
        let choice = choose(&profiles, &Schema::default(), None, budget).unwrap();
        assert!(choice.rules.len() >= 2, "{:?}", choice.rules);
        assert!(choice.estimated_recall > 0.95, "{}", choice.estimated_recall);
        let best_alone = choice
            .estimates
            .iter()
            .filter_map(|e| e.estimated_recall)
            .fold(0.0, f64::max);
        assert!(best_alone < 0.9, "{best_alone}");
        // The chosen union, blocked for real, is within the budget and finds the pairs.
        let blocking = super::super::blocking::candidate_pairs(&profiles, &choice.rules, None);
        assert!(blocking.pairs.len() as u64 <= budget, "{}", blocking.pairs.len());
        let true_pairs = blocking
            .pairs
            .iter()
            .filter(|(i, j)| i % 2 == 0 && *j == i + 1)
            .count();
        assert!(true_pairs as f64 >= 0.95 * 2_000.0, "{true_pairs}");
    }

    #[test]
    fn a_budget_of_nothing_or_too_little_is_refused_with_the_reason() {
        let profiles = population(200);
        assert!(
            choose(&profiles, &Schema::default(), None, 0)
                .unwrap_err()
                .contains("at least 1")
        );
        let tiny = choose(&profiles, &Schema::default(), None, 1);
        if let Err(e) = tiny {
            assert!(e.contains("raise the budget"), "{e}");
        }
    }
}
