//! Store outages in the middle of a run: PostgreSQL, Neo4j and Redis are each
//! stopped with `scripts/services down` while thousands of events flow, and
//! started again once the store's circuit breaker has opened. The run must
//! finish with every record in every store exactly once.
//!
//! The scenarios stop shared services, so they run one at a time.

mod support;

use std::collections::HashSet;
use std::process::Command;
use std::time::{Duration, Instant};

use apex_ingest::app;
use apex_ingest::metrics::Metrics;
use apex_ingest::model::{Record, RecordId};
use apex_ingest::pipeline::parse::parse;
use apex_ingest::source::generator::{Fleet, GeneratorSettings};
use support::{held_by, real_stores_config, unique};
use tokio_util::sync::CancellationToken;

static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const EVENTS: u64 = 3_000;

fn services(action: &str, service: &str) {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/services");
    let out = Command::new(script).args([action, service]).output().expect("run scripts/services");
    assert!(
        out.status.success(),
        "scripts/services {action} {service}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Stops `service` mid-run, waits for one of `breakers` to open, starts it again.
async fn outage(service: &'static str, breakers: &[&'static str]) {
    let _serial = ONE_AT_A_TIME.lock().await;
    let mut config = real_stores_config(&unique("apex-outage"));
    let seed: u64 = rand::random();
    config.source.events = EVENTS;
    config.source.rate = 600;
    config.source.seed = seed;
    config.source.poison_fraction = 0.0;
    // A fixed end of the world, so the source and this regeneration agree.
    config.source.until = "2026-11-20T06:00:00Z".into();
    let settings = GeneratorSettings {
        events: None,
        rate: None,
        poison_fraction: 0.0,
        only: None,
        vehicles: config.source.vehicles,
        partitions: config.source.partitions,
        seed,
        days: config.source.days,
        until: config.generator_until(),
        truth: None,
    };
    let stores = apex_ingest::app::open_stores(&config).await.unwrap();
    let metrics = Metrics::new();
    let shutdown = CancellationToken::new();
    let orchestrator = app::direct_over(&config, &stores, metrics.clone(), &shutdown).unwrap();
    let source = app::build_source(&config, metrics.clone()).unwrap();
    let run = {
        let (config, metrics) = (config.clone(), metrics.clone());
        tokio::spawn(async move {
            app::run_pipeline(&config, source, orchestrator, metrics, shutdown, |_| {}).await
        })
    };

    tokio::time::sleep(Duration::from_millis(1500)).await;
    tokio::task::spawn_blocking(move || services("down", service)).await.unwrap();
    let stopped = Instant::now();
    while !breakers.iter().any(|b| metrics.counter("apex_breaker_opened_total", b) > 0) {
        assert!(stopped.elapsed() < Duration::from_secs(90), "no breaker of {breakers:?} opened within 90 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::task::spawn_blocking(move || services("up", service)).await.unwrap();

    let totals =
        tokio::time::timeout(Duration::from_secs(240), run).await.expect("run finishes").unwrap().unwrap();
    assert_eq!(totals.events, EVENTS);

    // The same seed makes the same traffic: these are the records that must
    // exist (in the graph, those not kept as vehicle state).
    let mut records: Vec<Record> =
        Fleet::new(settings).take(EVENTS as usize).flat_map(|e| parse(&e).unwrap()).collect();
    records.sort_by(|a, b| a.id.cmp(&b.id));
    records.dedup_by(|a, b| a.id == b.id);
    assert_eq!(totals.records as usize, records.len());
    let ids: Vec<RecordId> = records.iter().map(|r| r.id.clone()).collect();
    for s in stores.all() {
        let want: HashSet<RecordId> = held_by(s.name(), &records).into_iter().collect();
        let present = s.present(&ids).await.unwrap();
        let lost = want.difference(&present).count();
        assert!(!want.is_empty() && lost == 0, "{} lost {lost} records after the {service} outage", s.name());
    }
    let retries: u64 = ["graph", "relational", "cache", "coordinator"]
        .iter()
        .map(|s| metrics.counter("apex_store_retries_total", s))
        .sum();
    assert!(retries > 0, "the outage shows in apex_store_retries_total");
    let rendered = metrics.render();
    assert!(rendered.contains("apex_breaker_opened_total"), "{rendered}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_mid_run_loses_and_duplicates_nothing() {
    outage("postgres", &["relational"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn neo4j_outage_mid_run_loses_and_duplicates_nothing() {
    outage("neo4j", &["graph"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_mid_run_loses_and_duplicates_nothing() {
    outage("redis", &["cache", "coordinator"]).await;
}
