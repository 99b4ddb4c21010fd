//! QuickBooks: a fake CDC (at most 1,000 objects an answer, whatever the window
//! holds) and query endpoint (`SELECT * FROM E WHERE … ORDERBY Id MAXRESULTS n`).

use apex_ingest::config::PollConfig;
use apex_ingest::model::{Format, RecordId};
use apex_ingest::poll::Provider;
use apex_ingest::poll::quickbooks::Quickbooks;
use apex_ingest::query::Retrieval;
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
        let provider: Arc<dyn Provider> = Arc::new(Quickbooks::with_credentials(poll, token, None).unwrap());
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

    // Asked, the memory answers its current state: a deleted invoice's mark
    // ("QuickBooks Invoice 1499 deleted") does not come back; live ones do.
    for retrieval in [Retrieval::Lexical, Retrieval::Hybrid] {
        let hits = asked(dir.path(), "QuickBooks Invoice 1499 deleted", retrieval).await;
        assert!(hits.iter().any(|(_, summary)| summary.starts_with("QuickBooks Invoice")), "{retrieval:?}");
        let gone: Vec<_> = hits.iter().filter(|(id, _)| deleted.iter().any(|d| d.as_str() == id)).collect();
        assert!(gone.is_empty(), "{retrieval:?}: {gone:?}");
    }
}
