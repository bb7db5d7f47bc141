//! Term frequencies of names: two records agreeing on 王芳 or on Smith say less than two records
//! agreeing on a rare name, because many different people share the common one. The model's
//! weight for "the names agree" is an average over every name; the adjustment replaces it, for
//! the name at hand, by log2(u / share) where u is the model's chance that two different people
//! agree on a name and `share` how often this name occurs. The counts come from the data a model
//! is trained on and travel with the model, so that online matching weighs names the same way.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::{NameSound, Profile};

/// The most an agreement on a rare name gains over the average agreement, in bits: a name seen
/// once may be a typo's, not a rare name's.
const MAX_GAIN_BITS: f64 = 5.0;

/// How many records share each name sound, whole and by part.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NameFrequencies {
    records: u64,
    full: HashMap<Box<str>, u32>,
    surname: HashMap<Box<str>, u32>,
    given: HashMap<Box<str>, u32>,
}

/// The counts as a model file keeps them: names shared by few records are left out (their
/// share is estimated from their parts), which keeps the file small however large the registry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SavedFrequencies {
    records: u64,
    full: BTreeMap<String, u32>,
    surname: BTreeMap<String, u32>,
    given: BTreeMap<String, u32>,
}

/// Full names kept in a saved model: those at least this many records share.
const SAVED_MIN_FULL: u32 = 3;
/// Surnames and given names kept: those at least this many records share.
const SAVED_MIN_PART: u32 = 2;

fn bump(map: &mut HashMap<Box<str>, u32>, key: &str) {
    if key.is_empty() {
        return;
    }
    match map.get_mut(key) {
        Some(n) => *n += 1,
        None => {
            map.insert(key.into(), 1);
        }
    }
}

impl NameFrequencies {
    /// Counts the names of `profiles`.
    pub fn count(profiles: &[Profile]) -> NameFrequencies {
        let mut frequencies = NameFrequencies::default();
        for name in profiles.iter().filter_map(|p| p.name.as_ref()) {
            frequencies.records += 1;
            bump(&mut frequencies.full, &name.sorted_key);
            bump(&mut frequencies.surname, &name.surname_key);
            bump(&mut frequencies.given, &name.given_key);
        }
        frequencies
    }

    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// The share of records whose name sounds like `name`: as counted when the name was
    /// counted; otherwise (a name the counts never saw, or one a saved model left out as
    /// shared by fewer than [`SAVED_MIN_FULL`] records) what its surname and given name make
    /// together, at most that few records.
    pub fn share(&self, name: &NameSound) -> Option<f64> {
        if self.records == 0 {
            return None;
        }
        let n = self.records as f64;
        if let Some(count) = self.full.get(&*name.sorted_key) {
            return Some(f64::from(*count) / n);
        }
        let part =
            |map: &HashMap<Box<str>, u32>, key: &str| f64::from(map.get(key).copied().unwrap_or(1)) / n;
        let parts = if name.given_key.is_empty() {
            part(&self.surname, &name.surname_key)
        } else {
            part(&self.surname, &name.surname_key) * part(&self.given, &name.given_key)
        };
        Some(parts.min(f64::from(SAVED_MIN_FULL - 1) / n).max(1.0 / n))
    }

    /// The bits to add to the weight of a name agreement whose average chance among different
    /// people is `u_agree`: negative for a common name, positive (at most [`MAX_GAIN_BITS`])
    /// for a rare one.
    pub fn adjustment(&self, name: &NameSound, u_agree: f64) -> f64 {
        match self.share(name) {
            Some(share) if u_agree > 0.0 => (u_agree / share).log2().min(MAX_GAIN_BITS),
            _ => 0.0,
        }
    }

    pub fn to_saved(&self) -> SavedFrequencies {
        let keep = |map: &HashMap<Box<str>, u32>, least: u32| -> BTreeMap<String, u32> {
            map.iter()
                .filter(|(_, n)| **n >= least)
                .map(|(k, n)| (k.to_string(), *n))
                .collect()
        };
        SavedFrequencies {
            records: self.records,
            full: keep(&self.full, SAVED_MIN_FULL),
            surname: keep(&self.surname, SAVED_MIN_PART),
            given: keep(&self.given, SAVED_MIN_PART),
        }
    }

    pub fn from_saved(saved: SavedFrequencies) -> NameFrequencies {
        let read = |map: BTreeMap<String, u32>| map.into_iter().map(|(k, n)| (k.into(), n)).collect();
        NameFrequencies {
            records: saved.records,
            full: read(saved.full),
            surname: read(saved.surname),
            given: read(saved.given),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Field, PersonFields};
    use super::*;

    fn profile(name: &str) -> Profile {
        Profile::prepare(&PersonFields::default().with(Field::FullName, name)).0
    }

    #[test]
    fn a_common_name_weighs_less_than_a_rare_one() {
        let mut profiles: Vec<Profile> = (0..50).map(|_| profile("王芳")).collect();
        profiles.push(profile("欧阳娜"));
        profiles.extend((0..49).map(|i| profile(&format!("李{}", ["强", "伟", "军", "杰"][i % 4]))));
        let frequencies = NameFrequencies::count(&profiles);
        let u = 0.02;
        let common = frequencies.adjustment(profiles[0].name.as_ref().unwrap(), u);
        let rare = frequencies.adjustment(profiles[50].name.as_ref().unwrap(), u);
        assert!(common < -4.0, "{common}");
        assert!(rare > 0.0 && rare <= MAX_GAIN_BITS, "{rare}");
        // 汪芳 sounds like 王芳 and is as common.
        let homophone = frequencies.adjustment(profile("汪芳").name.as_ref().unwrap(), u);
        assert_eq!(homophone, common);
    }

    #[test]
    fn a_name_never_counted_is_estimated_from_its_parts_within_bounds() {
        let mut profiles: Vec<Profile> = (0..400).map(|_| profile("Smith John")).collect();
        profiles.extend((0..400).map(|_| profile("Smith Mary")));
        profiles.extend((0..200).map(|_| profile("Jones Mary")));
        profiles.push(profile("Jones Zoltan"));
        let frequencies = NameFrequencies::count(&profiles);
        let n = profiles.len() as f64;
        let share = frequencies
            .share(profile("Smith Mary").name.as_ref().unwrap())
            .unwrap();
        assert!((share - 400.0 / n).abs() < 1e-9, "counted whole: {share}");
        let unseen = frequencies
            .share(profile("Jones Ali").name.as_ref().unwrap())
            .unwrap();
        assert!(
            (unseen - 1.0 / n).abs() < 1e-9,
            "rare parts: as rare as one record: {unseen}"
        );
        let common_parts = frequencies
            .share(profile("Jones John").name.as_ref().unwrap())
            .unwrap();
        assert!(
            (common_parts - 2.0 / n).abs() < 1e-9,
            "never more than an uncounted name: {common_parts}"
        );
    }

    #[test]
    fn saved_counts_keep_the_common_names_and_read_back() {
        let mut profiles: Vec<Profile> = (0..5).map(|_| profile("王芳")).collect();
        profiles.push(profile("欧阳娜"));
        let frequencies = NameFrequencies::count(&profiles);
        let saved = frequencies.to_saved();
        assert_eq!(saved.full.len(), 1, "only 王芳 is shared by 3 or more");
        let read = NameFrequencies::from_saved(saved);
        let wang = profiles[0].name.as_ref().unwrap();
        assert_eq!(read.share(wang), frequencies.share(wang));
    }
}
