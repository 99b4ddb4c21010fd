//! Batcher: closes a batch at `max_events` or `max_wait`, whichever comes first,
//! and when its input ends. The timeout starts when the first event enters an
//! empty batch (not at the last flush), so a quiet topic never holds an event
//! longer than `max_wait`.

use std::collections::BTreeMap;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};

use crate::model::RawEvent;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// `max_events` reached.
    Size,
    /// `max_wait` passed since the first event of the batch.
    Timeout,
    /// The input ended (shutdown, end of file, end of generator).
    Shutdown,
    /// Not from the batcher: dead letters re-submitted by `dlq replay`.
    Replay,
}

impl CloseReason {
    /// The reasons the batcher closes a batch for.
    pub const ALL: [CloseReason; 3] = [CloseReason::Size, CloseReason::Timeout, CloseReason::Shutdown];

    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Size => "size",
            CloseReason::Timeout => "timeout",
            CloseReason::Shutdown => "shutdown",
            CloseReason::Replay => "replay",
        }
    }
}

/// Inclusive range of offsets a batch covers in one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetRange {
    pub first: i64,
    pub last: i64,
}

#[derive(Debug, Clone)]
pub struct Batch {
    /// SHA-256 over the offset ranges: the same events re-delivered in the same
    /// boundaries get the same id.
    pub id: String,
    pub events: Vec<RawEvent>,
    pub close_reason: CloseReason,
    /// Per (topic, partition), the offsets this batch covers.
    pub offsets: BTreeMap<(String, i32), OffsetRange>,
    /// When its first event reached the batcher (batch latency is measured from here).
    pub opened_at: std::time::Instant,
}

impl Batch {
    pub fn new(events: Vec<RawEvent>, close_reason: CloseReason) -> Self {
        let mut offsets: BTreeMap<(String, i32), OffsetRange> = BTreeMap::new();
        for e in &events {
            let o = &e.origin;
            offsets
                .entry((o.topic.clone(), o.partition))
                .and_modify(|r| {
                    r.first = r.first.min(o.offset);
                    r.last = r.last.max(o.offset);
                })
                .or_insert(OffsetRange { first: o.offset, last: o.offset });
        }
        let mut h = Sha256::new();
        for ((topic, partition), r) in &offsets {
            h.update(format!("{topic}/{partition}/{}-{};", r.first, r.last));
        }
        Batch {
            id: hex::encode(h.finalize()),
            events,
            close_reason,
            offsets,
            opened_at: std::time::Instant::now(),
        }
    }

    fn opened_at(mut self, at: std::time::Instant) -> Self {
        self.opened_at = at;
        self
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Batcher {
    pub max_events: usize,
    pub max_wait: Duration,
}

impl Batcher {
    /// Collects events from `input` into batches sent to `output` until the input
    /// closes (the last partial batch is flushed as `Shutdown`) or the output is gone.
    pub async fn run(self, mut input: mpsc::Receiver<RawEvent>, output: mpsc::Sender<Batch>) {
        let mut events: Vec<RawEvent> = Vec::with_capacity(self.max_events);
        let mut deadline = Instant::now();
        let mut opened = std::time::Instant::now();
        loop {
            let next = if events.is_empty() {
                input.recv().await
            } else {
                tokio::select! {
                    biased;
                    e = input.recv() => e,
                    _ = sleep_until(deadline) => {
                        let batch = Batch::new(std::mem::take(&mut events), CloseReason::Timeout).opened_at(opened);
                        if output.send(batch).await.is_err() {
                            return;
                        }
                        continue;
                    }
                }
            };
            let Some(event) = next else {
                if !events.is_empty() {
                    let _ = output.send(Batch::new(events, CloseReason::Shutdown).opened_at(opened)).await;
                }
                return;
            };
            if events.is_empty() {
                deadline = Instant::now() + self.max_wait;
                opened = std::time::Instant::now();
            }
            events.push(event);
            if events.len() >= self.max_events {
                let batch = Batch::new(std::mem::take(&mut events), CloseReason::Size).opened_at(opened);
                if output.send(batch).await.is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Format, Origin};

    fn event(partition: i32, offset: i64) -> RawEvent {
        RawEvent::new(Format::Samsara, Origin { topic: "t".into(), partition, offset }, None, b"{}".to_vec())
    }

    fn start(max_events: usize, max_wait: Duration) -> (mpsc::Sender<RawEvent>, mpsc::Receiver<Batch>) {
        let (in_tx, in_rx) = mpsc::channel(1000);
        let (out_tx, out_rx) = mpsc::channel(1000);
        tokio::spawn(Batcher { max_events, max_wait }.run(in_rx, out_tx));
        (in_tx, out_rx)
    }

    #[tokio::test(start_paused = true)]
    async fn closes_on_size_before_timeout() {
        let (tx, mut rx) = start(100, Duration::from_secs(30));
        for i in 0..250 {
            tx.send(event((i % 3) as i32, i)).await.unwrap();
        }
        let b = rx.recv().await.unwrap();
        assert_eq!(b.close_reason, CloseReason::Size);
        assert_eq!(b.events.len(), 100);
        assert_eq!(b.offsets[&("t".to_string(), 0)], OffsetRange { first: 0, last: 99 });
        assert_eq!(rx.recv().await.unwrap().close_reason, CloseReason::Size);
        // The remaining 50 wait for the timeout.
        let started = Instant::now();
        let b = rx.recv().await.unwrap();
        assert_eq!((b.close_reason, b.events.len()), (CloseReason::Timeout, 50));
        assert_eq!(started.elapsed(), Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn timeout_starts_at_first_event_of_an_empty_batch() {
        let (tx, mut rx) = start(100, Duration::from_secs(30));
        // A quiet topic: nothing for 100 s, then one event.
        tokio::time::sleep(Duration::from_secs(100)).await;
        let t0 = Instant::now();
        tx.send(event(0, 1)).await.unwrap();
        tokio::time::sleep(Duration::from_secs(20)).await;
        tx.send(event(0, 2)).await.unwrap();
        let b = rx.recv().await.unwrap();
        assert_eq!(b.close_reason, CloseReason::Timeout);
        assert_eq!(b.events.len(), 2);
        // 30 s after the first event, not 30 s after the second nor after start.
        assert_eq!(t0.elapsed(), Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn flushes_partial_batch_on_shutdown() {
        let (tx, mut rx) = start(100, Duration::from_secs(30));
        tx.send(event(0, 7)).await.unwrap();
        tx.send(event(1, 9)).await.unwrap();
        drop(tx);
        let b = rx.recv().await.unwrap();
        assert_eq!(b.close_reason, CloseReason::Shutdown);
        assert_eq!(b.offsets.len(), 2);
        assert!(rx.recv().await.is_none());
    }

    #[test]
    fn batch_id_depends_on_offsets_only() {
        let a = Batch::new(vec![event(0, 1), event(0, 2)], CloseReason::Size);
        let b = Batch::new(vec![event(0, 2), event(0, 1)], CloseReason::Timeout);
        let c = Batch::new(vec![event(0, 1), event(0, 3)], CloseReason::Size);
        assert_eq!(a.id, b.id);
        assert_ne!(a.id, c.id);
    }
}
