//! Batches waiting on Temporal, so a stall is seen: without a worker polling,
//! a batch would wait silently until `workflow_timeout`. Exports how long the
//! oldest batch has waited and how many are past `temporal.stall_warning`,
//! and then asks the server who polls the task queue and warns by name.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use temporalio_client::Client;
use temporalio_common::protos::temporal::api::enums::v1::{TaskQueueKind, TaskQueueType};
use temporalio_common::protos::temporal::api::taskqueue::v1::TaskQueue;
use temporalio_common::protos::temporal::api::workflowservice::v1::DescribeTaskQueueRequest;
use tokio_util::sync::CancellationToken;

use crate::config::TemporalConfig;
use crate::metrics::OrchestratorMetrics;

/// When the gauges refresh (at most; sooner for a short `stall_warning`).
const CHECK_EVERY: Duration = Duration::from_secs(5);

/// The start times of the batches waiting on their workflows.
#[derive(Default)]
pub struct Waiting {
    next: AtomicU64,
    since: Mutex<HashMap<u64, Instant>>,
}

/// One waiting batch; it stops counting when dropped (answered, failed or given up).
pub struct WaitingBatch {
    waiting: Arc<Waiting>,
    id: u64,
}

impl Drop for WaitingBatch {
    fn drop(&mut self) {
        self.waiting.since.lock().unwrap_or_else(PoisonError::into_inner).remove(&self.id);
    }
}

impl Waiting {
    pub fn enter(self: &Arc<Self>) -> WaitingBatch {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.since.lock().unwrap_or_else(PoisonError::into_inner).insert(id, Instant::now());
        WaitingBatch { waiting: self.clone(), id }
    }

    /// The oldest batch's wait at `now`, and how many have waited longer than `limit`.
    fn ages(&self, now: Instant, limit: Duration) -> (Duration, usize) {
        let since = self.since.lock().unwrap_or_else(PoisonError::into_inner);
        let waits = since.values().map(|&at| now.saturating_duration_since(at));
        waits.fold((Duration::ZERO, 0), |(oldest, over), wait| {
            (oldest.max(wait), over + usize::from(wait > limit))
        })
    }
}

/// Refreshes the gauges until `shutdown`; while some batch is past
/// `stall_warning`, warns once per `stall_warning`, naming the task queue when
/// no worker polls it.
pub async fn watch(
    waiting: Arc<Waiting>,
    client: Client,
    config: TemporalConfig,
    metrics: OrchestratorMetrics,
    shutdown: CancellationToken,
) {
    let limit = config.stall_warning;
    let mut tick = tokio::time::interval(CHECK_EVERY.min(limit / 2).max(Duration::from_millis(100)));
    let mut warned: Option<Instant> = None;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let (oldest, stalled) = waiting.ages(Instant::now(), limit);
        metrics.temporal_waiting(&config.task_queue, oldest, stalled);
        if stalled == 0 || warned.is_some_and(|at| at.elapsed() < limit) {
            continue;
        }
        warned = Some(Instant::now());
        let pollers = workflow_pollers(&client, &config).await;
        if let Ok(n) = pollers {
            metrics.temporal_pollers(&config.task_queue, n);
        }
        match pollers {
            Ok(0) => tracing::warn!(
                task_queue = %config.task_queue, stalled, oldest_secs = oldest.as_secs(),
                "no worker polls the task queue: batches wait until workflow_timeout (start `apex-ingest worker`)"
            ),
            Ok(pollers) => tracing::warn!(
                task_queue = %config.task_queue, stalled, oldest_secs = oldest.as_secs(), pollers,
                "batches on Temporal past stall_warning although workers poll (busy or slow workers)"
            ),
            Err(e) => tracing::warn!(
                task_queue = %config.task_queue, stalled, oldest_secs = oldest.as_secs(), error = %e,
                "batches on Temporal past stall_warning; the task queue's pollers are unknown"
            ),
        }
    }
}

/// How many workers polled the task queue for workflow tasks lately.
async fn workflow_pollers(client: &Client, config: &TemporalConfig) -> Result<usize, tonic::Status> {
    let request = DescribeTaskQueueRequest {
        namespace: config.namespace.clone(),
        task_queue: Some(TaskQueue {
            name: config.task_queue.clone(),
            kind: TaskQueueKind::Normal as i32,
            ..Default::default()
        }),
        task_queue_type: TaskQueueType::Workflow as i32,
        ..Default::default()
    };
    let answer =
        client.connection().workflow_service().describe_task_queue(tonic::Request::new(request)).await?;
    Ok(answer.into_inner().pollers.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_counts_while_it_waits_and_stops_when_dropped() {
        let waiting = Arc::new(Waiting::default());
        let start = Instant::now();
        let limit = Duration::from_secs(60);
        assert_eq!(waiting.ages(start, limit), (Duration::ZERO, 0));
        let first = waiting.enter();
        let second = waiting.enter();
        let later = Instant::now() + Duration::from_secs(90);
        let (oldest, over) = waiting.ages(later, limit);
        assert!(oldest >= Duration::from_secs(90), "{oldest:?}");
        assert_eq!(over, 2);
        drop(first);
        assert_eq!(waiting.ages(later, limit).1, 1);
        drop(second);
        assert_eq!(waiting.ages(later, limit), (Duration::ZERO, 0));
    }
}
