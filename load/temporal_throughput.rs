//! Batches through Temporal with child workflows against the direct path, on
//! the real dev server (`scripts/services up temporal`). Run:
//!
//!     cargo run --release --example temporal_throughput -- [events per batch] [batches] [in flight]
//!
//! (defaults 100, 12, 4). The fan-out comes from the configuration, e.g.
//! `APEX_TEMPORAL_EVENTS_PER_CHILD=1 APEX_TEMPORAL_CHILD_STEPS=stages`
//! (`load/temporal_shapes.sh` runs every shape). Both paths get the same kind of generated traffic
//! (2 % poison) and write to embedded stores in a temporary directory; the
//! worker runs in this process, on the same two cores as the dev server.
//! Prints batches/s, events/s and per-batch latency of each path, and the
//! overhead per batch of Temporal against direct.

use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

use anyhow::Context;
use apex_ingest::app;
use apex_ingest::batch::{Batch, CloseReason};
use apex_ingest::config::Config;
use apex_ingest::metrics::Metrics;
use apex_ingest::orchestrate::Orchestrator;
use apex_ingest::orchestrate::temporal::worker::while_working;
use apex_ingest::orchestrate::temporal::{TemporalOrchestrator, connect};
use apex_ingest::source::generator::{Fleet, GeneratorSettings};
use futures::StreamExt;

struct Figures {
    wall: Duration,
    latencies: Vec<Duration>,
    events: usize,
}

impl Figures {
    fn print(&self, path: &str) {
        let mut l = self.latencies.clone();
        l.sort();
        let mean = l.iter().sum::<Duration>() / l.len() as u32;
        let secs = self.wall.as_secs_f64();
        println!(
            "{path:<9} {:>4} batches {:>6} events in {secs:>7.2} s: {:>6.2} batches/s {:>8.1} events/s; \
             per batch mean {:>7.0} ms, p50 {:>7.0} ms, max {:>7.0} ms",
            l.len(),
            self.events,
            l.len() as f64 / secs,
            self.events as f64 / secs,
            mean.as_secs_f64() * 1e3,
            l[l.len() / 2].as_secs_f64() * 1e3,
            l[l.len() - 1].as_secs_f64() * 1e3,
        );
    }

    fn mean(&self) -> Duration {
        self.latencies.iter().sum::<Duration>() / self.latencies.len() as u32
    }
}

fn batches(count: usize, events: usize, seed: u64, offset_base: i64) -> Vec<Batch> {
    let mut fleet = Fleet::new(GeneratorSettings { poison_fraction: 0.02, ..GeneratorSettings::clean(seed) });
    (0..count)
        .map(|_| {
            let evs = (&mut fleet)
                .take(events)
                .map(|mut e| {
                    e.origin.offset += offset_base;
                    e
                })
                .collect();
            Batch::new(evs, CloseReason::Size)
        })
        .collect()
}

async fn run_all(
    orchestrator: &dyn Orchestrator,
    batches: &[Batch],
    in_flight: usize,
) -> anyhow::Result<Figures> {
    let started = Instant::now();
    let latencies: Vec<anyhow::Result<Duration>> = futures::stream::iter(batches)
        .map(|b| async move {
            let t = Instant::now();
            orchestrator.run_batch(b).await.with_context(|| format!("batch {}", b.id))?;
            Ok(t.elapsed())
        })
        .buffer_unordered(in_flight)
        .collect()
        .await;
    Ok(Figures {
        wall: started.elapsed(),
        latencies: latencies.into_iter().collect::<anyhow::Result<_>>()?,
        events: batches.iter().map(|b| b.events.len()).sum(),
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let arg = |i: usize, default: usize| -> anyhow::Result<usize> {
        std::env::args()
            .nth(i)
            .map_or(Ok(default), |a| a.parse().with_context(|| format!("argument {i}: {a}")))
    };
    let (events, count, in_flight) = (arg(1, 100)?, arg(2, 12)?, arg(3, 4)?);
    anyhow::ensure!(events > 0 && count > 0 && in_flight > 0, "arguments must be at least 1");
    let unique = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();

    let dir = tempfile::tempdir()?;
    let mut config = Config::load(None)?;
    config.stores = Config::default().stores;
    config.stores.data_dir = dir.path().join("temporal");
    config.temporal.task_queue = format!("apex-load-{unique}");
    let stores = apex_ingest::app::open_stores(&config).await?;
    let metrics = Metrics::new();
    let client = connect(&config.temporal).await?;
    let temporal = TemporalOrchestrator::new(client, config.temporal.clone(), metrics.clone());

    let mut direct_config = config.clone();
    direct_config.stores.data_dir = dir.path().join("direct");
    let direct_stores = apex_ingest::app::open_stores(&direct_config).await?;
    let direct = app::direct_over(&direct_config, &direct_stores, Metrics::new(), &CancellationToken::new())?;

    let writer = app::saga_writer(&config, &stores, metrics.clone(), &CancellationToken::new())?;
    let measured = measure(&temporal, direct.as_ref(), unique, (events, count, in_flight));
    while_working(&config, app::build_embedder(&config)?, writer, &metrics, Box::new(|_| Ok(())), measured)
        .await?
}

async fn measure(
    temporal: &TemporalOrchestrator,
    direct: &dyn Orchestrator,
    unique: u64,
    (events, count, in_flight): (usize, usize, usize),
) -> anyhow::Result<()> {
    // Fresh offsets per run: every batch is a new workflow id.
    let base = (unique % 1_000_000) as i64 * 1_000_000;
    println!("{count} batches of {events} events, {in_flight} in flight");
    let on_direct = run_all(direct, &batches(count, events, unique, base), in_flight).await?;
    on_direct.print("direct");
    let on_temporal = run_all(temporal, &batches(count, events, unique + 1, base), in_flight).await?;
    on_temporal.print("temporal");
    let overhead = on_temporal.mean().saturating_sub(on_direct.mean());
    println!(
        "overhead of Temporal per batch: {:.0} ms ({:.1} ms per event)",
        overhead.as_secs_f64() * 1e3,
        overhead.as_secs_f64() * 1e3 / events as f64
    );
    Ok(())
}
