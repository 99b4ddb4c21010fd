//! The settings of the pipeline's stages: the source, the batcher, the embedder,
//! the saga writer and the metrics endpoint.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use super::{Config, require};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    Generator,
    File,
    /// A member of the `[kafka]` consumer group.
    Kafka,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourceConfig {
    pub kind: SourceKind,
    /// Generator: how many events (0 = until stopped).
    pub events: u64,
    /// Generator: events per second (0 = as fast as the pipeline takes them).
    pub rate: u32,
    pub poison_fraction: f64,
    pub vehicles: usize,
    pub partitions: i32,
    pub seed: u64,
    /// Generator: days of driving the world runs, ending at `until`.
    pub days: f64,
    /// Generator: the world's last instant (RFC 3339); empty is now.
    pub until: String,
    /// Generator: write the ground truth (trips, shipments, late ones) to this JSON file at the end; empty writes none.
    pub truth: PathBuf,
    /// File source: files or directories.
    pub paths: Vec<PathBuf>,
    /// Capacity of the queue between source and batcher, in events.
    pub queue: usize,
}

impl Default for SourceConfig {
    fn default() -> Self {
        SourceConfig {
            kind: SourceKind::Generator,
            events: 10_000,
            rate: 0,
            poison_fraction: 0.02,
            vehicles: 250,
            partitions: 6,
            seed: 42,
            days: 7.0,
            until: String::new(),
            truth: PathBuf::new(),
            paths: Vec::new(),
            queue: 1_000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    pub max_events: usize,
    #[serde(with = "humantime_serde")]
    pub max_wait: Duration,
    /// Batches handed to the orchestrator and not yet written, at most.
    pub max_in_flight: usize,
    /// At shutdown, how long batches in flight may take to finish; after it they
    /// are abandoned uncommitted (re-delivered later, never lost).
    #[serde(with = "humantime_serde")]
    pub drain_deadline: Duration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_events: 100,
            max_wait: Duration::from_secs(30),
            // Group commit needs batches in flight to group (load/RESULTS.md).
            max_in_flight: 32,
            drain_deadline: Duration::from_secs(25),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmbedKind {
    Hashing,
    /// all-MiniLM-L6-v2 in process (`embed.model_dir`; 384 dimensions).
    Minilm,
    Openai,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmbedConfig {
    pub kind: EmbedKind,
    pub dims: usize,
    /// `kind = "minilm"`: the directory `scripts/model` installs (model.safetensors,
    /// tokenizer.json, config.json); relative to the working directory.
    pub model_dir: PathBuf,
    /// OpenAI-compatible provider: base URL (`/v1/embeddings` is appended).
    pub url: String,
    pub model: String,
    /// Name of the environment variable holding the API key, or `file:/path`
    /// (a mounted Secret); never the key itself.
    pub api_key_env: String,
    pub max_inputs_per_request: usize,
    pub requests_per_second: u32,
    pub max_attempts: usize,
    #[serde(with = "humantime_serde")]
    pub first_backoff: Duration,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Record kinds (`VehicleLocation`, `214`, …) that get no embedding: they
    /// are written to every other store, but not to the vector role. Location
    /// and stats pings are most of the volume and carry no text worth a vector;
    /// `["VehicleLocation", "VehicleStats"]` raises the write ceiling several
    /// times (load/RESULTS.md). Empty (the default) embeds every record.
    pub skip_kinds: Vec<String>,
}

impl EmbedConfig {
    /// What makes the vectors, as a vector store records it: another name is
    /// refused there (vectors of two models are not comparable).
    pub fn embedder(&self) -> String {
        match self.kind {
            EmbedKind::Hashing => format!("hashing/{}", self.dims),
            EmbedKind::Minilm => "minilm/all-MiniLM-L6-v2".into(),
            EmbedKind::Openai => format!("openai/{}/{}", self.model, self.dims),
        }
    }
}

impl Default for EmbedConfig {
    fn default() -> Self {
        EmbedConfig {
            kind: EmbedKind::Hashing,
            dims: 384,
            model_dir: PathBuf::from(".state/models/all-MiniLM-L6-v2"),
            url: "http://127.0.0.1:8080".into(),
            model: "text-embedding-3-small".into(),
            api_key_env: "OPENAI_API_KEY".into(),
            max_inputs_per_request: 100,
            requests_per_second: 10,
            max_attempts: 5,
            first_backoff: Duration::from_millis(500),
            timeout: Duration::from_secs(30),
            skip_kinds: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SagaConfig {
    #[serde(with = "humantime_serde")]
    pub lock_ttl: Duration,
    #[serde(with = "humantime_serde")]
    pub lock_wait: Duration,
    /// First wait before retrying a store call; each retry doubles it.
    #[serde(with = "humantime_serde")]
    pub retry_first: Duration,
    /// Retries of a store call after the first attempt.
    pub retries: usize,
    /// Consecutive transient failures that open a store's circuit breaker.
    pub breaker_threshold: u32,
    #[serde(with = "humantime_serde")]
    pub breaker_cooldown: Duration,
    /// Group commit: batches in flight that reach a store together are written
    /// in one store call of at most this many records (1 writes every batch
    /// alone). Raises throughput when `batch.max_in_flight` is above 1.
    pub group_commit_records: usize,
    /// Store calls per store running at once (parallel transactions).
    pub writers_per_store: usize,
    /// Store calls of the graph store at once, in place of `writers_per_store`:
    /// Neo4j's parallel transactions queue on the locks of the same Vehicle
    /// and Location nodes (one writer was faster on Neo4j-bound traffic and
    /// no slower on the mixed traffic, load/RESULTS.md).
    pub graph_writers: usize,
}

impl Default for SagaConfig {
    fn default() -> Self {
        SagaConfig {
            lock_ttl: Duration::from_secs(60),
            lock_wait: Duration::from_secs(120),
            retry_first: Duration::from_secs(1),
            retries: 3,
            breaker_threshold: 5,
            breaker_cooldown: Duration::from_secs(30),
            group_commit_records: 2_000,
            writers_per_store: 2,
            graph_writers: 1,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Address of `/metrics`, `/healthz`, `/readyz`; empty disables the listener.
    pub listen: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig { listen: "127.0.0.1:9464".into() }
    }
}

/// The checks of these sections.
pub(super) fn validate(c: &Config) -> anyhow::Result<()> {
    require(&[
        (c.batch.max_events > 0, "batch.max_events", "must be at least 1"),
        (!c.batch.max_wait.is_zero(), "batch.max_wait", "must be longer than 0 s"),
        (c.batch.max_in_flight > 0, "batch.max_in_flight", "must be at least 1"),
        (
            (0.0..=1.0).contains(&c.source.poison_fraction),
            "source.poison_fraction",
            "must be between 0 and 1",
        ),
        (
            c.source.days > 0.0 && c.source.days <= 3660.0,
            "source.days",
            "must be more than 0 and at most 3660",
        ),
        (
            c.source.until.is_empty() || c.source.until.parse::<chrono::DateTime<chrono::Utc>>().is_ok(),
            "source.until",
            "must be an RFC 3339 instant like 2026-12-01T00:00:00Z, or empty for now",
        ),
        (c.source.vehicles > 0, "source.vehicles", "must be at least 1"),
        (c.source.partitions > 0, "source.partitions", "must be at least 1"),
        (c.source.queue > 0, "source.queue", "must be at least 1"),
        (
            c.source.kind != SourceKind::File || !c.source.paths.is_empty(),
            "source.paths",
            "must name at least one file or directory when source.kind = \"file\"",
        ),
        (c.embed.dims > 0, "embed.dims", "must be at least 1"),
        (
            c.embed.kind != EmbedKind::Minilm || c.embed.dims == 384,
            "embed.dims",
            "must be 384 with embed.kind = \"minilm\" (the model's size)",
        ),
        (c.embed.max_attempts > 0, "embed.max_attempts", "must be at least 1"),
        (c.embed.requests_per_second > 0, "embed.requests_per_second", "must be at least 1"),
        (c.embed.max_inputs_per_request > 0, "embed.max_inputs_per_request", "must be at least 1"),
        (!c.saga.lock_ttl.is_zero(), "saga.lock_ttl", "must be longer than 0 s"),
        (c.saga.breaker_threshold > 0, "saga.breaker_threshold", "must be at least 1"),
        (c.saga.group_commit_records > 0, "saga.group_commit_records", "must be at least 1"),
        (c.saga.writers_per_store > 0, "saga.writers_per_store", "must be at least 1"),
        (c.saga.graph_writers > 0, "saga.graph_writers", "must be at least 1"),
    ])?;
    if c.embed.kind == EmbedKind::Openai {
        reqwest::Url::parse(&c.embed.url)
            .with_context(|| format!("invalid configuration: embed.url {:?} is not a URL", c.embed.url))?;
    }
    Ok(())
}
