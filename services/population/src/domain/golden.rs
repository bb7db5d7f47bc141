//! The golden record: a person's demographics assembled field by field from their linked source
//! records (survivorship), with the record each value came from, so that a clinician can see
//! whose word a value is. The rule per field: among the records that state it, the one from the
//! most trusted kind of organisation, and among those the most recently updated. A hospital
//! registers from the identity card at its admission desk; a village clinic often from what the
//! patient says. Every stored resident identity number passed its check digit and its agreement
//! with birth date and sex when it was registered, so each one is a verified one.

use chrono::{DateTime, Utc};
use hie_directory::domain::OrganisationKind;

use super::{Demographics, SourceRecordId};

/// Where one field of the golden record came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldSource {
    pub field: &'static str,
    pub source_record_id: SourceRecordId,
}

/// One linked record as survivorship reads it.
#[derive(Debug, Clone, Copy)]
pub struct Statement<'a> {
    pub record: &'a SourceRecordId,
    pub demographics: &'a Demographics,
    pub updated_at: DateTime<Utc>,
    /// How much its organisation's statements are trusted ([`trust_of`]).
    pub trust: u8,
}

/// The trust of the kind of organisation that keeps a record; an organisation the directory
/// does not know (or that records no demographics of its own) counts least.
pub fn trust_of(kind: Option<OrganisationKind>) -> u8 {
    match kind {
        Some(OrganisationKind::Hospital) => MOST_TRUSTED,
        Some(OrganisationKind::TownshipHealthCentre | OrganisationKind::CommunityHealthCentre) => 2,
        Some(OrganisationKind::VillageClinic) => 1,
        _ => 0,
    }
}

/// The trust of a hospital: a record from one outranks every other for each field it states.
pub const MOST_TRUSTED: u8 = 3;

/// How one field of the golden record survives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Survival {
    /// From the record that ranks first (most trusted, then newest), always: every record
    /// states it (the name).
    FromFirst,
    /// From the first-ranked record that states it; kept when none does.
    FromFirstStating,
}

/// One demographic field: its stored column (also its name in `demographics_sources`), how it
/// survives, and how to read and copy it. [`DEMOGRAPHIC_FIELDS`] is the one list of them: the
/// golden record here, and the store's column lists and its SQL that applies a newest record,
/// are derived from it.
#[derive(Debug, Clone, Copy)]
pub struct DemographicField {
    pub column: &'static str,
    pub survival: Survival,
    stated: fn(&Demographics) -> bool,
    copy: fn(&mut Demographics, &Demographics),
}

macro_rules! optional_field {
    ($field:ident, $column:literal) => {
        DemographicField {
            column: $column,
            survival: Survival::FromFirstStating,
            stated: |d| d.$field.is_some(),
            copy: |to, from| to.$field = from.$field.clone(),
        }
    };
}

/// Every demographic field, in the order of the stored columns.
pub const DEMOGRAPHIC_FIELDS: [DemographicField; 7] = [
    DemographicField {
        column: "name",
        survival: Survival::FromFirst,
        stated: |_| true,
        copy: |to, from| to.name = from.name.clone(),
    },
    optional_field!(sex, "sex"),
    optional_field!(birth_date, "birth_date"),
    optional_field!(ethnicity, "ethnicity"),
    optional_field!(phone, "phone"),
    optional_field!(division, "division_code"),
    DemographicField {
        column: "address_line",
        survival: Survival::FromFirstStating,
        stated: |d| !d.address_line.as_str().is_empty(),
        copy: |to, from| to.address_line = from.address_line.clone(),
    },
];

/// The golden record of a person from their records; `None` for a person without records.
pub fn golden_record(statements: &[Statement<'_>]) -> Option<(Demographics, Vec<FieldSource>)> {
    let mut ranked: Vec<&Statement<'_>> = statements.iter().collect();
    // Most trusted first, then newest; among equals the larger id (the later registration)
    // first, so that the result does not depend on the order the records were read in.
    ranked.sort_by(|a, b| {
        b.trust
            .cmp(&a.trust)
            .then_with(|| b.updated_at.cmp(&a.updated_at))
            .then_with(|| b.record.cmp(a.record))
    });
    let first = ranked.first()?;
    let mut golden = first.demographics.clone();
    let mut sources = Vec::with_capacity(DEMOGRAPHIC_FIELDS.len());
    for field in &DEMOGRAPHIC_FIELDS {
        let source = match field.survival {
            Survival::FromFirst => Some(first),
            Survival::FromFirstStating => ranked.iter().find(|s| (field.stated)(s.demographics)),
        };
        if let Some(statement) = source {
            (field.copy)(&mut golden, statement.demographics);
            sources.push(FieldSource {
                field: field.column,
                source_record_id: statement.record.clone(),
            });
        }
    }
    Some((golden, sources))
}

#[cfg(test)]
mod tests {
    use super::super::record::tests::demographics;
    use super::*;
    use hie_core::domain::Phone;

    #[test]
    fn each_field_comes_from_the_newest_record_that_states_it() {
        let (old_id, new_id) = (SourceRecordId::generate(), SourceRecordId::generate());
        let mut old = demographics("王芳", "2", "1949-12-31");
        old.phone = Some(Phone::parse("13808551234").unwrap());
        let mut new = demographics("汪芳", "2", "1949-12-31");
        new.sex = None;
        let at = |s: i64| DateTime::from_timestamp(s, 0).unwrap();
        let statements = [
            Statement {
                record: &new_id,
                demographics: &new,
                updated_at: at(200),
                trust: MOST_TRUSTED,
            },
            Statement {
                record: &old_id,
                demographics: &old,
                updated_at: at(100),
                trust: MOST_TRUSTED,
            },
        ];
        let (golden, sources) = golden_record(&statements).unwrap();
        assert_eq!(golden.name.as_str(), "汪芳");
        assert_eq!(golden.phone.as_ref().unwrap().as_str(), "13808551234");
        assert!(golden.sex.is_some());
        let source_of = |field: &str| {
            sources
                .iter()
                .find(|s| s.field == field)
                .map(|s| s.source_record_id.clone())
        };
        assert_eq!(source_of("name"), Some(new_id.clone()));
        assert_eq!(source_of("phone"), Some(old_id.clone()));
        assert_eq!(source_of("sex"), Some(old_id));
        assert_eq!(source_of("address_line"), None, "no record states an address");
        assert!(golden_record(&[]).is_none());
    }

    #[test]
    fn a_hospitals_older_statement_outranks_a_village_clinics_newer_one() {
        let (hospital_id, clinic_id) = (SourceRecordId::generate(), SourceRecordId::generate());
        let mut hospital = demographics("王芳", "2", "1949-12-31");
        hospital.phone = Some(Phone::parse("13808551234").unwrap());
        let mut clinic = demographics("王方", "2", "1949-12-31");
        clinic.phone = Some(Phone::parse("13900000000").unwrap());
        let at = |s: i64| DateTime::from_timestamp(s, 0).unwrap();
        let statements = [
            Statement {
                record: &clinic_id,
                demographics: &clinic,
                updated_at: at(300),
                trust: trust_of(Some(OrganisationKind::VillageClinic)),
            },
            Statement {
                record: &hospital_id,
                demographics: &hospital,
                updated_at: at(100),
                trust: trust_of(Some(OrganisationKind::Hospital)),
            },
        ];
        let (golden, sources) = golden_record(&statements).unwrap();
        assert_eq!(golden.name.as_str(), "王芳");
        assert_eq!(golden.phone.as_ref().unwrap().as_str(), "13808551234");
        assert!(sources.iter().all(|s| s.source_record_id == hospital_id));
    }
}
