//! Kafka plumbing shared by the consumer source, the topic admin, the load
//! producer, the dead-letter topic and load runs: client settings and message headers.

pub mod dead_letter_topic;
pub mod group_watch;
pub mod producer;
pub mod topics;

use std::time::Duration;

use rdkafka::ClientConfig;

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
