//! The `apex-ingest` command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use tokio_util::sync::CancellationToken;

use apex_ingest::app::{self, RunTotals};
use apex_ingest::config::{Config, SourceKind};
use apex_ingest::metrics::{self, Metrics};
use apex_ingest::store::Stores;
use apex_ingest::telemetry;

#[derive(Parser)]
#[command(
    name = "apex-ingest",
    version,
    about = "Turns Samsara telemetry and carrier EDI into durable, queryable memory",
    long_about = "Turns Samsara telemetry and carrier EDI into durable, queryable memory.\n\n\
        Events are collected in batches (100 events or 30 s), parsed, turned into graph \
        entities and embeddings, and written to every store through one batched saga. \
        Poison events go to the dead-letter table with their reason.\n\n\
        Configuration: a TOML file (--config) plus APEX_<SECTION>_<KEY> environment \
        variables, e.g. APEX_BATCH_MAX_EVENTS=50. Logs: RUST_LOG, APEX_LOG_FORMAT=json."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the whole pipeline once on generated traffic with embedded stores and
    /// prints a summary that reconciles events in against every store.
    ///
    /// Needs nothing installed. Its data lands in --data-dir (default ./apex-demo),
    /// whose store files are replaced at every run.
    Demo(DemoArgs),
    /// Runs the long-lived service from a config file: source, batcher,
    /// orchestrator and stores as configured, with /metrics, /healthz and /readyz.
    ///
    /// Batches take the direct path, or with temporal.rollout_percent above 0 that
    /// share of them (by a stable hash of the batch id) runs as a BatchIngestWorkflow
    /// on Temporal; `apex-ingest worker` processes must run it. A batch is
    /// committed only once it is written, on either path.
    ///
    /// With source.kind = "kafka" it is one member of the [kafka] consumer group:
    /// offsets are committed only for fully written batches, partitions pause at
    /// batch.max_in_flight, and poison records also go to kafka.dlq_topic.
    /// Stops at the end of a finite source, or at SIGTERM / Ctrl-C: stops fetching,
    /// gives batches in flight batch.drain_deadline, commits and leaves the group.
    Run {
        /// TOML configuration file; APEX_* environment variables override it.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Runs a Temporal worker: polls temporal.task_queue and runs batch workflows,
    /// their per-event child workflows and the activities (parse,
    /// extract_entities, embed, write_batch) against the configured stores.
    ///
    /// Concurrency: temporal.max_concurrent_workflow_tasks and
    /// temporal.max_concurrent_activities; reports temporal.build_id. At SIGTERM /
    /// Ctrl-C it stops polling and lets running tasks finish; workflows it was
    /// running resume on any other worker.
    Worker {
        /// TOML configuration file; APEX_* environment variables override it.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Checks that every record id is present in every configured store and
    /// prints the differences; exits non-zero when there are any.
    ///
    /// Without --since/--until it compares the stores' whole id sets; with them
    /// it checks the records whose event time falls in [since, until).
    Verify {
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Start of the event-time window (RFC 3339, e.g. 2026-11-20T00:00:00Z).
        #[arg(long, requires = "until")]
        since: Option<chrono::DateTime<chrono::Utc>>,
        /// End of the event-time window (exclusive).
        #[arg(long, requires = "since")]
        until: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// Creates or updates the Kafka topics defined in topics/ and lists topics.
    Topics {
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        action: TopicsAction,
    },
    /// Writes synthetic Samsara or EDI traffic to a Kafka topic (load generator).
    ///
    /// Keys are vehicle ids (Samsara) or sender SCACs (EDI), so a key's events
    /// stay in order in one partition. Waits until the broker acknowledged all.
    Produce(ProduceArgs),
    /// Lists, shows and replays dead letters (events that could not be parsed or validated).
    Dlq {
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        action: DlqAction,
    },
}

#[derive(Subcommand)]
enum DlqAction {
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

#[derive(Subcommand)]
enum TopicsAction {
    /// Creates missing topics, raises partition counts and sets retention and
    /// cleanup policy; prints what changed and any drift it cannot fix.
    Apply {
        /// Topic definitions.
        #[arg(long, default_value = "topics/topics.toml")]
        file: PathBuf,
        /// Use this replication factor for every topic instead of the file's
        /// (1 on a single-broker development cluster).
        #[arg(long, value_parser = clap::value_parser!(i32).range(1..))]
        replication_factor: Option<i32>,
    },
    /// Lists the cluster's topics with partition counts and replication.
    List,
}

#[derive(clap::Args)]
struct ProduceArgs {
    /// Topic to write to.
    #[arg(long)]
    topic: String,
    /// Number of messages.
    #[arg(long)]
    events: u64,
    /// Messages per second (0 = as fast as the broker takes them).
    #[arg(long, default_value_t = 0)]
    rate: u32,
    /// samsara or edi; by default taken from the topic name.
    #[arg(long, value_parser = ["samsara", "edi"])]
    format: Option<String>,
    /// Share of deliberately invalid messages (0 to 1).
    #[arg(long, default_value_t = 0.0)]
    poison_fraction: f64,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// TOML file for [kafka] brokers; APEX_KAFKA_BROKERS overrides it.
    #[arg(long, short)]
    config: Option<PathBuf>,
}

#[derive(clap::Args)]
struct DemoArgs {
    /// Number of events to generate.
    #[arg(long, default_value_t = 10_000)]
    events: u64,
    /// Directory for the embedded stores (SQLite files).
    #[arg(long, default_value = "apex-demo")]
    data_dir: PathBuf,
    /// Share of deliberately invalid events (0 to 1).
    #[arg(long, default_value_t = 0.02)]
    poison_fraction: f64,
    /// Seed of the traffic generator; the same seed makes the same traffic.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Optional TOML file for anything else (batching, embedder, ...).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Serve /metrics on this address while the demo runs (e.g. 127.0.0.1:9464).
    #[arg(long)]
    metrics_listen: Option<String>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => {
            telemetry::init("warn,sqlx=error");
            demo(args).await
        }
        Command::Run { config } => {
            telemetry::init("info");
            run(&config).await
        }
        Command::Worker { config } => {
            telemetry::init("info");
            worker(config.as_deref()).await
        }
        Command::Verify { config, since, until } => {
            telemetry::init("warn,sqlx=error");
            verify(config.as_deref(), since.zip(until)).await
        }
        Command::Topics { config, action } => {
            telemetry::init("warn");
            topics(config.as_deref(), action).await
        }
        Command::Produce(args) => {
            telemetry::init("warn");
            produce(args).await
        }
        Command::Dlq { config, action } => {
            telemetry::init("warn,sqlx=error");
            dlq(config.as_deref(), action).await
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn demo(args: DemoArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.events > 0, "--events must be at least 1");
    // Flags win over the file; APEX_* variables are applied by Config::load.
    let mut config = Config::load(args.config.as_deref())?;
    config.source.kind = SourceKind::Generator;
    config.source.events = args.events;
    config.source.poison_fraction = args.poison_fraction;
    config.source.seed = args.seed;
    config.stores.data_dir = args.data_dir;
    config.metrics.listen = args.metrics_listen.unwrap_or_default();
    let config_checked = config.clone();
    anyhow::ensure!(
        (0.0..=1.0).contains(&config_checked.source.poison_fraction),
        "--poison-fraction must be between 0 and 1"
    );
    for f in ["records.db", "graph.db", "vectors.db"] {
        for suffix in ["", "-wal", "-shm"] {
            let p = config.stores.data_dir.join(format!("{f}{suffix}"));
            if p.exists() {
                std::fs::remove_file(&p).with_context(|| format!("removing {}", p.display()))?;
            }
        }
    }

    let metrics = serve_metrics(&config).await?;
    let stores = Stores::open(&config).await?;
    let shutdown = CancellationToken::new();
    app::cancel_on_signal(shutdown.clone());
    let orchestrator = app::direct_over(&config, &stores, metrics.clone(), &shutdown)?;
    let bar = ProgressBar::new(args.events);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} events ({per_sec}) {msg}",
        )
        .context("progress template")?,
    );
    let totals = app::run_pipeline(
        &config,
        app::build_source(&config, metrics.clone())?,
        orchestrator,
        metrics.clone(),
        shutdown,
        |r| bar.inc(r.events as u64),
    )
    .await?;
    bar.finish_and_clear();
    print_summary(&config, &stores, &metrics, &totals).await
}

async fn print_summary(
    config: &Config,
    stores: &Stores,
    metrics: &Metrics,
    t: &RunTotals,
) -> anyhow::Result<()> {
    use std::fmt::Write as _;
    // Built whole and written once: a reader that went away (`| head`) is not an error.
    let mut out = String::new();
    let secs = t.elapsed.as_secs_f64().max(1e-9);
    writeln!(
        out,
        "apex-ingest demo: {} events in {secs:.2} s ({:.0} events/s)",
        t.events,
        t.events as f64 / secs
    )?;
    writeln!(out, "data: {} (records.db, graph.db, vectors.db)\n", config.stores.data_dir.display())?;
    let parsed = t.events - t.dead_letters;
    writeln!(out, "events in        {:>8}", t.events)?;
    writeln!(
        out,
        "  parsed         {parsed:>8}  -> {} records (an EDI interchange may hold several)",
        t.records
    )?;
    writeln!(out, "  dead letters   {:>8}", t.dead_letters)?;
    let batches: Vec<String> = t.batches.iter().map(|(r, n)| format!("{r} {n}")).collect();
    writeln!(out, "batches          {}", batches.join(", "))?;
    writeln!(out, "dead letters by reason")?;
    let dead = stores.relational.dead_letter_counts().await?;
    for (reason, n) in &dead {
        writeln!(out, "  {reason:<16} {n:>6}")?;
    }
    let dead_total: u64 = dead.values().sum();
    writeln!(out, "records per store")?;
    let mut reconciled = dead_total == t.dead_letters;
    for store in stores.all() {
        let n = store.count_records().await?;
        let ok = n == t.records;
        reconciled &= ok;
        writeln!(
            out,
            "  {:<16} {n:>6}  {:<8}  mean batch write {:.1} ms",
            store.name(),
            if ok { "ok" } else { "MISMATCH" },
            metrics.mean_write_seconds(store.name()) * 1000.0
        )?;
    }
    if reconciled {
        writeln!(
            out,
            "\nreconciled: each store holds all {} records, and {parsed} parsed events + {dead_total} dead letters = {} events in",
            t.records, t.events
        )?;
    }
    if let Err(e) = std::io::Write::write_all(&mut std::io::stdout(), out.as_bytes())
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        return Err(e.into());
    }
    anyhow::ensure!(
        reconciled,
        "summary does not reconcile: expected {} records in every store and {} dead letters (table has {dead_total})",
        t.records,
        t.dead_letters
    );
    Ok(())
}

async fn run(config_path: &std::path::Path) -> anyhow::Result<()> {
    let config = Config::load(Some(config_path))?;
    let metrics = serve_metrics(&config).await?;
    let shutdown = CancellationToken::new();
    app::cancel_on_signal(shutdown.clone());
    let (_stores, orchestrator) = app::build_orchestrator(&config, metrics.clone(), &shutdown).await?;
    let source = app::build_source(&config, metrics.clone())?;
    tracing::info!(source = ?config.source.kind, data_dir = %config.stores.data_dir.display(), "pipeline starting");
    let t = app::run_pipeline(&config, source, orchestrator, Arc::clone(&metrics), shutdown, |r| {
        tracing::info!(batch = %r.batch_id, events = r.events, records = r.records,
            dead_letters = r.dead_letters, reason = r.close_reason.as_str(), "batch written");
    })
    .await?;
    tracing::info!(
        events = t.events,
        records = t.records,
        dead_letters = t.dead_letters,
        seconds = t.elapsed.as_secs_f64(),
        "pipeline finished"
    );
    Ok(())
}

/// Metrics, served on `metrics.listen` unless it is empty.
async fn serve_metrics(config: &Config) -> anyhow::Result<Arc<Metrics>> {
    let metrics = Metrics::new();
    if let Some(addr) = config.metrics_addr()? {
        let bound = metrics::serve(addr, metrics.clone()).await?;
        tracing::info!(addr = %bound, "serving /metrics, /healthz, /readyz");
    }
    Ok(metrics)
}

async fn worker(config_path: Option<&std::path::Path>) -> anyhow::Result<()> {
    let config = Config::load(config_path)?;
    let metrics = serve_metrics(&config).await?;
    let stores = Stores::open(&config).await?;
    let shutdown = CancellationToken::new();
    app::cancel_on_signal(shutdown.clone());
    let writer = app::saga_writer(&config, &stores, metrics.clone(), &shutdown)?;
    apex_ingest::orchestrate::temporal::worker::run_worker(
        &config,
        app::build_embedder(&config)?,
        writer,
        &metrics,
        shutdown,
    )
    .await
}

async fn topics(config: Option<&std::path::Path>, action: TopicsAction) -> anyhow::Result<()> {
    use apex_ingest::kafka::topics;
    let config = Config::load(config)?;
    let brokers = &config.kafka.brokers;
    match action {
        TopicsAction::Apply { file, replication_factor } => {
            let specs = topics::load(&file)?;
            let reports = topics::apply(brokers, &specs, replication_factor).await?;
            for r in &reports {
                println!("{r}");
            }
            let drift = reports
                .iter()
                .flat_map(|r| &r.changes)
                .filter(|c| matches!(c, topics::Change::Drift(_)))
                .count();
            anyhow::ensure!(drift == 0, "{drift} difference(s) apply cannot fix; see DRIFT above");
        }
        TopicsAction::List => {
            let list = topics::list(brokers)?;
            println!("{:<40} {:>10} {:>11}", "topic", "partitions", "replication");
            for t in &list {
                println!("{:<40} {:>10} {:>11}", t.name, t.partitions, t.replication);
            }
        }
    }
    Ok(())
}

async fn produce(args: ProduceArgs) -> anyhow::Result<()> {
    use apex_ingest::kafka::producer::{self, ProduceSettings};
    use apex_ingest::model::Format;
    let config = Config::load(args.config.as_deref())?;
    let format = match args.format.as_deref() {
        Some("edi") => Format::Edi,
        Some(_) => Format::Samsara,
        None => producer::format_of_topic(&args.topic).with_context(|| {
            format!(
                "cannot tell the format of topic {:?} from its name; pass --format samsara|edi",
                args.topic
            )
        })?,
    };
    let settings = ProduceSettings {
        topic: args.topic,
        format,
        events: args.events,
        rate: std::num::NonZeroU32::new(args.rate),
        poison_fraction: args.poison_fraction,
        seed: args.seed,
    };
    let bar = ProgressBar::new(args.events);
    let report = producer::produce(&config.kafka.brokers, &settings, |n| bar.set_position(n)).await?;
    bar.finish_and_clear();
    let secs = report.elapsed.as_secs_f64().max(1e-9);
    println!(
        "produced {} {} messages to {} in {secs:.2} s ({:.0} messages/s)",
        report.sent,
        format.as_str(),
        settings.topic,
        report.sent as f64 / secs
    );
    Ok(())
}

async fn verify(
    config: Option<&std::path::Path>,
    window: Option<(chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>)>,
) -> anyhow::Result<()> {
    let config = Config::load(config)?;
    let stores = Stores::open(&config).await?;
    let diff = apex_ingest::verify::reconcile(&stores, window, &config.embed.skip_kinds).await?;
    println!("checked {} record ids", diff.checked);
    for store in &diff.skipped {
        println!("  {store:<12} not checked: in-process, empty in a new process by design");
    }
    for (store, missing) in &diff.missing {
        println!("  {store:<12} missing {}", missing.len());
        for id in missing.iter().take(20) {
            println!("    {id}");
        }
        if missing.len() > 20 {
            println!("    ... and {} more", missing.len() - 20);
        }
    }
    anyhow::ensure!(diff.is_clean(), "stores differ");
    println!("no differences");
    Ok(())
}

async fn dlq(config: Option<&std::path::Path>, action: DlqAction) -> anyhow::Result<()> {
    use apex_ingest::store::DeadLetterFilter;
    let config = Config::load(config)?;
    let stores = Stores::open(&config).await?;
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
            let report = apex_ingest::saga::dlq::replay(
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
