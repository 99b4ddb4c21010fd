//! The pollers on Temporal (`poll.on_temporal`): one `PollingWorkflow` per
//! source, id `apex-poll-<source>-<task queue>`, started by `apex-ingest pollers start`
//! (a running one is left as it is). Each iteration runs the source's poll
//! steps as `poll_step` activities until the provider has no more pages,
//! keeping the cursor in the workflow's state, then sleeps `poll.interval` on
//! a durable timer. After `poll.iterations_per_run` iterations (or sooner, when
//! the server suggests it: polls of many pages) it continues as new with the
//! cursor and the counts, so its history stays small. The
//! `get_stats` query answers the counts and the cursor.
//!
//! `poll_step` is [`PollStep::run`]: one page fetched and produced, every record
//! acknowledged, before the workflow moves its cursor. It has 5 attempts; a
//! provider's `Retry-After` is the wait before the next one. A poll whose
//! attempts are spent is counted failed and the next interval tries again from
//! the same cursor.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use temporalio_client::{Client, WorkflowIdConflictPolicy, WorkflowStartOptions};
use temporalio_macros::{activities, workflow, workflow_methods};
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use temporalio_sdk::{
    ActivityOptions, ApplicationFailure, ContinueAsNewOptions, WorkerOptions, WorkflowContext,
    WorkflowContextView, WorkflowResult,
};

use super::{PollStep, StepReport};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::orchestrate::temporal::activities::heartbeating;
use crate::orchestrate::temporal::worker::Extra;
use crate::orchestrate::temporal::workflows::retries;
use crate::store::PollCursors;

/// Attempts of one `poll_step` activity.
pub const STEP_ATTEMPTS: u32 = 5;

/// The workflow id of a source's poller: one per source and deployment (its
/// task queue), whoever starts it.
pub fn workflow_id(task_queue: &str, source: &str) -> String {
    format!("apex-poll-{source}-{task_queue}")
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PollingInput {
    pub source: String,
    pub interval: Duration,
    pub iterations_per_run: u32,
    /// Counts of the runs before this one (continue-as-new keeps them) and
    /// the cursor the next poll starts from.
    pub stats: PollStats,
}

/// Answer of the `get_stats` query.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollStats {
    /// Polls over every run of this workflow id.
    pub iterations: u64,
    pub polls_ok: u64,
    pub polls_failed: u64,
    pub pages: u64,
    pub records: u64,
    /// Records the last successful poll produced.
    pub last_records: u64,
    /// Runs of this workflow id: 1, plus one per continue-as-new.
    pub runs: u64,
    /// Where the next poll starts (`None`: from the beginning).
    pub cursor: Option<String>,
    /// Why the last failed poll failed.
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepInput {
    pub source: String,
    pub cursor: Option<String>,
    /// Records the poll's earlier steps produced (for the worker's metrics).
    pub produced: u64,
}

/// The poll steps of the sources this worker has credentials for.
pub struct PollActivities {
    steps: BTreeMap<&'static str, Arc<PollStep>>,
}

impl PollActivities {
    pub fn new(steps: Vec<PollStep>) -> Self {
        PollActivities { steps: steps.into_iter().map(|s| (s.source(), Arc::new(s))).collect() }
    }
}

#[activities]
impl PollActivities {
    /// One page of `source` after `cursor`, produced to its topic.
    #[activity(name = "poll_step")]
    pub async fn poll_step(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: StepInput,
    ) -> Result<StepReport, ActivityError> {
        let Some(step) = self.steps.get(input.source.as_str()) else {
            let detail = format!(
                "this worker has no poller for {:?}: configure [poll] and its credentials on the workers",
                input.source
            );
            return Err(
                ApplicationFailure::non_retryable(anyhow::anyhow!(detail).into_boxed_dyn_error()).into()
            );
        };
        // The worker's metrics see a poll end: its last page, or its last attempt failing.
        match heartbeating(&ctx, step.run(input.cursor.as_deref())).await {
            Ok(report) => {
                if !report.more {
                    step.poll_finished(Some(input.produced as usize + report.upserts + report.removals));
                }
                if report.cursor.is_some() {
                    step.cursor_age(Duration::ZERO);
                }
                Ok(report)
            }
            Err(e) => {
                if ctx.info().attempt >= STEP_ATTEMPTS {
                    step.poll_finished(None);
                }
                let retry_after = e.retry_after();
                // The provider's Retry-After, not the backoff, sets the next attempt.
                let failure =
                    ApplicationFailure::builder(anyhow::Error::from(e)).maybe_next_retry_delay(retry_after);
                Err(failure.build().into())
            }
        }
    }
}

/// A step may page for minutes (Plaid's whole `has_more` loop is one); it
/// heartbeats, so a step on a worker that died is retried elsewhere in 30 s.
fn step_options() -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(Duration::from_secs(600))
        .heartbeat_timeout(Duration::from_secs(30))
        .retry_policy(retries(STEP_ATTEMPTS, Duration::from_secs(1), 2.0))
        .build()
}

#[workflow]
#[derive(Default)]
pub struct PollingWorkflow {
    stats: PollStats,
}

#[workflow_methods]
impl PollingWorkflow {
    #[run(name = "PollingWorkflow")]
    pub async fn run(ctx: &mut WorkflowContext<Self>, input: PollingInput) -> WorkflowResult<PollStats> {
        let mut stats = input.stats.clone();
        stats.runs += 1;
        ctx.state_mut(|s| s.stats = stats);
        for _ in 0..input.iterations_per_run {
            poll(ctx, &input.source).await;
            ctx.timer(input.interval).await;
            // Polls of many pages grow the history faster: the server says when.
            if ctx.continue_as_new_suggested() {
                break;
            }
        }
        let next = PollingInput { stats: ctx.state(|s| s.stats.clone()), ..input };
        match ctx.continue_as_new(next, ContinueAsNewOptions::default())? {}
    }

    #[query]
    pub fn get_stats(&self, _ctx: &WorkflowContextView) -> PollStats {
        self.stats.clone()
    }
}

/// One poll: steps until the provider has no more pages, the cursor moved
/// after each; a step whose attempts are spent ends the poll as failed.
async fn poll(ctx: &mut WorkflowContext<PollingWorkflow>, source: &str) {
    let mut records = 0;
    loop {
        let cursor = ctx.state(|s| s.stats.cursor.clone());
        let input = StepInput { source: source.to_owned(), cursor, produced: records };
        match ctx.execute_activity(PollActivities::poll_step, input, step_options()).await {
            Ok(step) => {
                let produced = (step.upserts + step.removals) as u64;
                records += produced;
                ctx.state_mut(|s| {
                    s.stats.pages += 1;
                    s.stats.records += produced;
                    if step.cursor.is_some() {
                        s.stats.cursor = step.cursor.clone();
                    }
                });
                if !step.more {
                    ctx.state_mut(|s| {
                        s.stats.polls_ok += 1;
                        s.stats.last_records = records;
                    });
                    break;
                }
            }
            Err(e) => {
                ctx.state_mut(|s| {
                    s.stats.polls_failed += 1;
                    s.stats.last_error = Some(e.to_string());
                });
                break;
            }
        }
    }
    ctx.state_mut(|s| s.stats.iterations += 1);
}

/// Starts a `PollingWorkflow` for each of `sources`, unless one is running
/// (then it is left as it is); a new one starts from the source's cursor in
/// `cursors` (where the in-process poller left it). Answers each source's
/// workflow id and run id.
pub async fn start_pollers(
    client: &Client,
    config: &Config,
    sources: &[&'static str],
    cursors: &dyn PollCursors,
) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for &source in sources {
        let id = workflow_id(&config.temporal.task_queue, source);
        let cursor = cursors.poll_cursor(source).await?.map(|(c, _)| c);
        let input = PollingInput {
            source: source.to_owned(),
            interval: config.poll.interval,
            iterations_per_run: config.poll.iterations_per_run,
            stats: PollStats { cursor, ..PollStats::default() },
        };
        let options = WorkflowStartOptions::new(config.temporal.task_queue.clone(), id.clone())
            .id_conflict_policy(WorkflowIdConflictPolicy::UseExisting)
            .build();
        let handle = client
            .start_workflow(PollingWorkflow::run, input, options)
            .await
            .with_context(|| format!("starting {id}"))?;
        out.push((id, handle.run_id().unwrap_or_default().to_owned()));
    }
    Ok(out)
}

/// With `poll.on_temporal`, what a worker registers for the configured
/// sources: the workflow, and a poll step per source (credentials from the
/// worker's environment). Attempts are the activity's: each step's requests
/// are tried once, so a provider's `Retry-After` reaches the retry policy.
pub fn registrations(config: &Config, metrics: &Metrics) -> anyhow::Result<Extra> {
    if !config.poll.on_temporal {
        return Ok(Box::new(|_| Ok(())));
    }
    let mut once = config.poll.clone();
    once.max_attempts = 1;
    let env = |name: &str| crate::config::named_value(name);
    let steps = super::configured_sources(&once)
        .into_iter()
        .map(|source| {
            PollStep::new(super::provider(&once, source, env, None)?, &config.kafka, metrics.poll.clone())
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Box::new(move |options: &mut WorkerOptions| {
        options.register_workflow::<PollingWorkflow>().context("registering PollingWorkflow")?;
        options.register_activities(PollActivities::new(steps));
        Ok(())
    }))
}
