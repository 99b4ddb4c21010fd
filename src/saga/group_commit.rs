//! Group commit: batches in flight that write to the same store at the same
//! time go to it as one store call (one transaction, one pipeline), up to a
//! number of records. A store's cost is mostly per call (round trips, commit,
//! lock contention between parallel transactions on the same nodes), so a few
//! large writes beat many small ones. Each batch keeps its own lock,
//! idempotency record, ledger row and offset commit; only the store call is
//! shared.
//!
//! No background task: the first batch to find a free writer slot writes
//! everything queued (its own rows and those of the batches that arrived
//! meanwhile) and hands each batch its result.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::oneshot::error::TryRecvError;
use tokio::sync::{Semaphore, oneshot};

use super::retry::GuardedStore;
use crate::pipeline::ProcessedRecord;
use crate::store::{BatchStore, StoreError};

/// How a store's writes are grouped.
#[derive(Debug, Clone, Copy)]
pub struct GroupCommitSettings {
    /// Records in one store call at most (a larger batch is written alone).
    /// 0 or 1 turns grouping off: every batch is its own call.
    pub max_records: usize,
    /// Store calls of one store running at once.
    pub writers: usize,
}

struct Pending {
    rows: Vec<ProcessedRecord>,
    done: oneshot::Sender<Result<(), StoreError>>,
}

/// One store's queue of batches waiting to be written.
pub struct GroupCommit {
    store: Arc<dyn BatchStore>,
    queue: Mutex<Vec<Pending>>,
    writers: Semaphore,
    max_records: usize,
}

impl GroupCommit {
    pub fn new(store: Arc<dyn BatchStore>, settings: GroupCommitSettings) -> Self {
        GroupCommit {
            store,
            queue: Mutex::new(Vec::new()),
            writers: Semaphore::new(settings.writers.max(1)),
            max_records: settings.max_records,
        }
    }

    /// Writes `rows` to the store, alone or with other batches, through `guard`
    /// (breaker and retries apply to the shared call).
    pub async fn write(&self, guard: &GuardedStore, rows: &[ProcessedRecord]) -> Result<(), StoreError> {
        if self.max_records <= 1 {
            return guard.call(|| self.store.upsert_batch(rows)).await;
        }
        let (done, mut result) = oneshot::channel();
        self.queue().push(Pending { rows: rows.to_vec(), done });
        loop {
            let permit = self.writers.acquire().await.map_err(|_| self.abandoned())?;
            match result.try_recv() {
                Ok(r) => return r,
                Err(TryRecvError::Closed) => return Err(self.abandoned()),
                Err(TryRecvError::Empty) => {}
            }
            let group = self.take_group();
            if group.is_empty() {
                // Another writer holds our rows: wait for its answer.
                drop(permit);
                return result.await.unwrap_or_else(|_| Err(self.abandoned()));
            }
            self.write_group(guard, group).await;
        }
    }

    fn queue(&self) -> MutexGuard<'_, Vec<Pending>> {
        // Nothing panics while holding it; a poisoned queue is still consistent.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The oldest queued batches, up to `max_records` (at least one batch).
    fn take_group(&self) -> Vec<Pending> {
        let mut queue = self.queue();
        let mut records = 0;
        let mut n = 0;
        for p in queue.iter() {
            if n > 0 && records + p.rows.len() > self.max_records {
                break;
            }
            records += p.rows.len();
            n += 1;
        }
        queue.drain(..n).collect()
    }

    async fn write_group(&self, guard: &GuardedStore, group: Vec<Pending>) {
        let result = if group.len() == 1 {
            guard.call(|| self.store.upsert_batch(&group[0].rows)).await
        } else {
            let rows: Vec<ProcessedRecord> = group.iter().flat_map(|p| p.rows.iter().cloned()).collect();
            guard.call(|| self.store.upsert_batch(&rows)).await
        };
        match result {
            // A permanent error may be one batch's fault: write each alone, so
            // only that batch fails.
            Err(e) if !e.transient && group.len() > 1 => {
                for p in group {
                    let alone = guard.call(|| self.store.upsert_batch(&p.rows)).await;
                    let _ = p.done.send(alone);
                }
            }
            result => {
                for p in group {
                    let _ = p.done.send(result.clone());
                }
            }
        }
    }

    /// The writer holding this batch's rows was dropped (shutdown) before it answered.
    fn abandoned(&self) -> StoreError {
        StoreError {
            store: self.store.name(),
            message: "the grouped write holding this batch was abandoned; the batch is retried".into(),
            transient: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use async_trait::async_trait;
    use tokio::sync::Notify;

    use super::*;
    use crate::batch::{Batch, CloseReason};
    use crate::metrics::Metrics;
    use crate::model::RecordId;
    use crate::orchestrate::direct::{parse_batch, process_records};
    use crate::pipeline::embed::{EmbedPolicy, HashingEmbedder};
    use crate::saga::retry::RetryPolicy;
    use crate::source::generator::{Fleet, GeneratorSettings};
    use crate::store::memory_cache::MemoryCache;

    /// The in-process cache store, counting its calls; the first call waits
    /// at a gate (so others queue behind it), and a record id can be made to
    /// fail permanently.
    struct Counting {
        inner: MemoryCache,
        calls: AtomicUsize,
        gate: Notify,
        gated: std::sync::atomic::AtomicBool,
        poisoned: Option<RecordId>,
    }

    #[async_trait]
    impl BatchStore for Counting {
        fn name(&self) -> &'static str {
            "cache"
        }
        async fn upsert_batch(&self, rows: &[ProcessedRecord]) -> Result<(), StoreError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.gated.swap(false, Ordering::SeqCst) {
                self.gate.notified().await;
            }
            if rows.iter().any(|r| Some(&r.record.id) == self.poisoned.as_ref()) {
                return Err(StoreError { store: "cache", message: "bad row".into(), transient: false });
            }
            self.inner.upsert_batch(rows).await
        }
        async fn remove_records(&self, ids: &[RecordId]) -> Result<(), StoreError> {
            self.inner.remove_records(ids).await
        }
        async fn count_records(&self) -> Result<u64, StoreError> {
            self.inner.count_records().await
        }
        async fn present(&self, ids: &[RecordId]) -> Result<HashSet<RecordId>, StoreError> {
            self.inner.present(ids).await
        }
        async fn record_ids(&self) -> Result<Vec<RecordId>, StoreError> {
            self.inner.record_ids().await
        }
    }

    async fn batches(n: usize) -> Vec<Vec<ProcessedRecord>> {
        let mut fleet = Fleet::new(GeneratorSettings::clean(11));
        let mut out = Vec::new();
        for _ in 0..n {
            let batch = Batch::new((0..10).map(|_| fleet.next_event()).collect(), CloseReason::Size);
            let (records, _) = parse_batch(&batch);
            out.push(
                process_records(&HashingEmbedder::new(8), &EmbedPolicy::default(), records).await.unwrap(),
            );
        }
        out
    }

    fn guard() -> GuardedStore {
        let policy = RetryPolicy {
            first_delay: Duration::from_millis(1),
            retries: 0,
            breaker_threshold: 100,
            breaker_cooldown: Duration::from_secs(1),
        };
        GuardedStore::new("cache", policy, Metrics::new())
    }

    fn counting(poisoned: Option<RecordId>) -> Arc<Counting> {
        Arc::new(Counting {
            inner: MemoryCache::new(),
            calls: AtomicUsize::new(0),
            gate: Notify::new(),
            gated: true.into(),
            poisoned,
        })
    }

    /// Writes every batch at once; returns each batch's result.
    async fn write_all(
        group: Arc<GroupCommit>,
        store: &Counting,
        work: &[Vec<ProcessedRecord>],
    ) -> Vec<Result<(), StoreError>> {
        let guard = Arc::new(guard());
        let mut tasks = Vec::new();
        for rows in work {
            let (group, guard, rows) = (group.clone(), guard.clone(), rows.clone());
            tasks.push(tokio::spawn(async move { group.write(&guard, &rows).await }));
            // Each batch reaches the queue before the next starts.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        store.gate.notify_one();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    }

    #[tokio::test]
    async fn batches_arriving_during_a_write_share_the_next_call() {
        let work = batches(10).await;
        let store = counting(None);
        let group =
            Arc::new(GroupCommit::new(store.clone(), GroupCommitSettings { max_records: 1000, writers: 1 }));
        let results = write_all(group, &store, &work).await;
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        // The first batch alone (held at the gate), then the nine that queued meanwhile.
        assert_eq!(store.calls.load(Ordering::SeqCst), 2);
        let rows: usize = work.iter().map(Vec::len).sum();
        assert_eq!(store.count_records().await.unwrap(), rows as u64);
    }

    #[tokio::test]
    async fn a_group_never_passes_its_record_limit_and_one_means_no_grouping() {
        let work = batches(10).await;
        let per_batch = work.iter().map(Vec::len).max().unwrap();
        let store = counting(None);
        let settings = GroupCommitSettings { max_records: 3 * per_batch, writers: 1 };
        let results = write_all(Arc::new(GroupCommit::new(store.clone(), settings)), &store, &work).await;
        assert!(results.iter().all(Result::is_ok));
        // 1 alone, then at most 3 per call for the other 9.
        assert!(store.calls.load(Ordering::SeqCst) >= 4, "{}", store.calls.load(Ordering::SeqCst));

        let store = counting(None);
        let settings = GroupCommitSettings { max_records: 1, writers: 1 };
        write_all(Arc::new(GroupCommit::new(store.clone(), settings)), &store, &work).await;
        assert_eq!(store.calls.load(Ordering::SeqCst), 10);
    }

    #[tokio::test]
    async fn a_permanent_error_fails_only_the_batch_that_caused_it() {
        let work = batches(4).await;
        let bad = work[2][0].record.id.clone();
        let store = counting(Some(bad));
        let group =
            Arc::new(GroupCommit::new(store.clone(), GroupCommitSettings { max_records: 1000, writers: 1 }));
        let results = write_all(group, &store, &work).await;
        let failed: Vec<usize> =
            results.iter().enumerate().filter(|(_, r)| r.is_err()).map(|(i, _)| i).collect();
        assert_eq!(failed, [2]);
        assert!(!results[2].as_ref().unwrap_err().transient);
        let held =
            store.present(&work[3].iter().map(|r| r.record.id.clone()).collect::<Vec<_>>()).await.unwrap();
        assert_eq!(held.len(), work[3].len(), "the batches grouped with the bad one were written alone");
    }
}
