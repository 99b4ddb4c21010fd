//! Store roles as traits. The saga writer and the pipeline only see these; the
//! embedded implementations live beside the real ones, one file per store.
//!
//! Every store keeps something per record id, so a batch write is one batched
//! upsert, compensation is one batched delete, and reconciliation is a count.

pub mod memory_cache;
pub mod sqlite_graph;
pub mod sqlite_records;
pub mod vector_index;

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::model::RecordId;
use crate::pipeline::ProcessedRecord;
use crate::saga::dlq::DeadLetter;

#[derive(Debug, Clone, thiserror::Error)]
#[error("{store} store: {message}")]
pub struct StoreError {
    pub store: &'static str,
    pub message: String,
    /// A transient error (outage, timeout) is retried; a permanent one is not.
    pub transient: bool,
}

impl StoreError {
    pub fn from_sqlx(store: &'static str, e: sqlx::Error) -> Self {
        let transient = matches!(
            e,
            sqlx::Error::Io(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed
                | sqlx::Error::Protocol(_)
                | sqlx::Error::Tls(_)
        ) || matches!(&e, sqlx::Error::Database(d) if d.message().contains("locked"));
        StoreError { store, message: e.to_string(), transient }
    }
}

/// What every store role does with a batch of records.
#[async_trait]
pub trait BatchStore: Send + Sync {
    /// Short role name used in metrics and summaries: graph, relational, vector, cache.
    fn name(&self) -> &'static str;
    /// Upserts the whole batch keyed by record id; writing it twice leaves one copy.
    async fn upsert_batch(&self, rows: &[ProcessedRecord]) -> Result<(), StoreError>;
    /// Removes what `upsert_batch` wrote for these ids (saga compensation).
    async fn remove_records(&self, ids: &[RecordId]) -> Result<(), StoreError>;
    async fn count_records(&self) -> Result<u64, StoreError>;
}

/// Relational role: records plus the dead-letter table and the batch ledger.
#[async_trait]
pub trait RelationalStore: BatchStore {
    /// Inserts dead letters; one already present (same id) is left as it is.
    async fn insert_dead_letters(&self, letters: &[DeadLetter]) -> Result<(), StoreError>;
    async fn dead_letter_counts(&self) -> Result<BTreeMap<String, u64>, StoreError>;
    async fn record_batch(&self, entry: &LedgerEntry) -> Result<(), StoreError>;
}

/// Vector role: one vector per record, searchable by cosine similarity.
#[async_trait]
pub trait VectorStore: BatchStore {
    /// The `k` nearest records to `query`, most similar first.
    async fn search(&self, query: &[f32], k: usize) -> Result<Vec<(RecordId, f32)>, StoreError>;
}

/// One row of the batch ledger: what happened to a batch, for people and `verify`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LedgerEntry {
    pub batch_key: String,
    pub batch_id: String,
    pub records: u64,
    pub dead_letters: u64,
    pub status: String,
    pub detail: Option<String>,
}

/// The recorded result of a fully written batch (the idempotency record).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchOutcome {
    pub records: u64,
    pub dead_letters: u64,
    pub written_at: DateTime<Utc>,
}

/// A held lock: only the holder of the token may release it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockToken(pub String);

/// Coordination role (Redis in production): locks and idempotency records.
#[async_trait]
pub trait Coordinator: Send + Sync {
    async fn try_lock(&self, key: &str, ttl: Duration) -> Result<Option<LockToken>, StoreError>;
    /// Releases the lock if `token` still owns it; says whether it did.
    async fn unlock(&self, key: &str, token: &LockToken) -> Result<bool, StoreError>;
    async fn outcome(&self, batch_key: &str) -> Result<Option<BatchOutcome>, StoreError>;
    async fn record_outcome(&self, batch_key: &str, outcome: &BatchOutcome) -> Result<(), StoreError>;
}

/// Opens (creating if needed) one embedded SQLite database and applies its migrations.
pub(crate) async fn open_sqlite(
    store: &'static str,
    path: &std::path::Path,
    migrator: &sqlx::migrate::Migrator,
) -> Result<sqlx::SqlitePool, StoreError> {
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(10))
        // 64 MiB page cache (default 2 MiB): random 64-hex keys touch pages all over the indexes.
        .pragma("cache_size", "-65536")
        // Statement journals (multi-row upserts) in memory, not in temp files.
        .pragma("temp_store", "memory");
    // SQLite has one writer per file: a single connection queues writers in
    // the pool (async) instead of in SQLite's busy handler (sleeps).
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .map_err(|e| StoreError::from_sqlx(store, e))?;
    migrator.run(&pool).await.map_err(|e| StoreError {
        store,
        message: format!("migrating {}: {e}", path.display()),
        transient: false,
    })?;
    Ok(pool)
}

/// The four store roles the saga writes to, plus coordination.
#[derive(Clone)]
pub struct Stores {
    pub graph: std::sync::Arc<dyn BatchStore>,
    pub relational: std::sync::Arc<dyn RelationalStore>,
    pub vector: std::sync::Arc<dyn VectorStore>,
    pub cache: std::sync::Arc<dyn BatchStore>,
    pub coordinator: std::sync::Arc<dyn Coordinator>,
}

impl Stores {
    /// The embedded stack: SQLite files for records, graph and vectors under
    /// `dir`, and the in-process cache and coordinator.
    pub async fn open_embedded(dir: &std::path::Path, dims: usize) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError {
            store: "embedded",
            message: format!("cannot create data directory {}: {e}", dir.display()),
            transient: false,
        })?;
        let cache = std::sync::Arc::new(memory_cache::MemoryCache::new());
        Ok(Stores {
            graph: std::sync::Arc::new(sqlite_graph::SqliteGraphStore::open(&dir.join("graph.db")).await?),
            relational: std::sync::Arc::new(
                sqlite_records::SqliteRecordStore::open(&dir.join("records.db")).await?,
            ),
            vector: std::sync::Arc::new(
                vector_index::ExactVectorIndex::open(&dir.join("vectors.db"), dims).await?,
            ),
            cache: cache.clone(),
            coordinator: cache,
        })
    }

    /// Every store the saga writes a batch to, in a fixed order.
    pub fn all(&self) -> Vec<std::sync::Arc<dyn BatchStore>> {
        vec![self.graph.clone(), self.relational.clone(), self.vector.clone(), self.cache.clone()]
    }
}
