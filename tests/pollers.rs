//! The pollers against local HTTP servers that speak the providers' documented
//! shapes (../shared/FINDINGS.md, "Sources"), producing to the real broker
//! (`scripts/services up kafka`) with cursors in the embedded relational store.
//! Each check reads the source's topic back and compares the latest message per
//! key with the provider's final state; the last one has a member read the
//! topic into its stores.

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use apex_ingest::app;
use apex_ingest::config::{PollConfig, SourceKind};
use apex_ingest::kafka::group_watch::GroupWatch;
use apex_ingest::kafka::read_back::read_to_end;
use apex_ingest::kafka::topics::{self, TopicSpec};
use apex_ingest::metrics::Metrics;
use apex_ingest::model::{Format, RecordId};
use apex_ingest::orchestrate::temporal::worker::while_working;
use apex_ingest::poll::hubspot::Hubspot;
use apex_ingest::poll::plaid::Plaid;
use apex_ingest::poll::quickbooks::Quickbooks;
use apex_ingest::poll::samsara_feed::{CAUGHT_UP_WAIT, SamsaraFeed};
use apex_ingest::poll::sonar::Sonar;
use apex_ingest::poll::workflow::{self, PollActivities, PollingWorkflow};
use apex_ingest::poll::{PollError, PollStep, Poller, Provider, headers};
use apex_ingest::store::RelationalStore;
use apex_ingest::store::memory_cache::MemoryCache;
use apex_ingest::store::sqlite_records::SqliteRecordStore;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use support::kafka_brokers;

/// One change in the fake Item's history; a cursor is the number of changes seen.
#[derive(Clone)]
enum Event {
    Added(Value),
    Modified(Value),
    Removed(String),
}

/// A fault the server answers the next request with.
#[derive(Clone)]
enum Fault {
    /// HTTP 429 `RATE_LIMIT_EXCEEDED` with this Retry-After (seconds).
    RateLimited(&'static str),
    Unavailable,
}

#[derive(Default)]
struct Item {
    log: Vec<Event>,
    /// Answer `TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION` to the next request
    /// that continues a loop (has a cursor past its start), adding this change.
    mutate_during_pagination: Option<Event>,
    faults: Vec<Fault>,
    /// Every request: (its cursor, when).
    requests: Vec<(Option<String>, Instant)>,
    /// Each answer takes this long (a slow provider).
    delay: Duration,
    /// Requests being answered now, and the most there ever were at once.
    in_flight: usize,
    most_in_flight: usize,
}

type Shared = Arc<Mutex<Item>>;

fn tx(id: &str, amount: f64, name: &str) -> Value {
    json!({"transaction_id": id, "account_id": "acc-1", "amount": amount, "name": name,
           "date": "2026-11-20", "iso_currency_code": "USD", "pending": false})
}

fn plaid_error(status: StatusCode, error_type: &str, code: &str) -> Response {
    let body = json!({"error_type": error_type, "error_code": code, "error_message": code.to_lowercase(),
                      "display_message": null, "request_id": "req-fake"});
    (status, Json(body)).into_response()
}

/// `POST /transactions/sync` as Plaid documents it.
async fn transactions_sync(State(shared): State<Shared>, Json(req): Json<Value>) -> Response {
    let delay = {
        let mut item = shared.lock().unwrap();
        item.in_flight += 1;
        item.most_in_flight = item.most_in_flight.max(item.in_flight);
        item.delay
    };
    tokio::time::sleep(delay).await;
    let answer = answer(&mut shared.lock().unwrap(), &req);
    shared.lock().unwrap().in_flight -= 1;
    answer
}

fn answer(item: &mut Item, req: &Value) -> Response {
    let cursor = req.get("cursor").and_then(Value::as_str).filter(|c| !c.is_empty()).map(String::from);
    item.requests.push((cursor.clone(), Instant::now()));
    if req["client_id"] != "client-1"
        || req["secret"] != "secret-1"
        || req["access_token"] != "access-sandbox-1"
    {
        return plaid_error(StatusCode::BAD_REQUEST, "INVALID_INPUT", "INVALID_API_KEYS");
    }
    let count = req.get("count").and_then(Value::as_u64).unwrap_or(100) as usize;
    if !(1..=500).contains(&count) {
        return plaid_error(StatusCode::BAD_REQUEST, "INVALID_REQUEST", "INVALID_FIELD");
    }
    if !item.faults.is_empty() {
        return match item.faults.remove(0) {
            Fault::RateLimited(after) => {
                let mut r = plaid_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "RATE_LIMIT_EXCEEDED",
                    "TRANSACTIONS_SYNC_LIMIT",
                );
                r.headers_mut().insert("retry-after", after.parse().unwrap());
                r
            }
            Fault::Unavailable => {
                plaid_error(StatusCode::SERVICE_UNAVAILABLE, "API_ERROR", "INTERNAL_SERVER_ERROR")
            }
        };
    }
    let from: usize = cursor.as_deref().map(|c| c.parse().unwrap()).unwrap_or(0);
    if from > 0 && item.mutate_during_pagination.is_some() && item.requests.len() > 1 {
        let change = item.mutate_during_pagination.take().unwrap();
        item.log.push(change);
        return plaid_error(
            StatusCode::BAD_REQUEST,
            "TRANSACTIONS_ERROR",
            "TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION",
        );
    }
    let to = (from + count).min(item.log.len());
    let (mut added, mut modified, mut removed) = (vec![], vec![], vec![]);
    for event in &item.log[from..to] {
        match event {
            Event::Added(t) => added.push(t.clone()),
            Event::Modified(t) => modified.push(t.clone()),
            Event::Removed(id) => removed.push(json!({"transaction_id": id, "account_id": "acc-1"})),
        }
    }
    Json(json!({
        "added": added, "modified": modified, "removed": removed,
        "next_cursor": to.to_string(), "has_more": to < item.log.len(),
        "accounts": [], "transactions_update_status": "HISTORICAL_UPDATE_COMPLETE", "request_id": "req-fake",
    }))
    .into_response()
}

/// The Item's transactions now: id → JSON (removed ones gone).
fn state_of(item: &Shared) -> BTreeMap<String, Value> {
    let mut state = BTreeMap::new();
    for event in &item.lock().unwrap().log {
        match event {
            Event::Added(t) | Event::Modified(t) => {
                state.insert(t["transaction_id"].as_str().unwrap().to_owned(), t.clone());
            }
            Event::Removed(id) => {
                state.remove(id);
            }
        }
    }
    state
}

async fn fake_plaid(item: Shared) -> SocketAddr {
    let app = axum::Router::new()
        .route("/transactions/sync", axum::routing::post(transactions_sync))
        .with_state(item);
    serve(app).await
}

/// The latest message per key in a poller's topic: (value, change header),
/// and how many messages there are.
fn latest_per_key(brokers: &str, topic: &str) -> (BTreeMap<String, (Value, String)>, usize) {
    let messages = read_to_end(brokers, topic, Format::Webhook, Duration::from_secs(30)).unwrap();
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
async fn serve(app: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// A fresh topic of 3 partitions named `<prefix><unique>` on the broker.
async fn scratch_topic(brokers: &str, prefix: &str) -> String {
    let topic = format!("{prefix}{}", support::unique("t"));
    topics::apply(brokers, &[TopicSpec::scratch(&topic, 3)], Some(1)).await.unwrap();
    topic
}

/// A poller of `provider`, cursors in `cursors`, with a coordinator of its own.
fn poller_of(provider: Arc<dyn Provider>, cursors: Arc<SqliteRecordStore>, brokers: &str) -> Poller {
    Poller::new(provider, cursors, Arc::new(MemoryCache::new()), brokers, Metrics::new().poll.clone())
        .unwrap()
}

/// A test's world: the fake Item, its topic, a cursor store, a poller over them.
struct World {
    item: Shared,
    topic: String,
    brokers: String,
    cursors: Arc<SqliteRecordStore>,
    /// The members' shared coordinator (Redis in production).
    coordinator: Arc<MemoryCache>,
    metrics: Arc<Metrics>,
    poll: PollConfig,
    dir: tempfile::TempDir,
}

impl World {
    async fn new(transactions: usize) -> World {
        let brokers = kafka_brokers();
        let topic = scratch_topic(&brokers, "poll.bank.v1.").await;
        let item: Shared = Arc::default();
        item.lock().unwrap().log = (0..transactions)
            .map(|i| Event::Added(tx(&format!("tx-{i}"), 10.0 + i as f64, "Fuel stop")))
            .collect();
        let addr = fake_plaid(item.clone()).await;
        let dir = tempfile::tempdir().unwrap();
        let cursors = Arc::new(SqliteRecordStore::open(&dir.path().join("records.db")).await.unwrap());
        let mut poll = PollConfig::default();
        poll.plaid.url = format!("http://{addr}");
        poll.plaid.count = 2;
        poll.plaid.topic = topic.clone();
        poll.plaid.requests_per_minute = 6000;
        poll.first_backoff = Duration::from_millis(50);
        poll.max_attempts = 4;
        // The credentials are read from these variables (`credentials` answers for them).
        poll.plaid.client_id_env = "TEST_PLAID_CLIENT_ID".into();
        poll.plaid.secret_env = "TEST_PLAID_SECRET".into();
        poll.plaid.access_token_env = "TEST_PLAID_ACCESS_TOKEN".into();
        let coordinator = Arc::new(MemoryCache::new());
        World { item, topic, brokers, cursors, coordinator, metrics: Metrics::new(), poll, dir }
    }

    fn poller(&self) -> Poller {
        let provider: Arc<dyn Provider> = Arc::new(Plaid::with_credentials(&self.poll, credentials).unwrap());
        let coordinator = self.coordinator.clone();
        Poller::new(provider, self.cursors.clone(), coordinator, &self.brokers, self.metrics.poll.clone())
            .unwrap()
    }

    /// The latest message per key in the topic: (value, change header), and how many messages there are.
    fn topic_state(&self) -> (BTreeMap<String, (Value, String)>, usize) {
        latest_per_key(&self.brokers, &self.topic)
    }

    /// The topic's latest upserts equal the Item's transactions, and every removed id's last message is a removal.
    fn assert_topic_matches_the_item(&self) {
        let (latest, _) = self.topic_state();
        let want = state_of(&self.item);
        let live: BTreeMap<String, Value> = latest
            .iter()
            .filter(|(_, (_, change))| change == "upsert")
            .map(|(k, (v, _))| (k.clone(), v.clone()))
            .collect();
        assert_eq!(live, want, "the topic's live transactions differ from the Item's");
        for (key, (_, change)) in &latest {
            assert!(change == "upsert" || !want.contains_key(key), "{key}: {change}");
        }
    }

    async fn saved_cursor(&self) -> Option<String> {
        self.cursors.poll_cursor("bank").await.unwrap().map(|(c, _)| c)
    }
}

/// The fake Item's credentials, as the variables `World`'s config names would hold them.
fn credentials(name: &str) -> Option<String> {
    let value = match name {
        "TEST_PLAID_CLIENT_ID" => "client-1",
        "TEST_PLAID_SECRET" => "secret-1",
        "TEST_PLAID_ACCESS_TOKEN" => "access-sandbox-1",
        _ => return None,
    };
    Some(value.to_owned())
}

#[tokio::test]
async fn plaid_full_sync_over_pages_then_incremental_syncs_follow_adds_modifications_and_removals() {
    let world = World::new(7).await;
    let poller = world.poller();

    let first = poller.poll_once().await.unwrap();
    assert_eq!((first.upserts, first.removals), (7, 0));
    assert_eq!(world.saved_cursor().await.as_deref(), Some("7"));
    let requests: Vec<Option<String>> =
        world.item.lock().unwrap().requests.iter().map(|(c, _)| c.clone()).collect();
    assert_eq!(
        requests,
        [None, Some("2".into()), Some("4".into()), Some("6".into())],
        "4 pages of 2 from no cursor"
    );
    world.assert_topic_matches_the_item();

    // Changes on the Item: two added, one modified, one removed.
    {
        let mut item = world.item.lock().unwrap();
        item.log.push(Event::Added(tx("tx-7", 99.5, "Tolls")));
        item.log.push(Event::Modified(tx("tx-3", 13.25, "Fuel stop (corrected)")));
        item.log.push(Event::Removed("tx-5".into()));
        item.log.push(Event::Added(tx("tx-8", 7.0, "Parking")));
        item.requests.clear();
    }
    let second = poller.poll_once().await.unwrap();
    assert_eq!((second.upserts, second.removals), (3, 1));
    assert_eq!(world.saved_cursor().await.as_deref(), Some("11"));
    let first_request = world.item.lock().unwrap().requests[0].0.clone();
    assert_eq!(first_request.as_deref(), Some("7"), "an incremental sync starts from the saved cursor");
    world.assert_topic_matches_the_item();
    let (latest, _) = world.topic_state();
    assert_eq!(latest["tx-5"].1, "removed");
    assert_eq!(latest["tx-3"].0["name"], "Fuel stop (corrected)");

    // Nothing new: one request, nothing produced, the cursor stays.
    let third = poller.poll_once().await.unwrap();
    assert_eq!((third.upserts, third.removals, third.cursor.as_deref()), (0, 0, Some("11")));
    let m = world.metrics.render();
    assert!(m.contains("apex_poll_records_total{change=\"upsert\",source=\"bank\"} 10"), "{m}");
    assert!(m.contains("apex_poll_records_total{change=\"removed\",source=\"bank\"} 1"), "{m}");
}

#[tokio::test]
async fn plaid_mutation_during_pagination_restarts_from_the_loops_first_cursor_and_loses_nothing() {
    let world = World::new(4).await;
    let poller = world.poller();
    poller.poll_once().await.unwrap();
    assert_eq!(world.saved_cursor().await.as_deref(), Some("4"));

    {
        let mut item = world.item.lock().unwrap();
        for i in 10..15 {
            item.log.push(Event::Added(tx(&format!("tx-{i}"), i as f64, "Repair")));
        }
        // While the poller pages through them, tx-11 changes.
        item.mutate_during_pagination = Some(Event::Modified(tx("tx-11", 111.0, "Repair (final)")));
        item.requests.clear();
    }
    let report = poller.poll_once().await.unwrap();
    let requests: Vec<Option<String>> =
        world.item.lock().unwrap().requests.iter().map(|(c, _)| c.clone()).collect();
    assert_eq!(
        requests,
        [Some("4".into()), Some("6".into()), Some("4".into()), Some("6".into()), Some("8".into())],
        "after the mutation error the loop starts again from its first cursor (4), not from none"
    );
    // The discarded pages were never produced: the restarted loop's records only.
    assert_eq!(report.upserts, 6, "5 added and 1 modified, each once");
    assert_eq!(world.saved_cursor().await.as_deref(), Some("10"));
    world.assert_topic_matches_the_item();
    let (latest, messages) = world.topic_state();
    assert_eq!(latest["tx-11"].0["name"], "Repair (final)");
    assert_eq!(messages, 4 + 6, "nothing doubled");
}

#[tokio::test]
async fn a_crash_between_produce_and_cursor_save_refetches_and_loses_nothing() {
    let world = World::new(5).await;
    // Another writer holds the records database's write lock: the cursor cannot
    // be saved after the records were produced (the process "dies" there).
    let lock = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect(&format!("sqlite://{}", world.dir.path().join("records.db").display()))
        .await
        .unwrap();
    let mut held = lock.acquire().await.unwrap();
    sqlx::query("BEGIN IMMEDIATE").execute(&mut *held).await.unwrap();
    let failed = world.poller().poll_once().await;
    assert!(matches!(failed, Err(PollError::Cursor { .. })), "{failed:?}");
    sqlx::query("ROLLBACK").execute(&mut *held).await.unwrap();
    drop(held);
    assert_eq!(world.saved_cursor().await, None, "the cursor did not move");
    let (_, produced) = world.topic_state();
    assert_eq!(produced, 5, "the records were produced before the cursor failed");

    // A new poller (the restarted process) starts from the saved cursor again.
    let again = world.poller().poll_once().await.unwrap();
    assert_eq!(again.upserts, 5);
    assert_eq!(world.saved_cursor().await.as_deref(), Some("5"));
    world.assert_topic_matches_the_item();
    let (latest, messages) = world.topic_state();
    assert_eq!((latest.len(), messages), (5, 10), "each record produced twice under its own key: none lost");
}

#[tokio::test]
async fn rate_limits_and_server_errors_are_retried_then_the_poll_fails_and_the_next_interval_succeeds() {
    let world = World::new(3).await;

    // A 429 asking for 0.4 s and a 503: retried, honouring Retry-After.
    world.item.lock().unwrap().faults = vec![Fault::RateLimited("0.4"), Fault::Unavailable];
    let report = world.poller().poll_once().await.unwrap();
    assert_eq!(report.upserts, 3);
    let times: Vec<Instant> = world.item.lock().unwrap().requests.iter().map(|(_, t)| *t).collect();
    assert_eq!(times.len(), 4, "429, 503, then two pages");
    assert!(times[1] - times[0] >= Duration::from_millis(400), "Retry-After was not honoured");

    // Failing on every attempt: the poll fails, is counted, and the next interval tries again.
    {
        let mut item = world.item.lock().unwrap();
        item.log.push(Event::Added(tx("tx-9", 1.0, "Late fee")));
        item.faults = vec![Fault::Unavailable; 4];
    }
    let poller = world.poller();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { poller.run(Duration::from_millis(300), shutdown).await }
    });
    let started = Instant::now();
    let metrics = world.metrics.clone();
    while !metrics.render().contains("apex_poll_total{outcome=\"ok\",source=\"bank\"} 1") {
        assert!(started.elapsed() < Duration::from_secs(20), "{}", metrics.render());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    shutdown.cancel();
    running.await.unwrap();
    let m = metrics.render();
    assert!(m.contains("apex_poll_total{outcome=\"failed\",source=\"bank\"} 1"), "{m}");
    assert!(m.contains("apex_poll_last_success_timestamp_seconds{source=\"bank\"}"), "{m}");
    assert!(m.contains("apex_poll_last_records{source=\"bank\"}"), "{m}");
    assert!(m.contains("apex_poll_cursor_age_seconds{source=\"bank\"} 0"), "{m}");
    world.assert_topic_matches_the_item();
    assert_eq!(world.saved_cursor().await.as_deref(), Some("4"));
}

#[tokio::test]
async fn missing_credentials_fail_at_start_naming_the_variable_not_a_value() {
    let mut poll = PollConfig::default();
    poll.plaid.access_token_env = "TEST_PLAID_UNSET_TOKEN".into();
    poll.plaid.client_id_env = "TEST_PLAID_CLIENT_ID".into();
    poll.plaid.secret_env = "TEST_PLAID_SECRET".into();
    let e = Plaid::with_credentials(&poll, credentials)
        .err()
        .expect("an unset access token is refused")
        .to_string();
    // From the environment too, as `run` reads them (nothing sets this variable).
    let mut config = support::config();
    config.poll = poll;
    let from_env =
        apex_ingest::poll::configured(&config).err().expect("an unset variable is refused").to_string();
    assert!(from_env.contains("$TEST_PLAID_CLIENT_ID"), "{from_env}");
    assert!(e.contains("$TEST_PLAID_UNSET_TOKEN"), "{e}");
    assert!(!e.contains("secret-1") && !e.contains("client-1"), "{e}");
}

#[tokio::test]
async fn members_sharing_a_coordinator_poll_once_per_interval_between_them() {
    let world = World::new(2).await;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let interval = Duration::from_millis(500);
    let members: Vec<_> = (0..3)
        .map(|_| {
            let (poller, shutdown) = (world.poller(), shutdown.clone());
            tokio::spawn(async move { poller.run(interval, shutdown).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(2_600)).await;
    shutdown.cancel();
    for m in members {
        m.await.unwrap();
    }
    // Three members over about five intervals: one poll each interval, not three.
    let polls = world.metrics.counter("apex_poll_total", "ok");
    assert!((4..=7).contains(&polls), "{polls} polls by three members in ~5 intervals");
    world.assert_topic_matches_the_item();
}

#[tokio::test]
async fn a_poll_longer_than_the_interval_keeps_the_lock_and_no_other_member_starts_it_again() {
    let world = World::new(6).await;
    // 3 pages of 2 at 400 ms each: a poll takes about 1.2 s, the interval is 0.5 s.
    world.item.lock().unwrap().delay = Duration::from_millis(400);
    let shutdown = tokio_util::sync::CancellationToken::new();
    let members: Vec<_> = (0..2)
        .map(|_| {
            let (poller, shutdown) = (world.poller(), shutdown.clone());
            tokio::spawn(async move { poller.run(Duration::from_millis(500), shutdown).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(3_000)).await;
    shutdown.cancel();
    for m in members {
        m.await.unwrap();
    }
    let item = world.item.lock().unwrap();
    assert!(item.requests.len() >= 4, "{} requests", item.requests.len());
    assert_eq!(item.most_in_flight, 1, "two members polled at once");
}

/// The stores after a member read a poll topic to its end: record ids per
/// durable store, and the ids of the records of `removed_kind`.
struct Landed {
    ids: BTreeMap<&'static str, std::collections::BTreeSet<RecordId>>,
    removed: std::collections::BTreeSet<RecordId>,
}

/// A member on embedded stores in `dir` reads the one topic `read` names
/// until its group has committed everything, then stops; what landed.
async fn member_reads(
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
    let watch = GroupWatch::new(brokers, &config.kafka.group_id).unwrap();
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
    let removed = stores
        .relational
        .record_ids_of_kinds(&[removed_kind.to_owned()])
        .await
        .unwrap()
        .into_iter()
        .collect();
    Landed { ids, removed }
}

/// A member reads the bank topic of `world`.
async fn member_reads_bank(world: &World, dir: &std::path::Path) -> Landed {
    let topic = world.topic.clone();
    member_reads(&world.brokers, &world.topic, |k| k.bank_topic = topic, "BankTransactionRemoved", dir).await
}

fn bank_id(transaction_id: &str) -> RecordId {
    RecordId::derive(Format::Bank, &format!("plaid:{transaction_id}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_write_polled_transactions_to_every_store_and_a_removal_marks_the_transaction_removed() {
    let world = World::new(6).await;
    let poller = world.poller();
    poller.poll_once().await.unwrap();
    {
        let mut item = world.item.lock().unwrap();
        item.log.push(Event::Modified(tx("tx-1", 12.0, "ACH XPO LOGISTICS PRO# 12345678")));
        item.log.push(Event::Removed("tx-4".into()));
    }
    poller.poll_once().await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let landed = member_reads_bank(&world, dir.path()).await;
    // Every transaction the Item ever had is in every durable store, once, under its Plaid id.
    let want: std::collections::BTreeSet<RecordId> = (0..6).map(|i| bank_id(&format!("tx-{i}"))).collect();
    assert!(landed.ids.len() >= 3, "{:?}", landed.ids.keys());
    for (store, ids) in &landed.ids {
        assert_eq!(ids, &want, "{store}");
    }
    // The removed one is marked removed; the rest are live.
    assert_eq!(landed.removed, [bank_id("tx-4")].into(), "only tx-4 is marked removed");
    let state = state_of(&world.item);
    assert!(!state.contains_key("tx-4") && state.len() == 5);

    // Read again from the start by a new group: the same stores, nothing doubled.
    let again = member_reads_bank(&world, dir.path()).await;
    for (store, ids) in &again.ids {
        assert_eq!(ids, &want, "{store} after a second read");
    }
    assert_eq!(again.removed, landed.removed);
}

// HubSpot: a fake CRM search (POST /crm/v3/objects/{object}/search) with the
// documented limits: 200 per request, paging past 10,000 results refused.

const HUBSPOT_TOKEN: &str = "pat-na1-test";
/// HubSpot's search cap: no page may reach past this many results of one query.
const SEARCH_CAP: usize = 10_000;

#[derive(Default)]
struct Crm {
    /// Object type → id → (modified, ms since the epoch; properties).
    objects: BTreeMap<String, BTreeMap<u64, (i64, Value)>>,
    requests: usize,
    /// Requests after this many answer 503 (the provider goes away mid-window).
    fail_after: Option<usize>,
}

type SharedCrm = Arc<Mutex<Crm>>;

fn hubspot_error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"status": "error", "message": message, "category": "VALIDATION_ERROR"})))
        .into_response()
}

fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).unwrap().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

async fn hubspot_search(
    State(crm): State<SharedCrm>,
    axum::extract::Path(object): axum::extract::Path<String>,
    headers: axum::http::HeaderMap,
    Json(req): Json<Value>,
) -> Response {
    let bearer = headers.get("authorization").and_then(|v| v.to_str().ok());
    if bearer != Some(&format!("Bearer {HUBSPOT_TOKEN}")) {
        return hubspot_error(StatusCode::UNAUTHORIZED, "authentication credentials not found");
    }
    let mut crm = crm.lock().unwrap();
    crm.requests += 1;
    if crm.fail_after.is_some_and(|n| crm.requests > n) {
        return hubspot_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    }
    let limit = req["limit"].as_u64().unwrap_or(10) as usize;
    if limit > 200 {
        return hubspot_error(StatusCode::BAD_REQUEST, "limit must be at most 200");
    }
    let after: usize = req["after"].as_str().map(|a| a.parse().unwrap()).unwrap_or(0);
    if req["sorts"] != json!([{"propertyName": "hs_object_id", "direction": "ASCENDING"}]) {
        return hubspot_error(StatusCode::BAD_REQUEST, "this fake sorts by hs_object_id only");
    }
    let modified_prop = if object == "contacts" { "lastmodifieddate" } else { "hs_lastmodifieddate" };
    let filters = req["filterGroups"][0]["filters"].as_array().cloned().unwrap_or_default();
    let Some(all) = crm.objects.get(&object) else {
        return hubspot_error(StatusCode::NOT_FOUND, "unknown object type");
    };
    let mut matching = Vec::new();
    'objects: for (id, (modified, props)) in all {
        for f in &filters {
            let value: i64 = f["value"].as_str().unwrap().parse().unwrap();
            let (have, prop) = (f["propertyName"].as_str().unwrap(), f["operator"].as_str().unwrap());
            let field = match have {
                p if p == modified_prop => *modified,
                "hs_object_id" => *id as i64,
                other => {
                    return hubspot_error(StatusCode::BAD_REQUEST, &format!("no filter on {other} here"));
                }
            };
            let keep = match prop {
                "GTE" => field >= value,
                "LTE" => field <= value,
                "GT" => field > value,
                other => return hubspot_error(StatusCode::BAD_REQUEST, &format!("operator {other}")),
            };
            if !keep {
                continue 'objects;
            }
        }
        matching.push((*id, *modified, props.clone()));
    }
    if after + limit > SEARCH_CAP {
        return hubspot_error(StatusCode::BAD_REQUEST, "paging past 10000 results is not allowed");
    }
    let results: Vec<Value> = matching
        .iter()
        .skip(after)
        .take(limit)
        .map(|(id, modified, props)| {
            let mut properties = props.clone();
            properties["hs_object_id"] = json!(id.to_string());
            properties[modified_prop] = json!(modified.to_string());
            json!({"id": id.to_string(), "properties": properties, "createdAt": iso(0),
                   "updatedAt": iso(*modified), "archived": false})
        })
        .collect();
    let mut answer = json!({"total": matching.len(), "results": results});
    if after + limit < matching.len() {
        answer["paging"] = json!({"next": {"after": (after + limit).to_string()}});
    }
    Json(answer).into_response()
}

/// The fake CRM, a topic for it and a poller over both.
struct CrmWorld {
    crm: SharedCrm,
    topic: String,
    brokers: String,
    poll: PollConfig,
    cursors: Arc<SqliteRecordStore>,
    /// Holds the cursor store's file.
    _dir: tempfile::TempDir,
}

impl CrmWorld {
    async fn new(contacts: u64) -> CrmWorld {
        let brokers = kafka_brokers();
        let topic = scratch_topic(&brokers, "poll.crm.v1.").await;
        let crm: SharedCrm = Arc::default();
        {
            // One bulk update: every contact has the same modified time.
            let bulk = chrono::Utc::now().timestamp_millis() - 3_600_000;
            let mut c = crm.lock().unwrap();
            c.objects.insert(
                "contacts".into(),
                (1..=contacts)
                    .map(|i| (i, (bulk, json!({"email": format!("c{i}@carrier.example")}))))
                    .collect(),
            );
            c.objects.insert(
                "companies".into(),
                (1..=3)
                    .map(|i| {
                        (
                            i,
                            (
                                bulk,
                                json!({"name": format!("Carrier {i}"), "domain": format!("c{i}.example")}),
                            ),
                        )
                    })
                    .collect(),
            );
            c.objects.insert(
                "deals".into(),
                (1..=2)
                    .map(|i| {
                        (i, (bulk, json!({"dealname": format!("Lane {i} PRO 445566{i}"), "amount": "900"})))
                    })
                    .collect(),
            );
        }
        let app = axum::Router::new()
            .route("/crm/v3/objects/{object}/search", axum::routing::post(hubspot_search))
            .with_state(crm.clone());
        let addr = serve(app).await;
        let dir = tempfile::tempdir().unwrap();
        let cursors = Arc::new(SqliteRecordStore::open(&dir.path().join("records.db")).await.unwrap());
        let mut poll = PollConfig::default();
        poll.hubspot.url = format!("http://{addr}");
        poll.hubspot.token_env = "TEST_HUBSPOT_TOKEN".into();
        poll.hubspot.requests_per_second = 1000;
        poll.hubspot.search_lag = Duration::ZERO;
        poll.hubspot.topic = topic.clone();
        poll.first_backoff = Duration::from_millis(20);
        CrmWorld { crm, topic, brokers, poll, cursors, _dir: dir }
    }

    fn poller(&self) -> Poller {
        let token = |name: &str| (name == "TEST_HUBSPOT_TOKEN").then(|| HUBSPOT_TOKEN.to_owned());
        let provider: Arc<dyn Provider> = Arc::new(Hubspot::with_credentials(&self.poll, token).unwrap());
        poller_of(provider, self.cursors.clone(), &self.brokers)
    }

    /// Key (`contacts:7`) → the fake's current properties of that object.
    fn state(&self) -> BTreeMap<String, Value> {
        let crm = self.crm.lock().unwrap();
        let mut out = BTreeMap::new();
        for (object, all) in &crm.objects {
            for (id, (_, props)) in all {
                out.insert(format!("{object}:{id}"), props.clone());
            }
        }
        out
    }

    /// The topic's latest message per key (its properties, without the two HubSpot
    /// adds), and the number of messages.
    fn topic_state(&self) -> (BTreeMap<String, Value>, usize) {
        let (latest, messages) = latest_per_key(&self.brokers, &self.topic);
        let properties = latest.into_iter().map(|(key, (mut body, _))| {
            let props = body["properties"].as_object_mut().unwrap();
            props.retain(|k, _| k != "hs_object_id" && !k.ends_with("lastmodifieddate"));
            (key, body["properties"].take())
        });
        (properties.collect(), messages)
    }

    fn requests(&self) -> usize {
        self.crm.lock().unwrap().requests
    }
}

fn crm_id(key: &str) -> RecordId {
    RecordId::derive(Format::Crm, &format!("hubspot:{key}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hubspot_more_than_10000_objects_changed_in_one_window_are_all_ingested_and_later_edits_follow() {
    let world = CrmWorld::new(10_050).await;
    let poller = world.poller();
    let first = poller.poll_once().await.unwrap();
    assert_eq!(first.upserts, 10_055, "every object of the window, past the 10,000 cap");
    let (latest, messages) = world.topic_state();
    assert_eq!(latest, world.state());
    assert_eq!(messages, 10_055, "each object once");

    // Later edits and a new contact: the next window holds only them.
    let now = chrono::Utc::now().timestamp_millis();
    {
        let mut crm = world.crm.lock().unwrap();
        let contacts = crm.objects.get_mut("contacts").unwrap();
        contacts.insert(7, (now, json!({"email": "seven@carrier.example", "firstname": "Seven"})));
        contacts.insert(20_000, (now, json!({"email": "new@carrier.example"})));
        crm.objects
            .get_mut("deals")
            .unwrap()
            .insert(2, (now, json!({"dealname": "Lane 2 PRO 4455662", "amount": "1250"})));
    }
    let second = poller.poll_once().await.unwrap();
    assert_eq!(second.upserts, 3, "only what changed since the first window");
    let (latest, messages) = world.topic_state();
    assert_eq!(latest, world.state());
    assert_eq!(messages, 10_058);

    // A member reads the topic: every object is a record in every durable store.
    let (topic, dir) = (world.topic.clone(), tempfile::tempdir().unwrap());
    let landed =
        member_reads(&world.brokers, &world.topic, |k| k.crm_topic = topic, "none", dir.path()).await;
    let want: std::collections::BTreeSet<RecordId> = world.state().keys().map(|k| crm_id(k)).collect();
    assert_eq!(want.len(), 10_056);
    assert!(landed.ids.len() >= 3, "{:?}", landed.ids.keys());
    for (store, ids) in &landed.ids {
        assert_eq!(ids, &want, "{store}");
    }
}

#[tokio::test]
async fn hubspot_resumes_a_window_from_the_last_saved_id_after_a_failed_poll() {
    let mut world = CrmWorld::new(1_000).await;
    world.poll.max_attempts = 1;
    world.crm.lock().unwrap().fail_after = Some(3);
    let e = world.poller().poll_once().await.unwrap_err();
    assert!(matches!(e, PollError::Request { .. }), "{e}");
    let saved = world.cursors.poll_cursor("crm").await.unwrap().unwrap().0;
    let saved: Value = serde_json::from_str(&saved).unwrap();
    assert_eq!(
        (saved["object"].as_str(), saved["after_id"].as_str()),
        (Some("contacts"), Some("600")),
        "{saved}"
    );

    // The restarted poll asks for contacts after 600 only: two pages, then one each for companies and deals.
    world.crm.lock().unwrap().fail_after = None;
    let before = world.requests();
    let report = world.poller().poll_once().await.unwrap();
    assert_eq!((report.upserts, world.requests() - before), (400 + 3 + 2, 4));
    let (latest, messages) = world.topic_state();
    assert_eq!(latest, world.state());
    assert_eq!(messages, 1_005, "nothing produced twice");
}

// Samsara: a fake vehicle stats feed (GET /fleet/vehicles/stats/feed).

const SAMSARA_TOKEN: &str = "samsara_api_test";

/// One stat point: vehicle id, stat type, the point (`time` and the stat's fields).
type StatPoint = (String, String, Value);

#[derive(Default)]
struct Feed {
    log: Vec<StatPoint>,
    /// Points per page.
    page: usize,
    /// 429s (with this Retry-After) answered before the next request is served.
    rate_limited: Vec<&'static str>,
    /// When each request arrived, and its `after`.
    requests: Vec<(Instant, Option<String>)>,
}

type SharedFeed = Arc<Mutex<Feed>>;

fn stat_point(vehicle: &str, stat: &str, minute: u32) -> StatPoint {
    let time = format!("2026-11-20T10:{minute:02}:00Z");
    let point = match stat {
        "gps" => json!({"time": time, "latitude": 41.0 + f64::from(minute) / 100.0, "longitude": -87.6,
                        "speedMilesPerHour": 50 + minute}),
        "engineStates" => json!({"time": time, "value": "On"}),
        _ => json!({"time": time, "value": 40 + minute}),
    };
    (vehicle.to_owned(), stat.to_owned(), point)
}

/// The feed's JSON for `points`: one item per vehicle, its points under their stat types.
fn feed_items(points: &[StatPoint]) -> Vec<Value> {
    let mut items: BTreeMap<&str, Value> = BTreeMap::new();
    for (vehicle, stat, point) in points {
        let item = items
            .entry(vehicle)
            .or_insert_with(|| json!({"id": vehicle, "name": format!("Truck {vehicle}")}));
        item.as_object_mut().unwrap().entry(stat.clone()).or_insert_with(|| json!([]));
        item[stat].as_array_mut().unwrap().push(point.clone());
    }
    items.into_values().collect()
}

async fn samsara_feed(
    State(feed): State<SharedFeed>,
    headers: axum::http::HeaderMap,
    axum::extract::Query(q): axum::extract::Query<BTreeMap<String, String>>,
) -> Response {
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(&format!("Bearer {SAMSARA_TOKEN}"))
    {
        return (StatusCode::UNAUTHORIZED, Json(json!({"message": "Unauthorized"}))).into_response();
    }
    let mut feed = feed.lock().unwrap();
    feed.requests.push((Instant::now(), q.get("after").cloned()));
    if !feed.rate_limited.is_empty() {
        let wait = feed.rate_limited.remove(0);
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", wait)],
            Json(json!({"message": "rate limited"})),
        )
            .into_response();
    }
    let types: Vec<&str> = q.get("types").map(|t| t.split(',').collect()).unwrap_or_default();
    if types.is_empty() || types.len() > 3 {
        return (StatusCode::BAD_REQUEST, Json(json!({"message": "types: 1 to 3"}))).into_response();
    }
    let wanted = |p: &&StatPoint| types.contains(&p.1.as_str());
    let (points, end): (Vec<StatPoint>, usize) = match q.get("after") {
        // No cursor: the latest value per vehicle and type, and a cursor at the end.
        None => {
            let mut latest: BTreeMap<(String, String), StatPoint> = BTreeMap::new();
            for p in feed.log.iter().filter(wanted) {
                latest.insert((p.0.clone(), p.1.clone()), p.clone());
            }
            (latest.into_values().collect(), feed.log.len())
        }
        Some(after) => {
            let from: usize = after.trim_start_matches('c').parse().unwrap();
            let end = (from + feed.page).min(feed.log.len());
            (feed.log[from..end].iter().filter(wanted).cloned().collect(), end)
        }
    };
    let more = end < feed.log.len();
    Json(json!({"data": feed_items(&points), "pagination": {"endCursor": format!("c{end}"), "hasNextPage": more}}))
        .into_response()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samsara_feed_starts_at_the_latest_values_pages_on_end_cursor_waits_5_s_when_caught_up_and_members_parse_it()
 {
    let brokers = kafka_brokers();
    let topic = scratch_topic(&brokers, "samsara.feed.").await;
    let feed: SharedFeed = Arc::default();
    {
        let mut f = feed.lock().unwrap();
        f.page = 4;
        f.rate_limited = vec!["0.3"];
        for minute in 0..2 {
            for v in ["v1", "v2"] {
                f.log.push(stat_point(v, "gps", minute));
                f.log.push(stat_point(v, "fuelPercents", minute));
            }
        }
        // A stat type the poller does not ask for.
        f.log.push(stat_point("v1", "obdOdometerMeters", 1));
    }
    let app = axum::Router::new()
        .route("/fleet/vehicles/stats/feed", axum::routing::get(samsara_feed))
        .with_state(feed.clone());
    let addr = serve(app).await;

    let mut poll = PollConfig::default();
    poll.samsara_feed.url = format!("http://{addr}");
    poll.samsara_feed.token_env = "TEST_SAMSARA_TOKEN".into();
    poll.samsara_feed.types = vec!["gps".into(), "fuelPercents".into(), "engineStates".into()];
    poll.samsara_feed.topic = topic.clone();
    poll.first_backoff = Duration::from_millis(20);
    let token = |name: &str| (name == "TEST_SAMSARA_TOKEN").then(|| SAMSARA_TOKEN.to_owned());
    let provider: Arc<dyn Provider> = Arc::new(SamsaraFeed::with_credentials(&poll, token).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let cursors = Arc::new(SqliteRecordStore::open(&dir.path().join("cursors.db")).await.unwrap());
    let poller = poller_of(provider, cursors.clone(), &brokers);

    // First poll, no cursor: the latest gps and fuel value of each vehicle, after one 429.
    let first = poller.poll_once().await.unwrap();
    assert_eq!(first.upserts, 4, "latest gps and fuel of v1 and v2");
    let requests = feed.lock().unwrap().requests.clone();
    assert_eq!(requests.len(), 2, "the 429, then the answer");
    assert!(requests[1].0 - requests[0].0 >= Duration::from_millis(300), "Retry-After honoured");
    assert_eq!(cursors.poll_cursor("samsara").await.unwrap().unwrap().0, "c9");

    // New points: the next poll pages from the cursor, 4 points a page, and its
    // first call waits 5 s after the caught-up answer.
    {
        let mut f = feed.lock().unwrap();
        for minute in 2..5 {
            for v in ["v1", "v2"] {
                f.log.push(stat_point(v, "gps", minute));
                f.log.push(stat_point(v, "engineStates", minute));
            }
        }
    }
    let second = poller.poll_once().await.unwrap();
    assert_eq!(second.upserts, 12);
    let requests = feed.lock().unwrap().requests.clone();
    let afters: Vec<Option<&str>> = requests[2..].iter().map(|(_, a)| a.as_deref()).collect();
    assert_eq!(afters, [Some("c9"), Some("c13"), Some("c17")]);
    assert!(
        requests[2].0 - requests[1].0 >= CAUGHT_UP_WAIT,
        "{:?} after caught up",
        requests[2].0 - requests[1].0
    );
    assert!(requests[3].0 - requests[2].0 < Duration::from_secs(1), "pages with hasNextPage come at once");

    // Members parse the events as Samsara webhooks: 16 records, in every store.
    let messages = read_to_end(&brokers, &topic, Format::Samsara, Duration::from_secs(30)).unwrap();
    let want: std::collections::BTreeSet<RecordId> =
        messages.iter().map(|m| RecordId::derive(Format::Samsara, m.key.as_deref().unwrap())).collect();
    assert_eq!((messages.len(), want.len()), (16, 16));
    let landed =
        member_reads(&brokers, &topic, |k| k.samsara_topic = topic.clone(), "none", dir.path()).await;
    for (store, ids) in &landed.ids {
        assert_eq!(ids, &want, "{store}");
    }
}

// SONAR: a fake /Credential/authenticate and /data/{index}/{qualifier}/{start}/{end}.

#[derive(Default)]
struct Market {
    /// (index, qualifier, date) → value.
    points: BTreeMap<(String, String, chrono::NaiveDate), f64>,
    /// Tokens it has handed out and still accepts.
    tokens: Vec<String>,
    authentications: usize,
    /// The data requests: (index, qualifier, start, end).
    reads: Vec<(String, String, String, String)>,
}

type SharedMarket = Arc<Mutex<Market>>;

async fn sonar_authenticate(State(market): State<SharedMarket>, Json(req): Json<Value>) -> Response {
    if req != json!({"username": "dispatch@fleet.example", "password": "s3cret"}) {
        return (StatusCode::UNAUTHORIZED, "invalid username or password").into_response();
    }
    let mut m = market.lock().unwrap();
    m.authentications += 1;
    let token = format!("token-{}", m.authentications);
    m.tokens.push(token.clone());
    Json(json!({"token": token})).into_response()
}

async fn sonar_data(
    State(market): State<SharedMarket>,
    headers: axum::http::HeaderMap,
    axum::extract::Path((index, qualifier, start, end)): axum::extract::Path<(
        String,
        String,
        String,
        String,
    )>,
) -> Response {
    let mut m = market.lock().unwrap();
    let bearer =
        headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    if !bearer.is_some_and(|t| m.tokens.iter().any(|k| k == t)) {
        return (StatusCode::UNAUTHORIZED, "token").into_response();
    }
    m.reads.push((index.clone(), qualifier.clone(), start.clone(), end.clone()));
    let (from, to) = (start.parse::<chrono::NaiveDate>().unwrap(), end.parse::<chrono::NaiveDate>().unwrap());
    let points: Vec<Value> = m
        .points
        .iter()
        .filter(|((i, q, d), _)| *i == index && *q == qualifier && (from..=to).contains(d))
        .map(
            |((i, q, d), v)| json!({"index": i, "qualifier": q, "date": format!("{d}T00:00:00"), "value": v}),
        )
        .collect();
    Json(points).into_response()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sonar_reads_each_series_from_its_last_date_renews_an_expired_token_and_members_store_the_points() {
    let brokers = kafka_brokers();
    let topic = scratch_topic(&brokers, "poll.market.v1.").await;
    let today = chrono::Utc::now().date_naive();
    let market: SharedMarket = Arc::default();
    {
        let mut m = market.lock().unwrap();
        for (index, qualifier) in [("OTRI", "USA"), ("OTRI", "ATLCHI"), ("NTI", "USA"), ("NTI", "ATLCHI")] {
            // 40 days of history; the first poll reads back 10.
            for back in 0..40 {
                let date = today - chrono::Duration::days(back);
                m.points.insert((index.into(), qualifier.into(), date), 5.0 + back as f64 / 10.0);
            }
        }
    }
    let app = axum::Router::new()
        .route("/Credential/authenticate", axum::routing::post(sonar_authenticate))
        .route("/data/{index}/{qualifier}/{start}/{end}", axum::routing::get(sonar_data))
        .with_state(market.clone());
    let addr = serve(app).await;

    let mut poll = PollConfig::default();
    poll.sonar.url = format!("http://{addr}");
    poll.sonar.username_env = "TEST_SONAR_USER".into();
    poll.sonar.password_env = "TEST_SONAR_PASSWORD".into();
    poll.sonar.indices = vec!["OTRI".into(), "NTI".into()];
    poll.sonar.qualifiers = vec!["USA".into(), "ATLCHI".into()];
    poll.sonar.backfill = Duration::from_secs(9 * 86_400);
    poll.sonar.topic = topic.clone();
    let secrets = |name: &str| match name {
        "TEST_SONAR_USER" => Some("dispatch@fleet.example".to_owned()),
        "TEST_SONAR_PASSWORD" => Some("s3cret".to_owned()),
        _ => None,
    };
    let provider: Arc<dyn Provider> = Arc::new(Sonar::with_credentials(&poll, secrets).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let cursors = Arc::new(SqliteRecordStore::open(&dir.path().join("cursors.db")).await.unwrap());
    let poller = poller_of(provider, cursors.clone(), &brokers);

    let first = poller.poll_once().await.unwrap();
    assert_eq!((first.pages, first.upserts), (4, 40), "4 series, 10 days each");
    let start = (today - chrono::Duration::days(9)).to_string();
    assert!(market.lock().unwrap().reads.iter().all(|r| r.2 == start && r.3 == today.to_string()));

    // The token expires and today's values are revised: the next poll
    // authenticates again and reads each series from its last date only.
    {
        let mut m = market.lock().unwrap();
        m.tokens.clear();
        m.reads.clear();
        for ((_, _, date), value) in m.points.iter_mut() {
            if *date == today {
                *value = 9.99;
            }
        }
    }
    let second = poller.poll_once().await.unwrap();
    assert_eq!((second.pages, second.upserts), (4, 4), "today's point of each series, revised");
    {
        let m = market.lock().unwrap();
        assert_eq!(m.authentications, 2, "once at start, once after the 401");
        assert!(m.reads.iter().all(|r| r.2 == today.to_string()), "{:?}", m.reads);
    }

    // The topic's latest value per key is the provider's, and members store one record per key.
    let latest: BTreeMap<String, f64> = latest_per_key(&brokers, &topic)
        .0
        .into_iter()
        .map(|(k, (v, _))| (k, v["value"].as_f64().unwrap()))
        .collect();
    assert_eq!(latest.len(), 40);
    assert!(latest.iter().filter(|(k, _)| k.ends_with(&today.to_string())).all(|(_, v)| *v == 9.99));
    let want: std::collections::BTreeSet<RecordId> =
        latest.keys().map(|k| RecordId::derive(Format::Market, &format!("sonar:{k}"))).collect();
    let landed = member_reads(&brokers, &topic, |k| k.market_topic = topic.clone(), "none", dir.path()).await;
    for (store, ids) in &landed.ids {
        assert_eq!(ids, &want, "{store}");
    }
}

// QuickBooks: a fake CDC (at most 1,000 objects an answer, whatever the window
// holds) and query endpoint (`SELECT * FROM E WHERE … ORDERBY Id MAXRESULTS n`).

const QB_TOKEN: &str = "eyJ-qb-access";

/// One object: when it was last updated, its JSON, whether it is deleted.
type QbObject = (chrono::DateTime<chrono::Utc>, Value, bool);

#[derive(Default)]
struct Books {
    /// Entity → Id → object.
    objects: BTreeMap<String, BTreeMap<u64, QbObject>>,
    cdc_calls: usize,
}

type SharedBooks = Arc<Mutex<Books>>;

fn qb_time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn qb_json(entity: &str, id: u64, at: chrono::DateTime<chrono::Utc>, deleted: bool) -> Value {
    let meta = json!({"CreateTime": qb_time(at), "LastUpdatedTime": qb_time(at)});
    if deleted {
        return json!({"domain": "QBO", "status": "Deleted", "Id": id.to_string(), "MetaData": meta});
    }
    let mut o = json!({"Id": id.to_string(), "SyncToken": "0", "MetaData": meta});
    match entity {
        "Invoice" => {
            o["DocNumber"] = json!(format!("INV-{id}"));
            o["TotalAmt"] = json!(100.0 + id as f64);
            o["CustomerRef"] =
                json!({"value": (id % 10 + 1).to_string(), "name": format!("Shipper {}", id % 10 + 1)});
            o["Line"] =
                json!([{"Description": format!("Linehaul PRO {:08}", id), "Amount": 100.0 + id as f64}]);
        }
        "Customer" => o["DisplayName"] = json!(format!("Shipper {id}")),
        _ => o["TotalAmt"] = json!(50.0),
    }
    o
}

fn qb_fault(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({"Fault": {"Error": [{"Message": message, "code": "100"}], "type": "ValidationFault"}})),
    )
        .into_response()
}

fn qb_authorized(headers: &axum::http::HeaderMap) -> bool {
    headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {QB_TOKEN}"))
}

async fn qb_cdc(
    State(books): State<SharedBooks>,
    headers: axum::http::HeaderMap,
    axum::extract::Query(q): axum::extract::Query<BTreeMap<String, String>>,
) -> Response {
    if !qb_authorized(&headers) {
        return qb_fault(StatusCode::UNAUTHORIZED, "AuthenticationFailed");
    }
    let now = chrono::Utc::now();
    let since: chrono::DateTime<chrono::Utc> = q["changedSince"].parse().unwrap();
    if now - since > chrono::Duration::days(30) {
        return qb_fault(StatusCode::BAD_REQUEST, "changedSince is more than 30 days ago");
    }
    let mut books = books.lock().unwrap();
    books.cdc_calls += 1;
    let mut left = 1_000usize;
    let mut responses = Vec::new();
    for entity in q["entities"].split(',') {
        let changed: Vec<Value> = books
            .objects
            .get(entity)
            .into_iter()
            .flatten()
            .filter(|(_, (at, _, _))| *at >= since)
            .take(left)
            .map(|(_, (_, o, _))| o.clone())
            .collect();
        left -= changed.len();
        responses.push(json!({entity: changed, "startPosition": 1, "maxResults": changed.len()}));
    }
    Json(json!({"CDCResponse": [{"QueryResponse": responses}], "time": qb_time(now)})).into_response()
}

/// The value of `field OP 'value'` in a query's WHERE, if there.
fn condition<'a>(sql: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = &sql[sql.find(prefix)? + prefix.len()..];
    rest.strip_prefix('\'')?.split('\'').next()
}

async fn qb_query(
    State(books): State<SharedBooks>,
    headers: axum::http::HeaderMap,
    axum::extract::Query(q): axum::extract::Query<BTreeMap<String, String>>,
) -> Response {
    if !qb_authorized(&headers) {
        return qb_fault(StatusCode::UNAUTHORIZED, "AuthenticationFailed");
    }
    let sql = &q["query"];
    let entity = sql.split_whitespace().nth(3).unwrap().to_owned();
    let limit: usize = sql.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(sql.contains("ORDERBY Id") && limit <= 1_000, "{sql}");
    let time = |p| condition(sql, p).map(|t| t.parse::<chrono::DateTime<chrono::Utc>>().unwrap());
    let (before, from) = (time("MetaData.LastUpdatedTime < "), time("MetaData.LastUpdatedTime >= "));
    let after_id: u64 = condition(sql, "Id > ").map(|i| i.parse().unwrap()).unwrap_or(0);
    let books = books.lock().unwrap();
    let found: Vec<Value> = books
        .objects
        .get(&entity)
        .into_iter()
        .flatten()
        .filter(|(id, (at, _, deleted))| {
            !deleted && **id > after_id && before.is_none_or(|b| *at < b) && from.is_none_or(|f| *at >= f)
        })
        .take(limit)
        .map(|(_, (_, o, _))| o.clone())
        .collect();
    Json(json!({"QueryResponse": {entity.as_str(): found, "startPosition": 1, "maxResults": found.len()},
                "time": qb_time(chrono::Utc::now())}))
    .into_response()
}

impl Books {
    fn put(&mut self, entity: &str, id: u64, at: chrono::DateTime<chrono::Utc>, deleted: bool) {
        self.objects
            .entry(entity.into())
            .or_default()
            .insert(id, (at, qb_json(entity, id, at, deleted), deleted));
    }

    /// Key → (the object's JSON, whether it is deleted).
    fn state(&self) -> BTreeMap<String, (Value, bool)> {
        let mut out = BTreeMap::new();
        for (entity, all) in &self.objects {
            for (id, (_, o, deleted)) in all {
                out.insert(format!("{entity}:{id}"), (o.clone(), *deleted));
            }
        }
        out
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quickbooks_syncs_in_full_then_splits_a_truncated_window_misses_nothing_and_resyncs_after_a_gap() {
    let brokers = kafka_brokers();
    let topic = scratch_topic(&brokers, "poll.financial.v1.").await;
    let books: SharedBooks = Arc::default();
    {
        let two_days_ago = chrono::Utc::now() - chrono::Duration::days(2);
        let mut b = books.lock().unwrap();
        (1..=1_500).for_each(|id| b.put("Invoice", id, two_days_ago, false));
        (1..=10).for_each(|id| b.put("Customer", id, two_days_ago, false));
        (1..=3).for_each(|id| b.put("Payment", id, two_days_ago, false));
    }
    let app = axum::Router::new()
        .route("/v3/company/{realm}/cdc", axum::routing::get(qb_cdc))
        .route("/v3/company/{realm}/query", axum::routing::get(qb_query))
        .with_state(books.clone());
    let addr = serve(app).await;

    let mut poll = PollConfig::default();
    poll.quickbooks.url = format!("http://{addr}");
    poll.quickbooks.realm_id = "9341453".into();
    poll.quickbooks.token_env = "TEST_QB_TOKEN".into();
    poll.quickbooks.entities = vec!["Invoice".into(), "Payment".into(), "Customer".into()];
    poll.quickbooks.requests_per_minute = 500;
    poll.quickbooks.topic = topic.clone();
    let token = |name: &str| (name == "TEST_QB_TOKEN").then(|| QB_TOKEN.to_owned());
    let dir = tempfile::tempdir().unwrap();
    let cursors = Arc::new(SqliteRecordStore::open(&dir.path().join("cursors.db")).await.unwrap());
    let poller = |poll: &PollConfig| {
        let provider: Arc<dyn Provider> = Arc::new(Quickbooks::with_credentials(poll, token).unwrap());
        poller_of(provider, cursors.clone(), &brokers)
    };
    let topic_state = || {
        let (latest, messages) = latest_per_key(&brokers, &topic);
        let bodies = latest.into_iter().map(|(key, (body, change))| (key, (body, change == "removed")));
        (bodies.collect::<BTreeMap<_, _>>(), messages)
    };

    // No cursor: everything, with queries (1,500 invoices over two pages), then CDC from the start of the read.
    let first = poller(&poll).poll_once().await.unwrap();
    assert_eq!(first.upserts, 1_513);
    assert_eq!(topic_state().0, books.lock().unwrap().state());

    // 1,200 invoices change, two are deleted last and five payments arrive: the
    // CDC answers are cut at 1,000, so the window is split.
    let since: Value =
        serde_json::from_str(&cursors.poll_cursor("financial").await.unwrap().unwrap().0).unwrap();
    let since: chrono::DateTime<chrono::Utc> = since["since"].as_str().unwrap().parse().unwrap();
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    {
        let mut b = books.lock().unwrap();
        let span = (chrono::Utc::now() - since).num_milliseconds() - 100;
        for i in 0..1_200u64 {
            let at = since + chrono::Duration::milliseconds(span * i as i64 / 1_200);
            b.put("Invoice", i + 1, at, false);
        }
        let last = since + chrono::Duration::milliseconds(span);
        b.put("Invoice", 1_499, last, true);
        b.put("Invoice", 1_500, last, true);
        (4..=8).for_each(|id| b.put("Payment", id, last, false));
    }
    let calls_before = books.lock().unwrap().cdc_calls;
    let second = poller(&poll).poll_once().await.unwrap();
    assert_eq!(second.removals, 2);
    assert!(second.upserts >= 1_205, "{} upserts", second.upserts);
    assert!(books.lock().unwrap().cdc_calls - calls_before > 3, "the truncated window was bisected");
    assert_eq!(topic_state().0, books.lock().unwrap().state(), "nothing missed; the deleted are removed");

    // A cursor past CDC's 30 days: refused without resync_after_gap, read again in full with it.
    let stale = json!({"since": qb_time(chrono::Utc::now() - chrono::Duration::days(31))}).to_string();
    cursors.save_poll_cursor("financial", &stale).await.unwrap();
    let mut no_resync = poll.clone();
    no_resync.quickbooks.resync_after_gap = false;
    let e = poller(&no_resync).poll_once().await.unwrap_err().to_string();
    assert!(e.contains("resync_after_gap"), "{e}");
    let (_, before) = topic_state();
    let resync = poller(&poll).poll_once().await.unwrap();
    assert_eq!(resync.upserts, 1_516, "every live object again");
    let (latest, after) = topic_state();
    assert_eq!((latest, after - before), (books.lock().unwrap().state(), 1_516));

    // Members store every object once, the deleted ones marked deleted.
    let landed =
        member_reads(&brokers, &topic, |k| k.financial_topic = topic.clone(), "QbInvoiceDeleted", dir.path())
            .await;
    let want: std::collections::BTreeSet<RecordId> = books
        .lock()
        .unwrap()
        .state()
        .keys()
        .map(|k| RecordId::derive(Format::Financial, &format!("quickbooks:{k}")))
        .collect();
    for (store, ids) in &landed.ids {
        assert_eq!(ids, &want, "{store}");
    }
    let deleted: std::collections::BTreeSet<RecordId> = ["Invoice:1499", "Invoice:1500"]
        .iter()
        .map(|k| RecordId::derive(Format::Financial, &format!("quickbooks:{k}")))
        .collect();
    assert_eq!(landed.removed, deleted);
}

// On Temporal: the same poll step in a PollingWorkflow run by a worker.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_temporal_the_polling_workflow_keeps_its_cursor_across_continue_as_new_honours_retry_after_and_starts_once()
 {
    let world = World::new(6).await;
    world.item.lock().unwrap().faults = vec![Fault::RateLimited("1")];
    let dir = tempfile::tempdir().unwrap();
    let mut config = support::config();
    support::require("temporal", "APEX_TEMPORAL_URL", &config.temporal.url);
    config.temporal.task_queue = support::unique("apex-poll-test");
    config.stores.data_dir = dir.path().to_path_buf();
    config.metrics.listen = String::new();
    config.kafka.brokers = world.brokers.clone();
    config.poll = world.poll.clone();
    (config.poll.on_temporal, config.poll.interval, config.poll.iterations_per_run) =
        (true, Duration::from_millis(200), 3);

    // What `apex-ingest worker` registers, with the test's credentials instead of the environment.
    let metrics = Metrics::new();
    let mut once = world.poll.clone();
    once.max_attempts = 1;
    let provider = Arc::new(Plaid::with_credentials(&once, credentials).unwrap());
    let step = PollStep::new(provider, &world.brokers, metrics.poll.clone()).unwrap();
    let extra: apex_ingest::orchestrate::temporal::worker::Extra = Box::new(move |options| {
        options.register_workflow::<PollingWorkflow>()?;
        options.register_activities(PollActivities::new(vec![step]));
        Ok(())
    });
    let stores = app::open_stores(&config).await.unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let writer = app::saga_writer(&config, &stores, metrics.clone(), &shutdown).unwrap();
    let embedder = app::build_embedder(&config).unwrap();

    let client = apex_ingest::orchestrate::temporal::connect(&config.temporal).await.unwrap();
    let id = workflow::workflow_id(&config.temporal.task_queue, "bank");
    let handle = client.get_workflow_handle::<PollingWorkflow>(id.clone());
    let stats = || async {
        handle.query(PollingWorkflow::get_stats, (), temporalio_client::WorkflowQueryOptions::default()).await
    };
    let work = async {
        let first =
            workflow::start_pollers(&client, &config, &["bank"], world.cursors.as_ref()).await.unwrap();
        assert_eq!(first[0].0, id);
        // Changes while it polls; two continue-as-news (3 polls a run) later, every one is in the topic.
        let started = Instant::now();
        let mut changed = false;
        loop {
            let s = stats().await.ok();
            if !changed && s.as_ref().is_some_and(|s| s.polls_ok >= 1) {
                let mut item = world.item.lock().unwrap();
                item.log.push(Event::Modified(tx("tx-2", 99.0, "Fuel stop")));
                item.log.push(Event::Removed("tx-5".into()));
                item.log.push(Event::Added(tx("tx-6", 7.0, "Scale ticket")));
                changed = true;
            }
            if s.as_ref().is_some_and(|s| s.runs >= 3) {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(90), "{s:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // Starting again leaves the running workflow as it is: its counts go on.
        let before = stats().await.unwrap();
        let again =
            workflow::start_pollers(&client, &config, &["bank"], world.cursors.as_ref()).await.unwrap();
        assert_eq!(again[0].0, id);
        let later = stats().await.unwrap();
        assert!(
            later.runs >= before.runs && later.iterations >= before.iterations,
            "{before:?} then {later:?}"
        );
        handle.terminate(Default::default()).await.unwrap();
        later
    };
    let stats_after = while_working(&config, embedder, writer, &metrics, extra, work).await.unwrap();

    assert!(stats_after.iterations >= 6 && stats_after.polls_ok >= 6, "{stats_after:?}");
    // The worker's metrics count the polls its steps ended.
    let m = metrics.render();
    let ok = support::metric_series(&m, "apex_poll_total{outcome=\"ok\",source=\"bank\"}");
    assert!(ok.first().is_some_and(|(_, n)| *n as u64 >= stats_after.polls_ok), "{m}");
    assert_eq!(stats_after.cursor.as_deref(), Some("9"), "the cursor after every change, kept across runs");
    let item = world.item.lock().unwrap();
    // One request without a cursor: the very first; every later run went on from its cursor.
    assert_eq!(item.requests.iter().filter(|(c, _)| c.is_none()).count(), 2, "the 429 and its retry");
    assert!(item.requests[1].1 - item.requests[0].1 >= Duration::from_secs(1), "Retry-After: 1 waited");
    drop(item);
    world.assert_topic_matches_the_item();
}

/// `apex-ingest run` with the Plaid poller and a member reading its topic, on
/// embedded stores in `dir`; the fake's credentials in its environment.
fn run_process(world: &World, dir: &std::path::Path, group: &str) -> std::process::Child {
    let file = dir.join("apex.toml");
    let topics_off = [
        "samsara_topic",
        "edi_topic",
        "front_topic",
        "turvo_topic",
        "crm_topic",
        "market_topic",
        "financial_topic",
    ]
    .map(|t| format!("{t} = \"\"\n"))
    .concat();
    let toml = format!(
        "[source]\nkind = \"kafka\"\n[stores]\ndata_dir = {dir:?}\n[metrics]\nlisten = \"\"\n\
         [kafka]\nbrokers = {brokers:?}\ngroup_id = {group:?}\nbank_topic = {topic:?}\n{topics_off}\
         [batch]\nmax_wait = \"300ms\"\n[poll]\ninterval = \"500ms\"\nfirst_backoff = \"50ms\"\n\
         [poll.plaid]\nurl = {url:?}\ncount = 2\nrequests_per_minute = 6000\ntopic = {topic:?}\n\
         client_id_env = \"TEST_PLAID_CLIENT_ID\"\nsecret_env = \"TEST_PLAID_SECRET\"\n\
         access_token_env = \"TEST_PLAID_ACCESS_TOKEN\"\n",
        dir = dir.display().to_string(),
        brokers = world.brokers,
        topic = world.topic,
        url = world.poll.plaid.url,
    );
    std::fs::write(&file, toml).unwrap();
    let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("run.log")).unwrap();
    std::process::Command::new(env!("CARGO_BIN_EXE_apex-ingest"))
        .args(["run", "--config"])
        .arg(&file)
        .envs(
            ["TEST_PLAID_CLIENT_ID", "TEST_PLAID_SECRET", "TEST_PLAID_ACCESS_TOKEN"]
                .map(|v| (v, credentials(v).unwrap())),
        )
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_process_killed_mid_poll_loses_and_doubles_nothing_in_the_stores_after_restart() {
    let world = World::new(6).await;
    world.item.lock().unwrap().delay = Duration::from_millis(300);
    let dir = tempfile::tempdir().unwrap();
    let group = support::unique("apex-poll-kill");

    // Killed (SIGKILL) while its first poll is between pages.
    let mut first = run_process(&world, dir.path(), &group);
    let started = Instant::now();
    while world.item.lock().unwrap().requests.len() < 2 {
        assert!(started.elapsed() < Duration::from_secs(30), "the poller never asked twice");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.kill().unwrap();
    first.wait().unwrap();
    {
        let mut item = world.item.lock().unwrap();
        item.log.push(Event::Modified(tx("tx-1", 12.0, "Fuel stop")));
        item.log.push(Event::Removed("tx-3".into()));
    }

    // Restarted: it polls on from the saved cursor, and the member writes the topic.
    let mut second = run_process(&world, dir.path(), &group);
    let watch = GroupWatch::new(&world.brokers, &group).unwrap();
    let want = state_of(&world.item);
    let started = Instant::now();
    loop {
        let (latest, _) = world.topic_state();
        let live: BTreeMap<String, Value> =
            latest.into_iter().filter(|(_, (_, c))| c == "upsert").map(|(k, (v, _))| (k, v)).collect();
        let (end, committed) = watch.progress(&[&world.topic]).unwrap();
        if live == want && end > 0 && committed == end {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "topic {live:?}, committed {committed} of {end}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    second.kill().unwrap();
    second.wait().unwrap();

    let mut config = support::config();
    config.stores.data_dir = dir.path().to_path_buf();
    let stores = app::open_stores(&config).await.unwrap();
    let ids: std::collections::BTreeSet<RecordId> =
        stores.relational.record_ids().await.unwrap().into_iter().collect();
    assert_eq!(ids, (0..6).map(|i| bank_id(&format!("tx-{i}"))).collect(), "every transaction, once");
    assert_eq!(stores.relational.count_records().await.unwrap(), 6, "nothing doubled");
    let removed =
        stores.relational.record_ids_of_kinds(&["BankTransactionRemoved".to_owned()]).await.unwrap();
    assert_eq!(removed, vec![bank_id("tx-3")]);
    for s in stores.all() {
        if s.durable() {
            assert_eq!(
                s.present(&ids.iter().cloned().collect::<Vec<_>>()).await.unwrap().len(),
                6,
                "{}",
                s.name()
            );
        }
    }
}
