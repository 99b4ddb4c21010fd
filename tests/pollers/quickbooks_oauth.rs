//! QuickBooks through an OAuth app: a fake Intuit token endpoint that, as
//! Intuit does, answers each refresh with a new refresh token, and retires the
//! old one once the new access token is used; access tokens that expire. The
//! poller refreshes before expiry and after a 401, keeps the newest refresh
//! token in the relational store, and survives a SIGKILL at the worst moment:
//! while the first request with a new access token is in flight.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use apex_ingest::config::PollConfig;
use apex_ingest::poll::Provider;
use apex_ingest::poll::quickbooks::Quickbooks;
use apex_ingest::store::PollCursors;
use apex_ingest::store::sqlite_records::SqliteRecordStore;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use base64::Engine as _;
use serde_json::json;

use crate::support::{self, kafka_brokers};
use crate::world::*;

const CLIENT_ID: &str = "qb-client-id";
const CLIENT_SECRET: &str = "qb-client-secret-value";
const FIRST_REFRESH: &str = "refresh-0";

#[derive(Default)]
struct Intuit {
    /// Refresh tokens that work.
    refresh_valid: BTreeSet<String>,
    /// Access token → (the refresh token it was made from, when it expires).
    access: BTreeMap<String, (String, Instant)>,
    issued: u32,
    expires_in: u64,
    /// Refresh tokens presented, in order, and those refused.
    presented: Vec<String>,
    refused: Vec<String>,
    /// Access tokens of API requests, in order.
    api_calls: Vec<String>,
    /// The first request with this access token waits (the kill window).
    hold: Option<String>,
}

type SharedIntuit = Arc<Mutex<Intuit>>;

async fn token_endpoint(
    State(intuit): State<SharedIntuit>,
    headers: HeaderMap,
    Form(form): Form<BTreeMap<String, String>>,
) -> Response {
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"));
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(&format!("Basic {basic}")) {
        return (StatusCode::UNAUTHORIZED, Json(json!({"error": "invalid_client"}))).into_response();
    }
    let mut i = intuit.lock().unwrap();
    let presented = form.get("refresh_token").cloned().unwrap_or_default();
    i.presented.push(presented.clone());
    if form.get("grant_type").map(String::as_str) != Some("refresh_token")
        || !i.refresh_valid.contains(&presented)
    {
        i.refused.push(presented);
        return (StatusCode::BAD_REQUEST, Json(json!({"error": "invalid_grant"}))).into_response();
    }
    i.issued += 1;
    let (refresh, access) = (format!("refresh-{}", i.issued), format!("access-{}", i.issued));
    i.refresh_valid.insert(refresh.clone());
    let expires = Instant::now() + Duration::from_secs(i.expires_in);
    i.access.insert(access.clone(), (presented, expires));
    Json(json!({"access_token": access, "expires_in": i.expires_in, "refresh_token": refresh,
                "x_refresh_token_expires_in": 8_726_400, "token_type": "bearer"}))
    .into_response()
}

/// CDC and query answers: one invoice from the query read, nothing changed since.
async fn api(State(intuit): State<SharedIntuit>, headers: HeaderMap) -> Response {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_owned();
    let hold = {
        let mut i = intuit.lock().unwrap();
        i.api_calls.push(bearer.clone());
        let Some((made_from, expires)) = i.access.get(&bearer).cloned() else {
            return (StatusCode::UNAUTHORIZED, Json(json!({"Fault": {"type": "AUTHENTICATION"}})))
                .into_response();
        };
        if Instant::now() >= expires {
            return (StatusCode::UNAUTHORIZED, Json(json!({"Fault": {"type": "AUTHENTICATION"}})))
                .into_response();
        }
        // The pair is used: the refresh token it was made from stops working.
        i.refresh_valid.remove(&made_from);
        i.hold.as_deref() == Some(bearer.as_str())
            && i.api_calls.iter().filter(|t| **t == bearer).count() == 1
    };
    if hold {
        tokio::time::sleep(Duration::from_secs(120)).await;
    }
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let invoice = json!({"Id": "1", "SyncToken": "0", "TotalAmt": 120.5,
                         "MetaData": {"CreateTime": now, "LastUpdatedTime": now}});
    Json(json!({"QueryResponse": {"Invoice": [invoice], "startPosition": 1, "maxResults": 1},
                "CDCResponse": [{"QueryResponse": [{"Invoice": []}]}], "time": now}))
    .into_response()
}

async fn fake_intuit(expires_in: u64) -> (SharedIntuit, String) {
    let intuit: SharedIntuit = Arc::new(Mutex::new(Intuit {
        refresh_valid: [FIRST_REFRESH.to_owned()].into(),
        expires_in,
        ..Intuit::default()
    }));
    let app = axum::Router::new()
        .route("/oauth2/v1/tokens/bearer", axum::routing::post(token_endpoint))
        .route("/v3/company/{realm}/cdc", axum::routing::get(api))
        .route("/v3/company/{realm}/query", axum::routing::get(api))
        .with_state(intuit.clone());
    (intuit, format!("http://{}", serve(app).await))
}

fn oauth_poll(url: &str, topic: &str) -> PollConfig {
    let mut poll = PollConfig { first_backoff: Duration::from_millis(50), ..PollConfig::default() };
    let q = &mut poll.quickbooks;
    q.url = url.to_owned();
    q.token_url = format!("{url}/oauth2/v1/tokens/bearer");
    q.realm_id = "9341453".into();
    q.entities = vec!["Invoice".into()];
    q.requests_per_minute = 500;
    q.topic = topic.to_owned();
    q.client_id_env = "TEST_QB_CLIENT_ID".into();
    q.client_secret_env = "TEST_QB_CLIENT_SECRET".into();
    q.refresh_token_env = "TEST_QB_REFRESH_TOKEN".into();
    poll
}

fn credential(name: &str) -> Option<String> {
    match name {
        "TEST_QB_CLIENT_ID" => Some(CLIENT_ID.into()),
        "TEST_QB_CLIENT_SECRET" => Some(CLIENT_SECRET.into()),
        "TEST_QB_REFRESH_TOKEN" => Some(FIRST_REFRESH.into()),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_token_is_refreshed_before_it_expires_and_after_a_401_and_the_newest_refresh_token_is_kept()
 {
    let brokers = kafka_brokers();
    let topic = scratch_topic(&brokers, "poll.financial.v1.").await;
    let (intuit, url) = fake_intuit(2).await;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteRecordStore::open(&dir.path().join("cursors.db")).await.unwrap());
    let poll = oauth_poll(&url, &topic);
    let provider: Arc<dyn Provider> =
        Arc::new(Quickbooks::with_credentials(&poll, credential, Some(store.clone())).unwrap());
    let poller = poller_of(provider, store.clone(), &brokers);

    assert_eq!(poller.poll_once().await.unwrap().upserts, 1);
    let kept = || async { store.poll_cursor("financial.oauth-refresh-token").await.unwrap().map(|(t, _)| t) };
    assert_eq!(kept().await.as_deref(), Some("refresh-1"));
    // A 2-second token is refreshed at half its life, before a request could be refused.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    poller.poll_once().await.unwrap();
    assert_eq!(intuit.lock().unwrap().presented, [FIRST_REFRESH, "refresh-1"]);
    assert_eq!(kept().await.as_deref(), Some("refresh-2"));

    // Revoked early (a 401): refreshed once, and the request asked again.
    intuit.lock().unwrap().access.clear();
    poller.poll_once().await.unwrap();
    {
        let i = intuit.lock().unwrap();
        assert_eq!(i.presented, [FIRST_REFRESH, "refresh-1", "refresh-2"]);
        assert!(i.refused.is_empty(), "{:?}", i.refused);
    }
    assert_eq!(kept().await.as_deref(), Some("refresh-3"));

    // A wrong client secret: the poll fails naming the endpoint and the error, not the secret.
    let wrong = |name: &str| {
        if name == "TEST_QB_CLIENT_SECRET" { Some("not-the-secret".into()) } else { credential(name) }
    };
    let other = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteRecordStore::open(&other.path().join("cursors.db")).await.unwrap());
    let provider: Arc<dyn Provider> =
        Arc::new(Quickbooks::with_credentials(&poll, wrong, Some(store.clone())).unwrap());
    let e = poller_of(provider, store, &brokers).poll_once().await.unwrap_err().to_string();
    assert!(e.contains("tokens/bearer") && e.contains("invalid_client"), "{e}");
    assert!(!e.contains("not-the-secret") && !e.contains(FIRST_REFRESH), "{e}");
}

/// `apex-ingest run` with the QuickBooks poller on an OAuth app, polling into
/// embedded stores in `dir`, a member reading its topic.
fn run_process(dir: &std::path::Path, url: &str, topic: &str, group: &str) -> std::process::Child {
    let file = dir.join("apex.toml");
    let off = support::topics_off_except("financial_topic");
    let toml = format!(
        "[source]\nkind = \"kafka\"\n[stores]\ndata_dir = {data:?}\n[metrics]\nlisten = \"\"\n\
         [kafka]\ngroup_id = {group:?}\nfinancial_topic = {topic:?}\n{off}\
         [batch]\nmax_wait = \"300ms\"\n[poll]\ninterval = \"500ms\"\nfirst_backoff = \"50ms\"\n\
         [poll.quickbooks]\nurl = {url:?}\ntoken_url = \"{url}/oauth2/v1/tokens/bearer\"\nrealm_id = \"9341453\"\n\
         entities = [\"Invoice\"]\nrequests_per_minute = 500\ntopic = {topic:?}\n\
         client_id_env = \"TEST_QB_CLIENT_ID\"\nclient_secret_env = \"TEST_QB_CLIENT_SECRET\"\n\
         refresh_token_env = \"TEST_QB_REFRESH_TOKEN\"\n",
        data = dir.join("data").display().to_string(),
    );
    std::fs::write(&file, toml).unwrap();
    let mut envs: Vec<(&str, String)> =
        ["TEST_QB_CLIENT_ID", "TEST_QB_CLIENT_SECRET", "TEST_QB_REFRESH_TOKEN"]
            .map(|v| (v, credential(v).unwrap()))
            .into();
    envs.push(("RUST_LOG", "debug".to_owned()));
    support::spawn_run(&file, &envs, &dir.join("run.log"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_killed_while_its_new_access_token_is_first_used_restarts_with_the_refresh_token_that_works() {
    let brokers = kafka_brokers();
    let topic = scratch_topic(&brokers, "poll.financial.v1.").await;
    let (intuit, url) = fake_intuit(3600).await;
    intuit.lock().unwrap().hold = Some("access-1".into());
    let dir = tempfile::tempdir().unwrap();
    let group = support::unique("apex-qb-oauth");
    let log = || std::fs::read_to_string(dir.path().join("run.log")).unwrap_or_default();

    // SIGKILL while the first request with access-1 is held: refresh-0 is
    // already retired (the new pair was used), so only refresh-1 works now.
    let mut first = run_process(dir.path(), &url, &topic, &group);
    let started = Instant::now();
    while !intuit.lock().unwrap().api_calls.iter().any(|t| t == "access-1") {
        assert!(started.elapsed() < Duration::from_secs(30), "the poller never used its token: {}", log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(!intuit.lock().unwrap().refresh_valid.contains(FIRST_REFRESH));

    // Restarted with the same variables: the store's refresh-1, not the variable's refresh-0.
    let mut second = run_process(dir.path(), &url, &topic, &group);
    let started = Instant::now();
    loop {
        let (latest, _) = latest_per_key(&brokers, &topic);
        if latest.contains_key("Invoice:1") {
            break;
        }
        assert!(second.try_wait().unwrap().is_none(), "the second run exited: {}", log());
        assert!(started.elapsed() < Duration::from_secs(60), "nothing polled after the restart: {}", log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    second.kill().unwrap();
    second.wait().unwrap();
    let i = intuit.lock().unwrap();
    assert_eq!(i.presented, [FIRST_REFRESH, "refresh-1"], "{}", log());
    assert!(i.refused.is_empty(), "a refresh token was lost: {:?}", i.refused);
    let text = log();
    for secret in [CLIENT_SECRET, "refresh-1", "refresh-2", "access-2"] {
        assert!(!text.contains(secret), "{secret} in the run's log");
    }
}
