//! The query API (`apex-ingest serve`): where it listens, who may ask, how often.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Config, SecretSource, require};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServeConfig {
    /// `POST /v1/query`, /metrics, /healthz and /readyz.
    pub listen: String,
    /// The bearer tokens clients present, each `env:NAME` or `file:PATH` (a
    /// mounted Secret's key, read again every `secret_refresh`: a rotated
    /// token is accepted, and the old one refused, without a restart). At
    /// least one: the API is never open.
    pub tokens: Vec<SecretSource>,
    #[serde(with = "humantime_serde")]
    pub secret_refresh: Duration,
    /// Questions per second per token (the same again as a burst); more: 429.
    pub requests_per_second: u32,
    /// A larger request body: 413.
    pub max_body_bytes: usize,
    /// A question not answered by then: 503 (its store calls are dropped).
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// How long an answer is kept (0 s: none is). A write moves the
    /// watermark it is kept under, so a kept answer is never older than the
    /// last write; the TTL bounds what an answer phrased from the clock
    /// ("last 6 hours", no `as_of`) may lag it by.
    #[serde(with = "humantime_serde")]
    pub cache_ttl: Duration,
    /// Answers kept in this process at most (`stores.cache = "redis"` keeps
    /// them in Redis instead, shared by every replica).
    pub cache_capacity: usize,
    /// Questions answered at once; one more is refused at once, 503 with
    /// Retry-After, rather than queued behind the others until every one of
    /// them times out.
    pub max_in_flight: usize,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            listen: "127.0.0.1:8090".into(),
            tokens: Vec::new(),
            secret_refresh: Duration::from_secs(10),
            requests_per_second: 20,
            max_body_bytes: 16 * 1024,
            timeout: Duration::from_secs(30),
            cache_ttl: Duration::from_secs(60),
            cache_capacity: 10_000,
            max_in_flight: 16,
        }
    }
}

/// The checks of this section (`tokens` is checked when `serve` starts: the
/// other commands do not need it).
pub(super) fn validate(c: &Config) -> anyhow::Result<()> {
    require(&[
        (c.serve.requests_per_second > 0, "serve.requests_per_second", "must be at least 1"),
        (c.serve.max_body_bytes >= 256, "serve.max_body_bytes", "must be at least 256"),
        (!c.serve.timeout.is_zero(), "serve.timeout", "must be longer than 0 s"),
        (c.serve.max_in_flight > 0, "serve.max_in_flight", "must be at least 1"),
        (c.serve.cache_capacity > 0, "serve.cache_capacity", "must be at least 1"),
        (
            c.serve.secret_refresh >= Duration::from_millis(100),
            "serve.secret_refresh",
            "must be at least 100ms",
        ),
    ])
}
