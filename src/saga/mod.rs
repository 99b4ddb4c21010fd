//! The batched saga: one batch written to every store in parallel, idempotently,
//! under a lock, with compensation when a store fails.

pub mod breaker;
pub mod dlq;
pub mod group_commit;
pub mod idempotency;
pub mod retry;
pub mod writer;

pub use writer::{SagaError, SagaWriter, WriteOutcome};
