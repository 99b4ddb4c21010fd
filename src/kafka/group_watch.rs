//! How far a consumer group is: the end offsets of its topics against what it
//! has committed, read from the broker as any outside observer would (load
//! runs wait on it until a group is done).

use std::time::Duration;

use anyhow::Context;
use backon::{BlockingRetryable, ConstantBuilder};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{Offset, TopicPartitionList};

use super::{ADMIN_TIMEOUT, client_config};
use crate::config::KafkaConfig;

/// A client that reads one group's committed offsets without joining it.
pub struct GroupWatch {
    consumer: BaseConsumer,
}

impl GroupWatch {
    pub fn new(kafka: &KafkaConfig, group: &str) -> anyhow::Result<Self> {
        let consumer = client_config(kafka)?
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()
            .with_context(|| format!("a Kafka client for group {group} at {}", kafka.brokers))?;
        Ok(GroupWatch { consumer })
    }

    /// Summed over every partition of `topics`: (end offsets, committed offsets;
    /// a partition with nothing committed counts 0).
    pub fn progress(&self, topics: &[&str]) -> anyhow::Result<(i64, i64)> {
        let c = &self.consumer;
        let mut tpl = TopicPartitionList::new();
        let mut end = 0;
        for t in topics {
            let md = c.fetch_metadata(Some(t), ADMIN_TIMEOUT)?;
            for p in md.topics()[0].partitions() {
                tpl.add_partition(t, p.id());
                end += c.fetch_watermarks(t, p.id(), ADMIN_TIMEOUT)?.1;
            }
        }
        // A broker just started loads its group coordinator for a few seconds
        // and answers "not coordinator" meanwhile: that is a wait, not a failure.
        let committed = (|| c.committed_offsets(tpl.clone(), ADMIN_TIMEOUT))
            .retry(ConstantBuilder::default().with_delay(Duration::from_millis(500)).with_max_times(60))
            .when(coordinator_not_ready)
            .call()?
            .elements()
            .iter()
            .map(|e| if let Offset::Offset(o) = e.offset() { o } else { 0 })
            .sum();
        Ok((end, committed))
    }
}

fn coordinator_not_ready(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::NotCoordinator
                | RDKafkaErrorCode::CoordinatorLoadInProgress
                | RDKafkaErrorCode::CoordinatorNotAvailable
        )
    )
}
