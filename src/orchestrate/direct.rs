//! Direct orchestrator: runs the stages in process, then the saga writer.

use std::sync::Arc;

use async_trait::async_trait;
use tokio_util::task::AbortOnDropHandle;
use tracing::Instrument;

use super::{BatchReport, OrchestrateError, Orchestrator};
use crate::batch::Batch;
use crate::pipeline::embed::{EmbedPolicy, Embedder};
use crate::pipeline::process_events;
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
        let work = async move {
            let (rows, dead) = process_events(embedder.as_ref(), &policy, &own.events).await?;
            Ok::<_, OrchestrateError>(writer.write(&own.id, &rows, &dead).await?)
        };
        // The batch's span goes with it (its stages and store writes are its children).
        let task = AbortOnDropHandle::new(tokio::spawn(work.instrument(tracing::Span::current())));
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
