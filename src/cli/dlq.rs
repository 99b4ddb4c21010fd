//! `apex-ingest dlq`: dead letters listed, shown and replayed. Replay is a use
//! of the orchestrator by a command, not a part of the saga it calls.

use anyhow::Context;
use clap::Subcommand;
use tokio_util::sync::CancellationToken;

use crate::app;
use crate::batch::{Batch, CloseReason};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::model::RawEvent;
use crate::orchestrate::Orchestrator;
use crate::pipeline::parse::parse;
use crate::store::{DeadLetterFilter, DeadLetterTable};

#[derive(Subcommand)]
pub enum DlqAction {
    /// Lists dead letters, newest first.
    List {
        /// Only this reason (not_utf8, invalid_json, invalid_samsara, edi_syntax, edi_envelope, edi_transaction).
        #[arg(long)]
        reason: Option<String>,
        /// Include dead letters already replayed (and resolved repair letters).
        #[arg(long)]
        all: bool,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Shows one dead letter in full, with its raw bytes.
    Show { id: String },
    /// Re-submits dead letters through the normal path (e.g. after a parser fix);
    /// those that now parse are written and marked replayed, the rest stay.
    Replay {
        #[arg(long)]
        reason: Option<String>,
        #[arg(long, default_value_t = 10_000)]
        limit: usize,
    },
}

pub async fn dlq(config: Option<&std::path::Path>, action: DlqAction) -> anyhow::Result<()> {
    let config = Config::load(config)?;
    let stores = app::open_stores(&config).await?;
    match action {
        DlqAction::List { reason, all, limit } => {
            let letters = stores
                .relational
                .dead_letters(&DeadLetterFilter { reason, include_replayed: all, limit })
                .await?;
            println!("{:<64}  {:<16}  {:<40}  created", "id", "reason", "origin");
            for d in &letters {
                let o = &d.letter.origin;
                let replayed = d.replayed_at.map(|t| format!(" (replayed {t})")).unwrap_or_default();
                println!(
                    "{:<64}  {:<16}  {:<40}  {}{replayed}",
                    d.letter.id,
                    d.letter.reason,
                    format!("{}/{}@{}", o.topic, o.partition, o.offset),
                    d.created_at
                );
            }
            println!("{} dead letters", letters.len());
        }
        DlqAction::Show { id } => {
            let d =
                stores.relational.dead_letter(&id).await?.with_context(|| format!("no dead letter {id}"))?;
            let l = &d.letter;
            println!("id:       {}", l.id);
            println!("reason:   {}", l.reason);
            println!("detail:   {}", l.detail);
            println!("format:   {}", l.format.as_str());
            println!(
                "origin:   {} partition {} offset {}",
                l.origin.topic, l.origin.partition, l.origin.offset
            );
            println!("key:      {}", l.key.as_deref().unwrap_or("-"));
            println!("created:  {}", d.created_at);
            println!("replayed: {}", d.replayed_at.map(|t| t.to_string()).unwrap_or_else(|| "no".into()));
            println!("raw ({} bytes):\n{}", l.raw.len(), String::from_utf8_lossy(&l.raw));
        }
        DlqAction::Replay { reason, limit } => {
            // Nothing to drain: a replay interrupted by a signal just ends.
            let orchestrator = app::direct_over(&config, &stores, Metrics::new(), &CancellationToken::new())?;
            let report = replay(
                stores.relational.as_ref(),
                orchestrator.as_ref(),
                &DeadLetterFilter { reason, include_replayed: false, limit },
                config.batch.max_events,
            )
            .await?;
            println!("replayed {}; still failing {}", report.replayed, report.still_failing);
        }
    }
    Ok(())
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReplayReport {
    pub replayed: usize,
    /// Still poison: left in the table (not marked replayed).
    pub still_failing: usize,
}

/// Re-submits dead letters that have not been replayed through the normal path
/// (e.g. after a parser fix), in batches of `batch_size`. Those that parse now
/// are written and marked replayed; those that still fail stay as they are.
pub async fn replay(
    relational: &dyn DeadLetterTable,
    orchestrator: &dyn Orchestrator,
    filter: &DeadLetterFilter,
    batch_size: usize,
) -> anyhow::Result<ReplayReport> {
    let mut letters =
        relational.dead_letters(&DeadLetterFilter { include_replayed: false, ..filter.clone() }).await?;
    letters.retain(|d| !d.letter.is_repair());
    let mut report = ReplayReport::default();
    for chunk in letters.chunks(batch_size.max(1)) {
        let events: Vec<RawEvent> = chunk.iter().map(|d| d.letter.raw_event()).collect();
        let now_valid: Vec<String> = chunk
            .iter()
            .zip(&events)
            .filter(|(_, e)| parse(e).is_ok())
            .map(|(d, _)| d.letter.id.clone())
            .collect();
        orchestrator.run_batch(&Batch::new(events, CloseReason::Replay)).await?;
        relational.mark_replayed(&now_valid).await?;
        report.replayed += now_valid.len();
        report.still_failing += chunk.len() - now_valid.len();
    }
    Ok(report)
}
