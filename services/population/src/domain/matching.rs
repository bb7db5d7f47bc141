//! Matching: which existing person, if any, a source record describes. The registration path
//! asks a [`Matcher`] for the record's blocking keys, the store finds the records sharing any of
//! them (the candidates), and the matcher decides. This matcher is deterministic (the
//! same resident identity number is the same person); a probabilistic matcher plugs in behind
//! the same trait, with more kinds of blocking key.

use hie_core::domain::Identifier;

use super::{Demographics, PersonId, SourceRecordDraft, SourceRecordId};

/// A key that narrows the search for candidates: only records sharing a key with the new record
/// are compared with it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BlockingKey {
    /// Records asserting the same identifier.
    Identifier { system: String, value: String },
}

impl BlockingKey {
    pub fn identifier(identifier: &Identifier) -> BlockingKey {
        BlockingKey::Identifier {
            system: identifier.system_uri(),
            value: identifier.value().to_owned(),
        }
    }

    /// The key as one string, for the lock that serialises registrations sharing it.
    pub fn lock_name(&self) -> String {
        match self {
            BlockingKey::Identifier { system, value } => format!("id|{system}|{value}"),
        }
    }
}

/// An existing source record that shares a blocking key with the record being registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub person_id: PersonId,
    pub source_record_id: SourceRecordId,
    pub demographics: Demographics,
    pub identifiers: Vec<Identifier>,
}

/// What the matcher decided for a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MatchDecision {
    /// The record describes this existing person.
    Link(PersonId),
    /// No existing person matches.
    NewPerson,
}

/// Decides which person a record describes. Pure: no I/O, so that it can be tested and replayed.
pub trait Matcher: Send + Sync + std::fmt::Debug {
    /// The keys whose candidates the decision needs.
    fn blocking_keys(&self, record: &SourceRecordDraft) -> Vec<BlockingKey>;

    /// Decides among `candidates`, which never include the record itself.
    fn decide(&self, record: &SourceRecordDraft, candidates: &[Candidate]) -> MatchDecision;
}

/// Links records that carry the same resident identity number, and nothing else.
#[derive(Debug, Clone, Default)]
pub struct DeterministicMatcher;

impl Matcher for DeterministicMatcher {
    fn blocking_keys(&self, record: &SourceRecordDraft) -> Vec<BlockingKey> {
        record
            .resident_id()
            .map(|id| BlockingKey::identifier(&Identifier::resident(&id)))
            .into_iter()
            .collect()
    }

    fn decide(&self, record: &SourceRecordDraft, candidates: &[Candidate]) -> MatchDecision {
        let Some(resident_id) = record.resident_id() else {
            return MatchDecision::NewPerson;
        };
        // Every record with this number is linked to one person, so the first is as good as any;
        // the smallest id keeps the choice stable should that ever not hold.
        candidates
            .iter()
            .filter(|c| {
                c.identifiers
                    .iter()
                    .any(|i| i.as_resident_id().as_ref() == Some(&resident_id))
            })
            .map(|c| &c.person_id)
            .min()
            .map_or(MatchDecision::NewPerson, |p| MatchDecision::Link(p.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::super::record::tests::{demographics, resident, with_check};
    use super::*;
    use hie_core::domain::OrganisationCode;

    fn record(resident_ids: &[&str]) -> SourceRecordDraft {
        SourceRecordDraft::new(
            OrganisationCode::parse("QDN-H01").unwrap(),
            "1",
            demographics("王芳", "2", "1949-12-31"),
            resident_ids.iter().map(|id| resident(id)).collect(),
        )
        .unwrap()
    }

    fn candidate(person: &PersonId, resident_id: &str) -> Candidate {
        Candidate {
            person_id: person.clone(),
            source_record_id: SourceRecordId::generate(),
            demographics: demographics("王芳", "2", "1949-12-31"),
            identifiers: vec![resident(resident_id)],
        }
    }

    #[test]
    fn the_same_resident_id_links_to_the_existing_person() {
        let person = PersonId::generate();
        let decision = DeterministicMatcher.decide(
            &record(&["11010519491231002X"]),
            &[candidate(&person, "11010519491231002X")],
        );
        assert_eq!(decision, MatchDecision::Link(person));
    }

    #[test]
    fn a_different_resident_id_or_none_makes_a_new_person() {
        let person = PersonId::generate();
        let other = with_check("11010519491231004");
        assert_eq!(
            DeterministicMatcher.decide(&record(&["11010519491231002X"]), &[candidate(&person, &other)]),
            MatchDecision::NewPerson
        );
        assert_eq!(
            DeterministicMatcher.decide(&record(&[]), &[candidate(&person, &other)]),
            MatchDecision::NewPerson
        );
    }

    #[test]
    fn only_a_record_with_a_resident_id_has_a_blocking_key() {
        assert_eq!(
            DeterministicMatcher
                .blocking_keys(&record(&["11010519491231002X"]))
                .len(),
            1
        );
        assert!(DeterministicMatcher.blocking_keys(&record(&[])).is_empty());
    }
}
