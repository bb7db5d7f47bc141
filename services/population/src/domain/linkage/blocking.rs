//! Blocking: only records that share a key under at least one rule are compared, so that the
//! work grows with the number of likely pairs, not with the square of the population. A rule is
//! a combination of key parts (`birth_date+surname_key`); the rules are a union, and a pair found
//! by several rules is compared once.

use super::{Profile, stable_hash};

/// One part of a blocking key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyPart {
    ResidentId,
    Phone,
    BirthDate,
    BirthYear,
    NameKey,
    SurnameKey,
    GivenKey,
    Sex,
    City,
    Postcode,
    /// The identifier of the named system (`identifier:passport`).
    Identifier(Box<str>),
}

impl KeyPart {
    /// The parts every profile may have; identifiers come with their system's name.
    pub const FIXED: [KeyPart; 10] = [
        KeyPart::ResidentId,
        KeyPart::Phone,
        KeyPart::BirthDate,
        KeyPart::BirthYear,
        KeyPart::NameKey,
        KeyPart::SurnameKey,
        KeyPart::GivenKey,
        KeyPart::Sex,
        KeyPart::City,
        KeyPart::Postcode,
    ];

    pub fn name(&self) -> std::borrow::Cow<'static, str> {
        let name = match self {
            KeyPart::ResidentId => "resident_id",
            KeyPart::Phone => "phone",
            KeyPart::BirthDate => "birth_date",
            KeyPart::BirthYear => "birth_year",
            KeyPart::NameKey => "name_key",
            KeyPart::SurnameKey => "surname_key",
            KeyPart::GivenKey => "given_key",
            KeyPart::Sex => "sex",
            KeyPart::City => "city",
            KeyPart::Postcode => "postcode",
            KeyPart::Identifier(system) => return format!("identifier:{system}").into(),
        };
        name.into()
    }

    /// Parses a part's name.
    pub fn parse(name: &str) -> Result<KeyPart, String> {
        if let Some(system) = name.strip_prefix("identifier:") {
            if system.trim().is_empty() {
                return Err(format!("'{name}' names no identifier system"));
            }
            return Ok(KeyPart::Identifier(system.trim().into()));
        }
        KeyPart::FIXED
            .into_iter()
            .find(|p| p.name() == name)
            .ok_or_else(|| {
                let known: Vec<_> = KeyPart::FIXED.iter().map(|p| p.name()).collect();
                format!(
                    "'{name}' is not a blocking key part, expected one of {} or identifier:NAME",
                    known.join(", ")
                )
            })
    }

    /// Whether `profile` has a value for this part.
    pub fn present(&self, profile: &Profile) -> bool {
        self.feed(profile, &mut std::hash::DefaultHasher::new())
    }

    /// Feeds the part's value into `hasher`; false if the profile lacks it.
    fn feed(&self, profile: &Profile, hasher: &mut impl std::hash::Hasher) -> bool {
        use std::hash::Hash;
        let name = profile.name.as_ref();
        match self {
            KeyPart::ResidentId => profile.resident_id.as_deref().map(|v| v.hash(hasher)),
            KeyPart::Phone => profile.phone.as_deref().map(|v| v.hash(hasher)),
            KeyPart::BirthDate => profile.birth_date.map(|v| v.hash(hasher)),
            KeyPart::BirthYear => profile.birth_date.map(|v| v.0.hash(hasher)),
            KeyPart::NameKey => name.map(|n| n.sorted_key.hash(hasher)),
            KeyPart::SurnameKey => name
                .filter(|n| !n.surname_key.is_empty())
                .map(|n| n.surname_key.hash(hasher)),
            KeyPart::GivenKey => name
                .filter(|n| !n.given_key.is_empty())
                .map(|n| n.given_key.hash(hasher)),
            KeyPart::Sex => profile.sex.map(|v| v.hash(hasher)),
            KeyPart::City => profile.city.map(|v| v.hash(hasher)),
            KeyPart::Postcode => profile.postcode.as_deref().map(|v| v.hash(hasher)),
            KeyPart::Identifier(system) => profile.identifier(system).map(|v| v.hash(hasher)),
        }
        .is_some()
    }
}

/// A blocking rule: records agreeing on every part are candidates.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BlockingRule {
    parts: Vec<KeyPart>,
    /// The hash key of the rule's keys, from its text: two rules never share a key.
    seed: u64,
}

impl BlockingRule {
    /// Parses `part+part+…`, for example `birth_date+surname_key`.
    pub fn parse(text: &str) -> Result<BlockingRule, String> {
        let mut parts = Vec::new();
        for name in text.split('+').map(str::trim) {
            let part = KeyPart::parse(name)?;
            if !parts.contains(&part) {
                parts.push(part);
            }
        }
        Ok(BlockingRule::of(parts))
    }

    /// The rule of these parts.
    pub fn of(parts: Vec<KeyPart>) -> BlockingRule {
        let text: Vec<_> = parts.iter().map(|p| p.name()).collect();
        BlockingRule {
            seed: stable_hash(&text.join("+")),
            parts,
        }
    }

    pub fn parts(&self) -> &[KeyPart] {
        &self.parts
    }

    /// The key of a profile under this rule; `None` if it lacks a part.
    pub fn key(&self, profile: &Profile) -> Option<u64> {
        #[allow(deprecated)]
        let mut hasher = std::hash::SipHasher::new_with_keys(0x626c_6f63_6b69_6e67, self.seed);
        for part in &self.parts {
            if !part.feed(profile, &mut hasher) {
                return None;
            }
        }
        Some(std::hash::Hasher::finish(&hasher))
    }
}

impl std::fmt::Display for BlockingRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<_> = self.parts.iter().map(|p| p.name()).collect();
        f.write_str(&names.join("+"))
    }
}

/// The default rules: identity number, phone, and three name-and-date combinations that each
/// survive a different corruption (a swapped or mistyped date; a changed given-name character;
/// a changed surname character), plus name within a city for records that lack a good date.
pub const DEFAULT_RULES: [&str; 6] = [
    "resident_id",
    "phone",
    "name_key+birth_year",
    "birth_date+surname_key",
    "birth_date+given_key",
    "name_key+city",
];

pub fn default_rules() -> Vec<BlockingRule> {
    DEFAULT_RULES
        .iter()
        .map(|r| BlockingRule::parse(r).expect("the default rules parse"))
        .collect()
}

/// Blocks larger than this are left out (a placeholder phone such as 00000000 shared by
/// thousands would otherwise make millions of useless pairs); they are counted in
/// [`Blocking::oversized_blocks`].
pub const MAX_BLOCK: usize = 1_000;

/// Candidate pairs of record indexes, `(i, j)` with `i < j`, each once.
#[derive(Debug, Default)]
pub struct Blocking {
    pub pairs: Vec<(u32, u32)>,
    pub oversized_blocks: usize,
}

/// Finds candidate pairs among `profiles`. With `left_len = Some(n)` the first `n` profiles are
/// one file and the rest another, and only pairs across the two are kept (linkage); with `None`
/// every pair is a candidate (deduplication).
pub fn candidate_pairs(profiles: &[Profile], rules: &[BlockingRule], left_len: Option<usize>) -> Blocking {
    // Every profile's key under every rule, so that a pair found by a later rule can be skipped
    // when an earlier one already found it.
    let keys: Vec<Vec<Option<u64>>> = rules
        .iter()
        .map(|rule| profiles.iter().map(|p| rule.key(p)).collect())
        .collect();
    let mut blocking = Blocking::default();
    for (r, rule_keys) in keys.iter().enumerate() {
        blocking.oversized_blocks += block_pairs(rule_keys, left_len, |i, j| {
            let found_earlier = keys[..r]
                .iter()
                .any(|earlier| earlier[i as usize].is_some() && earlier[i as usize] == earlier[j as usize]);
            if !found_earlier {
                blocking.pairs.push((i, j));
            }
        });
    }
    blocking
}

/// Calls `pair(i, j)`, `i < j`, for every two records sharing a key in `keys` (one per record,
/// `None` for none), across the files only when `left_len` splits them; blocks of more than
/// [`MAX_BLOCK`] are left out, and their number returned.
pub fn block_pairs(keys: &[Option<u64>], left_len: Option<usize>, mut pair: impl FnMut(u32, u32)) -> usize {
    let mut entries: Vec<(u64, u32)> = keys
        .iter()
        .enumerate()
        .filter_map(|(i, key)| key.map(|k| (k, i as u32)))
        .collect();
    entries.sort_unstable();
    let mut oversized = 0;
    for block in entries.chunk_by(|a, b| a.0 == b.0) {
        if block.len() > MAX_BLOCK {
            oversized += 1;
            continue;
        }
        for (x, &(_, i)) in block.iter().enumerate() {
            for &(_, j) in &block[x + 1..] {
                if let Some(n) = left_len
                    && ((i as usize) < n) == ((j as usize) < n)
                {
                    continue;
                }
                pair(i.min(j), i.max(j));
            }
        }
    }
    oversized
}

/// Parses rules written as text (settings, a model file, the command line).
pub fn parse_rules(texts: &[String]) -> Result<Vec<BlockingRule>, String> {
    texts.iter().map(|r| BlockingRule::parse(r)).collect()
}

#[cfg(test)]
mod tests {
    use super::super::{Field, PersonFields};
    use super::*;

    fn profile(name: &str, birth_date: &str, phone: &str) -> Profile {
        let fields = PersonFields::default()
            .with(Field::FullName, name)
            .with(Field::BirthDate, birth_date)
            .with(Field::Phone, phone);
        Profile::prepare(&fields).0
    }

    #[test]
    fn rules_parse_and_unknown_parts_are_named() {
        assert_eq!(
            BlockingRule::parse("birth_date+surname_key").unwrap().to_string(),
            "birth_date+surname_key"
        );
        let error = BlockingRule::parse("birth_date+nickname").unwrap_err();
        assert!(
            error.contains("'nickname'") && error.contains("surname_key"),
            "{error}"
        );
        assert_eq!(
            BlockingRule::parse("identifier:passport+birth_year")
                .unwrap()
                .to_string(),
            "identifier:passport+birth_year"
        );
        assert!(
            BlockingRule::parse("identifier: ")
                .unwrap_err()
                .contains("names no identifier")
        );
    }

    #[test]
    fn a_pair_found_by_two_rules_is_compared_once() {
        let profiles = vec![
            profile("王芳", "1985-03-14", "13808551234"),
            profile("王芳", "1985-03-14", "13808551234"),
            profile("李强", "1962-01-01", "13900000000"),
        ];
        let blocking = candidate_pairs(&profiles, &default_rules(), None);
        assert_eq!(blocking.pairs, vec![(0, 1)]);
    }

    #[test]
    fn linkage_keeps_only_pairs_across_the_two_files() {
        let profiles = vec![
            profile("王芳", "1985-03-14", "13808551234"),
            profile("王芳", "1985-03-14", "13808551234"),
            profile("汪芳", "1985-03-14", "13808551234"),
        ];
        let blocking = candidate_pairs(&profiles, &default_rules(), Some(2));
        assert_eq!(blocking.pairs, vec![(0, 2), (1, 2)]);
    }

    #[test]
    fn a_missing_part_means_no_key() {
        let rule = BlockingRule::parse("phone").unwrap();
        assert!(rule.key(&profile("王芳", "1985-03-14", "")).is_none());
    }
}
