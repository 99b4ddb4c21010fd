//! Write throughput of each real store and of the whole saga, at batches of
//! 100 records: records/s and p50/p99 batch latency. Needs the services
//! (`scripts/services up`). Run:
//!
//!     cargo run --release --example store_writes -- [batches]
//!
//! Each batch holds records no earlier run wrote (a random generator seed), so
//! every write is a real insert, not a no-op upsert. Then where a PostgreSQL
//! write goes: the same batches (every record embedded, then all but the
//! pings, as `[embed] skip_kinds` lets a fleet run), in turn, into databases of their own with parts of the records table taken
//! out (the full-text index, the HNSW index, both, every index but the
//! primary key), with the write-ahead log each writes per record and the
//! server's durability settings; and what the full-text index costs SQLite
//! (two files, its triggers dropped in one).

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
use apex_ingest::store::postgres::{HnswParams, PostgresStore};
use apex_ingest::store::{BatchStore, embedded_records};

const EVENTS_PER_BATCH: usize = 100;

async fn batches(n: usize, policy: &EmbedPolicy) -> anyhow::Result<Vec<(String, Vec<ProcessedRecord>)>> {
    let mut fleet = Fleet::new(GeneratorSettings::clean(rand::random()));
    let embedder = HashingEmbedder::new(384);
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let batch = Batch::new(fleet.by_ref().take(EVENTS_PER_BATCH).collect(), CloseReason::Size);
        let (records, _) = parse_events(&batch.events);
        out.push((batch.id, process_records(&embedder, policy, records).await?));
    }
    Ok(out)
}

/// A table row: batches, records, records/s, p50 and p99 batch ms.
fn row(what: &str, latencies: &mut [Duration], records: usize) -> String {
    latencies.sort();
    let total: Duration = latencies.iter().sum();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    format!(
        "| {what} | {} | {records} | {:.0} | {:.1} | {:.1} |",
        latencies.len(),
        records as f64 / total.as_secs_f64(),
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3
    )
}

fn report(what: &str, latencies: &mut [Duration], records: usize) {
    println!("{}", row(what, latencies, records));
}

async fn one_store(store: &dyn BatchStore, n: usize) -> anyhow::Result<()> {
    let work = batches(n, &EmbedPolicy::default()).await?;
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
    let work = batches(n, &EmbedPolicy::default()).await?;
    let records = work.iter().map(|(_, rows)| rows.len()).sum();
    let mut latencies = Vec::with_capacity(n);
    for (id, rows) in &work {
        let started = Instant::now();
        writer.write(id, rows, &[]).await?;
        latencies.push(started.elapsed());
    }
    report("saga: all stores in parallel, lock + idempotency", &mut latencies, records);
    let pings = ["VehicleLocation".to_owned(), "VehicleStats".to_owned()];
    for (embedded, policy) in
        [("every record", EmbedPolicy::default()), ("all but pings", EmbedPolicy::except(&pings))]
    {
        postgres_parts(&config, n, embedded, &policy).await?;
    }
    sqlite_full_text_cost(n).await
}

/// A PostgreSQL database of its own, new, on the configured server.
async fn fresh_database(config: &Config, name: &str) -> anyhow::Result<PostgresConfig> {
    let mut admin = PgConnection::connect(&config.postgres.url).await?;
    admin.execute(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))).await?;
    admin.execute(AssertSqlSafe(format!("CREATE DATABASE {name}"))).await?;
    let (server, _) = config.postgres.url.rsplit_once('/').context("a database URL")?;
    Ok(PostgresConfig { url: format!("{server}/{name}"), ..config.postgres.clone() })
}

/// Drops every index of `records` whose name is `LIKE` the pattern.
fn drop_indexes(like: &str) -> String {
    format!(
        "DO $$ DECLARE i text; BEGIN FOR i IN SELECT indexname FROM pg_indexes \
         WHERE tablename = 'records' AND indexname LIKE '{like}' AND indexname <> 'records_pkey' \
         LOOP EXECUTE 'DROP INDEX ' || quote_ident(i); END LOOP; END $$"
    )
}

/// The parts of the records table taken out, by what is left.
fn variants() -> [(&'static str, Vec<String>); 5] {
    let words = "ALTER TABLE records DROP COLUMN words".to_owned();
    let hnsw = drop_indexes("records_embedding%");
    [
        ("as migrated", vec![]),
        ("without the full-text index", vec![words.clone()]),
        ("without the HNSW index", vec![hnsw.clone()]),
        ("without either", vec![words.clone(), hnsw]),
        ("primary key only", vec![words, drop_indexes("%")]),
    ]
}

/// The same batches, embedded as `policy` says, into each variant in turn.
async fn postgres_parts(
    config: &Config,
    n: usize,
    embedded: &str,
    policy: &EmbedPolicy,
) -> anyhow::Result<()> {
    let mut admin = PgConnection::connect(&config.postgres.url).await?;
    let mut settings = Vec::new();
    for name in ["fsync", "synchronous_commit", "full_page_writes", "shared_buffers", "max_wal_size"] {
        let value: String =
            sqlx::query_scalar(AssertSqlSafe(format!("SHOW {name}"))).fetch_one(&mut admin).await?;
        settings.push(format!("{name}={value}"));
    }
    println!("\nPostgreSQL {}, embedded: {embedded}", settings.join(" "));
    let hnsw =
        HnswParams { m: config.postgres.hnsw_m, ef_construction: config.postgres.hnsw_ef_construction };
    let mut stores = Vec::new();
    for (i, (what, statements)) in variants().into_iter().enumerate() {
        let db = fresh_database(config, &format!("apex_load_parts_{i}")).await?;
        let store = PostgresStore::connect(&db, config.embed.dims, Some(hnsw)).await?;
        let mut conn = PgConnection::connect(&db.url).await?;
        for statement in statements {
            conn.execute(AssertSqlSafe(statement)).await?;
        }
        stores.push((what, store, Vec::with_capacity(n), 0_i64, Vec::with_capacity(n)));
    }
    let work = batches(n, policy).await?;
    let records: usize = work.iter().map(|(_, rows)| rows.len()).sum();
    let lsn = "SELECT pg_current_wal_insert_lsn()::text";
    for (_, rows) in &work {
        let rows: Vec<_> = rows.iter().collect();
        for (_, store, latencies, wal, sizes) in stores.iter_mut() {
            let before: String = sqlx::query_scalar(lsn).fetch_one(&mut admin).await?;
            let started = Instant::now();
            store.upsert_batch(&rows).await?;
            latencies.push(started.elapsed());
            sizes.push(rows.len());
            let after: String = sqlx::query_scalar(lsn).fetch_one(&mut admin).await?;
            let bytes: i64 = sqlx::query_scalar("SELECT pg_wal_lsn_diff($1::pg_lsn, $2::pg_lsn)::bigint")
                .bind(&after)
                .bind(&before)
                .fetch_one(&mut admin)
                .await?;
            *wal += bytes;
        }
    }
    println!(
        "\n| PostgreSQL records table | batches | records | records/s | p50 batch ms | p99 batch ms \
         | WAL bytes a record | records/s, first / last quarter |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (what, _, latencies, wal, sizes) in stores.iter_mut() {
        // As the table fills: the rate of the first and of the last quarter of the batches.
        let quarter = (latencies.len() / 4).max(1);
        let rate = |l: &[Duration], s: &[usize]| {
            s.iter().sum::<usize>() as f64 / l.iter().sum::<Duration>().as_secs_f64()
        };
        let (first, last) = (
            rate(&latencies[..quarter], &sizes[..quarter]),
            rate(&latencies[latencies.len() - quarter..], &sizes[sizes.len() - quarter..]),
        );
        let wal = *wal as f64 / records as f64;
        println!("{} {wal:.0} | {first:.0} / {last:.0} |", row(what, latencies, records));
    }
    Ok(())
}

async fn sqlite_full_text_cost(n: usize) -> anyhow::Result<()> {
    let dirs = (tempfile::tempdir()?, tempfile::tempdir()?);
    let with = embedded_records(dirs.0.path()).await?;
    let without = embedded_records(dirs.1.path()).await?;
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
    let work = batches(n, &EmbedPolicy::default()).await?;
    let records = work.iter().map(|(_, rows)| rows.len()).sum();
    let (mut on, mut off) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for (_, rows) in &work {
        let rows: Vec<_> = rows.iter().collect();
        for (store, latencies) in [(&with, &mut on), (&without, &mut off)] {
            let started = Instant::now();
            store.upsert_batch(&rows).await?;
            latencies.push(started.elapsed());
        }
    }
    report("SQLite, with (as migrated)", &mut on, records);
    report("SQLite, without", &mut off, records);
    Ok(())
}
