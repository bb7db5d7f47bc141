//! Fellegi–Sunter record linkage, as pure arithmetic (the MPI issue builds matching on it). A pair
//! of records is compared field by field into a comparison vector (a level of agreement per field,
//! 0 = the best); each level has an m probability (how often true matches show it) and a u
//! probability (how often non-matches do). A pair's match weight is the sum over fields of
//! log2(m/u) at its level, and every field's share is kept, so that anyone can see why two records
//! were or were not linked. m and u are estimated from unlabelled pairs by expectation–maximisation.

/// A pair's level of agreement per field; `None` where either record lacks the field (it then
/// counts for nothing either way).
pub type ComparisonVector = Vec<Option<usize>>;

/// m and u per level of one field.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldModel {
    pub name: String,
    pub m: Vec<f64>,
    pub u: Vec<f64>,
}

/// The model: every field's m and u, and the share of compared pairs that are matches.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    pub fields: Vec<FieldModel>,
    pub match_share: f64,
}

/// A pair's score, with each field's part of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    pub field_weights: Vec<f64>,
    pub weight: f64,
    pub probability: f64,
}

/// Keeps probabilities off 0 and 1, where a log-likelihood would be infinite.
const FLOOR: f64 = 1e-6;

fn clamp(p: f64) -> f64 {
    p.clamp(FLOOR, 1.0 - FLOOR)
}

impl Model {
    /// A starting point for estimation: agreement at the best level far likelier among matches.
    pub fn initial(fields: &[(&str, usize)], match_share: f64) -> Model {
        let fields = fields
            .iter()
            .map(|(name, levels)| {
                let levels = (*levels).max(2);
                let spread = |best: f64| -> Vec<f64> {
                    let rest = (1.0 - best) / (levels - 1) as f64;
                    (0..levels)
                        .map(|level| if level == 0 { best } else { rest })
                        .collect()
                };
                FieldModel {
                    name: (*name).to_owned(),
                    m: spread(0.9),
                    u: spread(0.1),
                }
            })
            .collect();
        Model {
            fields,
            match_share: clamp(match_share),
        }
    }

    /// The weight of a comparison vector and the probability that the pair is a match.
    pub fn score(&self, vector: &ComparisonVector) -> Score {
        let field_weights: Vec<f64> = self
            .fields
            .iter()
            .zip(vector)
            .map(|(field, level)| match level {
                Some(level) if *level < field.m.len() => {
                    (clamp(field.m[*level]) / clamp(field.u[*level])).log2()
                }
                _ => 0.0,
            })
            .collect();
        let weight: f64 = field_weights.iter().sum();
        let prior = (self.match_share / (1.0 - self.match_share)).log2();
        let odds = 2f64.powf(weight + prior);
        Score {
            field_weights,
            weight,
            probability: odds / (1.0 + odds),
        }
    }

    /// Estimates m, u and the match share from unlabelled comparison vectors by
    /// expectation–maximisation, starting from `self`, for at most `iterations` rounds or until
    /// no probability moves by more than `tolerance`.
    pub fn estimate(&self, vectors: &[ComparisonVector], iterations: usize, tolerance: f64) -> Model {
        let weighted: Vec<(ComparisonVector, f64)> = vectors.iter().map(|v| (v.clone(), 1.0)).collect();
        self.estimate_weighted(&weighted, iterations, tolerance, false)
    }

    /// As [`Model::estimate`], with each distinct vector given once with how many pairs show it
    /// (millions of pairs make a few thousand distinct vectors). With `keep_u`, u stays as it is
    /// and only m and the match share are estimated: u is better taken from random pairs, which
    /// blocking has not filtered.
    pub fn estimate_weighted(
        &self,
        vectors: &[(ComparisonVector, f64)],
        iterations: usize,
        tolerance: f64,
        keep_u: bool,
    ) -> Model {
        let mut model = self.clone();
        let total: f64 = vectors.iter().map(|(_, n)| n).sum();
        if total <= 0.0 {
            return model;
        }
        for _ in 0..iterations {
            // Expectation: each pair's probability of being a match under the current model.
            let posteriors: Vec<f64> = vectors.iter().map(|(v, _)| model.score(v).probability).collect();
            // Maximisation: m and u as the posterior-weighted shares of each level.
            let matches: f64 = posteriors.iter().zip(vectors).map(|(p, (_, n))| p * n).sum();
            let mut next = model.clone();
            next.match_share = clamp(matches / total);
            for (f, field) in next.fields.iter_mut().enumerate() {
                let levels = field.m.len();
                let (mut m_counts, mut u_counts) = (vec![0.0; levels], vec![0.0; levels]);
                for ((vector, n), posterior) in vectors.iter().zip(&posteriors) {
                    if let Some(Some(level)) = vector.get(f)
                        && *level < levels
                    {
                        m_counts[*level] += posterior * n;
                        u_counts[*level] += (1.0 - posterior) * n;
                    }
                }
                field.m = normalise(&m_counts);
                if !keep_u {
                    field.u = normalise(&u_counts);
                }
            }
            let moved = next
                .fields
                .iter()
                .zip(&model.fields)
                .flat_map(|(a, b)| a.m.iter().zip(&b.m).chain(a.u.iter().zip(&b.u)))
                .map(|(x, y)| (x - y).abs())
                .fold((next.match_share - model.match_share).abs(), f64::max);
            model = next;
            if moved < tolerance {
                break;
            }
        }
        model
    }
}

/// Counts as shares, kept off 0 and 1; equal shares where nothing was counted.
pub fn normalise(counts: &[f64]) -> Vec<f64> {
    let total: f64 = counts.iter().sum();
    counts
        .iter()
        .map(|c| {
            if total > 0.0 {
                clamp(c / total)
            } else {
                1.0 / counts.len() as f64
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic generator (SplitMix64), so that the test data is the same on every run.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> f64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
        }

        fn level(&mut self, probabilities: &[f64]) -> usize {
            let mut draw = self.next();
            for (level, p) in probabilities.iter().enumerate() {
                if draw < *p {
                    return level;
                }
                draw -= p;
            }
            probabilities.len() - 1
        }
    }

    fn truth() -> Model {
        Model {
            fields: vec![
                FieldModel {
                    name: "name".into(),
                    m: vec![0.85, 0.12, 0.03],
                    u: vec![0.01, 0.04, 0.95],
                },
                FieldModel {
                    name: "birth_date".into(),
                    m: vec![0.92, 0.06, 0.02],
                    u: vec![0.003, 0.01, 0.987],
                },
                FieldModel {
                    name: "phone".into(),
                    m: vec![0.7, 0.3],
                    u: vec![0.001, 0.999],
                },
            ],
            match_share: 0.2,
        }
    }

    #[test]
    fn em_recovers_m_and_u_from_unlabelled_pairs() {
        let truth = truth();
        let mut rng = Rng(42);
        let vectors: Vec<ComparisonVector> = (0..20_000)
            .map(|_| {
                let is_match = rng.next() < truth.match_share;
                truth
                    .fields
                    .iter()
                    .map(|f| Some(rng.level(if is_match { &f.m } else { &f.u })))
                    .collect()
            })
            .collect();
        let start = Model::initial(&[("name", 3), ("birth_date", 3), ("phone", 2)], 0.05);
        let estimated = start.estimate(&vectors, 200, 1e-7);
        assert!(
            (estimated.match_share - 0.2).abs() < 0.02,
            "{}",
            estimated.match_share
        );
        for (got, want) in estimated.fields.iter().zip(&truth.fields) {
            for (g, w) in got.m.iter().zip(&want.m).chain(got.u.iter().zip(&want.u)) {
                assert!((g - w).abs() < 0.03, "{}: {got:?} vs {want:?}", want.name);
            }
        }
    }

    #[test]
    fn a_score_keeps_each_fields_part_and_missing_fields_count_for_nothing() {
        let model = truth();
        let agree = model.score(&vec![Some(0), Some(0), Some(0)]);
        let disagree = model.score(&vec![Some(2), Some(2), Some(1)]);
        assert!(agree.probability > 0.999 && disagree.probability < 0.001);
        assert_eq!(agree.field_weights.len(), 3);
        assert!((agree.field_weights[0] - (0.85f64 / 0.01).log2()).abs() < 1e-9);
        assert!((agree.weight - agree.field_weights.iter().sum::<f64>()).abs() < 1e-9);
        let without_phone = model.score(&vec![Some(0), Some(0), None]);
        assert_eq!(without_phone.field_weights[2], 0.0);
        assert!(without_phone.probability < agree.probability);
    }
}
