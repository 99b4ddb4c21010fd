//! Direct orchestrator: runs the stages in process, then the saga writer.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use tokio_util::task::AbortOnDropHandle;

use super::{BatchReport, OrchestrateError, Orchestrator};
use crate::batch::Batch;
use crate::model::{DeadLetter, RawEvent, Record, RecordId};
use crate::pipeline::embed::{EmbedPolicy, Embedder};
use crate::pipeline::{ProcessedRecord, extract::extract, parse::parse};
use crate::saga::SagaWriter;

pub struct DirectOrchestrator {
    embedder: Arc<dyn Embedder>,
    policy: EmbedPolicy,
    writer: Arc<SagaWriter>,
}

impl DirectOrchestrator {
    pub fn new(embedder: Arc<dyn Embedder>, policy: EmbedPolicy, writer: Arc<SagaWriter>) -> Self {
        DirectOrchestrator { embedder, policy, writer }
    }
}

/// Parses events (a batch's, or a child workflow's share of one): the records
/// (one copy per id, the last delivery winning) and a dead letter per poison event.
pub fn parse_events(events: &[RawEvent]) -> (Vec<Record>, Vec<DeadLetter>) {
    let mut records: BTreeMap<RecordId, Record> = BTreeMap::new();
    let mut dead = Vec::new();
    for raw in events {
        match parse(raw) {
            Ok(rs) => records.extend(rs.into_iter().map(|r| (r.id.clone(), r))),
            Err(reason) => {
                tracing::info!(topic = %raw.origin.topic, partition = raw.origin.partition,
                    offset = raw.origin.offset, reason = %reason, "poison event to dead letters");
                dead.push(DeadLetter::poison(raw, &reason));
            }
        }
    }
    (records.into_values().collect(), dead)
}

/// Extracts and embeds parsed records (one embedding call for the whole batch;
/// records of kinds the policy skips get no vector).
pub async fn process_records(
    embedder: &dyn Embedder,
    policy: &EmbedPolicy,
    records: Vec<Record>,
) -> Result<Vec<ProcessedRecord>, crate::pipeline::embed::EmbedError> {
    let summaries: Vec<String> = records.iter().map(Record::summary).collect();
    let items: Vec<(&str, &str)> =
        records.iter().zip(&summaries).map(|(r, s)| (r.kind.as_str(), s.as_str())).collect();
    let embeddings = policy.embed(embedder, &items).await?;
    Ok(records
        .into_iter()
        .zip(summaries)
        .zip(embeddings)
        .map(|((record, summary), embedding)| ProcessedRecord {
            extraction: extract(&record, &summary),
            record,
            summary,
            embedding,
        })
        .collect())
}

/// parse → extract → embed over events: the rows for the saga writer and a
/// dead letter per poison event (the direct path's stages, and the Temporal
/// `process` activity's).
pub async fn process_events(
    embedder: &dyn Embedder,
    policy: &EmbedPolicy,
    events: &[RawEvent],
) -> Result<(Vec<ProcessedRecord>, Vec<DeadLetter>), crate::pipeline::embed::EmbedError> {
    let (records, dead) = parse_events(events);
    Ok((process_records(embedder, policy, records).await?, dead))
}

#[async_trait]
impl Orchestrator for DirectOrchestrator {
    async fn run_batch(&self, batch: &Batch) -> Result<BatchReport, OrchestrateError> {
        // The whole batch on a task of its own: the pipeline polls every batch
        // in flight from one task, so without this the CPU work of all of them
        // (parsing, building each store call) would share one core. Dropping
        // the handle (a fence, the drain deadline) aborts the task as dropping
        // the future would.
        let (own, embedder, policy, writer) =
            (batch.clone(), self.embedder.clone(), self.policy.clone(), self.writer.clone());
        let task = AbortOnDropHandle::new(tokio::spawn(async move {
            let (rows, dead) = process_events(embedder.as_ref(), &policy, &own.events).await?;
            Ok::<_, OrchestrateError>(writer.write(&own.id, &rows, &dead).await?)
        }));
        let outcome = match task.await {
            Ok(done) => done?,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        };
        Ok(BatchReport {
            batch_id: batch.id.clone(),
            close_reason: batch.close_reason,
            events: batch.events.len(),
            records: outcome.records,
            dead_letters: outcome.dead_letters,
            already_written: outcome.already_written,
        })
    }
}
