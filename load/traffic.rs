//! What the load runs share: fresh topics for a run, and the generator's mix
//! of Samsara and EDI traffic produced onto them (at a rate, or as fast as
//! the broker takes it). Included by each load example with `#[path]`.

use std::time::{Duration, Instant};

use apex_ingest::kafka::topics::{self, TopicSpec};
use apex_ingest::model::Format;
use apex_ingest::source::produce::{ProduceSettings, produce};

pub const SAMSARA_PARTITIONS: i32 = 6;
pub const EDI_PARTITIONS: i32 = 3;

/// A run's topics, created empty.
#[derive(Debug, Clone)]
pub struct RunTopics {
    pub samsara: String,
    pub edi: String,
    pub dlq: String,
}

impl RunTopics {
    /// Creates `{prefix}.samsara.{id}`, `{prefix}.edi.{id}` and `{prefix}.dlq.{id}`.
    pub async fn create(brokers: &str, prefix: &str, id: &str) -> anyhow::Result<Self> {
        let t = RunTopics {
            samsara: format!("{prefix}.samsara.{id}"),
            edi: format!("{prefix}.edi.{id}"),
            dlq: format!("{prefix}.dlq.{id}"),
        };
        let specs = [
            TopicSpec::scratch(&t.samsara, SAMSARA_PARTITIONS),
            TopicSpec::scratch(&t.edi, EDI_PARTITIONS),
            TopicSpec::scratch(&t.dlq, 1),
        ];
        topics::apply(&kafka_at(brokers), &specs, Some(1)).await?;
        Ok(t)
    }
}

/// One produce stream: (topic, format, events, seed).
pub type Stream = (String, Format, u64, u64);

/// The two streams of a run: `edi_share` of `events` as EDI interchanges, the
/// rest Samsara events, each from its own seed.
pub fn streams(topics: &RunTopics, events: u64, edi_share: f64, seed: u64) -> [Stream; 2] {
    let edi_events = (events as f64 * edi_share) as u64;
    [
        (topics.samsara.clone(), Format::Samsara, events - edi_events, seed),
        (topics.edi.clone(), Format::Edi, edi_events, seed + 1),
    ]
}

/// Produces every stream at once, sharing `rate` events/s between them by
/// their sizes (0: as fast as the broker takes them); returns how long it took.
pub async fn produce_streams(
    brokers: &str,
    streams: Vec<Stream>,
    rate: u32,
    poison: f64,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let total: u64 = streams.iter().map(|s| s.2).sum();
    let jobs = streams.into_iter().map(|(topic, format, events, seed)| {
        let share = (rate as f64 * events as f64 / total.max(1) as f64).ceil() as u32;
        async move {
            let settings = ProduceSettings {
                topic,
                format,
                events,
                rate: std::num::NonZeroU32::new(share),
                poison_fraction: poison,
                seed,
            };
            produce(&kafka_at(brokers), &settings, |_| {}).await
        }
    });
    futures::future::try_join_all(jobs).await?;
    Ok(started.elapsed())
}

/// `[kafka]` of the plaintext broker at `brokers` (the load runs' clients).
pub fn kafka_at(brokers: &str) -> apex_ingest::config::KafkaConfig {
    apex_ingest::config::KafkaConfig { brokers: brokers.to_owned(), ..Default::default() }
}
