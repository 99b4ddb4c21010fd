//! The saga writer on the real stores: Neo4j, PostgreSQL (+ pgvector) and Redis
//! as `scripts/services up` starts them. Each test writes records no other test
//! has (its own generator seed) under its own Redis key prefix.

mod support;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use apex_ingest::metrics::Metrics;
use apex_ingest::model::RecordId;
use apex_ingest::pipeline::ProcessedRecord;
use apex_ingest::saga::SagaWriter;
use apex_ingest::saga::writer::SagaSettings;
use apex_ingest::store::memory_cache::MemoryCache;
use apex_ingest::store::neo4j::Neo4jStore;
use apex_ingest::store::postgres::PostgresStore;
use apex_ingest::store::{BatchStore, Stores};
use apex_ingest::verify::Expectations;
use support::{Flaky, generated_batch, held_by, mixed_batch, processed, real_stores_config, unique};

fn seed() -> u64 {
    rand::random()
}

/// Each store holds what it should of `rows`: the graph no node for a ping
/// (the graph policy keeps those as vehicle state).
async fn assert_everywhere(stores: &Stores, rows: &[ProcessedRecord]) {
    let ids: Vec<RecordId> = rows.iter().map(|r| r.record.id.clone()).collect();
    for s in stores.all() {
        let want: HashSet<RecordId> = held_by(s.name(), rows.iter().map(|r| &r.record)).into_iter().collect();
        assert_eq!(s.present(&ids).await.unwrap(), want, "{} does not hold the batch", s.name());
    }
}

async fn assert_nowhere(stores: &[Arc<dyn BatchStore>], ids: &[RecordId]) {
    for s in stores {
        assert!(s.present(ids).await.unwrap().is_empty(), "{} still holds records of the batch", s.name());
    }
}

/// The real stores under a fresh Redis prefix, and a saga writer over them.
async fn real_writer() -> (apex_ingest::config::Config, Stores, SagaWriter) {
    writer_of(real_stores_config(&unique("apex-test"))).await
}

async fn writer_of(config: apex_ingest::config::Config) -> (apex_ingest::config::Config, Stores, SagaWriter) {
    let stores = apex_ingest::app::open_stores(&config).await.unwrap();
    let writer = SagaWriter::new(&stores, Metrics::new(), SagaSettings::from(&config.saga));
    (config, stores, writer)
}

#[tokio::test]
async fn a_batch_written_twice_leaves_one_copy_everywhere() {
    let (config, stores, writer) = real_writer().await;
    let batch = mixed_batch(95, 5, seed(), 0.05);
    let (mut rows, mut dead) = processed(&batch).await;
    let ids: Vec<RecordId> = rows.iter().map(|r| r.record.id.clone()).collect();

    let first = writer.write(&batch.id, &rows, &dead).await.unwrap();
    assert!(!first.already_written);
    rows.reverse();
    dead.reverse();
    let second = writer.write(&batch.id, &rows, &dead).await.unwrap();
    assert!(second.already_written, "the Redis idempotency record answers the reordered batch");

    // Without the idempotency record (a fresh coordinator), every store upserts again.
    let mut forgetful = stores.clone();
    forgetful.coordinator = Arc::new(MemoryCache::new());
    let rewrite = SagaWriter::new(&forgetful, Metrics::new(), SagaSettings::from(&config.saga));
    assert!(!rewrite.write(&batch.id, &rows, &dead).await.unwrap().already_written);

    assert_everywhere(&stores, &rows).await;
    // One copy: PostgreSQL rows and Neo4j Event nodes for these ids number exactly the ids.
    let pg = apex_ingest::app::open_stores(&config).await.unwrap();
    let neo = Neo4jStore::connect(&config.neo4j).await.unwrap();
    let keys: Vec<String> = ids.iter().map(|i| i.as_str().to_owned()).collect();
    let events = neo
        .count("MATCH (e:Event) WHERE e.key IN $ids RETURN count(e) AS n", vec![("ids", keys.clone().into())])
        .await
        .unwrap();
    assert_eq!(events as usize, held_by("graph", rows.iter().map(|r| &r.record)).len());
    let vehicle = rows.iter().find_map(|r| r.record.subject().filter(|s| s.starts_with("vehicle:"))).unwrap();
    let vehicles = neo
        .count(
            "MATCH (v:Vehicle {key: $k}) RETURN count(v) AS n",
            vec![("k", vehicle["vehicle:".len()..].into())],
        )
        .await
        .unwrap();
    assert_eq!(vehicles, 1, "MERGE keeps one node per vehicle");
    let reported = neo
        .count(
            "MATCH (:Vehicle {key: $k})-[r:REPORTED]->(e:Event) WHERE e.key IN $ids RETURN count(r) AS n",
            vec![("k", vehicle["vehicle:".len()..].into()), ("ids", keys.into())],
        )
        .await
        .unwrap();
    // Its pings are its state, not events: an edge for each of its other events.
    let nodes = held_by("graph", rows.iter().map(|r| &r.record));
    let expected = rows
        .iter()
        .filter(|r| r.record.subject().as_deref() == Some(vehicle.as_str()) && nodes.contains(&r.record.id))
        .count();
    assert_eq!(reported as usize, expected, "one REPORTED edge per event of that vehicle");
    assert_eq!(pg.relational.present(&ids).await.unwrap().len(), ids.len());
}

#[tokio::test]
async fn pgvector_nearest_neighbour_of_a_record_is_the_record() {
    let (_, stores, writer) = real_writer().await;
    let batch = generated_batch(100, seed(), 0.0);
    let (rows, dead) = processed(&batch).await;
    writer.write(&batch.id, &rows, &dead).await.unwrap();
    // Telemetry summaries carry unique numbers (odometer, coordinates), so the
    // record's own vector is its strict nearest neighbour.
    for r in rows.iter().filter(|r| r.record.kind == "VehicleStats").take(5) {
        let hits =
            stores.vector.as_ref().unwrap().search(&r.embedding, 3, &Default::default()).await.unwrap();
        assert_eq!(hits[0].0, r.record.id, "{:?}", hits);
        assert!((hits[0].1 - 1.0).abs() < 1e-4);
    }
}

#[tokio::test]
async fn two_writers_racing_on_one_batch_write_it_once() {
    let config = real_stores_config(&unique("apex-test"));
    let stores = apex_ingest::app::open_stores(&config).await.unwrap();
    let (m1, m2) = (Metrics::new(), Metrics::new());
    // Two members with their own connections, sharing only the services.
    let other = apex_ingest::app::open_stores(&config).await.unwrap();
    let w1 = SagaWriter::new(&stores, m1.clone(), SagaSettings::from(&config.saga));
    let w2 = SagaWriter::new(&other, m2.clone(), SagaSettings::from(&config.saga));
    let batch = generated_batch(100, seed(), 0.0);
    let (rows, dead) = processed(&batch).await;
    let (a, b) = tokio::join!(w1.write(&batch.id, &rows, &dead), w2.write(&batch.id, &rows, &dead));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.batch_key, b.batch_key);
    assert!(a.already_written != b.already_written, "exactly one writer writes: {a:?} {b:?}");
    let written: u64 = [&m1, &m2].iter().map(|m| m.counter("apex_records_written_total", "graph")).sum();
    assert_eq!(written, rows.len() as u64, "the batch went to the graph once");
    assert_everywhere(&stores, &rows).await;
}

#[tokio::test]
async fn a_store_failing_after_the_others_is_compensated_then_lands_once() {
    let config = real_stores_config(&unique("apex-test"));
    let mut stores = apex_ingest::app::open_stores(&config).await.unwrap();
    let neo = Neo4jStore::connect(&config.neo4j).await.unwrap();
    let flaky = Arc::new(Flaky::new(neo));
    flaky.failing.store(true, Ordering::SeqCst);
    stores.graph = Some(flaky.clone());
    let metrics = Metrics::new();
    let writer = SagaWriter::new(&stores, metrics.clone(), SagaSettings::from(&config.saga));
    let batch = generated_batch(100, seed(), 0.0);
    let (rows, dead) = processed(&batch).await;
    let ids: Vec<RecordId> = rows.iter().map(|r| r.record.id.clone()).collect();
    // Generated events can repeat records earlier tests wrote to this database
    // (same truck, same time): those are not this batch's to remove.
    let before = stores.relational.present(&ids).await.unwrap();
    let added: Vec<RecordId> = ids.iter().filter(|id| !before.contains(*id)).cloned().collect();
    assert!(!added.is_empty(), "the batch adds records");

    let err = writer.write(&batch.id, &rows, &dead).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    // PostgreSQL and Redis took the batch; compensation removed what it added.
    assert_nowhere(&[stores.relational.clone(), stores.cache.clone().unwrap()], &added).await;
    assert_eq!(stores.relational.present(&ids).await.unwrap(), before, "earlier records stay");
    assert_eq!(metrics.counter("apex_compensations_total", "relational"), 1);
    assert_eq!(metrics.counter("apex_compensations_total", "cache"), 1);
    assert!(metrics.counter("apex_store_retries_total", "graph") >= 3);

    flaky.failing.store(false, Ordering::SeqCst);
    assert!(!writer.write(&batch.id, &rows, &dead).await.unwrap().already_written);
    assert_everywhere(&stores, &rows).await;
}

#[tokio::test]
async fn pings_the_policy_skips_have_no_embedding_in_postgres_and_verify_knows() {
    use apex_ingest::pipeline::embed::{EmbedPolicy, HashingEmbedder};
    use apex_ingest::pipeline::{parse_events, process_records};
    // Pings as Event nodes (the graph policy off): this is the embedding
    // policy's test, and other tests write the same fleet's vehicle state.
    let mut config = real_stores_config(&unique("apex-test"));
    config.graph.state_kinds.clear();
    let (config, stores, writer) = writer_of(config).await;
    let batch = mixed_batch(95, 5, seed(), 0.0);
    let pings = vec!["VehicleLocation".to_owned(), "VehicleStats".to_owned()];
    let (records, dead) = parse_events(&batch.events);
    let rows =
        process_records(&HashingEmbedder::new(384), &EmbedPolicy::except(&pings), records).await.unwrap();
    writer.write(&batch.id, &rows, &dead).await.unwrap();
    let (skipped, embedded): (Vec<_>, Vec<_>) = rows.iter().partition(|r| pings.contains(&r.record.kind));
    assert!(!skipped.is_empty() && !embedded.is_empty());

    let pool = sqlx::PgPool::connect(&config.postgres.url).await.unwrap();
    let ids: Vec<&str> = rows.iter().map(|r| r.record.id.as_str()).collect();
    let (with, without): (i64, i64) = sqlx::query_as(
        "SELECT count(embedding), count(*) - count(embedding) FROM records WHERE id = ANY($1)",
    )
    .bind(&ids)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((with as usize, without as usize), (embedded.len(), skipped.len()));
    // The record's own vector (or an identical one) comes first, and a search
    // never returns a record without a vector.
    let hits =
        stores.vector.as_ref().unwrap().search(&embedded[0].embedding, 5, &Default::default()).await.unwrap();
    assert!((hits[0].1 - 1.0).abs() < 1e-4, "{hits:?}");
    assert!(hits.iter().all(|(id, _)| skipped.iter().all(|r| r.record.id != *id)), "{hits:?}");
    let all_ids: Vec<RecordId> = rows.iter().map(|r| r.record.id.clone()).collect();
    let diff = apex_ingest::verify::check_ids(
        &stores,
        &all_ids,
        &Expectations { embed_skip: pings.clone(), ..Expectations::of(&config) },
    )
    .await
    .unwrap();
    assert!(diff.is_clean(), "{:?}", diff.missing);
    let index: Vec<String> = sqlx::query_scalar(
        "SELECT indexname FROM pg_indexes WHERE tablename = 'records' AND indexname LIKE 'records_embedding%'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let p = &config.postgres;
    let wanted = format!("records_embedding_hnsw_m{}_ef{}", p.hnsw_m, p.hnsw_ef_construction);
    assert_eq!(index, [wanted], "the index carries the configured parameters");
}

/// Every pooled PostgreSQL connection searches the HNSW index with the
/// configured candidate list (`postgres.hnsw_ef_search`), not pgvector's 40.
#[tokio::test]
async fn postgres_connections_search_with_the_configured_candidate_list() {
    let mut config = real_stores_config(&unique("apex-test"));
    config.postgres.hnsw_ef_search = 123;
    let options = PostgresStore::connect_options(&config.postgres).unwrap();
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(2).connect_with(options).await.unwrap();
    // Two connections held at once: the setting is each connection's own.
    let mut held = vec![pool.acquire().await.unwrap(), pool.acquire().await.unwrap()];
    for conn in &mut held {
        let (setting,): (String,) =
            sqlx::query_as("SHOW hnsw.ef_search").fetch_one(&mut **conn).await.unwrap();
        assert_eq!(setting, "123");
    }
}

/// A poller's cursor in PostgreSQL: absent before the first save, then the
/// last one saved, with the time it was saved.
#[tokio::test]
async fn a_poll_cursor_round_trips_through_postgres_and_the_last_save_wins() {
    let (_, stores, _) = real_writer().await;
    let source = unique("bank");
    assert_eq!(stores.relational.poll_cursor(&source).await.unwrap(), None);
    let before = chrono::Utc::now() - chrono::Duration::seconds(5);
    stores.relational.save_poll_cursor(&source, "cursor-1").await.unwrap();
    stores.relational.save_poll_cursor(&source, "cursor-2").await.unwrap();
    let (cursor, saved_at) = stores.relational.poll_cursor(&source).await.unwrap().unwrap();
    assert_eq!(cursor, "cursor-2");
    assert!(saved_at > before, "{saved_at}");
}

/// Two versions of one record (a polled transaction and its removal): the one
/// later in its partition wins in PostgreSQL whichever is written last, and a
/// batch holding both writes once, the later one.
#[tokio::test]
async fn the_later_version_of_a_record_wins_in_postgres_in_any_write_order() {
    let (_, stores, writer) = real_writer().await;
    let batch = generated_batch(1, seed(), 0.0);
    let (rows, _) = processed(&batch).await;
    let older = rows[0].clone();
    let mut newer = older.clone();
    newer.record.kind = unique("Newer");
    newer.record.origin.offset += 1;
    let newer_kind = [newer.record.kind.clone()];
    let id = older.record.id.clone();

    stores.relational.upsert_batch(&[&newer]).await.unwrap();
    stores.relational.upsert_batch(&[&older]).await.unwrap();
    assert_eq!(
        stores.relational.record_ids_of_kinds(&newer_kind, None).await.unwrap(),
        vec![id.clone()],
        "the older version, written last, replaced the newer one"
    );

    let mut newest = newer.clone();
    newest.record.kind = unique("Newest");
    newest.record.origin.offset += 1;
    let outcome =
        writer.write(&unique("both-versions"), &[newest.clone(), older.clone()], &[]).await.unwrap();
    assert!(!outcome.already_written);
    assert_eq!(
        stores.relational.record_ids_of_kinds(&[newest.record.kind.clone()], None).await.unwrap(),
        [id],
        "one batch with two versions of a record keeps the later one"
    );
}
