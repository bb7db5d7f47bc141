//! The golden record: a person's demographics assembled field by field from their linked source
//! records (survivorship), with the record each value came from, so that a clinician can see
//! whose word a value is. The rule per field: the most recently updated record that states it.
//! Every stored resident identity number passed its check digit and its agreement with birth
//! date and sex when it was registered, so the most recent one is also a verified one.

use chrono::{DateTime, Utc};

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
}

/// The golden record of a person from their records; `None` for a person without records.
pub fn golden_record(statements: &[Statement<'_>]) -> Option<(Demographics, Vec<FieldSource>)> {
    let mut newest_first: Vec<&Statement<'_>> = statements.iter().collect();
    // Newest first; among equals the larger id (the later registration) first, so that the
    // result does not depend on the order the records were read in.
    newest_first.sort_by(|a, b| {
        b.updated_at
            .cmp(&a.updated_at)
            .then_with(|| b.record.cmp(a.record))
    });
    let newest = newest_first.first()?;
    let mut golden = newest.demographics.clone();
    let mut sources = vec![FieldSource {
        field: "name",
        source_record_id: newest.record.clone(),
    }];
    macro_rules! survive {
        ($field:ident, $name:literal, $present:expr) => {
            if let Some(statement) = newest_first
                .iter()
                .find(|s| $present(&s.demographics.$field))
            {
                golden.$field = statement.demographics.$field.clone();
                sources.push(FieldSource {
                    field: $name,
                    source_record_id: statement.record.clone(),
                });
            }
        };
    }
    survive!(sex, "sex", |v: &Option<_>| v.is_some());
    survive!(birth_date, "birth_date", |v: &Option<_>| v.is_some());
    survive!(ethnicity, "ethnicity", |v: &Option<_>| v.is_some());
    survive!(phone, "phone", |v: &Option<_>| v.is_some());
    survive!(division, "division_code", |v: &Option<_>| v.is_some());
    survive!(
        address_line,
        "address_line",
        |v: &hie_core::domain::BoundedText| !v.as_str().is_empty()
    );
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
            },
            Statement {
                record: &old_id,
                demographics: &old,
                updated_at: at(100),
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
}
