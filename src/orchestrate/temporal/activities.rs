//! The activities: the same stage functions the direct orchestrator calls,
//! with their errors sorted into retryable and non-retryable failures.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use temporalio_macros::activities;
use temporalio_sdk::ApplicationFailure;
use temporalio_sdk::activities::{ActivityContext, ActivityError};

use crate::model::{DeadLetter, RawEvent, Record};
use crate::pipeline::embed::{EmbedPolicy, Embedder};
use crate::pipeline::{Extraction, ProcessedRecord, extract::extract};
use crate::pipeline::{parse_events, process_events};
use crate::saga::SagaWriter;
use crate::saga::writer::WriteOutcome;

/// How often a long activity tells the server it is alive (heartbeat timeouts
/// are 10 s for embed, 20 s for write_batch; the SDK throttles what it sends).
const HEARTBEAT_EVERY: Duration = Duration::from_secs(2);

/// One embedding, compact on the wire.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Vector(#[serde(with = "crate::model::wire::floats")] pub Vec<f32>);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WriteBatchInput {
    pub batch_id: String,
    pub rows: Vec<ProcessedRecord>,
    pub dead: Vec<DeadLetter>,
}

/// Events parsed: their records, and a dead letter per poison event (poison
/// is data, not a failure, so one bad event never fails its neighbours).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Parsed {
    pub records: Vec<Record>,
    pub dead: Vec<DeadLetter>,
}

/// Events processed: rows ready for the saga writer and the poison events' dead letters.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Processed {
    pub rows: Vec<ProcessedRecord>,
    pub dead: Vec<DeadLetter>,
}

pub struct IngestActivities {
    embedder: Arc<dyn Embedder>,
    policy: EmbedPolicy,
    writer: Arc<SagaWriter>,
}

impl IngestActivities {
    pub fn new(embedder: Arc<dyn Embedder>, policy: EmbedPolicy, writer: Arc<SagaWriter>) -> Self {
        IngestActivities { embedder, policy, writer }
    }
}

/// A failure Temporal retries only when `transient`.
fn failure(transient: bool, error: impl std::error::Error + Send + Sync + 'static) -> ActivityError {
    ActivityError::application(if transient {
        ApplicationFailure::new(error)
    } else {
        ApplicationFailure::non_retryable(error)
    })
}

/// Runs `work`, heartbeating until it finishes.
pub async fn heartbeating<T>(ctx: &ActivityContext, work: impl Future<Output = T>) -> T {
    let mut work = std::pin::pin!(work);
    let mut beat = tokio::time::interval(HEARTBEAT_EVERY);
    let mut beats: u64 = 0;
    loop {
        tokio::select! {
            out = &mut work => return out,
            _ = beat.tick() => {
                beats += 1;
                if let Err(e) = ctx.record_heartbeat(beats).await {
                    tracing::warn!(error = %e, "heartbeat not recorded");
                }
            }
        }
    }
}

#[activities]
impl IngestActivities {
    /// Raw bytes to records, and a dead letter for each poison event.
    #[activity(name = "parse")]
    pub async fn parse(_ctx: ActivityContext, events: Vec<RawEvent>) -> Result<Parsed, ActivityError> {
        let (records, dead) = parse_events(&events);
        Ok(Parsed { records, dead })
    }

    /// Summary and graph entities of each record, in order.
    #[activity(name = "extract_entities")]
    pub async fn extract_entities(
        _ctx: ActivityContext,
        records: Vec<Record>,
    ) -> Result<Vec<(String, Extraction)>, ActivityError> {
        Ok(records
            .iter()
            .map(|record| {
                let summary = record.summary();
                let extraction = extract(record, &summary);
                (summary, extraction)
            })
            .collect())
    }

    /// One vector per (record kind, summary), in order; empty for a kind the
    /// embedding policy skips.
    #[activity(name = "embed")]
    pub async fn embed(
        self: Arc<Self>,
        ctx: ActivityContext,
        texts: Vec<(String, String)>,
    ) -> Result<Vec<Vector>, ActivityError> {
        let items: Vec<(&str, &str)> = texts.iter().map(|(k, t)| (k.as_str(), t.as_str())).collect();
        let vectors = heartbeating(&ctx, self.policy.embed(self.embedder.as_ref(), &items))
            .await
            .map_err(|e| failure(e.is_transient(), e))?;
        Ok(vectors.into_iter().map(Vector).collect())
    }

    /// parse → extract → embed in one activity (the direct path's stages).
    #[activity(name = "process")]
    pub async fn process(
        self: Arc<Self>,
        ctx: ActivityContext,
        events: Vec<RawEvent>,
    ) -> Result<Processed, ActivityError> {
        let (rows, dead) = heartbeating(&ctx, process_events(self.embedder.as_ref(), &self.policy, &events))
            .await
            .map_err(|e| failure(e.is_transient(), e))?;
        Ok(Processed { rows, dead })
    }

    /// The whole batch through the saga writer (idempotent by batch id).
    #[activity(name = "write_batch")]
    pub async fn write_batch(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: WriteBatchInput,
    ) -> Result<WriteOutcome, ActivityError> {
        let written = self.writer.write(&input.batch_id, &input.rows, &input.dead);
        heartbeating(&ctx, written).await.map_err(|e| failure(e.is_transient(), e))
    }
}
