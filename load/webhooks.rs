//! Webhook load run: k6 (`load/k6/webhooks.js`) against the edge, then the topics counted.
//!
//!     cargo run --release --example webhooks -- [--rate 3000] [--ramp 10s] [--hold 30s] [--stores]
//!
//! 1. creates fresh Samsara, Front, Turvo and DLQ topics and starts the edge
//!    (in this process, as `apex-ingest edge` builds it) on a free port;
//! 2. runs k6 (installed by `load/k6/install`): every request signed as its
//!    provider signs it, each with a unique event id, ramped to `--rate`;
//!    thresholds p99 < 100 ms and no failed request;
//! 3. reads every topic back: each 2xx must be exactly one message (counts equal,
//!    no key twice, nothing in the DLQ topic);
//! 4. with `--stores`, one consumer-group member reads the three topics into
//!    Neo4j, PostgreSQL (pgvector) and Redis, and every record is verified in every store.
//!
//! Needs `scripts/services up kafka redis` (and postgres neo4j for `--stores`).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::Context;
use apex_ingest::app;
use apex_ingest::config::{CacheKind, Config, GraphKind, RelationalKind, SourceKind, VectorKind};
use apex_ingest::edge::{self, Edge};
use apex_ingest::kafka::group_watch::GroupWatch;
use apex_ingest::kafka::read_back::read_to_end;
use apex_ingest::kafka::topics::{self, TopicSpec};
use apex_ingest::metrics::Metrics;
use apex_ingest::model::Format;
use apex_ingest::pipeline::parse::parse;
use clap::Parser;
use tokio_util::sync::CancellationToken;

#[path = "k6_install.rs"]
mod k6_install;

const SAMSARA_SECRET: &str = "bG9hZC1zYW1zYXJhLXNlY3JldA==";
const FRONT_SECRET: &str = "load-front-secret";
const TURVO_TOKEN: &str = "Bearer load-turvo-token";

#[derive(Parser)]
struct Args {
    /// Requests per second k6 ramps to and holds.
    #[arg(long, default_value_t = 3000)]
    rate: u32,
    #[arg(long, default_value = "10s")]
    ramp: String,
    #[arg(long, default_value = "30s")]
    hold: String,
    /// Also run the webhooks through a consumer into the real stores and verify them.
    #[arg(long)]
    stores: bool,
}

#[derive(serde::Deserialize, Debug)]
struct Summary {
    accepted: Accepted,
    duplicates: u64,
    requests: u64,
    failed_rate: f64,
    p99_ms: f64,
    p95_ms: f64,
    med_ms: f64,
    rate: f64,
}

#[derive(serde::Deserialize, Debug)]
struct Accepted {
    samsara: u64,
    front: u64,
    turvo: u64,
}

fn environment(name: &str) -> Option<String> {
    match name {
        "LOAD_SAMSARA_SECRET" => Some(SAMSARA_SECRET.into()),
        "LOAD_FRONT_SECRET" => Some(FRONT_SECRET.into()),
        "LOAD_TURVO_TOKEN" => Some(TURVO_TOKEN.into()),
        _ => None,
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    apex_ingest::telemetry::init("warn,sqlx::query=error");
    let repo = env!("CARGO_MANIFEST_DIR");
    let k6 = k6_install::k6()?;

    let mut config = Config::load(None)?;
    let brokers = config.kafka.brokers.clone();
    let id = format!("{:08x}", rand::random::<u32>());
    let [samsara, front, turvo, dlq] =
        ["samsara.telemetry.v1", "webhooks.frontapp.v1", "webhooks.turvo.v1", "ingest.dlq.v1"]
            .map(|base| format!("{base}.webhooks-{id}"));
    let specs = [(&samsara, 12), (&front, 3), (&turvo, 3), (&dlq, 1)]
        .map(|(name, partitions)| TopicSpec::scratch(name, partitions));
    topics::apply(&config.kafka, &specs, Some(1)).await?;
    config.kafka.dlq_topic = dlq.clone();
    for (route, topic, secret) in [
        (&mut config.edge.samsara, &samsara, "LOAD_SAMSARA_SECRET"),
        (&mut config.edge.front, &front, "LOAD_FRONT_SECRET"),
        (&mut config.edge.turvo, &turvo, "LOAD_TURVO_TOKEN"),
    ] {
        route.topic = topic.clone();
        route.secret_env = vec![secret.into()];
    }

    let edge = Edge::start(&config, Metrics::new(), environment).await?;
    let listener = edge::bind("127.0.0.1:0".parse()?).await?;
    let url = format!("http://{}", listener.local_addr()?);
    let stop = CancellationToken::new();
    tokio::spawn(edge::serve(edge, listener, stop.clone().cancelled_owned()));
    let ready = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while ready.get(format!("{url}/readyz")).send().await.map(|r| r.status().is_success()).ok() != Some(true)
    {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the edge did not become ready (is Kafka at {brokers} up?)"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    println!(
        "run {id}: k6 to {} webhooks/s (ramp {}, hold {}), 80 % Samsara, 10 % Front, 10 % Turvo",
        args.rate, args.ramp, args.hold
    );
    let summary_path = std::env::temp_dir().join(format!("k6-webhooks-{id}.json"));
    let status = tokio::process::Command::new(&k6)
        .args(["run", "--quiet", &format!("{repo}/load/k6/webhooks.js")])
        .env("EDGE_URL", &url)
        .env("RATE", args.rate.to_string())
        .env("RAMP", &args.ramp)
        .env("HOLD", &args.hold)
        .env("SAMSARA_SECRET", SAMSARA_SECRET)
        .env("FRONT_SECRET", FRONT_SECRET)
        .env("TURVO_TOKEN", TURVO_TOKEN)
        .env("SUMMARY", &summary_path)
        .status()
        .await
        .context("running k6")?;
    stop.cancel();
    let s: Summary = serde_json::from_str(&std::fs::read_to_string(&summary_path)?)?;
    println!("| measure | value |\n|---|---|");
    println!("| requests / rate over the whole run (ramp included) | {} / {:.0} per s |", s.requests, s.rate);
    println!("| latency median / p95 / p99 | {:.1} / {:.1} / {:.1} ms |", s.med_ms, s.p95_ms, s.p99_ms);
    println!("| failed requests | {:.4} % |", s.failed_rate * 100.0);
    println!(
        "| k6 thresholds (p99 < 100 ms, no failure) | {} |",
        if status.success() { "passed" } else { "FAILED" }
    );

    let read = |topic: &str| read_to_end(&config.kafka, topic, Format::Samsara, Duration::from_secs(120));
    let mut all_ok = status.success() && s.duplicates == 0;
    for (name, topic, accepted) in [
        ("samsara", &samsara, s.accepted.samsara),
        ("front", &front, s.accepted.front),
        ("turvo", &turvo, s.accepted.turvo),
    ] {
        let messages = read(topic)?;
        let keys: HashSet<_> = messages.iter().filter_map(|m| m.key.as_deref()).collect();
        let exact = messages.len() as u64 == accepted && keys.len() == messages.len();
        all_ok &= exact;
        println!(
            "| {name}: 2xx accepted / messages in the topic / distinct keys | {accepted} / {} / {}{} |",
            messages.len(),
            keys.len(),
            if exact { " (exactly once)" } else { " — NOT EXACTLY ONCE" }
        );
    }
    let letters = read(&dlq)?.len();
    all_ok &= letters == 0;
    println!("| dead letters | {letters} |");
    anyhow::ensure!(all_ok, "the run did not meet its checks");

    if args.stores {
        through_stores(&mut config, &[&samsara, &front, &turvo], &id).await?;
    }
    Ok(())
}

/// One member reads the webhook topics into the real stores; then every record is checked in every store.
async fn through_stores(config: &mut Config, topics: &[&str; 3], id: &str) -> anyhow::Result<()> {
    config.source.kind = SourceKind::Kafka;
    config.metrics.listen = String::new();
    config.kafka.group_id = format!("webhooks-{id}");
    [config.kafka.samsara_topic, config.kafka.front_topic, config.kafka.turvo_topic] =
        topics.map(str::to_owned);
    config.kafka.edi_topic = String::new();
    config.kafka.bank_topic = String::new();
    let s = &mut config.stores;
    (s.graph, s.relational, s.vector, s.cache) =
        (GraphKind::Neo4j, RelationalKind::Postgres, VectorKind::Pgvector, CacheKind::Redis);
    s.redis_prefix = format!("webhooks-{id}");
    let dir = tempfile::tempdir()?;
    s.data_dir = dir.path().to_path_buf();

    let shutdown = CancellationToken::new();
    let metrics = Metrics::new();
    let (_, orchestrator) = app::build_orchestrator(config, metrics.clone(), &shutdown).await?;
    let source = app::build_source(config, metrics.clone())?;
    let started = Instant::now();
    let member = {
        let (config, shutdown) = (config.clone(), shutdown.clone());
        tokio::spawn(async move {
            app::run_pipeline(&config, source, orchestrator, metrics, shutdown, |_| {}).await
        })
    };
    let watch = GroupWatch::new(&config.kafka, &config.kafka.group_id)?;
    loop {
        let (end, committed) = watch.progress(topics)?;
        if end > 0 && committed == end {
            break;
        }
        anyhow::ensure!(started.elapsed() < Duration::from_secs(1800), "the member did not finish in 30 min");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    shutdown.cancel();
    let totals = member.await??;
    let mut ids = Vec::new();
    for (topic, format) in topics.iter().zip([Format::Samsara, Format::Front, Format::Turvo]) {
        for m in read_to_end(&config.kafka, topic, format, Duration::from_secs(120))? {
            ids.extend(parse(&m).map_err(|e| anyhow::anyhow!("{topic}: {e}"))?.into_iter().map(|r| r.id));
        }
    }
    let stores = app::open_stores(config).await?;
    let diff =
        apex_ingest::verify::check_ids(&stores, &ids, &apex_ingest::verify::Expectations::of(config)).await?;
    let missing: usize = diff.missing.values().map(Vec::len).sum();
    println!(
        "| through the stores: records written / dead letters / time | {} / {} / {secs:.1} s |",
        totals.records, totals.dead_letters
    );
    println!(
        "| verify: records in every store | {} checked, {missing} missing{} |",
        ids.len(),
        if diff.is_clean() { " (clean)" } else { " — NOT CLEAN" }
    );
    anyhow::ensure!(diff.is_clean(), "verify found missing records");
    Ok(())
}
