//! Synthetic population files for linkage, with the truth beside them: a Chinese population
//! ([`chinese`]) and a Latin-script one ([`latin`]), each spoiled the way registration desks
//! and forms spoil records. `hie bench match` measures linkage quality against them; `hie
//! generate population-file` writes them as CSV for `hie dedupe`. [`reading`] reads any
//! population file.

pub mod chinese;
pub mod latin;
pub mod reading;

use std::io::Write;

use hie_population::domain::linkage::{Field, PersonFields};

use crate::demo::Rng;

/// The population a generator makes: Chinese (names in characters, divisions, phones,
/// resident identity numbers) or Latin-script (given name and surname, suburbs, postcodes,
/// states, an id number; see [`latin`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Script {
    Chinese,
    Latin,
}

/// What the generator makes and how much it spoils.
#[derive(Debug, Clone)]
pub struct GeneratorOptions {
    pub script: Script,
    pub records: usize,
    /// The share of records that carry the identity number (the resident identity number of a
    /// Chinese file, the id number of a Latin one).
    pub id_share: f64,
    pub seed: u64,
}

/// One generated record and the person it truly belongs to.
#[derive(Debug, Clone)]
pub struct GeneratedRecord {
    pub id: String,
    pub person: u32,
    pub hospital: u8,
    pub fields: PersonFields,
}

/// Generates the records of `options.script`'s population.
pub fn generate(options: &GeneratorOptions) -> Vec<GeneratedRecord> {
    match options.script {
        Script::Chinese => chinese::generate(options),
        Script::Latin => {
            let records = latin::generate(options.records, options.id_share, options.seed);
            latin::generated(records, &mut Rng::new(options.seed))
        }
    }
}

/// Records arrive in no particular order; each gets its id in the order it arrives.
pub fn shuffle_and_number(records: &mut [GeneratedRecord], rng: &mut Rng) {
    for i in (1..records.len()).rev() {
        let j = rng.below(i + 1);
        records.swap(i, j);
    }
    for (i, record) in records.iter_mut().enumerate() {
        record.id = format!("R{:08}", i + 1);
    }
}

/// What a written column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    RecordId,
    Hospital,
    Field(Field),
    Identifier(&'static str),
}

/// The columns of a Chinese file, in order.
const CHINESE_COLUMNS: &[(&str, Column)] = &[
    ("record_id", Column::RecordId),
    ("hospital", Column::Hospital),
    ("name", Column::Field(Field::FullName)),
    ("sex", Column::Field(Field::Sex)),
    ("birth_date", Column::Field(Field::BirthDate)),
    ("resident_id", Column::Field(Field::ResidentId)),
    ("phone", Column::Field(Field::Phone)),
    ("address", Column::Field(Field::Address1)),
    ("city", Column::Field(Field::City)),
    ("postcode", Column::Field(Field::Postcode)),
    ("province", Column::Field(Field::Province)),
];

/// The columns of a Latin-script file, in order.
const LATIN_COLUMNS: &[(&str, Column)] = &[
    ("record_id", Column::RecordId),
    ("hospital", Column::Hospital),
    ("given_name", Column::Field(Field::GivenName)),
    ("surname", Column::Field(Field::Surname)),
    ("sex", Column::Field(Field::Sex)),
    ("date_of_birth", Column::Field(Field::BirthDate)),
    ("id_number", Column::Identifier(latin::ID_NUMBER)),
    ("street_number", Column::Field(Field::StreetNumber)),
    ("address_1", Column::Field(Field::Address1)),
    ("address_2", Column::Field(Field::Address2)),
    ("suburb", Column::Field(Field::City)),
    ("postcode", Column::Field(Field::Postcode)),
    ("state", Column::Field(Field::Province)),
];

/// The columns a script's file has, in order.
pub fn columns(script: Script) -> &'static [(&'static str, Column)] {
    match script {
        Script::Chinese => CHINESE_COLUMNS,
        Script::Latin => LATIN_COLUMNS,
    }
}

/// The `--map` arguments that read a generated file.
pub fn column_map(script: Script) -> Vec<String> {
    columns(script)
        .iter()
        .filter_map(|(column, source)| match source {
            Column::Field(f) => Some(format!("{}={column}", f.name())),
            Column::Identifier(name) => Some(format!("identifier:{name}={column}")),
            Column::RecordId | Column::Hospital => None,
        })
        .collect()
}

/// Writes the records as CSV (UTF-8) and the truth (`record_id,person_id`).
pub fn write(
    script: Script,
    records: &[GeneratedRecord],
    csv: &std::path::Path,
    truth: &std::path::Path,
) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(csv)?);
    let header: Vec<&str> = columns(script).iter().map(|(c, _)| *c).collect();
    writeln!(out, "{}", header.join(","))?;
    for record in records {
        let row: Vec<String> = columns(script)
            .iter()
            .map(|(_, source)| match source {
                Column::RecordId => record.id.clone(),
                Column::Hospital => format!("H{:02}", record.hospital + 1),
                Column::Field(f) => csv_field(record.fields.get(*f).unwrap_or("")),
                Column::Identifier(name) => csv_field(record.fields.identifier(name).unwrap_or("")),
            })
            .collect();
        writeln!(out, "{}", row.join(","))?;
    }
    out.flush()?;
    let mut out = std::io::BufWriter::new(std::fs::File::create(truth)?);
    writeln!(out, "record_id,person_id")?;
    for record in records {
        writeln!(out, "{},P{:08}", record.id, record.person)?;
    }
    out.flush()
}

/// A CSV field, quoted when it must be.
pub fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_owned()
    }
}
