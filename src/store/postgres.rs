//! PostgreSQL store (relational role): records, entities, dead letters and the
//! batch ledger; with `stores.vector = "pgvector"` also the vector role, the
//! records' embeddings under an HNSW cosine index. Every batch write is one
//! `INSERT … SELECT FROM UNNEST(…) ON CONFLICT` per table.
//!
//! The HNSW index, not this code, bounds the write rate of embedded records
//! (load/RESULTS.md): its parameters are configuration, and records the
//! embedding policy skips carry a NULL embedding, which the index skips.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use pgvector::Vector;
use secrecy::ExposeSecret;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use super::graph_policy::HeldState;
use super::record_query::{Dialect, RecordRow, ids_of_kinds, newest_readings, select_records, vehicles_of};
use super::{
    BatchStore, DEAD_LETTER_COLUMNS, DeadLetterFilter, DeadLetterRow, DeadLetterTable, LedgerEntry,
    PollCursors, RecordFilter, RecordReads, RelationalStore, StoreError, StoredDeadLetter, StoredRecord,
    VectorFilter, VectorStore,
};

/// A record's columns as `StoredRecord::from_row` reads them.
const COLUMNS: &str = r#"id, format, kind, natural_key, occurred_at, written_at, summary, body::text, topic, partition, "offset""#;
use crate::config::{PostgresConfig, SecretSource};
use crate::model::{DeadLetter, RecordId};
use crate::pipeline::ProcessedRecord;

const NAME: &str = "relational";
/// The width of `records.embedding` in the migration.
pub const PG_DIMS: usize = 384;

pub struct PostgresStore {
    pool: PgPool,
}

/// Parameters of the HNSW index over `records.embedding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HnswParams {
    pub m: u16,
    pub ef_construction: u16,
}

impl HnswParams {
    /// The index's name carries its parameters, so a change is seen at start-up.
    fn index_name(self) -> String {
        format!("records_embedding_hnsw_m{}_ef{}", self.m, self.ef_construction)
    }
}

fn err(e: sqlx::Error) -> StoreError {
    StoreError::from_sqlx(NAME, e)
}

impl PostgresStore {
    /// Connects and applies the migrations in `migrations/postgres`; with
    /// `hnsw`, makes sure the embedding index has those parameters.
    pub async fn connect(
        config: &PostgresConfig,
        dims: usize,
        hnsw: Option<HnswParams>,
    ) -> Result<Self, StoreError> {
        if dims != PG_DIMS {
            return Err(StoreError {
                store: NAME,
                message: format!("PostgreSQL keeps {PG_DIMS}-dimensional embeddings; embed.dims is {dims}"),
                transient: false,
            });
        }
        let options = Self::connect_options(config)?;
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections)
            // Fail fast during an outage so retries and the breaker see it.
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options.clone())
            .await
            .map_err(|e| {
                let mut e = err(e);
                e.message = format!("connecting to PostgreSQL at {}: {}", address(&options), e.message);
                e
            })?;
        sqlx::migrate!("migrations/postgres").run(&pool).await.map_err(|e| StoreError {
            store: NAME,
            message: format!("migrating PostgreSQL: {e}"),
            transient: false,
        })?;
        ensure_embedding_index(&pool, hnsw).await?;
        if matches!(config.password, SecretSource::File(_)) {
            tokio::spawn(refresh_password(pool.clone(), config.clone()));
        }
        Ok(PostgresStore { pool })
    }

    /// What each pooled connection is opened with: the URL, then the TLS and
    /// password keys, and the HNSW search candidate list and iterative scan
    /// (pgvector 0.8: a filtered search goes on past `ef_search` candidates)
    /// as session settings.
    pub fn connect_options(config: &PostgresConfig) -> Result<PgConnectOptions, StoreError> {
        let mut options = PgConnectOptions::from_str(&config.url).map_err(err)?.options([
            ("hnsw.ef_search", config.hnsw_ef_search.to_string()),
            ("hnsw.iterative_scan", "strict_order".to_string()),
        ]);
        if !config.ssl_mode.is_empty() {
            options = options.ssl_mode(config.ssl_mode.parse().map_err(err)?);
        }
        // sqlx reads these files at each connection: renewed certificates are picked up.
        if !config.ca_file.as_os_str().is_empty() {
            options = options.ssl_root_cert(&config.ca_file);
        }
        if !config.client_cert_file.as_os_str().is_empty() {
            options =
                options.ssl_client_cert(&config.client_cert_file).ssl_client_key(&config.client_key_file);
        }
        if let Some(password) = StoreError::secret(NAME, &config.password, "postgres.password")? {
            options = options.password(password.expose_secret());
        }
        Ok(options)
    }
}

/// host:port (or the socket) of `options`, for errors: never the password.
fn address(options: &PgConnectOptions) -> String {
    format!("{}:{}", options.get_host(), options.get_port())
}

/// Reads a `file:` password again every `secret_refresh`: the pool's new
/// connections log in with a rotated Secret, the open ones stay as they are.
async fn refresh_password(pool: PgPool, config: PostgresConfig) {
    let mut tick = tokio::time::interval(config.secret_refresh);
    tick.tick().await;
    while !pool.is_closed() {
        tick.tick().await;
        match PostgresStore::connect_options(&config) {
            Ok(options) => pool.set_connect_options(options),
            Err(e) => {
                tracing::warn!(error = %e, "PostgreSQL password not refreshed; new connections use the last one")
            }
        }
    }
}

/// With `hnsw`, leaves exactly that HNSW index on `records.embedding`,
/// rebuilding it if its parameters changed. Without (no pgvector role), an
/// existing index is left alone: NULL embeddings cost it nothing, and dropping
/// an index over a configuration slip would be costly to undo. Members
/// starting together take turns on an advisory lock.
async fn ensure_embedding_index(pool: &PgPool, hnsw: Option<HnswParams>) -> Result<(), StoreError> {
    let Some(params) = hnsw else { return Ok(()) };
    let wanted = params.index_name();
    let mut tx = pool.begin().await.map_err(err)?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('apex_records_embedding_index'))")
        .execute(&mut *tx)
        .await
        .map_err(err)?;
    let existing: Vec<String> = sqlx::query_scalar(
        "SELECT indexname FROM pg_indexes WHERE tablename = 'records' AND indexname LIKE 'records_embedding%'",
    )
    .fetch_all(&mut *tx)
    .await
    .map_err(err)?;
    for name in existing.iter().filter(|n| **n != wanted) {
        tracing::warn!(index = %name, "dropping an embedding index with other parameters");
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP INDEX IF EXISTS {name}")))
            .execute(&mut *tx)
            .await
            .map_err(err)?;
    }
    if !existing.contains(&wanted) {
        tracing::info!(index = %wanted, "building the HNSW index of the embeddings (slow on a large table)");
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE INDEX {wanted} ON records USING hnsw (embedding vector_cosine_ops) \
             WITH (m = {}, ef_construction = {})",
            params.m, params.ef_construction
        )))
        .execute(&mut *tx)
        .await
        .map_err(err)?;
    }
    tx.commit().await.map_err(err)
}

#[async_trait]
impl BatchStore for PostgresStore {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn upsert_batch(&self, rows: &[&ProcessedRecord]) -> Result<(), StoreError> {
        let ids: Vec<&str> = rows.iter().map(|r| r.record.id.as_str()).collect();
        let formats: Vec<&str> = rows.iter().map(|r| r.record.format.as_str()).collect();
        let kinds: Vec<&str> = rows.iter().map(|r| r.record.kind.as_str()).collect();
        let keys: Vec<&str> = rows.iter().map(|r| r.record.natural_key.as_str()).collect();
        let times: Vec<DateTime<Utc>> = rows.iter().map(|r| r.record.occurred_at).collect();
        let summaries: Vec<&str> = rows.iter().map(|r| r.summary.as_str()).collect();
        let bodies: Vec<String> =
            rows.iter().map(|r| serde_json::to_string(&r.record.body).unwrap_or_default()).collect();
        let topics: Vec<&str> = rows.iter().map(|r| r.record.origin.topic.as_str()).collect();
        let partitions: Vec<i32> = rows.iter().map(|r| r.record.origin.partition).collect();
        let offsets: Vec<i64> = rows.iter().map(|r| r.record.origin.offset).collect();
        let embeddings: Vec<Option<Vector>> =
            rows.iter().map(|r| r.is_embedded().then(|| Vector::from(r.embedding.clone()))).collect();

        let mut entities: BTreeMap<(&str, &str), (String, &str)> = BTreeMap::new();
        for r in rows {
            for e in &r.extraction.entities {
                entities.insert(
                    (e.key.label.as_str(), e.key.key.as_str()),
                    (serde_json::to_string(&e.props).unwrap_or_default(), r.record.id.as_str()),
                );
            }
        }
        let (labels, keys_e): (Vec<&str>, Vec<&str>) = entities.keys().copied().unzip();
        let (props, owners): (Vec<String>, Vec<&str>) = entities.values().cloned().unzip();
        // An entity row changes only when a mention adds or changes a property
        // (its record_id is then the record that last changed it): the same
        // vehicles recur in every batch, and rewriting their rows each time
        // made parallel writers queue on the row locks.

        let mut tx = self.pool.begin().await.map_err(err)?;
        sqlx::query(
            r#"INSERT INTO records (id, format, kind, natural_key, occurred_at, summary, body, topic, partition, "offset", embedding)
               SELECT id, format, kind, natural_key, occurred_at, summary, body::jsonb, topic, partition, "offset", embedding
               FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::text[], $7::text[],
                           $8::text[], $9::int[], $10::bigint[], $11::vector[])
                    AS t(id, format, kind, natural_key, occurred_at, summary, body, topic, partition, "offset", embedding)
               ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, occurred_at = excluded.occurred_at,
                   summary = excluded.summary, body = excluded.body, embedding = excluded.embedding,
                   topic = excluded.topic, partition = excluded.partition, "offset" = excluded."offset"
               WHERE (records.topic, records.partition) IS DISTINCT FROM (excluded.topic, excluded.partition)
                  OR records."offset" <= excluded."offset""#,
        )
        .bind(&ids)
        .bind(&formats)
        .bind(&kinds)
        .bind(&keys)
        .bind(&times)
        .bind(&summaries)
        .bind(&bodies)
        .bind(&topics)
        .bind(&partitions)
        .bind(&offsets)
        .bind(&embeddings)
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        sqlx::query(
            "INSERT INTO entities (label, key, props, record_id)
             SELECT label, key, props::jsonb, record_id FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[])
                  AS t(label, key, props, record_id)
             ON CONFLICT (label, key) DO UPDATE SET props = entities.props || excluded.props, record_id = excluded.record_id
             WHERE NOT entities.props @> excluded.props",
        )
        .bind(&labels)
        .bind(&keys_e)
        .bind(&props)
        .bind(&owners)
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        tx.commit().await.map_err(err)
    }

    async fn remove_records(&self, ids: &[RecordId]) -> Result<(), StoreError> {
        let ids: Vec<&str> = ids.iter().map(RecordId::as_str).collect();
        sqlx::query("DELETE FROM records WHERE id = ANY($1)")
            .bind(&ids)
            .execute(&self.pool)
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn present(&self, ids: &[RecordId]) -> Result<std::collections::HashSet<RecordId>, StoreError> {
        let ids: Vec<&str> = ids.iter().map(RecordId::as_str).collect();
        let found: Vec<String> = sqlx::query_scalar("SELECT id FROM records WHERE id = ANY($1)")
            .bind(&ids)
            .fetch_all(&self.pool)
            .await
            .map_err(err)?;
        Ok(found.into_iter().map(RecordId::from_stored).collect())
    }

    async fn record_ids(&self) -> Result<Vec<RecordId>, StoreError> {
        let found: Vec<String> =
            sqlx::query_scalar("SELECT id FROM records").fetch_all(&self.pool).await.map_err(err)?;
        Ok(found.into_iter().map(RecordId::from_stored).collect())
    }

    async fn count_records(&self) -> Result<u64, StoreError> {
        let n: i64 =
            sqlx::query_scalar("SELECT count(*) FROM records").fetch_one(&self.pool).await.map_err(err)?;
        Ok(n as u64)
    }
}

#[async_trait]
impl RelationalStore for PostgresStore {
    async fn insert_dead_letters(&self, letters: &[DeadLetter]) -> Result<(), StoreError> {
        let col = |f: fn(&DeadLetter) -> String| letters.iter().map(f).collect::<Vec<String>>();
        let raws: Vec<Vec<u8>> = letters.iter().map(|d| d.raw.clone()).collect();
        let partitions: Vec<i32> = letters.iter().map(|d| d.origin.partition).collect();
        let offsets: Vec<i64> = letters.iter().map(|d| d.origin.offset).collect();
        let keys: Vec<Option<String>> = letters.iter().map(|d| d.key.clone()).collect();
        sqlx::query(
            r#"INSERT INTO dead_letters (id, format, topic, partition, "offset", key, reason, detail, raw)
               SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int[], $5::bigint[], $6::text[],
                                    $7::text[], $8::text[], $9::bytea[])
               ON CONFLICT (id) DO NOTHING"#,
        )
        .bind(col(|d| d.id.clone()))
        .bind(col(|d| d.format.as_str().to_owned()))
        .bind(col(|d| d.origin.topic.clone()))
        .bind(&partitions)
        .bind(&offsets)
        .bind(&keys)
        .bind(col(|d| d.reason.clone()))
        .bind(col(|d| d.detail.clone()))
        .bind(&raws)
        .execute(&self.pool)
        .await
        .map_err(err)?;
        Ok(())
    }

    async fn record_batch(&self, e: &LedgerEntry) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO batch_ledger (batch_key, batch_id, records, dead_letters, status, detail)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (batch_key) DO UPDATE SET status = excluded.status, detail = excluded.detail,
                 attempts = batch_ledger.attempts + 1, updated_at = now()
             RETURNING nextval('write_watermark')",
        )
        .bind(&e.batch_key)
        .bind(&e.batch_id)
        .bind(e.records as i64)
        .bind(e.dead_letters as i64)
        .bind(&e.status)
        .bind(&e.detail)
        .execute(&self.pool)
        .await
        .map_err(err)?;
        Ok(())
    }

    async fn newest_readings(
        &self,
        kinds: &[String],
        vehicles: Option<&[String]>,
    ) -> Result<Vec<HeldState>, StoreError> {
        let rows: Vec<(String, String, String)> =
            newest_readings::<sqlx::Postgres>(kinds, vehicles, Dialect::Postgres)
                .build_query_as()
                .fetch_all(&self.pool)
                .await
                .map_err(err)?;
        Ok(rows
            .into_iter()
            .map(|(kind, vehicle, id)| HeldState { vehicle, kind, record: RecordId::from_stored(id) })
            .collect())
    }

    async fn vehicles_of(&self, ids: &[RecordId], kinds: &[String]) -> Result<Vec<String>, StoreError> {
        vehicles_of::<sqlx::Postgres>(ids, kinds, Dialect::Postgres)
            .build_query_scalar()
            .fetch_all(&self.pool)
            .await
            .map_err(err)
    }
}

#[async_trait]
impl DeadLetterTable for PostgresStore {
    async fn dead_letter_counts(&self) -> Result<BTreeMap<String, u64>, StoreError> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT reason, count(*) FROM dead_letters GROUP BY reason")
                .fetch_all(&self.pool)
                .await
                .map_err(err)?;
        Ok(rows.into_iter().map(|(r, n)| (r, n as u64)).collect())
    }

    async fn dead_letters(&self, f: &DeadLetterFilter) -> Result<Vec<StoredDeadLetter>, StoreError> {
        let sql = format!(
            "SELECT {DEAD_LETTER_COLUMNS} FROM dead_letters WHERE ($1::text IS NULL OR reason = $1) \
             AND ($2 OR replayed_at IS NULL) ORDER BY created_at DESC, id LIMIT $3"
        );
        let rows: Vec<DeadLetterRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(&f.reason)
            .bind(f.include_replayed)
            .bind(f.limit as i64)
            .fetch_all(&self.pool)
            .await
            .map_err(err)?;
        Ok(rows.into_iter().map(StoredDeadLetter::from_row).collect())
    }

    async fn dead_letter(&self, id: &str) -> Result<Option<StoredDeadLetter>, StoreError> {
        let sql = format!("SELECT {DEAD_LETTER_COLUMNS} FROM dead_letters WHERE id = $1");
        let row: Option<DeadLetterRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?;
        Ok(row.map(StoredDeadLetter::from_row))
    }

    async fn mark_replayed(&self, ids: &[String]) -> Result<(), StoreError> {
        sqlx::query("UPDATE dead_letters SET replayed_at = now() WHERE id = ANY($1)")
            .bind(ids)
            .execute(&self.pool)
            .await
            .map_err(err)?;
        Ok(())
    }
}

#[async_trait]
impl RecordReads for PostgresStore {
    async fn record_ids_of_kinds(
        &self,
        kinds: &[String],
        among: Option<&[RecordId]>,
    ) -> Result<Vec<RecordId>, StoreError> {
        let ids: Vec<String> = ids_of_kinds::<sqlx::Postgres>(kinds, among)
            .build_query_scalar()
            .fetch_all(&self.pool)
            .await
            .map_err(err)?;
        Ok(ids.into_iter().map(RecordId::from_stored).collect())
    }

    async fn record_ids_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<RecordId>, StoreError> {
        let ids: Vec<String> =
            sqlx::query_scalar("SELECT id FROM records WHERE occurred_at >= $1 AND occurred_at < $2")
                .bind(from)
                .bind(to)
                .fetch_all(&self.pool)
                .await
                .map_err(err)?;
        Ok(ids.into_iter().map(RecordId::from_stored).collect())
    }

    async fn find_records(&self, filter: &RecordFilter) -> Result<Vec<StoredRecord>, StoreError> {
        let mut q = select_records::<sqlx::Postgres>(COLUMNS, filter, Dialect::Postgres);
        let mut read = CancelledIfDropped::acquire(&self.pool).await?;
        let rows: Vec<RecordRow<DateTime<Utc>>> =
            q.build_query_as().fetch_all(read.connection()).await.map_err(err)?;
        read.finished();
        Ok(rows.into_iter().map(|r| StoredRecord::from_row(r, |t| t)).collect())
    }

    fn statement(&self, filter: &RecordFilter) -> String {
        select_records::<sqlx::Postgres>(COLUMNS, filter, Dialect::Postgres).into_string()
    }

    async fn watermark(&self) -> Result<i64, StoreError> {
        sqlx::query_scalar("SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM write_watermark")
            .fetch_one(&self.pool)
            .await
            .map_err(err)
    }
}

/// A question's read on a connection of its own: dropped before it
/// finishes (a client gone, a cancelled workflow), its statement is
/// cancelled on the server (`pg_cancel_backend`) and the connection closed,
/// not returned to the pool where the cancel could reach its next statement.
/// Dropping the future alone would leave the statement running on the server
/// (a read blocked on a lock, for as long as the lock is held).
struct CancelledIfDropped {
    pool: PgPool,
    connection: Option<sqlx::pool::PoolConnection<sqlx::Postgres>>,
    backend: i32,
}

impl CancelledIfDropped {
    async fn acquire(pool: &PgPool) -> Result<Self, StoreError> {
        let mut connection = pool.acquire().await.map_err(err)?;
        let backend =
            sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(&mut *connection).await.map_err(err)?;
        Ok(CancelledIfDropped { pool: pool.clone(), connection: Some(connection), backend })
    }

    fn connection(&mut self) -> &mut sqlx::PgConnection {
        self.connection.as_mut().expect("held until finished or dropped")
    }

    /// The read returned: the connection goes back to the pool.
    fn finished(mut self) {
        self.connection.take();
    }
}

impl Drop for CancelledIfDropped {
    fn drop(&mut self) {
        let (Some(connection), Ok(runtime)) = (self.connection.take(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        let connection = connection.detach();
        let (pool, backend) = (self.pool.clone(), self.backend);
        runtime.spawn(async move {
            let cancelled = sqlx::query("SELECT pg_cancel_backend($1)").bind(backend).execute(&pool).await;
            if let Err(e) = cancelled {
                tracing::warn!(backend, error = %e, "a dropped read's statement was not cancelled");
            }
            drop(connection);
        });
    }
}

#[async_trait]
impl PollCursors for PostgresStore {
    async fn poll_cursor(&self, source: &str) -> Result<Option<(String, DateTime<Utc>)>, StoreError> {
        sqlx::query_as("SELECT cursor, saved_at FROM poll_cursors WHERE source = $1")
            .bind(source)
            .fetch_optional(&self.pool)
            .await
            .map_err(err)
    }

    async fn save_poll_cursor(&self, source: &str, cursor: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO poll_cursors (source, cursor) VALUES ($1, $2)
             ON CONFLICT (source) DO UPDATE SET cursor = excluded.cursor, saved_at = now()",
        )
        .bind(source)
        .bind(cursor)
        .execute(&self.pool)
        .await
        .map_err(err)?;
        Ok(())
    }
}

/// Nearest-neighbour search over the records' embeddings (HNSW, cosine).
#[async_trait]
impl VectorStore for PostgresStore {
    /// The filter is part of the statement; the connections scan the HNSW
    /// index iteratively (`hnsw.iterative_scan`), so a narrow one still fills `k`.
    async fn search(
        &self,
        query: &[f32],
        k: usize,
        filter: &VectorFilter,
    ) -> Result<Vec<(RecordId, f32)>, StoreError> {
        let query = Vector::from(query.to_vec());
        let mut q = sqlx::QueryBuilder::<sqlx::Postgres>::new("SELECT id, 1 - (embedding <=> ");
        q.push_bind(query.clone()).push(") FROM records WHERE embedding IS NOT NULL");
        if !filter.kinds.is_empty() {
            q.push(" AND kind = ANY(").push_bind(filter.kinds.clone()).push(")");
        }
        if let Some(from) = filter.from {
            q.push(" AND occurred_at >= ").push_bind(from);
        }
        if let Some(to) = filter.to {
            q.push(" AND occurred_at < ").push_bind(to);
        }
        q.push(" ORDER BY embedding <=> ").push_bind(query).push(" LIMIT ").push_bind(k as i64);
        let rows: Vec<(String, f64)> = q.build_query_as().fetch_all(&self.pool).await.map_err(err)?;
        Ok(rows.into_iter().map(|(id, s)| (RecordId::from_stored(id), s as f32)).collect())
    }

    async fn claim_embedder(&self, embedder: &str) -> Result<(), StoreError> {
        // First writer wins; a second member starting at once reads its name.
        sqlx::query(
            "INSERT INTO vector_meta (key, value) VALUES ('embedder', $1) ON CONFLICT (key) DO NOTHING",
        )
        .bind(embedder)
        .execute(&self.pool)
        .await
        .map_err(err)?;
        let held: String = sqlx::query_scalar("SELECT value FROM vector_meta WHERE key = 'embedder'")
            .fetch_one(&self.pool)
            .await
            .map_err(err)?;
        super::same_embedder(NAME, "PostgreSQL's records table", &held, embedder)
    }
}
