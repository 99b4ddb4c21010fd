//! HubSpot: a fake CRM search (POST /crm/v3/objects/{object}/search) with the
//! documented limits: 200 per request, paging past 10,000 results refused;
//! and its OAuth token endpoint (POST /oauth/v1/token, the client id and
//! secret in the form) for a public app's short-lived access tokens.

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
/// The public OAuth app of the fake: its client, and its refresh token.
const APP_CLIENT_ID: &str = "app-client-id";
const APP_CLIENT_SECRET: &str = "app-client-secret";
const APP_REFRESH_TOKEN: &str = "app-refresh-token";
/// HubSpot's search cap: no page may reach past this many results of one query.
const SEARCH_CAP: usize = 10_000;

#[derive(Default)]
struct Crm {
    /// Object type → id → (modified, ms since the epoch; properties).
    objects: BTreeMap<String, BTreeMap<u64, (i64, Value)>>,
    requests: usize,
    /// Requests after this many answer 503 (the provider goes away mid-window).
    fail_after: Option<usize>,
    /// Set: searches take only the OAuth app's access token, valid until then.
    app_access: Option<Option<(String, std::time::Instant)>>,
    /// How long the app's access tokens live, and how many were granted.
    access_life: Duration,
    refreshes: usize,
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
    let mut crm = crm.lock().unwrap();
    let token = match &crm.app_access {
        None => Some(HUBSPOT_TOKEN),
        Some(access) => {
            access.as_ref().filter(|(_, until)| std::time::Instant::now() < *until).map(|(t, _)| t.as_str())
        }
    };
    if token.is_none_or(|t| bearer != Some(&format!("Bearer {t}"))) {
        return hubspot_error(StatusCode::UNAUTHORIZED, "authentication credentials not found");
    }
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

/// HubSpot's token endpoint for the app: a new access token for the refresh
/// token, the same refresh token back; errors as HubSpot words them (`status`).
async fn hubspot_token(
    State(crm): State<SharedCrm>,
    axum::Form(form): axum::Form<BTreeMap<String, String>>,
) -> Response {
    let field = |k: &str| form.get(k).map(String::as_str);
    if field("client_id") != Some(APP_CLIENT_ID) || field("client_secret") != Some(APP_CLIENT_SECRET) {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"status": "BAD_CLIENT_ID", "message": "missing or unknown client id"})),
        )
            .into_response();
    }
    if field("grant_type") != Some("refresh_token") || field("refresh_token") != Some(APP_REFRESH_TOKEN) {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"status": "BAD_REFRESH_TOKEN", "message": "missing or unknown refresh token"})),
        )
            .into_response();
    }
    let mut crm = crm.lock().unwrap();
    crm.refreshes += 1;
    let token = format!("app-access-{}", crm.refreshes);
    crm.app_access = Some(Some((token.clone(), std::time::Instant::now() + crm.access_life)));
    Json(json!({"token_type": "bearer", "access_token": token, "refresh_token": APP_REFRESH_TOKEN,
                "expires_in": crm.access_life.as_secs()}))
    .into_response()
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
            .route("/oauth/v1/token", axum::routing::post(hubspot_token))
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
        let variables = |name: &str| {
            match name {
                "TEST_HUBSPOT_TOKEN" => Some(HUBSPOT_TOKEN),
                "TEST_HUBSPOT_CLIENT_ID" => Some(APP_CLIENT_ID),
                "TEST_HUBSPOT_CLIENT_SECRET" => Some(APP_CLIENT_SECRET),
                "TEST_HUBSPOT_REFRESH_TOKEN" => Some(APP_REFRESH_TOKEN),
                _ => None,
            }
            .map(str::to_owned)
        };
        let provider: Arc<dyn Provider> =
            Arc::new(Hubspot::with_credentials(&self.poll, variables, Some(self.cursors.clone())).unwrap());
        poller_of(provider, self.cursors.clone(), &self.brokers)
    }

    /// The poller authenticates as the fake's public OAuth app, whose access
    /// tokens live `life` (HubSpot's: 30 minutes).
    fn as_oauth_app(&mut self, life: Duration) {
        let mut crm = self.crm.lock().unwrap();
        crm.app_access = Some(None);
        crm.access_life = life;
        self.poll.hubspot.token_env = String::new();
        self.poll.hubspot.client_id_env = "TEST_HUBSPOT_CLIENT_ID".into();
        self.poll.hubspot.client_secret_env = "TEST_HUBSPOT_CLIENT_SECRET".into();
        self.poll.hubspot.refresh_token_env = "TEST_HUBSPOT_REFRESH_TOKEN".into();
        self.poll.hubspot.token_url = format!("{}/oauth/v1/token", self.poll.hubspot.url);
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

    /// An edit at HubSpot now, kept clear (by a few ms) of the instant the
    /// last window ended and of the next one's start: windows meet at an
    /// instant both include, where an edit is read twice (harmlessly).
    async fn edit_now(&self, object: &str, id: u64, properties: Value) {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let now = chrono::Utc::now().timestamp_millis();
        self.crm.lock().unwrap().objects.get_mut(object).unwrap().insert(id, (now, properties));
        tokio::time::sleep(Duration::from_millis(5)).await;
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

/// A public OAuth app: the access token is refreshed before it expires and
/// after a 401 (a token revoked early), with the client id and secret in the
/// form as HubSpot takes them; the refresh token HubSpot answers is kept in
/// the store; a wrong client secret fails the poll by name, never printing it.
#[tokio::test]
async fn hubspot_through_an_oauth_app_refreshes_before_expiry_and_after_a_401() {
    let mut world = CrmWorld::new(450).await;
    world.as_oauth_app(Duration::from_secs(6));
    let poller = world.poller();
    let first = poller.poll_once().await.unwrap();
    assert_eq!(first.upserts, 455);
    assert_eq!(world.crm.lock().unwrap().refreshes, 1, "one token for the first poll");
    let stored = world.cursors.poll_cursor("crm.oauth-refresh-token").await.unwrap().map(|(t, _)| t);
    assert_eq!(stored.as_deref(), Some(APP_REFRESH_TOKEN), "the refresh token HubSpot answered is kept");

    // Past half its life (the server still takes it) the token is refreshed first.
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    world.edit_now("contacts", 3, json!({"email": "x@c.example"})).await;
    assert_eq!(poller.poll_once().await.unwrap().upserts, 1);
    assert_eq!(world.crm.lock().unwrap().refreshes, 2, "refreshed before expiry");

    // Revoked early: the 401 refreshes once and the request goes through.
    world.crm.lock().unwrap().app_access = Some(None);
    world.edit_now("deals", 9, json!({"dealname": "Lane 9"})).await;
    assert_eq!(poller.poll_once().await.unwrap().upserts, 1);
    assert_eq!(world.crm.lock().unwrap().refreshes, 3, "refreshed after the 401");
    let (latest, _) = world.topic_state();
    assert_eq!(latest, world.state());

    // A wrong client secret: the poll fails naming the token endpoint and HubSpot's status.
    let mut wrong = CrmWorld::new(1).await;
    wrong.as_oauth_app(Duration::from_secs(1800));
    wrong.poll.hubspot.client_secret_env = "TEST_HUBSPOT_CLIENT_ID".into();
    wrong.poll.max_attempts = 1;
    let e = wrong.poller().poll_once().await.unwrap_err().to_string();
    assert!(e.contains("/oauth/v1/token") && e.contains("BAD_CLIENT_ID"), "{e}");
    assert!(!e.contains(APP_CLIENT_SECRET) && !e.contains(APP_REFRESH_TOKEN), "{e}");
}

/// A credential from a mounted Secret: `token_env = "file:/path"` is read from
/// the file by the pollers `run` starts (`poll::configured`).
#[tokio::test]
async fn hubspot_takes_its_token_from_a_file_as_a_mounted_secret_holds_it() {
    let mut world = CrmWorld::new(5).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, format!("{HUBSPOT_TOKEN}\n")).unwrap();
    world.poll.hubspot.token_env = format!("file:{}", file.display());
    let config = apex_ingest::config::Config { poll: world.poll.clone(), ..Default::default() };
    let providers = apex_ingest::poll::configured(&config, world.cursors.clone()).unwrap();
    assert_eq!(providers.len(), 1, "only HubSpot is on");
    let poller = poller_of(providers[0].clone(), world.cursors.clone(), &world.brokers);
    assert_eq!(poller.poll_once().await.unwrap().upserts, 10);

    std::fs::remove_file(&file).unwrap();
    let e = apex_ingest::poll::configured(&config, world.cursors.clone())
        .err()
        .expect("a missing file was accepted");
    assert!(e.to_string().contains(&file.display().to_string()), "{e}");
}
