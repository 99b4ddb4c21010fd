//! The whole data path on the embedded stack (SQLite files, exact vector index,
//! in-process cache): reconciliation, idempotent rewrites, poison routing and
//! compensation when a store fails.

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use apex_ingest::app::{self, RunTotals};
use apex_ingest::config::{CacheKind, Config, GraphKind, SourceKind, VectorKind};
use apex_ingest::metrics::Metrics;
use apex_ingest::model::{Label, RecordId};
use apex_ingest::pipeline::ProcessedRecord;
use apex_ingest::saga::SagaWriter;
use apex_ingest::saga::retry::RetryPolicy;
use apex_ingest::saga::writer::SagaSettings;
use apex_ingest::store::sqlite_graph::SqliteGraphStore;
use apex_ingest::store::{BatchStore, Stores};
use apex_ingest::verify::Expectations;
use support::{Flaky, generated_batch, processed};
use tokio_util::sync::CancellationToken;

/// Saga settings with short retry waits, so injected failures do not slow tests.
fn quick_saga() -> SagaSettings {
    SagaSettings {
        lock_ttl: Duration::from_secs(10),
        lock_wait: Duration::from_secs(10),
        retry: RetryPolicy {
            first_delay: Duration::from_millis(5),
            retries: 3,
            breaker_threshold: 5,
            breaker_cooldown: Duration::from_secs(1),
        },
        ..SagaSettings::from(&Config::default().saga)
    }
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/samples")
}

fn file_config(dir: &Path) -> Config {
    let mut c = Config::default();
    c.source.kind = SourceKind::File;
    c.source.paths = vec![fixtures().join("samsara"), fixtures().join("edi")];
    c.stores.data_dir = dir.to_path_buf();
    c.batch.max_events = 4;
    c
}

/// Runs the file source through the direct orchestrator; `reuse` keeps the
/// stores (and so the in-process idempotency records) of an earlier run.
async fn run(config: &Config, reuse: Option<(Stores, Arc<Metrics>)>) -> (RunTotals, Stores, Arc<Metrics>) {
    let (stores, metrics) = match reuse {
        Some(existing) => existing,
        None => {
            (Stores::open_embedded(&config.stores.data_dir, config.embed.dims).await.unwrap(), Metrics::new())
        }
    };
    let shutdown = CancellationToken::new();
    let orchestrator = app::direct_over(config, &stores, metrics.clone(), &shutdown).unwrap();
    let source = app::build_source(config, metrics.clone()).unwrap();
    let totals =
        app::run_pipeline(config, source, orchestrator, metrics.clone(), shutdown, |_| {}).await.unwrap();
    (totals, stores, metrics)
}

async fn counts(stores: &Stores) -> Vec<(&'static str, u64)> {
    let mut out = Vec::new();
    for s in stores.all() {
        out.push((s.name(), s.count_records().await.unwrap()));
    }
    out
}

/// What each embedded store holds of `records` of which `pings` are location
/// or stats pings: the graph keeps those as their vehicle's state (the
/// default `[graph] state_kinds`), not as nodes.
fn held(records: u64, pings: u64) -> [(&'static str, u64); 4] {
    [("graph", records - pings), ("relational", records), ("vector", records), ("cache", records)]
}

/// How many of `rows` the default graph policy keeps as vehicle state.
fn pings(rows: &[ProcessedRecord]) -> u64 {
    rows.iter().filter(|r| support::kept_as_state(&r.record)).count() as u64
}

/// `verify` under the default policies finds nothing missing and has checked
/// vehicle states.
async fn assert_reconciled(stores: &Stores) {
    let diff = apex_ingest::verify::reconcile(stores, None, &Expectations::default()).await.unwrap();
    assert!(diff.is_clean(), "{:?}", diff.missing);
    assert!(diff.states_checked > 0, "no vehicle state was checked");
}

#[tokio::test]
async fn sample_files_reconcile_across_all_stores() {
    let dir = tempfile::tempdir().unwrap();
    let (t, stores, metrics) = run(&file_config(dir.path()), None).await;
    // 10 Samsara lines/files + 5 EDI files = 15 events; 3 are poison
    // (bad SE count, out-of-range latitude, not JSON); the rest hold 14 records.
    assert_eq!((t.events, t.records, t.dead_letters), (15, 14, 3));
    // Three of them are location or stats pings, their vehicles' state in the graph.
    assert_eq!(counts(&stores).await, held(14, 3));
    assert_reconciled(&stores).await;
    let dead = stores.relational.dead_letter_counts().await.unwrap();
    assert_eq!(
        dead.into_iter().collect::<Vec<_>>(),
        [
            ("edi_envelope".to_string(), 1),
            ("invalid_json".to_string(), 1),
            ("invalid_samsara".to_string(), 1)
        ]
    );
    assert_eq!(metrics.counter("apex_dead_letters_total", "edi_envelope"), 1);
    assert_eq!(metrics.counter("apex_records_written_total", "vector"), 14);
    // 15 events in batches of 4: three by size, the last 3 at end of input.
    assert_eq!((t.batches["size"], t.batches["shutdown"], t.batches["timeout"]), (3, 1, 0));
}

#[tokio::test]
async fn dead_letters_keep_reason_raw_bytes_and_origin() {
    let dir = tempfile::tempdir().unwrap();
    run(&file_config(dir.path()), None).await;
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", dir.path().join("records.db").display()))
        .await
        .unwrap();
    let (topic, offset, detail, raw): (String, i64, String, Vec<u8>) = sqlx::query_as(
        r#"SELECT topic, "offset", detail, raw FROM dead_letters WHERE reason = 'invalid_samsara'"#,
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(topic.ends_with("samsara/mixed.jsonl"), "{topic}");
    assert_eq!(offset, 4, "line index of the out-of-range latitude");
    assert!(detail.contains("latitude 95.5"), "{detail}");
    assert!(String::from_utf8(raw).unwrap().contains("\"latitude\":95.5"));
}

#[tokio::test]
async fn running_the_same_input_twice_leaves_one_copy() {
    let dir = tempfile::tempdir().unwrap();
    let config = file_config(dir.path());
    let (_, stores, metrics) = run(&config, None).await;
    // Same process: the idempotency record answers, nothing is written again.
    let (t2, stores, metrics) = run(&config, Some((stores, metrics))).await;
    assert_eq!(t2.already_written, 4);
    assert_eq!(metrics.counter("apex_records_written_total", "graph"), 14);
    assert_eq!(counts(&stores).await, held(14, 3));
    drop(stores);
    // A new process (idempotency records gone with it): upserts keep one copy.
    let (t3, stores, _) = run(&config, None).await;
    assert_eq!(t3.already_written, 0);
    let c = counts(&stores).await;
    assert_eq!(c[..3], held(14, 3)[..3]);
    assert_reconciled(&stores).await;
    let dead: u64 = stores.relational.dead_letter_counts().await.unwrap().values().sum();
    assert_eq!(dead, 3);
}

#[tokio::test]
async fn reordered_batch_has_the_same_key_and_is_not_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let stores = Stores::open_embedded(dir.path(), 384).await.unwrap();
    let metrics = Metrics::new();
    let writer = SagaWriter::new(&stores, metrics.clone(), quick_saga());
    let batch = generated_batch(100, 3, 0.05);
    let (mut rows, mut dead) = processed(&batch).await;
    let first = writer.write(&batch.id, &rows, &dead).await.unwrap();
    rows.reverse();
    dead.reverse();
    let second = writer.write(&batch.id, &rows, &dead).await.unwrap();
    assert_eq!(first.batch_key, second.batch_key);
    assert!(!first.already_written && second.already_written);
    assert_eq!(counts(&stores).await, held(first.records, pings(&rows)));
}

#[tokio::test]
async fn poison_traffic_is_routed_and_the_rest_lands() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.stores.data_dir = dir.path().to_path_buf();
    config.source.events = 3_000;
    config.source.poison_fraction = 0.1;
    let (t, stores, metrics) = run(&config, None).await;
    assert_eq!(t.events, 3_000);
    assert!((200..400).contains(&t.dead_letters), "{} dead letters at 10%", t.dead_letters);
    let table: u64 = stores.relational.dead_letter_counts().await.unwrap().values().sum();
    assert_eq!(table, t.dead_letters);
    let by_metric: u64 =
        ["not_utf8", "invalid_json", "invalid_samsara", "edi_envelope", "edi_syntax", "edi_transaction"]
            .iter()
            .map(|r| metrics.counter("apex_dead_letters_total", r))
            .sum();
    assert_eq!(by_metric, t.dead_letters);
    for (store, n) in counts(&stores).await.into_iter().filter(|(s, _)| *s != "graph") {
        assert_eq!(n, t.records, "{store}");
    }
    assert_reconciled(&stores).await;
}

/// Embedded stores in `dir` whose graph store fails on demand.
async fn stores_with_flaky_graph(dir: &Path) -> (Stores, Arc<Flaky<SqliteGraphStore>>) {
    let mut stores = Stores::open_embedded(dir, 384).await.unwrap();
    let file = dir.join("graph-flaky.db");
    let graph = Arc::new(Flaky::new(SqliteGraphStore::open(&file).await.unwrap()));
    stores.graph = Some(graph.clone());
    stores.graph_reads = Some(Arc::new(SqliteGraphStore::open(&file).await.unwrap()));
    (stores, graph)
}

#[tokio::test]
async fn failed_store_compensates_the_others_then_the_retry_lands_once() {
    let dir = tempfile::tempdir().unwrap();
    let (stores, flaky) = stores_with_flaky_graph(dir.path()).await;
    flaky.failing.store(true, Ordering::SeqCst);
    let metrics = Metrics::new();
    let writer = SagaWriter::new(&stores, metrics.clone(), quick_saga());
    let batch = generated_batch(100, 9, 0.0);
    let (rows, dead) = processed(&batch).await;

    let err = writer.write(&batch.id, &rows, &dead).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    // The other three took the batch and had it removed again.
    assert_eq!(counts(&stores).await, [("graph", 0), ("relational", 0), ("vector", 0), ("cache", 0)]);
    assert_eq!(metrics.counter("apex_compensations_total", "relational"), 1);
    assert_eq!(metrics.counter("apex_store_write_errors_total", "graph"), 1);

    flaky.failing.store(false, Ordering::SeqCst);
    let ok = writer.write(&batch.id, &rows, &dead).await.unwrap();
    assert!(!ok.already_written);
    assert_eq!(counts(&stores).await, held(rows.len() as u64, pings(&rows)));
    assert!(flaky.inner.count_label(Label::Vehicle).await.unwrap() > 0);
    assert_reconciled(&stores).await;
}

#[tokio::test]
async fn compensation_removes_only_the_records_the_failed_batch_added() {
    let dir = tempfile::tempdir().unwrap();
    let (stores, graph) = stores_with_flaky_graph(dir.path()).await;
    let writer = SagaWriter::new(&stores, Metrics::new(), quick_saga());
    // Re-delivery with other boundaries: the second batch repeats the last
    // 20 events of the first, which is written (and committed) already.
    let events = generated_batch(60, 41, 0.0).events;
    let first = apex_ingest::batch::Batch::new(events[..40].to_vec(), apex_ingest::batch::CloseReason::Size);
    let second = apex_ingest::batch::Batch::new(events[20..].to_vec(), apex_ingest::batch::CloseReason::Size);
    let (rows1, dead1) = processed(&first).await;
    writer.write(&first.id, &rows1, &dead1).await.unwrap();

    graph.failing.store(true, Ordering::SeqCst);
    let (rows2, dead2) = processed(&second).await;
    assert!(writer.write(&second.id, &rows2, &dead2).await.is_err());
    // Everything the first batch wrote is still in every store; none of the
    // second batch's own records stayed.
    assert_eq!(counts(&stores).await, held(rows1.len() as u64, pings(&rows1)));
    let ids1: Vec<RecordId> = rows1.iter().map(|r| r.record.id.clone()).collect();
    let diff = apex_ingest::verify::check_ids(&stores, &ids1, &Expectations::default()).await.unwrap();
    assert!(diff.is_clean(), "records of the first batch lost: {:?}", diff.missing);
}

#[tokio::test]
async fn nearest_neighbour_of_a_written_record_is_itself() {
    let dir = tempfile::tempdir().unwrap();
    let stores = Stores::open_embedded(dir.path(), 384).await.unwrap();
    let writer = SagaWriter::new(&stores, Metrics::new(), quick_saga());
    let batch = generated_batch(200, 5, 0.0);
    let (rows, dead) = processed(&batch).await;
    writer.write(&batch.id, &rows, &dead).await.unwrap();
    for r in rows.iter().step_by(17) {
        let hits =
            stores.vector.as_ref().unwrap().search(&r.embedding, 3, &Default::default()).await.unwrap();
        assert!((hits[0].1 - 1.0).abs() < 1e-4, "{:?}", hits[0]);
        // Ties are possible only for records with identical summaries.
        let top: Vec<&RecordId> = hits.iter().filter(|h| (h.1 - 1.0).abs() < 1e-4).map(|h| &h.0).collect();
        assert!(top.contains(&&r.record.id), "{} not among {:?}", r.record.id, hits);
    }
    // Vectors survive a reopen (persisted, not only in memory).
    drop(stores);
    let reopened = Stores::open_embedded(dir.path(), 384).await.unwrap();
    assert_eq!(reopened.vector.as_ref().unwrap().count_records().await.unwrap(), rows.len() as u64);
}

#[tokio::test]
async fn replay_writes_letters_that_parse_now_and_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.stores.data_dir = dir.path().to_path_buf();
    let stores = apex_ingest::app::open_stores(&config).await.unwrap();
    let orchestrator = app::direct_over(&config, &stores, Metrics::new(), &CancellationToken::new()).unwrap();
    // A letter an older parser rejected although it is valid, and a real poison one.
    let valid = std::fs::read(fixtures().join("samsara/vehicle_location.json")).unwrap();
    let raw = |payload: Vec<u8>, offset| {
        let origin =
            apex_ingest::model::Origin { topic: "samsara.telemetry.v1".into(), partition: 0, offset };
        apex_ingest::model::RawEvent::new(apex_ingest::model::Format::Samsara, origin, None, payload)
    };
    let old_reject = apex_ingest::model::DeadLetter::poison(
        &raw(valid, 1),
        &apex_ingest::model::PoisonReason::InvalidSamsara("rejected by an older parser".into()),
    );
    let poison = apex_ingest::model::DeadLetter::poison(
        &raw(b"{not json".to_vec(), 2),
        &apex_ingest::model::PoisonReason::InvalidJson("broken".into()),
    );
    stores.relational.insert_dead_letters(&[old_reject.clone(), poison.clone()]).await.unwrap();

    let filter = apex_ingest::store::DeadLetterFilter { reason: None, include_replayed: false, limit: 100 };
    let report =
        apex_ingest::cli::dlq::replay(stores.relational.as_ref(), orchestrator.as_ref(), &filter, 100)
            .await
            .unwrap();
    assert_eq!(report, apex_ingest::cli::dlq::ReplayReport { replayed: 1, still_failing: 1 });
    // The replayed letter is a location ping: its vehicle's state in the graph.
    assert_eq!(counts(&stores).await, held(1, 1));
    assert_reconciled(&stores).await;
    let left = stores.relational.dead_letters(&filter).await.unwrap();
    assert_eq!(left.iter().map(|d| d.letter.id.clone()).collect::<Vec<_>>(), [poison.id]);
    assert!(stores.relational.dead_letter(&old_reject.id).await.unwrap().unwrap().replayed_at.is_some());
}

#[tokio::test]
async fn verify_reports_a_record_missing_from_one_store() {
    let dir = tempfile::tempdir().unwrap();
    let stores = Stores::open_embedded(dir.path(), 384).await.unwrap();
    let writer = SagaWriter::new(&stores, Metrics::new(), quick_saga());
    let batch = generated_batch(50, 11, 0.0);
    let (rows, dead) = processed(&batch).await;
    writer.write(&batch.id, &rows, &dead).await.unwrap();
    assert!(apex_ingest::verify::reconcile(&stores, None, &Default::default()).await.unwrap().is_clean());

    let lost = rows[7].record.id.clone();
    stores.vector.as_ref().unwrap().remove_records(std::slice::from_ref(&lost)).await.unwrap();
    let diff = apex_ingest::verify::reconcile(&stores, None, &Default::default()).await.unwrap();
    assert_eq!(diff.checked, rows.len());
    assert_eq!(diff.missing["vector"], [lost]);
    assert!(diff.missing["graph"].is_empty() && diff.missing["relational"].is_empty());
    assert_eq!(diff.skipped, ["cache"]);
    // A window around the batch's event times checks the same records.
    let from = rows.iter().map(|r| r.record.occurred_at).min().unwrap();
    let to = rows.iter().map(|r| r.record.occurred_at).max().unwrap() + chrono::Duration::seconds(1);
    assert_eq!(
        apex_ingest::verify::reconcile(&stores, Some((from, to)), &Default::default()).await.unwrap().missing
            ["vector"]
            .len(),
        1
    );
}

/// `saga.graph_writers` bounds the graph store's calls at once on its own:
/// with grouping off, two batches held in a slow store call each store twice
/// at once, but the graph once.
#[tokio::test]
async fn the_graph_store_has_its_own_number_of_writers() {
    let dir = tempfile::tempdir().unwrap();
    let (mut stores, graph) = stores_with_flaky_graph(dir.path()).await;
    let cache = Arc::new(Flaky::new(apex_ingest::store::memory_cache::MemoryCache::new()));
    stores.cache = Some(cache.clone());
    let mut settings = quick_saga();
    settings.group_commit.max_records = 1;
    settings.group_commit.writers = 2;
    settings.graph_writers = 1;
    let writer = Arc::new(SagaWriter::new(&stores, Metrics::new(), settings));
    graph.hold(true);
    cache.hold(true);
    let mut tasks = Vec::new();
    for seed in [31, 32] {
        let writer = writer.clone();
        tasks.push(tokio::spawn(async move {
            let batch = generated_batch(20, seed, 0.0);
            let (rows, dead) = processed(&batch).await;
            writer.write(&batch.id, &rows, &dead).await.map(|o| o.records)
        }));
    }
    let calls = |s: &std::sync::atomic::AtomicUsize| s.load(Ordering::SeqCst);
    tokio::time::timeout(Duration::from_secs(10), async {
        while calls(&cache.write_calls) < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("both batches reach the cache at once");
    assert_eq!(calls(&graph.write_calls), 1, "the second graph call waits for the first");
    graph.hold(false);
    cache.hold(false);
    for t in tasks {
        assert!(t.await.unwrap().unwrap() > 0);
    }
    assert_eq!(calls(&graph.write_calls), 2);
}

#[tokio::test]
async fn a_failed_compensation_leaves_a_repair_letter() {
    let dir = tempfile::tempdir().unwrap();
    let (mut stores, graph) = stores_with_flaky_graph(dir.path()).await;
    graph.failing.store(true, Ordering::SeqCst);
    let vector = Arc::new(Flaky::new(
        apex_ingest::store::vector_index::ExactVectorIndex::open(&dir.path().join("v.db"), 384)
            .await
            .unwrap(),
    ));
    vector.failing_removes.store(true, Ordering::SeqCst);
    stores.vector = Some(vector.clone());
    let writer = SagaWriter::new(&stores, Metrics::new(), quick_saga());
    let batch = generated_batch(20, 21, 0.0);
    let (rows, dead) = processed(&batch).await;

    assert!(writer.write(&batch.id, &rows, &dead).await.is_err());
    let filter = apex_ingest::store::DeadLetterFilter {
        reason: Some("compensation_failed".into()),
        include_replayed: false,
        limit: 10,
    };
    let letters = stores.relational.dead_letters(&filter).await.unwrap();
    assert_eq!(letters.len(), 1);
    let repair: serde_json::Value = serde_json::from_slice(&letters[0].letter.raw).unwrap();
    assert_eq!(repair["store"], "vector");
    assert_eq!(repair["record_ids"].as_array().unwrap().len(), rows.len());
    assert!(
        letters[0].letter.detail.contains(&format!("vector still holds {} records", rows.len())),
        "{}",
        letters[0].letter.detail
    );
    // The vector store indeed still holds them; the relational one was cleaned.
    assert_eq!(vector.count_records().await.unwrap(), rows.len() as u64);
    assert_eq!(stores.relational.count_records().await.unwrap(), 0);

    // The stores recover and the batch lands whole: the letter is resolved.
    graph.failing.store(false, Ordering::SeqCst);
    vector.failing_removes.store(false, Ordering::SeqCst);
    writer.write(&batch.id, &rows, &dead).await.unwrap();
    assert!(stores.relational.dead_letters(&filter).await.unwrap().is_empty(), "no open repair letter");
    let all = apex_ingest::store::DeadLetterFilter { include_replayed: true, ..filter };
    let resolved = stores.relational.dead_letters(&all).await.unwrap();
    assert!(resolved[0].replayed_at.is_some(), "kept, marked resolved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_during_an_outage_ends_the_wait_between_tries_and_abandons_the_batch() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.stores.data_dir = dir.path().to_path_buf();
    config.source.events = 50;
    config.batch.max_wait = Duration::from_millis(100);
    config.saga.retries = 0;
    let (stores, flaky) = stores_with_flaky_graph(dir.path()).await;
    flaky.failing.store(true, Ordering::SeqCst);
    let metrics = Metrics::new();
    let shutdown = CancellationToken::new();
    let orchestrator = app::direct_over(&config, &stores, metrics.clone(), &shutdown).unwrap();
    let source = app::build_source(&config, metrics.clone()).unwrap();
    let run = {
        let (config, metrics, shutdown) = (config.clone(), metrics.clone(), shutdown.clone());
        tokio::spawn(async move {
            app::run_pipeline(&config, source, orchestrator, metrics, shutdown, |_| {}).await
        })
    };
    // Five tries failed; the wait before the sixth is at least 3.2 s (0.2 s doubling).
    let unlabelled = |name: &str| -> u64 {
        support::metric_series(&metrics.render(), name).first().map_or(0, |(_, v)| *v as u64)
    };
    while unlabelled("apex_batch_retries_total") < 5 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cancelled = std::time::Instant::now();
    shutdown.cancel();
    let err = run.await.unwrap().unwrap_err();
    assert!(cancelled.elapsed() < Duration::from_millis(1500), "the drain sat out the backoff");
    assert!(format!("{err:#}").contains("failed in [StoreError { store: \"graph\""), "{err:#}");
    assert_eq!(unlabelled("apex_batches_abandoned_total"), 1);
    assert_eq!(stores.relational.count_records().await.unwrap(), 0, "nothing half-written stays");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_the_wait_between_store_retries_and_starts_no_further_try() {
    let dir = tempfile::tempdir().unwrap();
    let (stores, graph) = stores_with_flaky_graph(dir.path()).await;
    graph.failing.store(true, Ordering::SeqCst);
    let metrics = Metrics::new();
    // A first wait of 10 s: a write still running 2 s after shutdown sat it out.
    let mut settings = quick_saga();
    settings.retry.first_delay = Duration::from_secs(10);
    let shutdown = CancellationToken::new();
    let writer =
        Arc::new(SagaWriter::new(&stores, metrics.clone(), settings).with_shutdown(shutdown.clone()));
    let batch = generated_batch(20, 31, 0.0);
    let (rows, dead) = processed(&batch).await;
    let write = {
        let writer = writer.clone();
        tokio::spawn(async move { writer.write(&batch.id, &rows, &dead).await })
    };
    while metrics.counter("apex_store_retries_total", "graph") == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    shutdown.cancel();
    let err = tokio::time::timeout(Duration::from_secs(2), write)
        .await
        .expect("the write still waits for its next try after shutdown")
        .unwrap()
        .unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert_eq!(graph.write_calls.load(Ordering::SeqCst), 1, "no try starts after shutdown");
    assert_eq!(stores.relational.count_records().await.unwrap(), 0, "the others were compensated");
}

/// Generated traffic through the stores `config` names (not only the embedded set).
async fn run_configured(config: &Config) -> (RunTotals, Stores) {
    let stores = apex_ingest::app::open_stores(config).await.unwrap();
    let metrics = Metrics::new();
    let shutdown = CancellationToken::new();
    let orchestrator = app::direct_over(config, &stores, metrics.clone(), &shutdown).unwrap();
    let source = app::build_source(config, metrics.clone()).unwrap();
    let totals = app::run_pipeline(config, source, orchestrator, metrics, shutdown, |_| {}).await.unwrap();
    (totals, stores)
}

fn generated_config(dir: &Path, events: u64) -> Config {
    let mut c = Config::default();
    c.source.events = events;
    c.stores.data_dir = dir.to_path_buf();
    c
}

#[tokio::test]
async fn embedding_policy_keeps_pings_out_of_the_vector_store_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = generated_config(dir.path(), 1_000);
    let pings = vec!["VehicleLocation".to_owned(), "VehicleStats".to_owned()];
    config.embed.skip_kinds = pings.clone();
    let (t, stores) = run_configured(&config).await;
    let skipped = stores.relational.record_ids_of_kinds(&pings, None).await.unwrap().len() as u64;
    assert!(skipped > 0 && skipped < t.records, "{skipped} of {} records are pings", t.records);
    let c = counts(&stores).await;
    // The kinds left unembedded are those the graph keeps as vehicle state.
    let (graph, vector) = (("graph", t.records - skipped), ("vector", t.records - skipped));
    assert_eq!(c, [graph, ("relational", t.records), vector, ("cache", t.records)]);
    // verify expects vectors only for the kinds the policy embeds...
    assert!(
        apex_ingest::verify::reconcile(
            &stores,
            None,
            &Expectations { embed_skip: pings.clone(), ..Default::default() }
        )
        .await
        .unwrap()
        .is_clean()
    );
    // ...and without the policy it reports exactly the pings as missing vectors.
    let diff = apex_ingest::verify::reconcile(&stores, None, &Default::default()).await.unwrap();
    assert_eq!(diff.missing["vector"].len() as u64, skipped);
    assert!(diff.missing["relational"].is_empty() && diff.missing["graph"].is_empty());
}

#[tokio::test]
async fn without_graph_vector_and_cache_the_relational_store_takes_everything() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = generated_config(dir.path(), 500);
    config.stores.graph = GraphKind::None;
    config.stores.vector = VectorKind::None;
    config.stores.cache = CacheKind::None;
    let (t, stores) = run_configured(&config).await;
    assert!(t.records > 0);
    assert_eq!(counts(&stores).await, [("relational", t.records)]);
    assert!(apex_ingest::verify::reconcile(&stores, None, &Default::default()).await.unwrap().is_clean());
    assert!(!dir.path().join("graph.db").exists() && !dir.path().join("vectors.db").exists());
}

/// A member and a worker started together on one store directory both open
/// (and migrate) its databases at once; neither may fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_openers_of_one_directory_at_once_both_get_migrated_stores() {
    for _ in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) =
            tokio::join!(Stores::open_embedded(dir.path(), 384), Stores::open_embedded(dir.path(), 384));
        let (a, b) = (a.expect("first opener"), b.expect("second opener"));
        assert_eq!(a.all().len(), b.all().len());
    }
}
