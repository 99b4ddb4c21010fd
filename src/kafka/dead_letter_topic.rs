//! Publishes dead letters to the DLQ topic beside the table: the raw bytes as
//! the payload, the dead-letter id as the key, and headers with the reason, the
//! origin and the original key. Publishing is at least once (a batch retried
//! after a failure publishes its letters again); the id key makes a repeat
//! recognisable as the same letter, and the idempotent producer adds none of
//! its own.

use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use futures::future::try_join_all;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use super::{is_permanent_produce_error, producer_config};
use crate::config::KafkaConfig;
use crate::model::DeadLetter;
use crate::saga::dlq::DeadLetterPublisher;
use crate::store::StoreError;

const NAME: &str = "dlq_topic";
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

/// Header names a DLQ consumer reads.
pub mod headers {
    pub const ID: &str = "apex-dead-letter-id";
    pub const REASON: &str = "apex-reason";
    pub const DETAIL: &str = "apex-detail";
    pub const FORMAT: &str = crate::kafka::FORMAT_HEADER;
    pub const ORIGIN_TOPIC: &str = "apex-origin-topic";
    pub const ORIGIN_PARTITION: &str = "apex-origin-partition";
    pub const ORIGIN_OFFSET: &str = "apex-origin-offset";
    /// The original message's key; absent when it had none.
    pub const ORIGIN_KEY: &str = "apex-origin-key";
}

pub struct DeadLetterTopic {
    producer: FutureProducer,
    topic: String,
}

impl DeadLetterTopic {
    pub fn new(kafka: &KafkaConfig, topic: &str) -> anyhow::Result<Self> {
        let producer = producer_config(kafka)?
            .create()
            .with_context(|| format!("creating the dead-letter producer for {}", kafka.brokers))?;
        Ok(DeadLetterTopic { producer, topic: topic.to_owned() })
    }
}

#[async_trait]
impl DeadLetterPublisher for DeadLetterTopic {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn publish(&self, letters: &[DeadLetter]) -> Result<(), StoreError> {
        try_join_all(letters.iter().map(|d| async move {
            let partition = d.origin.partition.to_string();
            let offset = d.origin.offset.to_string();
            let mut headers = OwnedHeaders::new()
                .insert(Header { key: headers::ID, value: Some(d.id.as_str()) })
                .insert(Header { key: headers::REASON, value: Some(d.reason.as_str()) })
                .insert(Header { key: headers::DETAIL, value: Some(d.detail.as_str()) })
                .insert(Header { key: headers::FORMAT, value: Some(d.format.as_str()) })
                .insert(Header { key: headers::ORIGIN_TOPIC, value: Some(d.origin.topic.as_str()) })
                .insert(Header { key: headers::ORIGIN_PARTITION, value: Some(partition.as_str()) })
                .insert(Header { key: headers::ORIGIN_OFFSET, value: Some(offset.as_str()) });
            if let Some(key) = &d.key {
                headers = headers.insert(Header { key: headers::ORIGIN_KEY, value: Some(key.as_str()) });
            }
            let record = FutureRecord::to(&self.topic).payload(&d.raw).key(&d.id).headers(headers);
            self.producer.send(record, DELIVERY_TIMEOUT).await.map_err(|(e, _)| StoreError {
                store: NAME,
                message: format!("publishing dead letter {} to {}: {e}", d.id, self.topic),
                // A full queue, a timeout or a broker outage passes; a rejected
                // message (too large, unknown topic) does not.
                transient: !is_permanent_produce_error(&e),
            })
        }))
        .await?;
        Ok(())
    }
}
