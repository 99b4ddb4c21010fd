//! The batcher's and the pipeline's metrics: batches closed, in flight, written, retried, abandoned.

use std::time::Duration;

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Registry};

use super::{counter_vec, registered};
use crate::batch::CloseReason;

#[derive(Clone)]
pub struct BatcherMetrics {
    batches: IntCounterVec,
    batch_size: Histogram,
    batch_latency: Histogram,
    batches_in_flight: IntGauge,
    batches_abandoned: IntCounter,
    batch_retries: IntCounter,
}

impl BatcherMetrics {
    pub(super) fn new(registry: &Registry) -> Self {
        BatcherMetrics {
            batches: counter_vec(
                registry,
                "apex_batches_total",
                "Batches closed, by close reason",
                &["reason"],
            ),
            batch_size: registered(
                registry,
                Histogram::with_opts(
                    HistogramOpts::new("apex_batch_size_events", "Events per closed batch")
                        .buckets(vec![1.0, 5.0, 10.0, 25.0, 50.0, 75.0, 100.0, 250.0, 500.0]),
                ),
            ),
            batch_latency: registered(
                registry,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "apex_batch_latency_seconds",
                        "From a batch's first event reaching the batcher to the batch written and \
                 handed to the source to commit",
                    )
                    .buckets(prometheus::exponential_buckets(0.01, 2.0, 14).expect("valid buckets")),
                ),
            ),
            batches_in_flight: registered(
                registry,
                IntGauge::new(
                    "apex_batches_in_flight",
                    "Batches handed to the orchestrator and not yet finished",
                ),
            ),
            batches_abandoned: registered(
                registry,
                IntCounter::new(
                    "apex_batches_abandoned_total",
                    "Batches given up at shutdown or revocation, left uncommitted for re-delivery",
                ),
            ),
            batch_retries: registered(
                registry,
                IntCounter::new(
                    "apex_batch_retries_total",
                    "Batches run again after a transient failure (a store outage stalls the pipeline here)",
                ),
            ),
        }
    }

    pub fn batch_closed(&self, reason: CloseReason, events: usize) {
        self.batches.with_label_values(&[reason.as_str()]).inc();
        self.batch_size.observe(events as f64);
    }

    pub fn batch_started(&self) {
        self.batches_in_flight.inc();
    }

    pub fn batch_finished(&self) {
        self.batches_in_flight.dec();
    }

    pub fn batch_written(&self, latency: Duration) {
        self.batch_latency.observe(latency.as_secs_f64());
    }

    pub fn batch_retried(&self) {
        self.batch_retries.inc();
    }

    pub fn batches_abandoned(&self, batches: usize) {
        self.batches_abandoned.inc_by(batches as u64);
    }
}
