//! Configuration: one TOML file plus `APEX_<SECTION>_<KEY>` environment
//! overrides (e.g. `APEX_BATCH_MAX_EVENTS=50`, `APEX_STORES_DATA_DIR=/data`;
//! which variables are keys: `env`).
//! Unknown keys and bad values fail at start with the key named. Plain
//! settings only: nothing here knows the components they configure (`app`
//! wires them).

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use figment::Figment;
use figment::providers::{Format as _, Serialized, Toml};
use serde::{Deserialize, Serialize};

mod env;

/// The topics of the design (`topics/topics.toml`), the `[kafka]` defaults.
pub const SAMSARA_TOPIC: &str = "samsara.telemetry.v1";
pub const EDI_TOPIC: &str = "edi.carrier.v1";
pub const DLQ_TOPIC: &str = "ingest.dlq.v1";
pub const FRONT_TOPIC: &str = "webhooks.frontapp.v1";
pub const TURVO_TOPIC: &str = "webhooks.turvo.v1";
pub const BANK_TOPIC: &str = "poll.bank.v1";
pub const CRM_TOPIC: &str = "poll.crm.v1";
pub const MARKET_TOPIC: &str = "poll.market.v1";
pub const FINANCIAL_TOPIC: &str = "poll.financial.v1";
/// The stat types of Samsara's stats feed the poller turns into events.
pub const SAMSARA_FEED_TYPES: [&str; 5] =
    ["gps", "engineStates", "fuelPercents", "obdOdometerMeters", "engineCoolantTemperatureMilliC"];
pub const GENERIC_WEBHOOK_TOPIC: &str = "webhooks.generic.v1";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub source: SourceConfig,
    pub batch: BatchConfig,
    pub embed: EmbedConfig,
    pub stores: StoresConfig,
    pub saga: SagaConfig,
    pub metrics: MetricsConfig,
    pub kafka: KafkaConfig,
    pub postgres: PostgresConfig,
    pub redis: RedisConfig,
    pub neo4j: Neo4jConfig,
    pub temporal: TemporalConfig,
    pub qdrant: QdrantConfig,
    pub edge: EdgeConfig,
    pub poll: PollConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QdrantConfig {
    /// gRPC URL of a Qdrant server (port 6334). No server is available on the
    /// machines this project is built on; see docs/testing.md.
    pub url: String,
    pub collection: String,
}

impl Default for QdrantConfig {
    fn default() -> Self {
        QdrantConfig { url: "http://127.0.0.1:6334".into(), collection: "apex_records".into() }
    }
}

/// Connection settings of the real services; defaults are where
/// `scripts/services up` starts them (`scripts/services env` prints them).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Comma-separated bootstrap servers.
    pub brokers: String,
    /// Consumer group: every process with this id shares the partitions.
    pub group_id: String,
    /// Topic of Samsara telemetry (JSON).
    pub samsara_topic: String,
    /// Topic of carrier EDI (X12 interchanges).
    pub edi_topic: String,
    /// Topic of Front webhooks (the edge produces them); empty is not read.
    pub front_topic: String,
    /// Topic of Turvo webhooks (the edge produces them); empty is not read.
    pub turvo_topic: String,
    /// Topic of bank transactions (the Plaid poller produces them); empty is not read.
    pub bank_topic: String,
    /// Topic of CRM objects (the HubSpot poller produces them); empty is not read.
    pub crm_topic: String,
    /// Topic of market index points (the SONAR poller produces them); empty is not read.
    pub market_topic: String,
    /// Topic of invoices, payments and other accounting objects (the QuickBooks poller); empty is not read.
    pub financial_topic: String,
    /// Where poison records are published (besides the dead-letter table).
    pub dlq_topic: String,
    /// Where to start a partition that has no committed offset: "earliest" or "latest".
    pub auto_offset_reset: String,
    /// A member that sends no heartbeat for this long leaves the group.
    #[serde(with = "humantime_serde")]
    pub session_timeout: Duration,
    /// How often each assigned partition's lag is measured against the broker's end offset.
    #[serde(with = "humantime_serde")]
    pub statistics_interval: Duration,
    /// On revocation, how long batches of the revoked partitions may take to
    /// finish before they are fenced (stopped before their next store call,
    /// uncommitted) and the partitions released.
    #[serde(with = "humantime_serde")]
    pub revoke_deadline: Duration,
    /// Fetched events a member holds that no batch has taken yet (the pipeline
    /// is full): at this many it pauses its partitions, at half as many it
    /// resumes. Half must cover what the pipeline writes while a resumed
    /// partition is fetched again (librdkafka drops a paused partition's
    /// prefetched messages), and must hold `source.queue`.
    pub max_buffered_events: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PostgresConfig {
    pub url: String,
    /// Connections in the pool; batches in flight write in parallel up to this.
    pub max_connections: u32,
    /// HNSW index of the embeddings (only with `stores.vector = "pgvector"`):
    /// links per node. Higher is better recall and slower inserts.
    pub hnsw_m: u16,
    /// HNSW candidate list while building; higher is better recall, slower inserts.
    pub hnsw_ef_construction: u16,
    /// HNSW candidate list while searching (`hnsw.ef_search`); higher is better
    /// recall, slower searches. Searches are rare next to inserts.
    pub hnsw_ef_search: u16,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    pub url: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Neo4jConfig {
    /// host:port of the Bolt listener (or a bolt:// / neo4j:// URI).
    pub uri: String,
    pub user: String,
    pub password: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TemporalConfig {
    /// gRPC URL of the Temporal frontend.
    pub url: String,
    pub namespace: String,
    /// Task queue the consumer starts batch workflows on and workers poll.
    pub task_queue: String,
    /// Build id the worker reports (shown in the UI per task it ran).
    pub build_id: String,
    /// Share of batches (by a stable hash of the batch id) run on Temporal,
    /// 0–100; the rest take the direct path. 0 needs no Temporal at all.
    pub rollout_percent: u8,
    /// Events per child workflow of a batch, 1–100: 1 is a child per event;
    /// the batch size is one child per batch (fewer children, far fewer
    /// history events; `load/RESULTS.md`). A child's result is one Temporal
    /// payload (2 MB at most; 100 events are about 0.5 MB).
    pub events_per_child: usize,
    /// How a child runs parse → extract → embed over its events.
    pub child_steps: ChildSteps,
    /// Payloads of 1 kB and more are zstd-compressed before they reach the
    /// server (fewer bytes of history; the UI then shows compressed bytes).
    /// Compressed payloads are read either way.
    pub compress_payloads: bool,
    /// Worker: workflow tasks (batch and event workflows) run at once.
    pub max_concurrent_workflow_tasks: usize,
    /// Worker: activities (parse, extract_entities, embed, write_batch) run at once.
    pub max_concurrent_activities: usize,
    /// Worker: long polls open at once for workflow tasks and for activity tasks.
    pub max_pollers: usize,
    /// Worker: workflows kept in memory between tasks (sticky cache).
    pub max_cached_workflows: usize,
    /// A batch workflow still running after this is timed out; the consumer
    /// then runs the batch again.
    #[serde(with = "humantime_serde")]
    pub workflow_timeout: Duration,
    /// A batch waiting on its workflow longer than this counts in
    /// `apex_temporal_stalled_batches`, and a warning names the task queue
    /// when no worker polls it.
    #[serde(with = "humantime_serde")]
    pub stall_warning: Duration,
}

impl KafkaConfig {
    /// Reads the Samsara and EDI topics only: not the webhook and poll topics
    /// (load runs and tests on topics of their own).
    pub fn only_samsara_and_edi(&mut self) {
        for topic in [
            &mut self.front_topic,
            &mut self.turvo_topic,
            &mut self.bank_topic,
            &mut self.crm_topic,
            &mut self.market_topic,
            &mut self.financial_topic,
        ] {
            topic.clear();
        }
    }
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "127.0.0.1:9092".into(),
            group_id: "apex-ingest".into(),
            samsara_topic: SAMSARA_TOPIC.into(),
            edi_topic: EDI_TOPIC.into(),
            front_topic: FRONT_TOPIC.into(),
            turvo_topic: TURVO_TOPIC.into(),
            bank_topic: BANK_TOPIC.into(),
            crm_topic: CRM_TOPIC.into(),
            market_topic: MARKET_TOPIC.into(),
            financial_topic: FINANCIAL_TOPIC.into(),
            dlq_topic: DLQ_TOPIC.into(),
            auto_offset_reset: "earliest".into(),
            session_timeout: Duration::from_secs(30),
            statistics_interval: Duration::from_secs(5),
            revoke_deadline: Duration::from_secs(20),
            max_buffered_events: 20_000,
        }
    }
}

impl Default for PostgresConfig {
    fn default() -> Self {
        PostgresConfig {
            url: "postgres://postgres@127.0.0.1:5432/apex".into(),
            max_connections: 8,
            // Half pgvector's m: inserts 1.5-2.2x faster on this pipeline's
            // vectors at a recall@1 within about 2 points of m = 16, and a
            // wider search list than pgvector's 40 buys 1-2 points back
            // (load/RESULTS.md).
            hnsw_m: 8,
            hnsw_ef_construction: 64,
            hnsw_ef_search: 100,
        }
    }
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig { url: "redis://127.0.0.1:6379/".into() }
    }
}

impl Default for Neo4jConfig {
    fn default() -> Self {
        Neo4jConfig { uri: "127.0.0.1:7687".into(), user: "neo4j".into(), password: String::new() }
    }
}

impl Default for TemporalConfig {
    fn default() -> Self {
        TemporalConfig {
            url: "http://127.0.0.1:7233".into(),
            namespace: "default".into(),
            task_queue: "apex-ingest".into(),
            build_id: concat!("apex-ingest-", env!("CARGO_PKG_VERSION")).into(),
            rollout_percent: 0,
            events_per_child: 100,
            child_steps: ChildSteps::Local,
            compress_payloads: true,
            max_concurrent_workflow_tasks: 100,
            max_concurrent_activities: 100,
            max_pollers: 20,
            max_cached_workflows: 1000,
            workflow_timeout: Duration::from_secs(30 * 60),
            stall_warning: Duration::from_secs(60),
        }
    }
}

/// The activities of a child workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChildSteps {
    /// One activity per stage: `parse`, `extract_entities`, `embed`, each
    /// retried on its own and visible in the history.
    Stages,
    /// One `process` activity doing all three (one task round trip).
    Combined,
    /// `process` as a local activity: run by the worker that runs the child,
    /// recorded as a marker, no activity task through the server.
    Local,
}

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
    pub edi_fraction: f64,
    pub vehicles: usize,
    pub partitions: i32,
    pub seed: u64,
    /// File source: files or directories.
    pub paths: Vec<PathBuf>,
    /// Capacity of the queue between source and batcher, in events.
    pub queue: usize,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmbedKind {
    Hashing,
    Openai,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmbedConfig {
    pub kind: EmbedKind,
    pub dims: usize,
    /// OpenAI-compatible provider: base URL (`/v1/embeddings` is appended).
    pub url: String,
    pub model: String,
    /// Name of the environment variable holding the API key (never the key itself).
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GraphKind {
    Embedded,
    Neo4j,
    /// No graph store: entities are still kept in the relational `entities` table.
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RelationalKind {
    Embedded,
    Postgres,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VectorKind {
    Embedded,
    /// The embeddings column of the PostgreSQL records table (needs relational = "postgres").
    Pgvector,
    /// A Qdrant server (`[qdrant] url`).
    Qdrant,
    /// No vector store (and no embedding is computed).
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheKind {
    Embedded,
    Redis,
    /// No cache: locks and idempotency records are kept in process only, so
    /// a re-delivery after a restart is written again (harmless: upserts).
    None,
}

/// Which implementation serves each store role; the pipeline does not know.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoresConfig {
    /// Directory of the embedded stores (SQLite files).
    pub data_dir: PathBuf,
    pub graph: GraphKind,
    pub relational: RelationalKind,
    pub vector: VectorKind,
    /// The cache role; the coordinator (locks, idempotency) goes with it.
    pub cache: CacheKind,
    /// Prefix of every Redis key this service writes.
    pub redis_prefix: String,
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

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Address of `/metrics`, `/healthz`, `/readyz`; empty disables the listener.
    pub listen: String,
}

impl Default for SourceConfig {
    fn default() -> Self {
        SourceConfig {
            kind: SourceKind::Generator,
            events: 10_000,
            rate: 0,
            poison_fraction: 0.02,
            edi_fraction: 0.15,
            vehicles: 250,
            partitions: 6,
            seed: 42,
            paths: Vec::new(),
            queue: 1_000,
        }
    }
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

impl Default for EmbedConfig {
    fn default() -> Self {
        EmbedConfig {
            kind: EmbedKind::Hashing,
            dims: 384,
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

impl Default for StoresConfig {
    fn default() -> Self {
        StoresConfig {
            data_dir: PathBuf::from("apex-data"),
            graph: GraphKind::Embedded,
            relational: RelationalKind::Embedded,
            vector: VectorKind::Embedded,
            cache: CacheKind::Embedded,
            redis_prefix: "apex".into(),
        }
    }
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

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig { listen: "127.0.0.1:9464".into() }
    }
}

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
    pub samsara: WebhookConfig,
    pub front: WebhookConfig,
    pub turvo: WebhookConfig,
    pub generic: WebhookConfig,
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

/// The pollers: each configured source is fetched every `interval`, its
/// records produced to its topic before its cursor moves (`src/poll`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PollConfig {
    /// Time between two polls of one source.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Attempts of one provider request (429 and 5xx are retried; a 429's Retry-After is honoured).
    pub max_attempts: u32,
    /// Wait before the second attempt, doubling after each (unless Retry-After says otherwise).
    #[serde(with = "humantime_serde")]
    pub first_backoff: Duration,
    /// One provider request, answer included.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Poll on Temporal: a `PollingWorkflow` per source (`apex-ingest pollers
    /// start`) run by the workers, and `run` polls nothing itself.
    pub on_temporal: bool,
    /// A `PollingWorkflow` continues as new after this many polls (its history stays small).
    pub iterations_per_run: u32,
    pub plaid: PlaidConfig,
    pub hubspot: HubspotConfig,
    pub samsara_feed: SamsaraFeedConfig,
    pub sonar: SonarConfig,
    pub quickbooks: QuickbooksConfig,
}

impl Default for PollConfig {
    fn default() -> Self {
        PollConfig {
            interval: Duration::from_secs(15 * 60),
            max_attempts: 5,
            first_backoff: Duration::from_secs(1),
            request_timeout: Duration::from_secs(30),
            on_temporal: false,
            iterations_per_run: 100,
            plaid: PlaidConfig::default(),
            hubspot: HubspotConfig::default(),
            samsara_feed: SamsaraFeedConfig::default(),
            sonar: SonarConfig::default(),
            quickbooks: QuickbooksConfig::default(),
        }
    }
}

/// Vehicle stats from Samsara's stats feed (source `samsara`), for fleets
/// that poll instead of pushing webhooks.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SamsaraFeedConfig {
    /// Samsara's API: https://api.samsara.com.
    pub url: String,
    /// Variable holding the API token (never the value); "" = off.
    pub token_env: String,
    /// Stat types asked for (Samsara allows at most 3): gps, engineStates,
    /// fuelPercents, obdOdometerMeters, engineCoolantTemperatureMilliC.
    pub types: Vec<String>,
    /// Requests per second at most (Samsara allows 150 per token).
    pub requests_per_second: u32,
    /// Where the events go: the Samsara topic members already read.
    pub topic: String,
}

impl Default for SamsaraFeedConfig {
    fn default() -> Self {
        SamsaraFeedConfig {
            url: "https://api.samsara.com".into(),
            token_env: String::new(),
            types: ["gps", "engineStates", "fuelPercents"].map(String::from).to_vec(),
            requests_per_second: 25,
            topic: SAMSARA_TOPIC.into(),
        }
    }
}

/// Market index values from FreightWaves SONAR (source `market`; SONAR has
/// no webhooks).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SonarConfig {
    /// SONAR's API: https://api.freightwaves.com.
    pub url: String,
    /// Variables holding the SONAR username and password (never the values),
    /// exchanged for a bearer token; the source is on when `username_env` is set.
    pub username_env: String,
    pub password_env: String,
    /// Index tickers (`OTRI`, `NTI`, ...), each read for every qualifier.
    pub indices: Vec<String>,
    /// Markets, lanes or levels (`USA`, `ATL`, `ATLCHI`).
    pub qualifiers: Vec<String>,
    /// How far back the first poll of a series reads.
    #[serde(with = "humantime_serde")]
    pub backfill: Duration,
    /// Requests per minute at most (SONAR's global limit is 100; over it, it blocks for minutes).
    pub requests_per_minute: u32,
    pub topic: String,
}

impl Default for SonarConfig {
    fn default() -> Self {
        SonarConfig {
            url: "https://api.freightwaves.com".into(),
            username_env: String::new(),
            password_env: "SONAR_PASSWORD".into(),
            indices: ["OTRI", "NTI"].map(String::from).to_vec(),
            qualifiers: vec!["USA".into()],
            backfill: Duration::from_secs(30 * 86_400),
            requests_per_minute: 100,
            topic: MARKET_TOPIC.into(),
        }
    }
}

/// Accounting objects from QuickBooks Online's change data capture (source `financial`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuickbooksConfig {
    /// QuickBooks Online's API: https://quickbooks.api.intuit.com.
    pub url: String,
    /// The company (realm) id.
    pub realm_id: String,
    /// Variable holding an OAuth 2 access token (never the value); "" = off.
    pub token_env: String,
    /// Entities read (CDC supports most; not JournalCode, TaxAgency, TimeActivity, TaxCode, TaxRate).
    pub entities: Vec<String>,
    /// Requests per minute at most (QuickBooks allows 500 per company).
    pub requests_per_minute: u32,
    /// When the cursor is older than CDC's 30-day look-back, read everything
    /// again with queries (a full re-sync) instead of failing the poll.
    pub resync_after_gap: bool,
    pub topic: String,
}

impl Default for QuickbooksConfig {
    fn default() -> Self {
        QuickbooksConfig {
            url: "https://quickbooks.api.intuit.com".into(),
            realm_id: String::new(),
            token_env: String::new(),
            entities: ["Invoice", "Payment", "Bill", "Customer", "Vendor"].map(String::from).to_vec(),
            requests_per_minute: 100,
            resync_after_gap: true,
            topic: FINANCIAL_TOPIC.into(),
        }
    }
}

/// CRM objects from HubSpot's CRM search (source `crm`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HubspotConfig {
    /// HubSpot's API: https://api.hubapi.com.
    pub url: String,
    /// Variable holding a private app's access token (never the value); "" = off.
    pub token_env: String,
    /// Object types searched, each by its modified-date property
    /// (`lastmodifieddate` for contacts, `hs_lastmodifieddate` for the others).
    pub objects: Vec<String>,
    /// Results per search request (HubSpot allows at most 200).
    pub page_size: u32,
    /// Search requests per second at most (HubSpot's limit is 5 per account).
    pub requests_per_second: u32,
    /// A poll's window ends this long before the poll starts: HubSpot's
    /// search shows edits with a lag, and an edit not yet searchable when its
    /// window closed would be missed for good.
    #[serde(with = "humantime_serde")]
    pub search_lag: Duration,
    pub topic: String,
}

impl Default for HubspotConfig {
    fn default() -> Self {
        HubspotConfig {
            url: "https://api.hubapi.com".into(),
            token_env: String::new(),
            objects: ["contacts", "companies", "deals"].map(String::from).to_vec(),
            page_size: 200,
            requests_per_second: 5,
            search_lag: Duration::from_secs(60),
            topic: CRM_TOPIC.into(),
        }
    }
}

/// Bank transactions from Plaid's `/transactions/sync` (source `bank`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlaidConfig {
    /// Plaid's API: https://production.plaid.com (or sandbox./development.).
    pub url: String,
    /// Variables holding the client id, the secret and the Item's access token
    /// (never the values). The source is on when `access_token_env` is set.
    pub client_id_env: String,
    pub secret_env: String,
    pub access_token_env: String,
    /// Transactions per page (Plaid allows at most 500).
    pub count: u32,
    /// Requests per minute at most.
    pub requests_per_minute: u32,
    pub topic: String,
}

impl Default for PlaidConfig {
    fn default() -> Self {
        PlaidConfig {
            url: "https://production.plaid.com".into(),
            client_id_env: "PLAID_CLIENT_ID".into(),
            secret_env: "PLAID_SECRET".into(),
            access_token_env: String::new(),
            count: 500,
            requests_per_minute: 50,
            topic: BANK_TOPIC.into(),
        }
    }
}

/// One error of the configuration, naming the variable that set the key if one did.
fn explain(e: figment::Error, variables: &[(String, env::Variable)]) -> String {
    // The path ends with the offending key (an unknown field's name included).
    match env::variable_of(&e.path.join("."), variables) {
        Some(name) => format!("{e} (set by the variable {name})"),
        None => e.to_string(),
    }
}

impl Config {
    /// Defaults, then the file (if any), then `APEX_*` variables; then validation.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.is_file() {
                bail!("config file {} does not exist", path.display());
            }
            fig = fig.merge(Toml::file_exact(path));
        }
        let defaults = figment::value::Value::serialize(Config::default())?;
        let sections: Vec<String> = defaults.into_dict().unwrap_or_default().into_keys().collect();
        let variables = env::variables(&sections);
        let ignored: Vec<&str> = variables
            .iter()
            .filter(|(_, v)| matches!(v, env::Variable::ServiceLink | env::Variable::NoSection))
            .map(|(name, _)| name.as_str())
            .collect();
        if !ignored.is_empty() {
            tracing::warn!(
                variables = ?ignored,
                "APEX_* variables ignored: not configuration keys (service links, or no section of that name; docs/configuration.md)"
            );
        }
        let config: Config = fig.merge(env::provider(sections)).extract().map_err(|e| {
            let detail: Vec<String> = e.into_iter().map(|e| explain(e, &variables)).collect();
            anyhow::anyhow!("invalid configuration: {}", detail.join("; "))
        })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> anyhow::Result<()> {
        let checks: &[(bool, &str, &str)] = &[
            (self.batch.max_events > 0, "batch.max_events", "must be at least 1"),
            (!self.batch.max_wait.is_zero(), "batch.max_wait", "must be longer than 0 s"),
            (self.batch.max_in_flight > 0, "batch.max_in_flight", "must be at least 1"),
            (
                (0.0..=1.0).contains(&self.source.poison_fraction),
                "source.poison_fraction",
                "must be between 0 and 1",
            ),
            (
                (0.0..=1.0).contains(&self.source.edi_fraction),
                "source.edi_fraction",
                "must be between 0 and 1",
            ),
            (self.source.vehicles > 0, "source.vehicles", "must be at least 1"),
            (self.source.partitions > 0, "source.partitions", "must be at least 1"),
            (self.source.queue > 0, "source.queue", "must be at least 1"),
            (
                self.source.kind != SourceKind::File || !self.source.paths.is_empty(),
                "source.paths",
                "must name at least one file or directory when source.kind = \"file\"",
            ),
            (
                self.kafka.max_buffered_events / 2 >= self.source.queue,
                "kafka.max_buffered_events",
                "must be at least twice source.queue (a member resumes at half of it)",
            ),
            (
                ["earliest", "latest"].contains(&self.kafka.auto_offset_reset.as_str()),
                "kafka.auto_offset_reset",
                "must be \"earliest\" or \"latest\"",
            ),
            (!self.kafka.group_id.is_empty(), "kafka.group_id", "must not be empty"),
            (self.temporal.rollout_percent <= 100, "temporal.rollout_percent", "must be between 0 and 100"),
            (!self.temporal.task_queue.is_empty(), "temporal.task_queue", "must not be empty"),
            (
                (1..=100).contains(&self.temporal.events_per_child),
                "temporal.events_per_child",
                "must be between 1 and 100 (a child's result must fit one 2 MB Temporal payload)",
            ),
            (
                self.temporal.max_concurrent_workflow_tasks >= 2,
                "temporal.max_concurrent_workflow_tasks",
                "must be at least 2 (a batch workflow and its children take turns)",
            ),
            (
                self.temporal.max_concurrent_activities > 0,
                "temporal.max_concurrent_activities",
                "must be at least 1",
            ),
            (
                self.temporal.max_pollers >= 2,
                "temporal.max_pollers",
                "must be at least 2 (the SDK's least for workflow tasks)",
            ),
            (
                !self.temporal.workflow_timeout.is_zero(),
                "temporal.workflow_timeout",
                "must be longer than 0 s",
            ),
            (!self.temporal.stall_warning.is_zero(), "temporal.stall_warning", "must be longer than 0 s"),
            (self.embed.dims > 0, "embed.dims", "must be at least 1"),
            (self.embed.max_attempts > 0, "embed.max_attempts", "must be at least 1"),
            (self.embed.requests_per_second > 0, "embed.requests_per_second", "must be at least 1"),
            (self.embed.max_inputs_per_request > 0, "embed.max_inputs_per_request", "must be at least 1"),
            (!self.saga.lock_ttl.is_zero(), "saga.lock_ttl", "must be longer than 0 s"),
            (self.saga.breaker_threshold > 0, "saga.breaker_threshold", "must be at least 1"),
            (self.saga.group_commit_records > 0, "saga.group_commit_records", "must be at least 1"),
            (self.saga.writers_per_store > 0, "saga.writers_per_store", "must be at least 1"),
            (self.saga.graph_writers > 0, "saga.graph_writers", "must be at least 1"),
            (self.edge.max_body_bytes > 0, "edge.max_body_bytes", "must be at least 1"),
            (self.edge.dedupe_capacity > 0, "edge.dedupe_capacity", "must be at least 1"),
            (!self.edge.dedupe_ttl.is_zero(), "edge.dedupe_ttl", "must be longer than 0 s"),
            (!self.edge.produce_timeout.is_zero(), "edge.produce_timeout", "must be longer than 0 s"),
            (!self.edge.body_timeout.is_zero(), "edge.body_timeout", "must be longer than 0 s"),
            (!self.poll.interval.is_zero(), "poll.interval", "must be longer than 0 s"),
            (self.poll.max_attempts > 0, "poll.max_attempts", "must be at least 1"),
            (!self.poll.request_timeout.is_zero(), "poll.request_timeout", "must be longer than 0 s"),
            (self.poll.iterations_per_run > 0, "poll.iterations_per_run", "must be at least 1"),
            (
                (1..=500).contains(&self.poll.plaid.count),
                "poll.plaid.count",
                "must be between 1 and 500 (Plaid's limit)",
            ),
            (self.poll.plaid.requests_per_minute > 0, "poll.plaid.requests_per_minute", "must be at least 1"),
            (
                (1..=200).contains(&self.poll.hubspot.page_size),
                "poll.hubspot.page_size",
                "must be between 1 and 200 (HubSpot's limit)",
            ),
            (
                self.poll.hubspot.requests_per_second > 0,
                "poll.hubspot.requests_per_second",
                "must be at least 1",
            ),
            (
                !self.poll.hubspot.objects.is_empty(),
                "poll.hubspot.objects",
                "must name at least one object type",
            ),
            (
                (1..=3).contains(&self.poll.samsara_feed.types.len()),
                "poll.samsara_feed.types",
                "must name 1 to 3 stat types (Samsara's limit)",
            ),
            (
                self.poll.samsara_feed.types.iter().all(|t| SAMSARA_FEED_TYPES.contains(&t.as_str())),
                "poll.samsara_feed.types",
                "takes gps, engineStates, fuelPercents, obdOdometerMeters, engineCoolantTemperatureMilliC",
            ),
            (
                self.poll.sonar.username_env.is_empty()
                    || !(self.poll.sonar.indices.is_empty() || self.poll.sonar.qualifiers.is_empty()),
                "poll.sonar",
                "needs at least one of indices and one of qualifiers",
            ),
            (
                self.poll.quickbooks.token_env.is_empty()
                    || !(self.poll.quickbooks.realm_id.is_empty()
                        || self.poll.quickbooks.entities.is_empty()),
                "poll.quickbooks",
                "needs realm_id and at least one entity",
            ),
            (
                (1..=500).contains(&self.poll.quickbooks.requests_per_minute),
                "poll.quickbooks.requests_per_minute",
                "must be between 1 and 500 (QuickBooks' limit per company)",
            ),
            (
                (1..=100).contains(&self.poll.sonar.requests_per_minute),
                "poll.sonar.requests_per_minute",
                "must be between 1 and 100 (SONAR's limit)",
            ),
            (
                self.poll.samsara_feed.requests_per_second > 0,
                "poll.samsara_feed.requests_per_second",
                "must be at least 1",
            ),
            (self.postgres.max_connections > 0, "postgres.max_connections", "must be at least 1"),
            (self.postgres.hnsw_m >= 2, "postgres.hnsw_m", "must be at least 2"),
            (
                (1..=1000).contains(&self.postgres.hnsw_ef_search),
                "postgres.hnsw_ef_search",
                "must be between 1 and 1000 (pgvector's range)",
            ),
            (
                self.postgres.hnsw_ef_construction >= 2 * self.postgres.hnsw_m,
                "postgres.hnsw_ef_construction",
                "must be at least twice postgres.hnsw_m (pgvector's rule)",
            ),
            (
                self.stores.vector != VectorKind::Pgvector
                    || self.stores.relational == RelationalKind::Postgres,
                "stores.vector",
                "= \"pgvector\" needs stores.relational = \"postgres\"",
            ),
        ];
        for (ok, key, problem) in checks {
            if !ok {
                bail!("invalid configuration: {key} {problem}");
            }
        }
        if self.embed.kind == EmbedKind::Openai {
            reqwest::Url::parse(&self.embed.url).with_context(|| {
                format!("invalid configuration: embed.url {:?} is not a URL", self.embed.url)
            })?;
        }
        self.metrics_addr()?;
        for (provider, route) in self.edge.routes() {
            let needs_header =
                matches!(route.scheme, SignatureScheme::SharedToken | SignatureScheme::HmacSha256);
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

    pub fn metrics_addr(&self) -> anyhow::Result<Option<SocketAddr>> {
        if self.metrics.listen.is_empty() {
            return Ok(None);
        }
        self.metrics.listen.parse().map(Some).with_context(|| {
            format!("invalid configuration: metrics.listen {:?} is not host:port", self.metrics.listen)
        })
    }

    pub fn generator_rate(&self) -> Option<NonZeroU32> {
        NonZeroU32::new(self.source.rate)
    }
}

#[cfg(test)]
// figment's Jail API returns its large error type; that is its signature, not ours.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    /// figment's Jail isolates the environment and working directory per test.
    #[test]
    fn env_overrides_file_and_errors_name_the_key() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("apex.toml", "[batch]\nmax_events = 50\nmax_wait = \"5s\"\n")?;
            let c = Config::load(Some(Path::new("apex.toml"))).unwrap();
            assert_eq!((c.batch.max_events, c.batch.max_wait), (50, Duration::from_secs(5)));

            jail.set_env("APEX_BATCH_MAX_EVENTS", "7");
            jail.set_env("APEX_STORES_DATA_DIR", "/tmp/x");
            let c = Config::load(Some(Path::new("apex.toml"))).unwrap();
            assert_eq!(c.batch.max_events, 7);
            assert_eq!(c.stores.data_dir, PathBuf::from("/tmp/x"));

            // `__` reaches the nested sections; their other keys keep their defaults.
            jail.set_env("APEX_POLL_PLAID__COUNT", "100");
            jail.set_env("APEX_EDGE_SAMSARA__SECRET_ENV", "[OLD_SECRET, NEW_SECRET]");
            jail.set_env("APEX_POLL_SAMSARA_FEED__TOKEN_ENV", "SAMSARA_API_TOKEN");
            let c = Config::load(Some(Path::new("apex.toml"))).unwrap();
            assert_eq!(c.poll.plaid.count, 100);
            assert_eq!(c.poll.plaid.requests_per_minute, PlaidConfig::default().requests_per_minute);
            assert_eq!(c.edge.samsara.secret_env, ["OLD_SECRET", "NEW_SECRET"]);
            assert_eq!(c.edge.samsara.topic, EdgeConfig::default().samsara.topic);
            assert_eq!(c.poll.samsara_feed.token_env, "SAMSARA_API_TOKEN");

            jail.set_env("APEX_BATCH_MAX_EVENTS", "many");
            // figment names env keys upper-case: `BATCH.MAX_EVENTS in APEX_ ...`.
            let e = Config::load(None).unwrap_err().to_string().to_lowercase();
            assert!(e.contains("batch.max_events") && e.contains("many"), "{e}");

            jail.set_env("APEX_BATCH_MAX_EVENTS", "0");
            let e = Config::load(None).unwrap_err().to_string();
            assert!(e.contains("batch.max_events must be at least 1"), "{e}");
            Ok(())
        });
    }

    #[test]
    fn unknown_key_is_rejected_by_name() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("apex.toml", "[batch]\nmax_event = 50\n")?;
            let e = Config::load(Some(Path::new("apex.toml"))).unwrap_err().to_string();
            assert!(e.contains("max_event"), "{e}");
            // Variables of other parts (the chart sets APEX_LOG_FORMAT) are not keys.
            jail.set_env("APEX_LOG_FORMAT", "json");
            jail.set_env("APEX_STATE_DIR", "/var/lib/apex");
            Config::load(None).unwrap();
            // What Kubernetes gives a pod of a release named `apex` or `apex-ingest`.
            jail.set_env("APEX_EDGE_SERVICE_HOST", "10.0.0.7");
            jail.set_env("APEX_EDGE_PORT", "tcp://10.0.0.7:8088");
            jail.set_env("APEX_EDGE_PORT_8088_TCP_ADDR", "10.0.0.7");
            jail.set_env("APEX_INGEST_EDGE_SERVICE_HOST", "10.0.0.7");
            jail.set_env("APEX_INGEST_EDGE_PORT", "tcp://10.0.0.7:8088");
            Config::load(None).unwrap();
            jail.set_env("APEX_POLL_PLAID__COUNTS", "1");
            let e = Config::load(None).unwrap_err().to_string();
            assert!(e.contains("counts") && e.contains("variable APEX_POLL_PLAID__COUNTS"), "{e}");
            jail.set_env("APEX_POLL_PLAID__COUNTS", "");
            jail.set_env("APEX_BATCH_MAX_EVENT", "1");
            let e = Config::load(None).unwrap_err().to_string();
            assert!(e.contains("max_event") && e.contains("variable APEX_BATCH_MAX_EVENT"), "{e}");
            Ok(())
        });
    }
}
