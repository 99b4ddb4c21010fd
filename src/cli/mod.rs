//! The `apex-ingest` commands, one file each; `main.rs` parses and dispatches.

pub mod codec;
pub mod demo;
pub mod dlq;
pub mod edge;
pub mod pollers;
pub mod produce;
pub mod query;
pub mod run;
pub mod serve;
pub mod top;
pub mod topics;
pub mod verify;
pub mod worker;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::metrics::{self, Metrics};
use crate::telemetry;
use codec::CodecArgs;
use demo::DemoArgs;
use dlq::DlqAction;
use pollers::PollersAction;
use produce::ProduceArgs;
use query::QueryArgs;
use serve::ServeArgs;
use top::TopArgs;
use topics::TopicsAction;
use worker::WorkerAction;

#[derive(Parser)]
#[command(
    name = "apex-ingest",
    version,
    about = "Turns Samsara telemetry and carrier EDI into durable, queryable memory",
    long_about = "Turns Samsara telemetry and carrier EDI into durable, queryable memory.\n\n\
        Events are collected in batches (100 events or 30 s), parsed, turned into graph \
        entities and embeddings, and written to every store through one batched saga. \
        Poison events go to the dead-letter table with their reason.\n\n\
        Configuration: a TOML file (--config) plus APEX_<SECTION>_<KEY> environment \
        variables, e.g. APEX_BATCH_MAX_EVENTS=50; other APEX_* variables (Kubernetes \
        service links such as APEX_EDGE_PORT) are ignored with a warning. \
        Logs: RUST_LOG, APEX_LOG_FORMAT=json."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Runs the whole pipeline once on generated traffic with embedded stores and
    /// prints a summary that reconciles events in against every store.
    ///
    /// Needs nothing installed. Its data lands in --data-dir (default ./apex-demo),
    /// whose store files are replaced at every run.
    Demo(DemoArgs),
    /// Runs the long-lived service from a config file: source, batcher,
    /// orchestrator and stores as configured, with /metrics, /healthz and /readyz.
    ///
    /// Batches take the direct path, or with temporal.rollout_percent above 0 that
    /// share of them (by a stable hash of the batch id) runs as a BatchIngestWorkflow
    /// on Temporal; `apex-ingest worker` processes must run it. A batch is
    /// committed only once it is written, on either path.
    ///
    /// With source.kind = "kafka" it is one member of the [kafka] consumer group:
    /// offsets are committed only for fully written batches, partitions pause at
    /// batch.max_in_flight, and poison records also go to kafka.dlq_topic.
    /// Stops at the end of a finite source, or at SIGTERM / Ctrl-C: stops fetching,
    /// gives batches in flight batch.drain_deadline, commits and leaves the group.
    ///
    /// Beside the pipeline it runs the configured pollers ([poll]: Plaid, HubSpot,
    /// QuickBooks, SONAR and the Samsara feed, each on when its credential
    /// variable is named, e.g. poll.hubspot.token_env): every poll.interval
    /// each fetches what changed since its cursor, produces it to its topic and
    /// only then saves the cursor in the relational store.
    Run {
        /// TOML configuration file; APEX_* environment variables override it.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Runs a Temporal worker: polls temporal.task_queue and runs batch workflows,
    /// their child workflows and the activities (parse, extract_entities, embed,
    /// process, write_batch) against the configured stores. With
    /// poll.on_temporal = true it also runs the pollers' PollingWorkflows and
    /// their poll_step activity for the sources whose credentials it has. It
    /// answers questions asked with `query --via temporal` (QueryWorkflow,
    /// ComplexQueryWorkflow) from the same stores, caching answers as `serve`
    /// does ([serve] cache_ttl).
    ///
    /// Concurrency: temporal.max_concurrent_workflow_tasks and
    /// temporal.max_concurrent_activities; reports temporal.build_id. At SIGTERM /
    /// Ctrl-C it stops polling and lets running tasks finish; workflows it was
    /// running resume on any other worker.
    ///
    /// With temporal.deployment_name it is version temporal.build_id of that
    /// Worker Deployment, versioning on: it takes only its version's workflows.
    /// `worker rollout` moves new workflows between versions: `status`,
    /// `ramp BUILD PERCENT`, `promote BUILD`, `rollback`.
    Worker {
        /// TOML configuration file; APEX_* environment variables override it.
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        action: Option<WorkerAction>,
    },
    /// Checks that every record id is present in every configured store and
    /// prints the differences; exits non-zero when there are any.
    ///
    /// Without --since/--until it compares the stores' whole id sets; with them
    /// it checks the records whose event time falls in [since, until).
    Verify {
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Start of the event-time window (RFC 3339, e.g. 2026-11-20T00:00:00Z).
        #[arg(long, requires = "until")]
        since: Option<chrono::DateTime<chrono::Utc>>,
        /// End of the event-time window (exclusive).
        #[arg(long, requires = "since")]
        until: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// Creates or updates the Kafka topics defined in topics/ and lists topics.
    Topics {
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        action: TopicsAction,
    },
    /// Writes synthetic Samsara or EDI traffic to a Kafka topic (load generator).
    ///
    /// Keys are vehicle ids (Samsara) or sender SCACs (EDI), so a key's events
    /// stay in order in one partition. Waits until the broker acknowledged all.
    Produce(ProduceArgs),
    /// Runs the webhook edge: POST /webhooks/{samsara,front,turvo,generic} on
    /// edge.listen, beside /metrics, /healthz and /readyz (ready while the broker is reachable).
    ///
    /// Each provider's route is on when edge.<provider>.secret_env names the
    /// environment variables holding its secrets (two during a rotation), or
    /// edge.<provider>.secret_files names files holding them (a mounted Secret,
    /// read again every edge.secret_refresh: rotated without a restart).
    /// A request is authenticated as its provider documents it (401 if not; a
    /// timestamp outside edge.timestamp_tolerance too), deduplicated by its event
    /// id (a re-send answers 200 and produces nothing), and produced to its topic;
    /// 200 only after the broker acknowledged (503 + Retry-After when it cannot).
    /// A signed body that is not a JSON object goes to kafka.dlq_topic (400).
    Edge {
        /// TOML configuration file; APEX_* environment variables override it.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Runs the pollers on Temporal: starts their workflows, shows their counts.
    ///
    /// With poll.on_temporal = true the workers (`apex-ingest worker`, with the
    /// sources' credentials) run one PollingWorkflow per source: a poll every
    /// poll.interval on a durable timer, the cursor in the workflow, a poll_step
    /// activity of 5 attempts honouring the provider's Retry-After, and a
    /// continue-as-new every poll.iterations_per_run polls.
    Pollers {
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        action: PollersAction,
    },
    /// Answers a question from the stores, each hit with its citation.
    ///
    /// The question is read by rules into an intent: a vehicle's position at
    /// a time, a carrier's late shipments (delivered after their 204's
    /// appointment), events of a kind in a window and near a place, or
    /// everything about a PRO/BOL or vehicle; anything else is answered by
    /// meaning from the vector store. Every value goes to the store as a bound
    /// parameter. Each hit cites its store, record id, the source's own ids,
    /// the topic/partition/offset it came from, event and ingest time, and the
    /// score of each retriever that found it.
    Query(QueryArgs),
    /// Serves the Temporal remote codec endpoint (POST /decode, /encode) so the
    /// Temporal Web UI and CLI show the JSON of zstd-compressed payloads.
    ///
    /// Point the UI at it with the dev server's --ui-codec-endpoint (the
    /// `scripts/services` dev server does) or a cluster's codec setting; the
    /// CLI with `temporal workflow show --codec-endpoint http://127.0.0.1:8081`.
    Codec(CodecArgs),
    /// Serves the questions of `query` over HTTP: POST /v1/query on serve.listen,
    /// beside /metrics, /healthz and /readyz.
    ///
    /// The body is JSON: {"question": "...", "as_of": RFC 3339, "ingested_before":
    /// RFC 3339, "k": 1-1000, "filters": {...}}, answered with the JSON of
    /// `query --json`, kept serve.cache_ttl under a watermark every write moves
    /// (x-apex-cache: hit or miss). Only
    /// bearers of a serve.tokens token are answered (each "env:VARIABLE" or
    /// "file:/path", files read again every serve.secret_refresh: rotated without
    /// a restart), each token at most serve.requests_per_second (429 beyond).
    /// Bad input is a 400 that names what is wrong; a body over
    /// serve.max_body_bytes 413; a store failure or serve.timeout 503.
    Serve(ServeArgs),
    /// A live view of members, workers and edges read from their /metrics:
    /// events in and written with rates, batches in flight, lag and paused
    /// partitions, per-store write latency p50/p99 (of the last interval),
    /// retries and breakers, dead letters and webhook rejections by reason,
    /// Temporal's stalled batches. Troubled components sort first; yellow and
    /// red mark what is wrong. q, Esc or Ctrl-C quits; fits 80 columns.
    ///
    /// Example: `apex-ingest top member-0=10.0.0.7:9464 edge=10.0.0.9:8088`, or
    /// `apex-ingest top --config apex.toml` for what that configuration serves.
    Top(TopArgs),
    /// Lists, shows and replays dead letters (events that could not be parsed or validated).
    Dlq {
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        action: DlqAction,
    },
}

/// Runs one command with its logging defaults; an error is printed, not panicked.
pub async fn dispatch(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Demo(args) => {
            telemetry::init("warn,sqlx=error");
            demo::demo(args).await
        }
        Command::Run { config } => {
            let _traces = traced("info", Some(&config), "run");
            run::run(&config).await
        }
        Command::Worker { config, action: None } => {
            let _traces = traced("info", config.as_deref(), "worker");
            worker::worker(config.as_deref()).await
        }
        Command::Worker { config, action: Some(WorkerAction::Rollout { step }) } => {
            telemetry::init("warn");
            worker::rollout(config.as_deref(), step).await
        }
        Command::Verify { config, since, until } => {
            telemetry::init("warn,sqlx=error");
            verify::verify(config.as_deref(), since.zip(until)).await
        }
        Command::Topics { config, action } => {
            telemetry::init("warn");
            topics::topics(config.as_deref(), action).await
        }
        Command::Produce(args) => {
            // Its run's span is at info (RUST_LOG bounds spans too).
            let _traces = traced("warn,apex_ingest::cli::produce=info", args.config.as_deref(), "produce");
            produce::produce(args).await
        }
        Command::Edge { config } => {
            let _traces = traced("info", config.as_deref(), "edge");
            edge::edge(config.as_deref()).await
        }
        Command::Pollers { config, action } => {
            telemetry::init("warn");
            pollers::pollers(config.as_deref(), action).await
        }
        Command::Query(args) => {
            telemetry::init("warn,sqlx=error");
            query::query(args).await
        }
        Command::Codec(args) => {
            telemetry::init("info");
            codec::codec(args).await
        }
        Command::Serve(args) => {
            telemetry::init("info");
            serve::serve(args).await
        }
        // No log subscriber: a log line would tear the screen.
        Command::Top(args) => top::top(args).await,
        Command::Dlq { config, action } => {
            telemetry::init("warn,sqlx=error");
            dlq::dlq(config.as_deref(), action).await
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs, and spans exported when the configuration's `[traces]` names an
/// endpoint. Read here once before the command reads it again: a bad
/// configuration starts logs only, and the command then says what is wrong.
fn traced(default_filter: &str, config: Option<&Path>, command: &str) -> Option<telemetry::TraceExport> {
    let traces = Config::load(config).map(|c| c.traces).unwrap_or_default();
    telemetry::init_traced(default_filter, &traces, command)
}

/// Metrics, served on `metrics.listen` unless it is empty.
pub async fn serve_metrics(config: &Config) -> anyhow::Result<Arc<Metrics>> {
    let metrics = Metrics::new();
    if let Some(addr) = config.metrics_addr()? {
        let bound = metrics::serve(addr, metrics.clone()).await?;
        tracing::info!(addr = %bound, "serving /metrics, /healthz, /readyz");
    }
    Ok(metrics)
}
