//! Embedded vector store: an exact (brute-force) cosine scan over vectors held in
//! memory and persisted in SQLite. Exact rather than HNSW on purpose: the embedded
//! mode holds tens of thousands of vectors, where a scan is fast enough (see
//! `load/RESULTS.md`) and needs no approximate-recall caveats; `qdrant-edge` does
//! not build on stable Rust 1.95.

use std::collections::HashMap;
use std::path::Path;

use async_trait::async_trait;
use sqlx::{QueryBuilder, Sqlite, SqlitePool};
use tokio::sync::RwLock;

use chrono::{DateTime, Utc};

use super::{BatchStore, StoreError, VectorFilter, VectorStore, open_sqlite};
use crate::model::RecordId;
use crate::pipeline::ProcessedRecord;

const NAME: &str = "vector";
const CHUNK: usize = 500;

pub struct ExactVectorIndex {
    pool: SqlitePool,
    dims: usize,
    vectors: RwLock<HashMap<RecordId, Indexed>>,
    /// The SQLite file, for messages.
    at: String,
}

/// A vector and what a search filters it by.
struct Indexed {
    vector: Vec<f32>,
    kind: String,
    occurred_at: DateTime<Utc>,
}

/// The kind and event time kept in a row's payload (`DateTime` as serde writes it).
#[derive(serde::Deserialize)]
struct Filtered {
    kind: String,
    occurred_at: DateTime<Utc>,
}

fn to_blob(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn from_blob(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

impl ExactVectorIndex {
    pub async fn open(path: &Path, dims: usize) -> Result<Self, StoreError> {
        let pool = open_sqlite(NAME, path, &sqlx::migrate!("migrations/embedded/vectors")).await?;
        let rows: Vec<(String, Vec<u8>, String)> = sqlx::query_as("SELECT id, vector, payload FROM vectors")
            .fetch_all(&pool)
            .await
            .map_err(Self::err)?;
        let mut vectors = HashMap::with_capacity(rows.len());
        for (id, blob, payload) in rows {
            let v = from_blob(&blob);
            if v.len() != dims {
                return Err(StoreError {
                    store: NAME,
                    message: format!(
                        "{} holds {}-dimensional vectors but the embedder makes {dims}; use a new data directory",
                        path.display(),
                        v.len()
                    ),
                    transient: false,
                });
            }
            let Filtered { kind, occurred_at } = serde_json::from_str(&payload).map_err(|e| StoreError {
                store: NAME,
                message: format!("{}: the payload of {id} is unreadable: {e}", path.display()),
                transient: false,
            })?;
            vectors.insert(RecordId::from_stored(id), Indexed { vector: v, kind, occurred_at });
        }
        Ok(ExactVectorIndex { pool, dims, vectors: RwLock::new(vectors), at: path.display().to_string() })
    }

    fn err(e: sqlx::Error) -> StoreError {
        StoreError::from_sqlx(NAME, e)
    }
}

#[async_trait]
impl BatchStore for ExactVectorIndex {
    fn name(&self) -> &'static str {
        NAME
    }

    /// Keeps the embedded records only (`[embed] skip_kinds`).
    async fn upsert_batch(&self, rows: &[&ProcessedRecord]) -> Result<(), StoreError> {
        let rows: Vec<&ProcessedRecord> = rows.iter().copied().filter(|r| r.is_embedded()).collect();
        if let Some(bad) = rows.iter().find(|r| r.embedding.len() != self.dims) {
            return Err(StoreError {
                store: NAME,
                message: format!(
                    "record {} has {} dims, index has {}",
                    bad.record.id,
                    bad.embedding.len(),
                    self.dims
                ),
                transient: false,
            });
        }
        let mut tx = self.pool.begin().await.map_err(Self::err)?;
        for chunk in rows.chunks(CHUNK) {
            let mut q = QueryBuilder::<Sqlite>::new("INSERT INTO vectors (id, vector, payload) ");
            q.push_values(chunk, |mut b, r| {
                let payload = serde_json::json!({
                    "kind": r.record.kind,
                    "format": r.record.format.as_str(),
                    "occurred_at": r.record.occurred_at,
                    "subject": r.record.subject(),
                });
                b.push_bind(r.record.id.as_str().to_owned())
                    .push_bind(to_blob(&r.embedding))
                    .push_bind(payload.to_string());
            });
            q.push(" ON CONFLICT (id) DO UPDATE SET vector = excluded.vector, payload = excluded.payload");
            q.build().execute(&mut *tx).await.map_err(Self::err)?;
        }
        tx.commit().await.map_err(Self::err)?;
        let mut mem = self.vectors.write().await;
        for r in &rows {
            let indexed = Indexed {
                vector: r.embedding.clone(),
                kind: r.record.kind.clone(),
                occurred_at: r.record.occurred_at,
            };
            mem.insert(r.record.id.clone(), indexed);
        }
        Ok(())
    }

    async fn remove_records(&self, ids: &[RecordId]) -> Result<(), StoreError> {
        for chunk in ids.chunks(CHUNK) {
            let mut q = QueryBuilder::<Sqlite>::new("DELETE FROM vectors WHERE id IN ");
            q.push_tuples(chunk, |mut b, id| {
                b.push_bind(id.as_str().to_owned());
            });
            q.build().execute(&self.pool).await.map_err(Self::err)?;
        }
        let mut mem = self.vectors.write().await;
        for id in ids {
            mem.remove(id);
        }
        Ok(())
    }

    async fn present(&self, ids: &[RecordId]) -> Result<std::collections::HashSet<RecordId>, StoreError> {
        let mem = self.vectors.read().await;
        Ok(ids.iter().filter(|id| mem.contains_key(*id)).cloned().collect())
    }

    async fn record_ids(&self) -> Result<Vec<RecordId>, StoreError> {
        Ok(self.vectors.read().await.keys().cloned().collect())
    }

    async fn count_records(&self) -> Result<u64, StoreError> {
        Ok(self.vectors.read().await.len() as u64)
    }
}

#[async_trait]
impl VectorStore for ExactVectorIndex {
    async fn search(
        &self,
        query: &[f32],
        k: usize,
        filter: &VectorFilter,
    ) -> Result<Vec<(RecordId, f32)>, StoreError> {
        let mem = self.vectors.read().await;
        let mut scored: Vec<(RecordId, f32)> = mem
            .iter()
            .filter(|(_, i)| filter.admits(&i.kind, i.occurred_at))
            .map(|(id, i)| (id.clone(), cosine(query, &i.vector)))
            .collect();
        let k = k.min(scored.len());
        if k == 0 {
            return Ok(Vec::new());
        }
        // Ties (records of the same words) broken by id: the same question
        // gets the same answer.
        let order =
            |a: &(RecordId, f32), b: &(RecordId, f32)| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0));
        scored.select_nth_unstable_by(k - 1, order);
        scored.truncate(k);
        scored.sort_by(order);
        Ok(scored)
    }

    async fn claim_embedder(&self, embedder: &str) -> Result<(), StoreError> {
        // First writer wins; a second member starting at once reads its name.
        sqlx::query(
            "INSERT INTO vector_meta (key, value) VALUES ('embedder', ?) ON CONFLICT (key) DO NOTHING",
        )
        .bind(embedder)
        .execute(&self.pool)
        .await
        .map_err(Self::err)?;
        let held: String = sqlx::query_scalar("SELECT value FROM vector_meta WHERE key = 'embedder'")
            .fetch_one(&self.pool)
            .await
            .map_err(Self::err)?;
        super::same_embedder(NAME, &format!("the embedded vector store in {}", self.at), &held, embedder)
    }
}

/// Cosine similarity; stored vectors may come from a provider that does not normalise.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (mut dot, mut na, mut nb) = (0f32, 0f32, 0f32);
    for (x, y) in a.iter().zip(b) {
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 { 0.0 } else { dot / (na.sqrt() * nb.sqrt()) }
}
