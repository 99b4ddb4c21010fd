//! Group commit in front of real embedded stores: batches that arrive while a
//! store call runs share the next one, groups keep their record limit, and a
//! permanent error fails only the batch that caused it.

mod support;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use apex_ingest::batch::{Batch, CloseReason};
use apex_ingest::metrics::Metrics;
use apex_ingest::model::Format;
use apex_ingest::pipeline::ProcessedRecord;
use apex_ingest::pipeline::embed::{EmbedPolicy, HashingEmbedder};
use apex_ingest::pipeline::{parse_events, process_records};
use apex_ingest::saga::group_commit::{GroupCommit, GroupCommitSettings};
use apex_ingest::saga::retry::{GuardedStore, RetryPolicy};
use apex_ingest::source::generator::{Fleet, GeneratorSettings};
use apex_ingest::store::memory_cache::MemoryCache;
use apex_ingest::store::vector_index::ExactVectorIndex;
use apex_ingest::store::{BatchStore, StoreError};
use support::Flaky;

/// `n` batches of 10 generated events each, embedded in `dims` dimensions.
async fn batches(n: usize, dims: usize) -> Vec<Arc<[ProcessedRecord]>> {
    batches_of(n, dims, None).await
}

/// The same, of one format only (Samsara: one record per event, so every
/// batch holds 10 records; an EDI interchange may hold dozens).
async fn batches_of(n: usize, dims: usize, only: Option<Format>) -> Vec<Arc<[ProcessedRecord]>> {
    let mut fleet = Fleet::new(GeneratorSettings { only, ..GeneratorSettings::clean(rand::random()) });
    let mut out = Vec::new();
    for _ in 0..n {
        let batch = Batch::new(fleet.by_ref().take(10).collect(), CloseReason::Size);
        let (records, _) = parse_events(&batch.events);
        let rows =
            process_records(&HashingEmbedder::new(dims), &EmbedPolicy::default(), records).await.unwrap();
        out.push(rows.into());
    }
    out
}

fn guard() -> Arc<GuardedStore> {
    let policy = RetryPolicy {
        first_delay: Duration::from_millis(1),
        retries: 0,
        breaker_threshold: 100,
        breaker_cooldown: Duration::from_secs(1),
    };
    Arc::new(GuardedStore::new("test", policy, Metrics::new().saga.clone(), CancellationToken::new()))
}

/// Writes every batch while the store holds its first call, so the rest
/// queue behind it; returns each batch's result.
async fn write_all<S: BatchStore + 'static>(
    store: &Arc<Flaky<S>>,
    settings: GroupCommitSettings,
    work: &[Arc<[ProcessedRecord]>],
) -> Vec<Result<(), StoreError>> {
    let group = Arc::new(GroupCommit::new(store.clone(), settings));
    let guard = guard();
    store.hold(true);
    let mut tasks = Vec::new();
    for rows in work {
        let (group, guard, rows) = (group.clone(), guard.clone(), rows.clone());
        tasks.push(tokio::spawn(async move { group.write(&guard, &rows).await }));
        // Each batch reaches the queue before the next starts.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    store.hold(false);
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test]
async fn batches_arriving_during_a_write_share_the_next_call() {
    let work = batches(10, 8).await;
    let store = Arc::new(Flaky::new(MemoryCache::new()));
    let results = write_all(&store, GroupCommitSettings { max_records: 1000, writers: 1 }, &work).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    // The first batch alone (held), then the nine that queued meanwhile.
    assert_eq!(store.write_calls.load(Ordering::SeqCst), 2);
    let rows: usize = work.iter().map(|w| w.len()).sum();
    assert_eq!(store.count_records().await.unwrap(), rows as u64);
}

#[tokio::test]
async fn a_group_never_passes_its_record_limit_and_one_means_no_grouping() {
    // Batches of one size, so a group of three is exactly the limit.
    let work = batches_of(10, 8, Some(Format::Samsara)).await;
    let per_batch = work[0].len();
    assert!(work.iter().all(|w| w.len() == per_batch), "Samsara batches of 10 events differ in records");
    let store = Arc::new(Flaky::new(MemoryCache::new()));
    let results =
        write_all(&store, GroupCommitSettings { max_records: 3 * per_batch, writers: 1 }, &work).await;
    assert!(results.iter().all(Result::is_ok));
    // 1 alone, then at most 3 per call for the other 9.
    assert!(store.write_calls.load(Ordering::SeqCst) >= 4, "{}", store.write_calls.load(Ordering::SeqCst));

    let store = Arc::new(Flaky::new(MemoryCache::new()));
    write_all(&store, GroupCommitSettings { max_records: 1, writers: 1 }, &work).await;
    assert_eq!(store.write_calls.load(Ordering::SeqCst), 10);
}

#[tokio::test]
async fn a_permanent_error_fails_only_the_batch_that_caused_it() {
    let dir = tempfile::tempdir().unwrap();
    let index = ExactVectorIndex::open(&dir.path().join("v.db"), 8).await.unwrap();
    let store = Arc::new(Flaky::new(index));
    let mut work = batches(4, 8).await;
    // Vectors of the wrong width: the real index refuses them permanently.
    work[2] = batches(1, 4).await.remove(0);
    let results = write_all(&store, GroupCommitSettings { max_records: 1000, writers: 1 }, &work).await;
    let failed: Vec<usize> = results.iter().enumerate().filter(|(_, r)| r.is_err()).map(|(i, _)| i).collect();
    assert_eq!(failed, [2]);
    assert!(!results[2].as_ref().unwrap_err().transient);
    let ids: Vec<_> = work[3].iter().map(|r| r.record.id.clone()).collect();
    assert_eq!(
        store.present(&ids).await.unwrap().len(),
        ids.len(),
        "the batches grouped with the bad one were written alone"
    );
}
