//! A pair of profiles compared field by field into levels of agreement (0 = the best), packed
//! into one number, a [`Pattern`], so that the scores of every possible pattern can be worked out
//! once and looked up for millions of pairs.

use super::super::compare::{DateAgreement, at_most_one_edit, compare_dates, jaro_winkler};
use super::super::fellegi_sunter::ComparisonVector;
use super::{NameSound, Profile};

/// The compared fields and their levels of agreement, best first. The order is the order of
/// comparison vectors and of a model's fields.
///
/// Where a person lives is one field, not four: a move changes street, city, postcode and
/// province together, and counting each as separate evidence would count one move four times.
pub const FIELDS: [(&str, &[&str]); 6] = [
    (
        "name",
        &["same characters", "sounds alike", "similar", "different"],
    ),
    (
        "birth_date",
        &["same", "day and month swapped", "one typo", "different"],
    ),
    ("sex", &["same", "different"]),
    ("resident_id", &["same", "one typo or transposition", "different"]),
    ("phone", &["same", "same last 7 digits", "different"]),
    (
        "address",
        &[
            "mostly the same",
            "partly the same",
            "same city or postcode",
            "different",
        ],
    ),
];

/// The levels of an identifier of any other system (a passport, an insurance number, a column
/// `--map identifier:NAME=COLUMN` names): each system is a field of its own, with its own m and u.
pub const IDENTIFIER_LEVELS: &[&str] = &["same", "one typo or transposition", "different"];

/// How many identifier systems a model compares besides the resident identity number: each
/// multiplies the number of patterns by four.
pub const MAX_IDENTIFIERS: usize = 4;

/// A comparison vector of the fixed fields above.
pub type Levels = [Option<usize>; 6];

/// A comparison vector packed into one number: each field takes `levels + 1` values, 0 for
/// missing and `level + 1` otherwise.
pub type Pattern = u32;

/// What is compared: the fixed fields, then the identifier systems a run or model knows, in
/// order. Packs a pair's levels into a [`Pattern`] and back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Schema {
    identifiers: Vec<Box<str>>,
}

impl Schema {
    /// A schema comparing the identifier systems `identifiers` besides the fixed fields.
    pub fn new(identifiers: &[&str]) -> Result<Schema, String> {
        if identifiers.len() > MAX_IDENTIFIERS {
            return Err(format!(
                "{} identifier systems, at most {MAX_IDENTIFIERS} are compared",
                identifiers.len()
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for name in identifiers {
            if name.trim().is_empty() {
                return Err("an identifier system needs a name".to_owned());
            }
            if !seen.insert(*name) {
                return Err(format!("identifier system '{name}' is named twice"));
            }
        }
        Ok(Schema {
            identifiers: identifiers.iter().map(|n| (*n).into()).collect(),
        })
    }

    pub fn identifiers(&self) -> &[Box<str>] {
        &self.identifiers
    }

    /// Every compared field's name (`identifier:NAME` for the identifier systems) and levels.
    pub fn fields(&self) -> Vec<(String, &'static [&'static str])> {
        FIELDS
            .iter()
            .map(|(name, levels)| ((*name).to_owned(), *levels))
            .chain(
                self.identifiers
                    .iter()
                    .map(|name| (format!("identifier:{name}"), IDENTIFIER_LEVELS)),
            )
            .collect()
    }

    /// How many patterns there are: the size of a table indexed by pattern.
    pub fn pattern_count(&self) -> usize {
        pattern_count() * (IDENTIFIER_LEVELS.len() + 1).pow(self.identifiers.len() as u32)
    }

    /// Compares two profiles field by field.
    pub fn compare(&self, a: &Profile, b: &Profile) -> Vec<Option<usize>> {
        let mut levels = compare(a, b).to_vec();
        levels.extend(
            self.identifiers
                .iter()
                .map(|name| both(a.identifier(name), b.identifier(name), compare_identity_numbers)),
        );
        levels
    }

    /// The pair's pattern, without allocating: the fixed fields, then each identifier system.
    pub fn compare_packed(&self, a: &Profile, b: &Profile) -> Pattern {
        let mut pattern = pack(&compare(a, b));
        for name in &self.identifiers {
            let level = both(a.identifier(name), b.identifier(name), compare_identity_numbers);
            pattern = pattern * (IDENTIFIER_LEVELS.len() as u32 + 1) + level.map_or(0, |l| l as u32 + 1);
        }
        pattern
    }

    pub fn unpack(&self, pattern: Pattern) -> ComparisonVector {
        let radix = IDENTIFIER_LEVELS.len() as u32 + 1;
        let mut rest = pattern;
        let mut identifiers = vec![None; self.identifiers.len()];
        for level in identifiers.iter_mut().rev() {
            *level = (rest % radix).checked_sub(1).map(|l| l as usize);
            rest /= radix;
        }
        let mut vector = unpack(rest);
        vector.extend(identifiers);
        vector
    }

    /// The level of the name in a pattern (0 = the same characters).
    pub fn name_level(&self, pattern: Pattern) -> Option<usize> {
        let below_name: u32 = FIELDS[1..]
            .iter()
            .map(|(_, levels)| levels.len() as u32 + 1)
            .product::<u32>()
            * (IDENTIFIER_LEVELS.len() as u32 + 1).pow(self.identifiers.len() as u32);
        (pattern / below_name).checked_sub(1).map(|l| l as usize)
    }
}

/// How many patterns of the fixed fields there are.
fn pattern_count() -> usize {
    FIELDS.iter().map(|(_, levels)| levels.len() + 1).product()
}

fn pack(levels: &Levels) -> Pattern {
    let mut pattern = 0u32;
    for ((_, names), level) in FIELDS.iter().zip(levels) {
        pattern = pattern * (names.len() as u32 + 1) + level.map_or(0, |l| l as u32 + 1);
    }
    pattern
}

fn unpack(mut pattern: Pattern) -> ComparisonVector {
    let mut vector = vec![None; FIELDS.len()];
    for (i, (_, names)) in FIELDS.iter().enumerate().rev() {
        let radix = names.len() as u32 + 1;
        let value = pattern % radix;
        pattern /= radix;
        vector[i] = value.checked_sub(1).map(|l| l as usize);
    }
    vector
}

fn compare_names(a: &NameSound, b: &NameSound) -> usize {
    let one_edit = || a.chars.chars().nth(2).is_some() && at_most_one_edit(&a.chars, &b.chars);
    if a.chars == b.chars {
        0
    } else if a.sounds_like(b) {
        1
    } else if a.is_chinese() || b.is_chinese() {
        if jaro_winkler(&a.key, &b.key) >= 0.9 || one_edit() {
            2
        } else {
            3
        }
    } else if latin_parts_alike(a, b) || one_edit() {
        2
    } else {
        3
    }
}

/// Whether two Latin-script names are alike word by word: every word of the name with fewer
/// words is alike to a word of the other (the same sound, close by Jaro–Winkler, one letter off,
/// or an initial standing for it), in any order. A missing given name or surname, an initial, a
/// middle name and names in each other's boxes stay alike; Liam Smith and Olivia Smith, the
/// family members and twins a registry is full of, do not, as the whole name's similarity would
/// have it for their shared surname.
fn latin_parts_alike(a: &NameSound, b: &NameSound) -> bool {
    let (short, long) = if a.words.len() <= b.words.len() {
        (a, b)
    } else {
        (b, a)
    };
    if short.words.is_empty() {
        return false;
    }
    let long_keys: Vec<&str> = long.key.split(' ').collect();
    // Each word of the longer name stands for one word of the shorter at most.
    let mut used = vec![false; long.words.len()];
    short.words.iter().zip(short.key.split(' ')).all(|(word, key)| {
        let found = long
            .words
            .iter()
            .zip(&long_keys)
            .enumerate()
            .find(|(i, (other, other_key))| !used[*i] && words_alike(word, key, other, other_key));
        if let Some((i, _)) = found {
            used[i] = true;
        }
        found.is_some()
    })
}

/// Two words of a name that could be one: an initial and a word it starts, the same sound key,
/// close spellings (Jaro–Winkler ≥ 0.88 on the letters, or one letter off in four or more), or
/// one the start of the other (Chris, Christopher). The sound keys are compared only for
/// equality: a consonant skeleton is too short to be close to another by degrees (Ali and
/// Williams share a-l).
fn words_alike(word: &str, key: &str, other: &str, other_key: &str) -> bool {
    let (length, other_length) = (word.chars().count(), other.chars().count());
    if length == 1 || other_length == 1 {
        return word.chars().next() == other.chars().next();
    }
    key == other_key
        || jaro_winkler(word, other) >= 0.88
        || (length.min(other_length) >= 4 && at_most_one_edit(word, other))
        || (length.min(other_length) >= 3 && (word.starts_with(other) || other.starts_with(word)))
}

fn compare_birth_dates(a: (i32, u32, u32), b: (i32, u32, u32)) -> usize {
    match compare_dates(a, b) {
        DateAgreement::Exact => 0,
        DateAgreement::DayMonthSwapped => 1,
        DateAgreement::OneTypo => 2,
        DateAgreement::Different => 3,
    }
}

fn compare_identity_numbers(a: &str, b: &str) -> usize {
    if a == b {
        0
    } else if a.len() == b.len() && at_most_one_edit(a, b) {
        1
    } else {
        2
    }
}

fn compare_phones(a: &str, b: &str) -> usize {
    if a == b {
        0
    } else if a.len() >= 7 && b.len() >= 7 && a[a.len() - 7..] == b[b.len() - 7..] {
        1
    } else {
        2
    }
}

/// Jaccard similarity of two sorted, repeat-free token lists.
fn token_overlap(a: &[u64], b: &[u64]) -> f64 {
    let (mut i, mut j, mut common) = (0, 0, 0usize);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                common += 1;
                i += 1;
                j += 1;
            }
        }
    }
    common as f64 / (a.len() + b.len() - common) as f64
}

/// Street address first; failing that, the city or postcode; missing if neither record has
/// anything to compare.
fn compare_addresses(a: &Profile, b: &Profile) -> Option<usize> {
    if !a.address.is_empty() && !b.address.is_empty() {
        let overlap = token_overlap(&a.address, &b.address);
        if overlap >= 0.7 {
            return Some(0);
        }
        if overlap >= 0.3 {
            return Some(1);
        }
    }
    let same_city = both(a.city.as_ref(), b.city.as_ref(), |x, y| x == y);
    let same_postcode = both(a.postcode.as_deref(), b.postcode.as_deref(), |x, y| x == y);
    let compared_street = !a.address.is_empty() && !b.address.is_empty();
    match (same_city, same_postcode) {
        (Some(true), _) | (_, Some(true)) => Some(2),
        (None, None) if !compared_street => None,
        _ => Some(3),
    }
}

fn both<T: ?Sized, U>(a: Option<&T>, b: Option<&T>, compare: impl Fn(&T, &T) -> U) -> Option<U> {
    Some(compare(a?, b?))
}

/// Compares two profiles on the fixed fields.
fn compare(a: &Profile, b: &Profile) -> Levels {
    [
        both(a.name.as_ref(), b.name.as_ref(), compare_names),
        both(a.birth_date.as_ref(), b.birth_date.as_ref(), |x, y| {
            compare_birth_dates(*x, *y)
        }),
        both(a.sex.as_ref(), b.sex.as_ref(), |x, y| usize::from(x != y)),
        both(
            a.resident_id.as_deref(),
            b.resident_id.as_deref(),
            compare_identity_numbers,
        ),
        both(a.phone.as_deref(), b.phone.as_deref(), compare_phones),
        compare_addresses(a, b),
    ]
}

#[cfg(test)]
mod tests {
    use super::super::{Field, PersonFields};
    use super::*;

    fn profile(pairs: &[(Field, &str)]) -> Profile {
        let mut fields = PersonFields::default();
        for (field, value) in pairs {
            fields.set(*field, value);
        }
        Profile::prepare(&fields).0
    }

    #[test]
    fn patterns_pack_and_unpack_every_level_and_missing_fields() {
        let levels = [Some(3), None, Some(1), Some(2), None, Some(0)];
        assert_eq!(unpack(pack(&levels)), levels.to_vec());
        assert!((pack(&[Some(3), Some(3), Some(1), Some(2), Some(2), Some(3)]) as usize) < pattern_count());
        let schema = Schema::new(&["passport", "insurance"]).unwrap();
        let a = profile(&[(Field::FullName, "王芳")]);
        let mut fields = PersonFields::default().with(Field::FullName, "王芳");
        fields.set_identifier("passport", "e1234-5678");
        fields.set_identifier("insurance", "A9");
        let mut b_fields = fields.clone();
        b_fields.set_identifier("passport", "E12345687");
        let (with_both, b) = (Profile::prepare(&fields).0, Profile::prepare(&b_fields).0);
        let pattern = schema.compare_packed(&with_both, &b);
        assert!((pattern as usize) < schema.pattern_count());
        let vector = schema.unpack(pattern);
        assert_eq!(vector, schema.compare(&with_both, &b));
        assert_eq!(&vector[6..], &[Some(1), Some(0)], "a transposition; the same");
        assert_eq!(schema.name_level(pattern), Some(0));
        assert_eq!(&schema.compare(&a, &b)[6..], &[None, None], "missing on one side");
    }

    #[test]
    fn a_schema_refuses_unnamed_repeated_or_too_many_systems() {
        assert!(Schema::new(&[""]).unwrap_err().contains("needs a name"));
        assert!(Schema::new(&["a", "a"]).unwrap_err().contains("twice"));
        assert!(
            Schema::new(&["a", "b", "c", "d", "e"])
                .unwrap_err()
                .contains("at most 4")
        );
    }

    #[test]
    fn a_homophone_a_swapped_date_and_a_transposed_id_still_agree_partly() {
        let a = profile(&[
            (Field::FullName, "吴阿妹"),
            (Field::BirthDate, "1985-03-04"),
            (Field::ResidentId, "522601198503040027"),
            (Field::Phone, "13808551234"),
            (Field::Address1, "凯里市北京东路1号"),
        ]);
        let b = profile(&[
            (Field::FullName, "吴阿美"),
            (Field::BirthDate, "1985-04-03"),
            (Field::ResidentId, "522601198530040027"),
            (Field::Phone, "+86 139 0855 1234"),
            (Field::Address1, "凯里市北京东路3号"),
        ]);
        let levels = compare(&a, &b);
        assert_eq!(levels[0], Some(1), "sounds alike");
        assert_eq!(levels[1], Some(1), "day and month swapped");
        assert_eq!(levels[2], None, "sex missing on both");
        assert_eq!(levels[3], Some(1), "transposed digits");
        assert_eq!(levels[4], Some(1), "same last seven digits");
        assert_eq!(levels[5], Some(1), "{}", token_overlap(&a.address, &b.address));
    }

    #[test]
    fn a_move_counts_once_and_the_same_city_counts_for_something() {
        let street = |address: &str, city: &str| profile(&[(Field::Address1, address), (Field::City, city)]);
        let home = street("北京东路1号", "凯里市");
        assert_eq!(compare(&home, &street("北京东路1号", "凯里市"))[5], Some(0));
        assert_eq!(compare(&home, &street("营盘东路9号", "凯里市"))[5], Some(2));
        assert_eq!(compare(&home, &street("人民路3号", "黎平县"))[5], Some(3));
        assert_eq!(compare(&home, &profile(&[(Field::Postcode, "556000")]))[5], None);
    }

    #[test]
    fn phones_agree_on_their_endings_and_short_numbers_say_nothing() {
        let phone = |p: &str| profile(&[(Field::Phone, p)]);
        assert_eq!(
            compare(&phone("138 0855 1234"), &phone("+86 13908551234"))[4],
            Some(1)
        );
        assert_eq!(compare(&phone("13808551234"), &phone("13808551235"))[4], Some(2));
        assert_eq!(
            compare(&phone("1234"), &phone("1234"))[4],
            None,
            "too short to say"
        );
    }

    #[test]
    fn addresses_share_tokens_in_either_script() {
        let overlap = |a: &str, b: &str| {
            token_overlap(
                &super::super::address_token_hashes(&[a]),
                &super::super::address_token_hashes(&[b]),
            )
        };
        assert_eq!(overlap("凯里市北京东路1号", "凯里市北京东路1号"), 1.0);
        assert!(overlap("凯里市北京东路1号", "凯里市北京东路3号") >= 0.6);
        assert!(overlap("凯里市北京东路1号", "黎平县德凤镇") < 0.1);
        assert_eq!(overlap("12 Baker Street", "12 baker street"), 1.0);
        assert_eq!(
            compare(&profile(&[]), &profile(&[]))[5],
            None,
            "no address on either"
        );
    }

    #[test]
    fn latin_family_members_are_not_similar_names_but_typos_and_initials_are() {
        let name =
            |surname: &str, given: &str| profile(&[(Field::Surname, surname), (Field::GivenName, given)]);
        let level = |a: &Profile, b: &Profile| compare(a, b)[0];
        let liam = name("Smith", "Liam");
        assert_eq!(level(&liam, &name("Smith", "Olivia")), Some(3), "a sister");
        assert_eq!(
            level(&liam, &name("Smiht", "Liam")),
            Some(1),
            "a typo keeping the sounds"
        );
        assert_eq!(
            level(&liam, &name("Snith", "Liam")),
            Some(2),
            "a typo changing them"
        );
        assert_eq!(level(&liam, &name("Smith", "L")), Some(2), "an initial");
        assert_eq!(
            level(&liam, &name("Smith", "Liam E")),
            Some(2),
            "a middle initial"
        );
        assert_eq!(
            level(&liam, &name("Liam", "Smith")),
            Some(1),
            "boxes swapped: the same sounds"
        );
        assert_eq!(level(&liam, &name("Smith", "")), Some(2), "no given name");
        assert_eq!(level(&liam, &name("", "Liam")), Some(2), "no surname");
        let christopher = name("Finelham", "Christopher");
        assert_eq!(
            level(&christopher, &name("Finelham", "C")),
            Some(2),
            "an initial, whatever its sound"
        );
        assert_eq!(level(&christopher, &name("Finelham", "K")), Some(3));
        assert_eq!(
            level(&name("Jones", "Susan"), &name("Kelly", "Xiu")),
            Some(3),
            "Xiu is no start of both"
        );
        assert_eq!(level(&name("Kaya", ""), &name("Sharma", "George")), Some(3));
        assert_eq!(level(&name("Ali", "Sean"), &name("Williams", "John")), Some(3));
        assert_eq!(
            level(&name("Williams", "Mary"), &name("Wilson", "Margaret")),
            Some(3)
        );
        assert_eq!(
            level(&name("Smith", "Chris"), &name("Smith", "Christopher")),
            Some(2)
        );
    }

    #[test]
    fn different_people_disagree() {
        let a = profile(&[
            (Field::FullName, "王芳"),
            (Field::Sex, "2"),
            (Field::BirthDate, "19850314"),
        ]);
        let b = profile(&[
            (Field::FullName, "杨秀英"),
            (Field::Sex, "1"),
            (Field::BirthDate, "19620101"),
        ]);
        let levels = compare(&a, &b);
        assert_eq!(&levels[..3], &[Some(3), Some(3), Some(1)]);
    }
}
