//! Assembles the stages from configuration and drives them:
//! source → bounded queue → batcher → up to `max_in_flight` batches in the
//! orchestrator at once. Used by `demo` and `run` alike.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use backon::{ExponentialBuilder, Retryable};
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::batch::{Batch, Batcher, CloseReason};
use crate::config::{Config, EmbedKind, SourceKind};
use crate::metrics::Metrics;
use crate::orchestrate::direct::DirectOrchestrator;
use crate::orchestrate::{BatchReport, OrchestrateError, Orchestrator};
use crate::pipeline::embed::{Embedder, HashingEmbedder, OpenAiEmbedder, OpenAiSettings};
use crate::saga::SagaWriter;
use crate::source::Source;
use crate::source::file::FileSource;
use crate::source::generator::{GeneratorSettings, GeneratorSource};
use crate::store::Stores;

/// Longest wait between two tries of a batch that failed transiently.
const BATCH_RETRY_MAX_DELAY: Duration = Duration::from_secs(30);

#[derive(Debug, Default, Clone)]
pub struct RunTotals {
    pub events: u64,
    pub records: u64,
    pub dead_letters: u64,
    pub batches: BTreeMap<&'static str, u64>,
    pub already_written: u64,
    pub elapsed: Duration,
}

pub fn build_embedder(config: &Config) -> anyhow::Result<Arc<dyn Embedder>> {
    let e = &config.embed;
    Ok(match e.kind {
        EmbedKind::Hashing => Arc::new(HashingEmbedder::new(e.dims)),
        EmbedKind::Openai => Arc::new(OpenAiEmbedder::new(OpenAiSettings {
            base_url: e.url.clone(),
            model: e.model.clone(),
            api_key: std::env::var(&e.api_key_env).ok(),
            dims: e.dims,
            max_inputs_per_request: e.max_inputs_per_request,
            requests_per_second: std::num::NonZeroU32::new(e.requests_per_second)
                .context("embed.requests_per_second must be at least 1")?,
            max_attempts: e.max_attempts,
            first_backoff: e.first_backoff,
            timeout: e.timeout,
        })?),
    })
}

pub fn build_source(config: &Config) -> anyhow::Result<Box<dyn Source>> {
    let s = &config.source;
    Ok(match s.kind {
        SourceKind::Generator => Box::new(GeneratorSource::new(GeneratorSettings {
            events: (s.events > 0).then_some(s.events),
            rate: config.generator_rate(),
            poison_fraction: s.poison_fraction,
            edi_fraction: s.edi_fraction,
            vehicles: s.vehicles,
            partitions: s.partitions,
            seed: s.seed,
        })),
        SourceKind::File => Box::new(FileSource::new(&s.paths)?),
    })
}

/// The configured stores and the direct orchestrator over them.
pub async fn build_direct(
    config: &Config,
    metrics: Arc<Metrics>,
) -> anyhow::Result<(Stores, Arc<dyn Orchestrator>)> {
    let stores = Stores::open(config).await?;
    let orchestrator = direct_over(config, &stores, metrics)?;
    Ok((stores, orchestrator))
}

/// The direct orchestrator writing to `stores`.
pub fn direct_over(
    config: &Config,
    stores: &Stores,
    metrics: Arc<Metrics>,
) -> anyhow::Result<Arc<dyn Orchestrator>> {
    let writer = Arc::new(SagaWriter::new(stores, metrics, config.saga_settings()));
    Ok(Arc::new(DirectOrchestrator::new(build_embedder(config)?, writer)))
}

/// Runs the pipeline until the source is exhausted or `shutdown` fires, then
/// drains: the last partial batch is flushed and every batch in flight finishes.
pub async fn run_pipeline(
    config: &Config,
    source: Box<dyn Source>,
    orchestrator: Arc<dyn Orchestrator>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    on_batch: impl Fn(&BatchReport),
) -> anyhow::Result<RunTotals> {
    let started = Instant::now();
    let (event_tx, event_rx) = mpsc::channel(config.source.queue);
    let (batch_tx, batch_rx) = mpsc::channel::<Batch>(config.batch.max_in_flight);
    let source_task = tokio::spawn(source.run(event_tx, shutdown.clone()));
    let batcher = Batcher { max_events: config.batch.max_events, max_wait: config.batch.max_wait };
    let batcher_task = tokio::spawn(batcher.run(event_rx, batch_tx));
    metrics.set_ready(true);

    let mut totals = RunTotals::default();
    let mut reports = tokio_stream_of(batch_rx)
        .map(|batch| {
            let orchestrator = orchestrator.clone();
            let metrics = metrics.clone();
            let shutdown = shutdown.clone();
            async move {
                for e in &batch.events {
                    metrics.event_in(e.format.as_str());
                }
                metrics.batch_closed(batch.close_reason, batch.events.len());
                metrics.batch_started();
                let result = run_with_retries(orchestrator.as_ref(), &batch, &shutdown).await;
                metrics.batch_finished();
                result.with_context(|| format!("batch {} ({} events)", batch.id, batch.events.len()))
            }
        })
        .buffer_unordered(config.batch.max_in_flight);
    let mut failure = None;
    while let Some(result) = reports.next().await {
        match result {
            Ok(report) => {
                totals.events += report.events as u64;
                totals.records += report.records;
                totals.dead_letters += report.dead_letters;
                totals.already_written += u64::from(report.already_written);
                *totals.batches.entry(report.close_reason.as_str()).or_default() += 1;
                on_batch(&report);
            }
            Err(e) => {
                // Stop taking new events; batches already in flight still finish.
                shutdown.cancel();
                failure.get_or_insert(e);
            }
        }
    }
    metrics.set_ready(false);
    batcher_task.await.context("batcher task")?;
    let sent = source_task.await.context("source task")??;
    if let Some(e) = failure {
        return Err(e);
    }
    anyhow::ensure!(sent == totals.events, "source sent {sent} events but batches covered {}", totals.events);
    totals.elapsed = started.elapsed();
    for reason in CloseReason::ALL {
        totals.batches.entry(reason.as_str()).or_default();
    }
    Ok(totals)
}

fn tokio_stream_of<T: Send + 'static>(mut rx: mpsc::Receiver<T>) -> impl futures::Stream<Item = T> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Runs a batch; a transient failure (a store outage) is retried with growing
/// waits until it passes, so an outage stalls the pipeline (backpressure)
/// instead of losing the batch. Once shutdown is requested the batch is given
/// up (and left uncommitted). A permanent failure ends the run.
async fn run_with_retries(
    orchestrator: &dyn Orchestrator,
    batch: &Batch,
    shutdown: &CancellationToken,
) -> Result<BatchReport, OrchestrateError> {
    (|| orchestrator.run_batch(batch))
        .retry(
            ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(200))
                .with_max_delay(BATCH_RETRY_MAX_DELAY)
                .with_jitter()
                .with_max_times(usize::MAX),
        )
        .when(|e: &OrchestrateError| e.is_transient() && !shutdown.is_cancelled())
        .notify(|e, after| tracing::warn!(batch = %batch.id, error = %e, ?after, "batch failed; retrying"))
        .await
}

/// Cancels `token` at SIGTERM or Ctrl-C, so the pipeline drains and exits.
pub fn cancel_on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGTERM");
                    return;
                }
            };
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutdown requested; draining batches in flight");
        token.cancel();
    });
}
