//! Every metric the service exports, named in one place, with one method per
//! thing that can happen so dashboards and code stay in step. Served on
//! `/metrics` beside `/healthz` and `/readyz`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::batch::CloseReason;

/// Circuit breaker states as exported by `apex_breaker_state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed = 0,
    HalfOpen = 1,
    Open = 2,
}

pub struct Metrics {
    registry: Registry,
    events_in: IntCounterVec,
    records_written: IntCounterVec,
    batches: IntCounterVec,
    batch_size: Histogram,
    batch_latency: Histogram,
    batches_in_flight: IntGauge,
    store_write_seconds: HistogramVec,
    store_write_errors: IntCounterVec,
    compensations: IntCounterVec,
    dead_letters: IntCounterVec,
    batches_already_written: IntCounter,
    store_retries: IntCounterVec,
    breaker_state: IntGaugeVec,
    breaker_opened: IntCounterVec,
    batches_abandoned: IntCounter,
    batch_retries: IntCounter,
    kafka: KafkaMetrics,
    workflows: WorkflowMetrics,
    ready: AtomicBool,
}

/// Batches run on Temporal, and the rollout between the two paths.
struct WorkflowMetrics {
    routed: IntCounterVec,
    starts: IntCounterVec,
    results: IntCounterVec,
    seconds: Histogram,
    oldest_waiting: IntGaugeVec,
    stalled: IntGaugeVec,
    pollers: IntGaugeVec,
}

impl WorkflowMetrics {
    fn new(registry: &Registry) -> Self {
        WorkflowMetrics {
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
}

/// The consumer-group member's view of its partitions.
struct KafkaMetrics {
    lag: IntGaugeVec,
    position: IntGaugeVec,
    committed: IntGaugeVec,
    paused: IntGaugeVec,
    assigned: IntGauge,
    rebalances: IntCounterVec,
    commits: IntCounterVec,
    dropped_on_revoke: IntCounter,
    client_errors: IntCounter,
}

fn partition_gauge(registry: &Registry, name: &str, help: &str) -> IntGaugeVec {
    gauge_vec(registry, name, help, &["topic", "partition"])
}

impl KafkaMetrics {
    fn new(registry: &Registry) -> Self {
        KafkaMetrics {
            lag: partition_gauge(
                registry,
                "apex_kafka_consumer_lag",
                "High watermark minus committed offset, per assigned partition",
            ),
            position: partition_gauge(
                registry,
                "apex_kafka_position",
                "Next offset this member hands to the pipeline, per assigned partition",
            ),
            committed: partition_gauge(
                registry,
                "apex_kafka_committed_offset",
                "Offset committed for the group (every offset below it is written)",
            ),
            paused: partition_gauge(
                registry,
                "apex_kafka_partition_paused",
                "1 while the partition is paused for backpressure",
            ),
            assigned: registered(
                registry,
                IntGauge::new("apex_kafka_assigned_partitions", "Partitions assigned to this member"),
            ),
            rebalances: counter_vec(
                registry,
                "apex_kafka_rebalances_total",
                "Rebalance callbacks, by kind (assign, revoke)",
                &["kind"],
            ),
            commits: counter_vec(
                registry,
                "apex_kafka_commits_total",
                "Offset commits, by outcome (ok, failed)",
                &["outcome"],
            ),
            dropped_on_revoke: registered(
                registry,
                IntCounter::new(
                    "apex_kafka_events_dropped_on_revoke_total",
                    "Events not run because their partition was revoked first (the next owner reads them)",
                ),
            ),
            client_errors: registered(
                registry,
                IntCounter::new("apex_kafka_client_errors_total", "Errors reported by the Kafka client"),
            ),
        }
    }
}

/// Registers a metric built from constant definitions; failing here is a bug
/// in this file (a bad name or a name used twice), caught by any test.
fn registered<M: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    metric: prometheus::Result<M>,
) -> M {
    let metric = metric.expect("valid metric definition");
    registry.register(Box::new(metric.clone())).expect("metric registered once");
    metric
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    registered(registry, IntCounterVec::new(Opts::new(name, help), labels))
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    registered(registry, IntGaugeVec::new(Opts::new(name, help), labels))
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let registry = Registry::new();
        let events_in =
            counter_vec(&registry, "apex_events_in_total", "Raw events taken from sources", &["format"]);
        let records_written =
            counter_vec(&registry, "apex_records_written_total", "Records written, per store", &["store"]);
        let batches =
            counter_vec(&registry, "apex_batches_total", "Batches closed, by close reason", &["reason"]);
        let batch_size = registered(
            &registry,
            Histogram::with_opts(
                HistogramOpts::new("apex_batch_size_events", "Events per closed batch")
                    .buckets(vec![1.0, 5.0, 10.0, 25.0, 50.0, 75.0, 100.0, 250.0, 500.0]),
            ),
        );
        let batch_latency = registered(
            &registry,
            Histogram::with_opts(
                HistogramOpts::new(
                    "apex_batch_latency_seconds",
                    "From a batch's first event reaching the batcher to the batch written and \
                     handed to the source to commit",
                )
                .buckets(prometheus::exponential_buckets(0.01, 2.0, 14).expect("valid buckets")),
            ),
        );
        let batches_in_flight = registered(
            &registry,
            IntGauge::new(
                "apex_batches_in_flight",
                "Batches handed to the orchestrator and not yet finished",
            ),
        );
        let store_write_seconds = registered(
            &registry,
            HistogramVec::new(
                HistogramOpts::new("apex_store_write_seconds", "Time to write one batch to one store")
                    .buckets(prometheus::exponential_buckets(0.0005, 2.0, 16).expect("valid buckets")),
                &["store"],
            ),
        );
        let store_write_errors = counter_vec(
            &registry,
            "apex_store_write_errors_total",
            "Failed batch writes, per store and kind (transient or permanent)",
            &["store", "kind"],
        );
        let compensations = counter_vec(
            &registry,
            "apex_compensations_total",
            "Batches removed again from a store because another store failed",
            &["store", "outcome"],
        );
        let dead_letters = counter_vec(
            &registry,
            "apex_dead_letters_total",
            "Raw events sent to the dead-letter queue",
            &["reason"],
        );
        let batches_already_written = registered(
            &registry,
            IntCounter::new(
                "apex_batches_already_written_total",
                "Batches found in the idempotency record and not written again",
            ),
        );
        let store_retries = counter_vec(
            &registry,
            "apex_store_retries_total",
            "Store calls retried after a transient error",
            &["store"],
        );
        let breaker_state = gauge_vec(
            &registry,
            "apex_breaker_state",
            "Circuit breaker per store: 0 closed, 1 half-open, 2 open",
            &["store"],
        );
        let breaker_opened = counter_vec(
            &registry,
            "apex_breaker_opened_total",
            "Times a store's circuit breaker opened",
            &["store"],
        );
        let batches_abandoned = registered(
            &registry,
            IntCounter::new(
                "apex_batches_abandoned_total",
                "Batches given up at shutdown or revocation, left uncommitted for re-delivery",
            ),
        );
        let batch_retries = registered(
            &registry,
            IntCounter::new(
                "apex_batch_retries_total",
                "Batches run again after a transient failure (a store outage stalls the pipeline here)",
            ),
        );
        let kafka = KafkaMetrics::new(&registry);
        let workflows = WorkflowMetrics::new(&registry);
        Arc::new(Metrics {
            registry,
            workflows,
            batches_abandoned,
            batch_retries,
            kafka,
            events_in,
            records_written,
            batches,
            batch_size,
            batch_latency,
            batches_in_flight,
            store_write_seconds,
            store_write_errors,
            compensations,
            dead_letters,
            batches_already_written,
            store_retries,
            breaker_state,
            breaker_opened,
            ready: AtomicBool::new(false),
        })
    }

    pub fn event_in(&self, format: &str) {
        self.events_in.with_label_values(&[format]).inc();
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

    pub fn batch_retried(&self) {
        self.batch_retries.inc();
    }

    pub fn batches_abandoned(&self, batches: usize) {
        self.batches_abandoned.inc_by(batches as u64);
    }

    pub fn batch_routed(&self, path: &str) {
        self.workflows.routed.with_label_values(&[path]).inc();
    }

    pub fn workflow_started(&self, outcome: &str) {
        self.workflows.starts.with_label_values(&[outcome]).inc();
    }

    pub fn workflow_finished(&self, outcome: &str, took: Duration) {
        self.workflows.results.with_label_values(&[outcome]).inc();
        self.workflows.seconds.observe(took.as_secs_f64());
    }

    pub fn temporal_waiting(&self, task_queue: &str, oldest: Duration, stalled: usize) {
        self.workflows.oldest_waiting.with_label_values(&[task_queue]).set(oldest.as_secs() as i64);
        self.workflows.stalled.with_label_values(&[task_queue]).set(stalled as i64);
    }

    pub fn temporal_pollers(&self, task_queue: &str, pollers: usize) {
        self.workflows.pollers.with_label_values(&[task_queue]).set(pollers as i64);
    }

    pub fn kafka_assigned(&self, partitions: usize) {
        self.kafka.assigned.set(partitions as i64);
    }

    pub fn kafka_rebalance(&self, kind: &str) {
        self.kafka.rebalances.with_label_values(&[kind]).inc();
    }

    /// Refreshes one partition's offsets; `None` leaves a value unknown (unset).
    pub fn kafka_partition(
        &self,
        topic: &str,
        partition: i32,
        position: Option<i64>,
        committed: Option<i64>,
        lag: Option<i64>,
    ) {
        let p = partition.to_string();
        for (gauge, value) in
            [(&self.kafka.position, position), (&self.kafka.committed, committed), (&self.kafka.lag, lag)]
        {
            if let Some(v) = value {
                gauge.with_label_values(&[topic, &p]).set(v);
            }
        }
    }

    pub fn kafka_paused(&self, topic: &str, partition: i32, paused: bool) {
        self.kafka.paused.with_label_values(&[topic, &partition.to_string()]).set(i64::from(paused));
    }

    /// The partition left this member: its series stop (another member reports it).
    pub fn kafka_released(&self, topic: &str, partition: i32) {
        let p = partition.to_string();
        for gauge in [&self.kafka.position, &self.kafka.committed, &self.kafka.lag, &self.kafka.paused] {
            let _ = gauge.remove_label_values(&[topic, &p]);
        }
    }

    pub fn kafka_commit(&self, ok: bool) {
        self.kafka.commits.with_label_values(&[if ok { "ok" } else { "failed" }]).inc();
    }

    pub fn kafka_dropped_on_revoke(&self, events: usize) {
        self.kafka.dropped_on_revoke.inc_by(events as u64);
    }

    pub fn kafka_client_error(&self) {
        self.kafka.client_errors.inc();
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metric families.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
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

    /// Sum over the series of `name` that carry `label_value`, for summaries and tests.
    fn sample(&self, name: &str, label_value: &str, value: fn(&prometheus::proto::Metric) -> f64) -> f64 {
        self.registry
            .gather()
            .iter()
            .filter(|f| f.name() == name)
            .flat_map(|f| f.get_metric().iter())
            .filter(|m| m.get_label().iter().any(|l| l.value() == label_value))
            .map(value)
            .sum()
    }

    pub fn gauge(&self, name: &str, label_value: &str) -> i64 {
        self.sample(name, label_value, |m| m.get_gauge().value()) as i64
    }

    pub fn counter(&self, name: &str, label_value: &str) -> u64 {
        self.sample(name, label_value, |m| m.get_counter().value()) as u64
    }
}

async fn metrics_handler(State(m): State<Arc<Metrics>>) -> String {
    m.render()
}

async fn ready_handler(State(m): State<Arc<Metrics>>) -> (StatusCode, &'static str) {
    if m.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

pub fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready_handler))
        .with_state(metrics)
}

/// Binds the metrics listener (failing at start, not later, when the address is
/// taken) and serves it in the background; returns the bound address.
pub async fn serve(addr: SocketAddr, metrics: Arc<Metrics>) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen for metrics on {addr}: {e}"))?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router(metrics)).await {
            tracing::error!(error = %e, "metrics server stopped");
        }
    });
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn serves_metrics_health_and_readiness() {
        let m = Metrics::new();
        m.dead_lettered("invalid_json");
        m.batch_closed(CloseReason::Timeout, 3);
        let addr = serve("127.0.0.1:0".parse().unwrap(), m.clone()).await.unwrap();
        let get = |path: &str| reqwest::get(format!("http://{addr}{path}"));
        assert_eq!(get("/healthz").await.unwrap().status(), 200);
        assert_eq!(get("/readyz").await.unwrap().status(), 503);
        m.set_ready(true);
        assert_eq!(get("/readyz").await.unwrap().status(), 200);
        let body = get("/metrics").await.unwrap().text().await.unwrap();
        assert!(body.contains(r#"apex_dead_letters_total{reason="invalid_json"} 1"#), "{body}");
        assert!(body.contains(r#"apex_batches_total{reason="timeout"} 1"#), "{body}");
        assert!(body.contains("apex_batch_size_events_sum 3"), "{body}");
    }
}
