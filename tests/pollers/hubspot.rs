//! HubSpot: a fake CRM search (POST /crm/v3/objects/{object}/search) with the
//! documented limits: 200 per request, paging past 10,000 results refused.

use apex_ingest::config::PollConfig;
use apex_ingest::model::{Format, RecordId};
use apex_ingest::poll::hubspot::Hubspot;
use apex_ingest::poll::{PollError, Poller, Provider};
use apex_ingest::store::PollCursors;
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
