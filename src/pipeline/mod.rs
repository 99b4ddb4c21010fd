//! Per-event stages: parse raw bytes into records, extract graph entities,
//! embed a text summary. Each stage is a plain function or trait so it can be
//! called in process (direct orchestrator) or from an activity (Temporal);
//! `stages` walks a batch through them.

pub mod embed;
pub mod extract;
pub mod parse;
mod stages;

use serde::{Deserialize, Serialize};

use crate::model::Record;
pub use extract::Extraction;
pub use stages::{parse_events, process_events, process_records};

impl ProcessedRecord {
    /// Whether the record has a vector (the vector role stores only these).
    pub fn is_embedded(&self) -> bool {
        !self.embedding.is_empty()
    }
}

/// A record with everything the stores need: entities, relations and its vector.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProcessedRecord {
    pub record: Record,
    pub summary: String,
    pub extraction: Extraction,
    /// Empty when the embedding policy skips the record's kind (`[embed] skip_kinds`).
    #[serde(with = "crate::model::wire::floats")]
    pub embedding: Vec<f32>,
}
