//! Reading population files: generic CSV, UTF-8 or GB18030, any columns mapped to fields with
//! `--map`. Every structural problem is reported with its line number.

use std::collections::HashMap;
use std::path::Path;

use hie_population::domain::linkage::comparison::Schema;
use hie_population::domain::linkage::{Field, PersonFields};

/// Where each field and extra column is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnMap {
    fields: Vec<(Field, String)>,
    /// `(system name, column)` of each identifier column.
    identifiers: Vec<(String, String)>,
    extras: Vec<(String, String)>,
}

impl ColumnMap {
    pub fn parse(mappings: &[String]) -> Result<ColumnMap, String> {
        let mut map = ColumnMap {
            fields: Vec::new(),
            identifiers: Vec::new(),
            extras: Vec::new(),
        };
        for mapping in mappings {
            let (target, column) = mapping
                .split_once('=')
                .filter(|(t, c)| !t.trim().is_empty() && !c.trim().is_empty())
                .ok_or_else(|| format!("--map '{mapping}': expected FIELD=COLUMN"))?;
            let (target, column) = (target.trim(), column.trim().to_owned());
            if let Some(name) = target.strip_prefix("extra:") {
                map.extras.push((name.to_owned(), column));
                continue;
            }
            if let Some(name) = target.strip_prefix("identifier:") {
                let name = name.trim();
                if name.is_empty() {
                    return Err(format!(
                        "--map '{mapping}': the identifier needs a name, as in identifier:passport=COLUMN"
                    ));
                }
                if map.identifiers.iter().any(|(n, _)| n == name) {
                    return Err(format!("--map '{mapping}': identifier:{name} is mapped twice"));
                }
                map.identifiers.push((name.to_owned(), column));
                continue;
            }
            let field = Field::parse(target).ok_or_else(|| {
                let known: Vec<&str> = Field::ALL.iter().map(|f| f.name()).collect();
                format!(
                    "--map '{mapping}': '{target}' is not a field, expected one of {} or extra:NAME",
                    known.join(", ")
                )
            })?;
            if map.fields.iter().any(|(f, _)| *f == field) {
                return Err(format!("--map '{mapping}': {target} is mapped twice"));
            }
            map.fields.push((field, column));
        }
        map.schema().map_err(|e| format!("--map: {e}"))?;
        Ok(map)
    }

    /// The names of the extra columns carried into the output, in order.
    pub fn extra_names(&self) -> impl Iterator<Item = &str> {
        self.extras.iter().map(|(name, _)| name.as_str())
    }

    /// The identifier systems compared, in the order mapped.
    pub fn schema(&self) -> Result<Schema, String> {
        let names: Vec<&str> = self.identifiers.iter().map(|(n, _)| n.as_str()).collect();
        Schema::new(&names)
    }

    /// The map to use with `header`: the given one, or the columns named like fields.
    fn for_header(&self, header: &[String]) -> ColumnMap {
        if !self.fields.is_empty() || !self.identifiers.is_empty() {
            return self.clone();
        }
        let fields = Field::ALL
            .into_iter()
            .filter(|f| header.iter().any(|h| h == f.name()))
            .map(|f| (f, f.name().to_owned()))
            .collect();
        ColumnMap {
            fields,
            identifiers: Vec::new(),
            extras: self.extras.clone(),
        }
    }
}

/// A population file read and checked.
#[derive(Debug)]
pub struct PopulationFile {
    pub ids: Vec<String>,
    pub records: Vec<PersonFields>,
    pub extras: Vec<Vec<String>>,
    /// The file's line of each record, for messages.
    pub lines: Vec<u64>,
}

/// Decodes a file as UTF-8 or, if most of its lines with non-ASCII text are not UTF-8, as
/// GB18030. Lines that are not valid in the encoding chosen are errors, with their numbers.
pub fn decode(bytes: &[u8]) -> Result<String, Vec<String>> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    if let Ok(text) = std::str::from_utf8(bytes) {
        return Ok(text.to_owned());
    }
    let lines: Vec<&[u8]> = bytes.split_inclusive(|b| *b == b'\n').collect();
    // The file is taken as UTF-8 when most of its non-ASCII lines are, so that one damaged
    // line in a UTF-8 file is reported as such instead of the whole file being read as GB18030
    // (where most byte sequences decode to something).
    let (mut utf8_lines, mut other_lines) = (0usize, 0usize);
    for line in lines.iter().filter(|l| !l.is_ascii()) {
        if std::str::from_utf8(line).is_ok() {
            utf8_lines += 1;
        } else {
            other_lines += 1;
        }
    }
    let is_utf8 = utf8_lines >= other_lines;
    let mut text = String::with_capacity(bytes.len() + bytes.len() / 2);
    let mut errors = Vec::new();
    for (n, line) in lines.iter().enumerate() {
        if is_utf8 {
            match std::str::from_utf8(line) {
                Ok(decoded) => text.push_str(decoded),
                Err(e) => errors.push(format!(
                    "line {}: not UTF-8 text (byte {} of the line), as the rest of the file is",
                    n + 1,
                    e.valid_up_to() + 1
                )),
            }
        } else {
            match encoding_rs::GB18030.decode_without_bom_handling_and_without_replacement(line) {
                Some(decoded) => text.push_str(&decoded),
                None => errors.push(format!("line {}: neither UTF-8 nor GB18030 text", n + 1)),
            }
        }
    }
    if errors.is_empty() { Ok(text) } else { Err(errors) }
}

/// Reads a population file. `Err` holds every structural problem, with line numbers; the
/// warnings about unusable values go to `warnings`.
pub fn read_population_file(
    path: &Path,
    id_column: &str,
    map: &ColumnMap,
) -> Result<PopulationFile, Vec<String>> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| vec![format!("{name}: cannot read: {e}")])?;
    let text = decode(&bytes).map_err(|errors| {
        errors
            .into_iter()
            .map(|e| format!("{name}: {e}"))
            .collect::<Vec<_>>()
    })?;
    drop(bytes);
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(text.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| vec![format!("{name}: line 1: cannot read the header: {e}")])?
        .iter()
        .map(|h| h.trim().to_owned())
        .collect();
    if header.iter().all(String::is_empty) {
        return Err(vec![format!("{name}: the file is empty, expected a header line")]);
    }
    let map = map.for_header(&header);
    let column_of = |column: &str, what: &str| -> Result<usize, String> {
        header.iter().position(|h| h == column).ok_or_else(|| {
            format!(
                "{name}: line 1: column '{column}' ({what}) is not in the header, which has: {}",
                header.join(", ")
            )
        })
    };
    let mut errors = Vec::new();
    let id_index = column_of(id_column, "the id column")
        .map_err(|e| errors.push(e))
        .ok();
    let field_indexes: Vec<(Field, usize)> = map
        .fields
        .iter()
        .filter_map(|(f, c)| {
            column_of(c, f.name())
                .map(|i| (*f, i))
                .map_err(|e| errors.push(e))
                .ok()
        })
        .collect();
    let identifier_indexes: Vec<(&str, usize)> = map
        .identifiers
        .iter()
        .filter_map(|(n, c)| {
            column_of(c, &format!("identifier:{n}"))
                .map(|i| (n.as_str(), i))
                .map_err(|e| errors.push(e))
                .ok()
        })
        .collect();
    let extra_indexes: Vec<usize> = map
        .extras
        .iter()
        .filter_map(|(n, c)| {
            column_of(c, &format!("extra:{n}"))
                .map_err(|e| errors.push(e))
                .ok()
        })
        .collect();
    if field_indexes.is_empty() && identifier_indexes.is_empty() && errors.is_empty() {
        errors.push(format!(
            "{name}: no column is mapped to a field: use --map FIELD=COLUMN, or name columns like the fields"
        ));
    }
    let Some(id_index) = id_index.filter(|_| errors.is_empty()) else {
        return Err(errors);
    };
    let mut file = PopulationFile {
        ids: Vec::new(),
        records: Vec::new(),
        extras: Vec::new(),
        lines: Vec::new(),
    };
    let mut first_line_of: HashMap<String, u64> = HashMap::new();
    let mut row = csv::StringRecord::new();
    loop {
        match reader.read_record(&mut row) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                errors.push(format!("{name}: line {line}: {e}"));
                continue;
            }
        }
        let line = row.position().map_or(0, |p| p.line());
        if row.len() == 1 && row.get(0).is_some_and(|v| v.trim().is_empty()) {
            continue;
        }
        if row.len() != header.len() {
            errors.push(format!(
                "{name}: line {line}: has {} fields, the header has {}",
                row.len(),
                header.len()
            ));
            continue;
        }
        let id = row.get(id_index).unwrap_or("").trim().to_owned();
        if id.is_empty() {
            errors.push(format!(
                "{name}: line {line}: the id column '{id_column}' is empty"
            ));
            continue;
        }
        if let Some(first) = first_line_of.get(&id) {
            errors.push(format!(
                "{name}: line {line}: the id repeats the one on line {first}"
            ));
            continue;
        }
        first_line_of.insert(id.clone(), line);
        let mut fields = PersonFields::default();
        for (field, index) in &field_indexes {
            fields.set(*field, row.get(*index).unwrap_or(""));
        }
        for (name, index) in &identifier_indexes {
            fields.set_identifier(name, row.get(*index).unwrap_or(""));
        }
        file.ids.push(id);
        file.records.push(fields);
        file.extras.push(
            extra_indexes
                .iter()
                .map(|i| row.get(*i).unwrap_or("").to_owned())
                .collect(),
        );
        file.lines.push(line);
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_damaged_line_in_a_utf8_file_is_named_not_read_as_another_encoding() {
        let mut bytes = "id,full_name\n1,王芳\n2,李强\n".as_bytes().to_vec();
        bytes.extend_from_slice(b"3,\xE7\x8E\n");
        let errors = decode(&bytes).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert!(errors[0].starts_with("line 4: not UTF-8"), "{errors:?}");
    }

    #[test]
    fn gb18030_and_a_utf8_byte_order_mark_are_read() {
        let (gb, _, _) = encoding_rs::GB18030.encode("id,full_name\n1,王芳\n2,欧阳明\n");
        assert_eq!(decode(&gb).unwrap(), "id,full_name\n1,王芳\n2,欧阳明\n");
        assert_eq!(decode("\u{FEFF}id\n1\n".as_bytes()).unwrap(), "id\n1\n");
    }

    #[test]
    fn mappings_name_what_is_wrong_with_them() {
        assert!(
            ColumnMap::parse(&["full_name".into()])
                .unwrap_err()
                .contains("expected FIELD=COLUMN")
        );
        let twice = ColumnMap::parse(&["phone=a".into(), "phone=b".into()]).unwrap_err();
        assert!(twice.contains("phone is mapped twice"), "{twice}");
        let map = ColumnMap::parse(&["full_name=姓名".into(), "extra:ward=病区".into()]).unwrap();
        assert_eq!(map.fields, vec![(Field::FullName, "姓名".to_owned())]);
        let unnamed = ColumnMap::parse(&["identifier:=id_no".into()]).unwrap_err();
        assert!(unnamed.contains("needs a name"), "{unnamed}");
        let twice = ColumnMap::parse(&["identifier:mrn=a".into(), "identifier:mrn=b".into()]).unwrap_err();
        assert!(twice.contains("identifier:mrn is mapped twice"), "{twice}");
        let many: Vec<String> = (0..5).map(|i| format!("identifier:id{i}=c{i}")).collect();
        assert!(ColumnMap::parse(&many).unwrap_err().contains("at most 4"));
        let ids = ColumnMap::parse(&["identifier:passport=护照号".into()]).unwrap();
        assert_eq!(ids.schema().unwrap().identifiers(), &["passport".into()]);
        assert_eq!(map.extras, vec![("ward".to_owned(), "病区".to_owned())]);
    }
}
