//! Saga writer: checks the idempotency record, takes the batch lock, writes dead
//! letters, then upserts the batch into all stores in parallel. If any store
//! fails, the stores that took the batch are compensated (the records this
//! batch added removed again; records an earlier batch wrote stay) and the
//! batch is reported failed so its source retries it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::future::join_all;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::dlq::DeadLetterPublisher;
use super::group_commit::{GroupCommit, GroupCommitSettings};
use super::idempotency::batch_key;
use super::retry::{GuardedStore, RetryPolicy};
use crate::config::SagaConfig;
use crate::metrics::{Metrics, SagaMetrics};
use crate::model::{DeadLetter, RecordId};
use crate::pipeline::ProcessedRecord;
use crate::store::{
    BatchOutcome, BatchStore, Coordinator, LedgerEntry, LockToken, RelationalStore, StoreError, Stores,
};

#[derive(Debug, thiserror::Error)]
pub enum SagaError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("batch {batch_key} failed in {failed:?}; compensated {compensated:?}")]
    Failed { batch_key: String, failed: Vec<StoreError>, compensated: Vec<&'static str> },
    #[error("lock on batch {0} not acquired within {1:?}")]
    LockTimeout(String, Duration),
}

impl SagaError {
    /// Whether retrying the batch later may succeed (an outage, a held lock).
    pub fn is_transient(&self) -> bool {
        match self {
            SagaError::Store(e) => e.transient,
            SagaError::Failed { failed, .. } => failed.iter().all(|e| e.transient),
            SagaError::LockTimeout(..) => true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WriteOutcome {
    pub batch_key: String,
    pub records: u64,
    pub dead_letters: u64,
    /// The idempotency record said this batch was already written; nothing was written now.
    pub already_written: bool,
}

#[derive(Debug, Clone, Copy)]
pub struct SagaSettings {
    /// Expiry of the batch lock; renewed every third of it while the write runs.
    pub lock_ttl: Duration,
    /// How long to wait for a lock another writer holds.
    pub lock_wait: Duration,
    pub retry: RetryPolicy,
    pub group_commit: GroupCommitSettings,
    /// The graph store's writers at once, in place of `group_commit.writers`.
    pub graph_writers: usize,
}

impl From<&SagaConfig> for SagaSettings {
    fn from(s: &SagaConfig) -> Self {
        SagaSettings {
            lock_ttl: s.lock_ttl,
            lock_wait: s.lock_wait,
            retry: RetryPolicy {
                first_delay: s.retry_first,
                retries: s.retries,
                breaker_threshold: s.breaker_threshold,
                breaker_cooldown: s.breaker_cooldown,
            },
            group_commit: GroupCommitSettings {
                max_records: s.group_commit_records,
                writers: s.writers_per_store,
            },
            graph_writers: s.graph_writers,
        }
    }
}

pub struct SagaWriter {
    stores: Vec<Arc<dyn BatchStore>>,
    relational: Arc<dyn RelationalStore>,
    coordinator: Arc<dyn Coordinator>,
    /// The DLQ topic, when the source is Kafka; dead letters go there after the table.
    dead_letter_topic: Option<Arc<dyn DeadLetterPublisher>>,
    /// Breaker and retries per store name, plus "coordinator" and the DLQ topic.
    guards: BTreeMap<&'static str, GuardedStore>,
    /// Per store name, the batches waiting to share a store call.
    groups: BTreeMap<&'static str, GroupCommit>,
    metrics: SagaMetrics,
    settings: SagaSettings,
    /// Cancelled at shutdown: store retries stop waiting.
    shutdown: CancellationToken,
    /// Per batch key, the repair letters its failed compensations left, to
    /// mark resolved once this writer has written the whole batch.
    repairs: Mutex<HashMap<String, Vec<String>>>,
}

const LOCK_POLL: Duration = Duration::from_millis(50);
const COORDINATOR: &str = "coordinator";

impl SagaWriter {
    pub fn new(stores: &Stores, metrics: Arc<Metrics>, settings: SagaSettings) -> Self {
        let metrics = metrics.saga.clone();
        let stores_all = stores.all();
        let shutdown = CancellationToken::new();
        let guards = stores_all
            .iter()
            .map(|s| s.name())
            .chain([COORDINATOR])
            .map(|name| (name, GuardedStore::new(name, settings.retry, metrics.clone(), shutdown.clone())))
            .collect();
        let graph = stores.graph.as_ref().map(|g| g.name());
        let groups = stores_all
            .iter()
            .map(|s| {
                let mut group_commit = settings.group_commit;
                if Some(s.name()) == graph {
                    group_commit.writers = settings.graph_writers;
                }
                (s.name(), GroupCommit::new(s.clone(), group_commit))
            })
            .collect();
        SagaWriter {
            groups,
            stores: stores_all,
            relational: stores.relational.clone(),
            coordinator: stores.coordinator.clone(),
            dead_letter_topic: None,
            guards,
            metrics,
            settings,
            shutdown,
            repairs: Mutex::default(),
        }
    }

    /// Stops waiting between store retries once `shutdown` is cancelled (the
    /// batch is then given up uncommitted; the drain does not sit out backoffs).
    pub fn with_shutdown(mut self, shutdown: CancellationToken) -> Self {
        for guard in self.guards.values_mut() {
            guard.stop_on(shutdown.clone());
        }
        self.shutdown = shutdown;
        self
    }

    /// Also publishes every dead letter to `topic`, with its own breaker and retries.
    pub fn with_dead_letter_topic(mut self, topic: Arc<dyn DeadLetterPublisher>) -> Self {
        let guard =
            GuardedStore::new(topic.name(), self.settings.retry, self.metrics.clone(), self.shutdown.clone());
        self.guards.insert(topic.name(), guard);
        self.dead_letter_topic = Some(topic);
        self
    }

    fn guard(&self, store: &str) -> &GuardedStore {
        &self.guards[store]
    }

    async fn coordinate<T, F, Fut>(&self, op: F) -> Result<T, StoreError>
    where
        F: Fn(Arc<dyn Coordinator>) -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        self.guard(COORDINATOR).call(|| op(self.coordinator.clone())).await
    }

    pub async fn write(
        &self,
        batch_id: &str,
        rows: &[ProcessedRecord],
        dead: &[DeadLetter],
    ) -> Result<WriteOutcome, SagaError> {
        let key = batch_key(rows, dead);
        let k = key.as_str();
        if let Some(done) = self.coordinate(|c| async move { c.outcome(k).await }).await? {
            return Ok(self.already_written(key, done));
        }
        let token = self.acquire(&key).await?;
        let result = self.renewing_lock(&key, &token, self.write_locked(batch_id, &key, rows, dead)).await;
        match self.coordinator.unlock(&key, &token).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(batch_key = %key, "batch lock expired before release; raise saga lock_ttl")
            }
            Err(e) => {
                tracing::warn!(batch_key = %key, error = %e, "batch lock release failed; it will expire")
            }
        }
        result
    }

    fn already_written(&self, batch_key: String, done: BatchOutcome) -> WriteOutcome {
        self.metrics.batch_already_written();
        WriteOutcome {
            batch_key,
            records: done.records,
            dead_letters: done.dead_letters,
            already_written: true,
        }
    }

    async fn acquire(&self, key: &str) -> Result<LockToken, SagaError> {
        let started = Instant::now();
        let ttl = self.settings.lock_ttl;
        loop {
            if let Some(token) = self.coordinate(|c| async move { c.try_lock(key, ttl).await }).await? {
                return Ok(token);
            }
            if started.elapsed() >= self.settings.lock_wait {
                return Err(SagaError::LockTimeout(key.to_owned(), self.settings.lock_wait));
            }
            tokio::time::sleep(LOCK_POLL).await;
        }
    }

    /// Runs `work` while renewing the lock every third of its expiry, so a slow
    /// write (retries, backoff) never outlives the lock that guards it.
    async fn renewing_lock<T>(&self, key: &str, token: &LockToken, work: impl Future<Output = T>) -> T {
        let ttl = self.settings.lock_ttl;
        let renew = async {
            let mut every = tokio::time::interval(ttl / 3);
            every.tick().await;
            loop {
                every.tick().await;
                match self.coordinator.extend(key, token, ttl).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(batch_key = key, "batch lock lost to expiry; writes stay idempotent");
                        return;
                    }
                    Err(e) => tracing::warn!(batch_key = key, error = %e, "batch lock not renewed; retrying"),
                }
            }
        };
        tokio::pin!(work);
        tokio::select! {
            biased;
            out = &mut work => out,
            () = renew => work.await,
        }
    }

    async fn write_locked(
        &self,
        batch_id: &str,
        key: &str,
        rows: &[ProcessedRecord],
        dead: &[DeadLetter],
    ) -> Result<WriteOutcome, SagaError> {
        // Another writer may have finished this batch while we waited for the lock.
        if let Some(done) = self.coordinate(|c| async move { c.outcome(key).await }).await? {
            return Ok(self.already_written(key.to_owned(), done));
        }
        let relational = self.guard(self.relational.name());
        let dead_letters = async {
            if !dead.is_empty() {
                relational.call(|| self.relational.insert_dead_letters(dead)).await?;
                if let Some(topic) = &self.dead_letter_topic {
                    self.guard(topic.name()).call(|| topic.publish(dead)).await?;
                }
            }
            Ok(())
        };
        let (_, written_before) = tokio::try_join!(dead_letters, self.written_before(rows))?;
        let mut ledger = LedgerEntry {
            batch_key: key.to_owned(),
            batch_id: batch_id.to_owned(),
            records: rows.len() as u64,
            dead_letters: dead.len() as u64,
            status: "written".into(),
            detail: None,
        };
        if !rows.is_empty() {
            // One copy for every store's group-commit queue to share.
            let shared: Arc<[ProcessedRecord]> = rows.into();
            let results = join_all(self.stores.iter().map(|s| self.timed_upsert(s.as_ref(), &shared))).await;
            let (ok, failed): (Vec<_>, Vec<_>) =
                self.stores.iter().zip(results).partition(|(_, r)| r.is_ok());
            if !failed.is_empty() {
                let failed: Vec<StoreError> = failed.into_iter().filter_map(|(_, r)| r.err()).collect();
                let ok: Vec<&Arc<dyn BatchStore>> = ok.into_iter().map(|(s, _)| s).collect();
                let added: Vec<RecordId> = rows
                    .iter()
                    .map(|r| r.record.id.clone())
                    .filter(|id| !written_before.contains(id))
                    .collect();
                let compensated = self.compensate(key, &ok, &rows[0].record, &added).await;
                ledger.status =
                    if compensated.len() == ok.len() { "compensated" } else { "compensation_failed" }.into();
                ledger.detail = Some(failed.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "));
                if let Err(e) = relational.call(|| self.relational.record_batch(&ledger)).await {
                    tracing::warn!(batch_key = key, error = %e, "batch ledger not updated");
                }
                return Err(SagaError::Failed { batch_key: key.to_owned(), failed, compensated });
            }
        }
        let outcome = BatchOutcome {
            records: ledger.records,
            dead_letters: ledger.dead_letters,
            written_at: Utc::now(),
        };
        relational.call(|| self.relational.record_batch(&ledger)).await?;
        self.coordinate(|c| {
            let outcome = outcome.clone();
            async move { c.record_outcome(key, &outcome).await }
        })
        .await?;
        for d in dead {
            self.metrics.dead_lettered(&d.reason);
        }
        self.resolve_repairs(key).await;
        Ok(WriteOutcome {
            batch_key: key.to_owned(),
            records: outcome.records,
            dead_letters: outcome.dead_letters,
            already_written: false,
        })
    }

    async fn timed_upsert(
        &self,
        store: &dyn BatchStore,
        rows: &Arc<[ProcessedRecord]>,
    ) -> Result<(), StoreError> {
        let started = Instant::now();
        // Its group-commit and retry fields are recorded by the call that writes.
        let span = tracing::info_span!(
            "store_write",
            otel.kind = "client",
            store = store.name(),
            records = rows.len(),
            group_commit.batches = tracing::field::Empty,
            group_commit.records = tracing::field::Empty,
            retries = tracing::field::Empty,
            breaker = tracing::field::Empty
        );
        let result = self.groups[store.name()].write(self.guard(store.name()), rows).instrument(span).await;
        match &result {
            Ok(()) => self.metrics.store_written(store.name(), rows.len(), started.elapsed()),
            Err(e) => {
                tracing::warn!(store = store.name(), error = %e, "batch write failed");
                self.metrics.store_failed(store.name(), e.transient, started.elapsed());
            }
        }
        result
    }

    fn pending_repairs(&self) -> MutexGuard<'_, HashMap<String, Vec<String>>> {
        // Nothing panics while holding it; a poisoned map is still consistent.
        self.repairs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The batch is now in every store: its repair letters are marked resolved
    /// (`replayed_at`), so `dlq list` no longer shows them as open.
    async fn resolve_repairs(&self, key: &str) {
        let Some(ids) = self.pending_repairs().remove(key) else { return };
        let relational = self.guard(self.relational.name());
        match relational.call(|| self.relational.mark_replayed(&ids)).await {
            Ok(()) => {
                tracing::info!(batch_key = key, letters = ids.len(), "batch written; repair letters resolved")
            }
            Err(e) => tracing::warn!(batch_key = key, error = %e, "repair letters not marked resolved"),
        }
    }

    /// Which of the batch's records an earlier batch already wrote: the
    /// relational store holds every record of every written batch. A
    /// re-delivery with other batch boundaries repeats records that are already
    /// written and committed; if this batch fails, they are not its to remove.
    async fn written_before(&self, rows: &[ProcessedRecord]) -> Result<HashSet<RecordId>, StoreError> {
        if rows.is_empty() {
            return Ok(HashSet::new());
        }
        let ids: Vec<RecordId> = rows.iter().map(|r| r.record.id.clone()).collect();
        let ids = &ids;
        self.guard(self.relational.name()).call(|| self.relational.present(ids)).await
    }

    /// Removes the records this batch added (`ids`) from the stores that took
    /// it; returns those where that worked. A store where it did not gets a
    /// repair letter in the dead-letter table.
    async fn compensate(
        &self,
        batch_key: &str,
        took: &[&Arc<dyn BatchStore>],
        first: &crate::model::Record,
        ids: &[RecordId],
    ) -> Vec<&'static str> {
        let results = join_all(took.iter().map(|s| async move {
            if ids.is_empty() {
                return Ok(());
            }
            self.guard(s.name()).call(move || s.remove_records(ids)).await
        }))
        .await;
        let mut removed = Vec::new();
        let mut repairs = Vec::new();
        for (s, r) in took.iter().zip(results) {
            self.metrics.compensated(s.name(), r.is_ok());
            match r {
                Ok(()) => removed.push(s.name()),
                Err(e) => {
                    tracing::error!(store = s.name(), error = %e, "compensation failed; store holds a partial batch");
                    repairs.push(DeadLetter::compensation_failed(
                        batch_key,
                        s.name(),
                        first,
                        ids,
                        &e.to_string(),
                    ));
                }
            }
        }
        if !repairs.is_empty() {
            let relational = self.guard(self.relational.name());
            match relational.call(|| self.relational.insert_dead_letters(&repairs)).await {
                Ok(()) => {
                    repairs.iter().for_each(|d| self.metrics.dead_lettered(&d.reason));
                    let ids = repairs.iter().map(|d| d.id.clone());
                    self.pending_repairs().entry(batch_key.to_owned()).or_default().extend(ids);
                }
                Err(e) => {
                    tracing::error!(error = %e, ?repairs, "repair letters not stored; they are only in this log")
                }
            }
        }
        removed
    }
}
