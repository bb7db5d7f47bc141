//! Blocking: only records that share a key under at least one rule are compared, so that the
//! work grows with the number of likely pairs, not with the square of the population. A rule is
//! a combination of key parts (`birth_date+surname_key`); the rules are a union, and a pair found
//! by several rules is compared once.

use super::{Profile, stable_hash};

/// One part of a blocking key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
}

impl KeyPart {
    const ALL: [KeyPart; 10] = [
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

    pub fn name(self) -> &'static str {
        match self {
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
        }
    }

    /// Feeds the part's value into `hasher`; false if the profile lacks it.
    fn feed(self, profile: &Profile, hasher: &mut impl std::hash::Hasher) -> bool {
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
        }
        .is_some()
    }
}

/// A blocking rule: records agreeing on every part are candidates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockingRule {
    parts: Vec<KeyPart>,
}

impl BlockingRule {
    /// Parses `part+part+…`, for example `birth_date+surname_key`.
    pub fn parse(text: &str) -> Result<BlockingRule, String> {
        let mut parts = Vec::new();
        for name in text.split('+').map(str::trim) {
            let part = KeyPart::ALL
                .into_iter()
                .find(|p| p.name() == name)
                .ok_or_else(|| {
                    let known: Vec<&str> = KeyPart::ALL.iter().map(|p| p.name()).collect();
                    format!(
                        "'{name}' is not a blocking key part, expected one of {}",
                        known.join(", ")
                    )
                })?;
            if !parts.contains(&part) {
                parts.push(part);
            }
        }
        Ok(BlockingRule { parts })
    }

    /// The key of a profile under this rule; `None` if it lacks a part.
    pub fn key(&self, profile: &Profile) -> Option<u64> {
        #[allow(deprecated)]
        let mut hasher =
            std::hash::SipHasher::new_with_keys(0x626c_6f63_6b69_6e67, stable_hash(&self.to_string()));
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
        let names: Vec<&str> = self.parts.iter().map(|p| p.name()).collect();
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
        let mut entries: Vec<(u64, u32)> = rule_keys
            .iter()
            .enumerate()
            .filter_map(|(i, key)| key.map(|k| (k, i as u32)))
            .collect();
        entries.sort_unstable();
        for block in entries.chunk_by(|a, b| a.0 == b.0) {
            if block.len() < 2 {
                continue;
            }
            if block.len() > MAX_BLOCK {
                blocking.oversized_blocks += 1;
                continue;
            }
            for (x, &(_, i)) in block.iter().enumerate() {
                for &(_, j) in &block[x + 1..] {
                    if let Some(n) = left_len
                        && ((i as usize) < n) == ((j as usize) < n)
                    {
                        continue;
                    }
                    let found_earlier = keys[..r].iter().any(|earlier| {
                        earlier[i as usize].is_some() && earlier[i as usize] == earlier[j as usize]
                    });
                    if !found_earlier {
                        blocking.pairs.push((i.min(j), i.max(j)));
                    }
                }
            }
        }
    }
    blocking
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
