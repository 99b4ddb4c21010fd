//! The saga's and the stores' metrics: writes, errors, retries, breakers, compensations, dead letters.

use std::time::Duration;

use prometheus::{HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Registry};

use super::{BreakerState, counter_vec, gauge_vec, registered};

#[derive(Clone)]
pub struct SagaMetrics {
    records_written: IntCounterVec,
    store_write_seconds: HistogramVec,
    store_write_errors: IntCounterVec,
    compensations: IntCounterVec,
    dead_letters: IntCounterVec,
    batches_already_written: IntCounter,
    store_retries: IntCounterVec,
    breaker_state: IntGaugeVec,
    breaker_opened: IntCounterVec,
}

impl SagaMetrics {
    pub(super) fn new(registry: &Registry) -> Self {
        SagaMetrics {
            records_written: counter_vec(
                registry,
                "apex_records_written_total",
                "Records written, per store",
                &["store"],
            ),
            store_write_seconds: registered(
                registry,
                HistogramVec::new(
                    HistogramOpts::new("apex_store_write_seconds", "Time to write one batch to one store")
                        .buckets(prometheus::exponential_buckets(0.0005, 2.0, 16).expect("valid buckets")),
                    &["store"],
                ),
            ),
            store_write_errors: counter_vec(
                registry,
                "apex_store_write_errors_total",
                "Failed batch writes, per store and kind (transient or permanent)",
                &["store", "kind"],
            ),
            compensations: counter_vec(
                registry,
                "apex_compensations_total",
                "Batches removed again from a store because another store failed",
                &["store", "outcome"],
            ),
            dead_letters: counter_vec(
                registry,
                "apex_dead_letters_total",
                "Raw events sent to the dead-letter queue",
                &["reason"],
            ),
            batches_already_written: registered(
                registry,
                IntCounter::new(
                    "apex_batches_already_written_total",
                    "Batches found in the idempotency record and not written again",
                ),
            ),
            store_retries: counter_vec(
                registry,
                "apex_store_retries_total",
                "Store calls retried after a transient error",
                &["store"],
            ),
            breaker_state: gauge_vec(
                registry,
                "apex_breaker_state",
                "Circuit breaker per store: 0 closed, 1 half-open, 2 open",
                &["store"],
            ),
            breaker_opened: counter_vec(
                registry,
                "apex_breaker_opened_total",
                "Times a store's circuit breaker opened",
                &["store"],
            ),
        }
    }

    /// A store joins the saga: its breaker is closed and its error, retry and
    /// compensation counters exist at 0, so alerts on their increase see the first one.
    pub fn store_registered(&self, store: &str) {
        self.breaker_state.with_label_values(&[store]).set(BreakerState::Closed as i64);
        self.breaker_opened.with_label_values(&[store]);
        self.store_retries.with_label_values(&[store]);
        for kind in ["transient", "permanent"] {
            self.store_write_errors.with_label_values(&[store, kind]);
        }
        for outcome in ["removed", "failed"] {
            self.compensations.with_label_values(&[store, outcome]);
        }
    }

    pub fn store_written(&self, store: &str, records: usize, took: Duration) {
        self.records_written.with_label_values(&[store]).inc_by(records as u64);
        self.store_write_seconds.with_label_values(&[store]).observe(took.as_secs_f64());
    }

    pub fn store_failed(&self, store: &str, transient: bool, took: Duration) {
        let kind = if transient { "transient" } else { "permanent" };
        self.store_write_errors.with_label_values(&[store, kind]).inc();
        self.store_write_seconds.with_label_values(&[store]).observe(took.as_secs_f64());
    }

    pub fn compensated(&self, store: &str, ok: bool) {
        self.compensations.with_label_values(&[store, if ok { "removed" } else { "failed" }]).inc();
    }

    pub fn dead_lettered(&self, reason: &str) {
        self.dead_letters.with_label_values(&[reason]).inc();
    }

    pub fn batch_already_written(&self) {
        self.batches_already_written.inc();
    }

    pub fn store_retried(&self, store: &str) {
        self.store_retries.with_label_values(&[store]).inc();
    }

    pub fn breaker_state(&self, store: &str, state: BreakerState) {
        self.breaker_state.with_label_values(&[store]).set(state as i64);
        if state == BreakerState::Open {
            self.breaker_opened.with_label_values(&[store]).inc();
        }
    }

    /// Mean batch write time of one store so far (0 before the first write).
    pub fn mean_write_seconds(&self, store: &str) -> f64 {
        let h = self.store_write_seconds.with_label_values(&[store]);
        if h.get_sample_count() == 0 { 0.0 } else { h.get_sample_sum() / h.get_sample_count() as f64 }
    }

    /// Total batch write time of one store so far.
    pub fn write_seconds_total(&self, store: &str) -> f64 {
        self.store_write_seconds.with_label_values(&[store]).get_sample_sum()
    }
}
