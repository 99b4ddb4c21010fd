//! The orchestrators' metrics: the rollout between paths, batch workflows, and batches waiting on Temporal.

use std::time::Duration;

use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGaugeVec, Registry};

use super::{counter_vec, gauge_vec, registered};

#[derive(Clone)]
pub struct OrchestratorMetrics {
    routed: IntCounterVec,
    starts: IntCounterVec,
    results: IntCounterVec,
    seconds: Histogram,
    oldest_waiting: IntGaugeVec,
    stalled: IntGaugeVec,
    pollers: IntGaugeVec,
}

impl OrchestratorMetrics {
    pub(super) fn new(registry: &Registry) -> Self {
        OrchestratorMetrics {
            routed: counter_vec(
                registry,
                "apex_orchestrator_batches_total",
                "Batches the rollout sent to each path (direct or temporal)",
                &["path"],
            ),
            starts: counter_vec(
                registry,
                "apex_workflow_starts_total",
                "Batch workflow starts: started (new, or attached to a running one) or \
                 completed_before (a re-delivered batch whose workflow had completed)",
                &["outcome"],
            ),
            results: counter_vec(
                registry,
                "apex_workflow_results_total",
                "Batch workflow outcomes: completed, failed, timed_out, cancelled, terminated, unreachable",
                &["outcome"],
            ),
            seconds: registered(
                registry,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "apex_workflow_seconds",
                        "From start (or attach) to result of a batch workflow",
                    )
                    .buckets(prometheus::exponential_buckets(0.25, 2.0, 12).expect("valid buckets")),
                ),
            ),
            oldest_waiting: gauge_vec(
                registry,
                "apex_temporal_oldest_waiting_batch_seconds",
                "How long the oldest batch this member waits on has been waiting for its workflow",
                &["task_queue"],
            ),
            stalled: gauge_vec(
                registry,
                "apex_temporal_stalled_batches",
                "Batches this member waits on for longer than temporal.stall_warning",
                &["task_queue"],
            ),
            pollers: gauge_vec(
                registry,
                "apex_temporal_task_queue_pollers",
                "Workers the server saw polling the task queue for workflow tasks, asked while batches are stalled",
                &["task_queue"],
            ),
        }
    }

    pub fn batch_routed(&self, path: &str) {
        self.routed.with_label_values(&[path]).inc();
    }

    pub fn workflow_started(&self, outcome: &str) {
        self.starts.with_label_values(&[outcome]).inc();
    }

    /// Every outcome's counter exists at 0 from the start (alerts see the first failure).
    pub fn workflow_outcomes(&self, outcomes: &[&str]) {
        for outcome in outcomes {
            self.results.with_label_values(&[outcome]);
        }
    }

    pub fn workflow_finished(&self, outcome: &str, took: Duration) {
        self.results.with_label_values(&[outcome]).inc();
        self.seconds.observe(took.as_secs_f64());
    }

    pub fn temporal_waiting(&self, task_queue: &str, oldest: Duration, stalled: usize) {
        self.oldest_waiting.with_label_values(&[task_queue]).set(oldest.as_secs() as i64);
        self.stalled.with_label_values(&[task_queue]).set(stalled as i64);
    }

    pub fn temporal_pollers(&self, task_queue: &str, pollers: usize) {
        self.pollers.with_label_values(&[task_queue]).set(pollers as i64);
    }
}
