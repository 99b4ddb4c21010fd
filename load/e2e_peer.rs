//! The peer of `load/e2e`: Redpanda Connect moving the Samsara topic into
//! PostgreSQL. Included by `e2e.rs` with `#[path]`.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use apex_ingest::batch::Batch;
use apex_ingest::config::Config;
use apex_ingest::kafka::group_watch::GroupWatch;
use apex_ingest::model::Format;
use apex_ingest::pipeline::parse_events;

use super::Run;

/// Runs the peer on the run's Samsara topic until its table holds every
/// event, and prints its rate.
pub async fn run(
    bin: &std::path::Path,
    run: &Run,
    config: &Config,
    batches: &[Batch],
    producer: &mut Option<tokio::task::JoinHandle<anyhow::Result<Duration>>>,
) -> anyhow::Result<()> {
    anyhow::ensure!(producer.is_none(), "--peer needs --rate 0 (the topic produced before it starts)");
    // One row per distinct event id (the generator repeats a few, as real feeds do).
    let mut ids = std::collections::HashSet::new();
    for b in batches.iter().filter(|b| b.events.first().is_some_and(|e| e.format == Format::Samsara)) {
        let (records, dead) = parse_events(&b.events);
        anyhow::ensure!(dead.is_empty(), "--peer needs --poison 0 (its mapping has no dead-letter path)");
        ids.extend(records.into_iter().map(|r| r.id));
    }
    let expected = ids.len() as i64;
    let pool = sqlx::PgPool::connect(&config.postgres.url).await?;
    let table = format!("peer_events_{}", run.id);
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE {table} (id text PRIMARY KEY, vehicle text, type text, time timestamptz, body jsonb)"
    )))
    .execute(&pool)
    .await?;
    let dsn = format!(
        "{}{}sslmode=disable",
        config.postgres.url,
        if config.postgres.url.contains('?') { "&" } else { "?" }
    );
    let yaml = format!(
        r#"http:
  enabled: false
logger:
  level: WARN
input:
  kafka_franz:
seed_brokers: [ "{brokers}" ]
topics: [ "{topic}" ]
consumer_group: "peer-{id}"
batching:
  count: 100
  period: 1s
output:
  sql_insert:
driver: postgres
dsn: "{dsn}"
table: {table}
columns: [ id, vehicle, type, time, body ]
args_mapping: 'root = [ this.eventId, this.data.vehicle.id.or(""), this.eventType, this.eventTime, content().string() ]'
suffix: ON CONFLICT (id) DO NOTHING
max_in_flight: 4
batching:
  count: 100
  period: 1s
"#,
        brokers = run.brokers,
        topic = run.samsara,
        id = run.id,
    );
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("peer.yaml");
    std::fs::write(&file, yaml)?;
    let log = std::fs::File::create(dir.path().join("peer.log"))?;
    let started = Instant::now();
    let mut child = tokio::process::Command::new(bin)
        .arg("run")
        .arg(&file)
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    // Done when every row is in, or when the peer has committed its group
    // to the end offsets and its table stopped growing (rows it lost).
    let count = format!("SELECT count(*) FROM {table}");
    let watcher = GroupWatch::new(&super::kafka_at(&run.brokers), &format!("peer-{}", run.id))?;
    let (mut last, mut stable_since) = (-1, Instant::now());
    let (n, secs) = loop {
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(count.clone())).fetch_one(&pool).await?;
        if n != last {
            (last, stable_since) = (n, Instant::now());
        }
        if n >= expected {
            break (n, started.elapsed().as_secs_f64());
        }
        let (end, committed) = watcher.progress(&[run.samsara.as_str()])?;
        if committed == end && stable_since.elapsed() > Duration::from_secs(3) {
            break (n, (stable_since - started).as_secs_f64());
        }
        // A batch it holds back and never writes (it once waited for a
        // full output batch that the partition's tail could not fill).
        anyhow::ensure!(
            stable_since.elapsed() < Duration::from_secs(60),
            "peer: stuck at {n} of {expected} rows for 60 s, its group at {committed} of {end} offsets"
        );
        if let Some(status) = child.try_wait()? {
            let log = std::fs::read_to_string(dir.path().join("peer.log")).unwrap_or_default();
            anyhow::bail!("Redpanda Connect exited ({status}) with {n} of {expected} rows:\n{log}");
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(1800),
            "peer: {n} of {expected} rows after 30 min"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    child.kill().await?;
    println!("\n## peer: Redpanda Connect, Samsara topic → PostgreSQL (one row per event)");
    println!("| measure | value |\n|---|---|");
    println!("| rows expected / in the table | {expected} / {n} |");
    if n < expected {
        println!(
            "| **rows lost** (its group committed to the end offsets without them) | **{}** |",
            expected - n
        );
    }
    println!("| wall time, process start → last row in the table | {secs:.2} s |");
    println!("| **rows/s** | **{:.0}** |", n as f64 / secs);
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE {table}"))).execute(&pool).await?;
    Ok(())
}
