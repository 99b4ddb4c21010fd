//! Write throughput of each real store and of the whole saga, at batches of
//! 100 records: records/s and p50/p99 batch latency. Needs the services
//! (`scripts/services up`). Run:
//!
//!     cargo run --release --example store_writes -- [batches]
//!
//! Each batch holds records no earlier run wrote (a random generator seed), so
//! every write is a real insert, not a no-op upsert. Then what the query
//! room's full-text index costs a write: the same batches, in turn, into a
//! relational store as migrated and into one with the index taken out
//! (PostgreSQL in two databases of their own, SQLite in two files).

use std::time::{Duration, Instant};

use anyhow::Context;
use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection, SqliteConnection};

use apex_ingest::batch::{Batch, CloseReason};
use apex_ingest::config::{CacheKind, Config, GraphKind, PostgresConfig, RelationalKind, VectorKind};
use apex_ingest::metrics::Metrics;
use apex_ingest::pipeline::ProcessedRecord;
use apex_ingest::pipeline::embed::{EmbedPolicy, HashingEmbedder};
use apex_ingest::pipeline::{parse_events, process_records};
use apex_ingest::saga::SagaWriter;
use apex_ingest::saga::writer::SagaSettings;
use apex_ingest::source::generator::{Fleet, GeneratorSettings};
use apex_ingest::store::postgres::PostgresStore;
use apex_ingest::store::{BatchStore, embedded_records};

const EVENTS_PER_BATCH: usize = 100;

async fn batches(n: usize) -> anyhow::Result<Vec<(String, Vec<ProcessedRecord>)>> {
    let mut fleet = Fleet::new(GeneratorSettings::clean(rand::random()));
    let embedder = HashingEmbedder::new(384);
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let batch = Batch::new(fleet.by_ref().take(EVENTS_PER_BATCH).collect(), CloseReason::Size);
        let (records, _) = parse_events(&batch.events);
        out.push((batch.id, process_records(&embedder, &EmbedPolicy::default(), records).await?));
    }
    Ok(out)
}

fn report(what: &str, latencies: &mut [Duration], records: usize) {
    latencies.sort();
    let total: Duration = latencies.iter().sum();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!(
        "| {what} | {} | {records} | {:.0} | {:.1} | {:.1} |",
        latencies.len(),
        records as f64 / total.as_secs_f64(),
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3
    );
}

async fn one_store(store: &dyn BatchStore, n: usize) -> anyhow::Result<()> {
    let work = batches(n).await?;
    let records = work.iter().map(|(_, rows)| rows.len()).sum();
    let mut latencies = Vec::with_capacity(n);
    for (_, rows) in &work {
        let rows: Vec<_> = rows.iter().collect();
        let started = Instant::now();
        store.upsert_batch(&rows).await?;
        latencies.push(started.elapsed());
    }
    report(store.name(), &mut latencies, records);
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args().nth(1).map(|a| a.parse()).transpose()?.unwrap_or(50);
    let mut config = Config::load(None)?;
    config.stores.graph = GraphKind::Neo4j;
    config.stores.relational = RelationalKind::Postgres;
    config.stores.vector = VectorKind::Pgvector;
    config.stores.cache = CacheKind::Redis;
    config.stores.redis_prefix = format!("apex-load-{:08x}", rand::random::<u32>());
    let stores = apex_ingest::app::open_stores(&config).await?;

    println!("| target | batches | records | records/s | p50 batch ms | p99 batch ms |");
    println!("|---|---|---|---|---|---|");
    for store in stores.all() {
        one_store(store.as_ref(), n).await?;
    }
    let writer = SagaWriter::new(&stores, Metrics::new(), SagaSettings::from(&config.saga));
    let work = batches(n).await?;
    let records = work.iter().map(|(_, rows)| rows.len()).sum();
    let mut latencies = Vec::with_capacity(n);
    for (id, rows) in &work {
        let started = Instant::now();
        writer.write(id, rows, &[]).await?;
        latencies.push(started.elapsed());
    }
    report("saga: all stores in parallel, lock + idempotency", &mut latencies, records);
    full_text_cost(&config, n).await
}

/// A PostgreSQL database of its own, new, on the configured server.
async fn fresh_database(config: &Config, name: &str) -> anyhow::Result<PostgresConfig> {
    let mut admin = PgConnection::connect(&config.postgres.url).await?;
    admin.execute(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))).await?;
    admin.execute(AssertSqlSafe(format!("CREATE DATABASE {name}"))).await?;
    let (server, _) = config.postgres.url.rsplit_once('/').context("a database URL")?;
    Ok(PostgresConfig { url: format!("{server}/{name}"), ..config.postgres.clone() })
}

async fn full_text_cost(config: &Config, n: usize) -> anyhow::Result<()> {
    let (on, off) = (
        fresh_database(config, "apex_load_words_on").await?,
        fresh_database(config, "apex_load_words_off").await?,
    );
    let dims = config.embed.dims;
    let pg_on = PostgresStore::connect(&on, dims, None).await?;
    let pg_off = PostgresStore::connect(&off, dims, None).await?;
    PgConnection::connect(&off.url).await?.execute("ALTER TABLE records DROP COLUMN words").await?;
    let dirs = (tempfile::tempdir()?, tempfile::tempdir()?);
    let lite_on = embedded_records(dirs.0.path()).await?;
    let lite_off = embedded_records(dirs.1.path()).await?;
    let mut lite =
        SqliteConnection::connect(&format!("sqlite://{}", dirs.1.path().join("records.db").display()))
            .await?;
    for trigger in ["records_words_insert", "records_words_update", "records_words_delete"] {
        lite.execute(AssertSqlSafe(format!("DROP TRIGGER {trigger}"))).await?;
    }
    println!(
        "\n| relational store, full-text index | batches | records | records/s | p50 batch ms | p99 batch ms |"
    );
    println!("|---|---|---|---|---|---|");
    let pairs: [(&str, &dyn BatchStore, &dyn BatchStore); 2] =
        [("PostgreSQL", &pg_on, &pg_off), ("SQLite", &lite_on, &lite_off)];
    for (name, with, without) in pairs {
        let work = batches(n).await?;
        let records = work.iter().map(|(_, rows)| rows.len()).sum();
        let (mut on, mut off) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for (_, rows) in &work {
            let rows: Vec<_> = rows.iter().collect();
            for (store, latencies) in [(with, &mut on), (without, &mut off)] {
                let started = Instant::now();
                store.upsert_batch(&rows).await?;
                latencies.push(started.elapsed());
            }
        }
        report(&format!("{name}, with (as migrated)"), &mut on, records);
        report(&format!("{name}, without"), &mut off, records);
    }
    Ok(())
}
