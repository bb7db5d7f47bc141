//! `hie bench match`: linkage quality and speed on generated population files whose truth is
//! known, Chinese and Latin-script, each with an identity number in most records and with none:
//! precision, recall and F1 over pairs of records at probability 0.5 and at the best threshold,
//! the blocking rules chosen from the data and the share of true pairs they let through.

use std::collections::HashMap;
use std::time::Instant;

use clap::Args;
use hie_population::domain::linkage::comparison::Schema;
use hie_population::domain::linkage::prepare_all;
use hie_population::domain::linkage::run::{Quiet, RunOptions, run};
use serde::Serialize;

use crate::population_file::{GeneratedRecord, GeneratorOptions, Script, generate};

#[derive(Debug, Args)]
pub struct MatchArgs {
    /// Print compact JSON (the default is indented).
    #[arg(long)]
    pub json: bool,
    /// Records per generated file.
    #[arg(long, default_value_t = 100_000)]
    pub records: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Only this script's files (default: both).
    #[arg(long, value_enum)]
    pub script: Option<Script>,
}

/// Precision, recall and F1 at one threshold.
#[derive(Debug, Serialize)]
pub struct Quality {
    pub threshold: f64,
    pub predicted_pairs: u64,
    pub true_positives: u64,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

#[derive(Debug, Serialize)]
pub struct MatchFigures {
    pub script: Script,
    pub scenario: String,
    pub id_share: f64,
    pub records: usize,
    pub persons: usize,
    pub true_pairs: u64,
    pub at_half: Quality,
    pub at_best_threshold: Quality,
    /// F1 at the best threshold minus F1 at 0.5: how far the probabilities are from calibrated.
    pub calibration_gap: f64,
    pub f1_target: f64,
    pub blocking_rules: Vec<String>,
    /// The chooser's own estimate of the rules' recall (of what the candidate rules find).
    pub blocking_estimated_recall: Option<f64>,
    /// The share of true pairs among the compared pairs: the recall blocking allows.
    pub blocking_recall: f64,
    pub candidate_pairs: usize,
    /// Preparing, choosing the rules, blocking, comparing, training and scoring; not generating.
    pub seconds: f64,
    pub records_per_second: f64,
    /// The process's peak resident memory during this scenario (reset before it).
    pub peak_memory_mib: Option<f64>,
}

/// The process's peak resident memory so far, from Linux's /proc.
pub fn peak_memory_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Resets the peak resident memory to the current one (Linux: writing 5 to clear_refs).
fn reset_peak_memory() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn quality(threshold: f64, predicted: u64, true_positives: u64, true_pairs: u64) -> Quality {
    let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let (precision, recall) = (
        ratio(true_positives, predicted),
        ratio(true_positives, true_pairs),
    );
    let f1 = if precision + recall == 0.0 {
        0.0
    } else {
        2.0 * precision * recall / (precision + recall)
    };
    Quality {
        threshold,
        predicted_pairs: predicted,
        true_positives,
        precision,
        recall,
        f1,
    }
}

fn measure(script: Script, id_share: f64, args: &MatchArgs) -> Result<MatchFigures, String> {
    let with_id = id_share > 0.0;
    let scenario = if with_id {
        format!("identity number in {:.0}% of records", id_share * 100.0)
    } else {
        "no identity number".to_owned()
    };
    eprintln!(
        "hie bench: generating {} {script:?} records ({scenario})",
        args.records
    );
    let records: Vec<GeneratedRecord> = generate(&GeneratorOptions {
        script,
        records: args.records,
        id_share,
        seed: args.seed,
    });
    let fields: Vec<_> = records.iter().map(|r| r.fields.clone()).collect();
    let schema = match script {
        Script::Latin if with_id => Schema::new(&[crate::population_file::latin::ID_NUMBER])?,
        _ => Schema::default(),
    };
    reset_peak_memory();
    let started = Instant::now();
    let (profiles, _) = prepare_all(&fields);
    let options = RunOptions {
        schema,
        // Every compared pair is kept with its probability, to find the best threshold.
        threshold: 0.0,
        ..RunOptions::default()
    };
    let result = run(&profiles, &options, &Quiet)?;
    let seconds = started.elapsed().as_secs_f64();
    let peak_memory_mib = peak_memory_mib();

    let mut per_person: HashMap<u32, u64> = HashMap::new();
    for record in &records {
        *per_person.entry(record.person).or_default() += 1;
    }
    let true_pairs: u64 = per_person.values().map(|k| k * (k - 1) / 2).sum();
    let mut scored: Vec<(f64, bool)> = result
        .pairs
        .iter()
        .map(|p| {
            let same = records[p.first as usize].person == records[p.second as usize].person;
            (p.probability, same)
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    let found = scored.iter().filter(|(_, same)| *same).count() as u64;
    let (mut predicted, mut hits) = (0u64, 0u64);
    let mut at_half = quality(0.5, 0, 0, true_pairs);
    let mut best = quality(1.0, 0, 0, true_pairs);
    for (i, (probability, same)) in scored.iter().enumerate() {
        predicted += 1;
        hits += u64::from(*same);
        // A threshold falls between distinct probabilities only.
        let last_of_its_value = scored.get(i + 1).is_none_or(|next| next.0 < *probability);
        if !last_of_its_value {
            continue;
        }
        let here = quality(*probability, predicted, hits, true_pairs);
        if *probability >= 0.5 {
            at_half = quality(0.5, predicted, hits, true_pairs);
        }
        if here.f1 > best.f1 {
            best = here;
        }
    }
    Ok(MatchFigures {
        script,
        scenario,
        id_share,
        records: records.len(),
        persons: per_person.len(),
        true_pairs,
        calibration_gap: best.f1 - at_half.f1,
        at_half,
        at_best_threshold: best,
        f1_target: if with_id { 0.99 } else { 0.98 },
        blocking_rules: result.rules.iter().map(ToString::to_string).collect(),
        blocking_estimated_recall: result.choice.as_ref().map(|c| c.estimated_recall),
        blocking_recall: if true_pairs == 0 {
            0.0
        } else {
            found as f64 / true_pairs as f64
        },
        candidate_pairs: result.candidate_pairs,
        seconds,
        records_per_second: records.len() as f64 / seconds,
        peak_memory_mib,
    })
}

pub fn run_match(args: MatchArgs) -> Result<(), String> {
    if args.records < 2 {
        return Err(format!("--records {} must be at least 2", args.records));
    }
    let scripts = match args.script {
        Some(script) => vec![script],
        None => vec![Script::Chinese, Script::Latin],
    };
    let mut figures = Vec::new();
    for script in scripts {
        figures.push(measure(script, 0.8, &args)?);
        figures.push(measure(script, 0.0, &args)?);
    }
    let text = if args.json {
        serde_json::to_string(&figures)
    } else {
        serde_json::to_string_pretty(&figures)
    }
    .map_err(|e| e.to_string())?;
    println!("{text}");
    Ok(())
}
