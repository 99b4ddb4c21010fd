//! Shared by the integration tests that need a real service: its settings come
//! from the same configuration the binary reads (defaults, overridden by the
//! `APEX_*` variables `scripts/services env` prints), and a test fails loudly,
//! naming the service and how to start it, when nothing listens there.

#![allow(dead_code)] // each test crate uses the part it needs

pub mod tls_front;

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use apex_ingest::config::Config;
use apex_ingest::model::RecordId;
use apex_ingest::pipeline::ProcessedRecord;
use apex_ingest::store::{BatchStore, StoreError};
use async_trait::async_trait;

pub fn config() -> Config {
    Config::load(None).expect("configuration from defaults and APEX_* variables")
}

/// `host:port` of a URL or of a plain `host:port[,host:port...]` list.
fn host_port(value: &str) -> String {
    let rest = value.split("://").nth(1).unwrap_or(value);
    let rest = rest.rsplit('@').next().unwrap_or(rest);
    let rest = rest.split(['/', '?']).next().unwrap_or(rest);
    rest.split(',').next().unwrap_or(rest).to_string()
}

/// Fails the test unless something accepts connections where `service` should be.
pub fn require(service: &str, env: &str, value: &str) {
    let addr = host_port(value);
    let reachable = std::net::ToSocketAddrs::to_socket_addrs(addr.as_str())
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok());
    assert!(
        reachable,
        "{service} is not reachable at {addr} ({env}={value}). Start it with `scripts/services up {service}` \
         (or run the whole suite with `scripts/test`, which starts every service)."
    );
}

pub fn postgres_url() -> String {
    let url = config().postgres.url;
    require("postgres", "APEX_POSTGRES_URL", &url);
    url
}

/// A new PostgreSQL database `name` (dropped first if it exists), so a test's
/// rows and settings are its own; its URL.
async fn fresh_database(name: &str) -> String {
    use sqlx::Executor;
    let url = postgres_url();
    let admin = sqlx::PgPool::connect(&url).await.unwrap();
    admin.execute(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))).await.unwrap();
    admin.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).await.unwrap();
    let (base, _) = url.rsplit_once('/').unwrap();
    format!("{base}/{name}")
}

/// Configuration with records and vectors (pgvector) in a new PostgreSQL
/// database `name` of their own, no graph and no cache role.
pub async fn postgres_only_config(name: &str) -> Config {
    use apex_ingest::config::{CacheKind, GraphKind, RelationalKind, VectorKind};
    let mut c = config();
    c.postgres.url = fresh_database(name).await;
    c.stores.relational = RelationalKind::Postgres;
    c.stores.vector = VectorKind::Pgvector;
    c.stores.graph = GraphKind::None;
    c.stores.cache = CacheKind::None;
    c
}

pub fn redis_url() -> String {
    let url = config().redis.url;
    require("redis", "APEX_REDIS_URL", &url);
    url
}

pub fn kafka_brokers() -> String {
    let brokers = config().kafka.brokers;
    require("kafka", "APEX_KAFKA_BROKERS", &brokers);
    brokers
}

pub fn neo4j() -> apex_ingest::config::Neo4jConfig {
    let c = config().neo4j;
    require("neo4j", "APEX_NEO4J_URI", &c.uri);
    c
}

pub fn temporal_url() -> String {
    let url = config().temporal.url;
    require("temporal", "APEX_TEMPORAL_URL", &url);
    url
}

/// The series of metric `name` in Prometheus text as (labels, value), labels
/// like `{partition="0",topic="t"}` (empty for a metric without labels).
pub fn metric_series(text: &str, name: &str) -> Vec<(String, i64)> {
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            let labels = key.strip_prefix(name)?;
            // `name_suffix` is another metric.
            if labels.is_empty() || labels.starts_with('{') {
                Some((labels.to_owned(), value.parse::<f64>().ok()? as i64))
            } else {
                None
            }
        })
        .collect()
}

/// `section.key` of every leaf of a JSON object (configuration keys).
pub fn leaf_keys(value: &serde_json::Value, prefix: &str, out: &mut std::collections::BTreeSet<String>) {
    match value {
        // An empty table is a map of free keys (`[kafka.client]`): one leaf.
        serde_json::Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                let name = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                leaf_keys(v, &name, out);
            }
        }
        _ => {
            out.insert(prefix.to_owned());
        }
    }
}

/// The metric names in a PromQL expression or text: ours (`apex_…`) and the
/// Temporal SDK's (`temporal_…`), as whole identifiers.
pub fn metric_names(text: &str) -> std::collections::BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| word.starts_with("apex_") || word.starts_with("temporal_"))
        .map(String::from)
        .collect()
}

/// A name no other test run uses, for topics, keys and groups.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}-{:08x}", std::process::id(), rand::random::<u32>())
}

/// Wraps a real store and fails its writes while `failing` is set, or holds
/// them while `hold(true)` (a store that has become slow): a fault injected in
/// front of the real store code, not a stand-in for it. Counts its write calls.
pub struct Flaky<S> {
    pub inner: S,
    pub failing: AtomicBool,
    pub failing_removes: AtomicBool,
    pub write_calls: std::sync::atomic::AtomicUsize,
    held: tokio::sync::watch::Sender<bool>,
}

impl<S> Flaky<S> {
    pub fn new(inner: S) -> Self {
        Flaky {
            inner,
            failing: AtomicBool::new(false),
            failing_removes: AtomicBool::new(false),
            write_calls: Default::default(),
            held: tokio::sync::watch::Sender::new(false),
        }
    }

    /// While held, writes wait (they neither fail nor finish).
    pub fn hold(&self, held: bool) {
        self.held.send_replace(held);
    }
}

#[async_trait]
impl<S: apex_ingest::store::VectorStore> apex_ingest::store::VectorStore for Flaky<S> {
    async fn search(
        &self,
        query: &[f32],
        k: usize,
        filter: &apex_ingest::store::VectorFilter,
    ) -> Result<Vec<(RecordId, f32)>, StoreError> {
        self.inner.search(query, k, filter).await
    }
    async fn claim_embedder(&self, embedder: &str) -> Result<(), StoreError> {
        self.inner.claim_embedder(embedder).await
    }
}

/// The transient error a set `switch` injects.
fn injected(switch: &AtomicBool, store: &'static str) -> Result<(), StoreError> {
    if switch.load(Ordering::SeqCst) {
        return Err(StoreError { store, message: "injected outage".into(), transient: true });
    }
    Ok(())
}

#[async_trait]
impl<S: BatchStore> BatchStore for Flaky<S> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    async fn upsert_batch(&self, rows: &[&ProcessedRecord]) -> Result<(), StoreError> {
        self.write_calls.fetch_add(1, Ordering::SeqCst);
        let _ = self.held.subscribe().wait_for(|held| !held).await;
        injected(&self.failing, self.inner.name())?;
        self.inner.upsert_batch(rows).await
    }
    async fn remove_records(&self, ids: &[RecordId]) -> Result<(), StoreError> {
        injected(&self.failing_removes, self.inner.name())?;
        self.inner.remove_records(ids).await
    }
    async fn count_records(&self) -> Result<u64, StoreError> {
        self.inner.count_records().await
    }
    async fn present(&self, ids: &[RecordId]) -> Result<HashSet<RecordId>, StoreError> {
        self.inner.present(ids).await
    }
    async fn record_ids(&self) -> Result<Vec<RecordId>, StoreError> {
        self.inner.record_ids().await
    }
}

/// Configuration with every store role on its real service (PostgreSQL with
/// pgvector for records and vectors, Neo4j, Redis under `redis_prefix`),
/// failing loudly when one of them is not reachable.
pub fn real_stores_config(redis_prefix: &str) -> Config {
    use apex_ingest::config::{CacheKind, GraphKind, RelationalKind, VectorKind};
    postgres_url();
    redis_url();
    neo4j();
    let mut c = config();
    c.stores.graph = GraphKind::Neo4j;
    c.stores.relational = RelationalKind::Postgres;
    c.stores.vector = VectorKind::Pgvector;
    c.stores.cache = CacheKind::Redis;
    c.stores.redis_prefix = redis_prefix.to_string();
    c.saga.retry_first = Duration::from_millis(50);
    c.saga.breaker_cooldown = Duration::from_secs(2);
    c
}

/// A batch of generated traffic; a fresh seed gives records no other test has.
pub fn generated_batch(events: usize, seed: u64, poison: f64) -> apex_ingest::batch::Batch {
    use apex_ingest::source::generator::{Fleet, GeneratorSettings};
    let fleet = Fleet::new(GeneratorSettings {
        poison_fraction: poison,
        vehicles: 10,
        partitions: 2,
        ..GeneratorSettings::clean(seed)
    });
    apex_ingest::batch::Batch::new(fleet.take(events).collect(), apex_ingest::batch::CloseReason::Size)
}

/// A batch of `samsara` Samsara events and `edi` EDI interchanges of one
/// generated world: a world's first events may all be pings, which the graph
/// keeps as vehicle state, so this one surely holds records that are nodes.
pub fn mixed_batch(samsara: usize, edi: usize, seed: u64, poison: f64) -> apex_ingest::batch::Batch {
    use apex_ingest::model::Format;
    use apex_ingest::source::generator::{Fleet, GeneratorSettings};
    let fleet = |only| {
        Fleet::new(GeneratorSettings {
            only: Some(only),
            poison_fraction: poison,
            vehicles: 10,
            partitions: 2,
            ..GeneratorSettings::clean(seed)
        })
    };
    let events = fleet(Format::Samsara).take(samsara).chain(fleet(Format::Edi).take(edi)).collect();
    apex_ingest::batch::Batch::new(events, apex_ingest::batch::CloseReason::Size)
}

/// Parsed, extracted and embedded rows and dead letters of a batch.
pub async fn processed(
    batch: &apex_ingest::batch::Batch,
) -> (Vec<ProcessedRecord>, Vec<apex_ingest::model::DeadLetter>) {
    use apex_ingest::pipeline::{parse_events, process_records};
    let (records, dead) = parse_events(&batch.events);
    (
        process_records(
            &apex_ingest::pipeline::embed::HashingEmbedder::new(384),
            &apex_ingest::pipeline::embed::EmbedPolicy::default(),
            records,
        )
        .await
        .unwrap(),
        dead,
    )
}

/// `apex-ingest worker` as a child process on the configuration's Temporal
/// server and task queue, store directory, Redis and Redis prefix (killed when dropped).
pub struct WorkerProcess {
    pub child: Child,
    log: PathBuf,
    /// Its `/metrics` (ours and the Temporal SDK's).
    pub metrics: String,
}

impl WorkerProcess {
    pub fn start(config: &Config, name: &str) -> WorkerProcess {
        std::fs::create_dir_all(&config.stores.data_dir).unwrap();
        let log = config.stores.data_dir.join(format!("worker-{name}.log"));
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(env!("CARGO_BIN_EXE_apex-ingest"))
            .arg("worker")
            .env("APEX_TEMPORAL_URL", &config.temporal.url)
            .env("APEX_TEMPORAL_TASK_QUEUE", &config.temporal.task_queue)
            .env("APEX_TEMPORAL_DEPLOYMENT_NAME", &config.temporal.deployment_name)
            .env("APEX_TEMPORAL_BUILD_ID", &config.temporal.build_id)
            .env("APEX_TEMPORAL_CA_FILE", &config.temporal.ca_file)
            .env("APEX_TEMPORAL_CLIENT_CERT_FILE", &config.temporal.client_cert_file)
            .env("APEX_TEMPORAL_CLIENT_KEY_FILE", &config.temporal.client_key_file)
            .env("APEX_TEMPORAL_API_KEY", config.temporal.api_key.to_string())
            .env("APEX_STORES_DATA_DIR", &config.stores.data_dir)
            .env("APEX_STORES_CACHE", "redis")
            .env("APEX_STORES_REDIS_PREFIX", &config.stores.redis_prefix)
            .env("APEX_REDIS_URL", &config.redis.url)
            .env("APEX_METRICS_LISTEN", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        WorkerProcess { child, log, metrics: format!("http://127.0.0.1:{port}/metrics") }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: no drain; its running tasks time out on the server and go to another worker.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `[kafka]` of the plaintext broker at `brokers` (the tests' scratch clients).
pub fn kafka_at(brokers: &str) -> apex_ingest::config::KafkaConfig {
    apex_ingest::config::KafkaConfig { brokers: brokers.to_owned(), ..Default::default() }
}

/// `[kafka]` lines that turn off every input topic but `keep` (which the caller sets).
pub fn topics_off_except(keep: &str) -> String {
    [
        "samsara_topic",
        "edi_topic",
        "front_topic",
        "turvo_topic",
        "bank_topic",
        "crm_topic",
        "market_topic",
        "financial_topic",
    ]
    .into_iter()
    .filter(|t| *t != keep)
    .map(|t| format!("{t} = \"\"\n"))
    .collect()
}

/// A variable `scripts/services env` prints (`SERVICES_*`), failing with how
/// to start `services` when it is not set.
pub fn services_var(name: &str, services: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: start them with `scripts/services up {services}` and \
             `eval \"$(scripts/services env)\"` (or run the whole suite with `scripts/test`)"
        )
    })
}

/// `apex-ingest run --config file` with `envs` besides the test's own
/// environment, its log (stderr) appended to `log`.
pub fn spawn_run(file: &std::path::Path, envs: &[(&str, String)], log: &std::path::Path) -> Child {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
    Command::new(env!("CARGO_BIN_EXE_apex-ingest"))
        .args(["run", "--config"])
        .arg(file)
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// With `APEX_RECORD_HISTORIES=<dir>` (`scripts/record-histories` sets it to
/// `tests/fixtures/histories`), writes a workflow's history there as
/// `<name>.json`, for the replay test (`tests/replay.rs`) to replay against
/// the code of every later commit. Without it, does nothing.
pub async fn keep_history(client: &temporalio_client::Client, workflow_id: &str, name: &str) {
    let Some(dir) = std::env::var_os("APEX_RECORD_HISTORIES") else { return };
    let handle = client.get_workflow_handle::<temporalio_client::UntypedWorkflow>(workflow_id.to_owned());
    let json = handle.fetch_history(Default::default()).to_json().await.expect("the workflow's history");
    let path = PathBuf::from(dir).join(format!("{name}.json"));
    std::fs::write(&path, json).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// Whether the default graph policy keeps `record` as its vehicle's state
/// (`[graph] state_kinds`: location and stats pings), not as a node.
pub fn kept_as_state(record: &apex_ingest::model::Record) -> bool {
    Config::default().graph.state_kinds.contains(&record.kind)
}

/// Of `records`, the ids `store` holds one each of under the default
/// policies: all of them, but the graph no node for a record kept as state.
pub fn held_by<'a>(
    store: &str,
    records: impl IntoIterator<Item = &'a apex_ingest::model::Record>,
) -> Vec<RecordId> {
    records.into_iter().filter(|r| store != "graph" || !kept_as_state(r)).map(|r| r.id.clone()).collect()
}
