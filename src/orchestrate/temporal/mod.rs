//! Temporal orchestrator: a batch runs as a `BatchIngestWorkflow` on a worker
//! (`apex-ingest worker`); this side starts it and waits for its result, so the
//! source commits the batch's offsets only once the workflow has completed.
//!
//! A re-delivered batch (same offsets and payloads, same workflow id) does not
//! run twice: a running execution is attached to (`UseExisting`), a completed
//! one is not started again (`AllowDuplicateFailedOnly`; its result is read
//! instead), and only a failed, timed-out or terminated one is run anew.

pub mod activities;
pub mod codec;
pub mod codec_server;
pub mod deployment;
pub mod stall;
pub mod worker;
pub mod workflows;

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use async_trait::async_trait;
use secrecy::ExposeSecret;
use temporalio_client::errors::{WorkflowGetResultError, WorkflowStartError};
use temporalio_client::{
    Client, ClientOptions, ClientTlsOptions, Connection, ConnectionOptions, TlsOptions,
    WorkflowGetResultOptions, WorkflowIdConflictPolicy, WorkflowIdReusePolicy, WorkflowStartOptions,
};
use temporalio_common::search_attributes::SearchAttributes;
use tokio_util::sync::CancellationToken;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use super::{BatchReport, OrchestrateError, Orchestrator};
use crate::batch::Batch;
use crate::config::{SecretSource, TemporalConfig};
use crate::metrics::{Metrics, OrchestratorMetrics};
pub use workflows::{BatchIngestWorkflow, BatchInput, BatchStatus, BatchSummary, Phase, batch_workflow_id};

/// A client of the configured namespace, over TLS (mTLS, an API key) when
/// `[temporal]` says so. A failure names the server and the cause (never the
/// key) and comes within `connect_timeout`.
pub async fn connect(config: &TemporalConfig) -> anyhow::Result<Client> {
    let url: temporalio_client::Url =
        config.url.parse().with_context(|| format!("temporal.url {:?} is not a URL", config.url))?;
    let identity = format!("apex-ingest@{}:{}", hostname(), std::process::id());
    let api_key = config.api_key.read("temporal.api_key")?.map(|k| k.expose_secret().to_owned());
    let options = ConnectionOptions::new(url)
        .identity(identity)
        .maybe_tls_options(tls_options(config)?)
        .maybe_api_key(api_key.clone())
        .connect_timeout(config.connect_timeout)
        .build();
    let hint = if config.uses_tls() {
        ""
    } else {
        " (a TLS server needs an https:// URL; a local dev server: `scripts/services up temporal`)"
    };
    let connection = match tokio::time::timeout(config.connect_timeout, Connection::connect(options)).await {
        Ok(Ok(connection)) => connection,
        Ok(Err(e)) => {
            let cause = anyhow::Error::from(e);
            anyhow::bail!("connecting to Temporal at {}: {cause:#}{hint}", config.url)
        }
        Err(_) => anyhow::bail!(
            "connecting to Temporal at {}: no answer within {:?} (an http:// URL at a TLS server?){hint}",
            config.url,
            config.connect_timeout
        ),
    };
    if let SecretSource::File(_) = config.api_key {
        tokio::spawn(refresh_api_key(connection.clone(), config.clone(), api_key));
    }
    let mut options = ClientOptions::new(config.namespace.clone())
        .data_converter(codec::data_converter(config.compress_payloads));
    if crate::telemetry::traces_on() {
        // The trace goes on through workflows, children and activities (the
        // `_tracer-data` header); a worker made from this client inherits it.
        options = options.plugin(temporalio_sdk::opentelemetry::OpenTelemetryPlugin::builder().build());
    }
    let options = options.build();
    Client::new(connection, options).context("creating the Temporal client")
}

/// Reads a `file:` API key again every `secret_refresh` and hands a changed
/// one to the connection (and so to every client and worker sharing it): a
/// rotated Secret is used without a restart. A file that cannot be read keeps
/// the last key. `last` is the key the connection was made with.
async fn refresh_api_key(connection: Connection, config: TemporalConfig, mut last: Option<String>) {
    let mut every = tokio::time::interval(config.secret_refresh);
    every.tick().await;
    loop {
        every.tick().await;
        match config.api_key.read("temporal.api_key") {
            Ok(Some(key)) if last.as_deref() != Some(key.expose_secret()) => {
                connection.set_api_key(Some(key.expose_secret().to_owned()));
                last = Some(key.expose_secret().to_owned());
                tracing::info!(source = %config.api_key, "Temporal API key rotated");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("{e:#}; keeping the last Temporal API key"),
        }
    }
}

/// The TLS settings of an `https://` URL: the CA (else the system's roots),
/// the server name, the client certificate.
fn tls_options(config: &TemporalConfig) -> anyhow::Result<Option<TlsOptions>> {
    if !config.uses_tls() {
        return Ok(None);
    }
    let read = |path: &std::path::Path, key: &str| -> anyhow::Result<Option<Vec<u8>>> {
        if path.as_os_str().is_empty() {
            return Ok(None);
        }
        std::fs::read(path).map(Some).with_context(|| format!("{key} {} cannot be read", path.display()))
    };
    let client = match (
        read(&config.client_cert_file, "temporal.client_cert_file")?,
        read(&config.client_key_file, "temporal.client_key_file")?,
    ) {
        (Some(cert), Some(key)) => {
            Some(ClientTlsOptions::builder().client_cert(cert).client_private_key(key).build())
        }
        _ => None,
    };
    Ok(Some(
        TlsOptions::builder()
            .maybe_server_root_ca_cert(read(&config.ca_file, "temporal.ca_file")?)
            .maybe_domain((!config.server_name.is_empty()).then(|| config.server_name.clone()))
            .maybe_client_tls_options(client)
            .build(),
    ))
}

fn hostname() -> String {
    std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into())
}

pub struct TemporalOrchestrator {
    client: Client,
    config: TemporalConfig,
    metrics: OrchestratorMetrics,
    waiting: Arc<stall::Waiting>,
}

impl TemporalOrchestrator {
    pub fn new(client: Client, config: TemporalConfig, metrics: Arc<Metrics>) -> Self {
        metrics.orchestrator.workflow_outcomes(&OUTCOMES);
        TemporalOrchestrator {
            client,
            config,
            metrics: metrics.orchestrator.clone(),
            waiting: Arc::default(),
        }
    }

    /// Watches this orchestrator's waiting batches in the background until
    /// `shutdown` (see [`stall`]).
    pub fn watch_stalls(&self, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        let (client, config) = (self.client.clone(), self.config.clone());
        tokio::spawn(stall::watch(self.waiting.clone(), client, config, self.metrics.clone(), shutdown))
    }

    fn start_options(&self, batch: &Batch) -> WorkflowStartOptions {
        let attributes = SearchAttributes::new([
            workflows::SOURCE.value_set(source_of(batch)),
            workflows::BATCH_ID.value_set(batch.id.clone()),
            workflows::STATUS.value_set(Phase::Starting.as_str().to_owned()),
        ]);
        WorkflowStartOptions::new(self.config.task_queue.clone(), batch_workflow_id(batch))
            .id_conflict_policy(WorkflowIdConflictPolicy::UseExisting)
            .id_reuse_policy(WorkflowIdReusePolicy::AllowDuplicateFailedOnly)
            .execution_timeout(self.config.workflow_timeout)
            .search_attributes(attributes)
            .build()
    }
}

/// How a batch workflow can end, as `apex_workflow_results_total{outcome}` counts it.
const OUTCOMES: [&str; 6] = ["completed", "failed", "timed_out", "cancelled", "terminated", "unreachable"];

/// `samsara`, `edi`, or `mixed` when a batch holds both.
fn source_of(batch: &Batch) -> String {
    let mut formats: Vec<&str> = batch.events.iter().map(|e| e.format.as_str()).collect();
    formats.sort_unstable();
    formats.dedup();
    match formats.as_slice() {
        [one] => (*one).to_owned(),
        _ => "mixed".to_owned(),
    }
}

#[async_trait]
impl Orchestrator for TemporalOrchestrator {
    async fn run_batch(&self, batch: &Batch) -> Result<BatchReport, OrchestrateError> {
        let started = Instant::now();
        let _waiting = self.waiting.enter();
        let input = BatchInput {
            batch_id: batch.id.clone(),
            events: batch.events.clone(),
            events_per_child: self.config.events_per_child,
            child_steps: self.config.child_steps,
        };
        let id = batch_workflow_id(batch);
        // The batch's span is the start's parent (the SDK reads OpenTelemetry's current context).
        let start = self.client.start_workflow(BatchIngestWorkflow::run, input, self.start_options(batch));
        match opentelemetry::context::FutureExt::with_context(start, tracing::Span::current().context()).await
        {
            Ok(_) => self.metrics.workflow_started("started"),
            // Only a completed execution refuses a start under AllowDuplicateFailedOnly.
            Err(WorkflowStartError::AlreadyStarted { .. }) => {
                self.metrics.workflow_started("completed_before")
            }
            Err(e) => {
                self.metrics.workflow_finished("unreachable", started.elapsed());
                return Err(OrchestrateError::Temporal {
                    detail: format!("starting {id}: {e}"),
                    transient: true,
                });
            }
        }
        // By id, not run: the latest run is the one started, attached to or completed.
        let handle = self.client.get_workflow_handle::<BatchIngestWorkflow>(id.clone());
        let result = handle.get_result(WorkflowGetResultOptions::default()).await;
        let outcome = match &result {
            Ok(_) => "completed",
            Err(WorkflowGetResultError::Failed(_)) => "failed",
            Err(WorkflowGetResultError::TimedOut) => "timed_out",
            Err(WorkflowGetResultError::Cancelled { .. }) => "cancelled",
            Err(WorkflowGetResultError::Terminated { .. }) => "terminated",
            Err(_) => "unreachable",
        };
        self.metrics.workflow_finished(outcome, started.elapsed());
        match result {
            Ok(summary) => Ok(BatchReport {
                batch_id: batch.id.clone(),
                close_reason: batch.close_reason,
                events: batch.events.len(),
                records: summary.outcome.records,
                dead_letters: summary.outcome.dead_letters,
                already_written: summary.outcome.already_written,
            }),
            Err(e) => {
                // A failure marked non-retryable (a permanent store or embed error)
                // would fail again; anything else (retries spent in an outage, a
                // timeout, a termination) may pass when the batch is run anew.
                let transient = match &e {
                    WorkflowGetResultError::Failed(f) => {
                        !workflows::application_failures(f.failure()).any(|info| info.non_retryable)
                    }
                    _ => true,
                };
                Err(OrchestrateError::Temporal { detail: format!("workflow {id}: {e}"), transient })
            }
        }
    }
}
