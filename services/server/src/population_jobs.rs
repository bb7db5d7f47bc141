//! `hie population train` and `hie population rematch`: the operator's jobs on the registry.

use clap::{Args, Subcommand};
use hie_core::context::RequestContext;
use hie_population::domain::SourceRecordId;
use serde::Serialize;

use crate::cli::DatabaseArgs;
use crate::linkage_cli::ProgressBar;
use crate::{Exchange, Settings};

#[derive(Debug, Subcommand)]
pub enum PopulationCommand {
    /// Train the matching model on every record in the registry (m and u by
    /// expectation–maximisation) and store it as the next version; prints JSON. Servers use the
    /// newest version within 30 seconds.
    Train(DatabaseArgs),
    /// Re-run matching over every source record, after a model or threshold change: records
    /// move where the matcher now puts them (never those a person linked by hand) and possible
    /// matches are queued for review. Resumes where an interrupted run stopped; prints JSON.
    Rematch(RematchArgs),
}

#[derive(Debug, Args)]
pub struct RematchArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Report what would change, changing nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Start from the first record even if an earlier run was interrupted.
    #[arg(long)]
    pub restart: bool,
    /// Records per transaction.
    #[arg(long, default_value_t = 500)]
    pub batch: usize,
}

/// The checkpoint of the re-matching job, named after its audit action.
const REMATCH_JOB: &str = hie_core::vocabulary::AuditAction::Rematch.code();

#[derive(Debug, Serialize)]
struct TrainReport {
    model_version: i64,
    trained_on_records: u64,
    /// The identifier systems compared besides the resident identity number.
    identifier_systems: Vec<String>,
    /// The blocking rules chosen from the registry's records, in the order chosen.
    blocking_rules: Vec<String>,
    blocking_estimated_recall: Option<f64>,
    candidate_pairs: usize,
    /// Records given keys under the new rules, so that servers taking the model up find them.
    records_rekeyed: usize,
    match_share_of_candidates: f64,
    pair_prior: f64,
}

#[derive(Debug, Default, Serialize)]
struct RematchSummary {
    dry_run: bool,
    resumed_after: Option<String>,
    processed: usize,
    moved: usize,
    pending_reviews: usize,
}

pub async fn run(settings: &Settings, command: PopulationCommand) -> Result<(), String> {
    let exchange = Exchange::open(settings).await.map_err(|e| e.to_string())?;
    let result = match command {
        PopulationCommand::Train(_) => train(&exchange).await,
        PopulationCommand::Rematch(args) => rematch(&exchange, &args).await,
    };
    exchange.access.audit().flush().await.map_err(|e| e.to_string())?;
    exchange.database.close().await;
    result
}

async fn train(exchange: &Exchange) -> Result<(), String> {
    let progress = ProgressBar::new();
    let (version, trained) = exchange
        .population
        .train_model(
            &crate::cli::operator("training and storing a matching model"),
            &progress,
        )
        .await
        .map_err(|e| e.to_string())?;
    if let Some(choice) = &trained.choice {
        crate::linkage_cli::print_blocking_choice(choice);
    }
    let model = &trained.model;
    let report = TrainReport {
        model_version: version,
        trained_on_records: model.trained_on_records,
        identifier_systems: model.schema.identifiers().iter().map(|n| n.to_string()).collect(),
        blocking_rules: model.blocking_rules.clone(),
        blocking_estimated_recall: trained.choice.as_ref().map(|c| c.estimated_recall),
        candidate_pairs: trained.candidate_pairs,
        records_rekeyed: trained.records_rekeyed,
        match_share_of_candidates: model.model.match_share,
        pair_prior: model.pair_prior,
    };
    println!(
        "{}",
        serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?
    );
    Ok(())
}

async fn rematch(exchange: &Exchange, args: &RematchArgs) -> Result<(), String> {
    if args.batch == 0 || args.batch > 10_000 {
        return Err(format!("--batch {} must lie between 1 and 10000", args.batch));
    }
    let population = &exchange.population;
    let store = population.store();
    let context = RequestContext::bulk_load("hie-rematch", "re-matching after a model or threshold change");
    // A dry run changes nothing, the checkpoint included, and always covers every record.
    let resumed_after = if args.dry_run || args.restart {
        None
    } else {
        store.checkpoint(REMATCH_JOB).await.map_err(|e| e.to_string())?
    };
    let mut after = resumed_after
        .as_deref()
        .map(SourceRecordId::parse)
        .transpose()
        .map_err(|_| "the stored re-matching checkpoint does not parse; run with --restart".to_owned())?;
    let total = store.count_source_records().await.map_err(|e| e.to_string())? as usize;
    let progress = ProgressBar::new();
    let mut summary = RematchSummary {
        dry_run: args.dry_run,
        resumed_after,
        ..RematchSummary::default()
    };
    loop {
        let report = population
            .rematch_batch(&context, after.as_ref(), args.batch, args.dry_run)
            .await
            .map_err(|e| e.to_string())?;
        let Some(last) = report.last else { break };
        summary.processed += report.processed;
        summary.moved += report.moved;
        summary.pending_reviews += report.pending_reviews;
        if !args.dry_run {
            store
                .set_checkpoint(REMATCH_JOB, Some(last.as_str()))
                .await
                .map_err(|e| e.to_string())?;
        }
        progress.stage("rematch", summary.processed.min(total.saturating_sub(1)), total);
        after = Some(last);
    }
    progress.stage("rematch", total, total);
    if !args.dry_run {
        store
            .set_checkpoint(REMATCH_JOB, None)
            .await
            .map_err(|e| e.to_string())?;
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&summary).map_err(|e| e.to_string())?
    );
    Ok(())
}
