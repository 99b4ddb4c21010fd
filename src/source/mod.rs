//! Sources deliver raw events into the pipeline's first bounded queue.
//! `generator` and `file` serve the embedded mode; Kafka comes later.

pub mod file;
pub mod generator;

use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::model::RawEvent;

pub const SAMSARA_TOPIC: &str = "samsara.telemetry.v1";
pub const EDI_TOPIC: &str = "edi.carrier.v1";

#[async_trait]
pub trait Source: Send {
    /// Sends events into `tx` until the source is exhausted or `shutdown` fires;
    /// returns how many it sent. A full queue makes it wait (backpressure).
    async fn run(
        self: Box<Self>,
        tx: mpsc::Sender<RawEvent>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<u64>;
}
