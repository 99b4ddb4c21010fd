//! Every metric the service exports, in one registry, grouped per component
//! (source and Kafka, batcher, saga and stores, orchestrators and Temporal,
//! the webhook edge):
//! the saga and the orchestrators hold only their own group's handles (the
//! pipeline loop and the Kafka source, which also set readiness, the whole),
//! with one method per thing that can happen so dashboards and code stay in
//! step (`docs/metrics.md` lists them). Served on `/metrics` beside `/healthz` and `/readyz`.

mod batcher;
mod edge;
mod orchestrator;
mod poll;
mod query;
mod saga;
mod source;

pub use batcher::BatcherMetrics;
pub use edge::EdgeMetrics;
pub use orchestrator::OrchestratorMetrics;
pub use poll::PollMetrics;
pub use query::QueryMetrics;
pub use saga::SagaMetrics;
pub use source::SourceMetrics;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use prometheus::{Encoder, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};

/// Circuit breaker states as exported by `apex_breaker_state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed = 0,
    HalfOpen = 1,
    Open = 2,
}

pub struct Metrics {
    registry: Registry,
    pub source: SourceMetrics,
    pub batcher: BatcherMetrics,
    pub saga: SagaMetrics,
    pub orchestrator: OrchestratorMetrics,
    pub edge: EdgeMetrics,
    pub poll: PollMetrics,
    pub query: QueryMetrics,
    /// `/readyz`: ready, or what it waits for.
    readiness: Mutex<Result<(), &'static str>>,
    /// Another exposition served with ours on `/metrics`: the Temporal SDK's
    /// (its meter keeps a registry of its own behind a loopback port).
    merged: Mutex<Option<String>>,
    client: reqwest::Client,
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
        Arc::new(Metrics {
            source: SourceMetrics::new(&registry),
            batcher: BatcherMetrics::new(&registry),
            saga: SagaMetrics::new(&registry),
            orchestrator: OrchestratorMetrics::new(&registry),
            edge: EdgeMetrics::new(&registry),
            poll: PollMetrics::new(&registry),
            query: QueryMetrics::new(&registry),
            registry,
            readiness: Mutex::new(Err("starting")),
            merged: Mutex::new(None),
            client: reqwest::Client::new(),
        })
    }

    /// Serves the exposition at `url` after ours on every `/metrics` read.
    pub fn merge_exposition(&self, url: String) {
        *self.merged.lock().unwrap_or_else(|p| p.into_inner()) = Some(url);
    }

    /// Ours, then the merged exposition; when that cannot be read, a comment
    /// says why (ours is still served whole).
    async fn render_merged(&self) -> String {
        let mut text = self.render();
        let Some(url) = self.merged.lock().unwrap_or_else(|p| p.into_inner()).clone() else { return text };
        let read = async {
            self.client.get(&url).timeout(MERGE_TIMEOUT).send().await?.error_for_status()?.text().await
        };
        match read.await {
            Ok(merged) => text.push_str(&merged),
            Err(e) => text.push_str(&format!("# the metrics at {url} could not be read: {e}\n")),
        }
        text
    }

    /// Ready, or not and what for (`/readyz` names it: "kafka: no partitions assigned").
    pub fn set_ready(&self, readiness: Result<(), &'static str>) {
        *self.readiness.lock().unwrap_or_else(|p| p.into_inner()) = readiness;
    }

    /// The stores whose circuit breaker is open.
    fn stores_down(&self) -> Vec<String> {
        let open = f64::from(BreakerState::Open as i32);
        self.registry
            .gather()
            .iter()
            .filter(|f| f.name() == "apex_breaker_state")
            .flat_map(|f| f.get_metric().iter())
            .filter(|m| m.get_gauge().value() == open)
            .flat_map(|m| m.get_label().iter().filter(|l| l.name() == "store").map(|l| l.value().to_owned()))
            .collect()
    }

    /// Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metric families.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
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

/// How long `/metrics` waits for the merged exposition (on loopback).
const MERGE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

async fn metrics_handler(State(m): State<Arc<Metrics>>) -> String {
    m.render_merged().await
}

/// 200 or 503 with what it waits for; either way, the stores that are down
/// (an open breaker stalls batches, it does not make a member unready: its
/// partitions stay where they are until the store is back).
async fn ready_handler(State(m): State<Arc<Metrics>>) -> (StatusCode, String) {
    let readiness = *m.readiness.lock().unwrap_or_else(|p| p.into_inner());
    let down: String =
        m.stores_down().iter().map(|s| format!("{s} store down: its breaker is open\n")).collect();
    match readiness {
        Ok(()) => (StatusCode::OK, format!("ready\n{down}")),
        Err(waiting_for) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {waiting_for}\n{down}")),
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
        m.saga.dead_lettered("invalid_json");
        m.batcher.batch_closed(crate::batch::CloseReason::Timeout, 3);
        let addr = serve("127.0.0.1:0".parse().unwrap(), m.clone()).await.unwrap();
        let get = |path: &str| reqwest::get(format!("http://{addr}{path}"));
        assert_eq!(get("/healthz").await.unwrap().status(), 200);
        let unready = get("/readyz").await.unwrap();
        assert_eq!(unready.status(), 503);
        assert_eq!(unready.text().await.unwrap(), "not ready: starting\n");
        m.set_ready(Err("kafka: no partitions assigned"));
        assert!(
            get("/readyz").await.unwrap().text().await.unwrap().contains("kafka: no partitions assigned")
        );
        m.set_ready(Ok(()));
        m.saga.breaker_state("relational", BreakerState::Open);
        let ready = get("/readyz").await.unwrap();
        assert_eq!(ready.status(), 200);
        assert_eq!(ready.text().await.unwrap(), "ready\nrelational store down: its breaker is open\n");
        let body = get("/metrics").await.unwrap().text().await.unwrap();
        assert!(body.contains(r#"apex_dead_letters_total{reason="invalid_json"} 1"#), "{body}");
        assert!(body.contains(r#"apex_batches_total{reason="timeout"} 1"#), "{body}");
        assert!(body.contains("apex_batch_size_events_sum 3"), "{body}");
    }

    /// The Temporal SDK's exposition (here a stand-in server on loopback) is
    /// served after ours; when it is gone ours is still served whole.
    #[tokio::test]
    async fn a_merged_exposition_follows_ours_and_its_absence_is_said() {
        let sdk = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sdk_addr = sdk.local_addr().unwrap();
        let sdk_router = Router::new().route("/metrics", get(|| async { "temporal_sticky_cache_size 3\n" }));
        tokio::spawn(async move { axum::serve(sdk, sdk_router).await });
        let m = Metrics::new();
        m.saga.dead_lettered("invalid_json");
        m.merge_exposition(format!("http://{sdk_addr}/metrics"));
        let body = m.render_merged().await;
        assert!(body.contains(r#"apex_dead_letters_total{reason="invalid_json"} 1"#), "{body}");
        assert!(body.ends_with("temporal_sticky_cache_size 3\n"), "{body}");

        m.merge_exposition("http://127.0.0.1:1/metrics".into());
        let body = m.render_merged().await;
        assert!(body.contains(r#"apex_dead_letters_total{reason="invalid_json"} 1"#), "{body}");
        assert!(body.contains("# the metrics at http://127.0.0.1:1/metrics could not be read"), "{body}");
    }
}
