//! Matching on the registration path: which existing person, if any, a source record describes.
//! The [`Matcher`] gives the record's blocking keys, the store finds the records sharing any of
//! them (the candidates), and the matcher decides: link above the upper threshold, queue for
//! review between the thresholds, a new person below. The matcher is the batch linkage engine's
//! (`linkage`), so online matching, re-matching and `hie dedupe` weigh evidence the same way.

use hie_core::Error;
use hie_core::domain::{Identifier, IdentifierSystem, ResidentId};

use super::linkage::blocking::{BlockingRule, default_rules};
use super::linkage::comparison::Pattern;
use super::linkage::model::{LinkageModel, ScoreTable};
use super::linkage::{Field, PersonFields, Profile};
use super::{Demographics, PersonId, SourceRecordDraft, SourceRecordId};

/// A blocking key: a rule's hash of the record's values. Records sharing a key are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlockingKey(pub i64);

/// An existing source record that shares a blocking key with the record being registered (or
/// belongs to the same person as the record being updated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub person_id: PersonId,
    pub source_record_id: SourceRecordId,
    pub demographics: Demographics,
    pub identifiers: Vec<Identifier>,
    /// The person's resident identity number, from any of their records: a record that lacks
    /// one is compared as its person's, so that a namesake with another number does not join a
    /// person through the one record that happens to carry no number.
    pub person_resident_id: Option<ResidentId>,
}

/// The thresholds of match probability: at or above `link` a record joins the person; at or
/// above `review` (and below `link`) the pair waits for a person to decide.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MatchThresholds {
    link: f64,
    review: f64,
}

impl MatchThresholds {
    pub fn new(link: f64, review: f64) -> Result<MatchThresholds, Error> {
        for (field, value) in [("link_threshold", link), ("review_threshold", review)] {
            if !(0.0..=1.0).contains(&value) {
                return Err(Error::invalid(
                    field,
                    format!("is {value}, expected a probability in 0..=1"),
                ));
            }
        }
        if review > link {
            return Err(Error::invalid(
                "review_threshold",
                format!("is {review}, above link_threshold {link}: the thresholds are out of order"),
            ));
        }
        Ok(MatchThresholds { link, review })
    }

    pub fn link(&self) -> f64 {
        self.link
    }

    pub fn review(&self) -> f64 {
        self.review
    }
}

impl Default for MatchThresholds {
    fn default() -> MatchThresholds {
        MatchThresholds {
            link: 0.95,
            review: 0.5,
        }
    }
}

/// A candidate person and how well the record matches them (their best-matching record).
#[derive(Debug, Clone, PartialEq)]
pub struct PossibleMatch {
    pub person_id: PersonId,
    pub source_record_id: SourceRecordId,
    pub probability: f64,
    pub pattern: Pattern,
}

/// What the matcher decided for a record.
#[derive(Debug, Clone, PartialEq)]
pub enum MatchDecision {
    /// The record describes this existing person. `review` holds other persons close enough to
    /// ask about (possible duplicates).
    Link {
        best: PossibleMatch,
        review: Vec<PossibleMatch>,
    },
    /// No existing person is likely enough; `review` holds those that might be.
    /// `closest` is the best candidate of all, however unlikely, so that the decision shows
    /// why it was not linked.
    NewPerson {
        review: Vec<PossibleMatch>,
        closest: Option<PossibleMatch>,
    },
}

/// One field's part in a decision.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldWeight {
    pub field: String,
    /// The level of agreement, or `None` when either record lacks the field.
    pub agreement: Option<&'static str>,
    /// log2(m/u) at that level: positive for evidence of a match.
    pub weight: f64,
}

/// Why two records were, or were not, linked.
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    pub probability: f64,
    pub weight: f64,
    pub fields: Vec<FieldWeight>,
}

/// Decides which person a record describes. Pure: no I/O, so that it can be tested and replayed.
pub trait Matcher: Send + Sync + std::fmt::Debug {
    /// The record prepared for matching: done once per registration, for the keys and the
    /// decision both.
    fn prepare(&self, record: &SourceRecordDraft) -> Profile;

    /// The keys whose candidates the decision needs.
    fn blocking_keys(&self, record: &Profile) -> Vec<BlockingKey>;

    /// Decides among `candidates`, which never include the record itself.
    fn decide(&self, record: &Profile, candidates: &[Candidate]) -> MatchDecision;

    /// The per-field account of a possible match of `pattern` decided at `probability` (the
    /// name's weight includes how common the name is, which the pattern alone does not say).
    fn explain(&self, pattern: Pattern, probability: f64) -> Explanation;

    /// The version of the model deciding (0 for the built-in one).
    fn model_version(&self) -> i64;

    /// The blocking rules in force.
    fn blocking_rules(&self) -> Vec<BlockingRule>;

    /// Whether the rules are the settings' (`matching.blocking_rules`), which a newly trained
    /// model's rules do not replace.
    fn rules_are_configured(&self) -> bool;
}

/// A profile's keys under `rules`, sorted, each once.
pub fn keys_under(rules: &[BlockingRule], profile: &Profile) -> Vec<BlockingKey> {
    let mut keys: Vec<BlockingKey> = rules
        .iter()
        .filter_map(|rule| rule.key(profile))
        .map(|key| BlockingKey(key as i64))
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// The fields of a registered record as linkage reads them.
pub fn person_fields(demographics: &Demographics, identifiers: &[Identifier]) -> PersonFields {
    let mut fields = PersonFields::default().with(Field::FullName, demographics.name.as_str());
    if let Some(sex) = demographics.sex {
        fields.set(Field::Sex, sex.code());
    }
    if let Some(birth_date) = demographics.birth_date {
        fields.set(Field::BirthDate, &birth_date.to_iso());
    }
    if let Some(resident_id) = identifiers.iter().find_map(Identifier::as_resident_id) {
        fields.set(Field::ResidentId, resident_id.as_str());
    }
    // Identifiers of every other system but organisations' own numbers (which no other
    // organisation's record carries) count as identifiers, each under its system.
    for identifier in identifiers {
        if matches!(identifier.system(), IdentifierSystem::Passport) {
            fields.set_identifier(&identifier.system_uri(), identifier.value());
        }
    }
    if let Some(phone) = &demographics.phone {
        fields.set(Field::Phone, phone.as_str());
    }
    fields.set(Field::Address1, demographics.address_line.as_str());
    // The division code (county level) is where the person lives, the city of a population file.
    if let Some(division) = &demographics.division {
        fields.set(Field::City, division.as_str());
    }
    fields
}

/// The model shipped with hie, trained by `hie dedupe` on a generated prefecture of a million
/// records (see the README); it serves until `hie population train` has trained one on the
/// registry's own records.
pub const BUILT_IN_MODEL: &str = include_str!("linkage/built_in_model.json");

/// Fellegi–Sunter matching with the linkage engine's comparators and a trained model.
#[derive(Debug, Clone)]
pub struct ProbabilisticMatcher {
    model: LinkageModel,
    version: i64,
    table: ScoreTable,
    rules: Vec<BlockingRule>,
    rules_configured: bool,
    thresholds: MatchThresholds,
}

impl ProbabilisticMatcher {
    pub fn new(model: LinkageModel, version: i64, thresholds: MatchThresholds) -> ProbabilisticMatcher {
        // The rules chosen with the model (`hie population train`), else the built-in ones.
        let rules = super::linkage::blocking::parse_rules(&model.blocking_rules)
            .ok()
            .filter(|rules| !rules.is_empty())
            .unwrap_or_else(default_rules);
        ProbabilisticMatcher {
            table: model.score_table(model.pair_prior),
            model,
            version,
            rules,
            rules_configured: false,
            thresholds,
        }
    }

    /// Blocks by `rules` instead of the model's or the built-in ones (the settings'
    /// `matching.blocking_rules`); no rules changes nothing.
    /// Stored keys follow the rules in force when each record was last matched: after a change,
    /// `hie population rematch` renews them.
    pub fn with_rules(mut self, rules: Vec<BlockingRule>) -> ProbabilisticMatcher {
        if !rules.is_empty() {
            self.rules = rules;
            self.rules_configured = true;
        }
        self
    }

    /// The built-in model.
    pub fn built_in(thresholds: MatchThresholds) -> ProbabilisticMatcher {
        let model = LinkageModel::from_json(BUILT_IN_MODEL).expect("the built-in model reads");
        ProbabilisticMatcher::new(model, 0, thresholds)
    }

    pub fn thresholds(&self) -> MatchThresholds {
        self.thresholds
    }
}

impl Matcher for ProbabilisticMatcher {
    fn prepare(&self, record: &SourceRecordDraft) -> Profile {
        Profile::prepare(&person_fields(record.demographics(), record.identifiers())).0
    }

    fn blocking_keys(&self, profile: &Profile) -> Vec<BlockingKey> {
        keys_under(&self.rules, profile)
    }

    fn decide(&self, profile: &Profile, candidates: &[Candidate]) -> MatchDecision {
        // Each person's best-matching record speaks for the person.
        let mut best_per_person: Vec<PossibleMatch> = Vec::new();
        for candidate in candidates {
            let mut fields = person_fields(&candidate.demographics, &candidate.identifiers);
            if fields.get(Field::ResidentId).is_none()
                && let Some(id) = &candidate.person_resident_id
            {
                fields.set(Field::ResidentId, id.as_str());
            }
            let other = Profile::prepare(&fields).0;
            let pattern = self.model.schema.compare_packed(profile, &other);
            let probability = self.table.probability(pattern, profile.name.as_ref());
            match best_per_person
                .iter_mut()
                .find(|m| m.person_id == candidate.person_id)
            {
                Some(known) if known.probability >= probability => {}
                Some(known) => {
                    *known = PossibleMatch {
                        person_id: candidate.person_id.clone(),
                        source_record_id: candidate.source_record_id.clone(),
                        probability,
                        pattern,
                    }
                }
                None => best_per_person.push(PossibleMatch {
                    person_id: candidate.person_id.clone(),
                    source_record_id: candidate.source_record_id.clone(),
                    probability,
                    pattern,
                }),
            }
        }
        // Highest first; equal scores in person order, so that the decision is repeatable.
        best_per_person.sort_by(|a, b| {
            b.probability
                .total_cmp(&a.probability)
                .then_with(|| a.person_id.cmp(&b.person_id))
        });
        let closest = best_per_person.first().cloned();
        best_per_person.retain(|m| m.probability >= self.thresholds.review);
        match best_per_person.first() {
            Some(best) if best.probability >= self.thresholds.link => {
                let best = best.clone();
                best_per_person.remove(0);
                MatchDecision::Link {
                    best,
                    review: best_per_person,
                }
            }
            _ => MatchDecision::NewPerson {
                review: best_per_person,
                closest,
            },
        }
    }

    fn explain(&self, pattern: Pattern, probability: f64) -> Explanation {
        let mut score = self.model.explain(pattern, self.model.pair_prior, None);
        // What the pattern does not say is how common the name is: the difference between the
        // decided log-odds and the pattern's is the name's frequency adjustment.
        let log_odds = |p: f64| {
            let p = p.clamp(1e-12, 1.0 - 1e-12);
            (p / (1.0 - p)).log2()
        };
        let adjustment = log_odds(probability) - log_odds(score.probability);
        if adjustment.is_finite() && adjustment.abs() > 1e-6 {
            score.field_weights[0] += adjustment;
            score.weight += adjustment;
            score.probability = probability;
        }
        let levels = self.model.schema.unpack(pattern);
        Explanation {
            probability: score.probability,
            weight: score.weight,
            fields: self
                .model
                .schema
                .fields()
                .into_iter()
                .zip(levels)
                .zip(score.field_weights)
                .map(|(((field, names), level), weight)| FieldWeight {
                    field,
                    agreement: level.map(|l| names[l]),
                    weight,
                })
                .collect(),
        }
    }

    fn model_version(&self) -> i64 {
        self.version
    }

    fn blocking_rules(&self) -> Vec<BlockingRule> {
        self.rules.clone()
    }

    fn rules_are_configured(&self) -> bool {
        self.rules_configured
    }
}

#[cfg(test)]
mod tests {
    use super::super::record::tests::{demographics, resident, with_check};
    use super::*;
    use hie_core::domain::{OrganisationCode, Phone};

    fn record(name: &str, birth_date: &str, resident_ids: &[&str], phone: Option<&str>) -> SourceRecordDraft {
        let mut demographics = demographics(
            name,
            "2",
            if birth_date.is_empty() {
                "2000-01-01"
            } else {
                birth_date
            },
        );
        if birth_date.is_empty() {
            demographics.birth_date = None;
        }
        demographics.phone = phone.map(|p| Phone::parse(p).unwrap());
        SourceRecordDraft::new(
            OrganisationCode::parse("QDN-H01").unwrap(),
            "1",
            demographics,
            resident_ids.iter().map(|id| resident(id)).collect(),
        )
        .unwrap()
    }

    fn candidate(person: &PersonId, draft: &SourceRecordDraft) -> Candidate {
        Candidate {
            person_id: person.clone(),
            source_record_id: SourceRecordId::generate(),
            demographics: draft.demographics().clone(),
            identifiers: draft.identifiers().to_vec(),
            person_resident_id: draft.resident_id(),
        }
    }

    fn decide(
        matcher: &ProbabilisticMatcher,
        record: &SourceRecordDraft,
        candidates: &[Candidate],
    ) -> MatchDecision {
        matcher.decide(&matcher.prepare(record), candidates)
    }

    fn matcher() -> ProbabilisticMatcher {
        ProbabilisticMatcher::built_in(MatchThresholds::default())
    }

    #[test]
    fn thresholds_out_of_order_are_refused() {
        assert!(MatchThresholds::new(0.9, 0.5).is_ok());
        let error = MatchThresholds::new(0.5, 0.9).unwrap_err().to_string();
        assert!(
            error.contains("review_threshold") && error.contains("out of order"),
            "{error}"
        );
        assert!(
            MatchThresholds::new(1.5, 0.5)
                .unwrap_err()
                .to_string()
                .contains("link_threshold")
        );
    }

    #[test]
    fn the_same_resident_and_demographics_link_to_the_existing_person() {
        let person = PersonId::generate();
        let existing = record("王芳", "1949-12-31", &["11010519491231002X"], Some("13808551234"));
        let new = record("汪芳", "1949-12-31", &["11010519491231002X"], None);
        match decide(&matcher(), &new, &[candidate(&person, &existing)]) {
            MatchDecision::Link { best, .. } => assert_eq!(best.person_id, person),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_record_without_a_number_is_compared_as_its_persons() {
        let person = PersonId::generate();
        let numberless = record("王芳", "1949-12-31", &[], Some("13808551234"));
        let other = with_check("11010519491231004");
        let namesake = record("王芳", "1949-12-31", &[&other], Some("13900001111"));
        let mut known = candidate(&person, &numberless);
        assert!(matches!(
            decide(&matcher(), &namesake, &[known.clone()]),
            MatchDecision::Link { .. }
        ));
        known.person_resident_id = Some(ResidentId::parse("11010519491231002X").unwrap());
        assert!(matches!(
            decide(&matcher(), &namesake, &[known]),
            MatchDecision::NewPerson { .. }
        ));
    }

    #[test]
    fn a_namesake_born_another_day_is_a_new_person() {
        let person = PersonId::generate();
        let existing = record("王芳", "1949-12-31", &["11010519491231002X"], Some("13808551234"));
        let other = with_check("11010519620101002");
        let new = record("王芳", "1962-01-01", &[&other], Some("13900000000"));
        let decision = decide(&matcher(), &new, &[candidate(&person, &existing)]);
        let MatchDecision::NewPerson { review, closest } = decision else {
            panic!("{decision:?}");
        };
        assert!(review.is_empty());
        assert_eq!(
            closest.map(|c| c.person_id),
            Some(person),
            "the closest is kept to say why not"
        );
    }

    #[test]
    fn a_weak_match_goes_to_review_with_its_reasons() {
        let person = PersonId::generate();
        let existing = record("王芳", "1949-12-31", &[], None);
        let new = record("王芳", "1949-12-31", &[], None);
        let strict = ProbabilisticMatcher::new(
            LinkageModel::from_json(BUILT_IN_MODEL).unwrap(),
            0,
            MatchThresholds::new(0.999_999_9, 0.01).unwrap(),
        );
        let MatchDecision::NewPerson { review, .. } = decide(&strict, &new, &[candidate(&person, &existing)])
        else {
            panic!("expected review");
        };
        assert_eq!(review.len(), 1);
        let explanation = strict.explain(review[0].pattern, review[0].probability);
        assert_eq!(explanation.fields[0].agreement, Some("same characters"));
        assert!(explanation.fields[0].weight > 0.0);
        assert_eq!(explanation.fields[4].agreement, None, "no phone on either");
    }

    #[test]
    fn blocking_keys_come_from_every_rule_the_record_has_values_for() {
        let with_everything = record("王芳", "1949-12-31", &["11010519491231002X"], Some("13808551234"));
        let name_only = record("王芳", "", &[], None);
        assert!(
            matcher()
                .blocking_keys(&matcher().prepare(&with_everything))
                .len()
                >= 4
        );
        assert!(matcher().blocking_keys(&matcher().prepare(&name_only)).is_empty());
    }
}
