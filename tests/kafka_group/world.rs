//! A test's own topics and group, what was produced to them, the group's offsets, and
//! what the stores hold against what they must.

use apex_ingest::config::Config;
use apex_ingest::kafka::topics::{self, TopicSpec};
use apex_ingest::model::{Format, Origin, RawEvent, RecordId};
use apex_ingest::source::produce::{ProduceSettings, produce};
use apex_ingest::store::{DeadLetterFilter, Stores};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{self};

/// One test at a time: they share two cores, and timing-sensitive steps
/// (rebalances, pauses) should not compete with another test's members.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub const WAIT: Duration = Duration::from_secs(180);

pub type Tp = (String, i32);

/// A test's own topics and consumer group.
#[derive(Clone)]
pub struct Names {
    pub samsara: String,
    pub edi: String,
    pub dlq: String,
    pub group: String,
}

impl Names {
    pub fn inputs(&self) -> [&str; 2] {
        [&self.samsara, &self.edi]
    }
}

/// Creates the test's topics with `topics apply`, from the repository's own definitions.
pub async fn create_topics(brokers: &str, samsara_partitions: i32, edi_partitions: i32) -> Names {
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
    let reports = topics::apply(&crate::support::kafka_at(brokers), &specs, Some(1)).await.unwrap();
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
    let again = topics::apply(&crate::support::kafka_at(brokers), &specs, Some(1)).await.unwrap();
    assert!(again.iter().all(|r| r.changes.is_empty()), "{again:?}");
    names
}

pub async fn produce_to(brokers: &str, topic: &str, format: Format, events: u64, poison: f64, seed: u64) {
    let settings =
        ProduceSettings { topic: topic.into(), format, events, rate: None, poison_fraction: poison, seed };
    let report = produce(&crate::support::kafka_at(brokers), &settings, |_| {}).await.unwrap();
    assert_eq!(report.sent, events);
}

pub fn plain_consumer(brokers: &str, group: Option<&str>) -> BaseConsumer {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers).set("enable.auto.commit", "false");
    if let Some(g) = group {
        c.set("group.id", g);
    }
    c.create().unwrap()
}

pub fn partitions(consumer: &BaseConsumer, topic: &str) -> Vec<i32> {
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).unwrap();
    md.topics()[0].partitions().iter().map(|p| p.id()).collect()
}

/// High watermark of every partition of `topics`.
pub fn end_offsets(brokers: &str, topics: &[&str]) -> BTreeMap<Tp, i64> {
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
pub fn committed(brokers: &str, group: &str, topics: &[&str]) -> BTreeMap<Tp, i64> {
    let c = plain_consumer(brokers, Some(group));
    let mut tpl = TopicPartitionList::new();
    for t in topics {
        for p in partitions(&c, t) {
            tpl.add_partition(t, p);
        }
    }
    // The group's coordinator may be moving or loading (NotCoordinator): ask again.
    let mut attempts = 0;
    let offsets = loop {
        match c.committed_offsets(tpl.clone(), Duration::from_secs(10)) {
            Ok(offsets) => break offsets,
            Err(e) if attempts < 20 && coordinator_moving(&e) => {
                attempts += 1;
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => panic!("reading the committed offsets of {group}: {e}"),
        }
    };
    offsets
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some(((e.topic().to_owned(), e.partition()), o)),
            _ => None,
        })
        .collect()
}

fn coordinator_moving(e: &KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode::*;
    matches!(
        e.rdkafka_error_code(),
        Some(NotCoordinator | CoordinatorLoadInProgress | CoordinatorNotAvailable)
    )
}

pub fn committed_total(brokers: &str, names: &Names) -> i64 {
    committed(brokers, &names.group, &names.inputs()).values().sum()
}

pub async fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let started = Instant::now();
    while !ok() {
        assert!(started.elapsed() < WAIT, "timed out after {WAIT:?} waiting until {what}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Waits until the group has committed every partition up to its end.
pub async fn wait_until_committed_to_end(brokers: &str, names: &Names) {
    let end = end_offsets(brokers, &names.inputs());
    wait_until("the group has committed every partition to its end", || {
        committed(brokers, &names.group, &names.inputs()) == end
    })
    .await;
}

/// Every message of a topic, read from the beginning to the end.
pub fn read_topic(brokers: &str, topic: &str, format: Format) -> Vec<RawEvent> {
    apex_ingest::kafka::read_back::read_to_end(&crate::support::kafka_at(brokers), topic, format, WAIT)
        .unwrap()
}

/// What the stores must hold: the record ids of every message produced, the
/// origins of the messages that are poison, and the records the graph keeps
/// as their vehicle's state, not as nodes (the default `[graph] state_kinds`).
pub struct Expected {
    pub ids: BTreeSet<RecordId>,
    pub poison: BTreeSet<Origin>,
    pub as_state: BTreeSet<RecordId>,
}

impl Expected {
    /// The records `store` holds one each of.
    pub fn of(&self, store: &str) -> BTreeSet<RecordId> {
        match store {
            "graph" => self.ids.difference(&self.as_state).cloned().collect(),
            _ => self.ids.clone(),
        }
    }
}

pub fn expected(brokers: &str, names: &Names) -> Expected {
    let (mut ids, mut poison, mut as_state) = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    for (topic, format) in [(&names.samsara, Format::Samsara), (&names.edi, Format::Edi)] {
        for event in read_topic(brokers, topic, format) {
            match apex_ingest::pipeline::parse::parse(&event) {
                Ok(records) => {
                    for r in records {
                        if support::kept_as_state(&r) {
                            as_state.insert(r.id.clone());
                        }
                        ids.insert(r.id);
                    }
                }
                Err(_) => {
                    poison.insert(event.origin);
                }
            }
        }
    }
    Expected { ids, poison, as_state }
}

/// What one member's embedded stores hold, per durable store, and the
/// newest pings the graph's vehicle state is not.
pub struct Stored {
    pub ids: BTreeMap<&'static str, Vec<RecordId>>,
    pub dead: Vec<apex_ingest::model::DeadLetter>,
    pub stale_states: Vec<RecordId>,
}

pub async fn stored(dir: &Path) -> Stored {
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
    let kinds = Config::default().graph.state_kinds;
    let (_, stale_states) = apex_ingest::verify::stale_states(&stores, &kinds, None).await.unwrap();
    Stored { ids, dead, stale_states }
}

/// Each durable store holds exactly the expected records, once each, the
/// graph each vehicle's newest pings as its state, and the dead-letter table
/// exactly the poison messages.
pub fn assert_exactly_once(stored: &Stored, want: &Expected) {
    assert!(stored.ids.len() >= 3, "graph, records and vectors are checked: {:?}", stored.ids.keys());
    for (store, ids) in &stored.ids {
        let set: BTreeSet<RecordId> = ids.iter().cloned().collect();
        assert_eq!(set.len(), ids.len(), "{store} holds a record twice");
        let want_ids = want.of(store);
        let missing = want_ids.difference(&set).count();
        let extra = set.difference(&want_ids).count();
        assert!(missing == 0 && extra == 0, "{store}: {missing} records missing, {extra} unexpected");
    }
    assert!(!want.as_state.is_empty(), "the pings the graph keeps as state are checked");
    assert!(stored.stale_states.is_empty(), "vehicle states not the newest ping: {:?}", stored.stale_states);
    let origins: BTreeSet<Origin> = stored.dead.iter().map(|d| d.origin.clone()).collect();
    assert_eq!(origins.len(), stored.dead.len(), "a poison message was dead-lettered twice");
    assert_eq!(origins, want.poison, "dead letters are exactly the poison messages");
}

pub fn apex(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_apex-ingest")).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}
