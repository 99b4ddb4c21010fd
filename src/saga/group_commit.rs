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

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::oneshot::error::TryRecvError;
use tokio::sync::{Semaphore, oneshot};

use super::retry::GuardedStore;
use crate::model::RecordId;
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
    rows: Arc<[ProcessedRecord]>,
    done: oneshot::Sender<Result<(), StoreError>>,
}

/// The rows of one store call, one per record id: of several versions of a
/// record (a polled transaction and its removal), the one latest in its
/// partition. An upsert cannot touch one row twice in one statement
/// (PostgreSQL's ON CONFLICT refuses), and the latest version must win.
fn newest_per_id<'a>(rows: impl Iterator<Item = &'a ProcessedRecord>) -> Vec<&'a ProcessedRecord> {
    let mut out: Vec<&ProcessedRecord> = Vec::with_capacity(rows.size_hint().0);
    let mut at: HashMap<&RecordId, usize> = HashMap::with_capacity(out.capacity());
    for r in rows {
        match at.entry(&r.record.id) {
            Entry::Vacant(v) => {
                v.insert(out.len());
                out.push(r);
            }
            Entry::Occupied(o) => {
                let kept = &mut out[*o.get()];
                if r.record.origin.offset >= kept.record.origin.offset {
                    *kept = r;
                }
            }
        }
    }
    out
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
    /// (breaker and retries apply to the shared call). The rows are shared,
    /// not copied, while they wait.
    pub async fn write(&self, guard: &GuardedStore, rows: &Arc<[ProcessedRecord]>) -> Result<(), StoreError> {
        if self.max_records <= 1 {
            // Every batch alone, still at most `writers` calls at once.
            let _permit = self.writers.acquire().await.map_err(|_| self.abandoned())?;
            let rows = newest_per_id(rows.iter());
            return guard.call(|| self.store.upsert_batch(&rows)).await;
        }
        let (done, mut result) = oneshot::channel();
        self.queue().push(Pending { rows: rows.clone(), done });
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
        // The group's rows are borrowed, not copied: copying every record
        // (body and entities) of a group was a sixth of a member's CPU.
        let rows = newest_per_id(group.iter().flat_map(|p| p.rows.iter()));
        // Into the span of the batch whose writer leads the group (traces only).
        if crate::telemetry::traces_on() {
            let span = tracing::Span::current();
            span.record("group_commit.batches", group.len());
            span.record("group_commit.records", rows.len());
        }
        let result = guard.call(|| self.store.upsert_batch(&rows)).await;
        match result {
            // A permanent error may be one batch's fault: write each alone, so
            // only that batch fails.
            Err(e) if !e.transient && group.len() > 1 => {
                for p in group {
                    let rows = newest_per_id(p.rows.iter());
                    let alone = guard.call(|| self.store.upsert_batch(&rows)).await;
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
