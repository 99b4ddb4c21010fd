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
use apex_ingest::poll::plaid::Plaid;
use apex_ingest::poll::{PollError, Poller, Provider, headers};
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
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
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
        let topic = format!("poll.bank.v1.{}", support::unique("t"));
        topics::apply(&brokers, &[TopicSpec::scratch(&topic, 3)], Some(1)).await.unwrap();
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
        let messages =
            read_to_end(&self.brokers, &self.topic, Format::Webhook, Duration::from_secs(30)).unwrap();
        let mut latest = BTreeMap::new();
        // One key is one partition, read in order: the last message of a key is its latest.
        for m in &messages {
            let value: Value = serde_json::from_slice(&m.payload).unwrap();
            let change =
                m.headers.iter().find(|(k, _)| k == headers::CHANGE).map(|(_, v)| v.clone()).unwrap();
            latest.insert(m.key.clone().unwrap(), (value, String::from_utf8(change).unwrap()));
        }
        (latest, messages.len())
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
    // From the environment too (nothing sets this variable).
    let from_env = Plaid::from_config(&poll).err().expect("an unset variable is refused").to_string();
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

/// The stores after a member read the bank topic to its end: record ids per
/// durable store, and the relational store's removed ones.
struct Landed {
    ids: BTreeMap<&'static str, std::collections::BTreeSet<RecordId>>,
    removed: std::collections::BTreeSet<RecordId>,
}

/// A member on embedded stores reads `topic` until its group has committed
/// everything, then stops; what landed.
async fn member_reads(world: &World, dir: &std::path::Path) -> Landed {
    let mut config = support::config();
    config.source.kind = SourceKind::Kafka;
    config.stores.data_dir = dir.to_path_buf();
    config.metrics.listen = String::new();
    config.kafka.group_id = support::unique("apex-poll-test");
    config.kafka.only_samsara_and_edi();
    (config.kafka.samsara_topic, config.kafka.edi_topic) = (String::new(), String::new());
    config.kafka.bank_topic = world.topic.clone();
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
    let watch = GroupWatch::new(&world.brokers, &config.kafka.group_id).unwrap();
    let started = Instant::now();
    loop {
        let (end, committed) = watch.progress(&[&world.topic]).unwrap();
        if end > 0 && committed == end {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the member committed {committed} of {end}");
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
        .record_ids_of_kinds(&["BankTransactionRemoved".to_owned()])
        .await
        .unwrap()
        .into_iter()
        .collect();
    Landed { ids, removed }
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
    let landed = member_reads(&world, dir.path()).await;
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
    let again = member_reads(&world, dir.path()).await;
    for (store, ids) in &again.ids {
        assert_eq!(ids, &want, "{store} after a second read");
    }
    assert_eq!(again.removed, landed.removed);
}
