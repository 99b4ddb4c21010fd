//! `apex-ingest worker`: polls the task queue and runs the batch and event
//! workflows and their activities against the configured stores.

use std::sync::Arc;

use anyhow::Context;
use temporalio_common::telemetry::metrics::CoreMeter;
use temporalio_common::telemetry::{
    PrometheusExporterOptions, TelemetryOptions, start_prometheus_metric_exporter,
};
use temporalio_common::worker::{VersioningBehavior, WorkerDeploymentOptions, WorkerDeploymentVersion};
use temporalio_sdk::runtime::worker_tuner::{FixedSizeSlotSupplier, TunerHolder};
use temporalio_sdk::runtime::{PollerBehavior, RuntimeOptions};
use temporalio_sdk::{Runtime, Worker, WorkerOptions};
use tokio_util::sync::CancellationToken;

use super::activities::IngestActivities;
use super::workflows::{BatchIngestWorkflow, IngestEventsWorkflow};
use crate::config::{Config, TemporalConfig, VersioningBehaviorKind};
use crate::metrics::Metrics;
use crate::pipeline::embed::{EmbedPolicy, Embedder};
use crate::saga::SagaWriter;

/// What a worker runs besides the batch workflows: the layers above add
/// theirs (the pollers' workflow and activities).
pub type Extra = Box<dyn FnOnce(&mut WorkerOptions) -> anyhow::Result<()>>;

/// Runs a worker until `shutdown` fires; then it stops polling, lets running
/// tasks finish and returns. Workflows it was running resume on any other
/// worker. Ready (`/readyz`) while it polls.
pub async fn run_worker(
    config: &Config,
    embedder: Arc<dyn Embedder>,
    writer: Arc<SagaWriter>,
    metrics: &Metrics,
    extra: Extra,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let t = &config.temporal;
    let client = super::connect(t).await?;
    let (runtime, sdk_metrics) = runtime_with_metrics(metrics)?;
    // The exporter's server stops with the worker.
    let _sdk_metrics = AbortOnDrop(sdk_metrics);
    let tuner = TunerHolder::builder()
        .workflow_task_slot_supplier(FixedSizeSlotSupplier::new(t.max_concurrent_workflow_tasks))
        .activity_task_slot_supplier(FixedSizeSlotSupplier::new(t.max_concurrent_activities))
        .local_activity_task_slot_supplier(FixedSizeSlotSupplier::new(t.max_concurrent_activities))
        .nexus_task_slot_supplier(FixedSizeSlotSupplier::new(1))
        .build();
    let mut options = WorkerOptions::new(t.task_queue.clone())
        .register_workflow::<BatchIngestWorkflow>()
        .context("registering BatchIngestWorkflow")?
        .register_workflow::<IngestEventsWorkflow>()
        .context("registering IngestEventsWorkflow")?
        .register_activities(IngestActivities::new(embedder, EmbedPolicy::for_config(config), writer))
        .deployment_options(deployment_options(t))
        .max_cached_workflows(t.max_cached_workflows)
        .workflow_task_poller_behavior(PollerBehavior::SimpleMaximum(t.max_pollers))
        .activity_task_poller_behavior(PollerBehavior::SimpleMaximum(t.max_pollers))
        .tuner(tuner)
        .build();
    extra(&mut options)?;
    let mut worker = Worker::new(&runtime, client, options).context("creating the Temporal worker")?;
    let stop = worker.shutdown_handle();
    tracing::info!(
        task_queue = %t.task_queue, build_id = %t.build_id, deployment = %t.deployment_name, url = %t.url,
        "worker polling"
    );
    metrics.set_ready(Ok(()));
    // The worker's future is not Send: it runs on this task, not a spawned one.
    let mut run = std::pin::pin!(worker.run());
    let ran = tokio::select! {
        ran = &mut run => ran,
        () = shutdown.cancelled() => {
            tracing::info!("worker stopping: running tasks finish, new ones are left to other workers");
            stop();
            run.await
        }
    };
    metrics.set_ready(Err("stopping: the worker no longer polls"));
    ran.context("Temporal worker")
}

/// Unversioned with no `deployment_name` (the build id only reported);
/// else a version of that Worker Deployment, versioning on.
fn deployment_options(t: &TemporalConfig) -> WorkerDeploymentOptions {
    if t.deployment_name.is_empty() {
        return WorkerDeploymentOptions::from_build_id(t.build_id.clone());
    }
    let version = WorkerDeploymentVersion::builder()
        .deployment_name(t.deployment_name.clone())
        .build_id(t.build_id.clone())
        .build();
    let behavior = match t.versioning_behavior {
        VersioningBehaviorKind::Pinned => VersioningBehavior::Pinned,
        VersioningBehaviorKind::AutoUpgrade => VersioningBehavior::AutoUpgrade,
    };
    WorkerDeploymentOptions::new(version)
        .use_worker_versioning(true)
        .default_versioning_behavior(behavior)
        .build()
}

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The SDK's runtime with its metrics (task slots, poll and schedule-to-start
/// latency, sticky cache, workflow outcomes: `temporal_*`) served on our
/// `/metrics`. The SDK's Prometheus meter can only be built over a registry
/// of its own behind its own listener, so that listens on a loopback port
/// and `/metrics` serves its text after ours: one endpoint to scrape, and the
/// SDK's own meter rather than a copy of it. Seconds and `_total`, as ours.
fn runtime_with_metrics(metrics: &Metrics) -> anyhow::Result<(Runtime, tokio::task::AbortHandle)> {
    let options = PrometheusExporterOptions::builder()
        .socket_addr(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
        .counters_total_suffix(true)
        .use_seconds_for_durations(true)
        .build();
    let exporter =
        start_prometheus_metric_exporter(options).context("the Temporal SDK's metrics exporter")?;
    metrics.merge_exposition(format!("http://{}/metrics", exporter.bound_addr));
    let telemetry = TelemetryOptions::builder().metrics(exporter.meter as Arc<dyn CoreMeter>).build();
    let options = RuntimeOptions::builder()
        .telemetry_options(telemetry)
        .build()
        .map_err(|e| anyhow::anyhow!("Temporal runtime options: {e}"))?;
    let runtime = Runtime::from_current_tokio(options).context("Temporal runtime")?;
    Ok((runtime, exporter.abort_handle))
}

/// Runs `work` while a worker polls beside it in this task, then stops the
/// worker (tests and load runs that start workflows and need a worker to run them).
pub async fn while_working<T>(
    config: &Config,
    embedder: Arc<dyn Embedder>,
    writer: Arc<SagaWriter>,
    metrics: &Metrics,
    extra: Extra,
    work: impl Future<Output = T>,
) -> anyhow::Result<T> {
    let shutdown = CancellationToken::new();
    let mut worker = std::pin::pin!(run_worker(config, embedder, writer, metrics, extra, shutdown.clone()));
    let mut work = std::pin::pin!(work);
    tokio::select! {
        ran = &mut worker => {
            ran?;
            anyhow::bail!("the worker stopped before the work was done")
        }
        out = &mut work => {
            shutdown.cancel();
            worker.await?;
            Ok(out)
        }
    }
}
