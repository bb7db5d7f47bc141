//! Probabilistic record linkage: the engine behind online matching, re-matching and the batch
//! linkage of population files (`hie link`, `hie dedupe`). Pure: no I/O.
//!
//! A record's fields ([`PersonFields`], as loose text, since migration files are loose) are
//! prepared once into a [`Profile`]: names keyed by sound (toneless pinyin for Chinese, a
//! consonant skeleton for Latin script), dates parsed, identity numbers and phones reduced to
//! their characters, addresses to token hashes. [`blocking`] finds the pairs worth comparing,
//! [`comparison`] turns a pair into a level of agreement per field, and [`model`] weighs the
//! levels (Fellegi–Sunter, m and u estimated from the data by expectation–maximisation).

pub mod blocking;
pub mod choice;
pub mod comparison;
pub mod frequencies;
pub mod model;
mod name;
pub mod phonetic;
pub mod run;

pub use name::NameSound;

use std::hash::{Hash, Hasher};

pub(crate) use name::is_han;

/// The fields a population file may map its columns to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    FullName,
    GivenName,
    Surname,
    BirthDate,
    Sex,
    ResidentId,
    Phone,
    StreetNumber,
    Address1,
    Address2,
    City,
    Postcode,
    Province,
}

impl Field {
    pub const ALL: [Field; 13] = [
        Field::FullName,
        Field::GivenName,
        Field::Surname,
        Field::BirthDate,
        Field::Sex,
        Field::ResidentId,
        Field::Phone,
        Field::StreetNumber,
        Field::Address1,
        Field::Address2,
        Field::City,
        Field::Postcode,
        Field::Province,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Field::FullName => "full_name",
            Field::GivenName => "given_name",
            Field::Surname => "surname",
            Field::BirthDate => "birth_date",
            Field::Sex => "sex",
            Field::ResidentId => "resident_id",
            Field::Phone => "phone",
            Field::StreetNumber => "street_number",
            Field::Address1 => "address_1",
            Field::Address2 => "address_2",
            Field::City => "city",
            Field::Postcode => "postcode",
            Field::Province => "province",
        }
    }

    pub fn parse(name: &str) -> Option<Field> {
        Field::ALL.into_iter().find(|f| f.name() == name)
    }
}

/// One record's fields as a source gives them: any may be missing. Extra columns ride along
/// unchanged and take no part in matching.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PersonFields {
    values: [Option<String>; 13],
    /// Identifiers of any other system (a passport, an insurance or a hospital-group number),
    /// by the name the source gives the system.
    identifiers: Vec<(Box<str>, String)>,
}

impl PersonFields {
    /// Sets a field; blank text counts as missing.
    pub fn set(&mut self, field: Field, value: &str) {
        let value = value.trim();
        self.values[field as usize] = (!value.is_empty()).then(|| value.to_owned());
    }

    pub fn with(mut self, field: Field, value: &str) -> PersonFields {
        self.set(field, value);
        self
    }

    pub fn get(&self, field: Field) -> Option<&str> {
        self.values[field as usize].as_deref()
    }

    /// Sets the identifier of system `name`; blank text counts as missing.
    pub fn set_identifier(&mut self, name: &str, value: &str) {
        self.identifiers.retain(|(n, _)| &**n != name);
        let value = value.trim();
        if !value.is_empty() {
            self.identifiers.push((name.into(), value.to_owned()));
        }
    }

    pub fn identifier(&self, name: &str) -> Option<&str> {
        self.identifiers
            .iter()
            .find(|(n, _)| &**n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The identifiers of other systems, `(system name, value)`.
    pub fn identifiers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.identifiers.iter().map(|(n, v)| (&**n, v.as_str()))
    }
}

/// An identifier reduced to what identifies: its letters and digits, upper-cased, so that
/// `e 1234-567` and `E1234567` agree.
fn normalised_identifier(text: &str) -> Option<Box<str>> {
    let id: String = text
        .chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_uppercase)
        .collect();
    (!id.is_empty()).then(|| id.into_boxed_str())
}

/// Why a field's value could not be used. The record is still matched on its other fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldProblem {
    pub field: Field,
    pub reason: String,
}

/// Sex as matching sees it; anything that is not clearly male or female is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Sex {
    Male,
    Female,
}

/// A record prepared for linkage: everything the comparators and blocking keys need, computed
/// once, however many pairs the record is in.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub name: Option<NameSound>,
    pub birth_date: Option<(i32, u32, u32)>,
    pub sex: Option<Sex>,
    pub resident_id: Option<Box<str>>,
    pub phone: Option<Box<str>>,
    /// Hashes of the address's tokens, sorted and without repeats.
    pub address: Box<[u64]>,
    pub city: Option<u64>,
    /// The province is read but not compared: within a region nearly everyone shares it, and a
    /// move to another province already shows in the city and postcode.
    pub postcode: Option<Box<str>>,
    /// Identifiers of other systems, `(system name, normalised value)`, sorted by name.
    pub identifiers: Box<[(Box<str>, Box<str>)]>,
}

impl Profile {
    /// The normalised identifier of system `name`.
    pub fn identifier(&self, name: &str) -> Option<&str> {
        self.identifiers
            .iter()
            .find(|(n, _)| &**n == name)
            .map(|(_, v)| &**v)
    }
}

/// A stable 64-bit hash (the same on every run and machine, unlike a `HashMap`'s).
pub fn stable_hash<T: Hash + ?Sized>(value: &T) -> u64 {
    #[allow(deprecated)]
    let mut hasher = std::hash::SipHasher::new_with_keys(0x6869_655f_6c69_6e6b, 0x7072_6f66_696c_6573);
    value.hash(&mut hasher);
    hasher.finish()
}

/// SplitMix64's finaliser: a well-mixed, stable 64-bit function of `x`, for sampling that is
/// the same on every run.
pub fn mix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Parses YYYYMMDD, YYYY-MM-DD or YYYY/MM/DD into a real calendar date.
pub fn parse_birth_date(text: &str) -> Result<(i32, u32, u32), String> {
    let digits: String = text.chars().filter(|c| !matches!(c, '-' | '/')).collect();
    let separators_ok = match text.len() {
        8 => true,
        10 => {
            let bytes = text.as_bytes();
            (bytes[4] == b'-' && bytes[7] == b'-') || (bytes[4] == b'/' && bytes[7] == b'/')
        }
        _ => false,
    };
    if !separators_ok || digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        // The value itself stays out of the message, which reaches the operator's terminal and
        // logs: the line number finds it.
        return Err("is not a date, expected YYYYMMDD, YYYY-MM-DD or YYYY/MM/DD".to_owned());
    }
    let (year, month, day) = (
        digits[0..4].parse::<i32>().unwrap_or(0),
        digits[4..6].parse::<u32>().unwrap_or(0),
        digits[6..8].parse::<u32>().unwrap_or(0),
    );
    chrono::NaiveDate::from_ymd_opt(year, month, day)
        .map(|_| (year, month, day))
        .ok_or_else(|| "is not a calendar date (a month of 1 to 12 and a day that month has)".to_owned())
}

fn parse_sex(text: &str) -> Result<Option<Sex>, String> {
    match text.to_lowercase().as_str() {
        "1" | "m" | "male" | "男" | "man" => Ok(Some(Sex::Male)),
        "2" | "f" | "female" | "女" | "woman" => Ok(Some(Sex::Female)),
        "0" | "9" | "u" | "unknown" | "未知" | "未说明" => Ok(None),
        _ => Err("is not a sex, expected 1/2, M/F, male/female or 男/女".to_owned()),
    }
}

fn normalised_text(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect()
}

/// An address's tokens: Latin-script words, and overlapping pairs of Chinese characters (Chinese
/// addresses are written without spaces).
fn address_token_hashes(parts: &[&str]) -> Box<[u64]> {
    let mut tokens = Vec::new();
    for part in parts {
        for word in part.split(|c: char| c.is_whitespace() || matches!(c, ',' | '，' | '、' | '-' | '#')) {
            let chars: Vec<char> = word.chars().flat_map(char::to_lowercase).collect();
            if chars.iter().any(|c| !c.is_ascii()) && chars.len() > 1 {
                tokens.extend(chars.windows(2).map(stable_hash));
            } else if !chars.is_empty() {
                tokens.push(stable_hash(&chars[..]));
            }
        }
    }
    tokens.sort_unstable();
    tokens.dedup();
    tokens.into_boxed_slice()
}

impl Profile {
    /// Prepares a record. Values that cannot be used (a date that is not a date) are reported
    /// and left out; the record is matched on the rest.
    pub fn prepare(fields: &PersonFields) -> (Profile, Vec<FieldProblem>) {
        let mut problems = Vec::new();
        let full_name = match (
            fields.get(Field::FullName),
            fields.get(Field::Surname),
            fields.get(Field::GivenName),
        ) {
            (Some(full), _, _) => Some(full.to_owned()),
            (None, Some(surname), Some(given)) => {
                if surname.chars().chain(given.chars()).any(is_han) {
                    Some(format!("{surname}{given}"))
                } else {
                    Some(format!("{surname} {given}"))
                }
            }
            (None, Some(one), None) | (None, None, Some(one)) => Some(one.to_owned()),
            (None, None, None) => None,
        };
        let name = full_name.and_then(|n| NameSound::new(&n, fields.get(Field::Surname)));
        let birth_date = fields.get(Field::BirthDate).and_then(|text| {
            parse_birth_date(text)
                .map_err(|reason| {
                    problems.push(FieldProblem {
                        field: Field::BirthDate,
                        reason,
                    })
                })
                .ok()
        });
        let sex = fields.get(Field::Sex).and_then(|text| {
            parse_sex(text)
                .map_err(|reason| {
                    problems.push(FieldProblem {
                        field: Field::Sex,
                        reason,
                    })
                })
                .ok()
                .flatten()
        });
        let resident_id = fields.get(Field::ResidentId).and_then(normalised_identifier);
        let mut identifiers: Vec<(Box<str>, Box<str>)> = fields
            .identifiers
            .iter()
            .filter_map(|(name, value)| Some((name.clone(), normalised_identifier(value)?)))
            .collect();
        identifiers.sort();
        let phone = fields.get(Field::Phone).and_then(|text| {
            let digits: String = text.chars().filter(char::is_ascii_digit).collect();
            // The country code is left off, so that +86 138… and 138… agree.
            let digits = match digits.strip_prefix("86") {
                Some(rest) if rest.len() == 11 => rest.to_owned(),
                _ => digits,
            };
            (digits.len() >= 7).then(|| digits.into_boxed_str())
        });
        let address_parts: Vec<&str> = [Field::StreetNumber, Field::Address1, Field::Address2]
            .into_iter()
            .filter_map(|f| fields.get(f))
            .collect();
        let profile = Profile {
            name,
            birth_date,
            sex,
            resident_id,
            phone,
            address: address_token_hashes(&address_parts),
            city: fields.get(Field::City).map(|c| stable_hash(&normalised_text(c))),
            postcode: fields
                .get(Field::Postcode)
                .map(|p| normalised_text(p).into_boxed_str()),
            identifiers: identifiers.into_boxed_slice(),
        };
        (profile, problems)
    }
}

/// Prepares many records on every available core, in order; the problems come with the index
/// of their record.
/// Profiles in record order, and each unusable value with the index of its record.
pub type Prepared = (Vec<Profile>, Vec<(usize, FieldProblem)>);

pub fn prepare_all(records: &[PersonFields]) -> Prepared {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).max(1);
    let chunk = records.len().div_ceil(threads).max(1);
    let parts: Vec<Prepared> = std::thread::scope(|scope| {
        let workers: Vec<_> = records
            .chunks(chunk)
            .enumerate()
            .map(|(c, records)| {
                scope.spawn(move || {
                    let mut profiles = Vec::with_capacity(records.len());
                    let mut problems = Vec::new();
                    for (i, fields) in records.iter().enumerate() {
                        let (profile, found) = Profile::prepare(fields);
                        profiles.push(profile);
                        problems.extend(found.into_iter().map(|p| (c * chunk + i, p)));
                    }
                    (profiles, problems)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("preparing a record does not panic"))
            .collect()
    });
    let mut profiles = Vec::with_capacity(records.len());
    let mut problems = Vec::new();
    for (p, q) in parts {
        profiles.extend(p);
        problems.extend(q);
    }
    (profiles, problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_read_in_three_spellings_and_must_be_real() {
        assert_eq!(parse_birth_date("19850314"), Ok((1985, 3, 14)));
        assert_eq!(parse_birth_date("1985-03-14"), Ok((1985, 3, 14)));
        assert_eq!(parse_birth_date("1985/03/14"), Ok((1985, 3, 14)));
        assert!(parse_birth_date("1985-02-30").unwrap_err().contains("calendar"));
        assert!(parse_birth_date("14/03/1985").is_err());
        assert!(parse_birth_date("1985-03/14").is_err());
        assert!(parse_birth_date("1985031").is_err());
    }

    #[test]
    fn a_field_that_cannot_be_used_is_reported_and_the_rest_is_kept() {
        let fields = PersonFields::default()
            .with(Field::FullName, "王芳")
            .with(Field::BirthDate, "yesterday")
            .with(Field::Sex, "x");
        let (profile, problems) = Profile::prepare(&fields);
        assert!(profile.name.is_some() && profile.birth_date.is_none() && profile.sex.is_none());
        let fields: Vec<Field> = problems.iter().map(|p| p.field).collect();
        assert_eq!(fields, vec![Field::BirthDate, Field::Sex]);
    }

    #[test]
    fn chinese_names_key_by_pinyin_with_compound_surnames_apart() {
        let name = NameSound::new("欧阳 小明", None).unwrap();
        assert_eq!(&*name.key, "ouyangxiaoming");
        assert_eq!(&*name.surname_key, "ouyang");
        assert_eq!(&*name.given_key, "xiaoming");
        let minority = NameSound::new("阿依古丽·买买提", None).unwrap();
        assert!(minority.sounds_like(&NameSound::new("阿依古丽麦麦提", None).unwrap()));
    }

    fn sound_alike(a: &str, b: &str) -> bool {
        NameSound::new(a, None)
            .unwrap()
            .sounds_like(&NameSound::new(b, None).unwrap())
    }

    #[test]
    fn chinese_names_sound_alike_through_homophones_forms_and_polyphonic_surnames() {
        assert!(sound_alike("吴阿妹", "吴阿美"), "homophone 妹/美");
        assert!(sound_alike("陈小红", "陳小紅"), "traditional and simplified");
        assert!(sound_alike("单丽", "單麗"));
        assert!(!sound_alike("吴阿妹", "杨阿妹"));
        assert!(
            !sound_alike("吴阿妹", "吴妹"),
            "a missing character is not a homophone"
        );
        assert!(
            sound_alike("阿依古丽·买买提", "阿依古丽买买提"),
            "the middle dot of minority names is ignored"
        );
        assert!(NameSound::new("", None).is_none());
    }

    #[test]
    fn a_minority_name_in_characters_meets_its_latin_transliteration() {
        let characters = NameSound::new("拉姆·努尔", None).unwrap();
        assert!(characters.sounds_like(&NameSound::new("Lhamo Nur", None).unwrap()));
        assert!(
            NameSound::new("Nur Lhamo", None)
                .unwrap()
                .sounds_like(&characters)
        );
        assert!(!characters.sounds_like(&NameSound::new("Tashi Nur", None).unwrap()));
    }

    #[test]
    fn latin_names_meet_in_either_order_and_spelling() {
        let a = NameSound::new("Mamat Ali", None).unwrap();
        let b = NameSound::new("Ali Memet", None).unwrap();
        assert!(a.sounds_like(&b));
        assert_eq!(a.surname_key, "mmt".into());
        let fields = PersonFields::default()
            .with(Field::Surname, "Memet")
            .with(Field::GivenName, "Ali");
        let c = Profile::prepare(&fields).0.name.unwrap();
        assert_eq!((&*c.surname_key, &*c.given_key), ("mmt", "al"));
    }

    #[test]
    fn surname_and_given_name_make_the_full_name_when_it_is_missing() {
        let fields = PersonFields::default()
            .with(Field::Surname, "王")
            .with(Field::GivenName, "芳");
        let (profile, _) = Profile::prepare(&fields);
        assert_eq!(&*profile.name.unwrap().chars, "王芳");
    }

    #[test]
    fn phones_lose_their_country_code_and_identity_numbers_their_spaces() {
        let fields = PersonFields::default()
            .with(Field::Phone, "+86 138-0855-1234")
            .with(Field::ResidentId, " 52260119850314002x ");
        let (profile, _) = Profile::prepare(&fields);
        assert_eq!(profile.phone.as_deref(), Some("13808551234"));
        assert_eq!(profile.resident_id.as_deref(), Some("52260119850314002X"));
    }
}
