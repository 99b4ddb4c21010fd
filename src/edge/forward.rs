//! Hands verified webhooks to Kafka: the idempotent producer with `acks=all`
//! (`kafka::producer_config`), one message per webhook, answered only after
//! the broker acknowledged it. Also watches whether the broker is reachable
//! (readiness), since a webhook is refused with 503 rather than held while it is not.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use crate::config::KafkaConfig;
use crate::kafka::{is_permanent_produce_error, producer_config};

/// How often the broker is asked for metadata to decide readiness.
const BROKER_CHECK: Duration = Duration::from_secs(2);

/// Why a message was not acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// Broker unreachable, queue full or no acknowledgement in time: retryable (503).
    #[error("the broker did not take the message: {0}")]
    Unavailable(String),
    /// The broker refused this message for good (too large, unknown topic): 500.
    #[error("the broker refused the message: {0}")]
    Refused(String),
}

pub struct Forwarder {
    producer: FutureProducer,
    broker_reachable: AtomicBool,
}

impl Forwarder {
    /// `produce_timeout` bounds each message (librdkafka's `message.timeout.ms`);
    /// `max_message_bytes` is the largest body plus room for headers.
    pub fn new(
        kafka: &KafkaConfig,
        produce_timeout: Duration,
        max_message_bytes: usize,
    ) -> anyhow::Result<Self> {
        let producer = producer_config(kafka)?
            .set("message.timeout.ms", produce_timeout.as_millis().to_string())
            .set("message.max.bytes", max_message_bytes.to_string())
            .create()
            .with_context(|| format!("creating the edge's Kafka producer for {}", kafka.brokers))?;
        Ok(Forwarder { producer, broker_reachable: AtomicBool::new(false) })
    }

    pub fn broker_reachable(&self) -> bool {
        self.broker_reachable.load(Ordering::Relaxed)
    }

    /// Checks the broker now and then every [`BROKER_CHECK`]; `on_change` sees each change.
    pub async fn watch_broker(self: Arc<Self>, on_change: impl Fn(bool) + Send + 'static) {
        // The first look is reported either way: readiness says what it found.
        let mut first = true;
        loop {
            let me = self.clone();
            let reachable = tokio::task::spawn_blocking(move || {
                me.producer.client().fetch_metadata(None, BROKER_CHECK).is_ok()
            })
            .await
            .unwrap_or(false);
            if self.broker_reachable.swap(reachable, Ordering::Relaxed) != reachable
                || std::mem::take(&mut first)
            {
                if reachable {
                    tracing::info!("the broker is reachable; accepting webhooks");
                } else {
                    tracing::warn!("the broker is unreachable; webhooks are refused with 503");
                }
                on_change(reachable);
            }
            tokio::time::sleep(BROKER_CHECK).await;
        }
    }

    /// Produces one message and waits for the broker's acknowledgement.
    pub async fn send(
        &self,
        topic: &str,
        key: &str,
        body: &[u8],
        headers: &[(&str, &str)],
    ) -> Result<(), ForwardError> {
        let headers = headers
            .iter()
            .fold(OwnedHeaders::new(), |h, (key, value)| h.insert(Header { key, value: Some(*value) }));
        let record = FutureRecord::to(topic).key(key).payload(body).headers(headers);
        // Enqueue without waiting: a full queue is an immediate 503, not a held request.
        let delivery = self.producer.send_result(record).map_err(|(e, _)| classify(e))?;
        match delivery.await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err((e, _))) => Err(classify(e)),
            Err(_) => Err(ForwardError::Unavailable("the producer was dropped".into())),
        }
    }
}

fn classify(e: KafkaError) -> ForwardError {
    if is_permanent_produce_error(&e) {
        ForwardError::Refused(e.to_string())
    } else {
        ForwardError::Unavailable(e.to_string())
    }
}
