//! End-to-end load run on the real broker and stores (`scripts/services up`):
//!
//!     cargo run --release --example e2e -- [--events 200000] [--members 1]
//!         [--layout full|relational|embedded] [--skip-kinds VehicleLocation,VehicleStats]
//!         [--graph-state-kinds VehicleLocation,VehicleStats] [--empty-graph]
//!         [--vector pgvector|qdrant] [--rate 0] [--ceiling-events 20000]
//!
//! 1. creates fresh topics and produces `--events` events: the generator's mix
//!    (85 % Samsara, 15 % EDI interchanges), 2 % poison, a random seed so every
//!    record is new to the stores;
//! 2. runs `--members` consumer-group members (each as `run` assembles it, with
//!    its own store connections) until the group has committed every partition
//!    to its end offset, sampling lag and memory;
//! 3. prints what each store grew by, per million events; checks every record
//!    of the run in every store as the policies say (as `verify` does) and
//!    every poison event in the dead letters;
//! 4. measures each store's raw ceiling: the same rows (the first
//!    `--ceiling-events` events, under new record ids so they are inserts too)
//!    written by a bare loop of that store's batched upsert at the pipeline's
//!    concurrency — no saga, lock, Kafka or idempotency record;
//! 5. prints one report; `load/RESULTS.md` keeps the figures.
//!
//! Any `APEX_*` variable (e.g. `APEX_BATCH_MAX_IN_FLIGHT=8`) applies to the members.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use apex_ingest::app;
use apex_ingest::batch::{Batch, CloseReason};
use apex_ingest::config::{CacheKind, Config, GraphKind, RelationalKind, SourceKind, VectorKind};
use apex_ingest::kafka::group_watch::GroupWatch;
use apex_ingest::metrics::Metrics;
use apex_ingest::model::{Format, RecordId};
use apex_ingest::pipeline::ProcessedRecord;
use apex_ingest::pipeline::embed::EmbedPolicy;
use apex_ingest::pipeline::{parse_events, process_records};
use apex_ingest::source::generator::{Fleet, GeneratorSettings};
use apex_ingest::store::{BatchStore, Stores};
use clap::{Parser, ValueEnum};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

#[path = "traffic.rs"]
mod traffic;

/// The peer: Redpanda Connect moving the Samsara topic into PostgreSQL.
#[path = "e2e_peer.rs"]
mod peer;
#[path = "e2e_stores.rs"]
mod sizes;

use traffic::{EDI_PARTITIONS, RunTopics, SAMSARA_PARTITIONS, kafka_at};

/// The members run on the allocator the binary uses (`src/main.rs`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Layout {
    /// Neo4j, PostgreSQL, the vector role (`--vector`) and Redis.
    Full,
    /// PostgreSQL only: no graph, vector or cache role, nothing embedded.
    Relational,
    /// The embedded stores (SQLite files, in-process cache) in a temporary directory.
    Embedded,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum VectorRole {
    Pgvector,
    /// A Qdrant server named by `APEX_QDRANT_URL`; PostgreSQL then has no HNSW index.
    Qdrant,
}

#[derive(Debug, Parser)]
#[command(about = "End-to-end load run: Kafka → members → stores, against each store's own ceiling")]
struct Args {
    /// Events to produce (Samsara and EDI, 2 % poison).
    #[arg(long, default_value_t = 200_000)]
    events: u64,
    /// Consumer-group members in this process (each with its own store connections).
    #[arg(long, default_value_t = 1)]
    members: usize,
    /// Store layouts to run, one after another on the same topics (each with its own group).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "full")]
    layout: Vec<Layout>,
    #[arg(long, value_enum, default_value = "pgvector")]
    vector: VectorRole,
    /// Record kinds not embedded (`[embed] skip_kinds`), comma-separated.
    #[arg(long, value_delimiter = ',')]
    skip_kinds: Vec<String>,
    /// Record kinds the graph keeps as vehicle state (`[graph] state_kinds`),
    /// comma-separated; '' for a node per record.
    #[arg(long, value_delimiter = ',', default_value = "VehicleLocation,VehicleStats")]
    graph_state_kinds: Vec<String>,
    /// Before the run, delete every node of Neo4j through Cypher (kept
    /// running, so warm: a wipe restarts it cold).
    #[arg(long)]
    empty_graph: bool,
    /// Produce at this many events/s while the members run; 0 produces everything first.
    #[arg(long, default_value_t = 0)]
    rate: u32,
    /// Events whose rows the raw-ceiling loops write per store; 0 skips the ceilings.
    #[arg(long, default_value_t = 20_000)]
    ceiling_events: u64,
    /// Share of poison events.
    #[arg(long, default_value_t = 0.02)]
    poison: f64,
    /// Share of EDI interchanges (the rest is Samsara).
    #[arg(long, default_value_t = 0.15)]
    edi_share: f64,
    /// A Redpanda Connect binary (`load/peer/build` prints it): before the
    /// layouts, it moves the Samsara topic into a PostgreSQL table (one row per
    /// event, `ON CONFLICT DO NOTHING`, batches of 100, 4 in flight), timed the same way.
    #[arg(long)]
    peer: Option<std::path::PathBuf>,
}

/// The events `produce` sent for one stream, regenerated from its seed.
fn regenerate(format: Format, events: u64, seed: u64, poison: f64) -> Vec<apex_ingest::model::RawEvent> {
    let fleet = Fleet::new(GeneratorSettings {
        events: Some(events),
        rate: None,
        poison_fraction: poison,
        only: Some(format),
        ..GeneratorSettings::clean(seed)
    });
    fleet.take(events as usize).collect()
}

fn configure(args: &Args, layout: Layout, config: &mut Config, dir: &std::path::Path) -> anyhow::Result<()> {
    let s = &mut config.stores;
    s.data_dir = dir.to_path_buf();
    match layout {
        Layout::Full => {
            s.graph = GraphKind::Neo4j;
            s.relational = RelationalKind::Postgres;
            s.cache = CacheKind::Redis;
            s.vector = match args.vector {
                VectorRole::Pgvector => VectorKind::Pgvector,
                VectorRole::Qdrant => {
                    config.qdrant.url = std::env::var("APEX_QDRANT_URL").context(
                        "--vector qdrant needs APEX_QDRANT_URL (no Qdrant server can be installed here)",
                    )?;
                    VectorKind::Qdrant
                }
            };
        }
        Layout::Relational => {
            s.graph = GraphKind::None;
            s.relational = RelationalKind::Postgres;
            s.vector = VectorKind::None;
            s.cache = CacheKind::None;
        }
        Layout::Embedded => {
            s.graph = GraphKind::Embedded;
            s.relational = RelationalKind::Embedded;
            s.vector = VectorKind::Embedded;
            s.cache = CacheKind::Embedded;
        }
    }
    config.embed.skip_kinds = args.skip_kinds.clone();
    config.graph.state_kinds = args.graph_state_kinds.iter().filter(|k| !k.is_empty()).cloned().collect();
    Ok(())
}

/// Peak resident memory of this process (VmHWM), in MiB.
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .map_or(0.0, |kb: f64| kb / 1024.0)
}

/// Starts the peak-RSS count afresh (the produce phase is not the member's memory).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)].as_secs_f64() * 1e3
}

/// The run's topics, produce streams and the events behind them, in batches.
struct Run {
    id: String,
    brokers: String,
    samsara: String,
    edi: String,
    streams: [traffic::Stream; 2],
}

impl Run {
    fn topics(&self) -> [&str; 2] {
        [self.samsara.as_str(), self.edi.as_str()]
    }

    /// The produced events again, in batches of `size` (for verify and the ceilings).
    fn batches(&self, size: usize, poison: f64) -> Vec<Batch> {
        let mut out = Vec::new();
        for (topic, format, events, seed) in &self.streams {
            let raw = regenerate(*format, *events, *seed, poison);
            for chunk in raw.chunks(size) {
                let mut events = chunk.to_vec();
                for e in &mut events {
                    e.origin.topic = topic.clone();
                }
                out.push(Batch::new(events, CloseReason::Size));
            }
        }
        out
    }

    /// Waits until `group` has committed every partition to the end offsets
    /// (and the producer, if any, finished); returns the seconds and the peak lag.
    /// `joined` says whether the group holds every partition yet; the
    /// returned seconds are (from start, from the group joined).
    async fn until_committed(
        &self,
        group: &str,
        expected: u64,
        started: Instant,
        producer: &Option<tokio::task::JoinHandle<anyhow::Result<Duration>>>,
        joined: impl Fn() -> bool,
    ) -> anyhow::Result<((f64, f64), i64)> {
        let watcher = GroupWatch::new(&kafka_at(&self.brokers), group)?;
        let mut peak_lag = 0;
        let mut joined_at = None;
        loop {
            if joined_at.is_none() && joined() {
                joined_at = Some(Instant::now());
            }
            let (end, committed) = watcher.progress(&self.topics())?;
            peak_lag = peak_lag.max(end - committed);
            let produced_all = producer.as_ref().is_none_or(|p| p.is_finished());
            if produced_all && end as u64 == expected && committed == end {
                let after_join = joined_at.unwrap_or(started).elapsed().as_secs_f64();
                return Ok(((started.elapsed().as_secs_f64(), after_join), peak_lag));
            }
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(3600),
                "{group}: not committed to the end after an hour"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // sqlx warns of every statement over 1 s: HNSW inserts under load are that slow, and known.
    apex_ingest::telemetry::init("warn,sqlx::query=error");
    let mut config = Config::load(None)?;
    config.source.kind = SourceKind::Kafka;
    config.metrics.listen = String::new();
    let brokers = config.kafka.brokers.clone();
    let id = format!("{:08x}", rand::random::<u32>());
    let topics = RunTopics::create(&brokers, "e2e", &id).await?;
    config.kafka.samsara_topic = topics.samsara.clone();
    config.kafka.edi_topic = topics.edi.clone();
    config.kafka.only_samsara_and_edi();
    config.kafka.dlq_topic = topics.dlq.clone();
    let seed: u64 = rand::random::<u32>().into();
    let streams = traffic::streams(&topics, args.events, args.edi_share, seed);
    let run = Run {
        id,
        brokers: brokers.clone(),
        samsara: topics.samsara,
        edi: topics.edi,
        streams: streams.clone(),
    };
    println!(
        "run {}: {} events ({:.0} % EDI, {:.0} % poison), {} member(s), layouts {:?}, vector {:?}, skip_kinds {:?}, \
         graph state_kinds {:?}, {} batches in flight per member",
        run.id,
        args.events,
        args.edi_share * 100.0,
        args.poison * 100.0,
        args.members,
        args.layout,
        args.vector,
        args.skip_kinds,
        args.graph_state_kinds,
        config.batch.max_in_flight
    );
    if !args.layout.iter().all(|l| *l == Layout::Embedded) {
        println!("PostgreSQL: {}", sizes::postgres_settings(&config).await?);
    }
    if args.empty_graph {
        sizes::empty_graph(&config).await?;
    }

    let producing = {
        let (brokers, rate, poison) = (brokers.clone(), args.rate, args.poison);
        async move { traffic::produce_streams(&brokers, streams.to_vec(), rate, poison).await }
    };
    let mut producer = if args.rate == 0 {
        let took = producing.await?;
        println!("produced {} events in {:.2} s (before anything consumes)", args.events, took.as_secs_f64());
        None
    } else {
        Some(tokio::spawn(producing))
    };
    let batches = run.batches(config.batch.max_events, args.poison);

    if let Some(bin) = &args.peer {
        peer::run(bin, &run, &config, &batches, &mut producer).await?;
    }
    for layout in &args.layout {
        let dir = tempfile::tempdir()?;
        let mut config = config.clone();
        configure(&args, *layout, &mut config, dir.path())?;
        config.kafka.group_id = format!("e2e-{}-{layout:?}", run.id).to_lowercase();
        println!("\n## layout {layout:?}");
        let before = sizes::Sizes::of(&config, dir.path()).await?;
        let report = members(&args, &config, &run, &mut producer).await?;
        let stores = apex_ingest::app::open_stores(&config).await?;
        report.print(&stores);
        sizes::Sizes::of(&config, dir.path()).await?.print_growth(&before, report.events);
        verify(&config, &stores, &batches, report.dead_letters).await?;
        let policy = EmbedPolicy::for_config(&config);
        recall(&config, &stores, &policy, &batches).await?;
        if args.ceiling_events > 0 {
            ceilings(&args, &config, &stores, &policy, &batches, report.records as f64 / report.secs).await?;
        }
    }
    Ok(())
}

struct MembersReport {
    events: u64,
    /// Members start → every offset committed.
    wall: f64,
    /// Every partition assigned → every offset committed.
    secs: f64,
    records: u64,
    dead_letters: u64,
    latencies: Vec<Duration>,
    peak_rss: f64,
    peak_lag: i64,
    metrics: Vec<Arc<Metrics>>,
}

/// Runs `--members` members of `config`'s group until every offset is committed.
async fn members(
    args: &Args,
    config: &Config,
    run: &Run,
    producer: &mut Option<tokio::task::JoinHandle<anyhow::Result<Duration>>>,
) -> anyhow::Result<MembersReport> {
    reset_peak_rss();
    let shutdown = CancellationToken::new();
    let mut tasks = Vec::new();
    let mut metrics = Vec::new();
    let started = Instant::now();
    for _ in 0..args.members {
        let m = Metrics::new();
        let (_, orchestrator) = app::build_orchestrator(config, m.clone(), &shutdown).await?;
        let source = app::build_source(config, m.clone())?;
        let (config, shutdown, m2) = (config.clone(), shutdown.clone(), m.clone());
        tasks.push(tokio::spawn(async move {
            app::run_pipeline(&config, source, orchestrator, m2, shutdown, |_| {}).await
        }));
        metrics.push(m);
    }
    let partitions = i64::from(SAMSARA_PARTITIONS + EDI_PARTITIONS);
    let assigned = |m: &Metrics| -> i64 {
        m.render()
            .lines()
            .find_map(|l| l.strip_prefix("apex_kafka_assigned_partitions ")?.trim().parse().ok())
            .unwrap_or(0)
    };
    let joined = || metrics.iter().map(|m| assigned(m)).sum::<i64>() == partitions;
    let ((wall, secs), peak_lag) =
        run.until_committed(&config.kafka.group_id, args.events, started, producer, joined).await?;
    let peak_rss = peak_rss_mib();
    shutdown.cancel();
    let mut report = MembersReport {
        events: args.events,
        wall,
        secs,
        records: 0,
        dead_letters: 0,
        latencies: Vec::new(),
        peak_rss,
        peak_lag,
        metrics,
    };
    for t in tasks {
        let totals = t.await.context("member task")??;
        report.latencies.extend(totals.batch_latencies);
        report.records += totals.records;
        report.dead_letters += totals.dead_letters;
    }
    if let Some(p) = producer.take() {
        p.await??;
    }
    report.latencies.sort();
    Ok(report)
}

impl MembersReport {
    fn print(&self, stores: &Stores) {
        let l = &self.latencies;
        let mean_latency = l.iter().sum::<Duration>().as_secs_f64() / l.len().max(1) as f64;
        println!("| measure | value |\n|---|---|");
        println!("| events (committed to the end offsets) | {} |", self.events);
        println!("| records written / dead letters | {} / {} |", self.records, self.dead_letters);
        println!("| wall time, members start → every offset committed | {:.2} s |", self.wall);
        println!("| time, every partition assigned → every offset committed | {:.2} s |", self.secs);
        println!(
            "| **sustained events/s** (after the group joined) | **{:.0}** |",
            self.events as f64 / self.secs
        );
        println!("| records/s | {:.0} |", self.records as f64 / self.secs);
        println!(
            "| batch latency p50 / p99 / max (first event batched → written) | {:.0} / {:.0} / {:.0} ms ({} batches) |",
            percentile(l, 0.5),
            percentile(l, 0.99),
            percentile(l, 1.0),
            l.len()
        );
        println!("| peak RSS of the process while the members ran | {:.0} MiB |", self.peak_rss);
        println!("| peak lag | {} |", self.peak_lag);
        for s in stores.all() {
            let secs_in: f64 = self.metrics.iter().map(|m| m.saga.write_seconds_total(s.name())).sum();
            let per_batch = secs_in / l.len().max(1) as f64;
            println!(
                "| {} store: mean write per batch (queueing for a group write included), share of mean batch latency | {:.0} ms, {:.0} % |",
                s.name(),
                per_batch * 1e3,
                per_batch / mean_latency * 100.0
            );
        }
    }
}

/// Every record of the run in every store (as `verify` checks), and as many
/// dead letters as poison events.
async fn verify(
    config: &Config,
    stores: &Stores,
    batches: &[Batch],
    dead_letters: u64,
) -> anyhow::Result<()> {
    let mut ids = Vec::new();
    let mut poison = 0;
    for b in batches {
        let (recs, dead) = parse_events(&b.events);
        ids.extend(recs.into_iter().map(|r| r.id));
        poison += dead.len() as u64;
    }
    let unique: HashSet<&RecordId> = ids.iter().collect();
    let diff =
        apex_ingest::verify::check_ids(stores, &ids, &apex_ingest::verify::Expectations::of(config)).await?;
    let missing: usize = diff.missing.values().map(Vec::len).sum();
    println!(
        "| verify: records of the run in every store | {} checked, {missing} missing{} |",
        unique.len(),
        if diff.is_clean() { " (clean)" } else { " — NOT CLEAN" }
    );
    println!("| poison events / dead letters written | {poison} / {dead_letters} |");
    anyhow::ensure!(diff.is_clean(), "verify found missing records: {:?}", diff.missing);
    anyhow::ensure!(poison == dead_letters, "{poison} poison events but {dead_letters} dead letters");
    Ok(())
}

/// Nearest-neighbour recall of the vector role: for a sample of the run's
/// embedded records, whether a search with the record's own vector returns it
/// (or an identical vector) first.
async fn recall(
    config: &Config,
    stores: &Stores,
    policy: &EmbedPolicy,
    batches: &[Batch],
) -> anyhow::Result<()> {
    const SAMPLE: usize = 200;
    let Some(vector) = &stores.vector else { return Ok(()) };
    let embedder = app::build_embedder(config)?;
    let mut sample = Vec::new();
    for b in batches.iter().step_by((batches.len() / 20).max(1)) {
        let (records, _) = parse_events(&b.events);
        let rows = process_records(embedder.as_ref(), policy, records).await?;
        sample.extend(rows.into_iter().filter(ProcessedRecord::is_embedded).take(SAMPLE / 20));
    }
    let mut first = 0;
    for r in &sample {
        let hits = vector.search(&r.embedding, 1, &Default::default()).await?;
        if hits.first().is_some_and(|(id, score)| *id == r.record.id || *score >= 0.9999) {
            first += 1;
        }
    }
    println!(
        "| nearest-neighbour recall@1 (a record's own vector finds it first) | {first} of {} ({:.1} %) |",
        sample.len(),
        100.0 * first as f64 / sample.len().max(1) as f64
    );
    Ok(())
}

/// Each store's raw ceiling over the same rows, under fresh ids.
async fn ceilings(
    args: &Args,
    config: &Config,
    stores: &Stores,
    policy: &EmbedPolicy,
    batches: &[Batch],
    pipeline_records_per_s: f64,
) -> anyhow::Result<()> {
    let embedder = app::build_embedder(config)?;
    let take = (args.ceiling_events as usize).div_ceil(config.batch.max_events);
    let salt = format!("#ceiling-{:08x}", rand::random::<u32>());
    let mut work: Vec<Vec<ProcessedRecord>> = Vec::new();
    // Spread over both streams, as the pipeline's batches are.
    let step = (batches.len() / take.max(1)).max(1);
    for b in batches.iter().step_by(step).take(take) {
        let (mut recs, _) = parse_events(&b.events);
        for r in &mut recs {
            r.id = RecordId::derive(r.format, &format!("{}{salt}", r.natural_key));
        }
        work.push(process_records(embedder.as_ref(), policy, recs).await?);
    }
    let concurrency = config.batch.max_in_flight * args.members;
    let rows: usize = work.iter().map(Vec::len).sum();
    println!(
        "\nRaw ceilings: {rows} records in {} batches, {concurrency} at once, bare upsert loops",
        work.len()
    );
    println!("| store | records/s | pipeline ÷ ceiling |\n|---|---|---|");
    let work: Vec<Vec<&ProcessedRecord>> = work.iter().map(|rows| rows.iter().collect()).collect();
    let mut slowest = f64::INFINITY;
    for s in stores.all() {
        let started = Instant::now();
        let store: Arc<dyn BatchStore> = s.clone();
        let mut writes = futures::stream::iter(work.iter().map(|rows| {
            let store = store.clone();
            async move { store.upsert_batch(rows).await }
        }))
        .buffer_unordered(concurrency);
        while let Some(r) = writes.next().await {
            r?;
        }
        let rate = rows as f64 / started.elapsed().as_secs_f64();
        slowest = slowest.min(rate);
        println!("| {} | {rate:.0} | {:.2} |", s.name(), pipeline_records_per_s / rate);
    }
    println!(
        "| **pipeline ÷ slowest ceiling** | | **{:.2}** ({pipeline_records_per_s:.0} ÷ {slowest:.0} records/s) |",
        pipeline_records_per_s / slowest
    );
    Ok(())
}
