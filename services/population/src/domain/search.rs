use hie_core::domain::{BirthDate, DivisionCode, Identifier, PersonName, Sex};

use super::{Demographics, SourceRecord};

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

    /// Whether one of `records` meets the demographic criteria and `identifiers` holds the
    /// identifier asked for: the store's search, applied to what a caller may see.
    pub fn met_by(&self, records: &[SourceRecord], identifiers: &[Identifier]) -> bool {
        if let Some(identifier) = &self.identifier
            && !identifiers.contains(identifier)
        {
            return false;
        }
        records
            .iter()
            .any(|record| self.met_by_demographics(&record.demographics))
    }

    fn met_by_demographics(&self, demographics: &Demographics) -> bool {
        let name_key = demographics.name.search_key();
        let name = match &self.name {
            None => true,
            Some(NameQuery::Exact(name)) => name_key == name.search_key(),
            Some(NameQuery::Prefix(prefix)) => name_key.starts_with(&prefix.search_key()),
        };
        let born = demographics.birth_date;
        let born_from = self.born_from.is_none_or(|from| born.is_some_and(|b| b >= from));
        let born_to = self.born_to.is_none_or(|to| born.is_some_and(|b| b <= to));
        let sex = self.sex.is_none_or(|sex| demographics.sex == Some(sex));
        let division = self.division.as_ref().is_none_or(|division| {
            demographics
                .division
                .as_ref()
                .is_some_and(|d| d.as_str().starts_with(division.region_prefix()))
        });
        name && born_from && born_to && sex && division
    }
}
