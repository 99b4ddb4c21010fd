//! Samsara: a fake vehicle stats feed (GET /fleet/vehicles/stats/feed).

use apex_ingest::config::PollConfig;
use apex_ingest::kafka::read_back::read_to_end;
use apex_ingest::model::{Format, RecordId};
use apex_ingest::poll::Provider;
use apex_ingest::poll::samsara_feed::{CAUGHT_UP_WAIT, SamsaraFeed};
use apex_ingest::store::PollCursors;
use apex_ingest::store::sqlite_records::SqliteRecordStore;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::kafka_brokers;
use crate::world::*;

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

    // Members parse the events as Samsara webhooks: 16 records, in every
    // store (the graph keeps the pings among them as vehicle state).
    let messages =
        read_to_end(&crate::support::kafka_at(&brokers), &topic, Format::Samsara, Duration::from_secs(30))
            .unwrap();
    let want: std::collections::BTreeSet<RecordId> =
        messages.iter().map(|m| RecordId::derive(Format::Samsara, m.key.as_deref().unwrap())).collect();
    assert_eq!((messages.len(), want.len()), (16, 16));
    let landed =
        member_reads(&brokers, &topic, |k| k.samsara_topic = topic.clone(), "none", dir.path()).await;
    for (store, ids) in &landed.ids {
        let want = match *store {
            "graph" => want.difference(&landed.as_state).cloned().collect(),
            _ => want.clone(),
        };
        assert_eq!(ids, &want, "{store}");
    }
    assert!(!landed.as_state.is_empty() && landed.stale_states.is_empty(), "{:?}", landed.stale_states);
}
