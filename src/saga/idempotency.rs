//! The batch idempotency key: SHA-256 over the sorted record and dead-letter ids,
//! so the same records re-delivered in any order map to the same key.

use sha2::{Digest, Sha256};

use crate::model::DeadLetter;
use crate::pipeline::ProcessedRecord;

pub fn batch_key(rows: &[ProcessedRecord], dead: &[DeadLetter]) -> String {
    let mut ids: Vec<&str> =
        rows.iter().map(|r| r.record.id.as_str()).chain(dead.iter().map(|d| d.id.as_str())).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut h = Sha256::new();
    for id in ids {
        h.update(id.as_bytes());
        h.update(b"\n");
    }
    hex::encode(h.finalize())
}
