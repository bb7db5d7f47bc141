use hie_core::domain::{BirthDate, DivisionCode, Identifier, PersonName, Sex};

/// How a search names the person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameQuery {
    /// The name, compared case-insensitively after normalisation.
    Exact(PersonName),
    /// Names starting with this (a trailing `*` in the request).
    Prefix(PersonName),
}

/// A demographic search (PDQ). Every criterion given must hold; the criteria on demographics must
/// hold for one and the same source record of the person.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchCriteria {
    pub name: Option<NameQuery>,
    /// Inclusive bounds; an exact date has both bounds equal.
    pub born_from: Option<BirthDate>,
    pub born_to: Option<BirthDate>,
    pub sex: Option<Sex>,
    pub division: Option<DivisionCode>,
    pub identifier: Option<Identifier>,
}

impl SearchCriteria {
    pub fn is_empty(&self) -> bool {
        *self == SearchCriteria::default()
    }
}
