//! The query API (`apex-ingest serve`) over the embedded stores a demo wrote
//! (the README's flow): it answers bearers of its tokens exactly as the
//! query room answers in process, refuses bad input with what is wrong,
//! limits each token on its own, takes a rotated token file without a
//! restart, and will not start open; its answer cache never hides a write
//! (in process, and in Redis over PostgreSQL).

mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use apex_ingest::app;
use apex_ingest::config::{Config, SecretSource, ServeConfig};
use apex_ingest::metrics::Metrics;
use apex_ingest::model::RecordId;
use apex_ingest::query::api::{self, QueryApi};
use apex_ingest::query::{self, QueryStores, Question};
use apex_ingest::store::{RecordFilter, RecordReads, StoreError, StoredRecord};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

const UNTIL: &str = "2026-11-20T06:00:00Z";

/// One demo's stores for the whole file: a day of four trucks ending at UNTIL.
fn demo_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_apex-ingest"))
            .args(["demo", "--vehicles", "4", "--days", "1", "--until", UNTIL, "--poison-fraction", "0"])
            .arg("--data-dir")
            .arg(dir.path())
            .env("APEX_METRICS_LISTEN", "")
            .output()
            .unwrap();
        assert!(out.status.success(), "demo: {}", String::from_utf8_lossy(&out.stderr));
        dir
    })
    .path()
}

fn config() -> Config {
    let mut c = Config::default();
    c.stores.data_dir = demo_dir().to_path_buf();
    c
}

async fn stores(config: &Config) -> QueryStores {
    let stores = app::open_stores(config).await.unwrap();
    QueryStores::over(&stores, app::build_embedder(config).unwrap())
}

/// A token in a file, as a mounted Secret holds it.
fn token_file(dir: &Path, name: &str, token: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("{token}\n")).unwrap();
    path
}

/// Settings of an API answering only `token`, kept in a file under `dir`.
fn answering(dir: &Path, token: &str) -> ServeConfig {
    ServeConfig {
        tokens: vec![SecretSource::File(token_file(dir, "token", token))],
        ..ServeConfig::default()
    }
}

/// Questions of `outcome` in the metrics' text (`apex_query_requests_total`).
fn questions(metrics: &str, outcome: &str) -> i64 {
    support::metric_series(metrics, "apex_query_requests_total")
        .into_iter()
        .find(|(labels, _)| labels.contains(&format!("\"{outcome}\"")))
        .map_or(0, |(_, v)| v)
}

/// The API over the demo's stores on a free port of this runtime; its metrics.
async fn start(settings: ServeConfig) -> (SocketAddr, std::sync::Arc<Metrics>) {
    start_over(&config(), settings).await
}

/// The API over the stores `config` names, its answer cache as `serve` makes it.
async fn start_over(config: &Config, settings: ServeConfig) -> (SocketAddr, std::sync::Arc<Metrics>) {
    let metrics = Metrics::new();
    let cache = app::build_answer_cache(config).await.unwrap();
    let api = QueryApi::start(&settings, stores(config).await, cache, metrics.clone()).unwrap();
    let listener = api::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(api::serve(api, listener, std::future::pending()));
    (addr, metrics)
}

async fn post(
    addr: SocketAddr,
    token: Option<&str>,
    body: String,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("http://{addr}/v1/query"))
        .header("content-type", "application/json")
        .body(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let (status, headers) = (response.status().as_u16(), response.headers().clone());
    let text = response.text().await.unwrap();
    (status, headers, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn record_ids(answer: &Value) -> Vec<String> {
    answer["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["citation"]["record_id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearers_get_the_query_rooms_answer_and_bad_input_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let token = "query-token-one";
    let settings = answering(dir.path(), token);
    let (addr, metrics) = start(settings).await;

    let late = json!({"question": "which shipments are late", "as_of": UNTIL, "k": 50}).to_string();
    let (status, headers, _) = post(addr, None, late.clone()).await;
    assert_eq!(status, 401);
    assert_eq!(headers.get("www-authenticate").unwrap(), "Bearer");
    assert_eq!(post(addr, Some("not-a-token"), late.clone()).await.0, 401);

    // The same hits, in the same order, as the query room in process.
    let (status, _, answer) = post(addr, Some(token), late.clone()).await;
    assert_eq!(status, 200, "{answer}");
    let question = Question {
        text: "which shipments are late".into(),
        as_of: Some(UNTIL.parse().unwrap()),
        ingested_before: None,
        k: 50,
        filters: Default::default(),
        retrieval: Default::default(),
    };
    let direct = query::ask(&stores(&config()).await, &question).await.unwrap();
    let direct_ids: Vec<String> = direct.hits.iter().map(|h| h.citation.record_id.clone()).collect();
    assert!(!direct_ids.is_empty(), "the demo's day has late shipments");
    assert_eq!(record_ids(&answer), direct_ids);
    assert_eq!(answer["reading"]["intent"], "late_shipments");
    assert!(answer["routes"][0]["statement"].as_str().is_some_and(|s| !s.is_empty()), "{answer}");

    // Bad input: 400 naming what is wrong.
    for (body, says) in [
        (json!({"question": "late shipments", "vehicle": "12"}), "unknown field `vehicle`"),
        (json!({"question": "late shipments", "as_of": "yesterday"}), "as_of"),
        (json!({"question": "late shipments", "k": 5000}), "k must be between 1 and 1000"),
        (json!({"question": "late shipments", "k": 0}), "k must be between 1 and 1000"),
        (json!({"question": "harsh braking near Atlantis"}), "unknown place \"Atlantis\""),
        (json!({"k": 5}), "missing field `question`"),
        (json!({"question": "late shipments", "filters": {"trailer": "TRL1"}}), "unknown field `trailer`"),
        (
            json!({"question": "late shipments", "filters": {"near": {"latitude": 100, "longitude": 0, "radius_km": 5}}}),
            "filters.near needs latitude in -90..90",
        ),
        (json!({"question": "late shipments", "filters": {"from": "monday"}}), "filters.from"),
        (json!({"question": "invoices", "retrieval": "psychic"}), "unknown variant `psychic`"),
    ] {
        let (status, _, error) = post(addr, Some(token), body.to_string()).await;
        assert_eq!(status, 400, "{body}: {error}");
        assert!(
            error["error"].as_str().is_some_and(|e| e.contains(says)),
            "{body}: want {says:?} in {error}"
        );
    }
    assert_eq!(post(addr, Some(token), "{not json".into()).await.0, 400);
    let huge = json!({"question": "x".repeat(20_000)}).to_string();
    assert_eq!(post(addr, Some(token), huge).await.0, 413);

    // Hostile values are bound parameters: answered or refused, the stores unchanged.
    for hostile in ["everything about PRO 1' OR '1'='1", "everything about truck 1'; DROP TABLE records; --"]
    {
        let (status, _, _) = post(addr, Some(token), json!({"question": hostile}).to_string()).await;
        assert!(status == 200 || status == 400, "{hostile}: {status}");
    }
    assert_eq!(record_ids(&post(addr, Some(token), late).await.2), direct_ids);

    let text = reqwest::get(format!("http://{addr}/metrics")).await.unwrap().text().await.unwrap();
    let series = |outcome: &str| questions(&text, outcome);
    assert_eq!(series("unauthorized"), 2);
    assert_eq!(series("bad_request"), 11);
    assert_eq!(series("too_large"), 1);
    assert!(series("answered") >= 2, "{text}");
    drop(metrics);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_token_has_its_own_rate_and_a_rotated_token_file_is_taken_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = ("token-a-first", "token-b");
    let a_file = token_file(dir.path(), "a", a);
    let settings = ServeConfig {
        tokens: vec![SecretSource::File(a_file.clone()), SecretSource::File(token_file(dir.path(), "b", b))],
        requests_per_second: 1,
        secret_refresh: Duration::from_millis(200),
        ..ServeConfig::default()
    };
    let (addr, _metrics) = start(settings).await;
    let body = json!({"question": "everything about truck 1", "as_of": UNTIL}).to_string();
    assert_eq!(post(addr, Some(a), body.clone()).await.0, 200);
    // Within the second: over the token's rate (governor refills one a second).
    let (status, headers, error) = post(addr, Some(a), body.clone()).await;
    assert_eq!(status, 429, "{error}");
    assert_eq!(headers.get("retry-after").map(|v| v.to_str().unwrap().to_owned()), Some("1".into()));
    assert!(error["error"].as_str().unwrap().contains("serve.requests_per_second (1)"), "{error}");
    assert_eq!(post(addr, Some(b), body.clone()).await.0, 200, "another token has its own rate");

    // The Secret rotated: the new token is taken (its place keeps its rate,
    // long refilled by then), the old one refused, no restart.
    let rotated = "token-a-second";
    std::fs::write(&a_file, rotated).unwrap();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(post(addr, Some(a), body.clone()).await.0, 401, "the old token after the rotation");
    assert_eq!(post(addr, Some(rotated), body.clone()).await.0, 200, "the rotated token");
    let text = reqwest::get(format!("http://{addr}/metrics")).await.unwrap().text().await.unwrap();
    assert!(text.contains("apex_query_token_reloads_total{outcome=\"ok\"} 1"), "{text}");
}

/// The command itself: refuses to start open, and answers a token from its
/// environment on serve.listen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_serve_command_will_not_start_open_and_answers_a_token_from_its_environment() {
    let apex = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_apex-ingest"));
        c.arg("serve").arg("--data-dir").arg(demo_dir()).env("APEX_METRICS_LISTEN", "");
        c
    };
    let out = apex().output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("serve.tokens names no token"), "{out:?}");

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut child = apex()
        .env("APEX_SERVE_LISTEN", addr.to_string())
        .env("APEX_SERVE_TOKENS", "[\"env:QUERY_API_TEST_TOKEN\"]")
        .env("QUERY_API_TEST_TOKEN", "from-the-environment")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut ready = false;
    for _ in 0..100 {
        if reqwest::get(format!("http://{addr}/readyz")).await.is_ok_and(|r| r.status().is_success()) {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let answered = if ready {
        Some(
            post(
                addr,
                Some("from-the-environment"),
                json!({"question": "late shipments", "as_of": UNTIL}).to_string(),
            )
            .await,
        )
    } else {
        None
    };
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(ready, "serve did not become ready on {addr}");
    let (status, _, answer) = answered.unwrap();
    assert_eq!(status, 200, "{answer}");
}

/// Asks the same question before and after a batch is written through the
/// saga: the second ask is the cache's, the third is not and sees the
/// batch's records.
async fn a_cached_answer_never_hides_a_later_write(config: Config) {
    let stores = app::open_stores(&config).await.unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let orchestrator = app::direct_over(&config, &stores, Metrics::new(), &shutdown).unwrap();
    let seed = rand::random::<u64>();
    orchestrator.run_batch(&support::generated_batch(300, seed, 0.0)).await.unwrap();
    // The question is about a truck the second batch reports on.
    let second = support::generated_batch(300, seed.wrapping_add(1), 0.0);
    let (records, _) = apex_ingest::pipeline::parse_events(&second.events);
    let truck = records
        .iter()
        .find_map(|r| {
            let summary = r.summary();
            let at = summary.find(" Truck ")?;
            summary[at + 1..].split_whitespace().nth(1).map(|n| format!("truck {n}"))
        })
        .expect("the second batch reports on a truck");

    let dir = tempfile::tempdir().unwrap();
    let token = "cache-token";
    let tokens = vec![SecretSource::File(token_file(dir.path(), "t", token))];
    let (addr, metrics) = start_over(&config, ServeConfig { tokens, ..config.serve.clone() }).await;
    let body = json!({"question": format!("everything about {truck}"), "k": 1000}).to_string();
    let (status, headers, first) = post(addr, Some(token), body.clone()).await;
    assert_eq!((status, headers.get("x-apex-cache").unwrap().to_str().unwrap()), (200, "miss"), "{first}");
    let (_, headers, again) = post(addr, Some(token), body.clone()).await;
    assert_eq!(headers.get("x-apex-cache").unwrap(), "hit");
    assert_eq!(again, first);

    // The second batch, written through the saga: the watermark moves.
    orchestrator.run_batch(&second).await.unwrap();
    let (_, headers, after) = post(addr, Some(token), body).await;
    assert_eq!(headers.get("x-apex-cache").unwrap(), "miss", "an answer cached before the write");
    let (before, now): (BTreeSet<String>, BTreeSet<String>) =
        (record_ids(&first).into_iter().collect(), record_ids(&after).into_iter().collect());
    assert!(
        now.is_superset(&before) && now.len() > before.len(),
        "{} then {} records",
        before.len(),
        now.len()
    );
    let text = metrics.render();
    let cache = support::metric_series(&text, "apex_query_cache_total");
    assert!(
        cache.contains(&("{outcome=\"hit\"}".into(), 1)) && cache.contains(&("{outcome=\"miss\"}".into(), 2)),
        "{cache:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_in_process_cache_never_hides_a_later_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.stores.data_dir = dir.path().to_path_buf();
    a_cached_answer_never_hides_a_later_write(config).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_cache_over_postgres_never_hides_a_later_write() {
    support::redis_url();
    let mut config = support::postgres_only_config("apex_cache_test").await;
    config.stores.cache = apex_ingest::config::CacheKind::Redis;
    config.stores.redis_prefix = support::unique("query-cache");
    a_cached_answer_never_hides_a_later_write(config).await;
}

/// A client that accepts NDJSON gets a line per store call as it returns
/// (its route and the records it read), then the answer the plain API gives;
/// a question it cannot read is still a 400, before any line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streaming_client_gets_each_store_calls_records_then_the_answer() {
    let dir = tempfile::tempdir().unwrap();
    let token = "stream-token";
    let settings = answering(dir.path(), token);
    let (addr, _metrics) = start(settings).await;
    let streamed = |body: Value| {
        reqwest::Client::new()
            .post(format!("http://{addr}/v1/query"))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .header("accept", "application/x-ndjson")
            .body(body.to_string())
            .send()
    };
    let question = json!({"question": "freight invoice amount due", "as_of": UNTIL, "k": 5});
    let response = streamed(question.clone()).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    let text = response.text().await.unwrap();
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let (last, partials) = lines.split_last().unwrap();
    let retrievers: BTreeSet<&str> =
        partials.iter().map(|p| p["partial"]["route"]["retriever"].as_str().unwrap()).collect();
    assert_eq!(retrievers, ["lexical", "records", "vector"].into(), "{text}");
    let read: BTreeSet<String> = partials.iter().flat_map(|p| record_ids(&p["partial"])).collect();
    let answer = &last["answer"];
    assert_eq!(record_ids(answer).len(), 5, "{last}");
    assert!(record_ids(answer).iter().all(|id| read.contains(id)), "every hit was in a partial line");
    let (_, _, plain) = post(addr, Some(token), question.to_string()).await;
    assert_eq!(record_ids(answer), record_ids(&plain));

    let unreadable = streamed(json!({"question": "harsh braking near Atlantis"})).await.unwrap();
    assert_eq!(unreadable.status(), 400);
    assert!(unreadable.text().await.unwrap().contains("unknown place"));
}

/// The records store as the demo wrote it, but a full-text read never
/// returns (a store gone slow): it says when that read is given up.
struct StuckWords {
    inner: std::sync::Arc<dyn RecordReads>,
    stuck: Stuck,
}

/// Says when a full-text read got stuck, and when it was given up.
#[derive(Clone, Default)]
struct Stuck {
    reached: std::sync::Arc<tokio::sync::Notify>,
    given_up: std::sync::Arc<tokio::sync::Notify>,
}

/// Wakes its waiter when the read that holds it is dropped.
struct OnDrop(std::sync::Arc<tokio::sync::Notify>);

impl Drop for OnDrop {
    fn drop(&mut self) {
        self.0.notify_one();
    }
}

#[async_trait::async_trait]
impl RecordReads for StuckWords {
    async fn record_ids_of_kinds(
        &self,
        kinds: &[String],
        among: Option<&[RecordId]>,
    ) -> Result<Vec<RecordId>, StoreError> {
        self.inner.record_ids_of_kinds(kinds, among).await
    }
    async fn record_ids_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<RecordId>, StoreError> {
        self.inner.record_ids_between(from, to).await
    }
    async fn find_records(&self, filter: &RecordFilter) -> Result<Vec<StoredRecord>, StoreError> {
        if !filter.words.is_empty() {
            let _held = OnDrop(self.stuck.given_up.clone());
            self.stuck.reached.notify_one();
            std::future::pending::<()>().await;
        }
        self.inner.find_records(filter).await
    }
    fn statement(&self, filter: &RecordFilter) -> String {
        self.inner.statement(filter)
    }
    async fn watermark(&self) -> Result<i64, StoreError> {
        self.inner.watermark().await
    }
}

/// The API over the demo's stores with the full-text reads stuck.
async fn start_stuck(settings: ServeConfig) -> (SocketAddr, std::sync::Arc<Metrics>, Stuck) {
    let config = config();
    let demo = stores(&config).await;
    let signals = Stuck::default();
    let stuck = QueryStores {
        records: std::sync::Arc::new(StuckWords { inner: demo.records.clone(), stuck: signals.clone() }),
        ..demo
    };
    let metrics = Metrics::new();
    let api =
        QueryApi::start(&settings, stuck, app::build_answer_cache(&config).await.unwrap(), metrics.clone())
            .unwrap();
    let listener = api::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(api::serve(api, listener, std::future::pending()));
    (addr, metrics, signals)
}

/// With serve.max_in_flight questions being answered, one more is refused at
/// once (503, Retry-After, counted overloaded) instead of waiting behind
/// them; once the stuck one is given up (its timeout), its place is free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_question_beyond_max_in_flight_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let token = "busy-token";
    let settings = ServeConfig {
        max_in_flight: 1,
        timeout: Duration::from_secs(2),
        cache_ttl: Duration::ZERO,
        ..answering(dir.path(), token)
    };
    let (addr, metrics, signals) = start_stuck(settings).await;
    // By meaning: its full-text read sticks, holding the only place.
    let stuck =
        tokio::spawn(post(addr, Some(token), json!({"question": "freight invoice amount due"}).to_string()));
    tokio::time::timeout(Duration::from_secs(10), signals.reached.notified())
        .await
        .expect("the read got stuck");
    // About a PRO reads no full text: it would be answered, but has no place.
    let other = json!({"question": "everything about PRO 12345678", "as_of": UNTIL}).to_string();
    let (status, headers, body) = post(addr, Some(token), other.clone()).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(headers["retry-after"], "1");
    assert!(body["error"].as_str().unwrap().contains("serve.max_in_flight (1)"), "{body}");
    let (status, _, body) = stuck.await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body["error"].as_str().unwrap().contains("serve.timeout"), "{body}");
    tokio::time::timeout(Duration::from_secs(5), signals.given_up.notified())
        .await
        .expect("the stuck read was dropped");
    let (status, _, body) = post(addr, Some(token), other).await;
    assert_eq!(status, 200, "the place is free again: {body}");
    let text = metrics.render();
    let count = |outcome: &str| questions(&text, outcome);
    assert_eq!((count("overloaded"), count("timed_out"), count("answered")), (1, 1, 1), "{text}");
}

/// A streaming client that goes away before the answer cancels the store
/// call still running (the full-text read, stuck here) and is counted
/// abandoned, not answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streaming_client_that_goes_away_cancels_the_store_calls() {
    let dir = tempfile::tempdir().unwrap();
    let token = "gone-token";
    let settings = ServeConfig { timeout: Duration::from_secs(600), ..answering(dir.path(), token) };
    let (addr, metrics, signals) = start_stuck(settings).await;

    let mut response = reqwest::Client::new()
        .post(format!("http://{addr}/v1/query"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("accept", "application/x-ndjson")
        .body(json!({"question": "freight invoice amount due", "as_of": UNTIL, "k": 5}).to_string())
        .send()
        .await
        .unwrap();
    // The vectors' lines arrive while the full-text read is stuck.
    let mut first = Vec::new();
    while !first.contains(&b'\n') {
        first.extend_from_slice(&response.chunk().await.unwrap().expect("a partial line before the answer"));
    }
    let line: Value = serde_json::from_slice(first.split(|b| *b == b'\n').next().unwrap()).unwrap();
    assert!(line["partial"]["route"]["retriever"].is_string(), "{line}");
    drop(response);
    tokio::time::timeout(Duration::from_secs(10), signals.given_up.notified())
        .await
        .expect("the stuck full-text read was not cancelled within 10 s of the client going away");
    let text = metrics.render();
    let count = |outcome: &str| questions(&text, outcome);
    assert_eq!((count("abandoned"), count("answered")), (1, 0), "{text}");
}
