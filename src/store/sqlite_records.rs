//! Embedded relational store: records, dead letters and the batch ledger in SQLite.

use std::collections::BTreeMap;
use std::path::Path;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{QueryBuilder, Sqlite, SqlitePool};

use super::graph_policy::HeldState;
use super::record_query::{Dialect, RecordRow, ids_of_kinds, newest_readings, select_records, vehicles_of};
use super::{
    BatchStore, DEAD_LETTER_COLUMNS, DeadLetterFilter, DeadLetterRow, DeadLetterTable, LedgerEntry,
    PollCursors, RecordFilter, RecordReads, RelationalStore, StoreError, StoredDeadLetter, StoredRecord,
    open_sqlite,
};
use crate::model::{DeadLetter, RecordId};
use crate::pipeline::ProcessedRecord;

const NAME: &str = "relational";
/// Rows per statement; SQLite allows 32,766 bound values.
const CHUNK: usize = 500;
/// A record's columns as `StoredRecord::from_row` reads them.
const COLUMNS: &str =
    r#"id, format, kind, natural_key, occurred_at, written_at, summary, body, topic, partition, "offset""#;

pub struct SqliteRecordStore {
    pool: SqlitePool,
}

impl SqliteRecordStore {
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let pool = open_sqlite(NAME, path, &sqlx::migrate!("migrations/embedded/records")).await?;
        Ok(SqliteRecordStore { pool })
    }

    fn err(e: sqlx::Error) -> StoreError {
        StoreError::from_sqlx(NAME, e)
    }
}

#[async_trait]
impl BatchStore for SqliteRecordStore {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn upsert_batch(&self, rows: &[&ProcessedRecord]) -> Result<(), StoreError> {
        let now = Utc::now().to_rfc3339();
        let mut tx = self.pool.begin().await.map_err(Self::err)?;
        for chunk in rows.chunks(CHUNK) {
            let mut q = QueryBuilder::<Sqlite>::new(
                r#"INSERT INTO records (id, format, kind, natural_key, occurred_at, summary, body, topic, partition, "offset", written_at) "#,
            );
            q.push_values(chunk, |mut b, r| {
                let rec = &r.record;
                b.push_bind(rec.id.as_str().to_owned())
                    .push_bind(rec.format.as_str())
                    .push_bind(rec.kind.clone())
                    .push_bind(rec.natural_key.clone())
                    .push_bind(rec.occurred_at.to_rfc3339())
                    .push_bind(r.summary.clone())
                    .push_bind(serde_json::to_string(&rec.body).unwrap_or_default())
                    .push_bind(rec.origin.topic.clone())
                    .push_bind(rec.origin.partition)
                    .push_bind(rec.origin.offset)
                    .push_bind(now.clone());
            });
            q.push(
                r#" ON CONFLICT (id) DO UPDATE SET summary = excluded.summary, body = excluded.body,
                 kind = excluded.kind, occurred_at = excluded.occurred_at,
                 topic = excluded.topic, partition = excluded.partition, "offset" = excluded."offset"
                 WHERE records.topic <> excluded.topic OR records.partition <> excluded.partition
                    OR records."offset" <= excluded."offset""#,
            );
            q.build().execute(&mut *tx).await.map_err(Self::err)?;
        }
        tx.commit().await.map_err(Self::err)
    }

    async fn remove_records(&self, ids: &[RecordId]) -> Result<(), StoreError> {
        for chunk in ids.chunks(CHUNK) {
            let mut q = QueryBuilder::<Sqlite>::new("DELETE FROM records WHERE id IN ");
            q.push_tuples(chunk, |mut b, id| {
                b.push_bind(id.as_str().to_owned());
            });
            q.build().execute(&self.pool).await.map_err(Self::err)?;
        }
        Ok(())
    }

    async fn present(&self, ids: &[RecordId]) -> Result<std::collections::HashSet<RecordId>, StoreError> {
        super::sqlite_present(&self.pool, NAME, "SELECT id FROM records WHERE id IN ", ids).await
    }

    async fn record_ids(&self) -> Result<Vec<RecordId>, StoreError> {
        super::sqlite_ids(&self.pool, NAME, "SELECT id FROM records").await
    }

    async fn count_records(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM records")
            .fetch_one(&self.pool)
            .await
            .map_err(Self::err)?;
        Ok(n as u64)
    }
}

#[async_trait]
impl RelationalStore for SqliteRecordStore {
    async fn insert_dead_letters(&self, letters: &[DeadLetter]) -> Result<(), StoreError> {
        let now = Utc::now().to_rfc3339();
        for chunk in letters.chunks(CHUNK) {
            let mut q = QueryBuilder::<Sqlite>::new(
                r#"INSERT INTO dead_letters (id, format, topic, partition, "offset", key, reason, detail, raw, created_at) "#,
            );
            q.push_values(chunk, |mut b, d| {
                b.push_bind(d.id.clone())
                    .push_bind(d.format.as_str())
                    .push_bind(d.origin.topic.clone())
                    .push_bind(d.origin.partition)
                    .push_bind(d.origin.offset)
                    .push_bind(d.key.clone())
                    .push_bind(d.reason.clone())
                    .push_bind(d.detail.clone())
                    .push_bind(d.raw.clone())
                    .push_bind(now.clone());
            });
            q.push(" ON CONFLICT (id) DO NOTHING");
            q.build().execute(&self.pool).await.map_err(Self::err)?;
        }
        Ok(())
    }

    async fn record_batch(&self, e: &LedgerEntry) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO batch_ledger (batch_key, batch_id, records, dead_letters, status, detail, attempts, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, 1, ?) \
             ON CONFLICT (batch_key) DO UPDATE SET status = excluded.status, detail = excluded.detail, \
             attempts = batch_ledger.attempts + 1, updated_at = excluded.updated_at",
        )
        .bind(&e.batch_key)
        .bind(&e.batch_id)
        .bind(e.records as i64)
        .bind(e.dead_letters as i64)
        .bind(&e.status)
        .bind(&e.detail)
        .bind(Utc::now().to_rfc3339())
        .execute(&self.pool)
        .await
        .map_err(Self::err)?;
        Ok(())
    }

    async fn newest_readings(
        &self,
        kinds: &[String],
        vehicles: Option<&[String]>,
    ) -> Result<Vec<HeldState>, StoreError> {
        let rows: Vec<(String, String, String)> = newest_readings::<Sqlite>(kinds, vehicles, Dialect::Sqlite)
            .build_query_as()
            .fetch_all(&self.pool)
            .await
            .map_err(Self::err)?;
        Ok(rows
            .into_iter()
            .map(|(kind, vehicle, id)| HeldState { vehicle, kind, record: RecordId::from_stored(id) })
            .collect())
    }

    async fn vehicles_of(&self, ids: &[RecordId], kinds: &[String]) -> Result<Vec<String>, StoreError> {
        vehicles_of::<Sqlite>(ids, kinds, Dialect::Sqlite)
            .build_query_scalar()
            .fetch_all(&self.pool)
            .await
            .map_err(Self::err)
    }
}

#[async_trait]
impl DeadLetterTable for SqliteRecordStore {
    async fn dead_letter_counts(&self) -> Result<BTreeMap<String, u64>, StoreError> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT reason, COUNT(*) FROM dead_letters GROUP BY reason")
                .fetch_all(&self.pool)
                .await
                .map_err(Self::err)?;
        Ok(rows.into_iter().map(|(r, n)| (r, n as u64)).collect())
    }

    async fn dead_letters(&self, f: &DeadLetterFilter) -> Result<Vec<StoredDeadLetter>, StoreError> {
        let sql = format!(
            "SELECT {DEAD_LETTER_COLUMNS} FROM dead_letters WHERE (?1 IS NULL OR reason = ?1) \
             AND (?2 OR replayed_at IS NULL) ORDER BY created_at DESC, id LIMIT ?3"
        );
        let rows: Vec<DeadLetterRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(&f.reason)
            .bind(f.include_replayed)
            .bind(f.limit as i64)
            .fetch_all(&self.pool)
            .await
            .map_err(Self::err)?;
        Ok(rows.into_iter().map(StoredDeadLetter::from_row).collect())
    }

    async fn dead_letter(&self, id: &str) -> Result<Option<StoredDeadLetter>, StoreError> {
        let sql = format!("SELECT {DEAD_LETTER_COLUMNS} FROM dead_letters WHERE id = ?");
        let row: Option<DeadLetterRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(Self::err)?;
        Ok(row.map(StoredDeadLetter::from_row))
    }

    async fn mark_replayed(&self, ids: &[String]) -> Result<(), StoreError> {
        for chunk in ids.chunks(CHUNK) {
            let mut q = QueryBuilder::<Sqlite>::new("UPDATE dead_letters SET replayed_at = ");
            q.push_bind(Utc::now().to_rfc3339()).push(" WHERE id IN ");
            q.push_tuples(chunk, |mut b, id| {
                b.push_bind(id.clone());
            });
            q.build().execute(&self.pool).await.map_err(Self::err)?;
        }
        Ok(())
    }
}

#[async_trait]
impl RecordReads for SqliteRecordStore {
    async fn record_ids_of_kinds(
        &self,
        kinds: &[String],
        among: Option<&[RecordId]>,
    ) -> Result<Vec<RecordId>, StoreError> {
        let ids: Vec<String> = ids_of_kinds::<Sqlite>(kinds, among)
            .build_query_scalar()
            .fetch_all(&self.pool)
            .await
            .map_err(Self::err)?;
        Ok(ids.into_iter().map(RecordId::from_stored).collect())
    }

    async fn record_ids_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<RecordId>, StoreError> {
        let ids: Vec<String> =
            sqlx::query_scalar("SELECT id FROM records WHERE occurred_at >= ? AND occurred_at < ?")
                .bind(from.to_rfc3339())
                .bind(to.to_rfc3339())
                .fetch_all(&self.pool)
                .await
                .map_err(Self::err)?;
        Ok(ids.into_iter().map(RecordId::from_stored).collect())
    }

    async fn find_records(&self, filter: &RecordFilter) -> Result<Vec<StoredRecord>, StoreError> {
        let mut q = select_records::<Sqlite>(COLUMNS, filter, Dialect::Sqlite);
        let rows: Vec<RecordRow<String>> =
            q.build_query_as().fetch_all(&self.pool).await.map_err(Self::err)?;
        let time =
            |t: String| DateTime::parse_from_rfc3339(&t).map(|t| t.with_timezone(&Utc)).unwrap_or_default();
        Ok(rows.into_iter().map(|r| StoredRecord::from_row(r, time)).collect())
    }

    fn statement(&self, filter: &RecordFilter) -> String {
        select_records::<Sqlite>(COLUMNS, filter, Dialect::Sqlite).into_string()
    }

    async fn watermark(&self) -> Result<i64, StoreError> {
        sqlx::query_scalar("SELECT mark FROM write_watermark").fetch_one(&self.pool).await.map_err(Self::err)
    }
}

#[async_trait]
impl PollCursors for SqliteRecordStore {
    async fn poll_cursor(&self, source: &str) -> Result<Option<(String, DateTime<Utc>)>, StoreError> {
        let row: Option<(String, String)> =
            sqlx::query_as("SELECT cursor, saved_at FROM poll_cursors WHERE source = ?")
                .bind(source)
                .fetch_optional(&self.pool)
                .await
                .map_err(Self::err)?;
        Ok(row.map(|(cursor, at)| {
            let at = DateTime::parse_from_rfc3339(&at).map(|t| t.with_timezone(&Utc)).unwrap_or_default();
            (cursor, at)
        }))
    }

    async fn save_poll_cursor(&self, source: &str, cursor: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO poll_cursors (source, cursor, saved_at) VALUES (?, ?, ?) \
             ON CONFLICT (source) DO UPDATE SET cursor = excluded.cursor, saved_at = excluded.saved_at",
        )
        .bind(source)
        .bind(cursor)
        .bind(Utc::now().to_rfc3339())
        .execute(&self.pool)
        .await
        .map_err(Self::err)?;
        Ok(())
    }
}
