//! Names prepared for comparison: Chinese names keyed by toneless pinyin (every reading of a
//! polyphonic character kept), Latin-script names by their words' consonant skeletons.

use super::super::compare::pinyin_readings;
use super::phonetic;

/// A name prepared for comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameSound {
    /// The name's characters without spaces or dots, lower-cased: equal means the same spelling.
    pub chars: Box<str>,
    /// Toneless pinyin of each character, several for a polyphonic one; empty for a Latin name.
    pub readings: Box<[Box<[&'static str]>]>,
    /// The sound key in written order: pinyin syllables (first reading) for Chinese, the words'
    /// consonant skeletons for Latin script.
    pub key: Box<str>,
    /// The sound key with its words in alphabetical order, so that "Wang Fang" and "Fang Wang"
    /// meet; for Chinese names the same as `key`.
    pub sorted_key: Box<str>,
    pub surname_key: Box<str>,
    pub given_key: Box<str>,
    /// The consonant skeleton of the whole name (of its pinyin, for Chinese), its parts in
    /// alphabetical order: how a name in characters meets the same name in Latin letters
    /// (拉姆·努尔 and Lhamo Nur).
    pub skeleton: Box<str>,
    /// A Latin-script name's words, folded to plain lower-case letters, in written order (the
    /// sound key's words, one for one); empty for a Chinese name.
    pub words: Box<[Box<str>]>,
}

fn sorted_concat(mut parts: Vec<String>) -> String {
    parts.sort();
    parts.concat()
}

/// Surnames of two characters: the rest of the name is the given name.
const COMPOUND_SURNAMES: [&str; 22] = [
    "欧阳", "司马", "诸葛", "上官", "东方", "皇甫", "尉迟", "公孙", "慕容", "长孙", "宇文", "司徒", "夏侯",
    "轩辕", "令狐", "端木", "独孤", "南宫", "呼延", "澹台", "西门", "万俟",
];

pub(crate) fn is_han(c: char) -> bool {
    matches!(c as u32, 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF | 0x20000..=0x2FA1F)
}

impl NameSound {
    /// Prepares a name. `surname` is the surname if the source gave it apart; otherwise a Chinese
    /// name's surname is its first character (two for the compound surnames) and a Latin name's
    /// its first word.
    pub fn new(full_name: &str, surname: Option<&str>) -> Option<NameSound> {
        if full_name.chars().any(is_han) {
            Some(Self::chinese(full_name, surname))
        } else {
            Self::latin(full_name, surname)
        }
    }

    fn chinese(name: &str, surname: Option<&str>) -> NameSound {
        let chars: String = name
            .chars()
            .filter(|c| !c.is_whitespace() && !matches!(c, '·' | '•' | '・' | '.'))
            .flat_map(char::to_lowercase)
            .collect();
        let readings: Vec<Box<[&'static str]>> = pinyin_readings(&chars)
            .into_iter()
            .map(Vec::into_boxed_slice)
            .collect();
        let syllables: Vec<String> = chars
            .chars()
            .zip(&readings)
            .map(|(c, r)| r.first().map_or_else(|| c.to_string(), |s| (*s).to_owned()))
            .collect();
        let surname_chars = surname
            .map(|s| s.chars().filter(|c| !c.is_whitespace()).count())
            .unwrap_or_else(|| {
                if COMPOUND_SURNAMES.iter().any(|s| chars.starts_with(s)) {
                    2
                } else {
                    1
                }
            });
        let surname_chars = surname_chars.min(syllables.len());
        let key = syllables.concat();
        // The parts of a transliterated name are kept apart by its middle dot; a Chinese name
        // written without one is one part.
        let parts: Vec<String> = name
            .split(['·', '•', '・', ' '])
            .filter(|part| !part.is_empty())
            .map(|part| {
                let syllables: String = pinyin_readings(part)
                    .iter()
                    .map(|r| r.first().copied().unwrap_or(""))
                    .collect();
                phonetic::word_key(&syllables)
            })
            .collect();
        NameSound {
            skeleton: sorted_concat(parts).into(),
            chars: chars.into(),
            readings: readings.into_boxed_slice(),
            sorted_key: key.clone().into(),
            key: key.into(),
            surname_key: syllables[..surname_chars].concat().into(),
            given_key: syllables[surname_chars..].concat().into(),
            words: Box::new([]),
        }
    }

    fn latin(name: &str, surname: Option<&str>) -> Option<NameSound> {
        let words = phonetic::normalised_words(name);
        if words.is_empty() {
            return None;
        }
        let keys: Vec<String> = words.iter().map(|w| phonetic::word_key(w)).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        let surname_words = surname.map(phonetic::normalised_words).filter(|w| !w.is_empty());
        let (surname_key, given_key) = match surname_words {
            Some(surname_words) => {
                let surname_keys: Vec<String> = surname_words.iter().map(|w| phonetic::word_key(w)).collect();
                let given: Vec<&String> = keys.iter().filter(|k| !surname_keys.contains(k)).collect();
                (
                    surname_keys.join(" "),
                    given.into_iter().cloned().collect::<Vec<_>>().join(" "),
                )
            }
            None => (keys[0].clone(), keys[1..].join(" ")),
        };
        Some(NameSound {
            skeleton: sorted_concat(keys.clone()).into(),
            chars: words.concat().into(),
            readings: Box::new([]),
            key: keys.join(" ").into(),
            sorted_key: sorted.join(" ").into(),
            surname_key: surname_key.into(),
            given_key: given_key.into(),
            words: words.iter().map(|w| w.as_str().into()).collect(),
        })
    }

    /// Whether two names, one in characters and one in Latin letters, sound alike.
    fn sound_alike_across_scripts(&self, other: &NameSound) -> bool {
        !self.skeleton.is_empty() && self.skeleton == other.skeleton
    }

    pub fn is_chinese(&self) -> bool {
        !self.readings.is_empty()
    }

    /// Whether the two names sound alike: every character shares a reading (Chinese), or the
    /// words' sound keys agree in some order (Latin script).
    pub fn sounds_like(&self, other: &NameSound) -> bool {
        if self.is_chinese() && other.is_chinese() {
            self.readings.len() == other.readings.len()
                && self
                    .readings
                    .iter()
                    .zip(other.readings.iter())
                    .zip(self.chars.chars().zip(other.chars.chars()))
                    .all(|((p, q), (c, d))| {
                        if p.is_empty() || q.is_empty() {
                            c == d
                        } else {
                            p.iter().any(|r| q.contains(r))
                        }
                    })
        } else if self.is_chinese() != other.is_chinese() {
            self.sound_alike_across_scripts(other)
        } else {
            self.key == other.key || self.sorted_key == other.sorted_key
        }
    }
}
