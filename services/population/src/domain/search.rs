//! Searching persons by demographics (PDQ): the criteria, and the search itself, ranked by how
//! the name matches when it is searched by its sound.

use std::collections::{BTreeMap, BTreeSet};

use hie_access::PersonRead;
use hie_access::domain::consent::DataCategory;
use hie_core::Error;
use hie_core::context::RequestContext;
use hie_core::domain::{
    BirthDate, DivisionCode, Identifier, IdentifierSystem, OrganisationCode, PersonName, Sex,
};
use hie_core::page::{PageSize, PageToken, next_page};
use hie_core::vocabulary::AuditAction;

use super::name_search::{NameMatch, NameSearch};
use super::{Demographics, Person, PersonId, PopulationService, SourceRecord};

/// How a search names the person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameQuery {
    /// The name, compared case-insensitively after normalisation.
    Exact(PersonName),
    /// Names starting with this (a trailing `*` in the request).
    Prefix(PersonName),
    /// The name as a clerk types it: the same name, its sound (pinyin, homophones, traditional
    /// forms), its initials, or a transliteration; results ranked by how they match.
    Sounds(NameSearch),
}

impl NameQuery {
    /// How `name` matches; `None` if it does not.
    pub fn matches(&self, name: &PersonName) -> Option<NameMatch> {
        match self {
            NameQuery::Exact(exact) => (name.search_key() == exact.search_key()).then_some(NameMatch::Same),
            NameQuery::Prefix(prefix) => name
                .search_key()
                .starts_with(&prefix.search_key())
                .then_some(NameMatch::Same),
            NameQuery::Sounds(search) => search.matches(name.as_str()),
        }
    }
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
        let name = self
            .name
            .as_ref()
            .is_none_or(|query| query.matches(&demographics.name).is_some());
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

/// A person a search found, and how well they match the name asked for (1 when no name was).
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub person: Person,
    pub score: f64,
    /// How the name matched (`same name`, `same pinyin`, `sounds alike`, `initials`); empty
    /// when no name was asked for.
    pub matched_by: &'static str,
}

/// A name searched by its sound is ranked among at most this many matching records.
pub const MAX_RANKED_RECORDS: u32 = 1_000;

impl PopulationService {
    /// PDQ: persons matching every criterion. A name searched by its sound (`NameQuery::Sounds`)
    /// ranks the persons by how their names match, best first; otherwise they come in id order.
    pub async fn search(
        &self,
        context: &RequestContext,
        criteria: &SearchCriteria,
        page_size: PageSize,
        page_token: Option<PageToken>,
    ) -> Result<(Vec<Found>, Option<PageToken>), Error> {
        if criteria.is_empty() {
            return Err(Error::invalid(
                "request",
                "give at least one criterion: name, birth date, sex, division or identifier",
            ));
        }
        if let (Some(from), Some(to)) = (criteria.born_from, criteria.born_to)
            && from > to
        {
            return Err(Error::invalid(
                "birth_date_to",
                format!("{} is before birth_date_from", to.to_iso()),
            ));
        }
        let after = page_token.as_ref().map_or("", PageToken::last_key);
        let (found, next) = match &criteria.name {
            Some(NameQuery::Sounds(search)) => {
                let others = SearchCriteria {
                    name: None,
                    ..criteria.clone()
                };
                if search.is_initials_only() && others.is_empty() {
                    return Err(Error::invalid(
                        "name",
                        "initials alone find too many people: add a birth date, sex, division or identifier",
                    ));
                }
                self.ranked(criteria, search, after, page_size).await?
            }
            _ => {
                let mut persons = self.store.search(criteria, after, page_size.get() + 1).await?;
                let next = next_page(&mut persons, page_size, |p| p.id.as_str());
                let matched_by = if criteria.name.is_some() {
                    NameMatch::Same.code()
                } else {
                    ""
                };
                let found = persons
                    .into_iter()
                    .map(|person| Found {
                        person,
                        score: 1.0,
                        matched_by,
                    })
                    .collect();
                (found, next)
            }
        };
        let shown = self.as_seen_by_searcher(context, criteria, found).await?;
        Ok((shown, next))
    }

    /// The persons whose records' names match `search`, best match first (then by id), after
    /// the rank key `after`.
    async fn ranked(
        &self,
        criteria: &SearchCriteria,
        search: &super::name_search::NameSearch,
        after: &str,
        page_size: PageSize,
    ) -> Result<(Vec<Found>, Option<PageToken>), Error> {
        let mut best: BTreeMap<PersonId, NameMatch> = BTreeMap::new();
        for (person, name, key) in self
            .store
            .search_names(criteria, search, MAX_RANKED_RECORDS)
            .await?
        {
            if let Some(how) = search.match_by_key(&name, &key) {
                let entry = best.entry(person).or_insert(how);
                *entry = (*entry).min(how);
            }
        }
        // The rank key orders by match, then by person id; a page resumes after the last one.
        let mut ranked: Vec<(String, PersonId, NameMatch)> = best
            .into_iter()
            .map(|(person, how)| (format!("{}:{}", how as u8, person.as_str()), person, how))
            .filter(|(key, _, _)| key.as_str() > after)
            .collect();
        ranked.sort_by(|a, b| a.0.cmp(&b.0));
        let next = next_page(&mut ranked, page_size, |(key, _, _)| key.as_str());
        let ids: Vec<PersonId> = ranked.iter().map(|(_, id, _)| id.clone()).collect();
        let mut persons: BTreeMap<PersonId, Person> = self
            .store
            .persons(&ids)
            .await?
            .into_iter()
            .map(|p| (p.id.clone(), p))
            .collect();
        let found = ranked
            .into_iter()
            .filter_map(|(_, id, how)| {
                persons.remove(&id).map(|person| Found {
                    person,
                    score: how.score(),
                    matched_by: how.code(),
                })
            })
            .collect();
        Ok((found, next))
    }

    /// What a searcher may see of the persons found: each found person sees the search in their
    /// access log, and those who withheld consent from the caller are left out (their log says
    /// so). A search finds people; it never shows that someone is a patient of an organisation
    /// whose records reveal a sensitive category (GetPerson does, with consent).
    async fn as_seen_by_searcher(
        &self,
        context: &RequestContext,
        criteria: &SearchCriteria,
        mut found: Vec<Found>,
    ) -> Result<Vec<Found>, Error> {
        let reads: Vec<PersonRead<'_, ()>> = found
            .iter()
            .map(|f| PersonRead {
                context,
                action: AuditAction::SearchPersons,
                person_id: &f.person.id,
                category: DataCategory::Demographics,
                directives: None,
                items: Vec::new(),
            })
            .collect();
        let mut visible = self
            .access
            .read(reads)
            .await?
            .into_iter()
            .map(|seen| seen.is_ok());
        found.retain(|_| visible.next().unwrap_or(false));
        let mut sensitive: BTreeSet<OrganisationCode> = BTreeSet::new();
        let mut checked: BTreeSet<OrganisationCode> = BTreeSet::new();
        for f in &found {
            for identifier in &f.person.identifiers {
                if let IdentifierSystem::LocalPatientNumber(organisation) = identifier.system()
                    && checked.insert(organisation.clone())
                    && self
                        .directory
                        .get_organisation(organisation)
                        .await?
                        .draft
                        .sensitive_category
                        .is_some()
                    && context.organisation.as_ref() != Some(organisation)
                {
                    sensitive.insert(organisation.clone());
                }
            }
        }
        // A person with records at such organisations is shown as the caller may see them: the
        // demographics from the visible records only, and found only if a visible record (and
        // a visible identifier) meets the criteria, so that neither the answer nor its absence
        // tells what a hidden record says.
        let mut shown = Vec::with_capacity(found.len());
        for f in found {
            let keeps_hidden = f.person.identifiers.iter().any(|identifier| {
                matches!(identifier.system(), IdentifierSystem::LocalPatientNumber(o) if sensitive.contains(o))
            });
            if !keeps_hidden {
                shown.push(f);
                continue;
            }
            let records = self.store.source_records_of(&f.person.id).await?;
            let Ok((person, records)) = self
                .as_seen_by(context, AuditAction::SearchPersons, f.person, records)
                .await
            else {
                continue;
            };
            if criteria.met_by(&records, &person.identifiers) {
                shown.push(Found { person, ..f });
            }
        }
        Ok(shown)
    }
}
