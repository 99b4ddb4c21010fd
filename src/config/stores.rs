//! Which store plays each role, and how to reach each server (PostgreSQL,
//! Redis, Neo4j, Qdrant).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{Config, require};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GraphKind {
    Embedded,
    Neo4j,
    /// No graph store: entities are still kept in the relational `entities` table.
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RelationalKind {
    Embedded,
    Postgres,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VectorKind {
    Embedded,
    /// The embeddings column of the PostgreSQL records table (needs relational = "postgres").
    Pgvector,
    /// A Qdrant server (`[qdrant] url`).
    Qdrant,
    /// No vector store (and no embedding is computed).
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheKind {
    Embedded,
    Redis,
    /// No cache: locks and idempotency records are kept in process only, so
    /// a re-delivery after a restart is written again (harmless: upserts).
    None,
}

/// Which implementation serves each store role; the pipeline does not know.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoresConfig {
    /// Directory of the embedded stores (SQLite files).
    pub data_dir: PathBuf,
    pub graph: GraphKind,
    pub relational: RelationalKind,
    pub vector: VectorKind,
    /// The cache role; the coordinator (locks, idempotency) goes with it.
    pub cache: CacheKind,
    /// Prefix of every Redis key this service writes.
    pub redis_prefix: String,
}

impl Default for StoresConfig {
    fn default() -> Self {
        StoresConfig {
            data_dir: PathBuf::from("apex-data"),
            graph: GraphKind::Embedded,
            relational: RelationalKind::Embedded,
            vector: VectorKind::Embedded,
            cache: CacheKind::Embedded,
            redis_prefix: "apex".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PostgresConfig {
    pub url: String,
    /// Connections in the pool; batches in flight write in parallel up to this.
    pub max_connections: u32,
    /// HNSW index of the embeddings (only with `stores.vector = "pgvector"`):
    /// links per node. Higher is better recall and slower inserts.
    pub hnsw_m: u16,
    /// HNSW candidate list while building; higher is better recall, slower inserts.
    pub hnsw_ef_construction: u16,
    /// HNSW candidate list while searching (`hnsw.ef_search`); higher is better
    /// recall, slower searches. Searches are rare next to inserts.
    pub hnsw_ef_search: u16,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        PostgresConfig {
            url: "postgres://postgres@127.0.0.1:5432/apex".into(),
            max_connections: 8,
            // Half pgvector's m: inserts 1.5-2.2x faster on this pipeline's
            // vectors at a recall@1 within about 2 points of m = 16, and a
            // wider search list than pgvector's 40 buys 1-2 points back
            // (load/RESULTS.md).
            hnsw_m: 8,
            hnsw_ef_construction: 64,
            hnsw_ef_search: 100,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    pub url: String,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig { url: "redis://127.0.0.1:6379/".into() }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Neo4jConfig {
    /// host:port of the Bolt listener (or a bolt:// / neo4j:// URI).
    pub uri: String,
    pub user: String,
    pub password: String,
}

impl Default for Neo4jConfig {
    fn default() -> Self {
        Neo4jConfig { uri: "127.0.0.1:7687".into(), user: "neo4j".into(), password: String::new() }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QdrantConfig {
    /// gRPC URL of a Qdrant server (port 6334). No server is available on the
    /// machines this project is built on; see docs/testing.md.
    pub url: String,
    pub collection: String,
}

impl Default for QdrantConfig {
    fn default() -> Self {
        QdrantConfig { url: "http://127.0.0.1:6334".into(), collection: "apex_records".into() }
    }
}

/// The checks of these sections.
pub(super) fn validate(c: &Config) -> anyhow::Result<()> {
    require(&[
        (c.postgres.max_connections > 0, "postgres.max_connections", "must be at least 1"),
        (c.postgres.hnsw_m >= 2, "postgres.hnsw_m", "must be at least 2"),
        (
            (1..=1000).contains(&c.postgres.hnsw_ef_search),
            "postgres.hnsw_ef_search",
            "must be between 1 and 1000 (pgvector's range)",
        ),
        (
            c.postgres.hnsw_ef_construction >= 2 * c.postgres.hnsw_m,
            "postgres.hnsw_ef_construction",
            "must be at least twice postgres.hnsw_m (pgvector's rule)",
        ),
        (
            c.stores.vector != VectorKind::Pgvector || c.stores.relational == RelationalKind::Postgres,
            "stores.vector",
            "= \"pgvector\" needs stores.relational = \"postgres\"",
        ),
    ])
}
