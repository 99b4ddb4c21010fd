//! The Kafka consumer group, its topics and its backpressure.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{
    BANK_TOPIC, CRM_TOPIC, Config, DLQ_TOPIC, EDI_TOPIC, FINANCIAL_TOPIC, FRONT_TOPIC, MARKET_TOPIC,
    SAMSARA_TOPIC, TURVO_TOPIC, require,
};

/// Connection settings of the real services; defaults are where
/// `scripts/services up` starts them (`scripts/services env` prints them).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Comma-separated bootstrap servers.
    pub brokers: String,
    /// Consumer group: every process with this id shares the partitions.
    pub group_id: String,
    /// Topic of Samsara telemetry (JSON).
    pub samsara_topic: String,
    /// Topic of carrier EDI (X12 interchanges).
    pub edi_topic: String,
    /// Topic of Front webhooks (the edge produces them); empty is not read.
    pub front_topic: String,
    /// Topic of Turvo webhooks (the edge produces them); empty is not read.
    pub turvo_topic: String,
    /// Topic of bank transactions (the Plaid poller produces them); empty is not read.
    pub bank_topic: String,
    /// Topic of CRM objects (the HubSpot poller produces them); empty is not read.
    pub crm_topic: String,
    /// Topic of market index points (the SONAR poller produces them); empty is not read.
    pub market_topic: String,
    /// Topic of invoices, payments and other accounting objects (the QuickBooks poller); empty is not read.
    pub financial_topic: String,
    /// Where poison records are published (besides the dead-letter table).
    pub dlq_topic: String,
    /// Where to start a partition that has no committed offset: "earliest" or "latest".
    pub auto_offset_reset: String,
    /// A member that sends no heartbeat for this long leaves the group.
    #[serde(with = "humantime_serde")]
    pub session_timeout: Duration,
    /// How often each assigned partition's lag is measured against the broker's end offset.
    #[serde(with = "humantime_serde")]
    pub statistics_interval: Duration,
    /// On revocation, how long batches of the revoked partitions may take to
    /// finish before they are fenced (stopped before their next store call,
    /// uncommitted) and the partitions released.
    #[serde(with = "humantime_serde")]
    pub revoke_deadline: Duration,
    /// Fetched events a member holds that no batch has taken yet (the pipeline
    /// is full): at this many it pauses its partitions, at half as many it
    /// resumes. Half must cover what the pipeline writes while a resumed
    /// partition is fetched again (librdkafka drops a paused partition's
    /// prefetched messages), and must hold `source.queue`.
    pub max_buffered_events: usize,
}

impl KafkaConfig {
    /// Reads the Samsara and EDI topics only: not the webhook and poll topics
    /// (load runs and tests on topics of their own).
    pub fn only_samsara_and_edi(&mut self) {
        for topic in [
            &mut self.front_topic,
            &mut self.turvo_topic,
            &mut self.bank_topic,
            &mut self.crm_topic,
            &mut self.market_topic,
            &mut self.financial_topic,
        ] {
            topic.clear();
        }
    }
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "127.0.0.1:9092".into(),
            group_id: "apex-ingest".into(),
            samsara_topic: SAMSARA_TOPIC.into(),
            edi_topic: EDI_TOPIC.into(),
            front_topic: FRONT_TOPIC.into(),
            turvo_topic: TURVO_TOPIC.into(),
            bank_topic: BANK_TOPIC.into(),
            crm_topic: CRM_TOPIC.into(),
            market_topic: MARKET_TOPIC.into(),
            financial_topic: FINANCIAL_TOPIC.into(),
            dlq_topic: DLQ_TOPIC.into(),
            auto_offset_reset: "earliest".into(),
            session_timeout: Duration::from_secs(30),
            statistics_interval: Duration::from_secs(5),
            revoke_deadline: Duration::from_secs(20),
            max_buffered_events: 20_000,
        }
    }
}

/// The checks of these sections.
pub(super) fn validate(c: &Config) -> anyhow::Result<()> {
    require(&[
        (
            c.kafka.max_buffered_events / 2 >= c.source.queue,
            "kafka.max_buffered_events",
            "must be at least twice source.queue (a member resumes at half of it)",
        ),
        (
            ["earliest", "latest"].contains(&c.kafka.auto_offset_reset.as_str()),
            "kafka.auto_offset_reset",
            "must be \"earliest\" or \"latest\"",
        ),
        (!c.kafka.group_id.is_empty(), "kafka.group_id", "must not be empty"),
    ])
}
