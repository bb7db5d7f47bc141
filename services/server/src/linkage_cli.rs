//! `hie link` and `hie dedupe`: batch linkage of population files for data migration. Generic
//! CSV in (UTF-8 or GB18030, any columns, mapped to fields with `--map`), one row per matched
//! pair out. Every problem with the input is reported with its line number: structural ones
//! (ragged rows, a missing column, undecodable text, a repeated or empty id) stop the run before
//! anything is written; a value that cannot be used (a date that is not a date) is reported and
//! the record matched on its other fields.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use clap::Args;
use hie_population::domain::linkage::blocking::{BlockingRule, DEFAULT_RULES};
use hie_population::domain::linkage::comparison::FIELDS;
use hie_population::domain::linkage::model::LinkageModel;
use hie_population::domain::linkage::run::{LinkageRun, Progress, RunOptions, Stage, run};
use hie_population::domain::linkage::{Field, PersonFields, Profile, prepare_all};

use crate::population_file::csv_field;

/// How many problems are printed before the rest are only counted.
const PROBLEMS_SHOWN: usize = 20;

/// What both commands share: how to read the files and how to decide.
#[derive(Debug, Args, Clone)]
pub struct LinkageOptions {
    /// The column holding each record's id.
    #[arg(long, default_value = "id", value_name = "NAME")]
    pub id_column: String,
    /// FIELD=COLUMN: read FIELD from COLUMN (fields: full_name, given_name, surname, birth_date,
    /// sex, resident_id, phone, street_number, address_1, address_2, city, postcode, province;
    /// extra:NAME=COLUMN carries a column into the output). Repeat for each field. Without any,
    /// columns named like fields are read as those fields.
    #[arg(long = "map", value_name = "FIELD=COLUMN")]
    pub map: Vec<String>,
    /// The least match probability written out.
    #[arg(long, default_value_t = 0.9)]
    pub threshold: f64,
    /// Use this saved model instead of training one on the input.
    #[arg(long, value_name = "FILE")]
    pub model: Option<PathBuf>,
    /// Save the model used (trained or given) to this file.
    #[arg(long, value_name = "FILE")]
    pub save_model: Option<PathBuf>,
    /// A blocking rule such as birth_date+surname_key; repeat for a union. Default: the built-in
    /// rules (resident_id; phone; name_key+birth_year; birth_date+surname_key;
    /// birth_date+given_key; name_key+city).
    #[arg(long = "block", value_name = "RULE")]
    pub block: Vec<String>,
    /// Also write each pair's match weight and every field's part of it.
    #[arg(long)]
    pub explain: bool,
}

#[derive(Debug, Args)]
pub struct LinkArgs {
    #[arg(long, value_name = "CSV")]
    pub left: PathBuf,
    #[arg(long, value_name = "CSV")]
    pub right: PathBuf,
    #[arg(long, value_name = "CSV")]
    pub out: PathBuf,
    #[command(flatten)]
    pub options: LinkageOptions,
}

#[derive(Debug, Args)]
pub struct DedupeArgs {
    #[arg(long, value_name = "CSV")]
    pub input: PathBuf,
    #[arg(long, value_name = "CSV")]
    pub out: PathBuf,
    #[command(flatten)]
    pub options: LinkageOptions,
}

/// Where each field and extra column is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnMap {
    fields: Vec<(Field, String)>,
    extras: Vec<(String, String)>,
}

impl ColumnMap {
    pub fn parse(mappings: &[String]) -> Result<ColumnMap, String> {
        let mut map = ColumnMap {
            fields: Vec::new(),
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
        Ok(map)
    }

    /// The map to use with `header`: the given one, or the columns named like fields.
    fn for_header(&self, header: &[String]) -> ColumnMap {
        if !self.fields.is_empty() {
            return self.clone();
        }
        let fields = Field::ALL
            .into_iter()
            .filter(|f| header.iter().any(|h| h == f.name()))
            .map(|f| (f, f.name().to_owned()))
            .collect();
        ColumnMap {
            fields,
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
    let extra_indexes: Vec<usize> = map
        .extras
        .iter()
        .filter_map(|(n, c)| {
            column_of(c, &format!("extra:{n}"))
                .map_err(|e| errors.push(e))
                .ok()
        })
        .collect();
    if field_indexes.is_empty() && errors.is_empty() {
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

/// Progress on stderr: a line redrawn in place on a terminal, one line per stage otherwise.
#[derive(Debug)]
pub struct ProgressBar {
    terminal: bool,
    started: Instant,
    last: Mutex<(Instant, Option<&'static str>)>,
}

impl ProgressBar {
    pub fn new() -> ProgressBar {
        let now = Instant::now();
        ProgressBar {
            terminal: std::io::stderr().is_terminal(),
            started: now,
            last: Mutex::new((now - Duration::from_secs(1), None)),
        }
    }

    pub fn stage(&self, name: &'static str, done: usize, total: usize) {
        let Ok(mut last) = self.last.lock() else { return };
        let finished = done >= total;
        let elapsed = self.started.elapsed().as_secs_f64();
        if self.terminal {
            if finished || last.0.elapsed() >= Duration::from_millis(200) {
                let width = 30;
                let filled = (done * width).checked_div(total).unwrap_or(width).min(width);
                eprint!(
                    "\r{name:>10} [{}{}] {done}/{total} {elapsed:.1}s\x1b[K",
                    "#".repeat(filled),
                    " ".repeat(width - filled)
                );
                if finished {
                    eprintln!();
                }
                last.0 = Instant::now();
            }
        } else if finished && last.1 != Some(name) {
            eprintln!("{name:>10}: {total} done at {elapsed:.1}s");
            last.1 = Some(name);
        }
    }
}

impl Default for ProgressBar {
    fn default() -> Self {
        ProgressBar::new()
    }
}

impl Progress for ProgressBar {
    fn report(&self, stage: Stage, done: usize, total: usize) {
        self.stage(stage.name(), done, total);
    }
}

fn print_problems(kind: &str, problems: &[String]) {
    for problem in problems.iter().take(PROBLEMS_SHOWN) {
        eprintln!("hie: {kind}: {problem}");
    }
    if problems.len() > PROBLEMS_SHOWN {
        eprintln!("hie: … and {} more {kind}s", problems.len() - PROBLEMS_SHOWN);
    }
}

/// What a finished command reports.
#[derive(Debug)]
pub struct LinkageSummary {
    pub records: usize,
    pub candidate_pairs: usize,
    pub pairs_written: usize,
    pub warnings: usize,
}

/// A file read, and its records prepared, with the warnings about unusable values.
type Loaded = (PopulationFile, Vec<Profile>, Vec<String>);

fn load(
    path: &Path,
    options: &LinkageOptions,
    map: &ColumnMap,
    progress: &ProgressBar,
) -> Result<Loaded, String> {
    progress.stage("reading", 0, 1);
    let file = read_population_file(path, &options.id_column, map).map_err(|errors| {
        print_problems("error", &errors);
        format!(
            "{} problem(s) in {}; nothing was written",
            errors.len(),
            path.display()
        )
    })?;
    progress.stage("reading", 1, 1);
    let (profiles, problems) = prepare_all(&file.records);
    progress.stage("preparing", profiles.len(), profiles.len());
    let warnings: Vec<String> = problems
        .into_iter()
        .map(|(i, p)| {
            format!(
                "{}: line {}: {}: {}; the record is matched without it",
                path.display(),
                file.lines[i],
                p.field.name(),
                p.reason
            )
        })
        .collect();
    Ok((file, profiles, warnings))
}

fn options_to_run(options: &LinkageOptions, left_len: Option<usize>) -> Result<RunOptions, String> {
    if !(0.0..=1.0).contains(&options.threshold) {
        return Err(format!(
            "--threshold {} must lie between 0 and 1",
            options.threshold
        ));
    }
    let rules = if options.block.is_empty() {
        DEFAULT_RULES
            .iter()
            .map(|r| BlockingRule::parse(r))
            .collect::<Result<Vec<_>, _>>()
    } else {
        options.block.iter().map(|r| BlockingRule::parse(r)).collect()
    }
    .map_err(|e| format!("--block: {e}"))?;
    let model = match &options.model {
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("--model {}: cannot read: {e}", path.display()))?;
            Some(LinkageModel::from_json(&text).map_err(|e| format!("--model {}: {e}", path.display()))?)
        }
    };
    Ok(RunOptions {
        rules,
        model,
        threshold: options.threshold,
        left_len,
    })
}

fn write_pairs(
    path: &Path,
    header: (&str, &str),
    run: &LinkageRun,
    options: &LinkageOptions,
    map: &ColumnMap,
    row: &dyn Fn(u32) -> (String, Vec<String>),
) -> Result<(), String> {
    let failed = |e: std::io::Error| format!("{}: cannot write: {e}", path.display());
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).map_err(failed)?);
    let mut columns = vec![header.0.to_owned(), header.1.to_owned(), "probability".to_owned()];
    for (name, _) in &map.extras {
        columns.push(format!("{}_{name}", header.0));
        columns.push(format!("{}_{name}", header.1));
    }
    if options.explain {
        columns.push("match_weight".to_owned());
        columns.extend(FIELDS.iter().map(|(name, _)| format!("weight_{name}")));
    }
    writeln!(out, "{}", columns.join(",")).map_err(failed)?;
    for pair in &run.pairs {
        let (first_id, first_extras) = row(pair.first);
        let (second_id, second_extras) = row(pair.second);
        let mut line = format!(
            "{},{},{:.6}",
            csv_field(&first_id),
            csv_field(&second_id),
            pair.probability
        );
        for (a, b) in first_extras.iter().zip(&second_extras) {
            line.push(',');
            line.push_str(&csv_field(a));
            line.push(',');
            line.push_str(&csv_field(b));
        }
        if options.explain {
            let score = run.model.explain(pair.pattern, run.prior);
            line.push_str(&format!(",{:.3}", score.weight));
            for weight in &score.field_weights {
                line.push_str(&format!(",{weight:.3}"));
            }
        }
        writeln!(out, "{line}").map_err(failed)?;
    }
    out.flush().map_err(failed)
}

/// Prints the warnings, saves the model when asked, and sums the run up.
fn finish(
    run: &LinkageRun,
    records: usize,
    options: &LinkageOptions,
    warnings: &[String],
) -> Result<LinkageSummary, String> {
    print_problems("warning", warnings);
    if let Some(path) = &options.save_model {
        std::fs::write(path, run.model.to_json())
            .map_err(|e| format!("--save-model {}: {e}", path.display()))?;
    }
    if run.oversized_blocks > 0 {
        eprintln!(
            "hie: note: {} blocks of more than {} records were not compared (a shared placeholder value?)",
            run.oversized_blocks,
            hie_population::domain::linkage::blocking::MAX_BLOCK
        );
    }
    Ok(LinkageSummary {
        records,
        candidate_pairs: run.candidate_pairs,
        pairs_written: run.pairs.len(),
        warnings: warnings.len(),
    })
}

pub fn dedupe(args: &DedupeArgs) -> Result<LinkageSummary, String> {
    let progress = ProgressBar::new();
    let map = ColumnMap::parse(&args.options.map)?;
    let run_options = options_to_run(&args.options, None)?;
    let (file, profiles, warnings) = load(&args.input, &args.options, &map, &progress)?;
    let run = run(&profiles, &run_options, &progress);
    write_pairs(&args.out, ("id_1", "id_2"), &run, &args.options, &map, &|i| {
        (file.ids[i as usize].clone(), file.extras[i as usize].clone())
    })?;
    finish(&run, profiles.len(), &args.options, &warnings)
}

pub fn link(args: &LinkArgs) -> Result<LinkageSummary, String> {
    let progress = ProgressBar::new();
    let map = ColumnMap::parse(&args.options.map)?;
    let mut run_options = options_to_run(&args.options, None)?;
    let (left, mut profiles, mut warnings) = load(&args.left, &args.options, &map, &progress)?;
    let (right, right_profiles, right_warnings) = load(&args.right, &args.options, &map, &progress)?;
    let left_len = profiles.len();
    profiles.extend(right_profiles);
    warnings.extend(right_warnings);
    run_options.left_len = Some(left_len);
    let run = run(&profiles, &run_options, &progress);
    let row = |i: u32| {
        let i = i as usize;
        if i < left_len {
            (left.ids[i].clone(), left.extras[i].clone())
        } else {
            (
                right.ids[i - left_len].clone(),
                right.extras[i - left_len].clone(),
            )
        }
    };
    write_pairs(
        &args.out,
        ("left_id", "right_id"),
        &run,
        &args.options,
        &map,
        &row,
    )?;
    finish(&run, profiles.len(), &args.options, &warnings)
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
        assert_eq!(map.extras, vec![("ward".to_owned(), "病区".to_owned())]);
    }
}
