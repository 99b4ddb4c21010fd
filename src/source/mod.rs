//! Sources deliver raw events into the pipeline's first bounded queue.
//! `generator` and `file` serve the embedded mode; `kafka` is a consumer-group
//! member that commits only what the pipeline has written.

pub mod file;
pub mod generator;
pub mod kafka;
pub mod produce;

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::batch::Batch;
use crate::model::RawEvent;

/// A batch the pipeline is about to run, as its source lets it.
pub struct Dispatched {
    /// The events the source still owns (`None`: none left, skip the batch).
    pub batch: Option<Batch>,
    /// Events left out because their partition was revoked meanwhile.
    pub dropped: usize,
    /// Identifies the batch to [`BatchProgress::finish`].
    pub ticket: u64,
    /// Cancelled when the batch must stop: its events are no longer this
    /// member's to write (a partition moved on after the revoke deadline).
    pub fence: CancellationToken,
}

/// What a source hears about the batches made of its events, to commit offsets
/// and apply backpressure. The defaults suit sources that commit nothing.
pub trait BatchProgress: Send + Sync {
    /// Whether the service is ready before any event arrives (a consumer is not
    /// ready until partitions are assigned).
    fn ready_at_start(&self) -> bool {
        true
    }
    /// Called before a batch runs.
    fn dispatch(&self, batch: Batch) -> Dispatched {
        Dispatched { batch: Some(batch), dropped: 0, ticket: 0, fence: CancellationToken::new() }
    }
    /// The batch was fully written (`written`), or given up and must not be committed.
    fn finish(&self, _ticket: u64, _batch: &Batch, _written: bool) {}
    /// The pipeline has drained: commit what is written.
    fn drained(&self) {}
}

/// Progress of a source that has nothing to commit.
pub struct NoCommits;

impl BatchProgress for NoCommits {}

#[async_trait]
pub trait Source: Send {
    /// Where the pipeline reports batches of this source's events.
    fn progress(&self) -> Arc<dyn BatchProgress> {
        Arc::new(NoCommits)
    }

    /// Sends events into `tx` until the source is exhausted or `shutdown` fires;
    /// returns how many it sent. A full queue makes it wait (backpressure).
    async fn run(
        self: Box<Self>,
        tx: mpsc::Sender<RawEvent>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<u64>;
}
