//! `hie bench match`: linkage quality and speed on generated population files whose truth is
//! known: precision, recall and F1 over pairs of records, with and without identity numbers.

use std::collections::HashMap;
use std::time::Instant;

use clap::Args;
use hie_population::domain::linkage::blocking::default_rules;
use hie_population::domain::linkage::prepare_all;
use hie_population::domain::linkage::run::{Quiet, RunOptions, run};
use serde::Serialize;

use crate::population_file::{GeneratedRecord, GeneratorOptions, generate};

#[derive(Debug, Args)]
pub struct MatchArgs {
    /// Print compact JSON (the default is indented).
    #[arg(long)]
    pub json: bool,
    /// Records per generated file.
    #[arg(long, default_value_t = 100_000)]
    pub records: usize,
    /// The least probability counted as a link.
    #[arg(long, default_value_t = 0.9)]
    pub threshold: f64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

#[derive(Debug, Serialize)]
pub struct MatchFigures {
    pub scenario: String,
    pub resident_id_share: f64,
    pub records: usize,
    pub persons: usize,
    pub true_pairs: u64,
    pub predicted_pairs: u64,
    pub true_positives: u64,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub f1_target: f64,
    pub candidate_pairs: usize,
    /// Preparing, blocking, comparing, training and scoring; not generating.
    pub seconds: f64,
    pub records_per_second: f64,
    pub peak_memory_mib: Option<f64>,
}

/// The process's peak resident memory so far, from Linux's /proc.
pub fn peak_memory_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn measure(scenario: &str, resident_id_share: f64, f1_target: f64, args: &MatchArgs) -> MatchFigures {
    eprintln!("hie bench: generating {} records ({scenario})", args.records);
    let records: Vec<GeneratedRecord> = generate(&GeneratorOptions {
        records: args.records,
        resident_id_share,
        seed: args.seed,
    });
    let fields: Vec<_> = records.iter().map(|r| r.fields.clone()).collect();
    let started = Instant::now();
    let (profiles, _) = prepare_all(&fields);
    let options = RunOptions {
        rules: default_rules(),
        model: None,
        threshold: args.threshold,
        left_len: None,
    };
    let result = run(&profiles, &options, &Quiet);
    let seconds = started.elapsed().as_secs_f64();

    let mut per_person: HashMap<u32, u64> = HashMap::new();
    for record in &records {
        *per_person.entry(record.person).or_default() += 1;
    }
    let true_pairs: u64 = per_person.values().map(|k| k * (k - 1) / 2).sum();
    let true_positives = result
        .pairs
        .iter()
        .filter(|p| records[p.first as usize].person == records[p.second as usize].person)
        .count() as u64;
    let predicted_pairs = result.pairs.len() as u64;
    let precision = if predicted_pairs == 0 {
        0.0
    } else {
        true_positives as f64 / predicted_pairs as f64
    };
    let recall = if true_pairs == 0 {
        0.0
    } else {
        true_positives as f64 / true_pairs as f64
    };
    let f1 = if precision + recall == 0.0 {
        0.0
    } else {
        2.0 * precision * recall / (precision + recall)
    };
    MatchFigures {
        scenario: scenario.to_owned(),
        resident_id_share,
        records: records.len(),
        persons: per_person.len(),
        true_pairs,
        predicted_pairs,
        true_positives,
        precision,
        recall,
        f1,
        f1_target,
        candidate_pairs: result.candidate_pairs,
        seconds,
        records_per_second: records.len() as f64 / seconds,
        peak_memory_mib: peak_memory_mib(),
    }
}

pub fn run_match(args: MatchArgs) -> Result<(), String> {
    if !(0.0..=1.0).contains(&args.threshold) {
        return Err(format!("--threshold {} must lie between 0 and 1", args.threshold));
    }
    let figures = vec![
        measure("identity number in 80% of records", 0.8, 0.99, &args),
        measure("no identity number", 0.0, 0.97, &args),
    ];
    let text = if args.json {
        serde_json::to_string(&figures)
    } else {
        serde_json::to_string_pretty(&figures)
    }
    .map_err(|e| e.to_string())?;
    println!("{text}");
    Ok(())
}
