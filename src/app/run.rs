//! The run loop: source → bounded queue → batcher → up to `max_in_flight`
//! batches in the orchestrator at once, retried through outages, drained at
//! shutdown, each finished batch handed back to the source to commit.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use backon::{ExponentialBuilder, Retryable};
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::batch::{Batch, Batcher, CloseReason};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::orchestrate::{BatchReport, OrchestrateError, Orchestrator};
use crate::saga::retry::sleep_unless_cancelled;
use crate::source::{BatchProgress, Source};

/// Longest wait between two tries of a batch that failed transiently.
const BATCH_RETRY_MAX_DELAY: Duration = Duration::from_secs(30);

#[derive(Debug, Default, Clone)]
pub struct RunTotals {
    pub events: u64,
    pub records: u64,
    pub dead_letters: u64,
    pub batches: BTreeMap<&'static str, u64>,
    pub already_written: u64,
    /// Events not run because their partition was revoked first.
    pub dropped: u64,
    /// Batches given up uncommitted: at the drain deadline, or fenced at a
    /// revoke deadline (their events still this member's then ran again).
    pub abandoned: u64,
    pub elapsed: Duration,
    /// Per written batch: its first event reaching the batcher → written and
    /// handed to the source to commit.
    pub batch_latencies: Vec<Duration>,
}

/// Runs the pipeline until the source is exhausted or `shutdown` fires, then
/// drains: the last partial batch is flushed and every batch in flight gets
/// `batch.drain_deadline` to finish; what is still running then is abandoned
/// uncommitted. The source hears of every batch (to commit and pause).
pub async fn run_pipeline(
    config: &Config,
    source: Box<dyn Source>,
    orchestrator: Arc<dyn Orchestrator>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    on_batch: impl Fn(&BatchReport),
) -> anyhow::Result<RunTotals> {
    let started = Instant::now();
    let progress = source.progress();
    metrics.set_ready(if progress.ready_at_start() {
        Ok(())
    } else {
        Err("kafka: no partitions assigned yet")
    });
    let (event_tx, event_rx) = mpsc::channel(config.source.queue);
    // One closed batch waits for a free slot at most: a longer queue here would
    // only add to every batch's latency (they are already bounded in flight).
    let (batch_tx, batch_rx) = mpsc::channel::<Batch>(1);
    let source_task = tokio::spawn(source.run(event_tx, shutdown.clone()));
    let batcher = Batcher { max_events: config.batch.max_events, max_wait: config.batch.max_wait };
    let batcher_task = tokio::spawn(batcher.run(event_rx, batch_tx));

    let abandoned = Arc::new(AtomicU64::new(0));
    let reports = tokio_stream_of(batch_rx)
        .map(|batch| {
            let run = BatchRun {
                orchestrator: orchestrator.as_ref(),
                progress: progress.as_ref(),
                metrics: &metrics,
                shutdown: &shutdown,
                abandoned: &abandoned,
            };
            let span = tracing::info_span!("batch", otel.kind = "consumer", batch.id = %batch.id,
                batch.events = batch.events.len(), batch.close_reason = batch.close_reason.as_str());
            crate::telemetry::link_messages(&span, batch.events.iter().map(|e| e.headers.as_slice()));
            run.run(batch).instrument(span)
        })
        .buffer_unordered(config.batch.max_in_flight);
    // Boxed so it can be dropped (abandoning what still runs) before the tasks are joined.
    let mut reports = Box::pin(reports);
    let drain_deadline = async {
        shutdown.cancelled().await;
        tokio::time::sleep(config.batch.drain_deadline).await;
    };
    let mut drain_deadline = std::pin::pin!(drain_deadline);
    let mut totals = RunTotals::default();
    let mut failure = None;
    loop {
        let result = tokio::select! {
            next = reports.next() => match next {
                Some(result) => result,
                None => break,
            },
            () = &mut drain_deadline => {
                tracing::warn!(deadline = ?config.batch.drain_deadline,
                    "drain deadline passed; abandoning batches in flight (uncommitted, re-delivered later)");
                break;
            }
        };
        match result {
            Ok(Finished { report, dropped, latency }) => {
                totals.dropped += dropped as u64;
                if let Some(report) = report {
                    totals.events += report.events as u64;
                    totals.records += report.records;
                    totals.dead_letters += report.dead_letters;
                    totals.already_written += u64::from(report.already_written);
                    *totals.batches.entry(report.close_reason.as_str()).or_default() += 1;
                    totals.batch_latencies.push(latency);
                    on_batch(&report);
                }
            }
            Err(e) => {
                // Stop taking new events; batches already in flight still finish.
                shutdown.cancel();
                failure.get_or_insert(e);
            }
        }
    }
    // Dropping the stream abandons whatever still runs (see `InFlight`).
    drop(reports);
    totals.abandoned = abandoned.load(Ordering::Relaxed);
    batcher_task.await.context("batcher task")?;
    let sent = source_task.await.context("source task")??;
    progress.drained();
    metrics.set_ready(Err("stopped: the pipeline has finished"));
    if let Some(e) = failure {
        return Err(e);
    }
    if totals.abandoned == 0 {
        anyhow::ensure!(
            sent == totals.events + totals.dropped,
            "source sent {sent} events but batches covered {} (and {} were dropped on revocation)",
            totals.events,
            totals.dropped
        );
    }
    totals.elapsed = started.elapsed();
    for reason in CloseReason::ALL {
        totals.batches.entry(reason.as_str()).or_default();
    }
    Ok(totals)
}

/// One batch through the orchestrator, told to its source before and after.
struct BatchRun<'a> {
    orchestrator: &'a dyn Orchestrator,
    progress: &'a dyn BatchProgress,
    metrics: &'a Metrics,
    shutdown: &'a CancellationToken,
    abandoned: &'a AtomicU64,
}

struct Finished {
    /// `None`: nothing of the batch was left to run.
    report: Option<BatchReport>,
    dropped: usize,
    latency: Duration,
}

impl BatchRun<'_> {
    async fn run(self, batch: Batch) -> anyhow::Result<Finished> {
        let mut next = batch;
        let mut dropped = 0;
        let mut first = true;
        loop {
            let dispatched = self.progress.dispatch(next);
            dropped += dispatched.dropped;
            let Some(batch) = dispatched.batch else {
                return Ok(Finished { report: None, dropped, latency: Duration::ZERO });
            };
            if std::mem::take(&mut first) {
                for e in &batch.events {
                    self.metrics.source.event_in(e.format.as_str());
                }
                self.metrics.batcher.batch_closed(batch.close_reason, batch.events.len());
            }
            self.metrics.batcher.batch_started();
            let mut in_flight =
                InFlight { run: &self, ticket: dispatched.ticket, batch: &batch, done: false };
            // Fenced: the orchestrator's future is dropped, so the batch starts
            // no further store call; what is still this member's runs again.
            let result = tokio::select! {
                biased;
                () = dispatched.fence.cancelled() => None,
                result = run_with_retries(self.orchestrator, &batch, self.metrics, self.shutdown) => Some(result),
            };
            let Some(result) = result else {
                in_flight.finish(false);
                drop(in_flight);
                next = batch;
                continue;
            };
            in_flight.finish(result.is_ok());
            let latency = batch.opened_at.elapsed();
            let report =
                result.with_context(|| format!("batch {} ({} events)", batch.id, batch.events.len()))?;
            self.metrics.batcher.batch_written(latency);
            return Ok(Finished { report: Some(report), dropped, latency });
        }
    }
}

/// A batch in the orchestrator. Dropped before it finished (the drain deadline
/// passed), it tells the source the batch was abandoned, so it is not committed.
struct InFlight<'a> {
    run: &'a BatchRun<'a>,
    ticket: u64,
    batch: &'a Batch,
    done: bool,
}

impl InFlight<'_> {
    fn finish(&mut self, written: bool) {
        self.done = true;
        self.run.metrics.batcher.batch_finished();
        if !written {
            self.run.metrics.batcher.batches_abandoned(1);
            self.run.abandoned.fetch_add(1, Ordering::Relaxed);
        }
        self.run.progress.finish(self.ticket, self.batch, written);
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.finish(false);
        }
    }
}

fn tokio_stream_of<T: Send + 'static>(mut rx: mpsc::Receiver<T>) -> impl futures::Stream<Item = T> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Runs a batch; a transient failure (a store outage) is retried with growing
/// waits until it passes, so an outage stalls the pipeline (backpressure)
/// instead of losing the batch. Once shutdown is requested the batch is given
/// up (and left uncommitted): a wait between tries ends at once, so a drain
/// during an outage does not sit out the backoff. A permanent failure ends the run.
async fn run_with_retries(
    orchestrator: &dyn Orchestrator,
    batch: &Batch,
    metrics: &Metrics,
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
        .sleep(sleep_unless_cancelled(shutdown.clone()))
        .when(|e: &OrchestrateError| e.is_transient() && !shutdown.is_cancelled())
        .notify(|e, after| {
            metrics.batcher.batch_retried();
            tracing::warn!(batch = %batch.id, error = %e, ?after, "batch failed; retrying");
        })
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
