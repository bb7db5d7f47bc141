//! Persons, source records, matching and search: the rules of the registry, with no I/O types.

pub mod compare;
pub mod decisions;
pub mod fellegi_sunter;
pub mod golden;
pub mod linkage;
mod local_merge;
mod matching;
pub mod name_search;
mod person;
mod reads;
mod record;
mod registration;
pub mod resolve;
mod search;
pub(crate) mod service;
mod training;

pub use local_merge::LocalMerge;
pub use matching::{
    BUILT_IN_MODEL, BlockingKey, Candidate, Explanation, FieldWeight, MatchDecision, MatchThresholds,
    Matcher, PossibleMatch, ProbabilisticMatcher, person_fields,
};
pub use person::{CrossReference, Person, PersonId, SourceRecord, SourceRecordId};
pub use reads::{Lineage, PersonSelector};
pub use record::{Demographics, SourceRecordDraft};
pub use registration::{Registration, RegistrationOutcome, RematchReport};
pub use search::{Found, NameQuery, SearchCriteria};
pub use service::PopulationService;
pub use training::TrainedModel;
