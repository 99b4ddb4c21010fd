//! Where dead letters go besides the relational table (the DLQ topic).

use async_trait::async_trait;

use crate::model::DeadLetter;
use crate::store::StoreError;

/// Somewhere besides the table that dead letters are announced (the DLQ topic).
#[async_trait]
pub trait DeadLetterPublisher: Send + Sync {
    /// Name of its breaker and retry metrics.
    fn name(&self) -> &'static str;
    /// Publishes every letter or fails; a transient failure retries the batch.
    async fn publish(&self, letters: &[DeadLetter]) -> Result<(), StoreError>;
}
