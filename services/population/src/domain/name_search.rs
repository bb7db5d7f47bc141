//! Finding a name the way a reception clerk types it: in characters (and then by its sound, so
//! that a homophone or a traditional form finds the person too), in pinyin with or without tones
//! and spaces (`zhangwei`, `zhang wei`, `Zhāng Wěi`), by initials (`zw`, with another criterion),
//! or in Latin letters for a minority or foreign name (`Memet Eli` finds 买买提·艾力). Each
//! registered name is kept under a few search keys; a query is turned into the keys it looks
//! for, and each name found is scored by how it matched.

use super::compare::pinyin_readings;
use super::linkage::{NameSound, is_han, phonetic};

/// How many pinyin spellings a name with polyphonic characters is kept under (单丽 under
/// shanli and danli): enough for any real name's surname and given name.
const MAX_SPELLINGS: usize = 8;

/// A search key: a kind and a spelling, `p:zhangwei` (pinyin or Latin letters run together),
/// `i:zw` (initials), `s:…` (consonant skeleton of the words, in alphabetical order).
fn key(kind: char, text: &str) -> String {
    format!("{kind}:{text}")
}

/// ü is written v on a keyboard, and u by many.
fn keyboard(syllable: &str) -> String {
    syllable.replace('ü', "v")
}

/// The pinyin spellings of a name in characters, one per combination of its characters'
/// readings (the first [`MAX_SPELLINGS`]), each as its syllables.
fn spellings(name: &str) -> Vec<Vec<String>> {
    let mut spellings: Vec<Vec<String>> = vec![Vec::new()];
    for readings in pinyin_readings(name).into_iter().filter(|r| !r.is_empty()) {
        let mut next = Vec::new();
        for spelling in &spellings {
            for reading in &readings {
                if next.len() < MAX_SPELLINGS {
                    let mut longer = spelling.clone();
                    longer.push(keyboard(reading));
                    next.push(longer);
                }
            }
        }
        spellings = next;
    }
    spellings.retain(|s| !s.is_empty());
    spellings
}

/// The keys a registered name is found by.
pub fn name_search_keys(name: &str) -> Vec<String> {
    let mut keys = Vec::new();
    if name.chars().any(is_han) {
        for syllables in spellings(name) {
            let letters = syllables.concat();
            if letters.contains('v') {
                keys.push(key('p', &letters.replace('v', "u")));
            }
            keys.push(key('p', &letters));
            let initials: String = syllables.iter().filter_map(|s| s.chars().next()).collect();
            keys.push(key('i', &initials));
        }
        // A transliterated name (parts kept apart by a middle dot, or longer than a Han name
        // runs) is also kept under the skeleton of its pinyin, part by part, where it meets
        // the name in Latin letters; a Han name's skeleton would meet too many others (Zhang
        // Wei and Zhou Wen are both s-n).
        let transliterated =
            name.contains(['·', '•', '・']) || name.chars().filter(|c| is_han(*c)).count() > 4;
        if transliterated && let Some(skeleton) = skeleton(name) {
            keys.push(key('s', &skeleton));
        }
    } else {
        let words = phonetic::normalised_words(name);
        if !words.is_empty() {
            keys.push(key('p', &words.concat()));
            let initials: String = words.iter().filter_map(|w| w.chars().next()).collect();
            keys.push(key('i', &initials));
        }
        if let Some(skeleton) = skeleton(name) {
            keys.push(key('s', &skeleton));
        }
    }
    keys.sort();
    keys.dedup();
    keys
}

/// The consonant skeleton of a name's words in alphabetical order (of its pinyin, part by part,
/// for a name in characters): what linkage compares across scripts.
fn skeleton(name: &str) -> Option<String> {
    NameSound::new(name, None)
        .map(|sound| sound.skeleton.to_string())
        .filter(|skeleton| !skeleton.is_empty())
}

/// A name as compared for "the same name": runs of white space as one space, lower case (as
/// `PersonName::search_key` keeps registered names).
fn same_name_key(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// How a name matched a search, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum NameMatch {
    /// The same characters or letters (case aside).
    Same,
    /// The same pinyin: a homophone, a traditional form, or the name typed in pinyin.
    Pinyin,
    /// The same consonant skeleton: another transliteration of the name.
    SoundsAlike,
    /// The same initials.
    Initials,
}

impl NameMatch {
    /// The score a result carries, 0 to 1.
    pub fn score(self) -> f64 {
        match self {
            NameMatch::Same => 1.0,
            NameMatch::Pinyin => 0.9,
            NameMatch::SoundsAlike => 0.75,
            NameMatch::Initials => 0.5,
        }
    }

    /// What the response says about it.
    pub fn code(self) -> &'static str {
        match self {
            NameMatch::Same => "same name",
            NameMatch::Pinyin => "same pinyin",
            NameMatch::SoundsAlike => "sounds alike",
            NameMatch::Initials => "initials",
        }
    }
}

/// A name typed at the desk, turned into what it looks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameSearch {
    /// The name as typed, lower-cased: a registered name equal to it is the same name.
    exact: String,
    /// The keys that find it, each with how it matches.
    keys: Vec<(String, NameMatch)>,
    initials_only: bool,
}

impl NameSearch {
    /// Reads a name typed at the desk. `Err` names the reason: nothing searchable in it.
    pub fn parse(text: &str) -> Result<NameSearch, String> {
        let exact = same_name_key(text);
        let mut keys: Vec<(String, NameMatch)> = Vec::new();
        if text.chars().any(is_han) {
            for k in name_search_keys(text) {
                if k.starts_with("p:") {
                    keys.push((k, NameMatch::Pinyin));
                }
            }
            return Ok(NameSearch {
                exact,
                keys,
                initials_only: false,
            });
        }
        // ü typed as ü, ǚ or v: all v, as the keys keep it.
        let typed: String = text
            .chars()
            .map(|c| {
                if matches!(c, 'ü' | 'ǖ' | 'ǘ' | 'ǚ' | 'ǜ' | 'Ü') {
                    'v'
                } else {
                    c
                }
            })
            .collect();
        let words = phonetic::normalised_words(&typed);
        if !words.iter().any(|w| w.chars().any(char::is_alphabetic)) {
            return Err("has no letters or Chinese characters to search by".to_owned());
        }
        let letters = words.concat();
        let vowels = letters.chars().filter(|c| "aeiouv".contains(*c)).count();
        let single_letters = words.len() > 1 && words.iter().all(|w| w.chars().count() == 1);
        if single_letters || (vowels == 0 && letters.chars().count() <= 4) {
            return Ok(NameSearch {
                exact,
                keys: vec![(key('i', &letters), NameMatch::Initials)],
                initials_only: true,
            });
        }
        keys.push((key('p', &letters), NameMatch::Pinyin));
        if let Some(skeleton) = skeleton(&typed) {
            keys.push((key('s', &skeleton), NameMatch::SoundsAlike));
        }
        Ok(NameSearch {
            exact,
            keys,
            initials_only: false,
        })
    }

    /// The keys to look up.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|(k, _)| k.as_str())
    }

    /// The name as typed, lower-cased, for the look-up of the same name.
    pub fn exact(&self) -> &str {
        &self.exact
    }

    /// Only initials: too many people share them for a search on their own.
    pub fn is_initials_only(&self) -> bool {
        self.initials_only
    }

    /// Whether `name` is the name typed (initials are never a whole name).
    fn is_same_name(&self, name: &str) -> bool {
        !self.initials_only && same_name_key(name) == self.exact
    }

    /// How a registered name found by `key` (one of [`Self::keys`]; empty when found as the
    /// same name) matches.
    pub fn match_by_key(&self, name: &str, key: &str) -> Option<NameMatch> {
        if self.is_same_name(name) {
            return Some(NameMatch::Same);
        }
        self.keys.iter().find(|(k, _)| k == key).map(|(_, how)| *how)
    }

    /// How a registered name matches this search, if it does.
    pub fn matches(&self, name: &str) -> Option<NameMatch> {
        if self.is_same_name(name) {
            return Some(NameMatch::Same);
        }
        let stored = name_search_keys(name);
        self.keys
            .iter()
            .filter(|(k, _)| stored.binary_search(k).is_ok())
            .map(|(_, how)| *how)
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(query: &str, name: &str) -> Option<NameMatch> {
        NameSearch::parse(query).unwrap().matches(name)
    }

    #[test]
    fn pinyin_with_or_without_tones_and_spaces_finds_the_name() {
        for typed in ["zhangwei", "zhang wei", "Zhāng Wěi", "ZHANG WEI", "Zhang-Wei"] {
            assert_eq!(found(typed, "张伟"), Some(NameMatch::Pinyin), "{typed}");
        }
        assert_eq!(
            found("zhangwei", "章伟"),
            Some(NameMatch::Pinyin),
            "a homophone too"
        );
        assert_eq!(found("zhangwei", "张蔚"), Some(NameMatch::Pinyin));
        assert_eq!(found("zhangwen", "张伟"), None);
        assert_eq!(
            found("zhangwei", "周文"),
            None,
            "the same consonants are not the same name"
        );
    }

    #[test]
    fn characters_find_the_same_name_first_and_homophones_and_traditional_forms_after() {
        assert_eq!(found("张伟", "张伟"), Some(NameMatch::Same));
        assert_eq!(found("张伟", "張偉"), Some(NameMatch::Pinyin), "traditional");
        assert_eq!(found("陈小红", "沉小虹"), Some(NameMatch::Pinyin), "homophones");
        assert_eq!(found("张伟", "张伟明"), None);
    }

    #[test]
    fn a_polyphonic_surname_is_found_by_either_reading() {
        assert_eq!(found("shanli", "单丽"), Some(NameMatch::Pinyin));
        assert_eq!(found("danli", "单丽"), Some(NameMatch::Pinyin));
        assert_eq!(found("lvxin", "吕欣"), Some(NameMatch::Pinyin));
        assert_eq!(found("lü xin", "吕欣"), Some(NameMatch::Pinyin));
        assert_eq!(found("luxin", "吕欣"), Some(NameMatch::Pinyin));
    }

    #[test]
    fn initials_are_initials_and_need_company() {
        let search = NameSearch::parse("zw").unwrap();
        assert!(search.is_initials_only());
        assert_eq!(search.matches("张伟"), Some(NameMatch::Initials));
        assert_eq!(search.matches("周文"), Some(NameMatch::Initials));
        assert_eq!(search.matches("王芳"), None);
        assert!(NameSearch::parse("z w").unwrap().is_initials_only());
        assert!(!NameSearch::parse("wei").unwrap().is_initials_only());
    }

    #[test]
    fn a_minority_name_in_latin_letters_finds_it_in_characters() {
        assert_eq!(found("Memet Eli", "买买提·艾力"), Some(NameMatch::SoundsAlike));
        assert_eq!(found("Lhamo Nur", "拉姆·努尔"), Some(NameMatch::SoundsAlike));
        assert_eq!(found("Ayi Wang", "Ayi Wang"), Some(NameMatch::Same));
        assert_eq!(found("ayiwang", "Ayi Wang"), Some(NameMatch::Pinyin));
    }

    #[test]
    fn nothing_to_search_by_is_said_and_non_pinyin_finds_nothing() {
        for nothing in ["   ", "!!!", "123", "-·-"] {
            assert!(NameSearch::parse(nothing).is_err(), "{nothing:?}");
        }
        assert_eq!(found("xqzrtplk", "张伟"), None);
    }
}
