//! The query on Temporal (`apex-ingest query --via temporal`): a
//! `QueryWorkflow` plans the question in a local activity (read, the parts
//! this deployment's stores answer, the answer cache looked up), asks each
//! part's store in an activity of its own, all at once, merges their lists in
//! the workflow (fusion is pure, so it replays alike) and keeps the answer in
//! the cache (a local activity). The same functions as the in-process path (`query::ask`), which
//! stays the fast default; docs/query.md has what the round trips cost.
//!
//! An analysis (a dwell question, `query::dwell`) runs as a
//! `ComplexQueryWorkflow`: the same plan, then one activity per day of its
//! window, each carrying the tally on, heartbeating, its progress in the
//! `get_progress` query; cancelled, the running slice's store call is
//! dropped and no further slice is read.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use futures::FutureExt;
use futures::future::join_all;
use serde::{Deserialize, Serialize};
use temporalio_client::errors::WorkflowGetResultError;
use temporalio_client::{
    Client, WorkflowCancelOptions, WorkflowGetResultOptions, WorkflowQueryOptions, WorkflowStartOptions,
};
use temporalio_macros::{activities, workflow, workflow_methods};
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use temporalio_sdk::{
    ActivityOptions, ApplicationFailure, LocalActivityOptions, WorkerOptions, WorkflowContext,
    WorkflowContextView, WorkflowResult, WorkflowTermination,
};
use tokio_util::sync::CancellationToken;

use super::answer::{Hit, Route};
use super::cache::{self, AnswerCache};
use super::dwell::{self, DwellTally, Window};
use super::parts::{self, Part, PartAnswer};
use super::routes;
use super::{Answer, Intent, QueryError, QueryStores, Question, Reading};
use crate::orchestrate::temporal::activities::heartbeating;
use crate::orchestrate::temporal::worker::Extra;
use crate::orchestrate::temporal::workflows::retries;

/// A question planned: how it reads at `as_of`, the parts that answer it
/// here, its cache key (empty on a worker without a cache), and the cached
/// answer where there is one.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    pub as_of: DateTime<Utc>,
    pub reading: Reading,
    pub parts: Vec<Part>,
    pub key: String,
    pub cached: Option<Answer>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartInput {
    pub question: Question,
    pub reading: Reading,
    pub part: Part,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeepInput {
    pub key: String,
    pub answer: Answer,
}

/// Answer of the `get_progress` query: the parts planned and those answered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryProgress {
    pub intent: Option<String>,
    pub parts: usize,
    pub parts_done: usize,
    pub cached: bool,
}

/// Answer of a `ComplexQueryWorkflow`'s `get_progress` query.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnalysisProgress {
    pub slices: usize,
    pub slices_done: usize,
    /// Records the analysis has read so far.
    pub records: u64,
    /// The event time read up to.
    pub through: Option<DateTime<Utc>>,
    pub cached: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SliceInput {
    pub question: Question,
    pub scac: Option<String>,
    pub slice: Window,
    pub tally: DwellTally,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SliceOutput {
    pub tally: DwellTally,
    pub routes: Vec<Route>,
}

/// The worker's side: the stores it reads and the cache it keeps answers
/// in (`None` with `serve.cache_ttl = 0s`).
pub struct QueryActivities {
    stores: QueryStores,
    cache: Option<Arc<dyn AnswerCache>>,
    ttl: Duration,
}

impl QueryActivities {
    pub fn new(stores: QueryStores, cache: Option<Arc<dyn AnswerCache>>, ttl: Duration) -> Self {
        QueryActivities { stores, cache, ttl }
    }
}

/// A question that cannot be answered fails at once; a store that fails is retried.
fn failure(e: QueryError) -> ActivityError {
    let retry = e.is_transient();
    let e = anyhow::Error::from(e).into_boxed_dyn_error();
    ActivityError::application(if retry {
        ApplicationFailure::new(e)
    } else {
        ApplicationFailure::non_retryable(e)
    })
}

#[activities]
impl QueryActivities {
    /// The question read and checked, its parts, and the cache looked up.
    #[activity(name = "query_plan")]
    pub async fn plan(
        self: Arc<Self>,
        _ctx: ActivityContext,
        question: Question,
    ) -> Result<Plan, ActivityError> {
        let as_of = question.as_of.unwrap_or_else(Utc::now);
        let reading = super::read(&question, as_of).map_err(failure)?;
        let parts = parts::parts(&self.stores, &question, &reading).map_err(failure)?;
        // The key reads the write watermark: a round trip a worker without a cache skips (empty key).
        let (key, cached) = match &self.cache {
            Some(cache) => {
                let key = cache::key_of(&self.stores, &question, &reading).await.map_err(failure)?;
                let cached = cache::lookup(cache.as_ref(), &key)
                    .await
                    .and_then(|json| serde_json::from_slice(&json).ok());
                (key, cached)
            }
            None => (String::new(), None),
        };
        Ok(Plan { as_of, reading, parts, key, cached })
    }

    /// One part's store calls.
    #[activity(name = "query_part")]
    pub async fn part(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: PartInput,
    ) -> Result<PartAnswer, ActivityError> {
        let asked = routes::answer_part(&self.stores, &input.question, &input.reading, input.part);
        heartbeating(&ctx, asked).await.map_err(failure)
    }

    /// One slice of a dwell analysis added to its tally; cancelled, the
    /// store call in flight is dropped.
    #[activity(name = "query_dwell_slice")]
    pub async fn dwell_slice(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: SliceInput,
    ) -> Result<SliceOutput, ActivityError> {
        let mut tally = input.tally;
        let routes = {
            let read = dwell::tally_slice(
                &self.stores,
                &input.question,
                input.scac.as_deref(),
                input.slice,
                &mut tally,
            );
            tokio::select! {
                routes = heartbeating(&ctx, read) => routes.map_err(failure)?,
                () = ctx.cancelled() => return Err(ActivityError::cancelled()),
            }
        };
        Ok(SliceOutput { tally, routes })
    }

    /// The answer kept under its key; a cache that fails is logged and passed by.
    #[activity(name = "query_keep")]
    pub async fn keep(self: Arc<Self>, _ctx: ActivityContext, input: KeepInput) -> Result<(), ActivityError> {
        if let Some(cache) = &self.cache {
            let json = cache::CachedAnswer::fresh(&input.answer).json;
            cache::keep(cache.as_ref(), &input.key, &json, self.ttl).await;
        }
        Ok(())
    }
}

/// The plan and the keep: a read of the question and a cache call, local
/// activities (run by the worker running the workflow, no task queue round
/// trip: about 50 ms less each on the dev server, load/query_round_trip).
fn local_activity() -> LocalActivityOptions {
    LocalActivityOptions::builder()
        .start_to_close_timeout(Duration::from_secs(30))
        .retry_policy(retries(3, Duration::from_millis(200), 2.0))
        .build()
}

/// A question's parts: quick, and a worker lost mid-question is noticed
/// by the heartbeat; 3 attempts (a non-retryable failure ends at once).
fn query_activity() -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(Duration::from_secs(60))
        .heartbeat_timeout(Duration::from_secs(10))
        .retry_policy(retries(3, Duration::from_millis(200), 2.0))
        .build()
}

/// A slice of an analysis: a day's statuses read in order; it heartbeats,
/// so a cancellation reaches it within seconds.
fn slice_activity() -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(Duration::from_secs(600))
        .heartbeat_timeout(Duration::from_secs(10))
        .retry_policy(retries(3, Duration::from_secs(1), 2.0))
        .build()
}

#[workflow]
#[derive(Default)]
pub struct QueryWorkflow {
    progress: QueryProgress,
}

#[workflow_methods]
impl QueryWorkflow {
    #[run(name = "QueryWorkflow")]
    pub async fn run(ctx: &mut WorkflowContext<Self>, question: Question) -> WorkflowResult<Answer> {
        let mut plan =
            ctx.execute_local_activity(QueryActivities::plan, question.clone(), local_activity()).await?;
        ctx.state_mut(|s| {
            s.progress.intent = Some(plan.reading.intent.name().to_owned());
            s.progress.parts = plan.parts.len();
            s.progress.cached = plan.cached.is_some();
        });
        if let Some(answer) = plan.cached.take() {
            return Ok(answer);
        }
        let view: &WorkflowContext<Self> = ctx;
        let asked = plan.parts.iter().map(|&part| {
            let input = PartInput { question: question.clone(), reading: plan.reading.clone(), part };
            view.execute_activity(QueryActivities::part, input, query_activity())
                .inspect(move |_| view.state_mut(|s| s.progress.parts_done += 1))
                .boxed_local()
        });
        let mut found = Vec::new();
        for part in join_all(asked.collect::<Vec<_>>()).await {
            found.push(part?);
        }
        let merged = parts::merge(&plan.reading, question.k, found);
        kept(ctx, question.text, plan, merged).await
    }

    #[query]
    pub fn get_progress(&self, _ctx: &WorkflowContextView) -> QueryProgress {
        self.progress.clone()
    }
}

#[workflow]
#[derive(Default)]
pub struct ComplexQueryWorkflow {
    progress: AnalysisProgress,
}

#[workflow_methods]
impl ComplexQueryWorkflow {
    #[run(name = "ComplexQueryWorkflow")]
    pub async fn run(ctx: &mut WorkflowContext<Self>, question: Question) -> WorkflowResult<Answer> {
        let mut plan =
            ctx.execute_local_activity(QueryActivities::plan, question.clone(), local_activity()).await?;
        if let Some(answer) = plan.cached.take() {
            ctx.state_mut(|s| s.progress.cached = true);
            return Ok(answer);
        }
        let refuse =
            |why: String| ApplicationFailure::non_retryable(anyhow::anyhow!(why).into_boxed_dyn_error());
        let Intent::Dwell { scac } = plan.reading.intent.clone() else {
            let intent = plan.reading.intent.name();
            return Err(
                refuse(format!("a {intent} question is not an analysis: ask it with QueryWorkflow")).into()
            );
        };
        let slices = dwell::slices_of(&question, &plan.reading).map_err(|e| refuse(e.to_string()))?;
        ctx.state_mut(|s| s.progress.slices = slices.len());
        let mut tally = DwellTally::default();
        let mut routes = Vec::new();
        for slice in slices {
            let input = SliceInput { question: question.clone(), scac: scac.clone(), slice, tally };
            let read = ctx.execute_activity(QueryActivities::dwell_slice, input, slice_activity()).await;
            let out = match read {
                Ok(out) => out,
                Err(_) if ctx.cancellation_token().is_cancelled() => {
                    return Err(WorkflowTermination::cancelled());
                }
                Err(e) => return Err(e.into()),
            };
            tally = out.tally;
            routes.extend(out.routes);
            let records = tally.statuses;
            ctx.state_mut(|s| {
                s.progress.slices_done += 1;
                s.progress.records = records;
                s.progress.through = Some(slice.1);
            });
        }
        let hits = tally.hits(question.k);
        kept(ctx, question.text, plan, (hits, routes)).await
    }

    #[query]
    pub fn get_progress(&self, _ctx: &WorkflowContextView) -> AnalysisProgress {
        self.progress.clone()
    }
}

/// The answer of a planned question, kept in the cache before it is returned.
async fn kept<W>(
    ctx: &WorkflowContext<W>,
    question: String,
    plan: Plan,
    (hits, routes): (Vec<Hit>, Vec<Route>),
) -> WorkflowResult<Answer> {
    let answer = Answer { question, as_of: plan.as_of, reading: plan.reading, hits, routes };
    let keep = KeepInput { key: plan.key, answer: answer.clone() };
    ctx.execute_local_activity(QueryActivities::keep, keep, local_activity()).await?;
    Ok(answer)
}

/// What a worker registers to answer questions: the workflows and their activities.
pub fn registrations(stores: QueryStores, cache: Option<Arc<dyn AnswerCache>>, ttl: Duration) -> Extra {
    Box::new(move |options: &mut WorkerOptions| {
        options.register_workflow::<QueryWorkflow>().context("registering QueryWorkflow")?;
        options.register_workflow::<ComplexQueryWorkflow>().context("registering ComplexQueryWorkflow")?;
        options.register_activities(QueryActivities::new(stores, cache, ttl));
        Ok(())
    })
}

/// A new question's workflow id.
pub fn query_workflow_id() -> String {
    format!("apex-query-{}", uuid::Uuid::new_v4())
}

/// Whether `question` is an analysis (a `ComplexQueryWorkflow`'s): read
/// here as the worker will read it; one that cannot be read is not (the
/// `QueryWorkflow` then says why).
pub fn is_analysis(question: &Question) -> bool {
    let at = question.as_of.unwrap_or_else(Utc::now);
    super::intent::read(&question.text, at).is_ok_and(|r| matches!(r.intent, Intent::Dwell { .. }))
}

/// Asks `question` on Temporal as workflow `id` on `task_queue` and waits
/// for its answer: an analysis as a `ComplexQueryWorkflow` (its progress
/// logged every few seconds), else as a `QueryWorkflow`. `stop` firing
/// cancels the workflow, and so its store work. A failed question says why
/// (its activity's message).
pub async fn ask_via_temporal(
    client: &Client,
    task_queue: &str,
    id: &str,
    question: Question,
    stop: CancellationToken,
) -> anyhow::Result<Answer> {
    let options = WorkflowStartOptions::new(task_queue.to_owned(), id.to_owned()).build();
    let started = format!("starting {id} on task queue {task_queue}");
    let asked = async {
        if is_analysis(&question) {
            let handle =
                client.start_workflow(ComplexQueryWorkflow::run, question, options).await.context(started)?;
            let mut result = std::pin::pin!(handle.get_result(WorkflowGetResultOptions::default()));
            let mut every = tokio::time::interval(PROGRESS_EVERY);
            loop {
                tokio::select! {
                    result = &mut result => break anyhow::Ok(result),
                    _ = every.tick() => {
                        if let Ok(p) = handle.query(ComplexQueryWorkflow::get_progress, (), WorkflowQueryOptions::default()).await {
                            tracing::info!(id, slices = p.slices, done = p.slices_done, records = p.records, through = ?p.through, "analysis under way");
                        }
                    }
                }
            }
        } else {
            let handle =
                client.start_workflow(QueryWorkflow::run, question, options).await.context(started)?;
            Ok(handle.get_result(WorkflowGetResultOptions::default()).await)
        }
    };
    let result = tokio::select! {
        result = asked => result?,
        () = stop.cancelled() => {
            let cancel = WorkflowCancelOptions::builder().reason("the asker stopped".to_string()).build();
            client.get_workflow_handle::<ComplexQueryWorkflow>(id.to_owned()).cancel(cancel).await
                .with_context(|| format!("cancelling {id}"))?;
            anyhow::bail!("{id} cancelled: the asker stopped");
        }
    };
    match result {
        Ok(answer) => Ok(answer),
        Err(WorkflowGetResultError::Failed(f)) => {
            let causes = std::iter::successors(Some(f.failure()), |f| f.cause.as_deref());
            let why: Vec<&str> = causes.map(|f| f.message.as_str()).filter(|m| !m.is_empty()).collect();
            anyhow::bail!("{id} failed: {}", why.join(": "))
        }
        Err(e) => Err(anyhow::Error::from(e).context(format!("{id} on task queue {task_queue}"))),
    }
}

/// How often a waiting asker logs an analysis's progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
