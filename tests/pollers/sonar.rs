//! SONAR: a fake /Credential/authenticate and /data/{index}/{qualifier}/{start}/{end}.

use apex_ingest::config::PollConfig;
use apex_ingest::model::{Format, RecordId};
use apex_ingest::poll::Provider;
use apex_ingest::poll::sonar::Sonar;
use apex_ingest::store::sqlite_records::SqliteRecordStore;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::kafka_brokers;
use crate::world::*;

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
