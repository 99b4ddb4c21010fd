//! `apex-ingest demo`: one embedded run on generated traffic and a summary that reconciles.

use std::path::PathBuf;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use tokio_util::sync::CancellationToken;

use super::serve_metrics;
use crate::app::{self, RunTotals};
use crate::config::{Config, SourceKind};
use crate::metrics::Metrics;
use crate::store::Stores;
use crate::verify::left_out;

#[derive(clap::Args)]
pub struct DemoArgs {
    /// At most this many events (0: every event of the generated span).
    #[arg(long, default_value_t = 0)]
    events: u64,
    /// Trucks in the generated fleet.
    #[arg(long, default_value_t = 6)]
    vehicles: usize,
    /// Days of driving the generated world runs, ending at --until.
    #[arg(long, default_value_t = 2.0)]
    days: f64,
    /// The world's last instant (RFC 3339, e.g. 2026-12-01T00:00:00Z); default now.
    /// With the same --seed and --until a run repeats exactly.
    #[arg(long)]
    until: Option<String>,
    /// Write the generator's ground truth (trips, shipments and which were late,
    /// safety events, geofence crossings) to this JSON file.
    #[arg(long)]
    truth: Option<PathBuf>,
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

pub async fn demo(args: DemoArgs) -> anyhow::Result<()> {
    // Flags win over the file; APEX_* variables are applied by Config::load.
    let mut config = Config::load(args.config.as_deref())?;
    config.source.kind = SourceKind::Generator;
    config.source.events = args.events;
    config.source.vehicles = args.vehicles;
    config.source.days = args.days;
    config.source.until = args.until.unwrap_or_default();
    config.source.truth = args.truth.unwrap_or_default();
    config.source.poison_fraction = args.poison_fraction;
    config.source.seed = args.seed;
    config.stores.data_dir = args.data_dir;
    config.metrics.listen = args.metrics_listen.unwrap_or_default();
    let source = &config.source;
    for (ok, flag, rule) in [
        ((0.0..=1.0).contains(&source.poison_fraction), "--poison-fraction", "be between 0 and 1"),
        (source.vehicles > 0, "--vehicles", "be at least 1"),
        (source.days > 0.0 && source.days <= 3660.0, "--days", "be more than 0 and at most 3660"),
        (
            source.until.is_empty() || source.until.parse::<chrono::DateTime<chrono::Utc>>().is_ok(),
            "--until",
            "be an RFC 3339 instant like 2026-12-01T00:00:00Z",
        ),
    ] {
        anyhow::ensure!(ok, "{flag} must {rule}");
    }
    for f in ["records.db", "graph.db", "vectors.db"] {
        for suffix in ["", "-wal", "-shm"] {
            let p = config.stores.data_dir.join(format!("{f}{suffix}"));
            if p.exists() {
                std::fs::remove_file(&p).with_context(|| format!("removing {}", p.display()))?;
            }
        }
    }

    let metrics = serve_metrics(&config).await?;
    let stores = app::open_stores(&config).await?;
    let shutdown = CancellationToken::new();
    app::cancel_on_signal(shutdown.clone());
    let orchestrator = app::direct_over(&config, &stores, metrics.clone(), &shutdown)?;
    // Without --events the count is the world's, known only at its end.
    let (bar, template) = match args.events {
        0 => (ProgressBar::new_spinner(), "{spinner} [{elapsed_precise}] {pos} events ({per_sec}) {msg}"),
        n => (
            ProgressBar::new(n),
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} events ({per_sec}) {msg}",
        ),
    };
    bar.set_style(ProgressStyle::with_template(template).context("progress template")?);
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
    // The vector role holds only what `[embed] skip_kinds` embeds, the graph
    // no node for what `[graph] state_kinds` keeps as vehicle state.
    let vector = stores.separate_vector_store().map(|v| v.name());
    let graph = stores.graph.as_ref().map(|g| g.name());
    let unembedded = left_out(stores, &config.embed.skip_kinds, vector, None).await?.len() as u64;
    let as_state = left_out(stores, &config.graph.state_kinds, graph, None).await?.len() as u64;
    for store in stores.all() {
        let n = store.count_records().await?;
        let expected = if Some(store.name()) == vector {
            t.records - unembedded
        } else if Some(store.name()) == graph {
            t.records - as_state
        } else {
            t.records
        };
        let ok = n == expected;
        reconciled &= ok;
        writeln!(
            out,
            "  {:<16} {n:>6}  {:<8}  mean batch write {:.1} ms",
            store.name(),
            if ok { "ok" } else { "MISMATCH" },
            metrics.saga.mean_write_seconds(store.name()) * 1000.0
        )?;
    }
    let (vehicles, stale) = crate::verify::stale_states(stores, &config.graph.state_kinds, None).await?;
    if vehicles > 0 {
        reconciled &= stale.is_empty();
        writeln!(
            out,
            "  graph state      {vehicles:>6}  {:<8}  vehicle readings, each the newest of {as_state} pings kept as state",
            if stale.is_empty() { "ok" } else { "MISMATCH" },
        )?;
    }
    if reconciled {
        writeln!(
            out,
            "\nreconciled: each store holds all {} records{}{}, and {parsed} parsed events + {dead_total} dead \
             letters = {} events in",
            t.records,
            if unembedded > 0 {
                format!(" (the vector store all but {unembedded} of kinds given none)")
            } else {
                String::new()
            },
            if as_state > 0 {
                format!(" (the graph all but {as_state} pings kept as vehicle state)")
            } else {
                String::new()
            },
            t.events
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
