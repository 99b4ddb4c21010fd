//! A fake Plaid Item (POST /transactions/sync) and the world most poller tests run in:
//! its topic, a cursor store, pollers over them.

use apex_ingest::config::PollConfig;
use apex_ingest::metrics::Metrics;
use apex_ingest::model::{Format, RecordId};
use apex_ingest::poll::plaid::Plaid;
use apex_ingest::poll::{Poller, Provider};
use apex_ingest::store::PollCursors;
use apex_ingest::store::memory_cache::MemoryCache;
use apex_ingest::store::sqlite_records::SqliteRecordStore;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::kafka_brokers;
use crate::world::*;

/// One change in the fake Item's history; a cursor is the number of changes seen.
#[derive(Clone)]
pub enum Event {
    Added(Value),
    Modified(Value),
    Removed(String),
}

/// A fault the server answers the next request with.
#[derive(Clone)]
pub enum Fault {
    /// HTTP 429 `RATE_LIMIT_EXCEEDED` with this Retry-After (seconds).
    RateLimited(&'static str),
    Unavailable,
}

#[derive(Default)]
pub struct Item {
    pub log: Vec<Event>,
    /// Answer `TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION` to the next request
    /// that continues a loop (has a cursor past its start), adding this change.
    pub mutate_during_pagination: Option<Event>,
    pub faults: Vec<Fault>,
    /// Every request: (its cursor, when).
    pub requests: Vec<(Option<String>, Instant)>,
    /// Each answer takes this long (a slow provider).
    pub delay: Duration,
    /// Requests being answered now, and the most there ever were at once.
    pub in_flight: usize,
    pub most_in_flight: usize,
}

pub type Shared = Arc<Mutex<Item>>;

pub fn tx(id: &str, amount: f64, name: &str) -> Value {
    json!({"transaction_id": id, "account_id": "acc-1", "amount": amount, "name": name,
           "date": "2026-11-20", "iso_currency_code": "USD", "pending": false})
}

pub fn plaid_error(status: StatusCode, error_type: &str, code: &str) -> Response {
    let body = json!({"error_type": error_type, "error_code": code, "error_message": code.to_lowercase(),
                      "display_message": null, "request_id": "req-fake"});
    (status, Json(body)).into_response()
}

/// `POST /transactions/sync` as Plaid documents it.
pub async fn transactions_sync(State(shared): State<Shared>, Json(req): Json<Value>) -> Response {
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

pub fn answer(item: &mut Item, req: &Value) -> Response {
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
pub fn state_of(item: &Shared) -> BTreeMap<String, Value> {
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

pub async fn fake_plaid(item: Shared) -> SocketAddr {
    let app = axum::Router::new()
        .route("/transactions/sync", axum::routing::post(transactions_sync))
        .with_state(item);
    serve(app).await
}

/// A test's world: the fake Item, its topic, a cursor store, a poller over them.
pub struct World {
    pub item: Shared,
    pub topic: String,
    pub brokers: String,
    pub cursors: Arc<SqliteRecordStore>,
    /// The members' shared coordinator (Redis in production).
    pub coordinator: Arc<MemoryCache>,
    pub metrics: Arc<Metrics>,
    pub poll: PollConfig,
    pub dir: tempfile::TempDir,
}

impl World {
    pub async fn new(transactions: usize) -> World {
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

    pub fn poller(&self) -> Poller {
        let provider: Arc<dyn Provider> = Arc::new(Plaid::with_credentials(&self.poll, credentials).unwrap());
        let coordinator = self.coordinator.clone();
        Poller::new(
            provider,
            self.cursors.clone(),
            coordinator,
            &crate::support::kafka_at(&self.brokers),
            self.metrics.poll.clone(),
        )
        .unwrap()
    }

    /// The latest message per key in the topic: (value, change header), and how many messages there are.
    pub fn topic_state(&self) -> (BTreeMap<String, (Value, String)>, usize) {
        latest_per_key(&self.brokers, &self.topic)
    }

    /// The topic's latest upserts equal the Item's transactions, and every removed id's last message is a removal.
    pub fn assert_topic_matches_the_item(&self) {
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

    pub async fn saved_cursor(&self) -> Option<String> {
        self.cursors.poll_cursor("bank").await.unwrap().map(|(c, _)| c)
    }
}

/// The fake Item's credentials, as the variables `World`'s config names would hold them.
pub fn credentials(name: &str) -> Option<String> {
    let value = match name {
        "TEST_PLAID_CLIENT_ID" => "client-1",
        "TEST_PLAID_SECRET" => "secret-1",
        "TEST_PLAID_ACCESS_TOKEN" => "access-sandbox-1",
        _ => return None,
    };
    Some(value.to_owned())
}

/// A member reads the bank topic of `world`.
pub async fn member_reads_bank(world: &World, dir: &std::path::Path) -> Landed {
    let topic = world.topic.clone();
    member_reads(&world.brokers, &world.topic, |k| k.bank_topic = topic, "BankTransactionRemoved", dir).await
}

pub fn bank_id(transaction_id: &str) -> RecordId {
    RecordId::derive(Format::Bank, &format!("plaid:{transaction_id}"))
}
