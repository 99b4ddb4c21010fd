//! The Kafka consumer group against the real broker (`scripts/services up kafka`).
//! Members run as child processes of the real binary (so they can be killed
//! and restarted) except where a store must be made slow from the test. Each
//! test has its own topics and group; every check compares the stores and the
//! committed offsets with what was actually produced, read back from the topics.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use apex_ingest::kafka::dead_letter_topic::headers;
use apex_ingest::kafka::topics::{self, TopicSpec};
use apex_ingest::metrics::Metrics;
use apex_ingest::model::{Format, Origin, RawEvent, RecordId};
use apex_ingest::source::produce::{ProduceSettings, produce};
use apex_ingest::store::sqlite_graph::SqliteGraphStore;
use apex_ingest::store::{DeadLetterFilter, Stores};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use support::{Flaky, WorkerProcess, kafka_brokers};

/// One test at a time: they share two cores, and timing-sensitive steps
/// (rebalances, pauses) should not compete with another test's members.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const WAIT: Duration = Duration::from_secs(180);

type Tp = (String, i32);

/// A test's own topics and consumer group.
#[derive(Clone)]
struct Names {
    samsara: String,
    edi: String,
    dlq: String,
    group: String,
}

impl Names {
    fn inputs(&self) -> [&str; 2] {
        [&self.samsara, &self.edi]
    }
}

/// Creates the test's topics with `topics apply`, from the repository's own definitions.
async fn create_topics(brokers: &str, samsara_partitions: i32, edi_partitions: i32) -> Names {
    let u = support::unique("t");
    let names = Names {
        samsara: format!("samsara.telemetry.v1.{u}"),
        edi: format!("edi.carrier.v1.{u}"),
        dlq: format!("ingest.dlq.v1.{u}"),
        group: format!("apex-test-{u}"),
    };
    let defined = topics::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("topics/topics.toml")).unwrap();
    let spec = |base: &str, name: &str, partitions: i32| TopicSpec {
        name: name.to_owned(),
        partitions,
        dlq: None,
        ..defined.iter().find(|s| s.name == base).unwrap().clone()
    };
    let specs = [
        spec("samsara.telemetry.v1", &names.samsara, samsara_partitions),
        spec("edi.carrier.v1", &names.edi, edi_partitions),
        spec("ingest.dlq.v1", &names.dlq, 1),
    ];
    let reports = topics::apply(brokers, &specs, Some(1)).await.unwrap();
    assert!(reports.iter().all(|r| matches!(r.changes[..], [topics::Change::Created { .. }])), "{reports:?}");
    // `apply` returns once what it created has leaders, so the metadata lists it
    // at once and a second `apply` does not try to create it again.
    let md = plain_consumer(brokers, None).fetch_metadata(None, Duration::from_secs(10)).unwrap();
    for s in &specs {
        let t = md
            .topics()
            .iter()
            .find(|t| t.name() == s.name)
            .unwrap_or_else(|| panic!("{} not listed", s.name));
        assert!(t.error().is_none(), "{}: {:?}", s.name, t.error());
        assert_eq!(t.partitions().len(), s.partitions as usize, "{}", s.name);
        assert!(
            t.partitions().iter().all(|p| p.leader() >= 0),
            "{} has a partition without a leader",
            s.name
        );
    }
    // Applying again changes nothing.
    let again = topics::apply(brokers, &specs, Some(1)).await.unwrap();
    assert!(again.iter().all(|r| r.changes.is_empty()), "{again:?}");
    names
}

async fn produce_to(brokers: &str, topic: &str, format: Format, events: u64, poison: f64, seed: u64) {
    let settings =
        ProduceSettings { topic: topic.into(), format, events, rate: None, poison_fraction: poison, seed };
    let report = produce(brokers, &settings, |_| {}).await.unwrap();
    assert_eq!(report.sent, events);
}

fn plain_consumer(brokers: &str, group: Option<&str>) -> BaseConsumer {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers).set("enable.auto.commit", "false");
    if let Some(g) = group {
        c.set("group.id", g);
    }
    c.create().unwrap()
}

fn partitions(consumer: &BaseConsumer, topic: &str) -> Vec<i32> {
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).unwrap();
    md.topics()[0].partitions().iter().map(|p| p.id()).collect()
}

/// High watermark of every partition of `topics`.
fn end_offsets(brokers: &str, topics: &[&str]) -> BTreeMap<Tp, i64> {
    let c = plain_consumer(brokers, None);
    let mut out = BTreeMap::new();
    for t in topics {
        for p in partitions(&c, t) {
            let (_, high) = c.fetch_watermarks(t, p, Duration::from_secs(10)).unwrap();
            out.insert((t.to_string(), p), high);
        }
    }
    out
}

/// The group's committed offset of every partition of `topics` (absent: none committed).
fn committed(brokers: &str, group: &str, topics: &[&str]) -> BTreeMap<Tp, i64> {
    let c = plain_consumer(brokers, Some(group));
    let mut tpl = TopicPartitionList::new();
    for t in topics {
        for p in partitions(&c, t) {
            tpl.add_partition(t, p);
        }
    }
    let offsets = c.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
    offsets
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some(((e.topic().to_owned(), e.partition()), o)),
            _ => None,
        })
        .collect()
}

fn committed_total(brokers: &str, names: &Names) -> i64 {
    committed(brokers, &names.group, &names.inputs()).values().sum()
}

async fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let started = Instant::now();
    while !ok() {
        assert!(started.elapsed() < WAIT, "timed out after {WAIT:?} waiting until {what}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Waits until the group has committed every partition up to its end.
async fn wait_until_committed_to_end(brokers: &str, names: &Names) {
    let end = end_offsets(brokers, &names.inputs());
    wait_until("the group has committed every partition to its end", || {
        committed(brokers, &names.group, &names.inputs()) == end
    })
    .await;
}

/// Every message of a topic, read from the beginning to the end.
fn read_topic(brokers: &str, topic: &str, format: Format) -> Vec<RawEvent> {
    apex_ingest::kafka::read_back::read_to_end(brokers, topic, format, WAIT).unwrap()
}

/// What the stores must hold: the record ids of every message produced, and
/// the origins of the messages that are poison.
struct Expected {
    ids: BTreeSet<RecordId>,
    poison: BTreeSet<Origin>,
}

fn expected(brokers: &str, names: &Names) -> Expected {
    let mut ids = BTreeSet::new();
    let mut poison = BTreeSet::new();
    for (topic, format) in [(&names.samsara, Format::Samsara), (&names.edi, Format::Edi)] {
        for event in read_topic(brokers, topic, format) {
            match apex_ingest::pipeline::parse::parse(&event) {
                Ok(records) => ids.extend(records.into_iter().map(|r| r.id)),
                Err(_) => {
                    poison.insert(event.origin);
                }
            }
        }
    }
    Expected { ids, poison }
}

/// What one member's embedded stores hold, per durable store.
struct Stored {
    ids: BTreeMap<&'static str, Vec<RecordId>>,
    dead: Vec<apex_ingest::model::DeadLetter>,
}

async fn stored(dir: &Path) -> Stored {
    let stores = Stores::open_embedded(dir, 384).await.unwrap();
    let mut ids = BTreeMap::new();
    for s in stores.all() {
        // The in-process cache is empty in a new process by design.
        if s.durable() {
            ids.insert(s.name(), s.record_ids().await.unwrap());
        }
    }
    let filter = DeadLetterFilter { reason: None, include_replayed: true, limit: 1_000_000 };
    let dead = stores.relational.dead_letters(&filter).await.unwrap().into_iter().map(|d| d.letter).collect();
    Stored { ids, dead }
}

/// Each durable store holds exactly the expected records, once each, and the
/// dead-letter table exactly the poison messages.
fn assert_exactly_once(stored: &Stored, want: &Expected) {
    assert!(stored.ids.len() >= 3, "graph, records and vectors are checked: {:?}", stored.ids.keys());
    for (store, ids) in &stored.ids {
        let set: BTreeSet<RecordId> = ids.iter().cloned().collect();
        assert_eq!(set.len(), ids.len(), "{store} holds a record twice");
        let missing = want.ids.difference(&set).count();
        let extra = set.difference(&want.ids).count();
        assert!(missing == 0 && extra == 0, "{store}: {missing} records missing, {extra} unexpected");
    }
    let origins: BTreeSet<Origin> = stored.dead.iter().map(|d| d.origin.clone()).collect();
    assert_eq!(origins.len(), stored.dead.len(), "a poison message was dead-lettered twice");
    assert_eq!(origins, want.poison, "dead letters are exactly the poison messages");
}

/// A member process: `apex-ingest run` as one consumer of the group.
struct Member {
    child: Child,
    metrics: String,
    log: PathBuf,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Member {
    fn start(brokers: &str, names: &Names, data_dir: &Path, batch: &str) -> Member {
        Member::start_with(brokers, names, data_dir, batch, &[])
    }

    /// A member with more settings as `APEX_*` variables (they win over the file).
    fn start_with(
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

    async fn get(&self, path: &str) -> Option<(u16, String)> {
        let r = reqwest::get(format!("{}{path}", self.metrics)).await.ok()?;
        Some((r.status().as_u16(), r.text().await.ok()?))
    }

    /// Series of a metric as (labels, value), e.g. `{partition="0",topic="t"}`.
    async fn series(&self, name: &str) -> Vec<(String, i64)> {
        let Some((_, text)) = self.get("/metrics").await else { return Vec::new() };
        support::metric_series(&text, name)
    }

    async fn value(&self, name: &str) -> i64 {
        self.series(name).await.iter().map(|(_, v)| v).sum()
    }

    /// Partitions assigned to this member: each has a paused series from its assignment on.
    async fn owned(&self) -> BTreeSet<String> {
        self.series("apex_kafka_partition_paused").await.into_iter().map(|(l, _)| l).collect()
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then waits for the drain to finish.
    async fn terminate(&mut self) -> ExitStatus {
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

async fn wait_ready(m: &Member) {
    let started = Instant::now();
    while m.get("/readyz").await.map(|(s, _)| s) != Some(200) {
        assert!(started.elapsed() < WAIT, "member never became ready:\n{}", m.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_events_land_once_and_the_group_commits_to_the_end() {
    let brokers = kafka_brokers();
    let _serial = SERIAL.lock().await;
    let names = create_topics(&brokers, 6, 3).await;
    produce_to(&brokers, &names.samsara, Format::Samsara, 17_000, 0.01, 1).await;
    produce_to(&brokers, &names.edi, Format::Edi, 3_000, 0.01, 2).await;
    let want = expected(&brokers, &names);
    assert!(!want.poison.is_empty());

    let dir = tempfile::tempdir().unwrap();
    let mut member = Member::start(&brokers, &names, dir.path(), "max_wait = \"1s\"");
    // Not ready before partitions are assigned is checked implicitly: ready needs an assignment.
    wait_ready(&member).await;
    assert_eq!(member.value("apex_kafka_assigned_partitions").await, 9);
    wait_until_committed_to_end(&brokers, &names).await;
    // The lag metric reaches zero once the statistics catch up.
    let started = Instant::now();
    while member.value("apex_kafka_consumer_lag").await != 0 || member.owned().await.len() != 9 {
        assert!(started.elapsed() < Duration::from_secs(30), "lag metric did not reach 0");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(member.value("apex_kafka_commits_total{outcome=\"failed\"}").await, 0);
    assert!(member.terminate().await.success(), "{}", member.logs());
    assert!(member.logs().contains("partitions released"), "left the group cleanly");

    assert_exactly_once(&stored(dir.path()).await, &want);
    assert_eq!(committed(&brokers, &names.group, &names.inputs()), end_offsets(&brokers, &names.inputs()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_killed_mid_run_loses_nothing_and_duplicates_nothing_after_restart() {
    let brokers = kafka_brokers();
    let _serial = SERIAL.lock().await;
    let names = create_topics(&brokers, 6, 3).await;
    produce_to(&brokers, &names.samsara, Format::Samsara, 7_000, 0.01, 3).await;
    produce_to(&brokers, &names.edi, Format::Edi, 1_000, 0.01, 4).await;
    let want = expected(&brokers, &names);
    let total: i64 = end_offsets(&brokers, &names.inputs()).values().sum();

    let dir = tempfile::tempdir().unwrap();
    // Small batches, one at a time: the run lasts long enough to be killed in the middle.
    let batch = "max_events = 25\nmax_wait = \"1s\"\nmax_in_flight = 1";
    let mut member = Member::start(&brokers, &names, dir.path(), batch);
    wait_until("a quarter of the events are committed", || committed_total(&brokers, &names) >= total / 4)
        .await;
    member.child.kill().unwrap(); // SIGKILL: no drain, no final commit
    member.child.wait().unwrap();
    let at_kill = committed_total(&brokers, &names);
    assert!(at_kill < total, "killed after the end ({at_kill} of {total}); the test proves nothing");

    let restarted = Member::start(&brokers, &names, dir.path(), batch);
    wait_until_committed_to_end(&brokers, &names).await;
    drop(restarted);
    assert_exactly_once(&stored(dir.path()).await, &want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_members_split_the_partitions_and_hand_them_over_without_loss_or_duplicates() {
    let brokers = kafka_brokers();
    let _serial = SERIAL.lock().await;
    let names = create_topics(&brokers, 6, 3).await;
    // Traffic keeps arriving while members join and leave.
    let producing = {
        let (brokers, names) = (brokers.clone(), names.clone());
        tokio::spawn(async move {
            let settings = |topic: &str, format: Format, events: u64, seed: u64| ProduceSettings {
                topic: topic.into(),
                format,
                events,
                rate: std::num::NonZeroU32::new(events as u32 / 20),
                poison_fraction: 0.01,
                seed,
            };
            let samsara = settings(&names.samsara, Format::Samsara, 8_000, 5);
            let edi = settings(&names.edi, Format::Edi, 1_000, 6);
            let (a, b) = tokio::join!(produce(&brokers, &samsara, |_| {}), produce(&brokers, &edi, |_| {}));
            (a.unwrap().sent, b.unwrap().sent)
        })
    };
    // Each member writes to its own embedded stores, so a record written by
    // both would show up in both: the strictest check of "no duplicates".
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let batch = "max_events = 50\nmax_wait = \"1s\"\nmax_in_flight = 2";
    let mut a = Member::start(&brokers, &names, dir_a.path(), batch);
    wait_ready(&a).await;
    wait_until("member a has committed something", || committed_total(&brokers, &names) > 0).await;
    let b = Member::start(&brokers, &names, dir_b.path(), batch);
    wait_ready(&b).await;
    // The group settles with the nine partitions split between the two.
    let started = Instant::now();
    loop {
        let (owned_a, owned_b) = (a.owned().await, b.owned().await);
        if !owned_a.is_empty()
            && !owned_b.is_empty()
            && owned_a.len() + owned_b.len() == 9
            && owned_a.is_disjoint(&owned_b)
        {
            break;
        }
        assert!(started.elapsed() < WAIT, "partitions not split: a {owned_a:?}, b {owned_b:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(a.value("apex_kafka_rebalances_total{kind=\"revoke\"}").await >= 1, "a gave partitions up");

    // Member a leaves (SIGTERM) while traffic still flows: b takes everything over.
    assert!(a.terminate().await.success(), "{}", a.logs());
    let started = Instant::now();
    while b.value("apex_kafka_assigned_partitions").await != 9 {
        assert!(started.elapsed() < WAIT, "b did not take over:\n{}", b.logs());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (samsara_sent, edi_sent) = producing.await.unwrap();
    assert_eq!((samsara_sent, edi_sent), (8_000, 1_000));
    wait_until_committed_to_end(&brokers, &names).await;
    drop(b);

    let want = expected(&brokers, &names);
    let (in_a, in_b) = (stored(dir_a.path()).await, stored(dir_b.path()).await);
    let ids = |s: &Stored| -> BTreeSet<RecordId> { s.ids["relational"].iter().cloned().collect() };
    let (ids_a, ids_b) = (ids(&in_a), ids(&in_b));
    assert!(!ids_a.is_empty() && !ids_b.is_empty(), "both members wrote");
    assert_eq!(ids_a.intersection(&ids_b).count(), 0, "a record was written by both members");
    let union: BTreeSet<RecordId> = ids_a.union(&ids_b).cloned().collect();
    assert_eq!(union.len(), want.ids.len(), "records lost");
    assert_eq!(union, want.ids);
    let dead: BTreeSet<Origin> = in_a.dead.iter().chain(&in_b.dead).map(|d| d.origin.clone()).collect();
    assert_eq!(dead.len(), in_a.dead.len() + in_b.dead.len(), "a poison message dead-lettered twice");
    assert_eq!(dead, want.poison);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_store_pauses_the_partitions_and_the_lag_metric_is_the_real_lag() {
    let brokers = kafka_brokers();
    let _serial = SERIAL.lock().await;
    let names = create_topics(&brokers, 4, 2).await;
    produce_to(&brokers, &names.samsara, Format::Samsara, 2_000, 0.0, 7).await;
    produce_to(&brokers, &names.edi, Format::Edi, 200, 0.0, 8).await;

    let dir = tempfile::tempdir().unwrap();
    let mut config = in_process_config(&names, dir.path());
    config.batch.max_events = 50;
    config.batch.max_wait = Duration::from_millis(500);
    config.batch.max_in_flight = 2;
    let member = HeldMember::start(&config).await;
    let (graph, metrics) = (member.graph.clone(), member.metrics.clone());

    let paused = |m: &Metrics| {
        let series = support::metric_series(&m.render(), "apex_kafka_partition_paused");
        (series.len(), series.iter().map(|(_, v)| v).sum::<i64>())
    };
    wait_until("all six partitions are paused", || paused(&metrics) == (6, 6)).await;
    assert!(metrics.render().contains("apex_batches_in_flight 2"), "paused at max_in_flight");

    // Producers keep writing while the partitions are paused (nothing fetches them).
    produce_to(&brokers, &names.samsara, Format::Samsara, 300, 0.0, 9).await;
    // Held well past the session timeout: the paused member keeps polling and stays in the group.
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert!(!metrics.render().contains("kind=\"revoke\""), "the paused member was not evicted");
    // Nothing is written, so nothing moves: the metric must equal the real lag,
    // new messages on paused partitions included.
    let end = end_offsets(&brokers, &names.inputs());
    let done = committed(&brokers, &names.group, &names.inputs());
    let text = metrics.render();
    for ((topic, partition), high) in &end {
        let real = high - done.get(&(topic.clone(), *partition)).copied().unwrap_or(0);
        let line = format!("apex_kafka_consumer_lag{{partition=\"{partition}\",topic=\"{topic}\"}} {real}");
        assert!(text.contains(&line), "want `{line}` in\n{text}");
    }
    assert!(end.values().sum::<i64>() - done.values().sum::<i64>() > 0, "there is real lag to compare");

    // The store recovers: partitions resume and the group catches up.
    graph.hold(false);
    wait_until_committed_to_end(&brokers, &names).await;
    assert_eq!(paused(&metrics), (6, 0), "resumed");
    wait_until("the lag metric shows zero", || {
        let lags = support::metric_series(&metrics.render(), "apex_kafka_consumer_lag");
        lags.len() == 6 && lags.iter().all(|(_, lag)| *lag == 0)
    })
    .await;
    let totals = member.stop().await;
    assert_eq!(totals.events, 2_500);
}

/// Configuration of a member run inside the test process, on embedded stores in `dir`.
fn in_process_config(names: &Names, dir: &Path) -> apex_ingest::config::Config {
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
struct HeldMember {
    graph: Arc<Flaky<SqliteGraphStore>>,
    metrics: Arc<Metrics>,
    shutdown: tokio_util::sync::CancellationToken,
    run: tokio::task::JoinHandle<anyhow::Result<apex_ingest::app::RunTotals>>,
}

impl HeldMember {
    async fn start(config: &apex_ingest::config::Config) -> HeldMember {
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

    async fn stop(self) -> apex_ingest::app::RunTotals {
        self.shutdown.cancel();
        self.run.await.unwrap().unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_still_running_at_the_revoke_deadline_is_fenced_and_never_writes_moved_partitions() {
    let brokers = kafka_brokers();
    let _serial = SERIAL.lock().await;
    let names = create_topics(&brokers, 4, 2).await;
    produce_to(&brokers, &names.samsara, Format::Samsara, 200, 0.0, 17).await;
    produce_to(&brokers, &names.edi, Format::Edi, 40, 0.0, 18).await;
    let want = expected(&brokers, &names);

    // Member a: one batch of every event (so of every partition) held by its
    // graph store past a short revoke deadline.
    let dir_a = tempfile::tempdir().unwrap();
    let mut config = in_process_config(&names, dir_a.path());
    config.batch.max_events = 1_000;
    config.batch.max_wait = Duration::from_secs(3);
    config.batch.max_in_flight = 1;
    config.kafka.revoke_deadline = Duration::from_secs(2);
    let a = HeldMember::start(&config).await;
    wait_until("a holds a batch", || a.metrics.render().contains("apex_batches_in_flight 1")).await;

    // Member b joins: a gives partitions up while its batch is still held.
    let dir_b = tempfile::tempdir().unwrap();
    let b = Member::start(&brokers, &names, dir_b.path(), "max_wait = \"1s\"");
    wait_ready(&b).await;
    let abandoned = |m: &Metrics| support::metric_series(&m.render(), "apex_batches_abandoned_total");
    wait_until("a fenced its held batch", || abandoned(&a.metrics).first().is_some_and(|(_, n)| *n >= 1))
        .await;

    // The store comes back: the fenced batch must not reach it.
    a.graph.hold(false);
    wait_until_committed_to_end(&brokers, &names).await;
    a.stop().await;
    drop(b);
    let (in_a, in_b) = (stored(dir_a.path()).await, stored(dir_b.path()).await);
    let graph = |s: &Stored| -> BTreeSet<RecordId> { s.ids["graph"].iter().cloned().collect() };
    let (graph_a, graph_b) = (graph(&in_a), graph(&in_b));
    assert!(!graph_a.is_empty() && !graph_b.is_empty(), "both members wrote");
    assert_eq!(graph_a.intersection(&graph_b).count(), 0, "the fenced batch wrote partitions b owned");
    let union: BTreeSet<RecordId> = graph_a.union(&graph_b).cloned().collect();
    assert_eq!(union, want.ids, "records lost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_land_in_the_dlq_topic_and_table_with_reason_and_origin() {
    let brokers = kafka_brokers();
    let _serial = SERIAL.lock().await;
    let names = create_topics(&brokers, 2, 1).await;
    produce_to(&brokers, &names.samsara, Format::Samsara, 400, 0.2, 9).await;
    produce_to(&brokers, &names.edi, Format::Edi, 100, 0.2, 10).await;
    let want = expected(&brokers, &names);
    assert!(want.poison.len() > 20, "{} poison messages", want.poison.len());

    let dir = tempfile::tempdir().unwrap();
    let mut member = Member::start(&brokers, &names, dir.path(), "max_wait = \"1s\"");
    wait_until_committed_to_end(&brokers, &names).await;
    assert!(member.terminate().await.success(), "{}", member.logs());
    let stored = stored(dir.path()).await;
    assert_exactly_once(&stored, &want);

    let table: BTreeMap<Origin, &apex_ingest::model::DeadLetter> =
        stored.dead.iter().map(|d| (d.origin.clone(), d)).collect();
    let published = read_topic(&brokers, &names.dlq, Format::Samsara);
    assert_eq!(published.len(), want.poison.len(), "one DLQ message per poison message");
    for m in &published {
        let header = |k: &str| {
            let v = m.headers.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
            String::from_utf8(v.unwrap_or_else(|| panic!("header {k} missing"))).unwrap()
        };
        let origin = Origin {
            topic: header(headers::ORIGIN_TOPIC),
            partition: header(headers::ORIGIN_PARTITION).parse().unwrap(),
            offset: header(headers::ORIGIN_OFFSET).parse().unwrap(),
        };
        let letter = table.get(&origin).unwrap_or_else(|| panic!("{origin:?} not in the table"));
        assert_eq!(header(headers::REASON), letter.reason);
        assert_eq!(header(headers::ID), letter.id);
        assert_eq!(header(headers::FORMAT), letter.format.as_str());
        assert!(!header(headers::DETAIL).is_empty());
        assert_eq!(m.payload, letter.raw, "the raw bytes travel as the payload");
        // Keyed by the letter's id, so a repeat publication is the same letter.
        assert_eq!(m.key.as_deref(), Some(letter.id.as_str()));
        let origin_key = m.headers.iter().find(|(k, _)| k == headers::ORIGIN_KEY);
        assert_eq!(origin_key.map(|(_, v)| String::from_utf8(v.clone()).unwrap()), letter.key);
    }
}

fn apex(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_apex-ingest")).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn topics_apply_creates_updates_and_reports_drift_and_produce_fills_a_topic() {
    let brokers = kafka_brokers();
    let u = support::unique("cli");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("topics.toml");
    let define = |partitions: i32, retention: &str| {
        let text = format!(
            "[[topic]]\nname = \"samsara.telemetry.v1.{u}\"\npartitions = {partitions}\nreplication_factor = 3\n\
             retention = \"{retention}\"\ncleanup_policy = \"delete\"\ndlq = \"ingest.dlq.v1.{u}\"\n\
             [[topic]]\nname = \"ingest.dlq.v1.{u}\"\npartitions = 1\nreplication_factor = 3\n\
             retention = \"30d\"\ncleanup_policy = \"delete\"\n"
        );
        std::fs::write(&file, text).unwrap();
    };
    let file_arg = file.to_str().unwrap();
    define(2, "7d");
    // Three replicas cannot be had from one broker: refused, with the way out named.
    let (ok, _, err) = apex(&["topics", "apply", "--file", file_arg]);
    assert!(!ok && err.contains("--replication-factor 1"), "{err}");

    let apply = || apex(&["topics", "apply", "--file", file_arg, "--replication-factor", "1"]);
    let (ok, out, err) = apply();
    assert!(ok, "{out}{err}");
    assert!(
        out.contains(&format!("changed   samsara.telemetry.v1.{u}: created (partitions=2 replication=1)")),
        "{out}"
    );
    let (ok, out, _) = apply();
    assert!(ok && out.contains(&format!("unchanged samsara.telemetry.v1.{u}")), "{out}");

    define(4, "3d");
    let (ok, out, _) = apply();
    assert!(ok, "{out}");
    assert!(
        out.contains("partitions 2 -> 4") && out.contains("retention.ms 604800000 -> 259200000"),
        "{out}"
    );

    define(3, "3d");
    let (ok, out, err) = apply();
    assert!(!ok && out.contains("DRIFT has 4 partitions, definition says 3"), "{out}{err}");

    let (ok, out, _) = apex(&["topics", "list"]);
    let line = out.lines().find(|l| l.starts_with(&format!("samsara.telemetry.v1.{u} "))).unwrap_or_default();
    assert!(ok && line.split_whitespace().collect::<Vec<_>>()[1..] == ["4", "1"], "{out}");

    let topic = format!("samsara.telemetry.v1.{u}");
    let (ok, out, err) = apex(&["produce", "--topic", &topic, "--events", "300", "--rate", "1000"]);
    assert!(ok && out.contains(&format!("produced 300 samsara messages to {topic}")), "{out}{err}");
    assert_eq!(end_offsets(&brokers, &[&topic]).values().sum::<i64>(), 300);
    // Keys are vehicle ids: every message of a key is in one partition.
    let mut partitions_of_key: BTreeMap<String, BTreeSet<i32>> = BTreeMap::new();
    for m in read_topic(&brokers, &topic, Format::Samsara) {
        partitions_of_key.entry(m.key.unwrap()).or_default().insert(m.origin.partition);
    }
    assert!(partitions_of_key.values().all(|p| p.len() == 1));
    let (ok, _, err) = apex(&["produce", "--topic", &format!("ingest.dlq.v1.{u}"), "--events", "1"]);
    assert!(!ok && err.contains("--format samsara|edi"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_is_not_ready_until_it_has_partitions() {
    // A broker address where nothing listens: the member runs, but never gets partitions.
    let names = Names {
        samsara: "samsara.telemetry.v1".into(),
        edi: "edi.carrier.v1".into(),
        dlq: "ingest.dlq.v1".into(),
        group: support::unique("unready"),
    };
    let dir = tempfile::tempdir().unwrap();
    let port = free_port().to_string();
    let member = Member::start(&format!("127.0.0.1:{port}"), &names, dir.path(), "max_wait = \"1s\"");
    let started = Instant::now();
    while member.get("/healthz").await.is_none() {
        assert!(started.elapsed() < Duration::from_secs(30), "{}", member.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(member.get("/healthz").await.map(|(s, _)| s), Some(200), "alive");
    assert_eq!(member.get("/readyz").await.map(|(s, _)| s), Some(503), "not ready without partitions");
    assert!(member.value("apex_kafka_client_errors_total").await > 0, "the broker errors are counted");
}

/// A run with every batch on Temporal: members and workers as processes over
/// one store directory, with the cache role (batch locks, idempotency records)
/// on real Redis so it outlives any of them.
struct TemporalRun {
    brokers: String,
    names: Names,
    /// The stores and the member and worker logs; kept when the test fails.
    dir: Option<tempfile::TempDir>,
    worker_config: apex_ingest::config::Config,
    member_env: Vec<(&'static str, String)>,
    want: Expected,
    total: i64,
}

/// Small batches, two in flight: long enough a run to be interrupted in the middle.
const TEMPORAL_BATCH: &str = "max_events = 25\nmax_wait = \"1s\"\nmax_in_flight = 2";

impl TemporalRun {
    /// `samsara` and `edi` events (1 % poison) on the run's own topics.
    async fn new(name: &str, seed: u64, samsara: u64, edi: u64) -> TemporalRun {
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

    fn dir(&self) -> &Path {
        self.dir.as_ref().expect("the directory lives as long as the run").path()
    }

    fn member(&self) -> Member {
        Member::start_with(&self.brokers, &self.names, self.dir(), TEMPORAL_BATCH, &self.member_env)
    }

    fn worker(&self, name: &str) -> WorkerProcess {
        WorkerProcess::start(&self.worker_config, name)
    }

    async fn wait_committed(&self, share: i64, what: &str) {
        let (brokers, names, total) = (&self.brokers, &self.names, self.total);
        wait_until(what, || committed_total(brokers, names) >= total * share / 100).await;
        let now = committed_total(brokers, names);
        assert!(now < total, "{what}: already at the end ({now} of {total}); the test proves nothing");
    }

    /// Every event landed once and the group committed every partition to its end.
    async fn assert_complete(&self) {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_temporal_a_killed_member_and_a_killed_worker_lose_nothing_and_duplicate_nothing() {
    let _serial = SERIAL.lock().await;
    let run = TemporalRun::new("kafka-kill", 11, 4_500, 500).await;
    let mut worker = run.worker("first");
    let mut member = run.member();
    run.wait_committed(20, "a fifth of the events are committed through Temporal").await;
    member.child.kill().unwrap(); // SIGKILL: batches of its own still run on Temporal
    member.child.wait().unwrap();
    let member = run.member();
    run.wait_committed(50, "half of the events are committed after the member restarted").await;
    worker.kill();
    let worker = run.worker("second");
    run.assert_complete().await;
    assert!(member.logs().contains("rollout: share of batches on Temporal"), "{}", member.logs());
    drop((member, worker));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_temporal_a_server_restart_mid_run_loses_nothing_and_duplicates_nothing() {
    let _serial = SERIAL.lock().await;
    let run = TemporalRun::new("kafka-restart", 13, 4_500, 500).await;
    let worker = run.worker("only");
    let member = run.member();
    run.wait_committed(20, "a fifth of the events are committed through Temporal").await;
    let services = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/services");
    let down = Command::new(&services).args(["down", "temporal"]).output().unwrap();
    assert!(down.status.success(), "{}", String::from_utf8_lossy(&down.stderr));
    // Only a server `scripts/services` runs can be restarted from here.
    let url = support::config().temporal.url;
    let host = url.trim_start_matches("http://").trim_start_matches("https://");
    assert!(
        std::net::TcpStream::connect(host).is_err(),
        "Temporal at {url} is still up after `scripts/services down temporal`: this test needs the dev server \
         of `scripts/services`"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let up = Command::new(&services).args(["up", "temporal"]).output().unwrap();
    assert!(up.status.success(), "{}", String::from_utf8_lossy(&up.stderr));
    run.assert_complete().await;
    drop((member, worker));
}

/// The dashboard and the alert rules (deploy/) only use metrics a member really
/// serves: a member on Kafka with half its batches on Temporal, with poison
/// events, is scraped over HTTP after it has written everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_metric_the_dashboard_and_the_alert_rules_use_is_served_by_a_running_member() {
    let _serial = SERIAL.lock().await;
    let mut run = TemporalRun::new("metrics", 41, 300, 40).await;
    for (key, value) in &mut run.member_env {
        if *key == "APEX_TEMPORAL_ROLLOUT_PERCENT" {
            *value = "50".to_owned();
        }
    }
    // Poison in nearly every batch, so batches the member writes itself (not
    // the worker) dead-letter some: 1 % alone left that to chance.
    produce_to(&run.brokers, &run.names.samsara, Format::Samsara, 100, 0.5, 43).await;
    run.want = expected(&run.brokers, &run.names);
    let _worker = run.worker("a");
    let mut member = run.member();
    wait_until_committed_to_end(&run.brokers, &run.names).await;
    assert_exactly_once(&stored(run.dir()).await, &run.want);
    let (status, scraped) = member.get("/metrics").await.expect("the member serves /metrics");
    assert_eq!(status, 200);
    // Both paths ran, and something was dead-lettered.
    for (name, what) in [
        ("apex_orchestrator_batches_total{path=\"direct\"}", "direct batches"),
        ("apex_workflow_results_total{outcome=\"completed\"}", "completed batch workflows"),
        ("apex_dead_letters_total", "dead letters"),
    ] {
        assert!(member.value(name).await > 0, "no {what}:\n{scraped}");
    }

    // The queries: the dashboard's panel and variable queries, the rules' expressions
    // (their annotations may name a metric that only exists while something is wrong).
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(deploy.join("grafana/apex-ingest.json")).unwrap())
            .unwrap();
    let panel_queries = dashboard["panels"].as_array().unwrap().iter().flat_map(|p| {
        p["targets"].as_array().unwrap().iter().map(|t| t["expr"].as_str().unwrap().to_owned())
    });
    let variable_queries = dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["query"].as_str().map(String::from));
    let rules = std::fs::read_to_string(deploy.join("prometheus/alerts.yaml")).unwrap();
    let rule_queries = rules
        .lines()
        .filter(|l| !l.trim_start().starts_with("summary:") && !l.trim_start().starts_with("description:"))
        .map(String::from);
    let used: BTreeSet<String> = panel_queries
        .chain(variable_queries)
        .chain(rule_queries)
        .flat_map(|q| support::metric_names(&q))
        .collect();
    assert!(used.len() >= 12, "{used:?}");
    let served: BTreeSet<&str> =
        scraped.lines().filter(|l| !l.starts_with('#')).filter_map(|l| l.split(['{', ' ']).next()).collect();
    let missing: Vec<&String> = used.iter().filter(|n| !served.contains(n.as_str())).collect();
    assert!(missing.is_empty(), "used in deploy/ but not served: {missing:?}\n{scraped}");
    assert!(member.terminate().await.success(), "{}", member.logs());
}
