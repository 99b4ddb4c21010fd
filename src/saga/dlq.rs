//! Dead letters: raw events that cannot become records, kept with the reason,
//! the raw bytes and where they came from, so they can be repaired and replayed.

use sha2::{Digest, Sha256};

use crate::model::{Format, Origin, PoisonReason, RawEvent};

#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// SHA-256 over origin and payload: a re-delivered poison event is one letter.
    pub id: String,
    pub format: Format,
    pub origin: Origin,
    pub key: Option<String>,
    /// Bounded label (see [`PoisonReason::label`]).
    pub reason: String,
    pub detail: String,
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
