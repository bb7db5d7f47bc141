//! The statements that write demographic columns, derived from the one field table
//! ([`DEMOGRAPHIC_FIELDS`]): the column lists, and how applying a registry's newest, most trusted
//! record changes a person (each field by its survival rule), so that no list of columns or
//! survivorship order is spelled out twice.

use std::fmt;
use std::sync::LazyLock;

use crate::domain::golden::{DEMOGRAPHIC_FIELDS, Survival};

/// The demographic columns shared by `persons` and `source_records`, comma-separated, in the
/// order of [`DEMOGRAPHIC_FIELDS`] (and of `DemographicColumns::bind`).
pub(super) struct ColumnList;

impl fmt::Display for ColumnList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, field) in DEMOGRAPHIC_FIELDS.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(field.column)?;
        }
        Ok(())
    }
}

pub(super) const DEMOGRAPHIC_COLUMNS: ColumnList = ColumnList;

/// The columns with a table alias (`s.name, s.sex, …`).
pub(super) fn columns_of(alias: &str) -> String {
    DEMOGRAPHIC_FIELDS
        .iter()
        .map(|field| format!("{alias}.{}", field.column))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `column = $n, …` from parameter `first` on, for a statement that sets the columns.
pub(super) fn set_all(first: usize) -> String {
    DEMOGRAPHIC_FIELDS
        .iter()
        .enumerate()
        .map(|(i, field)| format!("{} = ${}", field.column, first + i))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The same assignments for applying a newest record that outranks every other (a
/// hospital's): by each field's survival rule, a field it states replaces the person's, and one
/// it leaves empty keeps theirs.
pub(super) fn apply_newest(first: usize) -> String {
    DEMOGRAPHIC_FIELDS
        .iter()
        .enumerate()
        .map(|(i, field)| match field.survival {
            Survival::FromFirst => format!("{} = ${}", field.column, first + i),
            Survival::FromFirstStating => {
                format!("{c} = COALESCE(${n}, {c})", c = field.column, n = first + i)
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `$first, …` for the demographic columns.
pub(super) fn values(first: usize) -> String {
    super::placeholders(first, DEMOGRAPHIC_FIELDS.len())
}

/// A statement file with `{demographic_columns}` and `{apply_newest}` filled in.
fn fill(template: &str) -> String {
    template
        .replace("{demographic_columns}", &DEMOGRAPHIC_COLUMNS.to_string())
        .replace("{apply_newest}", &apply_newest(5))
        .replace("{outbox_recordset}", hie_core::outbox::OUTBOX_RECORDSET)
}

pub(super) static INSERT_PERSON: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO persons (id, {DEMOGRAPHIC_COLUMNS}, created_at, updated_at) VALUES ($1, {}, $9, $9)",
        values(2)
    )
});

pub(super) static APPLY_NEWEST: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE persons SET {}, updated_at = $9 WHERE id = $1",
        apply_newest(2)
    )
});

pub(super) static SET_PERSON_DEMOGRAPHICS: LazyLock<String> =
    LazyLock::new(|| format!("UPDATE persons SET {}, updated_at = $9 WHERE id = $1", set_all(2)));

pub(super) static INSERT_SOURCE_RECORD: LazyLock<String> =
    LazyLock::new(|| fill(include_str!("queries/insert_source_record.sql")));

pub(super) static UPDATE_SOURCE_RECORD: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE source_records SET person_id = $2, {}, name_key = $10, updated_at = $11 WHERE id = $1",
        set_all(3)
    )
});

/// The one-statement registration of a new record on PostgreSQL.
pub(super) static WRITE_NEW_RECORD: LazyLock<String> =
    LazyLock::new(|| fill(include_str!("queries/write_new_record.pg.sql")));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_statements_list_every_field_in_the_table_order() {
        assert_eq!(
            DEMOGRAPHIC_COLUMNS.to_string(),
            "name, sex, birth_date, ethnicity, phone, division_code, address_line"
        );
        assert_eq!(
            *APPLY_NEWEST,
            "UPDATE persons SET name = $2, sex = COALESCE($3, sex), birth_date = COALESCE($4, birth_date), \
             ethnicity = COALESCE($5, ethnicity), phone = COALESCE($6, phone), \
             division_code = COALESCE($7, division_code), address_line = COALESCE($8, address_line), \
             updated_at = $9 WHERE id = $1"
        );
        for statement in [&*INSERT_SOURCE_RECORD, &*WRITE_NEW_RECORD] {
            for placeholder in ["{demographic_columns}", "{apply_newest}", "{outbox_recordset}"] {
                assert!(
                    !statement.contains(placeholder),
                    "{placeholder} was left: {statement}"
                );
            }
            assert!(
                statement.contains("name, sex, birth_date, ethnicity, phone, division_code, address_line")
            );
        }
    }
}
