//! Dead letters: raw events that cannot become records, kept with the reason,
//! the raw bytes and where they came from, so they can be repaired and replayed.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::batch::{Batch, CloseReason};
use crate::model::{Format, Origin, PoisonReason, RawEvent};
use crate::orchestrate::{OrchestrateError, Orchestrator};
use crate::pipeline::parse::parse;
use crate::store::{DeadLetterFilter, RelationalStore, StoreError};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// SHA-256 over origin and payload: a re-delivered poison event is one letter.
    pub id: String,
    pub format: Format,
    pub origin: Origin,
    pub key: Option<String>,
    /// Bounded label (see [`PoisonReason::label`]).
    pub reason: String,
    pub detail: String,
    #[serde(with = "crate::model::wire::bytes")]
    pub raw: Vec<u8>,
}

impl DeadLetter {
    pub fn poison(raw: &RawEvent, reason: &PoisonReason) -> Self {
        let mut h = Sha256::new();
        h.update(raw.origin.topic.as_bytes());
        h.update(raw.origin.partition.to_be_bytes());
        h.update(raw.origin.offset.to_be_bytes());
        h.update(&raw.payload);
        DeadLetter {
            id: hex::encode(h.finalize()),
            format: raw.format,
            origin: raw.origin.clone(),
            key: raw.key.clone(),
            reason: reason.label().to_owned(),
            detail: reason.to_string(),
            raw: raw.payload.clone(),
        }
    }
}

/// Reason of the repair letters written when a compensation itself fails.
pub const COMPENSATION_FAILED: &str = "compensation_failed";

impl DeadLetter {
    /// A compensation that failed: `store` still holds these records of a batch
    /// that did not complete. The raw bytes are JSON with everything needed to
    /// repair it by hand (or by re-delivering the batch, which rewrites them).
    pub fn compensation_failed(
        batch_key: &str,
        store: &str,
        first: &crate::model::Record,
        ids: &[crate::model::RecordId],
        error: &str,
    ) -> Self {
        let mut h = Sha256::new();
        h.update(COMPENSATION_FAILED.as_bytes());
        h.update(batch_key.as_bytes());
        h.update(store.as_bytes());
        let raw = serde_json::json!({
            "batch_key": batch_key,
            "store": store,
            "record_ids": ids,
            "error": error,
        });
        DeadLetter {
            id: hex::encode(h.finalize()),
            format: first.format,
            origin: first.origin.clone(),
            key: None,
            reason: COMPENSATION_FAILED.to_owned(),
            detail: format!(
                "{store} still holds {} records of batch {batch_key}, which did not complete: {error}",
                ids.len()
            ),
            raw: raw.to_string().into_bytes(),
        }
    }

    /// Repair letters record a failed compensation, not an event; never
    /// replayed. The writer that left one marks it resolved (`replayed_at`)
    /// once it has written the whole batch after all.
    pub fn is_repair(&self) -> bool {
        self.reason == COMPENSATION_FAILED
    }

    /// The raw event as it first arrived, to run through the pipeline again.
    pub fn raw_event(&self) -> RawEvent {
        RawEvent::new(self.format, self.origin.clone(), self.key.clone(), self.raw.clone())
    }
}

/// Somewhere besides the table that dead letters are announced (the DLQ topic).
#[async_trait]
pub trait DeadLetterPublisher: Send + Sync {
    /// Name of its breaker and retry metrics.
    fn name(&self) -> &'static str;
    /// Publishes every letter or fails; a transient failure retries the batch.
    async fn publish(&self, letters: &[DeadLetter]) -> Result<(), StoreError>;
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReplayReport {
    pub replayed: usize,
    /// Still poison: left in the table (not marked replayed).
    pub still_failing: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Orchestrate(#[from] OrchestrateError),
}

/// Re-submits dead letters that have not been replayed through the normal path
/// (e.g. after a parser fix), in batches of `batch_size`. Those that parse now
/// are written and marked replayed; those that still fail stay as they are.
pub async fn replay(
    relational: &dyn RelationalStore,
    orchestrator: &dyn Orchestrator,
    filter: &DeadLetterFilter,
    batch_size: usize,
) -> Result<ReplayReport, ReplayError> {
    let mut letters =
        relational.dead_letters(&DeadLetterFilter { include_replayed: false, ..filter.clone() }).await?;
    letters.retain(|d| !d.letter.is_repair());
    let mut report = ReplayReport::default();
    for chunk in letters.chunks(batch_size.max(1)) {
        let events: Vec<RawEvent> = chunk.iter().map(|d| d.letter.raw_event()).collect();
        let now_valid: Vec<String> = chunk
            .iter()
            .zip(&events)
            .filter(|(_, e)| parse(e).is_ok())
            .map(|(d, _)| d.letter.id.clone())
            .collect();
        orchestrator.run_batch(&Batch::new(events, CloseReason::Replay)).await?;
        relational.mark_replayed(&now_valid).await?;
        report.replayed += now_valid.len();
        report.still_failing += chunk.len() - now_valid.len();
    }
    Ok(report)
}
