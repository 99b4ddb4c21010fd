//! Load generator: writes the generator's synthetic Samsara or EDI traffic to a topic
//! (`apex-ingest produce`), keyed by vehicle id or sender (SCAC) so a key's
//! events stay in one partition, in order.

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use governor::{Quota, RateLimiter};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use super::generator::{Fleet, GeneratorSettings};
use crate::config::KafkaConfig;
use crate::kafka::{FORMAT_HEADER, producer_config};
use crate::model::{Format, RawEvent};

/// Messages handed to librdkafka and not yet acknowledged, at most.
const IN_FLIGHT: usize = 10_000;
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct ProduceSettings {
    pub topic: String,
    pub format: Format,
    pub events: u64,
    /// Messages per second; `None` is as fast as the broker takes them.
    pub rate: Option<NonZeroU32>,
    pub poison_fraction: f64,
    pub seed: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProduceReport {
    pub sent: u64,
    pub elapsed: Duration,
}

/// The format a topic carries, guessed from its name (`samsara…`, `edi…`).
pub fn format_of_topic(topic: &str) -> Option<Format> {
    let t = topic.to_ascii_lowercase();
    match (t.contains("samsara"), t.contains("edi")) {
        (true, false) => Some(Format::Samsara),
        (false, true) => Some(Format::Edi),
        _ => None,
    }
}

/// Produces `settings.events` messages and waits until the broker acknowledged
/// every one (acks=all, idempotent producer); `progress` sees the running count.
pub async fn produce(
    kafka: &KafkaConfig,
    settings: &ProduceSettings,
    progress: impl Fn(u64),
) -> anyhow::Result<ProduceReport> {
    anyhow::ensure!(
        (0.0..=1.0).contains(&settings.poison_fraction),
        "poison fraction must be between 0 and 1"
    );
    let producer: FutureProducer = producer_config(kafka)?
        .create()
        .with_context(|| format!("creating a Kafka producer for {}", kafka.brokers))?;
    let fleet = Fleet::new(GeneratorSettings {
        events: Some(settings.events),
        rate: None,
        poison_fraction: settings.poison_fraction,
        only: Some(settings.format),
        ..GeneratorSettings::clean(settings.seed)
    });
    let limiter = settings.rate.map(|r| RateLimiter::direct(Quota::per_second(r)));
    let started = Instant::now();
    let mut deliveries = FuturesUnordered::new();
    let mut sent = 0;
    for event in fleet.take(settings.events as usize) {
        // The sends already pushed go out while we wait for the next slot: a
        // send future enqueues its message only when polled, and unpolled
        // ones used to leave in bursts of IN_FLIGHT, not at the rate.
        while let Some(l) = &limiter {
            tokio::select! {
                biased;
                () = l.until_ready() => break,
                Some(delivery) = deliveries.next() => acknowledged(Some(delivery), &mut sent, &progress)?,
            }
        }
        deliveries.push(send(producer.clone(), settings.topic.clone(), event));
        while deliveries.len() >= IN_FLIGHT {
            acknowledged(deliveries.next().await, &mut sent, &progress)?;
        }
    }
    while !deliveries.is_empty() {
        acknowledged(deliveries.next().await, &mut sent, &progress)?;
    }
    progress(sent);
    Ok(ProduceReport { sent, elapsed: started.elapsed() })
}

async fn send(producer: FutureProducer, topic: String, event: RawEvent) -> anyhow::Result<()> {
    let headers = OwnedHeaders::new()
        .insert(Header { key: FORMAT_HEADER, value: Some(event.format.as_str()) })
        .insert(Header { key: "apex-producer", value: Some("apex-ingest produce") });
    // The run's trace, on every message it sends.
    let headers = crate::kafka::with_trace(headers, &tracing::Span::current());
    let mut record = FutureRecord::to(&topic).payload(&event.payload).headers(headers);
    if let Some(key) = &event.key {
        record = record.key(key);
    }
    producer
        .send(record, DELIVERY_TIMEOUT)
        .await
        .map_err(|(e, _)| anyhow::anyhow!("producing to {topic}: {e}"))?;
    Ok(())
}

fn acknowledged(
    delivery: Option<anyhow::Result<()>>,
    sent: &mut u64,
    progress: &impl Fn(u64),
) -> anyhow::Result<()> {
    if let Some(result) = delivery {
        result?;
        *sent += 1;
        if sent.is_multiple_of(1_000) {
            progress(*sent);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_follows_the_topic_name() {
        assert_eq!(format_of_topic("samsara.telemetry.v1"), Some(Format::Samsara));
        assert_eq!(format_of_topic("edi.carrier.v1"), Some(Format::Edi));
        assert_eq!(format_of_topic("webhooks.turvo.v1"), None);
    }
}
