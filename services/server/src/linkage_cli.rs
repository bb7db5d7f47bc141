//! `hie link` and `hie dedupe`: batch linkage of population files for data migration. Generic
//! CSV in (UTF-8 or GB18030, any columns, mapped to fields with `--map`), one row per matched
//! pair out. Every problem with the input is reported with its line number: structural ones
//! (ragged rows, a missing column, undecodable text, a repeated or empty id) stop the run before
//! anything is written; a value that cannot be used (a date that is not a date) is reported and
//! the record matched on its other fields.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use clap::Args;
use hie_population::domain::linkage::blocking::parse_rules;
use hie_population::domain::linkage::choice::BlockingChoice;
use hie_population::domain::linkage::comparison::Schema;
use hie_population::domain::linkage::model::LinkageModel;
use hie_population::domain::linkage::run::{LinkageRun, Progress, RunOptions, Stage, run};
use hie_population::domain::linkage::{Profile, prepare_all};

use crate::population_file::csv_field;
use crate::population_file::reading::{ColumnMap, PopulationFile, read_population_file};

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
    /// identifier:NAME=COLUMN compares COLUMN as an identifier of system NAME, up to 4 of them;
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
    /// A blocking rule such as birth_date+surname_key; repeat for a union. Default: the saved
    /// model's rules with --model, otherwise rules chosen from the data within --max-pairs.
    #[arg(long = "block", value_name = "RULE")]
    pub block: Vec<String>,
    /// The comparison budget when blocking rules are chosen from the data: at most this many
    /// pairs compared. Default: 50 per record.
    #[arg(long, value_name = "PAIRS")]
    pub max_pairs: Option<u64>,
    /// Print every candidate blocking rule's pairs and estimated recall, and the rules chosen.
    #[arg(long)]
    pub explain_blocking: bool,
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

fn options_to_run(
    options: &LinkageOptions,
    map: &ColumnMap,
    left_len: Option<usize>,
) -> Result<RunOptions, String> {
    if !(0.0..=1.0).contains(&options.threshold) {
        return Err(format!(
            "--threshold {} must lie between 0 and 1",
            options.threshold
        ));
    }
    if options.max_pairs == Some(0) {
        return Err("--max-pairs 0: the comparison budget must be at least 1 pair".to_owned());
    }
    let rules = parse_rules(&options.block).map_err(|e| format!("--block: {e}"))?;
    let schema = map.schema()?;
    let model = match &options.model {
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("--model {}: cannot read: {e}", path.display()))?;
            let model =
                LinkageModel::from_json(&text).map_err(|e| format!("--model {}: {e}", path.display()))?;
            if model.schema != schema {
                let names = |s: &Schema| s.identifiers().join(", ");
                return Err(format!(
                    "--model {}: compares the identifiers [{}], the --map gives [{}]",
                    path.display(),
                    names(&model.schema),
                    names(&schema)
                ));
            }
            Some(model)
        }
    };
    Ok(RunOptions {
        schema,
        rules,
        max_pairs: options.max_pairs.unwrap_or(0),
        model,
        threshold: options.threshold,
        left_len,
    })
}

/// Prints how the blocking rules were chosen: every candidate's pairs and estimated recall.
pub fn print_blocking_choice(choice: &BlockingChoice) {
    eprintln!(
        "blocking: {} candidate rules, budget {} pairs, {} sampled pairs compared ({:.0} expected matches)",
        choice.estimates.len(),
        choice.budget,
        choice.sampled_pairs,
        choice.expected_matches_in_sample
    );
    eprintln!("{:<40} {:>14} {:>10} {:>10}", "rule", "pairs", "recall", "chosen");
    for estimate in &choice.estimates {
        let recall = estimate
            .estimated_recall
            .map_or("over budget".to_owned(), |r| format!("{r:.4}"));
        let chosen = estimate
            .added_recall
            .map_or(String::new(), |r| format!("+{r:.4}"));
        eprintln!(
            "{:<40} {:>14} {:>10} {:>10}",
            estimate.rule.to_string(),
            estimate.pairs,
            recall,
            chosen
        );
    }
    let rules: Vec<String> = choice.rules.iter().map(ToString::to_string).collect();
    eprintln!(
        "chosen: {} (about {} pairs, estimated recall {:.4} of what the candidates find)",
        rules.join(" | "),
        choice.estimated_pairs,
        choice.estimated_recall
    );
}

fn write_pairs(
    path: &Path,
    header: (&str, &str),
    run: &LinkageRun,
    options: &LinkageOptions,
    map: &ColumnMap,
    row: &dyn Fn(u32) -> (String, Vec<String>),
    name_of: &dyn Fn(u32) -> Option<hie_population::domain::linkage::NameSound>,
) -> Result<(), String> {
    let failed = |e: std::io::Error| format!("{}: cannot write: {e}", path.display());
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).map_err(failed)?);
    let mut columns = vec![header.0.to_owned(), header.1.to_owned(), "probability".to_owned()];
    for name in map.extra_names() {
        columns.push(format!("{}_{name}", header.0));
        columns.push(format!("{}_{name}", header.1));
    }
    if options.explain {
        columns.push("match_weight".to_owned());
        columns.extend(
            run.model
                .schema
                .fields()
                .iter()
                .map(|(name, _)| format!("weight_{}", name.replace(':', "_"))),
        );
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
            let score = run
                .model
                .explain(pair.pattern, run.prior, name_of(pair.first).as_ref());
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
    if options.explain_blocking {
        match &run.choice {
            Some(choice) => print_blocking_choice(choice),
            None => {
                let rules: Vec<String> = run.rules.iter().map(ToString::to_string).collect();
                eprintln!(
                    "blocking: the rules given (--block or the model's): {}",
                    rules.join(" | ")
                );
            }
        }
    }
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
    let run_options = options_to_run(&args.options, &map, None)?;
    let (file, profiles, warnings) = load(&args.input, &args.options, &map, &progress)?;
    let run = run(&profiles, &run_options, &progress)?;
    write_pairs(
        &args.out,
        ("id_1", "id_2"),
        &run,
        &args.options,
        &map,
        &|i| (file.ids[i as usize].clone(), file.extras[i as usize].clone()),
        &|i| profiles[i as usize].name.clone(),
    )?;
    finish(&run, profiles.len(), &args.options, &warnings)
}

pub fn link(args: &LinkArgs) -> Result<LinkageSummary, String> {
    let progress = ProgressBar::new();
    let map = ColumnMap::parse(&args.options.map)?;
    let mut run_options = options_to_run(&args.options, &map, None)?;
    let (left, mut profiles, mut warnings) = load(&args.left, &args.options, &map, &progress)?;
    let (right, right_profiles, right_warnings) = load(&args.right, &args.options, &map, &progress)?;
    let left_len = profiles.len();
    profiles.extend(right_profiles);
    warnings.extend(right_warnings);
    run_options.left_len = Some(left_len);
    let run = run(&profiles, &run_options, &progress)?;
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
        &|i| profiles[i as usize].name.clone(),
    )?;
    finish(&run, profiles.len(), &args.options, &warnings)
}
