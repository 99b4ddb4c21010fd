//! Distributed traces: where spans are exported (OTLP) and how many traces are kept.

use serde::{Deserialize, Serialize};

use super::{Config, require};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TracesConfig {
    /// OTLP/gRPC endpoint spans are exported to, e.g. `http://127.0.0.1:4317`
    /// (a collector, Jaeger, Tempo); empty exports nothing and costs nothing.
    pub endpoint: String,
    /// Share of new traces kept, 0–1; a trace begun upstream (a `traceparent`
    /// on the webhook or the message) keeps its caller's decision.
    pub sample_ratio: f64,
    /// `service.name` of the spans; empty is `apex-ingest-<command>`.
    pub service_name: String,
}

impl Default for TracesConfig {
    fn default() -> Self {
        TracesConfig { endpoint: String::new(), sample_ratio: 1.0, service_name: String::new() }
    }
}

pub(super) fn validate(c: &Config) -> anyhow::Result<()> {
    require(&[
        ((0.0..=1.0).contains(&c.traces.sample_ratio), "traces.sample_ratio", "must be between 0 and 1"),
        (
            c.traces.endpoint.is_empty()
                || c.traces.endpoint.starts_with("http://")
                || c.traces.endpoint.starts_with("https://"),
            "traces.endpoint",
            "must be an http:// or https:// URL (OTLP/gRPC), or empty",
        ),
    ])
}
