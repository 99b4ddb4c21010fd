//! The workflows: `BatchIngestWorkflow` fans a batch out to
//! `IngestEventsWorkflow` children of `events_per_child` events each (parse →
//! extract_entities → embed, as activities per stage, one activity or one
//! local activity), then writes every processed record in one `write_batch`
//! activity.
//!
//! Workflow code must replay identically: it only orders activities and
//! children and folds their results; all I/O is in the activities.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::FutureExt;
use futures::future::{LocalBoxFuture, join_all};
use serde::{Deserialize, Serialize};
use temporalio_common::RetryPolicy;
use temporalio_common::protos::temporal::api::failure::v1::{
    ApplicationFailureInfo, Failure, failure::FailureInfo,
};
use temporalio_common::search_attributes::SearchAttributeKey;
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{
    ActivityOptions, ChildWorkflowOptions, LocalActivityOptions, WorkflowContext, WorkflowContextView,
    WorkflowResult,
};

use sha2::{Digest, Sha256};

use super::activities::{IngestActivities, Parsed, Processed, Vector, WriteBatchInput};
use crate::batch::Batch;
use crate::config::ChildSteps;
use crate::model::{DeadLetter, RawEvent, RecordId};
use crate::pipeline::ProcessedRecord;
use crate::saga::writer::WriteOutcome;

/// Search attributes (Keyword) a batch can be found by in the Temporal UI;
/// `scripts/services` registers them on the dev server.
pub const SOURCE: SearchAttributeKey<String> = SearchAttributeKey::keyword("Source");
pub const BATCH_ID: SearchAttributeKey<String> = SearchAttributeKey::keyword("BatchId");
pub const STATUS: SearchAttributeKey<String> = SearchAttributeKey::keyword("Status");

/// Futures `futures::future::join_all` polls in place. `join_all` polls up
/// to 30 futures in place; above 30 it switches to `FuturesOrdered`, whose own
/// wakers the SDK's nondeterminism check rejects (TMPRL1100): every workflow
/// task of a 50-child parent then fails and the batch hangs.
const IN_PLACE: usize = 30;

/// Awaits every future, in order, polling each in place with the workflow's
/// own waker: groups of at most [`IN_PLACE`], nested as deep as needed (two
/// levels cover 900 children), so `join_all` never switches to `FuturesOrdered`.
fn join_in_place<'a, T: 'a>(futures: Vec<LocalBoxFuture<'a, T>>) -> LocalBoxFuture<'a, Vec<T>> {
    if futures.len() <= IN_PLACE {
        return join_all(futures).boxed_local();
    }
    let per_group = futures.len().div_ceil(IN_PLACE);
    let mut rest = futures.into_iter();
    let groups: Vec<_> = std::iter::from_fn(|| {
        let group: Vec<_> = rest.by_ref().take(per_group).collect();
        (!group.is_empty()).then(|| join_in_place(group))
    })
    .collect();
    join_all(groups).map(|outputs| outputs.into_iter().flatten().collect()).boxed_local()
}

/// What a batch workflow is given: the events, the batch's id (its
/// idempotency key in the saga) and how the events are fanned out to children.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BatchInput {
    pub batch_id: String,
    pub events: Vec<RawEvent>,
    pub events_per_child: usize,
    pub child_steps: ChildSteps,
}

/// What a child workflow is given: its share of the batch's events.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChildInput {
    pub events: Vec<RawEvent>,
    pub steps: ChildSteps,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    #[default]
    Starting,
    /// Child workflows are parsing, extracting and embedding.
    Processing,
    /// `write_batch` is running.
    Writing,
    Completed,
    Failed,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Processing => "processing",
            Phase::Writing => "writing",
            Phase::Completed => "completed",
            Phase::Failed => "failed",
        }
    }
}

/// Answer of the `get_status` query.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchStatus {
    pub phase: Phase,
    pub events: usize,
    pub children_started: usize,
    /// Children that finished, with records or as poison.
    pub children_done: usize,
    pub poison: usize,
    pub records: usize,
    /// `write_batch` activities the batch is written in (1 unless it is too
    /// large for one Temporal payload).
    pub write_parts: usize,
}

/// Result of a batch workflow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchSummary {
    pub batch_id: String,
    pub events: usize,
    pub outcome: WriteOutcome,
}

/// The workflow id of a batch: its batch id (the offsets it covers) and a
/// digest of its payloads. A re-delivered batch attaches to the execution that
/// exists instead of starting a second one; other events at the same offsets
/// (a topic deleted and created again) get another id, so they are never taken
/// for a batch that completed before.
pub fn batch_workflow_id(batch: &Batch) -> String {
    let mut h = Sha256::new();
    for e in &batch.events {
        h.update((e.payload.len() as u64).to_be_bytes());
        h.update(&e.payload);
    }
    let digest = hex::encode(h.finalize());
    format!("apex-batch-{}-{}", &batch.id[..32.min(batch.id.len())], &digest[..16])
}

/// The child workflow id of a share of a batch's events: where its first
/// event came from and how many events it holds.
pub fn child_workflow_id(batch_workflow_id: &str, share: &[RawEvent]) -> String {
    let first = share.first().map(|e| &e.origin);
    let (topic, partition, offset) = first.map_or(("", 0, 0), |o| (o.topic.as_str(), o.partition, o.offset));
    format!("{batch_workflow_id}/{topic}/{partition}/{offset}+{}", share.len())
}

fn seconds(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// A retry policy of `attempts` attempts, the first retry after `first`.
pub fn retries(attempts: u32, first: Duration, backoff: f64) -> RetryPolicy {
    RetryPolicy::builder()
        .maximum_attempts(attempts)
        .initial_interval(first)
        .backoff_coefficient(backoff)
        .build()
}

/// parse and extract_entities: 3 attempts from 1 s; poison is non-retryable.
/// Both take milliseconds: a lost worker's attempt is retried after 10 s.
fn quick_activity() -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(seconds(10))
        .retry_policy(retries(3, seconds(1), 2.0))
        .build()
}

/// `process` as a local activity: embed's attempts and timeout (a local
/// activity has no heartbeat; the worker keeps its workflow task alive).
fn local_process_activity() -> LocalActivityOptions {
    LocalActivityOptions::builder()
        .start_to_close_timeout(seconds(120))
        .retry_policy(retries(5, seconds(1), 2.0))
        .build()
}

/// embed (and `process`, which embeds) may call a rate-limited provider: 5
/// attempts, heartbeats.
fn embed_activity() -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(seconds(120))
        .heartbeat_timeout(seconds(10))
        .retry_policy(retries(5, seconds(1), 2.0))
        .build()
}

/// write_batch: 3 attempts from 5 s, backoff 2.0 (the saga also retries each
/// store inside one attempt); heartbeats while the stores write.
fn write_activity() -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(seconds(600))
        .heartbeat_timeout(seconds(20))
        .retry_policy(retries(3, seconds(5), 2.0))
        .build()
}

#[workflow]
#[derive(Default)]
pub struct IngestEventsWorkflow;

#[workflow_methods]
impl IngestEventsWorkflow {
    /// A share of a batch: parse, extract entities, embed. Poison events come
    /// back as dead letters; the child fails only when a step's retries are spent.
    #[run(name = "IngestEventsWorkflow")]
    pub async fn run(ctx: &mut WorkflowContext<Self>, input: ChildInput) -> WorkflowResult<Processed> {
        let events = input.events;
        Ok(match input.steps {
            ChildSteps::Stages => in_stages(ctx, events).await?,
            ChildSteps::Combined => {
                ctx.execute_activity(IngestActivities::process, events, embed_activity()).await?
            }
            ChildSteps::Local => {
                ctx.execute_local_activity(IngestActivities::process, events, local_process_activity())
                    .await?
            }
        })
    }
}

/// One activity per stage.
async fn in_stages(
    ctx: &mut WorkflowContext<IngestEventsWorkflow>,
    events: Vec<RawEvent>,
) -> WorkflowResult<Processed> {
    let Parsed { records, dead } =
        ctx.execute_activity(IngestActivities::parse, events, quick_activity()).await?;
    if records.is_empty() {
        return Ok(Processed { rows: Vec::new(), dead });
    }
    let extracted =
        ctx.execute_activity(IngestActivities::extract_entities, records.clone(), quick_activity()).await?;
    let texts: Vec<(String, String)> =
        records.iter().zip(&extracted).map(|(r, (summary, _))| (r.kind.clone(), summary.clone())).collect();
    let vectors: Vec<Vector> = ctx.execute_activity(IngestActivities::embed, texts, embed_activity()).await?;
    let rows = records
        .into_iter()
        .zip(extracted)
        .zip(vectors)
        .map(|((record, (summary, extraction)), Vector(embedding))| ProcessedRecord {
            record,
            summary,
            extraction,
            embedding,
        })
        .collect();
    Ok(Processed { rows, dead })
}

#[workflow]
#[derive(Default)]
pub struct BatchIngestWorkflow {
    status: BatchStatus,
}

#[workflow_methods]
impl BatchIngestWorkflow {
    #[run(name = "BatchIngestWorkflow")]
    pub async fn run(ctx: &mut WorkflowContext<Self>, input: BatchInput) -> WorkflowResult<BatchSummary> {
        set_phase(ctx, Phase::Processing);
        let ingested = ingest_batch(ctx, input).await;
        set_phase(ctx, if ingested.is_ok() { Phase::Completed } else { Phase::Failed });
        ingested
    }

    #[query]
    pub fn get_status(&self, _ctx: &WorkflowContextView) -> BatchStatus {
        self.status.clone()
    }
}

/// The batch workflow's work: the children, then the writes.
async fn ingest_batch(
    ctx: &mut WorkflowContext<BatchIngestWorkflow>,
    input: BatchInput,
) -> WorkflowResult<BatchSummary> {
    let own_id = ctx.workflow_id().to_owned();
    ctx.state_mut(|s| s.status.events = input.events.len());

    // Every child at once, started in one workflow task.
    let view: &WorkflowContext<BatchIngestWorkflow> = ctx;
    let starts = input.events.chunks(input.events_per_child.max(1)).map(|share| {
        view.start_child_workflow(
            IngestEventsWorkflow::run,
            ChildInput { events: share.to_vec(), steps: input.child_steps },
            ChildWorkflowOptions::workflow_id(child_workflow_id(&own_id, share)),
        )
        .boxed_local()
    });
    let mut started = Vec::new();
    for child in join_in_place(starts.collect()).await {
        started.push(child?);
    }
    ctx.state_mut(|s| s.status.children_started = started.len());

    let view: &WorkflowContext<BatchIngestWorkflow> = ctx;
    let results = started.into_iter().map(|child| {
        child
            .result()
            .map(move |result| {
                view.state_mut(|s| s.status.children_done += 1);
                result
            })
            .boxed_local()
    });
    // One row per record id, the last event's winning (as on the direct path).
    let mut rows: BTreeMap<RecordId, ProcessedRecord> = BTreeMap::new();
    let mut dead = Vec::new();
    for result in join_in_place(results.collect()).await {
        let processed = result?;
        rows.extend(processed.rows.into_iter().map(|r| (r.record.id.clone(), r)));
        dead.extend(processed.dead);
    }
    let rows: Vec<ProcessedRecord> = rows.into_values().collect();
    let (poison, records) = (dead.len(), rows.len());
    ctx.state_mut(|s| {
        s.status.poison = poison;
        s.status.records = records;
    });

    set_phase(ctx, Phase::Writing);
    let parts = write_parts(&input.batch_id, rows, dead);
    ctx.state_mut(|s| s.status.write_parts = parts.len());
    let mut outcome =
        WriteOutcome { batch_key: String::new(), records: 0, dead_letters: 0, already_written: true };
    for part in parts {
        let written = ctx.execute_activity(IngestActivities::write_batch, part, write_activity()).await?;
        outcome.batch_key = written.batch_key;
        outcome.records += written.records;
        outcome.dead_letters += written.dead_letters;
        outcome.already_written &= written.already_written;
    }
    Ok(BatchSummary { batch_id: input.batch_id, events: input.events.len(), outcome })
}

/// Largest `write_batch` input: Temporal refuses payloads above 2 MB.
const WRITE_PART_BYTES: usize = 1_500_000;

/// The batch's rows and dead letters as `write_batch` inputs under
/// [`WRITE_PART_BYTES`] each: one for a batch of ordinary size (100 events are
/// about 0.5 MB); a larger one (500 EDI-heavy events pass 2 MB) is written in
/// several parts, each its own idempotent saga. The batch still completes, and
/// its offsets are committed, only once every part is written.
fn write_parts(batch_id: &str, rows: Vec<ProcessedRecord>, dead: Vec<DeadLetter>) -> Vec<WriteBatchInput> {
    let part = |dead| WriteBatchInput { batch_id: batch_id.to_owned(), rows: Vec::new(), dead };
    // Dead letters (few, small) ride in the first part.
    let mut size: usize = dead.iter().map(json_size).sum();
    let mut parts = vec![part(dead)];
    for row in rows {
        let row_size = json_size(&row);
        if size + row_size > WRITE_PART_BYTES && parts.last().is_some_and(|p| !p.rows.is_empty()) {
            parts.push(part(Vec::new()));
            size = 0;
        }
        size += row_size;
        parts.last_mut().expect("there is always a part").rows.push(row);
    }
    parts
}

fn json_size<T: Serialize>(value: &T) -> usize {
    serde_json::to_vec(value).map_or(0, |v| v.len())
}

/// The phase for `get_status`; the `Status` search attribute changes only at
/// the end (`completed`, `failed`): each upsert is a history event and a
/// visibility write, and the server's work per batch sets the Temporal rate.
fn set_phase(ctx: &mut WorkflowContext<BatchIngestWorkflow>, phase: Phase) {
    ctx.state_mut(|s| s.status.phase = phase);
    if matches!(phase, Phase::Completed | Phase::Failed) {
        ctx.upsert_search_attributes([STATUS.value_set(phase.as_str().to_owned())]);
    }
}

/// The application failures along a failure's causes, outermost first.
pub fn application_failures(failure: &Failure) -> impl Iterator<Item = &ApplicationFailureInfo> {
    std::iter::successors(Some(failure), |f| f.cause.as_deref()).filter_map(|f| match &f.failure_info {
        Some(FailureInfo::ApplicationFailureInfo(info)) => Some(info),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::CloseReason;
    use crate::pipeline::embed::{EmbedPolicy, HashingEmbedder};
    use crate::pipeline::{parse_events, process_records};
    use crate::source::generator::{Fleet, GeneratorSettings};

    /// Temporal refuses a payload above 2 MB (its default blob size limit).
    const PAYLOAD_LIMIT: usize = 2 * 1024 * 1024;

    async fn batch_rows(
        events: usize,
        only: Option<crate::model::Format>,
    ) -> (Batch, Vec<ProcessedRecord>, Vec<DeadLetter>) {
        let fleet =
            Fleet::new(GeneratorSettings { only, poison_fraction: 0.02, ..GeneratorSettings::clean(7) });
        let batch = Batch::new(fleet.take(events).collect(), CloseReason::Size);
        let (records, dead) = parse_events(&batch.events);
        let rows =
            process_records(&HashingEmbedder::new(384), &EmbedPolicy::default(), records).await.unwrap();
        (batch, rows, dead)
    }

    #[tokio::test]
    async fn a_hundred_event_batch_is_written_in_one_part() {
        let (batch, rows, dead) = batch_rows(100, None).await;
        let parts = write_parts(&batch.id, rows.clone(), dead.clone());
        assert_eq!(parts.len(), 1);
        assert_eq!((parts[0].rows.len(), parts[0].dead.len()), (rows.len(), dead.len()));
    }

    #[tokio::test]
    async fn a_500_event_batch_fits_temporal_payload_limits() {
        // EDI only: interchanges hold several transactions, so more records.
        let (batch, rows, dead) = batch_rows(500, Some(crate::model::Format::Edi)).await;
        let start = json_size(&BatchInput {
            batch_id: batch.id.clone(),
            events: batch.events.clone(),
            events_per_child: 100,
            child_steps: ChildSteps::Local,
        });
        assert!(start < PAYLOAD_LIMIT, "workflow input is {start} bytes");
        let whole = json_size(&WriteBatchInput {
            batch_id: batch.id.clone(),
            rows: rows.clone(),
            dead: dead.clone(),
        });
        assert!(whole > PAYLOAD_LIMIT, "the case this guards: one write input of {whole} bytes");

        let parts = write_parts(&batch.id, rows.clone(), dead.clone());
        assert!(parts.len() > 1);
        for p in &parts {
            let bytes = serde_json::to_vec(p).unwrap();
            assert!(bytes.len() < PAYLOAD_LIMIT, "a part is {} bytes", bytes.len());
            let back: WriteBatchInput = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(back.rows.len(), p.rows.len());
        }
        let ids: Vec<_> = parts.iter().flat_map(|p| p.rows.iter().map(|r| r.record.id.clone())).collect();
        assert_eq!(ids, rows.iter().map(|r| r.record.id.clone()).collect::<Vec<_>>());
        assert_eq!(parts[0].dead, dead);
        assert!(parts[1..].iter().all(|p| p.dead.is_empty()));
    }

    #[test]
    fn join_in_place_keeps_order_at_any_size() {
        for n in [0usize, 1, 30, 31, 100, 900, 901, 2000] {
            let futures = (0..n).map(|i| async move { i }.boxed_local()).collect();
            assert_eq!(futures::executor::block_on(join_in_place(futures)), (0..n).collect::<Vec<_>>());
        }
    }

    #[test]
    fn ids_follow_offsets_and_payloads() {
        let events: Vec<RawEvent> = Fleet::new(GeneratorSettings::clean(1)).take(5).collect();
        let batch = Batch::new(events.clone(), CloseReason::Size);
        let same = Batch::new(events.clone(), CloseReason::Timeout);
        assert_eq!(batch_workflow_id(&batch), batch_workflow_id(&same));
        // Other bytes at the same offsets (a topic created again): another workflow.
        let mut other = events;
        other[0].payload.push(b' ');
        assert_ne!(batch_workflow_id(&batch), batch_workflow_id(&Batch::new(other, CloseReason::Size)));
        let id = batch_workflow_id(&batch);
        let child = child_workflow_id(&id, &batch.events[2..4]);
        let o = &batch.events[2].origin;
        assert_eq!(child, format!("{id}/{}/{}/{}+2", o.topic, o.partition, o.offset));
    }
}
