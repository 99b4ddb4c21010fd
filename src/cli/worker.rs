//! `apex-ingest worker`: a Temporal worker over the configured stores: the
//! batch workflows, the query workflow, and the pollers' workflows when
//! `poll.on_temporal`.

use tokio_util::sync::CancellationToken;

use crate::orchestrate::temporal::{connect, deployment};

use super::serve_metrics;
use crate::app;
use crate::config::Config;
use crate::orchestrate::temporal::worker::Extra;
use crate::poll;
use crate::query::{QueryStores, workflow as query_workflow};

pub async fn worker(config_path: Option<&std::path::Path>) -> anyhow::Result<()> {
    let config = Config::load(config_path)?;
    let metrics = serve_metrics(&config).await?;
    let stores = app::open_stores(&config).await?;
    let shutdown = CancellationToken::new();
    app::cancel_on_signal(shutdown.clone());
    let writer = app::saga_writer(&config, &stores, metrics.clone(), &shutdown)?;
    let pollers = poll::workflow::registrations(&config, &metrics)?;
    let embedder = app::build_embedder(&config)?;
    let queries = query_workflow::registrations(
        QueryStores::over(&stores, embedder.clone()),
        app::build_answer_cache(&config).await?,
        config.serve.cache_ttl,
    );
    let extra: Extra = Box::new(move |options| {
        pollers(options)?;
        queries(options)
    });
    crate::orchestrate::temporal::worker::run_worker(&config, embedder, writer, &metrics, extra, shutdown)
        .await
}

#[derive(clap::Subcommand)]
pub enum WorkerAction {
    /// Moves new workflows between versions of temporal.deployment_name (its
    /// workers run with temporal.build_id set to each version). A pinned
    /// workflow ends on the version it started on, so keep a version's workers
    /// until `status` shows it drained.
    Rollout {
        #[command(subcommand)]
        step: RolloutStep,
    },
}

#[derive(clap::Subcommand)]
pub enum RolloutStep {
    /// The current version, the ramping one and its share, every version's status.
    Status,
    /// Starts PERCENT (0-100, exclusive) of new workflows on BUILD_ID; its workers must poll.
    Ramp { build_id: String, percent: f32 },
    /// Makes BUILD_ID current: every new workflow starts on it (ends a ramp of it).
    Promote { build_id: String },
    /// One step back: stops a ramp in progress, else makes the version current
    /// before this one current again.
    Rollback,
}

/// Runs one rollout step and prints where new workflows go after it.
pub async fn rollout(config_path: Option<&std::path::Path>, step: RolloutStep) -> anyhow::Result<()> {
    let config = Config::load(config_path)?;
    let t = &config.temporal;
    let client = connect(t).await?;
    let routing = match step {
        RolloutStep::Status => deployment::status(&client, t).await?,
        RolloutStep::Ramp { build_id, percent } => deployment::ramp(&client, t, &build_id, percent).await?,
        RolloutStep::Promote { build_id } => deployment::promote(&client, t, &build_id).await?,
        RolloutStep::Rollback => deployment::rollback(&client, t).await?,
    };
    print!("{routing}");
    Ok(())
}
