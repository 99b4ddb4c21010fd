//! Embedded graph store: nodes and edges as SQLite tables, merged like Cypher's MERGE.

use std::path::Path;

use async_trait::async_trait;
use sqlx::{QueryBuilder, Sqlite, SqlitePool};

use super::graph_policy::{GraphBatch, GraphPolicy, HeldState, HeldVisit, record_key, version_key};
use super::{BatchStore, EventWindow, GraphReads, StoreError, open_sqlite};
use crate::model::{Label, RecordId};
use crate::pipeline::ProcessedRecord;

const NAME: &str = "graph";
const CHUNK: usize = 500;

pub struct SqliteGraphStore {
    pool: SqlitePool,
    policy: GraphPolicy,
}

impl SqliteGraphStore {
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let pool = open_sqlite(NAME, path, &sqlx::migrate!("migrations/embedded/graph")).await?;
        Ok(SqliteGraphStore { pool, policy: GraphPolicy::default() })
    }

    /// The store writing under `policy` (by default a node per record).
    pub fn with_policy(self, policy: GraphPolicy) -> Self {
        SqliteGraphStore { policy, ..self }
    }

    fn err(e: sqlx::Error) -> StoreError {
        StoreError::from_sqlx(NAME, e)
    }

    /// Number of nodes with this label (for tests and summaries).
    pub async fn count_label(&self, label: Label) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM nodes WHERE label = ?")
            .bind(label.as_str())
            .fetch_one(&self.pool)
            .await
            .map_err(Self::err)?;
        Ok(n as u64)
    }
}

#[async_trait]
impl BatchStore for SqliteGraphStore {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn upsert_batch(&self, rows: &[&ProcessedRecord]) -> Result<(), StoreError> {
        let batch = GraphBatch::of(rows, &self.policy);
        let nodes: Vec<_> = batch.nodes.into_iter().collect();
        let edges: Vec<_> = batch.edges.into_iter().collect();
        let mut tx = self.pool.begin().await.map_err(Self::err)?;
        for chunk in nodes.chunks(CHUNK) {
            let mut q = QueryBuilder::<Sqlite>::new("INSERT INTO nodes (label, key, props) ");
            q.push_values(chunk, |mut b, (k, props)| {
                b.push_bind(k.label.as_str())
                    .push_bind(k.key.clone())
                    .push_bind(serde_json::to_string(props).unwrap_or_default());
            });
            q.push(" ON CONFLICT (label, key) DO UPDATE SET props = json_patch(nodes.props, excluded.props)");
            q.build().execute(&mut *tx).await.map_err(Self::err)?;
        }
        for chunk in edges.chunks(CHUNK) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT INTO edges (from_label, from_key, rel, to_label, to_key) ",
            );
            q.push_values(chunk, |mut b, e| {
                b.push_bind(e.from.label.as_str())
                    .push_bind(e.from.key.clone())
                    .push_bind(e.rel.as_str())
                    .push_bind(e.to.label.as_str())
                    .push_bind(e.to.key.clone());
            });
            q.push(" ON CONFLICT DO NOTHING");
            q.build().execute(&mut *tx).await.map_err(Self::err)?;
        }
        for s in batch.states {
            // Over an older reading only; the vehicle's node is written above.
            sqlx::query(
                "UPDATE nodes SET props = json_patch(props, ?1) WHERE label = 'Vehicle' AND key = ?2 \
                 AND coalesce(json_extract(props, '$.' || ?3), '') < ?4",
            )
            .bind(serde_json::to_string(&s.props).unwrap_or_default())
            .bind(&s.vehicle)
            .bind(version_key(&s.kind))
            .bind(&s.version)
            .execute(&mut *tx)
            .await
            .map_err(Self::err)?;
        }
        for ((vehicle, cell), pings) in batch.visits {
            // The count grows by the pings after the held last seen (SET
            // reads the row as it was), so a re-delivery adds none.
            sqlx::query(
                "INSERT INTO visits (vehicle, cell, first_seen, last_seen, count) \
                 VALUES (?1, ?2, ?3, ?4, json_array_length(?5)) \
                 ON CONFLICT (vehicle, cell) DO UPDATE SET \
                 count = count + (SELECT count(*) FROM json_each(?5) WHERE value > visits.last_seen), \
                 first_seen = min(first_seen, ?3), last_seen = max(last_seen, ?4)",
            )
            .bind(&vehicle)
            .bind(&cell)
            .bind(pings.first())
            .bind(pings.last())
            .bind(serde_json::to_string(&pings.times).unwrap_or_default())
            .execute(&mut *tx)
            .await
            .map_err(Self::err)?;
        }
        tx.commit().await.map_err(Self::err)
    }

    /// Removes the records' Event nodes and every edge touching them; shared
    /// entities (vehicles, carriers, ...) stay, as they belong to other records too.
    async fn remove_records(&self, ids: &[RecordId]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(Self::err)?;
        for chunk in ids.chunks(CHUNK) {
            for sql in [
                "DELETE FROM edges WHERE from_label = 'Event' AND from_key IN ",
                "DELETE FROM edges WHERE to_label = 'Event' AND to_key IN ",
                "DELETE FROM nodes WHERE label = 'Event' AND key IN ",
            ] {
                let mut q = QueryBuilder::<Sqlite>::new(sql);
                q.push_tuples(chunk, |mut b, id| {
                    b.push_bind(id.as_str().to_owned());
                });
                q.build().execute(&mut *tx).await.map_err(Self::err)?;
            }
        }
        tx.commit().await.map_err(Self::err)
    }

    async fn present(&self, ids: &[RecordId]) -> Result<std::collections::HashSet<RecordId>, StoreError> {
        super::sqlite_present(
            &self.pool,
            NAME,
            "SELECT key FROM nodes WHERE label = 'Event' AND key IN ",
            ids,
        )
        .await
    }

    async fn record_ids(&self) -> Result<Vec<RecordId>, StoreError> {
        super::sqlite_ids(&self.pool, NAME, "SELECT key FROM nodes WHERE label = 'Event'").await
    }

    async fn count_records(&self) -> Result<u64, StoreError> {
        self.count_label(Label::Event).await
    }
}

/// Events one hop from the start node, and two hops through a node that is
/// not an event, by the edges' two indexes (from, to); in the window by
/// their `occurred_at` text (RFC 3339 in UTC sorts as its instants).
const EVENTS_NEAR: &str = "WITH start AS (SELECT label, key FROM nodes WHERE label = ?1 \
     AND (key = ?2 OR lower(json_extract(props, '$.name')) = lower(?2))), \
 near (label, key) AS ( \
     SELECT e.to_label, e.to_key FROM edges e JOIN start s ON e.from_label = s.label AND e.from_key = s.key \
     UNION SELECT e.from_label, e.from_key FROM edges e JOIN start s ON e.to_label = s.label AND e.to_key = s.key), \
 far (label, key) AS ( \
     SELECT e.to_label, e.to_key FROM edges e JOIN near n ON e.from_label = n.label AND e.from_key = n.key \
         WHERE n.label <> 'Event' \
     UNION SELECT e.from_label, e.from_key FROM edges e JOIN near n ON e.to_label = n.label AND e.to_key = n.key \
         WHERE n.label <> 'Event'), \
 found (key, hops) AS (SELECT key, min(hops) FROM (SELECT key, 1 AS hops FROM near WHERE label = 'Event' \
     UNION ALL SELECT key, 2 FROM far WHERE label = 'Event') GROUP BY key) \
 SELECT f.key, f.hops FROM found f JOIN nodes n ON n.label = 'Event' AND n.key = f.key \
 WHERE json_extract(n.props, '$.occurred_at') >= ?3 AND json_extract(n.props, '$.occurred_at') < ?4 \
 ORDER BY f.hops, json_extract(n.props, '$.occurred_at') DESC, f.key LIMIT ?5";

#[async_trait]
impl GraphReads for SqliteGraphStore {
    async fn events_near(
        &self,
        label: Label,
        named: &str,
        window: EventWindow,
        limit: usize,
    ) -> Result<Vec<(RecordId, u32)>, StoreError> {
        let (from, to) = window.as_text();
        let rows: Vec<(String, i64)> = sqlx::query_as(EVENTS_NEAR)
            .bind(label.as_str())
            .bind(named)
            .bind(from)
            .bind(to)
            .bind(limit as i64)
            .fetch_all(&self.pool)
            .await
            .map_err(Self::err)?;
        Ok(rows.into_iter().map(|(key, hops)| (RecordId::from_stored(key), hops as u32)).collect())
    }

    fn events_near_statement(&self, _label: Label) -> String {
        EVENTS_NEAR.to_string()
    }

    async fn vehicle_states(&self, kinds: &[String]) -> Result<Vec<HeldState>, StoreError> {
        let mut out = Vec::new();
        for kind in kinds {
            let rows: Vec<(String, String)> = sqlx::query_as(
                "SELECT key, json_extract(props, '$.' || ?1) FROM nodes \
                 WHERE label = 'Vehicle' AND json_extract(props, '$.' || ?1) IS NOT NULL",
            )
            .bind(record_key(kind))
            .fetch_all(&self.pool)
            .await
            .map_err(Self::err)?;
            out.extend(rows.into_iter().map(|(vehicle, record)| HeldState {
                vehicle,
                kind: kind.clone(),
                record: RecordId::from_stored(record),
            }));
        }
        Ok(out)
    }

    async fn visits(&self, vehicle: &str) -> Result<Vec<HeldVisit>, StoreError> {
        let rows: Vec<(String, String, String, i64)> = sqlx::query_as(
            "SELECT cell, first_seen, last_seen, count FROM visits WHERE vehicle = ? ORDER BY last_seen DESC",
        )
        .bind(vehicle)
        .fetch_all(&self.pool)
        .await
        .map_err(Self::err)?;
        Ok(rows
            .into_iter()
            .map(|(cell, first_seen, last_seen, count)| HeldVisit {
                vehicle: vehicle.to_owned(),
                cell,
                first_seen,
                last_seen,
                count,
            })
            .collect())
    }
}
