//! The webhook edge: its limits and one route per provider.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use serde::{Deserialize, Serialize};

use super::{Config, FRONT_TOPIC, GENERIC_WEBHOOK_TOPIC, SAMSARA_TOPIC, TURVO_TOPIC, require};

/// The webhook edge (`apex-ingest edge`): one `POST /webhooks/{provider}` route
/// per provider section below whose `secret_env` names at least one variable.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EdgeConfig {
    /// Address of the webhook routes and of /metrics, /healthz, /readyz.
    pub listen: String,
    /// Larger bodies are refused with 413.
    pub max_body_bytes: usize,
    /// A signed timestamp further than this from the edge's clock, either way,
    /// is refused with 401 (a captured request cannot be replayed later).
    #[serde(with = "humantime_serde")]
    pub timestamp_tolerance: Duration,
    /// A client must have sent its whole body within this; slower ones get 408.
    #[serde(with = "humantime_serde")]
    pub body_timeout: Duration,
    /// How long the broker may take to acknowledge a webhook; then 503.
    #[serde(with = "humantime_serde")]
    pub produce_timeout: Duration,
    /// What a 503 (broker unreachable) or 429 (rate limit) asks the provider to wait.
    #[serde(with = "humantime_serde")]
    pub retry_after: Duration,
    /// Where accepted event ids are kept: "embedded" (in process) or "redis" (`[redis] url`).
    pub dedupe: DedupeKind,
    /// How long an accepted event id is remembered; a re-send inside it produces nothing.
    #[serde(with = "humantime_serde")]
    pub dedupe_ttl: Duration,
    /// Embedded dedupe: event ids kept at most (the oldest are forgotten first).
    pub dedupe_capacity: usize,
    /// How often the routes' `secret_files` are read again.
    #[serde(with = "humantime_serde")]
    pub secret_refresh: Duration,
    pub samsara: WebhookConfig,
    pub front: WebhookConfig,
    pub turvo: WebhookConfig,
    pub generic: WebhookConfig,
}

impl EdgeConfig {
    /// Every provider section with its route name (`/webhooks/<name>`).
    pub fn routes(&self) -> [(&'static str, &WebhookConfig); 4] {
        [
            ("samsara", &self.samsara),
            ("front", &self.front),
            ("turvo", &self.turvo),
            ("generic", &self.generic),
        ]
    }
}

impl Default for EdgeConfig {
    fn default() -> Self {
        EdgeConfig {
            listen: "127.0.0.1:8088".into(),
            max_body_bytes: 1 << 20,
            timestamp_tolerance: Duration::from_secs(5 * 60),
            body_timeout: Duration::from_secs(10),
            produce_timeout: Duration::from_secs(10),
            retry_after: Duration::from_secs(5),
            dedupe: DedupeKind::Embedded,
            dedupe_ttl: Duration::from_secs(24 * 3600),
            dedupe_capacity: 1_000_000,
            secret_refresh: Duration::from_secs(10),
            samsara: WebhookConfig::with(SignatureScheme::SamsaraV1, SAMSARA_TOPIC, "/eventId"),
            front: WebhookConfig::with(SignatureScheme::FrontApplication, FRONT_TOPIC, "/payload/id"),
            // Turvo sends no event id: the body's digest is the key.
            turvo: WebhookConfig {
                signature_header: "authorization".into(),
                ..WebhookConfig::with(SignatureScheme::SharedToken, TURVO_TOPIC, "")
            },
            generic: WebhookConfig {
                signature_header: "x-signature".into(),
                timestamp_header: "x-timestamp".into(),
                ..WebhookConfig::with(SignatureScheme::HmacSha256, GENERIC_WEBHOOK_TOPIC, "/id")
            },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DedupeKind {
    Embedded,
    Redis,
}

/// How a provider's requests are authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SignatureScheme {
    /// `X-Samsara-Signature: v1=<hex HMAC-SHA256>` over `v1:<X-Samsara-Timestamp>:<body>`,
    /// keyed with the base64-decoded secret.
    SamsaraV1,
    /// `x-front-signature`: base64 HMAC-SHA256 over `<x-front-request-timestamp>:<body>` (ms).
    FrontApplication,
    /// `X-Front-Signature`: base64 HMAC-SHA1 of the body (rule webhooks; no timestamp).
    FrontRule,
    /// `signature_header` equals the secret (Turvo's webhook profiles publish no signing scheme).
    SharedToken,
    /// `signature_header`: HMAC-SHA256 over `<timestamp_header>.<body>` (or the body alone
    /// when `timestamp_header` is empty), hex or base64.
    HmacSha256,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignatureEncoding {
    Hex,
    Base64,
}

/// No serde default: the keys a file leaves out come from the provider's own
/// defaults in `EdgeConfig::default()` (figment merges the file over them).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Names of the environment variables holding the secrets (never a secret
    /// itself). Empty disables the route (404). During a rotation name both the
    /// old and the new one: a request signed with either is accepted.
    pub secret_env: Vec<String>,
    /// Files holding secrets (a mounted Secret's keys), read at start and
    /// again every `edge.secret_refresh`: a rotated Secret is served without a
    /// restart. Beside `secret_env`, either list's secrets are accepted.
    pub secret_files: Vec<PathBuf>,
    pub scheme: SignatureScheme,
    /// Topic the verified bodies are produced to.
    pub topic: String,
    /// Requests per second accepted; more get 429. 0 is no limit.
    pub rate_limit: u32,
    /// shared-token and hmac-sha256: the header carrying the token or signature.
    pub signature_header: String,
    /// hmac-sha256: the header carrying the Unix time in seconds; empty signs the body alone.
    pub timestamp_header: String,
    /// hmac-sha256: how the signature is written.
    pub encoding: SignatureEncoding,
    /// JSON pointer to the provider's event id (the dedupe and message key);
    /// empty, or a body without it, uses the SHA-256 of the body.
    pub event_id_pointer: String,
}

impl WebhookConfig {
    fn with(scheme: SignatureScheme, topic: &str, event_id_pointer: &str) -> Self {
        WebhookConfig {
            secret_env: Vec::new(),
            secret_files: Vec::new(),
            scheme,
            topic: topic.into(),
            rate_limit: 0,
            signature_header: String::new(),
            timestamp_header: String::new(),
            encoding: SignatureEncoding::Hex,
            event_id_pointer: event_id_pointer.into(),
        }
    }
}

/// The checks of these sections.
pub(super) fn validate(c: &Config) -> anyhow::Result<()> {
    require(&[
        (c.edge.max_body_bytes > 0, "edge.max_body_bytes", "must be at least 1"),
        (c.edge.dedupe_capacity > 0, "edge.dedupe_capacity", "must be at least 1"),
        (!c.edge.dedupe_ttl.is_zero(), "edge.dedupe_ttl", "must be longer than 0 s"),
        (!c.edge.produce_timeout.is_zero(), "edge.produce_timeout", "must be longer than 0 s"),
        (!c.edge.body_timeout.is_zero(), "edge.body_timeout", "must be longer than 0 s"),
        (
            c.edge.secret_refresh >= Duration::from_millis(100),
            "edge.secret_refresh",
            "must be at least 100ms",
        ),
    ])?;
    for (provider, route) in c.edge.routes() {
        let needs_header = matches!(route.scheme, SignatureScheme::SharedToken | SignatureScheme::HmacSha256);
        if needs_header && route.signature_header.is_empty() {
            bail!(
                "invalid configuration: edge.{provider}.signature_header must name a header for its scheme"
            );
        }
        if route.topic.is_empty() {
            bail!("invalid configuration: edge.{provider}.topic must not be empty");
        }
    }
    Ok(())
}
