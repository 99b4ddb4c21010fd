//! Which store plays each role, and how to reach each server (PostgreSQL,
//! Redis, Neo4j, Qdrant).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{Config, SecretSource, require};

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

/// The record kinds the graph may keep as a vehicle's state (`[graph] state_kinds`).
pub const GRAPH_STATE_KINDS: [&str; 2] = ["VehicleLocation", "VehicleStats"];

/// What the graph keeps of each record (docs/design.md, "The graph policy").
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GraphConfig {
    /// Record kinds kept as their vehicle's state (its newest reading, and
    /// for locations its visits to location cells) instead of an Event node
    /// each: by default `GRAPH_STATE_KINDS`, a fleet's telemetry. Every record
    /// still lands whole in the relational store. Empty: a node per record.
    pub state_kinds: Vec<String>,
}

impl Default for GraphConfig {
    fn default() -> Self {
        Self { state_kinds: GRAPH_STATE_KINDS.map(String::from).to_vec() }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PostgresConfig {
    /// `postgres://user@host:port/database`; its `sslmode`, `sslrootcert`, …
    /// parameters are read, and the keys below override them. A password in
    /// the URL would be in values and logs: use `password`.
    pub url: String,
    /// The user's password (SCRAM or md5): `env:NAME` or `file:PATH`, the
    /// file read again every `secret_refresh` for new connections.
    pub password: SecretSource,
    /// "disable", "allow", "prefer", "require", "verify-ca" or "verify-full"
    /// (the certificate chains to `ca_file` and names the host). Empty: the
    /// URL's `sslmode`, else "prefer" (TLS if offered, unverified).
    pub ssl_mode: String,
    /// PEM file of the CA the server's certificate must chain to.
    pub ca_file: PathBuf,
    /// PEM files of the client certificate and its key, for servers that check one.
    pub client_cert_file: PathBuf,
    pub client_key_file: PathBuf,
    /// How often a `file:` password is read again (a rotated Secret).
    #[serde(with = "humantime_serde")]
    pub secret_refresh: std::time::Duration,
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
            password: SecretSource::Unset,
            ssl_mode: String::new(),
            ca_file: PathBuf::new(),
            client_cert_file: PathBuf::new(),
            client_key_file: PathBuf::new(),
            secret_refresh: std::time::Duration::from_secs(30),
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
    /// `redis://host:port/db`, or `rediss://` for TLS (verified against
    /// `ca_file`, else the public roots). A password in the URL would be in
    /// values and logs: use `password`.
    pub url: String,
    /// ACL user (empty: the URL's, else `default`).
    pub user: String,
    /// The user's password: `env:NAME` or `file:PATH`, read when connecting
    /// (a rotated one is used after a restart: the client keeps its settings).
    pub password: SecretSource,
    /// PEM file of the CA the server's certificate must chain to (`rediss://`).
    pub ca_file: PathBuf,
    /// PEM files of the client certificate and its key (`rediss://`, mTLS).
    pub client_cert_file: PathBuf,
    pub client_key_file: PathBuf,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: "redis://127.0.0.1:6379/".into(),
            user: String::new(),
            password: SecretSource::Unset,
            ca_file: PathBuf::new(),
            client_cert_file: PathBuf::new(),
            client_key_file: PathBuf::new(),
        }
    }
}

/// PostgreSQL's `sslmode` values.
const PG_SSL_MODES: [&str; 6] = ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"];

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Neo4jConfig {
    /// host:port of the Bolt listener, or a URI: `bolt://`, `neo4j://`
    /// (plaintext); `bolt+s://`, `neo4j+s://` (TLS, the certificate checked
    /// against `ca_file`, else the system's roots); `bolt+ssc://`,
    /// `neo4j+ssc://` (TLS with the certificate not checked: only when asked
    /// for by name).
    pub uri: String,
    pub user: String,
    /// The user's password: `env:NAME` or `file:PATH`, read when connecting
    /// (a rotated one is used after a restart: the driver keeps its settings).
    /// Empty for a server with authentication off.
    pub password: SecretSource,
    /// PEM file of the CA the server's certificate must chain to (`+s` schemes).
    pub ca_file: PathBuf,
    /// PEM files of the client certificate and its key (`+s` schemes, mTLS).
    pub client_cert_file: PathBuf,
    pub client_key_file: PathBuf,
    /// A connection not established (TCP, TLS and login) within this fails.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: std::time::Duration,
}

impl Default for Neo4jConfig {
    fn default() -> Self {
        Neo4jConfig {
            uri: "127.0.0.1:7687".into(),
            user: "neo4j".into(),
            password: SecretSource::Unset,
            ca_file: PathBuf::new(),
            client_cert_file: PathBuf::new(),
            client_key_file: PathBuf::new(),
            connect_timeout: std::time::Duration::from_secs(10),
        }
    }
}

impl Neo4jConfig {
    /// Whether the URI's scheme is one of the TLS ones (`+s`, `+ssc`).
    pub fn uses_tls(&self) -> bool {
        self.uri
            .split_once("://")
            .is_some_and(|(scheme, _)| scheme.ends_with("+s") || scheme.ends_with("+ssc"))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QdrantConfig {
    /// gRPC URL of a Qdrant server (port 6334); `https://` is TLS, the
    /// certificate checked against the system's roots (`SSL_CERT_FILE` names
    /// a private CA's: the client takes no CA file). No server is available on
    /// the machines this project is built on; see docs/testing.md.
    pub url: String,
    pub collection: String,
    /// API key (Qdrant Cloud, or a server's `service.api_key`): `env:NAME` or
    /// `file:PATH`, read when connecting.
    pub api_key: SecretSource,
    /// The connection must be made within this.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: std::time::Duration,
}

impl Default for QdrantConfig {
    fn default() -> Self {
        QdrantConfig {
            url: "http://127.0.0.1:6334".into(),
            collection: "apex_records".into(),
            api_key: SecretSource::Unset,
            connect_timeout: std::time::Duration::from_secs(10),
        }
    }
}

/// The checks of these sections.
pub(super) fn validate(c: &Config) -> anyhow::Result<()> {
    require(&[
        (
            c.graph.state_kinds.iter().all(|k| GRAPH_STATE_KINDS.contains(&k.as_str())),
            "graph.state_kinds",
            "may name only VehicleLocation and VehicleStats (a vehicle's own readings)",
        ),
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
            c.postgres.ssl_mode.is_empty() || PG_SSL_MODES.contains(&c.postgres.ssl_mode.as_str()),
            "postgres.ssl_mode",
            "must be one of disable, allow, prefer, require, verify-ca, verify-full (or empty: the URL's)",
        ),
        (
            c.postgres.client_cert_file.as_os_str().is_empty()
                == c.postgres.client_key_file.as_os_str().is_empty(),
            "postgres.client_cert_file",
            "and postgres.client_key_file go together",
        ),
        (
            c.redis.client_cert_file.as_os_str().is_empty() == c.redis.client_key_file.as_os_str().is_empty(),
            "redis.client_cert_file",
            "and redis.client_key_file go together",
        ),
        (
            c.redis.url.starts_with("rediss://")
                || [&c.redis.ca_file, &c.redis.client_cert_file].iter().all(|f| f.as_os_str().is_empty()),
            "redis.ca_file",
            "and the client certificate need a rediss:// URL (TLS)",
        ),
        (
            c.neo4j.client_cert_file.as_os_str().is_empty() == c.neo4j.client_key_file.as_os_str().is_empty(),
            "neo4j.client_cert_file",
            "and neo4j.client_key_file go together",
        ),
        (
            c.neo4j.uses_tls()
                || [&c.neo4j.ca_file, &c.neo4j.client_cert_file].iter().all(|f| f.as_os_str().is_empty()),
            "neo4j.ca_file",
            "and the client certificate need a TLS URI (bolt+s:// or neo4j+s://)",
        ),
        (!c.neo4j.connect_timeout.is_zero(), "neo4j.connect_timeout", "must be longer than 0 s"),
        (
            !c.qdrant.api_key.is_set() || c.qdrant.url.starts_with("https://"),
            "qdrant.api_key",
            "needs an https:// URL (a key is never sent in clear)",
        ),
        (!c.qdrant.connect_timeout.is_zero(), "qdrant.connect_timeout", "must be longer than 0 s"),
        (
            c.postgres.secret_refresh >= std::time::Duration::from_secs(1),
            "postgres.secret_refresh",
            "must be at least 1s",
        ),
        (
            c.stores.vector != VectorKind::Pgvector || c.stores.relational == RelationalKind::Postgres,
            "stores.vector",
            "= \"pgvector\" needs stores.relational = \"postgres\"",
        ),
    ])
}
