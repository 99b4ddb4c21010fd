//! Fault harness on the real broker and stores. After `scripts/services up`,
//! `eval "$(scripts/services env)"` and `cargo build --release --bin apex-ingest`:
//!
//!     cargo run --release --example chaos -- [--scenarios kill,scale,stores,broker]
//!         [--events 200000] [--rate 1000] [--kills 20] [--outage-secs 60]
//!
//! Each scenario gets fresh topics and a fresh group. Its members are
//! `apex-ingest run` processes on the full layout (Neo4j, PostgreSQL with
//! pgvector, Redis); events (the generator's mix, 2 % poison) are produced at
//! `--rate` while the scenario's faults are injected:
//!
//! - `kill`: two members; `--kills` times one of them gets SIGKILL at a random
//!   moment and is restarted after a random 0–10 s;
//! - `scale`: one member, three from a third of the production on, one again
//!   from two thirds on (the two leave with SIGTERM): real rebalances;
//! - `stores`: two members; PostgreSQL, Neo4j and Redis each stopped for
//!   `--outage-secs` in turn (`scripts/services down`/`up`);
//! - `broker`: two members; the Kafka broker stopped and started again;
//! - `temporal`: `temporal.rollout_percent = 100`, one member and one
//!   `apex-ingest worker`; the worker gets SIGKILL three times (restarted after
//!   0–10 s), then the Temporal server is restarted on its database. The
//!   Temporal path is slow (issue 12), so this scenario produces
//!   `--temporal-events` at `--temporal-rate`.
//!
//! Once production is done and the group has committed every partition to its
//! end, the members stop and a reconciliation reads the input topics and the
//! DLQ topic back and checks every offset: its records in every store (as
//! `verify` checks) or its dead letter in the table (repair letters of failed
//! compensations are counted apart: they name a batch, not an event); record ids held more
//! than once by PostgreSQL or Neo4j; dead letters published to the DLQ topic
//! more than once (same key); completed workflow executions per batch beyond
//! one (Temporal); committed offsets against the end offsets.
//! One table row per scenario; `load/RESULTS.md` keeps them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use apex_ingest::config::{CacheKind, Config, GraphKind, RelationalKind, SourceKind, VectorKind};
use apex_ingest::kafka::group_watch::GroupWatch;
use apex_ingest::kafka::read_back::read_to_end;
use apex_ingest::model::COMPENSATION_FAILED;
use apex_ingest::model::{Format, Origin, RecordId};
use apex_ingest::pipeline::parse::parse;
use apex_ingest::store::DeadLetterFilter;
use apex_ingest::store::neo4j::Neo4jStore;
use clap::{Parser, ValueEnum};
use rand::Rng;
use tokio::process::{Child, Command};

#[path = "traffic.rs"]
mod traffic;

use traffic::{RunTopics, kafka_at};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    Kill,
    Scale,
    Stores,
    Broker,
    Temporal,
}

#[derive(Debug, Parser)]
#[command(about = "Fault harness: members killed, scaled, stores and broker stopped, then a reconciliation")]
struct Args {
    #[arg(long, value_enum, value_delimiter = ',', default_value = "kill,scale,stores,broker,temporal")]
    scenarios: Vec<Scenario>,
    /// Events produced per scenario (Samsara and EDI, 2 % poison).
    #[arg(long, default_value_t = 200_000)]
    events: u64,
    /// Events produced per second while the faults run.
    #[arg(long, default_value_t = 1_000)]
    rate: u32,
    /// SIGKILLs in the `kill` scenario.
    #[arg(long, default_value_t = 20)]
    kills: u32,
    /// How long each store is down in the `stores` scenario.
    #[arg(long, default_value_t = 60)]
    outage_secs: u64,
    /// Record kinds not embedded (`[embed] skip_kinds`), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "VehicleLocation,VehicleStats")]
    skip_kinds: Vec<String>,
    /// The member binary.
    #[arg(long, default_value = "target/release/apex-ingest")]
    bin: PathBuf,
    /// Events of the `temporal` scenario (the Temporal path is slow).
    #[arg(long, default_value_t = 2_000)]
    temporal_events: u64,
    /// Events per second of the `temporal` scenario.
    #[arg(long, default_value_t = 20)]
    temporal_rate: u32,
    /// How long the group may take to commit everything once production ended.
    #[arg(long, default_value_t = 1_800)]
    settle_secs: u64,
}

const POISON: f64 = 0.02;
const EDI_SHARE: f64 = 0.15;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // The broker scenario stops the broker under this process's own clients:
    // their connection errors are expected (the members log to files).
    apex_ingest::telemetry::init("warn,rdkafka=off,librdkafka=off");
    anyhow::ensure!(
        args.bin.exists(),
        "{} not found: build it with `cargo build --release --bin apex-ingest` (or pass --bin)",
        args.bin.display()
    );
    let mut rows = Vec::new();
    for scenario in &args.scenarios {
        let row = run_scenario(&args, *scenario).await?;
        println!("{}", Row::HEADER);
        println!("{row}");
        rows.push(row);
    }
    println!("\n{}", Row::HEADER);
    rows.iter().for_each(|r| println!("{r}"));
    anyhow::ensure!(rows.iter().all(Row::is_clean), "a scenario lost, doubled or left something uncommitted");
    Ok(())
}

/// The member configuration of one scenario: full layout on the real services.
fn scenario_config(args: &Args, topics: &RunTopics, id: &str, dir: &Path) -> anyhow::Result<Config> {
    let mut c = Config::load(None)?;
    c.source.kind = SourceKind::Kafka;
    c.stores.data_dir = dir.to_path_buf();
    c.stores.graph = GraphKind::Neo4j;
    c.stores.relational = RelationalKind::Postgres;
    c.stores.vector = VectorKind::Pgvector;
    c.stores.cache = CacheKind::Redis;
    c.stores.redis_prefix = format!("chaos-{id}");
    c.kafka.group_id = format!("chaos-{id}");
    c.kafka.samsara_topic = topics.samsara.clone();
    c.kafka.edi_topic = topics.edi.clone();
    c.kafka.only_samsara_and_edi();
    c.kafka.dlq_topic = topics.dlq.clone();
    c.kafka.session_timeout = Duration::from_secs(10);
    c.embed.skip_kinds = args.skip_kinds.clone();
    c.temporal.task_queue = format!("chaos-{id}");
    Ok(c)
}

/// The same settings as a file for `apex-ingest run --config` (the services'
/// addresses come from the `APEX_*` variables the members inherit).
fn member_toml(c: &Config) -> String {
    format!(
        "[source]\nkind = \"kafka\"\n\
         [stores]\ndata_dir = {dir:?}\ngraph = \"neo4j\"\nrelational = \"postgres\"\nvector = \"pgvector\"\n\
         cache = \"redis\"\nredis_prefix = {prefix:?}\n\
         [kafka]\ngroup_id = {group:?}\nsamsara_topic = {s:?}\nedi_topic = {e:?}\ndlq_topic = {d:?}\n\
         front_topic = \"\"\nturvo_topic = \"\"\nbank_topic = \"\"\n\
         session_timeout = \"10s\"\n\
         [embed]\nskip_kinds = {skip:?}\n\
         [temporal]\ntask_queue = {queue:?}\nrollout_percent = {percent}\n\
         [metrics]\nlisten = \"\"\n",
        dir = c.stores.data_dir.display().to_string(),
        prefix = c.stores.redis_prefix,
        group = c.kafka.group_id,
        s = c.kafka.samsara_topic,
        e = c.kafka.edi_topic,
        d = c.kafka.dlq_topic,
        skip = c.embed.skip_kinds,
        queue = c.temporal.task_queue,
        percent = c.temporal.rollout_percent,
    )
}

/// The members (`run`) or workers (`worker`) of a scenario, as child processes.
struct Members {
    bin: PathBuf,
    command: &'static str,
    config: PathBuf,
    logs: PathBuf,
    running: Vec<Option<Child>>,
    started: usize,
}

impl Members {
    fn start(&mut self, slot: usize) -> anyhow::Result<()> {
        self.started += 1;
        let log = std::fs::File::create(self.logs.join(format!("{}-{}.log", self.command, self.started)))?;
        let child = Command::new(&self.bin)
            .args([self.command, "--config"])
            .arg(&self.config)
            .env("RUST_LOG", "warn,apex_ingest=info")
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", self.bin.display()))?;
        if slot == self.running.len() {
            self.running.push(Some(child));
        } else {
            self.running[slot] = Some(child);
        }
        Ok(())
    }

    async fn kill(&mut self, slot: usize) -> anyhow::Result<()> {
        if let Some(mut child) = self.running[slot].take() {
            child.kill().await?;
        }
        Ok(())
    }

    /// SIGTERM: the member drains, commits and leaves the group.
    async fn terminate(&mut self, slot: usize) -> anyhow::Result<()> {
        if let Some(mut child) = self.running[slot].take() {
            let pid = child.id().context("member already gone")?.to_string();
            Command::new("kill").args(["-TERM", &pid]).status().await?;
            let status = tokio::time::timeout(Duration::from_secs(120), child.wait())
                .await
                .context("member did not stop within 120 s of SIGTERM")??;
            anyhow::ensure!(status.success(), "member exited with {status} (see {})", self.logs.display());
        }
        Ok(())
    }

    async fn terminate_all(&mut self) -> anyhow::Result<()> {
        for slot in 0..self.running.len() {
            self.terminate(slot).await?;
        }
        Ok(())
    }
}

/// Stops `service` with `scripts/services down`, and after `outage` starts it again.
async fn stop_for(service: &str, outage: Duration) -> anyhow::Result<()> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/services");
    for action in ["down", "up"] {
        let status = Command::new(&script).args([action, service]).status().await?;
        anyhow::ensure!(status.success(), "scripts/services {action} {service} failed");
        if action == "down" {
            tokio::time::sleep(outage).await;
        }
    }
    Ok(())
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

/// Injects the scenario's faults while production runs; returns what it did.
async fn inject(
    args: &Args,
    scenario: Scenario,
    members: &mut Members,
    workers: &mut Members,
) -> anyhow::Result<String> {
    let (events, rate) = volume(args, scenario);
    let produce_secs = events as f64 / f64::from(rate.max(1));
    let mut rng = rand::rng();
    Ok(match scenario {
        Scenario::Kill => {
            members.start(0)?;
            members.start(1)?;
            let mean_gap = produce_secs / f64::from(args.kills.max(1));
            for _ in 0..args.kills {
                tokio::time::sleep(secs(mean_gap * rng.random_range(0.5..1.5))).await;
                let slot = rng.random_range(0..2);
                members.kill(slot).await?;
                tokio::time::sleep(secs(rng.random_range(0.0..10.0))).await;
                members.start(slot)?;
            }
            format!("{} SIGKILLs of 2 members, restarts after 0-10 s", args.kills)
        }
        Scenario::Scale => {
            members.start(0)?;
            tokio::time::sleep(secs(produce_secs / 3.0)).await;
            members.start(1)?;
            members.start(2)?;
            tokio::time::sleep(secs(produce_secs / 3.0)).await;
            members.terminate(2).await?;
            members.terminate(1).await?;
            "1 → 3 → 1 members".into()
        }
        Scenario::Stores => {
            members.start(0)?;
            members.start(1)?;
            let outage = args.outage_secs as f64;
            let gap = ((produce_secs - 3.0 * outage) / 4.0).max(5.0);
            for service in ["postgres", "neo4j", "redis"] {
                tokio::time::sleep(secs(gap)).await;
                stop_for(service, secs(outage)).await?;
            }
            format!("PostgreSQL, Neo4j, Redis each down {outage:.0} s")
        }
        Scenario::Broker => {
            members.start(0)?;
            members.start(1)?;
            tokio::time::sleep(secs(produce_secs / 2.0)).await;
            stop_for("kafka", Duration::from_secs(10)).await?;
            "broker down 10 s, restarted".into()
        }
        Scenario::Temporal => {
            members.start(0)?;
            workers.start(0)?;
            for _ in 0..3 {
                tokio::time::sleep(secs(produce_secs / 4.0)).await;
                workers.kill(0).await?;
                tokio::time::sleep(secs(rng.random_range(0.0..10.0))).await;
                workers.start(0)?;
            }
            tokio::time::sleep(secs(produce_secs / 8.0)).await;
            stop_for("temporal", Duration::from_secs(5)).await?;
            "worker SIGKILLed 3 times, Temporal server restarted".into()
        }
    })
}

/// Events and rate of a scenario.
fn volume(args: &Args, scenario: Scenario) -> (u64, u32) {
    match scenario {
        Scenario::Temporal => (args.temporal_events, args.temporal_rate),
        _ => (args.events, args.rate),
    }
}

async fn run_scenario(args: &Args, scenario: Scenario) -> anyhow::Result<Row> {
    let started = Instant::now();
    let id = format!("{scenario:?}-{:08x}", rand::random::<u32>()).to_lowercase();
    let dir = tempfile::tempdir()?;
    let brokers = Config::load(None)?.kafka.brokers;
    let topics = RunTopics::create(&brokers, "chaos", &id).await?;
    let mut config = scenario_config(args, &topics, &id, dir.path())?;
    if scenario == Scenario::Temporal {
        config.temporal.rollout_percent = 100;
    }
    let (events, rate) = volume(args, scenario);
    let config_file = dir.path().join("member.toml");
    std::fs::write(&config_file, member_toml(&config))?;
    let logs = PathBuf::from(format!("{}/.state/chaos/{id}", env!("CARGO_MANIFEST_DIR")));
    std::fs::create_dir_all(&logs)?;
    println!("\n## scenario {scenario:?} ({id}): {events} events at {rate}/s; logs in {}", logs.display());

    let streams = traffic::streams(&topics, events, EDI_SHARE, rand::random::<u32>().into());
    let producing = {
        let brokers = brokers.clone();
        tokio::spawn(async move { traffic::produce_streams(&brokers, streams.to_vec(), rate, POISON).await })
    };
    let process = |command| Members {
        bin: args.bin.clone(),
        command,
        config: config_file.clone(),
        logs: logs.clone(),
        running: Vec::new(),
        started: 0,
    };
    let (mut members, mut workers) = (process("run"), process("worker"));
    let faults = inject(args, scenario, &mut members, &mut workers).await?;
    producing.await??;
    let watch = GroupWatch::new(&kafka_at(&brokers), &config.kafka.group_id)?;
    let inputs = [topics.samsara.as_str(), topics.edi.as_str()];
    let deadline = Instant::now() + Duration::from_secs(args.settle_secs);
    loop {
        // A broker just restarted may not answer yet: ask again.
        if let Ok((end, committed)) = watch.progress(&inputs)
            && end as u64 == events
            && committed == end
        {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "{id}: not committed to the end within --settle-secs");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    members.terminate_all().await?;
    workers.terminate_all().await?;
    let mut row = reconcile(&config, &topics, &watch).await?;
    if scenario == Scenario::Temporal {
        row.executions_beyond_one = Some(executions_beyond_one(&config).await?);
    }
    row.scenario = format!("{scenario:?}");
    row.faults = faults;
    row.secs = started.elapsed().as_secs_f64();
    Ok(row)
}

/// One scenario's reconciliation.
#[derive(Debug, Default)]
struct Row {
    scenario: String,
    faults: String,
    produced: usize,
    /// Offsets whose records are in every store, or whose dead letter is in the table once.
    exactly_once: usize,
    lost: usize,
    /// PostgreSQL rows and Neo4j event nodes per record id beyond one.
    duplicated_rows: i64,
    duplicated_nodes: i64,
    /// Dead letters: distinct ids in the DLQ topic, and messages beyond one per id.
    dlq_letters: usize,
    dlq_repeats: usize,
    /// `compensation_failed` letters: a store kept part of a failed batch for a while.
    repair_letters: usize,
    poison: usize,
    verify_clean: bool,
    committed_at_end: bool,
    /// Completed batch workflow executions per batch beyond one (Temporal only).
    executions_beyond_one: Option<usize>,
    secs: f64,
}

impl Row {
    const HEADER: &str = "| scenario | faults | events produced | offsets → exactly one record set or dead letter | lost | rows / nodes per id beyond one | DLQ topic: letters (poison events), repeats of one id | repair letters | workflow executions per batch beyond one | verify | committed = end | run time |\n|---|---|---|---|---|---|---|---|---|---|---|---|";

    fn is_clean(&self) -> bool {
        self.lost == 0
            && self.exactly_once == self.produced
            && self.duplicated_rows == 0
            && self.duplicated_nodes == 0
            && self.dlq_letters == self.poison
            && self.verify_clean
            && self.committed_at_end
            && self.executions_beyond_one.unwrap_or(0) == 0
    }
}

impl std::fmt::Display for Row {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "| {} | {} | {} | {} | {} | {} / {} | {} ({}), {} | {} | {} | {} | {} | {:.0} s |",
            self.scenario,
            self.faults,
            self.produced,
            self.exactly_once,
            self.lost,
            self.duplicated_rows,
            self.duplicated_nodes,
            self.dlq_letters,
            self.poison,
            self.dlq_repeats,
            self.repair_letters,
            self.executions_beyond_one.map_or("-".into(), |n| n.to_string()),
            if self.verify_clean { "clean" } else { "NOT CLEAN" },
            if self.committed_at_end { "yes" } else { "NO" },
            self.secs
        )
    }
}

const READ_BACK: Duration = Duration::from_secs(300);

async fn reconcile(config: &Config, topics: &RunTopics, watch: &GroupWatch) -> anyhow::Result<Row> {
    let brokers = &config.kafka.brokers;
    let mut messages = read_to_end(&kafka_at(brokers), &topics.samsara, Format::Samsara, READ_BACK)?;
    messages.extend(read_to_end(&kafka_at(brokers), &topics.edi, Format::Edi, READ_BACK)?);
    let outcomes: Vec<(Origin, Option<Vec<RecordId>>)> = messages
        .iter()
        .map(|m| (m.origin.clone(), parse(m).ok().map(|rs| rs.into_iter().map(|r| r.id).collect())))
        .collect();
    let ids: Vec<RecordId> = outcomes
        .iter()
        .flat_map(|(_, ids)| ids.iter().flatten().cloned())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();

    let stores = apex_ingest::app::open_stores(config).await?;
    let diff =
        apex_ingest::verify::check_ids(&stores, &ids, &apex_ingest::verify::Expectations::of(config)).await?;
    let missing: BTreeSet<&RecordId> = diff.missing.values().flatten().collect();
    let filter = DeadLetterFilter { reason: None, include_replayed: true, limit: usize::MAX >> 1 };
    let mut letters: HashMap<Origin, usize> = HashMap::new();
    let mut repair_letters = 0;
    for d in stores.relational.dead_letters(&filter).await? {
        if topics.samsara != d.letter.origin.topic && topics.edi != d.letter.origin.topic {
            continue;
        }
        // A repair letter names a batch whose compensation failed (its origin is
        // the batch's first record), not a poison event.
        if d.letter.reason == COMPENSATION_FAILED {
            repair_letters += 1;
        } else {
            *letters.entry(d.letter.origin).or_default() += 1;
        }
    }
    let exactly_once = outcomes
        .iter()
        .filter(|(origin, ids)| match ids {
            Some(ids) => ids.iter().all(|id| !missing.contains(id)) && !letters.contains_key(origin),
            None => letters.get(origin) == Some(&1),
        })
        .count();
    let poison = outcomes.iter().filter(|(_, ids)| ids.is_none()).count();

    let dlq = read_to_end(&kafka_at(brokers), &topics.dlq, Format::Samsara, READ_BACK)?;
    let mut per_key: BTreeMap<Option<String>, usize> = BTreeMap::new();
    for m in &dlq {
        *per_key.entry(m.key.clone()).or_default() += 1;
    }
    let (end, committed) = watch.progress(&[topics.samsara.as_str(), topics.edi.as_str()])?;
    Ok(Row {
        produced: messages.len(),
        exactly_once,
        lost: messages.len() - exactly_once,
        duplicated_rows: duplicated_rows(config, &ids).await?,
        duplicated_nodes: duplicated_nodes(config, &ids).await?,
        dlq_letters: per_key.len(),
        dlq_repeats: dlq.len() - per_key.len(),
        repair_letters,
        poison,
        verify_clean: diff.is_clean(),
        committed_at_end: committed == end,
        ..Row::default()
    })
}

/// PostgreSQL `records` rows per id beyond one (its primary key says 0; counted anyway).
async fn duplicated_rows(config: &Config, ids: &[RecordId]) -> anyhow::Result<i64> {
    let pool = sqlx::PgPool::connect(&config.postgres.url).await?;
    let mut extra = 0;
    for chunk in ids.chunks(10_000) {
        let chunk: Vec<&str> = chunk.iter().map(RecordId::as_str).collect();
        let n: i64 =
            sqlx::query_scalar("SELECT count(*) - count(DISTINCT id) FROM records WHERE id = ANY($1)")
                .bind(&chunk)
                .fetch_one(&pool)
                .await?;
        extra += n;
    }
    Ok(extra)
}

/// Neo4j `Event` nodes per record id beyond one.
async fn duplicated_nodes(config: &Config, ids: &[RecordId]) -> anyhow::Result<i64> {
    let neo = Neo4jStore::connect(&config.neo4j).await?;
    let mut extra = 0;
    for chunk in ids.chunks(10_000) {
        let keys: Vec<String> = chunk.iter().map(|i| i.as_str().to_owned()).collect();
        extra += neo
            .count(
                "MATCH (e:Event) WHERE e.key IN $ids RETURN count(e) - count(DISTINCT e.key) AS n",
                vec![("ids", keys.into())],
            )
            .await?;
    }
    Ok(extra)
}

/// Batch workflows of the scenario's task queue that completed more than
/// once (a batch's workflow id is derived from its events), read with the
/// `temporal` CLI `scripts/services` installs.
async fn executions_beyond_one(config: &Config) -> anyhow::Result<usize> {
    let cli = Path::new(env!("CARGO_MANIFEST_DIR")).join(".state/venv/bin/temporal");
    let query = format!(
        "TaskQueue = '{}' AND WorkflowType = 'BatchIngestWorkflow' AND ExecutionStatus = 'Completed'",
        config.temporal.task_queue
    );
    let address = config.temporal.url.trim_start_matches("http://").to_owned();
    let out = Command::new(&cli)
        .args(["workflow", "list", "--address", &address, "--namespace", &config.temporal.namespace])
        .args(["--query", &query, "--limit", "1000000", "--output", "json"])
        .output()
        .await
        .with_context(|| {
            format!("running {} (installed by `scripts/services up temporal`)", cli.display())
        })?;
    anyhow::ensure!(out.status.success(), "temporal workflow list: {}", String::from_utf8_lossy(&out.stderr));
    let listed: Vec<serde_json::Value> =
        serde_json::from_slice(&out.stdout).context("temporal workflow list output")?;
    let ids: BTreeSet<&str> = listed.iter().filter_map(|w| w["execution"]["workflowId"].as_str()).collect();
    anyhow::ensure!(
        !ids.is_empty(),
        "no completed batch workflow on task queue {}",
        config.temporal.task_queue
    );
    Ok(listed.len() - ids.len())
}
