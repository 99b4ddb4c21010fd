//! Orchestrators run one batch: parse, extract and embed every event, then write
//! the batch through the saga. `direct` does it in process.

pub mod direct;

use async_trait::async_trait;

use crate::batch::{Batch, CloseReason};
use crate::pipeline::embed::EmbedError;
use crate::saga::SagaError;

/// What happened to one batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchReport {
    pub batch_id: String,
    pub close_reason: CloseReason,
    pub events: usize,
    pub records: u64,
    pub dead_letters: u64,
    pub already_written: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum OrchestrateError {
    #[error(transparent)]
    Embed(#[from] EmbedError),
    #[error(transparent)]
    Saga(#[from] SagaError),
}

impl OrchestrateError {
    /// Whether running the batch again later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            OrchestrateError::Embed(e) => e.is_transient(),
            OrchestrateError::Saga(e) => e.is_transient(),
        }
    }
}

#[async_trait]
pub trait Orchestrator: Send + Sync {
    async fn run_batch(&self, batch: &Batch) -> Result<BatchReport, OrchestrateError>;
}
