//! What each store's reads keep true on their own: the full-text index
//! follows every write; the graph finds an entity's neighbourhood.

use apex_ingest::app;
use apex_ingest::config::Config;
use apex_ingest::query::{self, QueryStores, Question};
use apex_ingest::store::RecordFilter;
use chrono::{DateTime, Duration, Utc};

use crate::support;

/// The full-text index follows every write of a record: found by its words
/// once written, by its new words (and not its old) once rewritten by a later
/// offset, and by none once removed.
async fn the_words_follow_every_write(mut config: Config) {
    let dir = tempfile::tempdir().unwrap();
    config.stores.data_dir = dir.path().to_path_buf();
    let stores = app::open_stores(&config).await.unwrap();
    let records = &stores.relational;
    let (mut rows, _) = support::processed(&support::generated_batch(20, 2931, 0.0)).await;
    rows[0].summary = "quokka sighting at the yard".into();
    let find = |word: &str| RecordFilter { words: vec![word.into()], limit: 10, ..RecordFilter::default() };
    let found = |rows: Vec<apex_ingest::store::StoredRecord>| {
        rows.into_iter().map(|r| r.id.to_string()).collect::<Vec<_>>()
    };
    let one = vec![rows[0].record.id.to_string()];
    records.upsert_batch(&rows.iter().collect::<Vec<_>>()).await.unwrap();
    assert_eq!(found(records.find_records(&find("quokka")).await.unwrap()), one);
    // Stemmed alike by both stores: "sightings" finds "sighting".
    assert_eq!(found(records.find_records(&find("sightings")).await.unwrap()), one);

    let mut rewritten = rows[0].clone();
    rewritten.summary = "wombat crossing at the yard".into();
    rewritten.record.origin.offset += 1;
    records.upsert_batch(&[&rewritten]).await.unwrap();
    assert!(records.find_records(&find("quokka")).await.unwrap().is_empty());
    assert_eq!(found(records.find_records(&find("wombat")).await.unwrap()), one);

    records.remove_records(&[rewritten.record.id.clone()]).await.unwrap();
    assert!(records.find_records(&find("wombat")).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_words_follow_every_write() {
    the_words_follow_every_write(support::config()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_words_follow_every_write() {
    the_words_follow_every_write(support::postgres_only_config("apex_words_test").await).await;
}

/// Reads of the records table waiting on a lock, in this database: asked
/// outside the lock's transaction, as a transaction sees one snapshot of
/// pg_stat_activity.
async fn waiting(watcher: &mut sqlx::PgConnection) -> i64 {
    let sql = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
               AND wait_event_type = 'Lock' AND query LIKE 'SELECT id, format%'";
    sqlx::query_scalar(sql).fetch_one(watcher).await.unwrap()
}

/// A question's read dropped while PostgreSQL runs it (a client gone, a
/// workflow cancelled): the statement ends on the server too. Held on a
/// lock here, it would otherwise wait there as long as the lock is held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_postgres_read_is_cancelled_on_the_server() {
    use sqlx::{Connection, Executor};
    let config = support::postgres_only_config("apex_read_cancel_test").await;
    let stores = app::open_stores(&config).await.unwrap();
    let mut locker = sqlx::PgConnection::connect(&config.postgres.url).await.unwrap();
    locker.execute("BEGIN; LOCK TABLE records IN ACCESS EXCLUSIVE MODE").await.unwrap();
    let mut watcher = sqlx::PgConnection::connect(&config.postgres.url).await.unwrap();
    let records = stores.relational.clone();
    let read =
        tokio::spawn(
            async move { records.find_records(&RecordFilter { limit: 5, ..Default::default() }).await },
        );
    let started = std::time::Instant::now();
    while waiting(&mut watcher).await == 0 {
        assert!(!read.is_finished(), "the read ended without waiting on the lock: {:?}", read.await);
        assert!(started.elapsed() < std::time::Duration::from_secs(30), "the read never waited on the lock");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    read.abort();
    let dropped = std::time::Instant::now();
    while waiting(&mut watcher).await > 0 {
        assert!(
            dropped.elapsed() < std::time::Duration::from_secs(10),
            "the dropped read still runs on the server 10 s later"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    locker.execute("ROLLBACK").await.unwrap();
    // The pool still answers.
    let after = stores.relational.find_records(&RecordFilter { limit: 5, ..Default::default() }).await;
    assert!(after.is_ok(), "{after:?}");
}

/// A relay: driver D drove truck A, then truck B; another driver drove B
/// after. Asked about A, the graph finds D's event on B too, two hops away
/// through D (no column of that record names A), and not the other
/// driver's, three hops away; the question's window is cut in the graph's
/// own statement.
async fn the_graph_finds_a_vehicles_neighbourhood(mut config: Config) {
    use apex_ingest::model::{Format, Origin, RawEvent};
    let dir = tempfile::tempdir().unwrap();
    config.stores.data_dir = dir.path().to_path_buf();
    let stores = app::open_stores(&config).await.unwrap();
    let tag = format!("{:09}", rand::random::<u32>() % 1_000_000_000);
    let (a, b, relay) = (format!("7{tag}1"), format!("7{tag}2"), format!("relay-{tag}"));
    let t0: DateTime<Utc> = "2026-11-01T08:00:00Z".parse().unwrap();
    let event = |n: i64, kind: &str, vehicle: &str, driver: &str| {
        let at = (t0 + Duration::hours(n)).to_rfc3339();
        let data = serde_json::json!({"vehicle": {"id": vehicle}, "driver": {"id": driver, "name": "Relay Driver"},
            "previousStatus": "offDuty", "currentStatus": "driving", "changedAtTime": at,
            "behaviorLabel": "HarshBrake", "severity": "low", "time": at});
        let body = serde_json::json!({"eventId": format!("{tag}-{n}"), "eventTime": at, "eventType": kind, "data": data});
        let origin = Origin { topic: "samsara".into(), partition: 0, offset: n };
        RawEvent::new(Format::Samsara, origin, None, body.to_string().into_bytes())
    };
    let events = vec![
        event(0, "SafetyEvent", &a, &relay),
        event(1, "HosStatusChange", &b, &relay),
        event(2, "SafetyEvent", &b, &format!("other-{tag}")),
    ];
    let (rows, dead) =
        support::processed(&apex_ingest::batch::Batch::new(events, apex_ingest::batch::CloseReason::Size))
            .await;
    assert!(dead.is_empty(), "{dead:?}");
    let mut rows: Vec<_> = rows.iter().collect();
    rows.sort_by_key(|r| r.record.origin.offset);
    stores.graph.as_ref().unwrap().upsert_batch(&rows).await.unwrap();
    stores.relational.upsert_batch(&rows).await.unwrap();
    let ids: Vec<String> = rows.iter().map(|r| r.record.id.to_string()).collect();

    let stores = QueryStores::over(&stores, app::build_embedder(&config).unwrap());
    let ask = |as_of: Option<DateTime<Utc>>| {
        let q = Question {
            text: format!("everything about truck {a}"),
            as_of,
            ingested_before: None,
            k: 10,
            filters: Default::default(),
            retrieval: Default::default(),
        };
        let stores = stores.clone();
        async move { query::ask(&stores, &q).await.unwrap() }
    };
    let answer = ask(None).await;
    let found: Vec<String> = answer.hits.iter().map(|h| h.citation.record_id.clone()).collect();
    assert_eq!(found, ids[..2], "{:#?}", answer.hits);
    let (own, relayed) = (&answer.hits[0], &answer.hits[1]);
    assert!(["exact", "graph"].iter().all(|s| own.scores.contains_key(*s)), "{:?}", own.scores);
    assert!(
        relayed.scores.contains_key("graph") && !relayed.scores.contains_key("exact"),
        "{:?}",
        relayed.scores
    );
    assert!(own.scores["fused"] > relayed.scores["fused"]);
    assert!(relayed.note.as_deref().is_some_and(|n| n.contains("2 hops")), "{:?}", relayed.note);
    let graph = answer.routes.iter().find(|r| r.retriever == "graph").unwrap();
    assert_eq!(graph.rows, 2);

    // Before the relay, only A's own event is in the window, in the graph's statement too.
    let before = ask(Some(t0 + Duration::minutes(30))).await;
    let graph = before.routes.iter().find(|r| r.retriever == "graph").unwrap();
    assert_eq!(graph.rows, 1);
    assert_eq!(before.hits.iter().map(|h| h.citation.record_id.clone()).collect::<Vec<_>>(), ids[..1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_graph_finds_a_vehicles_neighbourhood() {
    the_graph_finds_a_vehicles_neighbourhood(support::config()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn neo4j_finds_a_vehicles_neighbourhood() {
    let mut config = support::config();
    config.neo4j = support::neo4j();
    config.stores.graph = apex_ingest::config::GraphKind::Neo4j;
    the_graph_finds_a_vehicles_neighbourhood(config).await;
}
