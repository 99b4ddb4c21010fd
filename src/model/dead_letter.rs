//! Dead letters: raw events that cannot become records, kept with the reason,
//! the raw bytes and where they came from, so they can be repaired and replayed.
//! Data the pipeline carries (parse makes them, the saga writes them).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Format, Origin, PoisonReason, RawEvent};

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
        first: &super::Record,
        ids: &[super::RecordId],
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
