//! The stores around an e2e run: emptied warm, how durable, how big.

use std::path::{Path, PathBuf};
use std::time::Instant;

use apex_ingest::config::{CacheKind, Config, GraphKind, RelationalKind};

/// Deletes every node of the configured Neo4j, 10,000 at a time (the server
/// keeps running, so warm: a wipe restarts it cold).
pub async fn empty_graph(config: &Config) -> anyhow::Result<()> {
    let neo = apex_ingest::store::neo4j::Neo4jStore::connect(&config.neo4j).await?;
    let started = Instant::now();
    let mut deleted = 0;
    loop {
        let n =
            neo.count("MATCH (n) WITH n LIMIT 10000 DETACH DELETE n RETURN count(*) AS n", vec![]).await?;
        if n == 0 {
            break;
        }
        deleted += n;
    }
    println!("emptied Neo4j through Cypher: {deleted} nodes in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// PostgreSQL's settings that decide a write-heavy run: `fsync` (whether its
/// figures are durable ones), and its buffers and checkpoint distance.
pub async fn postgres_settings(config: &Config) -> anyhow::Result<String> {
    let pool = sqlx::PgPool::connect(&config.postgres.url).await?;
    let mut shown = Vec::new();
    for name in ["fsync", "shared_buffers", "max_wal_size", "checkpoint_timeout"] {
        let value: String =
            sqlx::query_scalar("SELECT current_setting($1)").bind(name).fetch_one(&pool).await?;
        shown.push(format!("{name} = {value}"));
    }
    Ok(shown.join(", "))
}

/// Bytes each store of the layout takes: PostgreSQL's database, Neo4j's data
/// directory (`scripts/services`' own), Redis's used memory, the embedded files.
#[derive(Debug, Clone, Default)]
pub struct Sizes(Vec<(&'static str, u64)>);

impl Sizes {
    pub async fn of(config: &Config, dir: &Path) -> anyhow::Result<Sizes> {
        let s = &config.stores;
        let mut sizes = Vec::new();
        if s.relational == RelationalKind::Postgres {
            let pool = sqlx::PgPool::connect(&config.postgres.url).await?;
            let n: i64 =
                sqlx::query_scalar("SELECT pg_database_size(current_database())").fetch_one(&pool).await?;
            sizes.push(("relational (PostgreSQL database)", n as u64));
        } else {
            sizes.push(("relational (records.db)", files_in(dir, "records.db")));
        }
        match s.graph {
            GraphKind::Neo4j => sizes.push(("graph (Neo4j data directory)", tree_size(&neo4j_data()))),
            GraphKind::Embedded => sizes.push(("graph (graph.db)", files_in(dir, "graph.db"))),
            GraphKind::None => {}
        }
        if s.cache == CacheKind::Redis {
            let client = redis::Client::open(config.redis.url.as_str())?;
            let mut conn = client.get_multiplexed_async_connection().await?;
            let info: String = redis::cmd("INFO").arg("memory").query_async(&mut conn).await?;
            let used = info
                .lines()
                .find_map(|l| l.strip_prefix("used_memory:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            sizes.push(("cache (Redis used memory)", used));
        }
        if s.vector == apex_ingest::config::VectorKind::Embedded {
            sizes.push(("vector (vectors.db)", files_in(dir, "vectors.db")));
        }
        Ok(Sizes(sizes))
    }

    /// What each store grew by since `before`, per million `events`.
    pub fn print_growth(&self, before: &Sizes, events: u64) {
        let per_million = 1e6 / events.max(1) as f64;
        let rows: Vec<String> = self
            .0
            .iter()
            .map(|(name, after)| {
                let was = before.0.iter().find(|(n, _)| n == name).map_or(0, |(_, b)| *b);
                let grew = after.saturating_sub(was) as f64 / (1 << 20) as f64;
                format!(
                    "{name} {:.0} MiB ({:.0} MiB now)",
                    grew * per_million,
                    *after as f64 / (1 << 20) as f64
                )
            })
            .collect();
        println!("| store size growth per million events | {} |", rows.join("; "));
    }
}

fn neo4j_data() -> PathBuf {
    let state = std::env::var_os("APEX_STATE_DIR")
        .map_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".state"), PathBuf::from);
    state.join("data/neo4j")
}

/// An embedded database with its WAL and shared-memory files.
fn files_in(dir: &Path, name: &str) -> u64 {
    ["", "-wal", "-shm"]
        .iter()
        .filter_map(|suffix| std::fs::metadata(dir.join(format!("{name}{suffix}"))).ok())
        .map(|m| m.len())
        .sum()
}

fn tree_size(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else { return 0 };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => tree_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}
