//! Helpers every poller's test shares: a fake provider's server, scratch topics, the
//! topic's latest state, a member reading a topic into its stores.

use apex_ingest::app;
use apex_ingest::config::SourceKind;
use apex_ingest::kafka::group_watch::GroupWatch;
use apex_ingest::kafka::read_back::read_to_end;
use apex_ingest::kafka::topics::{self, TopicSpec};
use apex_ingest::metrics::Metrics;
use apex_ingest::model::{Format, RecordId};
use apex_ingest::poll::{Poller, Provider, headers};
use apex_ingest::query::{self, QueryStores, Question, Retrieval};
use apex_ingest::store::memory_cache::MemoryCache;
use apex_ingest::store::sqlite_records::SqliteRecordStore;
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::{self};

/// The latest message per key in a poller's topic: (value, change header),
/// and how many messages there are.
pub fn latest_per_key(brokers: &str, topic: &str) -> (BTreeMap<String, (Value, String)>, usize) {
    let messages =
        read_to_end(&crate::support::kafka_at(brokers), topic, Format::Webhook, Duration::from_secs(30))
            .unwrap();
    let mut latest = BTreeMap::new();
    // One key is one partition, read in order: the last message of a key is its latest.
    for m in &messages {
        let value: Value = serde_json::from_slice(&m.payload).unwrap();
        let change = m.headers.iter().find(|(k, _)| k == headers::CHANGE).map(|(_, v)| v.clone()).unwrap();
        latest.insert(m.key.clone().unwrap(), (value, String::from_utf8(change).unwrap()));
    }
    (latest, messages.len())
}

/// Serves `app` (a fake provider) on a free local port.
pub async fn serve(app: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// A fresh topic of 3 partitions named `<prefix><unique>` on the broker.
pub async fn scratch_topic(brokers: &str, prefix: &str) -> String {
    let topic = format!("{prefix}{}", support::unique("t"));
    topics::apply(&crate::support::kafka_at(brokers), &[TopicSpec::scratch(&topic, 3)], Some(1))
        .await
        .unwrap();
    topic
}

/// A poller of `provider`, cursors in `cursors`, with a coordinator of its own.
pub fn poller_of(provider: Arc<dyn Provider>, cursors: Arc<SqliteRecordStore>, brokers: &str) -> Poller {
    Poller::new(
        provider,
        cursors,
        Arc::new(MemoryCache::new()),
        &crate::support::kafka_at(brokers),
        Metrics::new().poll.clone(),
    )
    .unwrap()
}

/// The stores after a member read a poll topic to its end: record ids per
/// durable store, the ids of the records of `removed_kind`, those the graph
/// keeps as vehicle state (`[graph] state_kinds`), and the newest pings the
/// graph's vehicle state is not.
pub struct Landed {
    pub ids: BTreeMap<&'static str, std::collections::BTreeSet<RecordId>>,
    pub removed: std::collections::BTreeSet<RecordId>,
    pub as_state: std::collections::BTreeSet<RecordId>,
    pub stale_states: Vec<RecordId>,
}

/// A member on embedded stores in `dir` reads the one topic `read` names
/// until its group has committed everything, then stops; what landed.
pub async fn member_reads(
    brokers: &str,
    topic: &str,
    read: impl FnOnce(&mut apex_ingest::config::KafkaConfig),
    removed_kind: &str,
    dir: &std::path::Path,
) -> Landed {
    let mut config = support::config();
    config.source.kind = SourceKind::Kafka;
    config.stores.data_dir = dir.to_path_buf();
    config.metrics.listen = String::new();
    config.kafka.group_id = support::unique("apex-poll-test");
    config.kafka.only_samsara_and_edi();
    (config.kafka.samsara_topic, config.kafka.edi_topic) = (String::new(), String::new());
    read(&mut config.kafka);
    config.batch.max_wait = Duration::from_millis(300);
    let metrics = Metrics::new();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let (stores, orchestrator) = app::build_orchestrator(&config, metrics.clone(), &shutdown).await.unwrap();
    let source = app::build_source(&config, metrics.clone()).unwrap();
    let run = {
        let (config, metrics, shutdown) = (config.clone(), metrics.clone(), shutdown.clone());
        tokio::spawn(async move {
            app::run_pipeline(&config, source, orchestrator, metrics, shutdown, |_| {}).await
        })
    };
    let watch = GroupWatch::new(&crate::support::kafka_at(brokers), &config.kafka.group_id).unwrap();
    let started = Instant::now();
    loop {
        let (end, committed) = watch.progress(&[topic]).unwrap();
        if end > 0 && committed == end {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(90), "the member committed {committed} of {end}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    shutdown.cancel();
    run.await.unwrap().unwrap();
    let mut ids = BTreeMap::new();
    for s in stores.all() {
        if s.durable() {
            ids.insert(s.name(), s.record_ids().await.unwrap().into_iter().collect());
        }
    }
    let of_kinds = |kinds: Vec<String>| {
        let stores = &stores;
        async move { stores.relational.record_ids_of_kinds(&kinds, None).await.unwrap().into_iter().collect() }
    };
    let removed = of_kinds(vec![removed_kind.to_owned()]).await;
    let as_state = of_kinds(config.graph.state_kinds.clone()).await;
    let (_, stale_states) =
        apex_ingest::verify::stale_states(&stores, &config.graph.state_kinds, None).await.unwrap();
    Landed { ids, removed, as_state, stale_states }
}

/// What the query room answers from the embedded stores in `dir` to a
/// question by meaning, by `retrieval`: each hit's record id and summary.
pub async fn asked(dir: &std::path::Path, text: &str, retrieval: Retrieval) -> Vec<(String, String)> {
    let mut config = support::config();
    config.stores.data_dir = dir.to_path_buf();
    let stores = app::open_stores(&config).await.unwrap();
    let stores = QueryStores::over(&stores, app::build_embedder(&config).unwrap());
    let question = Question {
        text: text.into(),
        as_of: None,
        ingested_before: None,
        k: 1000,
        filters: Default::default(),
        retrieval,
    };
    let answer = query::ask(&stores, &question).await.unwrap_or_else(|e| panic!("{text:?}: {e}"));
    assert_eq!(answer.reading.intent.name(), "semantic", "{text:?}");
    answer.hits.into_iter().map(|h| (h.citation.record_id, h.summary)).collect()
}
