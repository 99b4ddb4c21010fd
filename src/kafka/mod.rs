//! Kafka plumbing shared by the consumer source, the topic admin, the load
//! producer, the dead-letter topic and load runs: client settings and message headers.

pub mod dead_letter_topic;
pub mod group_watch;
pub mod read_back;
pub mod topics;

use std::time::Duration;

use chrono::{DateTime, Utc};
use rdkafka::message::Headers;
use rdkafka::{ClientConfig, Message};

use crate::model::{Format, Origin, RawEvent};

/// The header naming the format of a message's body (`samsara`, `edi`, `front`,
/// …), on every message this service produces: inputs, webhooks, dead letters.
pub const FORMAT_HEADER: &str = "apex-format";

/// How long admin and metadata calls may take before they fail.
pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(15);

/// Settings every client of this service starts from.
pub fn client_config(brokers: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers).set("client.id", "apex-ingest");
    c
}

/// A producer that never writes a message twice or out of order per partition.
pub fn producer_config(brokers: &str) -> ClientConfig {
    let mut c = client_config(brokers);
    c.set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("compression.type", "lz4")
        // The Java client's default, so keys land where other producers put them.
        .set("partitioner", "murmur2_random");
    c
}

/// A produce error no retry will fix: the message is too large, or the topic
/// is unknown or forbidden. Anything else (a full queue, a timeout, a broker
/// outage) passes.
pub fn is_permanent_produce_error(e: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(
            C::MessageSizeTooLarge
                | C::InvalidMessageSize
                | C::UnknownTopicOrPartition
                | C::UnknownTopic
                | C::TopicAuthorizationFailed
        )
    )
}

/// A consumed message as the pipeline carries it: origin, key, payload,
/// headers and broker timestamp. A message without a payload (a tombstone)
/// has empty bytes, which parse as poison.
pub fn raw_event(m: &impl Message, format: Format) -> RawEvent {
    let headers = m
        .headers()
        .map(|h| h.iter().map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec())).collect())
        .unwrap_or_default();
    RawEvent {
        format,
        origin: Origin { topic: m.topic().to_owned(), partition: m.partition(), offset: m.offset() },
        key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
        payload: m.payload().unwrap_or_default().to_vec(),
        headers,
        timestamp: m.timestamp().to_millis().and_then(DateTime::<Utc>::from_timestamp_millis),
    }
}
