//! The replica's view of the persons cards belong to, as a read needs them: the survivor of
//! any merges, the persons merged into it, and the survivor's consent directives. With the card
//! table it spares a resolve every round trip to the database; consent is still decided and
//! audited on every call, from these directives.
//!
//! Almost every person stands alone: never merged, nobody merged into them, the default consent.
//! The view holds only the others (loaded at start: `PopulationService::
//! persons_not_standing_alone`, a few bytes each beyond the lineage) and, once that load is
//! complete, answers everyone else as standing alone without asking the database.
//!
//! It never answers stale after a change committed: every write that can change a person's
//! lineage or directives announces an outbox event naming the persons (a consent change, a
//! merge, an unmerge, a record moved from one person to another), and the persons named become
//! unknown until read again from the registry — at once for this process's writes
//! (`AuditTrail::committed_events`), within the card table's refresh for other replicas' (the
//! outbox, polled with the cards). A look-up that raced a change is not kept.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use hie_access::domain::consent::ConsentDirectives;
use hie_core::id::PersonId;
use hie_core::outbox::OutboxEvent;
use hie_core::vocabulary::EventType;
use hie_population::domain::Lineage;

/// The events whose persons become unknown.
pub const CHANGES_OF_PERSONS: [EventType; 4] = [
    EventType::ConsentChanged,
    EventType::PersonMerged,
    EventType::PersonUnmerged,
    EventType::RecordLinked,
];

/// Whether `event` may change the lineage or consent of the persons it names: a record joining a
/// person changes nobody's lineage unless it left another person (who may be emptied and merged).
pub fn changes_persons(event: &OutboxEvent) -> bool {
    match event.event_type {
        EventType::RecordLinked => serde_json::from_str::<serde_json::Value>(&event.payload)
            .map_or(true, |payload| {
                payload.get("previous_person_id").is_some_and(|p| !p.is_null())
            }),
        other => CHANGES_OF_PERSONS.contains(&other),
    }
}

/// Past this many persons not standing alone, or unknown, the view gives up answering without
/// the database until it is loaded again.
const MOST_PERSONS: usize = 2_000_000;

#[derive(Debug, Default)]
struct Entries {
    /// Persons known not to stand alone, by the person a card was linked to.
    by_person: HashMap<PersonId, Lineage>,
    /// The persons of `by_person` each survivor heads.
    by_survivor: HashMap<PersonId, Vec<PersonId>>,
    /// Persons a change named since: read again from the registry before they are answered.
    unknown: HashSet<PersonId>,
    /// Whether every person not standing alone is in `by_person` or `unknown`.
    complete: bool,
}

/// The view.
#[derive(Debug, Default)]
pub struct PersonCache {
    entries: Mutex<Entries>,
    /// Raised by every change: a look-up begun before it is not kept.
    generation: AtomicU64,
}

fn stands_alone(lineage: &Lineage) -> bool {
    lineage.members.len() == 1
        && lineage.members[0] == lineage.person
        && lineage.directives == ConsentDirectives::default()
}

impl PersonCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The generation to hand back to [`PersonCache::keep`] after a look-up.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The person as they stand, when the view knows without the database.
    pub fn get(&self, person: &PersonId) -> Option<Lineage> {
        let entries = self.lock();
        if let Some(lineage) = entries.by_person.get(person) {
            return Some(lineage.clone());
        }
        (entries.complete && !entries.unknown.contains(person)).then(|| Lineage {
            person: person.clone(),
            members: vec![person.clone()],
            directives: ConsentDirectives::default(),
        })
    }

    /// Keeps `lineage`, looked up for `person` at `generation`, unless a change ran since.
    pub fn keep(&self, person: PersonId, lineage: Lineage, generation: u64) {
        let mut entries = self.lock();
        if self.generation() != generation {
            return;
        }
        entries.unknown.remove(&person);
        if entries.complete && stands_alone(&lineage) {
            return;
        }
        if entries.by_person.len() >= MOST_PERSONS {
            *entries = Entries::default();
        }
        entries
            .by_survivor
            .entry(lineage.person.clone())
            .or_default()
            .push(person.clone());
        entries.by_person.insert(person, lineage);
    }

    /// The view is complete: every person not standing alone was kept (or changed meanwhile).
    pub fn mark_complete(&self) {
        self.lock().complete = true;
    }

    /// `persons` changed: they, and every cached person whose survivor they are, are unknown
    /// until read again.
    pub fn evict(&self, persons: &[PersonId]) {
        if persons.is_empty() {
            return;
        }
        let mut entries = self.lock();
        self.generation.fetch_add(1, Ordering::AcqRel);
        for person in persons {
            if let Some(lineage) = entries.by_person.remove(person)
                && let Some(keys) = entries.by_survivor.get_mut(&lineage.person)
            {
                keys.retain(|key| key != person);
            }
            let headed = entries.by_survivor.remove(person).unwrap_or_default();
            for key in &headed {
                entries.by_person.remove(key);
            }
            // Tracked before the view is complete too: a person the load read before a change
            // must be read again after it.
            entries.unknown.extend(headed);
            entries.unknown.insert(person.clone());
        }
        if entries.unknown.len() >= MOST_PERSONS {
            *entries = Entries::default();
        }
    }

    /// Forgets everything (a listener that fell behind cannot tell what it missed): every person
    /// is looked up again until the view is loaded again.
    pub fn clear(&self) {
        let mut entries = self.lock();
        self.generation.fetch_add(1, Ordering::AcqRel);
        *entries = Entries::default();
    }

    pub fn is_complete(&self) -> bool {
        self.lock().complete
    }

    /// Persons held (not standing alone, or looked up before the view was complete).
    pub fn len(&self) -> usize {
        self.lock().by_person.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lineage(survivor: &PersonId, members: &[&PersonId]) -> Lineage {
        Lineage {
            person: survivor.clone(),
            members: members.iter().map(|p| (*p).clone()).collect(),
            directives: ConsentDirectives::default(),
        }
    }

    #[test]
    fn a_change_to_a_survivor_makes_every_card_holder_merged_into_it_unknown() {
        let cache = PersonCache::default();
        let (survivor, merged, other) = (PersonId::generate(), PersonId::generate(), PersonId::generate());
        let g = cache.generation();
        cache.keep(merged.clone(), lineage(&survivor, &[&survivor, &merged]), g);
        cache.keep(survivor.clone(), lineage(&survivor, &[&survivor, &merged]), g);
        cache.mark_complete();
        // Anyone else stands alone, without a look-up.
        assert_eq!(cache.get(&other), Some(lineage(&other, &[&other])));
        assert_eq!(cache.get(&merged).map(|l| l.person), Some(survivor.clone()));
        cache.evict(std::slice::from_ref(&survivor));
        assert!(cache.get(&merged).is_none() && cache.get(&survivor).is_none());
        assert!(cache.get(&other).is_some());
        // Read again: known once more (standing alone now, after an unmerge, and not held).
        cache.keep(merged.clone(), lineage(&merged, &[&merged]), cache.generation());
        assert_eq!(cache.get(&merged), Some(lineage(&merged, &[&merged])));
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn nothing_is_answered_without_the_database_before_the_view_is_complete() {
        let cache = PersonCache::default();
        let person = PersonId::generate();
        assert!(cache.get(&person).is_none());
        cache.mark_complete();
        assert!(cache.get(&person).is_some());
        cache.clear();
        assert!(cache.get(&person).is_none() && !cache.is_complete());
    }

    #[test]
    fn a_look_up_that_raced_a_change_is_not_kept() {
        let cache = PersonCache::default();
        cache.mark_complete();
        let person = PersonId::generate();
        let before = cache.generation();
        cache.evict(std::slice::from_ref(&person));
        cache.keep(person.clone(), lineage(&person, &[&person]), before);
        assert!(cache.get(&person).is_none());
        cache.keep(person.clone(), lineage(&person, &[&person]), cache.generation());
        assert!(cache.get(&person).is_some());
    }

    #[test]
    fn only_a_record_that_left_a_person_changes_persons() {
        let person = PersonId::generate();
        let joined = OutboxEvent::new(
            EventType::RecordLinked,
            Some(&person),
            None,
            &serde_json::json!({"person_id": person.as_str(), "previous_person_id": null}),
        );
        assert!(!changes_persons(&joined));
        let moved = OutboxEvent::new(
            EventType::RecordLinked,
            Some(&person),
            None,
            &serde_json::json!({"person_id": person.as_str(), "previous_person_id": PersonId::generate().as_str()}),
        );
        assert!(changes_persons(&moved));
    }
}
