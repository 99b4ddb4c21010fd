//! `apex-ingest query`: a question answered from the stores, with citations.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::app;
use crate::config::{Config, RelationalKind};
use crate::orchestrate::temporal::connect;
use crate::query::workflow::{ask_via_temporal, query_workflow_id};
use crate::query::{self, Answer, Filters, QueryStores, Question, Retrieval};

fn parse_filters(text: &str) -> Result<Filters, String> {
    serde_json::from_str(text).map_err(|e| format!("--filters: {e}"))
}

#[derive(clap::Args)]
pub struct QueryArgs {
    /// The question in words, e.g. "where was truck 12 at 14:00 yesterday",
    /// "which of carrier ODFL's shipments are late", "harsh braking near
    /// Dallas last week", "everything about PRO 84213377" (docs/query.md has
    /// every form). Times are UTC.
    pub question: String,
    /// TOML configuration naming the stores; without it, the embedded stores.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Directory of the embedded stores (the demo writes ./apex-demo).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Answer as the memory stood at this event time (RFC 3339); "yesterday"
    /// and "last week" are read from it.
    #[arg(long)]
    pub as_of: Option<DateTime<Utc>>,
    /// Only records ingested before this instant (RFC 3339).
    #[arg(long)]
    pub ingested_before: Option<DateTime<Utc>>,
    /// How many hits at most (1 to 1000).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=query::MAX_K as u64))]
    pub k: u64,
    /// Structured filters narrowing every read, as JSON: any of "vehicle",
    /// "driver", "facility" (a geofence, or an EDI party by name),
    /// "shipment", "scac", "kinds" (a list), "from" and "to" (RFC 3339),
    /// "near" ({"latitude", "longitude", "radius_km"}); e.g.
    /// '{"vehicle": "Truck 3", "kinds": ["SafetyEvent"]}'.
    #[arg(long, value_parser = parse_filters)]
    pub filters: Option<Filters>,
    /// Which retrievers answer a question by meaning: both fused, or one
    /// alone (the full-text index's words, or the vectors' nearest).
    #[arg(long, value_enum, default_value_t = Retrieval::Hybrid)]
    pub retrieval: Retrieval,
    /// Print the answer as JSON.
    #[arg(long)]
    pub json: bool,
    /// Print the plan first: the intent, its entities and window, and each
    /// statement sent with its row count and time.
    #[arg(long)]
    pub explain: bool,
    /// Where the question is answered: in this process (the fast default),
    /// or on Temporal ([temporal] in the config; an `apex-ingest worker`
    /// reads the stores and caches the answer): a QueryWorkflow, or for a
    /// dwell analysis a ComplexQueryWorkflow, whose progress is logged and
    /// which Ctrl-C cancels.
    #[arg(long, value_enum, default_value_t = Via::Process)]
    pub via: Via,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Via {
    Process,
    Temporal,
}

pub async fn query(args: QueryArgs) -> anyhow::Result<()> {
    let mut config = Config::load(args.config.as_deref())?;
    if let Some(dir) = args.data_dir {
        config.stores.data_dir = dir;
    }
    let question = Question {
        text: args.question,
        as_of: args.as_of,
        ingested_before: args.ingested_before,
        k: args.k as usize,
        filters: args.filters.unwrap_or_default(),
        retrieval: args.retrieval,
    };
    let answer = match args.via {
        Via::Process => ask_here(&config, &question).await?,
        Via::Temporal => {
            let client = connect(&config.temporal).await?;
            // Ctrl-C / SIGTERM cancels the workflow, and so its store work.
            let stop = CancellationToken::new();
            app::cancel_on_signal(stop.clone());
            ask_via_temporal(&client, &config.temporal.task_queue, &query_workflow_id(), question, stop)
                .await?
        }
    };
    if args.explain {
        print!("{}", answer.explain());
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else {
        print!("{}", answer.table());
    }
    Ok(())
}

/// The question answered from the stores by this process.
async fn ask_here(config: &Config, question: &Question) -> anyhow::Result<Answer> {
    if config.stores.relational == RelationalKind::Embedded {
        let file = config.stores.data_dir.join("records.db");
        anyhow::ensure!(
            file.exists(),
            "no embedded stores in {}: run `apex-ingest demo --data-dir {0}` first, or name real stores with --config",
            config.stores.data_dir.display()
        );
    }
    let stores = app::open_stores(config).await?;
    let query_stores = QueryStores::over(&stores, app::build_embedder(config)?);
    Ok(query::ask(&query_stores, question).await?)
}
