//! Query latency over many stored records with ingest running beside it:
//! k6 (`load/k6/query.js`) against `/v1/query` on the real PostgreSQL.
//!
//!     cargo run --release --example query_latency -- [--records 1000000] [--ingest-rate 1000] [--hold 60s] [--reuse]
//!
//! 1. fills a PostgreSQL database of its own (`--database`, fresh unless
//!    `--reuse` finds it holding `--records` already) with that many
//!    generated records through the pipeline: records with their full-text
//!    index, vectors in pgvector (hashing embedder; location and stats pings
//!    get none, as `embed.skip_kinds` advises for telemetry); no graph (Neo4j
//!    takes about 1,000 records/s, so a million would be a 17-minute fill) and
//!    no cache role;
//! 2. starts ingest beside it: a second generated fleet at `--ingest-rate`
//!    events/s into the same stores;
//! 3. starts the query API in this process, as `serve` builds it (answers
//!    cached in the process under the write watermark), on a free port;
//! 4. runs k6: structured questions (position, late, events near a place,
//!    about a PRO), hybrid ones (by meaning) and one question again and again
//!    (the cache), each at a constant rate; thresholds p95 < 50 / 150 / 5 ms;
//! 5. stops the ingest and runs the cache scenario again (a watermark that
//!    stands still), then prints both runs' figures.
//!
//! Needs `scripts/services up postgres`.

use std::time::{Duration, Instant};

use anyhow::Context;
use apex_ingest::app;
use apex_ingest::config::{
    CacheKind, Config, GraphKind, RelationalKind, SecretSource, ServeConfig, SourceKind, VectorKind,
};
use apex_ingest::metrics::Metrics;
use apex_ingest::query::QueryStores;
use apex_ingest::query::api::{self, QueryApi};
use apex_ingest::store::RecordFilter;
use clap::Parser;
use serde_json::Value;
use sqlx::Executor;
use tokio_util::sync::CancellationToken;

#[path = "k6_install.rs"]
mod k6_install;

/// The generated fleet ends here; every question is asked as of it.
const UNTIL: &str = "2026-11-20T06:00:00Z";
const TOKEN: &str = "load-query-token";

#[derive(Parser)]
struct Args {
    /// Records stored before the questions start.
    #[arg(long, default_value_t = 1_000_000)]
    records: u64,
    /// Trucks of the stored fleet (its days follow from --records).
    #[arg(long, default_value_t = 100)]
    vehicles: usize,
    /// Events/s the ingest beside the questions writes.
    #[arg(long, default_value_t = 1000)]
    ingest_rate: u32,
    /// How long each k6 scenario holds its rate.
    #[arg(long, default_value = "60s")]
    hold: String,
    #[arg(long, default_value_t = 20)]
    structured_rate: u32,
    #[arg(long, default_value_t = 10)]
    hybrid_rate: u32,
    #[arg(long, default_value_t = 20)]
    cached_rate: u32,
    /// The database the records are kept in.
    #[arg(long, default_value = "apex_query_latency")]
    database: String,
    /// Keep the database if it already holds --records (a second run skips the fill).
    #[arg(long)]
    reuse: bool,
}

#[derive(serde::Deserialize, Debug)]
struct Latency {
    med: f64,
    p95: f64,
    p99: f64,
    count: f64,
}

#[derive(serde::Deserialize, Debug)]
struct Summary {
    structured: Option<Latency>,
    position: Option<Latency>,
    late: Option<Latency>,
    events: Option<Latency>,
    about: Option<Latency>,
    hybrid: Option<Latency>,
    cache_hit: Option<Latency>,
    cache_hits: u64,
    cache_misses: u64,
    empty_answers: u64,
    shed: u64,
    requests: u64,
    rate: f64,
    failed_rate: f64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    apex_ingest::telemetry::init("warn,sqlx::query=error");
    let repo = env!("CARGO_MANIFEST_DIR");
    let k6 = k6_install::k6()?;

    let mut config = Config::load(None)?;
    config.metrics.listen = String::new();
    config.postgres.url = database(&config.postgres.url, &args.database, args.reuse).await?;
    let s = &mut config.stores;
    (s.graph, s.relational, s.vector, s.cache) =
        (GraphKind::None, RelationalKind::Postgres, VectorKind::Pgvector, CacheKind::None);
    let dir = tempfile::tempdir()?;
    s.data_dir = dir.path().to_path_buf();
    config.embed.skip_kinds = vec!["VehicleLocation".into(), "VehicleStats".into()];
    config.source.kind = SourceKind::Generator;
    config.source.poison_fraction = 0.0;
    config.source.until = UNTIL.into();
    config.source.vehicles = args.vehicles;

    let stores = app::open_stores(&config).await?;
    let stored = stores.relational.count_records().await?;
    if stored < args.records {
        // About 1,800 events per truck and day; counting 1,500 leaves days to spare.
        config.source.events = args.records - stored;
        config.source.days = (args.records as f64 / (args.vehicles as f64 * 1_500.0)).ceil();
        config.source.seed = 1;
        config.source.rate = 0;
        let started = Instant::now();
        ingest(&config, &stores, CancellationToken::new()).await?;
        let secs = started.elapsed().as_secs_f64();
        println!(
            "filled {} records in {secs:.0} s ({:.0} records/s)",
            config.source.events,
            config.source.events as f64 / secs
        );
    }
    let stored = stores.relational.count_records().await?;
    println!("{stored} records stored in {}", args.database);

    // Ingest beside the questions: another fleet, at the asked rate, until stopped.
    let beside = CancellationToken::new();
    let mut live = config.clone();
    live.source.seed = 2;
    live.source.rate = args.ingest_rate;
    live.source.days = 30.0;
    live.source.events = 0;
    let ingesting = {
        // Connections of its own, as a member's process beside `serve` has.
        let (stores, stop) = (app::open_stores(&live).await?, beside.clone());
        tokio::spawn(async move { ingest(&live, &stores, stop).await })
    };

    let pros = pros(&stores).await?;
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, TOKEN)?;
    let settings = ServeConfig {
        tokens: vec![SecretSource::File(token_file)],
        requests_per_second: 100_000,
        timeout: Duration::from_secs(10),
        ..ServeConfig::default()
    };
    let query_stores = QueryStores::over(&stores, app::build_embedder(&config)?);
    let cache = app::build_answer_cache(&config).await?;
    let api = QueryApi::start(&settings, query_stores, cache, Metrics::new())?;
    let listener = api::bind("127.0.0.1:0".parse()?).await?;
    let url = format!("http://{}", listener.local_addr()?);
    let stop = CancellationToken::new();
    tokio::spawn(api::serve(api, listener, stop.clone().cancelled_owned()));

    let k6_run = |scenarios: &'static str, name: &'static str| {
        let summary = std::env::temp_dir().join(format!("k6-query-{name}-{}.json", std::process::id()));
        let mut command = tokio::process::Command::new(&k6);
        command
            .args(["run", "--quiet", &format!("{repo}/load/k6/query.js")])
            .env("API_URL", &url)
            .env("TOKEN", TOKEN)
            .env("AS_OF", UNTIL)
            .env("TRUCKS", args.vehicles.to_string())
            .env("PROS", pros.join(","))
            .env("HOLD", &args.hold)
            .env("STRUCTURED_RATE", args.structured_rate.to_string())
            .env("HYBRID_RATE", args.hybrid_rate.to_string())
            .env("CACHED_RATE", args.cached_rate.to_string())
            .env("SCENARIOS", scenarios)
            .env("SUMMARY", &summary);
        async move {
            let status = command.status().await.context("running k6")?;
            let s: Summary = serde_json::from_str(&std::fs::read_to_string(&summary)?)?;
            anyhow::Ok((status.success(), s))
        }
    };
    println!(
        "k6: structured {}/s, hybrid {}/s, cached {}/s for {}, ingest beside at {} events/s",
        args.structured_rate, args.hybrid_rate, args.cached_rate, args.hold, args.ingest_rate
    );
    let (busy_ok, busy) = k6_run("structured,hybrid,cached", "busy").await?;
    beside.cancel();
    let ingested = ingesting.await??;
    println!("ingest beside wrote {ingested} records while the questions ran");
    let (quiet_ok, quiet) = k6_run("cached", "quiet").await?;
    stop.cancel();

    println!("| measure | with ingest at {} events/s | ingest stopped |\n|---|---|---|", args.ingest_rate);
    let row = |name: &str, a: &Option<Latency>, b: &Option<Latency>| {
        let cell = |l: &Option<Latency>| match l {
            Some(l) => format!("{:.1} / {:.1} / {:.1} ms ({:.0})", l.med, l.p95, l.p99, l.count),
            None => "—".into(),
        };
        println!("| {name}: median / p95 / p99 of answered (count) | {} | {} |", cell(a), cell(b));
    };
    row("structured, all four", &busy.structured, &quiet.structured);
    row("  position", &busy.position, &quiet.position);
    row("  late shipments", &busy.late, &quiet.late);
    row("  events near a place", &busy.events, &quiet.events);
    row("  about a PRO", &busy.about, &quiet.about);
    row("hybrid (by meaning)", &busy.hybrid, &quiet.hybrid);
    row("cache hits", &busy.cache_hit, &quiet.cache_hit);
    for (name, a, b) in [
        (
            "cache hits / misses",
            format!("{} / {}", busy.cache_hits, busy.cache_misses),
            format!("{} / {}", quiet.cache_hits, quiet.cache_misses),
        ),
        ("questions answered with no hit", busy.empty_answers.to_string(), quiet.empty_answers.to_string()),
        ("refused at once, overloaded (503)", busy.shed.to_string(), quiet.shed.to_string()),
        (
            "requests, queries/s",
            format!("{} at {:.1}/s", busy.requests, busy.rate),
            format!("{} at {:.1}/s", quiet.requests, quiet.rate),
        ),
        (
            "failed requests",
            format!("{:.2} %", busy.failed_rate * 100.0),
            format!("{:.2} %", quiet.failed_rate * 100.0),
        ),
        ("k6 thresholds", verdict(busy_ok), verdict(quiet_ok)),
    ] {
        println!("| {name} | {a} | {b} |");
    }
    Ok(())
}

fn verdict(ok: bool) -> String {
    if ok { "passed".into() } else { "FAILED".into() }
}

/// The URL of database `name` beside the configured one, created (afresh
/// unless `reuse`).
async fn database(url: &str, name: &str, reuse: bool) -> anyhow::Result<String> {
    anyhow::ensure!(
        name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
        "--database: letters, digits, _"
    );
    let admin = sqlx::PgPool::connect(url)
        .await
        .with_context(|| format!("PostgreSQL at {url}: start it with `scripts/services up postgres`"))?;
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(name)
        .fetch_one(&admin)
        .await?;
    if exists && !reuse {
        admin.execute(sqlx::AssertSqlSafe(format!("DROP DATABASE {name} WITH (FORCE)"))).await?;
    }
    if !exists || !reuse {
        admin.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).await?;
    }
    let (base, _) = url.rsplit_once('/').context("a PostgreSQL URL ends in /database")?;
    Ok(format!("{base}/{name}"))
}

/// The generator's fleet through the pipeline into `stores` until it ends or
/// `stop`; the records written.
async fn ingest(
    config: &Config,
    stores: &apex_ingest::store::Stores,
    stop: CancellationToken,
) -> anyhow::Result<u64> {
    let metrics = Metrics::new();
    let orchestrator = app::direct_over(config, stores, metrics.clone(), &stop)?;
    let source = app::build_source(config, metrics.clone())?;
    let totals = app::run_pipeline(config, source, orchestrator, metrics, stop, |_| {}).await?;
    Ok(totals.records)
}

/// PRO numbers the stores hold (from their tenders), for "everything about".
async fn pros(stores: &apex_ingest::store::Stores) -> anyhow::Result<Vec<String>> {
    let tenders = RecordFilter { kinds: vec!["204".into()], limit: 200, ..RecordFilter::default() };
    let pros: Vec<String> = stores
        .relational
        .find_records(&tenders)
        .await?
        .iter()
        .filter_map(|r| r.body.pointer("/content/shipment_id").and_then(Value::as_str).map(str::to_owned))
        .filter(|p| p.starts_with("PRO"))
        .collect();
    anyhow::ensure!(!pros.is_empty(), "no tender with a PRO number among the stored records");
    Ok(pros)
}
