//! The group's members: `apex-ingest run` processes, members inside the test whose
//! graph store can be held, and runs with every batch on Temporal.

use apex_ingest::metrics::Metrics;
use apex_ingest::model::Format;
use apex_ingest::store::sqlite_graph::SqliteGraphStore;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::{self, Flaky, WorkerProcess, kafka_brokers};
use crate::world::*;

/// A member process: `apex-ingest run` as one consumer of the group.
pub struct Member {
    pub child: Child,
    pub metrics: String,
    pub log: PathBuf,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Member {
    pub fn start(brokers: &str, names: &Names, data_dir: &Path, batch: &str) -> Member {
        Member::start_with(brokers, names, data_dir, batch, &[])
    }

    /// A member with more settings as `APEX_*` variables (they win over the file).
    pub fn start_with(
        brokers: &str,
        names: &Names,
        data_dir: &Path,
        batch: &str,
        env: &[(&str, String)],
    ) -> Member {
        std::fs::create_dir_all(data_dir).unwrap();
        let port = free_port();
        let config = data_dir.join("member.toml");
        std::fs::write(
            &config,
            format!(
                "[source]\nkind = \"kafka\"\n\
                 [batch]\n{batch}\n\
                 [stores]\ndata_dir = {dir:?}\n\
                 [metrics]\nlisten = \"127.0.0.1:{port}\"\n\
                 [kafka]\nbrokers = {brokers:?}\ngroup_id = {group:?}\nsamsara_topic = {s:?}\n\
                 edi_topic = {e:?}\ndlq_topic = {d:?}\nfront_topic = \"\"\nturvo_topic = \"\"\nbank_topic = \"\"\n\
                 session_timeout = \"6s\"\n\
                 statistics_interval = \"1s\"\nmax_buffered_events = 2000\n",
                dir = data_dir.display().to_string(),
                group = names.group,
                s = names.samsara,
                e = names.edi,
                d = names.dlq,
            ),
        )
        .unwrap();
        let log = data_dir.join(format!("member-{port}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_apex-ingest"))
            .args(["run", "--config"])
            .arg(&config)
            .env("RUST_LOG", "info,librdkafka=warn")
            // The environment wins over the file (`scripts/services env` sets it).
            .env("APEX_KAFKA_BROKERS", brokers)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Member { child, metrics: format!("http://127.0.0.1:{port}"), log }
    }

    pub async fn get(&self, path: &str) -> Option<(u16, String)> {
        let r = reqwest::get(format!("{}{path}", self.metrics)).await.ok()?;
        Some((r.status().as_u16(), r.text().await.ok()?))
    }

    /// Series of a metric as (labels, value), e.g. `{partition="0",topic="t"}`.
    pub async fn series(&self, name: &str) -> Vec<(String, i64)> {
        let Some((_, text)) = self.get("/metrics").await else { return Vec::new() };
        support::metric_series(&text, name)
    }

    pub async fn value(&self, name: &str) -> i64 {
        self.series(name).await.iter().map(|(_, v)| v).sum()
    }

    /// Partitions assigned to this member: each has a paused series from its assignment on.
    pub async fn owned(&self) -> BTreeSet<String> {
        self.series("apex_kafka_partition_paused").await.into_iter().map(|(l, _)| l).collect()
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then waits for the drain to finish.
    pub async fn terminate(&mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(started.elapsed() < Duration::from_secs(60), "member did not stop:\n{}", self.logs());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub async fn wait_ready(m: &Member) {
    let started = Instant::now();
    while m.get("/readyz").await.map(|(s, _)| s) != Some(200) {
        assert!(started.elapsed() < WAIT, "member never became ready:\n{}", m.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Configuration of a member run inside the test process, on embedded stores in `dir`.
pub fn in_process_config(names: &Names, dir: &Path) -> apex_ingest::config::Config {
    let mut config = support::config();
    config.source.kind = apex_ingest::config::SourceKind::Kafka;
    config.stores.data_dir = dir.to_path_buf();
    // Small, so a slow store pauses the partitions after a few batches' worth.
    (config.source.queue, config.kafka.max_buffered_events) = (100, 200);
    config.kafka.group_id = names.group.clone();
    config.kafka.samsara_topic = names.samsara.clone();
    config.kafka.edi_topic = names.edi.clone();
    config.kafka.only_samsara_and_edi();
    config.kafka.dlq_topic = names.dlq.clone();
    config.kafka.statistics_interval = Duration::from_secs(1);
    config.kafka.session_timeout = Duration::from_secs(6);
    config
}

/// A member run inside the test process whose graph store holds every write
/// until released (a store that has become slow).
pub struct HeldMember {
    pub graph: Arc<Flaky<SqliteGraphStore>>,
    pub metrics: Arc<Metrics>,
    pub shutdown: tokio_util::sync::CancellationToken,
    pub run: tokio::task::JoinHandle<anyhow::Result<apex_ingest::app::RunTotals>>,
}

impl HeldMember {
    pub async fn start(config: &apex_ingest::config::Config) -> HeldMember {
        use apex_ingest::app;
        let mut stores = apex_ingest::app::open_stores(config).await.unwrap();
        let graph_file = config.stores.data_dir.join("graph.db");
        let graph = Arc::new(Flaky::new(SqliteGraphStore::open(&graph_file).await.unwrap()));
        graph.hold(true);
        stores.graph = Some(graph.clone());
        let metrics = Metrics::new();
        let shutdown = tokio_util::sync::CancellationToken::new();
        let orchestrator = app::direct_over(config, &stores, metrics.clone(), &shutdown).unwrap();
        let source = app::build_source(config, metrics.clone()).unwrap();
        let run = {
            let (config, metrics, shutdown) = (config.clone(), metrics.clone(), shutdown.clone());
            tokio::spawn(async move {
                app::run_pipeline(&config, source, orchestrator, metrics, shutdown, |_| {}).await
            })
        };
        HeldMember { graph, metrics, shutdown, run }
    }

    pub async fn stop(self) -> apex_ingest::app::RunTotals {
        self.shutdown.cancel();
        self.run.await.unwrap().unwrap()
    }
}

/// A run with every batch on Temporal: members and workers as processes over
/// one store directory, with the cache role (batch locks, idempotency records)
/// on real Redis so it outlives any of them.
pub struct TemporalRun {
    pub brokers: String,
    pub names: Names,
    /// The stores and the member and worker logs; kept when the test fails.
    pub dir: Option<tempfile::TempDir>,
    pub worker_config: apex_ingest::config::Config,
    pub member_env: Vec<(&'static str, String)>,
    pub want: Expected,
    pub total: i64,
}

/// Small batches, two in flight: long enough a run to be interrupted in the middle.
pub const TEMPORAL_BATCH: &str = "max_events = 25\nmax_wait = \"1s\"\nmax_in_flight = 2";

impl TemporalRun {
    /// `samsara` and `edi` events (1 % poison) on the run's own topics.
    pub async fn new(name: &str, seed: u64, samsara: u64, edi: u64) -> TemporalRun {
        let brokers = kafka_brokers();
        let temporal_url = support::temporal_url();
        let redis_url = support::redis_url();
        let names = create_topics(&brokers, 3, 2).await;
        produce_to(&brokers, &names.samsara, Format::Samsara, samsara, 0.01, seed).await;
        produce_to(&brokers, &names.edi, Format::Edi, edi, 0.01, seed + 1).await;
        let want = expected(&brokers, &names);
        let total = end_offsets(&brokers, &names.inputs()).values().sum();
        let dir = tempfile::tempdir().unwrap();
        let mut worker_config = support::config();
        worker_config.temporal.task_queue = support::unique(&format!("apex-test-{name}"));
        worker_config.stores.data_dir = dir.path().to_path_buf();
        worker_config.stores.redis_prefix = support::unique(&format!("apex-test-{name}"));
        worker_config.redis.url = redis_url.clone();
        let member_env = vec![
            ("APEX_TEMPORAL_ROLLOUT_PERCENT", "100".to_owned()),
            ("APEX_TEMPORAL_URL", temporal_url),
            ("APEX_TEMPORAL_TASK_QUEUE", worker_config.temporal.task_queue.clone()),
            ("APEX_STORES_CACHE", "redis".to_owned()),
            ("APEX_STORES_REDIS_PREFIX", worker_config.stores.redis_prefix.clone()),
            ("APEX_REDIS_URL", redis_url),
        ];
        TemporalRun { brokers, names, dir: Some(dir), worker_config, member_env, want, total }
    }

    pub fn dir(&self) -> &Path {
        self.dir.as_ref().expect("the directory lives as long as the run").path()
    }

    pub fn member(&self) -> Member {
        Member::start_with(&self.brokers, &self.names, self.dir(), TEMPORAL_BATCH, &self.member_env)
    }

    pub fn worker(&self, name: &str) -> WorkerProcess {
        WorkerProcess::start(&self.worker_config, name)
    }

    pub async fn wait_committed(&self, share: i64, what: &str) {
        let (brokers, names, total) = (&self.brokers, &self.names, self.total);
        wait_until(what, || committed_total(brokers, names) >= total * share / 100).await;
        let now = committed_total(brokers, names);
        assert!(now < total, "{what}: already at the end ({now} of {total}); the test proves nothing");
    }

    /// Every event landed once and the group committed every partition to its end.
    pub async fn assert_complete(&self) {
        wait_until_committed_to_end(&self.brokers, &self.names).await;
        assert_exactly_once(&stored(self.dir()).await, &self.want);
        let inputs = self.names.inputs();
        assert_eq!(committed(&self.brokers, &self.names.group, &inputs), end_offsets(&self.brokers, &inputs));
        // The batches went through Temporal: at least one completed workflow per 25 events.
        let client = apex_ingest::orchestrate::temporal::connect(&self.worker_config.temporal).await.unwrap();
        let query = format!(
            "WorkflowType = 'BatchIngestWorkflow' AND TaskQueue = '{}' AND ExecutionStatus = 'Completed'",
            self.worker_config.temporal.task_queue
        );
        let options = temporalio_client::WorkflowCountOptions::default();
        let completed = client.count_workflows(&query, options).await.unwrap().count() as i64;
        assert!(
            completed >= self.total / 25,
            "{completed} batch workflows completed for {} events",
            self.total
        );
    }
}

impl Drop for TemporalRun {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(dir) = self.dir.take()
        {
            eprintln!("member and worker logs kept in {}", dir.keep().display());
        }
    }
}
