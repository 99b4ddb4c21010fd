//! What a Temporal round trip costs a question: the same questions asked in
//! this process (`query::ask`) and as `QueryWorkflow`s (a dwell analysis as
//! a `ComplexQueryWorkflow`; `query --via temporal`: a worker in this
//! process, the local dev server), alternately, side by side in one run.
//!
//!     cargo run --release --example query_round_trip -- [--rounds 30]
//!
//! The stores are embedded (SQLite records and graph, the embedded vector
//! index), filled with two days of eight generated trucks. The workflow's
//! worker keeps no answers, so every workflow asks the stores; the
//! last row asks one question again with the cache on. Prints p50/p95 per
//! intent and path. Needs `scripts/services up temporal`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use apex_ingest::app;
use apex_ingest::config::{Config, SourceKind};
use apex_ingest::metrics::Metrics;
use apex_ingest::orchestrate::temporal::connect;
use apex_ingest::orchestrate::temporal::worker::while_working;
use apex_ingest::query::cache::{AnswerCache, MemoryAnswers};
use apex_ingest::query::workflow::{ask_via_temporal, query_workflow_id, registrations};
use apex_ingest::query::{self, QueryStores, Question};
use clap::Parser;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

const UNTIL: &str = "2026-11-20T06:00:00Z";

#[derive(Parser)]
struct Args {
    /// Times each question is asked each way.
    #[arg(long, default_value_t = 30)]
    rounds: usize,
    /// Temporal frontend (else the config's, `APEX_TEMPORAL_URL`).
    #[arg(long)]
    temporal: Option<String>,
}

fn question(text: &str) -> Question {
    Question {
        text: text.into(),
        as_of: Some(UNTIL.parse().expect("a time")),
        ingested_before: None,
        k: 20,
        filters: Default::default(),
        retrieval: Default::default(),
    }
}

/// p50 and p95 of `millis`, in ms.
fn percentiles(mut millis: Vec<f64>) -> (f64, f64) {
    millis.sort_by(f64::total_cmp);
    let at = |p: f64| millis[((millis.len() - 1) as f64 * p).round() as usize];
    (at(0.5), at(0.95))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let mut config = Config::load(None)?;
    if let Some(url) = args.temporal {
        config.temporal.url = url;
    }
    config.temporal.task_queue = format!("apex-query-round-trip-{}", std::process::id());
    config.metrics.listen = String::new();
    config.source.kind = SourceKind::Generator;
    config.source.events = 0;
    config.source.vehicles = 8;
    config.source.days = 2.0;
    config.source.until = UNTIL.into();
    config.source.seed = 29;
    config.source.poison_fraction = 0.0;
    config.source.truth = dir.path().join("truth.json");
    config.stores.data_dir = dir.path().to_path_buf();

    let metrics = Metrics::new();
    let stores = app::open_stores(&config).await?;
    let shutdown = CancellationToken::new();
    let orchestrator = app::direct_over(&config, &stores, metrics.clone(), &shutdown)?;
    let source = app::build_source(&config, metrics.clone())?;
    app::run_pipeline(&config, source, orchestrator, metrics.clone(), shutdown.clone(), |_| {}).await?;
    let truth: Value = serde_json::from_slice(&std::fs::read(&config.source.truth)?)?;
    let embedder = app::build_embedder(&config)?;
    let query_stores = QueryStores::over(&stores, embedder.clone());

    let truck = truth["trips"][0]["truck_name"].as_str().unwrap_or("Truck 1");
    let pro = truth["shipments"][0]["pro"].as_str().unwrap_or("PRO0");
    let city = truth["hubs"][0]["city"].as_str().unwrap_or("Dallas").to_lowercase();
    let scac = truth["shipments"][0]["scac"].as_str().unwrap_or("ODFL");
    let asked = [
        ("position", format!("where was {truck} at 12:00 yesterday")),
        ("late_shipments", "which shipments are late".to_string()),
        ("events", format!("safety events within 300 km of {city} in the last 3 days")),
        ("about", format!("everything about PRO {}", pro.trim_start_matches("PRO"))),
        ("semantic", "freight invoice amount due".to_string()),
        // An analysis: a ComplexQueryWorkflow of three one-day slices.
        ("dwell", format!("dwell time per facility for carrier {scac} in the last 3 days")),
    ];

    let writer = app::saga_writer(&config, &stores, metrics.clone(), &shutdown)?;
    // No cache: every workflow asks the stores, as the in-process path does.
    let extra = registrations(query_stores.clone(), None, Duration::ZERO);
    let client = connect(&config.temporal).await?;
    let queue = config.temporal.task_queue.clone();
    let work = async {
        let mut rows = Vec::new();
        for (intent, text) in &asked {
            let (mut here, mut via) = (Vec::new(), Vec::new());
            for _ in 0..args.rounds {
                let started = Instant::now();
                query::ask(&query_stores, &question(text)).await?;
                here.push(started.elapsed().as_secs_f64() * 1e3);
                let started = Instant::now();
                ask_via_temporal(
                    &client,
                    &queue,
                    &query_workflow_id(),
                    question(text),
                    CancellationToken::new(),
                )
                .await?;
                via.push(started.elapsed().as_secs_f64() * 1e3);
            }
            rows.push((intent.to_string(), percentiles(here), percentiles(via)));
        }
        anyhow::Ok(rows)
    };
    let rows = while_working(&config, embedder.clone(), writer.clone(), &metrics, extra, work).await??;

    // The same worker's path with the answer kept: the first asks, the rest are hits.
    let cached: Arc<dyn AnswerCache> = Arc::new(MemoryAnswers::new(16.try_into()?));
    let extra = registrations(query_stores.clone(), Some(cached), Duration::from_secs(600));
    let text = &asked[3].1;
    let work = async {
        let mut via = Vec::new();
        for _ in 0..=args.rounds {
            let started = Instant::now();
            ask_via_temporal(&client, &queue, &query_workflow_id(), question(text), CancellationToken::new())
                .await?;
            via.push(started.elapsed().as_secs_f64() * 1e3);
        }
        via.remove(0);
        anyhow::Ok(percentiles(via))
    };
    let hits = while_working(&config, embedder, writer, &metrics, extra, work).await??;

    println!("{} rounds each; ms, p50 / p95", args.rounds);
    println!("{:<16} {:>20} {:>20} {:>10}", "intent", "in process", "on Temporal", "added p50");
    for (intent, (h50, h95), (v50, v95)) in rows {
        println!(
            "{intent:<16} {:>20} {:>20} {:>10.1}",
            format!("{h50:.1} / {h95:.1}"),
            format!("{v50:.1} / {v95:.1}"),
            v50 - h50
        );
    }
    println!("{:<16} {:>20} {:>20}", "about, cached", "-", format!("{:.1} / {:.1}", hits.0, hits.1));
    Ok(())
}
