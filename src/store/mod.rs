//! Store roles as traits. The saga writer and the pipeline only see these; the
//! embedded implementations live beside the real ones, one file per store.
//!
//! Every store keeps something per record id, so a batch write is one batched
//! upsert, compensation is one batched delete, and reconciliation is a count.

pub mod graph_policy;
pub mod memory_cache;
pub mod neo4j;
pub mod postgres;
pub mod qdrant;
pub mod record_query;
pub mod redis;
pub mod sqlite_graph;
pub mod sqlite_records;
pub mod vector_index;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::model::{DeadLetter, Label, RecordId};
use crate::pipeline::ProcessedRecord;
pub use record_query::{GeoBox, RecordFilter, StoredRecord, words_of};

#[derive(Debug, Clone, thiserror::Error)]
#[error("{store} store: {message}")]
pub struct StoreError {
    pub store: &'static str,
    pub message: String,
    /// A transient error (outage, timeout) is retried; a permanent one is not.
    pub transient: bool,
}

/// The Redis client and the Neo4j driver build their TLS on the process's
/// crypto provider; the first caller names it (aws-lc-rs, as sqlx and reqwest
/// use; a second install is refused, harmlessly).
fn name_tls_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
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
        ) || matches!(&e, sqlx::Error::Database(d) if is_transient_db_error(d.as_ref()));
        StoreError { store, message: e.to_string(), transient }
    }

    /// A store's password from its source (`key` names it); a missing one is
    /// not retried, and the error names the source, never a value.
    pub fn secret(
        store: &'static str,
        source: &crate::config::SecretSource,
        key: &str,
    ) -> Result<Option<secrecy::SecretString>, StoreError> {
        source.read(key).map_err(|e| StoreError { store, message: format!("{e:#}"), transient: false })
    }
}

/// SQLite "database is locked", and PostgreSQL classes 08 (connection), 40
/// (serialization, deadlock), 53 (resources), 57P (shutdown, cannot connect now).
fn is_transient_db_error(e: &dyn sqlx::error::DatabaseError) -> bool {
    let code = e.code().unwrap_or_default();
    e.message().contains("locked") || ["08", "40", "53", "57P"].iter().any(|p| code.starts_with(p))
}

/// What every store role does with a batch of records.
#[async_trait]
pub trait BatchStore: Send + Sync {
    /// Short role name used in metrics and summaries: graph, relational, vector, cache.
    fn name(&self) -> &'static str;
    /// Whether the store outlives the process (the in-process cache does not).
    fn durable(&self) -> bool {
        true
    }
    /// Upserts the whole batch keyed by record id; writing it twice leaves one copy.
    async fn upsert_batch(&self, rows: &[&ProcessedRecord]) -> Result<(), StoreError>;
    /// Removes what `upsert_batch` wrote for these ids (saga compensation).
    async fn remove_records(&self, ids: &[RecordId]) -> Result<(), StoreError>;
    async fn count_records(&self) -> Result<u64, StoreError>;
    /// Which of `ids` this store holds (for `verify` and tests).
    async fn present(&self, ids: &[RecordId]) -> Result<std::collections::HashSet<RecordId>, StoreError>;
    /// Every record id this store holds (for `verify` over the whole data set).
    async fn record_ids(&self) -> Result<Vec<RecordId>, StoreError>;
}

/// Relational role: records plus the dead-letter table and the batch ledger,
/// what the saga writes; what is read back is split by its reader: the
/// dead-letter table (`dlq`), record ids (`verify`, the tests, the query room)
/// and the pollers' cursors.
#[async_trait]
pub trait RelationalStore: BatchStore + DeadLetterTable + RecordReads + PollCursors {
    /// Inserts dead letters; one already present (same id) is left as it is.
    async fn insert_dead_letters(&self, letters: &[DeadLetter]) -> Result<(), StoreError>;
    async fn record_batch(&self, entry: &LedgerEntry) -> Result<(), StoreError>;
    /// Each vehicle's (of `vehicles`, or every one's) newest record of each of
    /// `kinds` (event time, then id): what the graph keeps as its state.
    async fn newest_readings(
        &self,
        kinds: &[String],
        vehicles: Option<&[String]>,
    ) -> Result<Vec<graph_policy::HeldState>, StoreError>;
    /// The vehicles the records `ids` of `kinds` are readings of.
    async fn vehicles_of(&self, ids: &[RecordId], kinds: &[String]) -> Result<Vec<String>, StoreError>;
}

/// The dead-letter table read back: counts, listings and replay marks (`dlq`).
#[async_trait]
pub trait DeadLetterTable: Send + Sync {
    async fn dead_letter_counts(&self) -> Result<BTreeMap<String, u64>, StoreError>;
    /// Dead letters, newest first; replayed ones only with `include_replayed`.
    async fn dead_letters(&self, filter: &DeadLetterFilter) -> Result<Vec<StoredDeadLetter>, StoreError>;
    async fn dead_letter(&self, id: &str) -> Result<Option<StoredDeadLetter>, StoreError>;
    async fn mark_replayed(&self, ids: &[String]) -> Result<(), StoreError>;
}

/// The records read back by what they are and when they happened.
#[async_trait]
pub trait RecordReads: Send + Sync {
    /// Ids of the records of these kinds (those a policy leaves out of a
    /// store): of the records `among`, or of every record.
    async fn record_ids_of_kinds(
        &self,
        kinds: &[String],
        among: Option<&[RecordId]>,
    ) -> Result<Vec<RecordId>, StoreError>;
    /// Ids of the records whose event time falls in `[from, to)`.
    async fn record_ids_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<RecordId>, StoreError>;
    /// The records `filter` selects, in its order, at most `filter.limit`.
    async fn find_records(&self, filter: &RecordFilter) -> Result<Vec<StoredRecord>, StoreError>;
    /// The statement `find_records` sends for `filter` (for `query --explain`).
    fn statement(&self, filter: &RecordFilter) -> String;
    /// A number that moves whenever a batch has been written to every store
    /// (each ledger row moves it): read before a question is answered, an
    /// answer cached under it cannot hide a later write.
    async fn watermark(&self) -> Result<i64, StoreError>;
}

/// The graph read back for the query room: the events around an entity.
#[async_trait]
pub trait GraphReads: Send + Sync {
    /// Event records one hop from the `label` node whose key, or name (any
    /// case), is `named`, then two hops through a node that is not an event
    /// (a vehicle's drivers' events, a shipment's facilities' events), that
    /// happened in `[from, to)`: nearest first, then newest, at most
    /// `limit`, each with its hops.
    async fn events_near(
        &self,
        label: Label,
        named: &str,
        window: EventWindow,
        limit: usize,
    ) -> Result<Vec<(RecordId, u32)>, StoreError>;
    /// The statement `events_near` sends, for `--explain`.
    fn events_near_statement(&self, label: Label) -> String;
    /// Each vehicle's newest reading of each of `kinds` the graph keeps as
    /// state (`[graph] state_kinds`), by its record id.
    async fn vehicle_states(&self, kinds: &[String]) -> Result<Vec<graph_policy::HeldState>, StoreError>;
    /// A vehicle's visits to location cells, the latest first.
    async fn visits(&self, vehicle: &str) -> Result<Vec<graph_policy::HeldVisit>, StoreError>;
}

/// An event-time window, either end open.
#[derive(Debug, Clone, Copy, Default)]
pub struct EventWindow {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

impl EventWindow {
    /// The bounds as the graph keeps event times (RFC 3339 in UTC, which
    /// sort as text as they do as instants); open ends as the lowest and
    /// highest text.
    pub fn as_text(&self) -> (String, String) {
        let from = self.from.map_or(String::new(), |t| t.to_rfc3339());
        let to = self.to.map_or("~".to_string(), |t| t.to_rfc3339());
        (from, to)
    }
}

/// Where each poller is in its provider's change feed, saved once a poll's
/// records are produced.
#[async_trait]
pub trait PollCursors: Send + Sync {
    /// A poller's saved cursor and when it was saved; `None` before its first full sync.
    async fn poll_cursor(&self, source: &str) -> Result<Option<(String, DateTime<Utc>)>, StoreError>;
    async fn save_poll_cursor(&self, source: &str, cursor: &str) -> Result<(), StoreError>;
}

#[derive(Debug, Clone, Default)]
pub struct DeadLetterFilter {
    pub reason: Option<String>,
    pub include_replayed: bool,
    pub limit: usize,
}

/// A dead letter as the table holds it.
#[derive(Debug, Clone)]
pub struct StoredDeadLetter {
    pub letter: DeadLetter,
    pub created_at: DateTime<Utc>,
    pub replayed_at: Option<DateTime<Utc>>,
}

/// One dead-letter row in the column order both SQL stores select it.
pub(crate) type DeadLetterRow = (
    String,
    String,
    String,
    i32,
    i64,
    Option<String>,
    String,
    String,
    Vec<u8>,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
);

pub(crate) const DEAD_LETTER_COLUMNS: &str =
    r#"id, format, topic, partition, "offset", key, reason, detail, raw, created_at, replayed_at"#;

impl StoredDeadLetter {
    pub(crate) fn from_row(r: DeadLetterRow) -> Self {
        let (id, format, topic, partition, offset, key, reason, detail, raw, created_at, replayed_at) = r;
        StoredDeadLetter {
            letter: DeadLetter {
                id,
                // Rows are written from `Format::as_str`; a name this version
                // does not know is read as Samsara (JSON kept whole).
                format: format.parse().unwrap_or(crate::model::Format::Samsara),
                origin: crate::model::Origin { topic, partition, offset },
                key,
                reason,
                detail,
                raw,
            },
            created_at,
            replayed_at,
        }
    }
}

/// Vector role: one vector per record, searchable by cosine similarity.
#[async_trait]
pub trait VectorStore: BatchStore {
    /// The `k` nearest records to `query` that `filter` admits, most similar first.
    async fn search(
        &self,
        query: &[f32],
        k: usize,
        filter: &VectorFilter,
    ) -> Result<Vec<(RecordId, f32)>, StoreError>;
    /// Records `embedder` (`EmbedConfig::embedder`) as what makes this store's
    /// vectors, or refuses it when another one made them: vectors of two
    /// models are not comparable, even of the same size.
    async fn claim_embedder(&self, embedder: &str) -> Result<(), StoreError>;
}

/// What every vector store filters on inside its search (not after it): the
/// record's kind and event time, which each keeps beside the vector (a
/// column, a payload index, the embedded index's memory). A narrow window
/// then still finds its `k` nearest, not what is left of the unfiltered `k`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VectorFilter {
    /// Record kinds; empty means any.
    pub kinds: Vec<String>,
    /// Event time in `[from, to)`.
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

impl VectorFilter {
    pub fn admits(&self, kind: &str, occurred_at: DateTime<Utc>) -> bool {
        (self.kinds.is_empty() || self.kinds.iter().any(|k| k == kind))
            && self.from.is_none_or(|from| occurred_at >= from)
            && self.to.is_none_or(|to| occurred_at < to)
    }
}

/// `claim_embedder`'s verdict over what the store holds recorded.
pub(crate) fn same_embedder(
    store: &'static str,
    at: &str,
    held: &str,
    wanted: &str,
) -> Result<(), StoreError> {
    if held == wanted {
        return Ok(());
    }
    Err(StoreError {
        store,
        message: format!(
            "{at} holds vectors made by {held}, but this process embeds with {wanted}: vectors of two \
                 embedders cannot be compared. Set embed back to {held}, or point the vector store at a new \
                 place and write the records again"
        ),
        transient: false,
    })
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
    /// Renews the lock's expiry if `token` still owns it; says whether it did.
    async fn extend(&self, key: &str, token: &LockToken, ttl: Duration) -> Result<bool, StoreError>;
    async fn outcome(&self, batch_key: &str) -> Result<Option<BatchOutcome>, StoreError>;
    async fn record_outcome(&self, batch_key: &str, outcome: &BatchOutcome) -> Result<(), StoreError>;
}

/// Which of `ids` a SQLite table holds; `select_in` ends in `IN ` before the id list.
pub(crate) async fn sqlite_present(
    pool: &sqlx::SqlitePool,
    store: &'static str,
    select_in: &'static str,
    ids: &[RecordId],
) -> Result<std::collections::HashSet<RecordId>, StoreError> {
    let mut found = std::collections::HashSet::new();
    for chunk in ids.chunks(500) {
        let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(select_in);
        q.push_tuples(chunk, |mut b, id| {
            b.push_bind(id.as_str().to_owned());
        });
        let rows: Vec<(String,)> =
            q.build_query_as().fetch_all(pool).await.map_err(|e| StoreError::from_sqlx(store, e))?;
        found.extend(rows.into_iter().map(|(id,)| RecordId::from_stored(id)));
    }
    Ok(found)
}

pub(crate) async fn sqlite_ids(
    pool: &sqlx::SqlitePool,
    store: &'static str,
    select: &'static str,
) -> Result<Vec<RecordId>, StoreError> {
    let ids: Vec<String> =
        sqlx::query_scalar(select).fetch_all(pool).await.map_err(|e| StoreError::from_sqlx(store, e))?;
    Ok(ids.into_iter().map(RecordId::from_stored).collect())
}

/// Opens (creating if needed) one embedded SQLite database and applies its
/// migrations. Two processes on one directory (a member and a worker started
/// together) may open it at once: switching to WAL then finds the file locked,
/// or the second migration fails on the version the first recorded. Opening
/// again a moment later (4 more tries, 100 ms doubling) finds WAL set and the
/// migrations applied.
pub(crate) async fn open_sqlite(
    store: &'static str,
    path: &std::path::Path,
    migrator: &sqlx::migrate::Migrator,
) -> Result<sqlx::SqlitePool, StoreError> {
    use backon::{ExponentialBuilder, Retryable};
    (|| try_open_sqlite(store, path, migrator))
        .retry(ExponentialBuilder::default().with_min_delay(Duration::from_millis(100)).with_max_times(4))
        .notify(|e, after| {
            tracing::info!(store, path = %path.display(), error = %e.message, ?after,
                "opening again (another process may be opening it)");
        })
        .await
}

async fn try_open_sqlite(
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
        .pragma("temp_store", "memory")
        // Checkpoint at a 64 MiB WAL (default 4 MiB): each checkpoint writes a
        // touched page back once for many commits. The embedded graph's own
        // ceiling rose from 4,900-5,300 to 6,800-6,900 records/s (load/RESULTS.md);
        // the cost is a WAL file of about 64 MiB beside each database, not memory.
        .pragma("wal_autocheckpoint", "16384");
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

/// The path of an embedded store's file in `dir`, creating the directory.
pub fn data_file(dir: &std::path::Path, name: &str) -> Result<std::path::PathBuf, StoreError> {
    std::fs::create_dir_all(dir).map_err(|e| StoreError {
        store: "embedded",
        message: format!("cannot create data directory {}: {e}", dir.display()),
        transient: false,
    })?;
    Ok(dir.join(name))
}

/// The embedded graph role's file in `dir` (`Stores::open_embedded` and
/// `[stores] graph = "embedded"` open the same one).
pub async fn embedded_graph(dir: &std::path::Path) -> Result<sqlite_graph::SqliteGraphStore, StoreError> {
    sqlite_graph::SqliteGraphStore::open(&data_file(dir, "graph.db")?).await
}

/// The embedded relational role's file in `dir`.
pub async fn embedded_records(
    dir: &std::path::Path,
) -> Result<sqlite_records::SqliteRecordStore, StoreError> {
    sqlite_records::SqliteRecordStore::open(&data_file(dir, "records.db")?).await
}

/// The embedded vector role's file in `dir`, of vectors of `dims`.
pub async fn embedded_vectors(
    dir: &std::path::Path,
    dims: usize,
) -> Result<vector_index::ExactVectorIndex, StoreError> {
    vector_index::ExactVectorIndex::open(&data_file(dir, "vectors.db")?, dims).await
}

/// The four store roles the saga writes to, plus coordination. A role set to
/// `"none"` is absent; the relational role (ledger, dead letters) always exists.
#[derive(Clone)]
pub struct Stores {
    pub graph: Option<Arc<dyn BatchStore>>,
    /// The same graph store, read by the query room.
    pub graph_reads: Option<Arc<dyn GraphReads>>,
    pub relational: Arc<dyn RelationalStore>,
    pub vector: Option<Arc<dyn VectorStore>>,
    pub cache: Option<Arc<dyn BatchStore>>,
    pub coordinator: Arc<dyn Coordinator>,
}

impl Stores {
    /// The embedded stack under `dir`: SQLite files for records, graph and
    /// vectors, and the in-process cache and coordinator.
    pub async fn open_embedded(dir: &std::path::Path, dims: usize) -> Result<Self, StoreError> {
        let cache = Arc::new(memory_cache::MemoryCache::new());
        let graph = Arc::new(embedded_graph(dir).await?);
        Ok(Stores {
            graph: Some(graph.clone()),
            graph_reads: Some(graph),
            relational: Arc::new(embedded_records(dir).await?),
            vector: Some(Arc::new(embedded_vectors(dir, dims).await?)),
            cache: Some(cache.clone()),
            coordinator: cache,
        })
    }

    /// Every distinct store the saga writes a batch to, in a fixed order (with
    /// vector = "pgvector" the relational store also serves the vector role).
    pub fn all(&self) -> Vec<Arc<dyn BatchStore>> {
        let vector = self.vector.clone().map(|v| v as Arc<dyn BatchStore>);
        let relational: Arc<dyn BatchStore> = self.relational.clone();
        let mut all: Vec<Arc<dyn BatchStore>> = Vec::new();
        for s in [self.graph.clone(), Some(relational), vector, self.cache.clone()].into_iter().flatten() {
            if !all.iter().any(|a| std::ptr::addr_eq(Arc::as_ptr(a), Arc::as_ptr(&s))) {
                all.push(s);
            }
        }
        all
    }

    /// The vector store when it is a store of its own (not the relational
    /// store's pgvector column): it holds the embedded records only.
    pub fn separate_vector_store(&self) -> Option<&Arc<dyn VectorStore>> {
        self.vector.as_ref().filter(|v| !std::ptr::addr_eq(Arc::as_ptr(*v), Arc::as_ptr(&self.relational)))
    }
}
