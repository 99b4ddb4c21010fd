//! Reads a whole topic back, from its beginning to the end offsets it had
//! when the read started, without joining any group: reconciliations compare
//! what the inputs and the DLQ topic hold with what the stores hold.

use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use super::{ADMIN_TIMEOUT, client_config, raw_event};
use crate::config::KafkaConfig;
use crate::model::{Format, RawEvent};

/// Every message of `topic` up to its current end, as events of `format`;
/// fails if they have not all arrived within `timeout`.
pub fn read_to_end(
    kafka: &KafkaConfig,
    topic: &str,
    format: Format,
    timeout: Duration,
) -> anyhow::Result<Vec<RawEvent>> {
    let consumer: BaseConsumer = client_config(kafka)?
        // Required to fetch, never used to commit.
        .set("group.id", format!("apex-read-back-{topic}"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .with_context(|| format!("a Kafka client for {}", kafka.brokers))?;
    let md = consumer.fetch_metadata(Some(topic), ADMIN_TIMEOUT)?;
    let mut tpl = TopicPartitionList::new();
    let mut total = 0;
    for p in md.topics().first().context("no metadata for the topic")?.partitions() {
        let (low, high) = consumer.fetch_watermarks(topic, p.id(), ADMIN_TIMEOUT)?;
        total += (high - low).max(0);
        tpl.add_partition_offset(topic, p.id(), Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let started = Instant::now();
    let mut out = Vec::with_capacity(total as usize);
    while (out.len() as i64) < total {
        anyhow::ensure!(
            started.elapsed() < timeout,
            "read {} of {total} messages of {topic} in {timeout:?}",
            out.len()
        );
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            out.push(raw_event(&m.with_context(|| format!("reading {topic}"))?, format));
        }
    }
    Ok(out)
}
