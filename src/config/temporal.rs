//! The Temporal orchestrator: the server, the rollout share, the worker's limits.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Config, SecretSource, require};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TemporalConfig {
    /// gRPC URL of the Temporal frontend: `http://` plaintext, `https://` TLS.
    pub url: String,
    pub namespace: String,
    /// API key (Temporal Cloud): `env:NAME` or `file:PATH`, sent as a bearer
    /// token; needs an `https://` URL. A file is read again every
    /// `secret_refresh`: a rotated key is used without a restart.
    pub api_key: SecretSource,
    /// How often a `file:` API key is read again.
    #[serde(with = "humantime_serde")]
    pub secret_refresh: Duration,
    /// PEM file of the CA the server's certificate must chain to (else the system's roots).
    pub ca_file: PathBuf,
    /// PEM files of the client certificate and its key (mTLS).
    pub client_cert_file: PathBuf,
    pub client_key_file: PathBuf,
    /// The name the server's certificate must carry, when it is not the URL's host.
    pub server_name: String,
    /// The connection (TCP, TLS, the first call) must be made within this.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Task queue the consumer starts batch workflows on and workers poll.
    pub task_queue: String,
    /// Build id the worker reports (shown in the UI per task it ran); with a
    /// `deployment_name`, the version of the Worker Deployment it serves.
    pub build_id: String,
    /// Worker Deployment the worker joins as version `build_id`, with
    /// versioning on: it is sent only the workflows of its version, and
    /// `apex-ingest worker rollout` ramps or rolls back which version new
    /// workflows start on. Empty: unversioned (every worker takes every task).
    pub deployment_name: String,
    /// With a `deployment_name`: `pinned` (a workflow ends on the version it
    /// started on; a rollback moves only new ones) or `auto_upgrade` (running
    /// workflows move to the current version at their next task: their code
    /// must replay, `tests/replay.rs`).
    pub versioning_behavior: VersioningBehaviorKind,
    /// Share of batches (by a stable hash of the batch id) run on Temporal,
    /// 0–100; the rest take the direct path. 0 needs no Temporal at all.
    pub rollout_percent: u8,
    /// Events per child workflow of a batch, 1–100: 1 is a child per event;
    /// the batch size is one child per batch (fewer children, far fewer
    /// history events; `load/RESULTS.md`). A child's result is one Temporal
    /// payload (2 MB at most; 100 events are about 0.5 MB).
    pub events_per_child: usize,
    /// How a child runs parse → extract → embed over its events.
    pub child_steps: ChildSteps,
    /// Payloads of 1 kB and more are zstd-compressed before they reach the
    /// server (fewer bytes of history; the UI then shows compressed bytes).
    /// Compressed payloads are read either way.
    pub compress_payloads: bool,
    /// Worker: workflow tasks (batch and event workflows) run at once.
    pub max_concurrent_workflow_tasks: usize,
    /// Worker: activities (parse, extract_entities, embed, write_batch) run at once.
    pub max_concurrent_activities: usize,
    /// Worker: long polls open at once for workflow tasks and for activity tasks.
    pub max_pollers: usize,
    /// Worker: workflows kept in memory between tasks (sticky cache).
    pub max_cached_workflows: usize,
    /// A batch workflow still running after this is timed out; the consumer
    /// then runs the batch again.
    #[serde(with = "humantime_serde")]
    pub workflow_timeout: Duration,
    /// A batch waiting on its workflow longer than this counts in
    /// `apex_temporal_stalled_batches`, and a warning names the task queue
    /// when no worker polls it.
    #[serde(with = "humantime_serde")]
    pub stall_warning: Duration,
}

impl TemporalConfig {
    /// Whether the connection is TLS (an `https://` URL).
    pub fn uses_tls(&self) -> bool {
        self.url.starts_with("https://")
    }
}

impl Default for TemporalConfig {
    fn default() -> Self {
        TemporalConfig {
            url: "http://127.0.0.1:7233".into(),
            namespace: "default".into(),
            api_key: SecretSource::Unset,
            secret_refresh: Duration::from_secs(30),
            ca_file: PathBuf::new(),
            client_cert_file: PathBuf::new(),
            client_key_file: PathBuf::new(),
            server_name: String::new(),
            connect_timeout: Duration::from_secs(10),
            task_queue: "apex-ingest".into(),
            build_id: concat!("apex-ingest-", env!("CARGO_PKG_VERSION")).into(),
            deployment_name: String::new(),
            versioning_behavior: VersioningBehaviorKind::Pinned,
            rollout_percent: 0,
            events_per_child: 100,
            child_steps: ChildSteps::Local,
            compress_payloads: true,
            max_concurrent_workflow_tasks: 100,
            max_concurrent_activities: 100,
            max_pollers: 20,
            max_cached_workflows: 1000,
            workflow_timeout: Duration::from_secs(30 * 60),
            stall_warning: Duration::from_secs(60),
        }
    }
}

/// The activities of a child workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChildSteps {
    /// One activity per stage: `parse`, `extract_entities`, `embed`, each
    /// retried on its own and visible in the history.
    Stages,
    /// One `process` activity doing all three (one task round trip).
    Combined,
    /// `process` as a local activity: run by the worker that runs the child,
    /// recorded as a marker, no activity task through the server.
    Local,
}

/// How a versioned worker's workflows follow a new version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VersioningBehaviorKind {
    Pinned,
    AutoUpgrade,
}

/// The checks of these sections.
pub(super) fn validate(c: &Config) -> anyhow::Result<()> {
    require(&[
        (c.temporal.rollout_percent <= 100, "temporal.rollout_percent", "must be between 0 and 100"),
        (!c.temporal.task_queue.is_empty(), "temporal.task_queue", "must not be empty"),
        (
            c.temporal.deployment_name.is_empty() || !c.temporal.build_id.is_empty(),
            "temporal.build_id",
            "must not be empty with a temporal.deployment_name (it is the worker's version)",
        ),
        (
            (1..=100).contains(&c.temporal.events_per_child),
            "temporal.events_per_child",
            "must be between 1 and 100 (a child's result must fit one 2 MB Temporal payload)",
        ),
        (
            c.temporal.max_concurrent_workflow_tasks >= 2,
            "temporal.max_concurrent_workflow_tasks",
            "must be at least 2 (a batch workflow and its children take turns)",
        ),
        (
            c.temporal.max_concurrent_activities > 0,
            "temporal.max_concurrent_activities",
            "must be at least 1",
        ),
        (
            c.temporal.max_pollers >= 2,
            "temporal.max_pollers",
            "must be at least 2 (the SDK's least for workflow tasks)",
        ),
        (
            c.temporal.client_cert_file.as_os_str().is_empty()
                == c.temporal.client_key_file.as_os_str().is_empty(),
            "temporal.client_cert_file",
            "and temporal.client_key_file go together",
        ),
        (
            c.temporal.uses_tls()
                || (!c.temporal.api_key.is_set()
                    && c.temporal.server_name.is_empty()
                    && [&c.temporal.ca_file, &c.temporal.client_cert_file]
                        .iter()
                        .all(|f| f.as_os_str().is_empty())),
            "temporal.url",
            "must be https:// with an api_key, a ca_file, a client certificate or a server_name (a key is never sent in clear)",
        ),
        (!c.temporal.connect_timeout.is_zero(), "temporal.connect_timeout", "must be longer than 0 s"),
        (
            c.temporal.secret_refresh >= Duration::from_secs(1),
            "temporal.secret_refresh",
            "must be at least 1s",
        ),
        (!c.temporal.workflow_timeout.is_zero(), "temporal.workflow_timeout", "must be longer than 0 s"),
        (!c.temporal.stall_warning.is_zero(), "temporal.stall_warning", "must be longer than 0 s"),
    ])
}
