//! Orchestrators run one batch: parse, extract and embed every event, then write
//! the batch through the saga. `direct` does it in process, `temporal` as a
//! batch workflow with child workflows over its events, and `rollout` picks one of
//! the two per batch.

pub mod direct;
pub mod rollout;
pub mod temporal;

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
    #[error("Temporal: {detail}")]
    Temporal { detail: String, transient: bool },
}

impl OrchestrateError {
    /// Whether running the batch again later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            OrchestrateError::Embed(e) => e.is_transient(),
            OrchestrateError::Saga(e) => e.is_transient(),
            OrchestrateError::Temporal { transient, .. } => *transient,
        }
    }
}

#[async_trait]
pub trait Orchestrator: Send + Sync {
    async fn run_batch(&self, batch: &Batch) -> Result<BatchReport, OrchestrateError>;
}
