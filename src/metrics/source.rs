//! The source's metrics: events taken in, and a consumer-group member's view of its partitions.

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Registry};

use super::{counter_vec, gauge_vec, registered};

#[derive(Clone)]
pub struct SourceMetrics {
    events_in: IntCounterVec,
    lag: IntGaugeVec,
    position: IntGaugeVec,
    committed: IntGaugeVec,
    paused: IntGaugeVec,
    assigned: IntGauge,
    rebalances: IntCounterVec,
    commits: IntCounterVec,
    dropped_on_revoke: IntCounter,
    client_errors: IntCounter,
}

fn partition_gauge(registry: &Registry, name: &str, help: &str) -> IntGaugeVec {
    gauge_vec(registry, name, help, &["topic", "partition"])
}

impl SourceMetrics {
    pub(super) fn new(registry: &Registry) -> Self {
        SourceMetrics {
            events_in: counter_vec(
                registry,
                "apex_events_in_total",
                "Raw events taken from sources",
                &["format"],
            ),
            lag: partition_gauge(
                registry,
                "apex_kafka_consumer_lag",
                "High watermark minus committed offset, per assigned partition",
            ),
            position: partition_gauge(
                registry,
                "apex_kafka_position",
                "Next offset this member hands to the pipeline, per assigned partition",
            ),
            committed: partition_gauge(
                registry,
                "apex_kafka_committed_offset",
                "Offset committed for the group (every offset below it is written)",
            ),
            paused: partition_gauge(
                registry,
                "apex_kafka_partition_paused",
                "1 while the partition is paused for backpressure",
            ),
            assigned: registered(
                registry,
                IntGauge::new("apex_kafka_assigned_partitions", "Partitions assigned to this member"),
            ),
            rebalances: counter_vec(
                registry,
                "apex_kafka_rebalances_total",
                "Rebalance callbacks, by kind (assign, revoke)",
                &["kind"],
            ),
            commits: counter_vec(
                registry,
                "apex_kafka_commits_total",
                "Offset commits, by outcome (ok, failed)",
                &["outcome"],
            ),
            dropped_on_revoke: registered(
                registry,
                IntCounter::new(
                    "apex_kafka_events_dropped_on_revoke_total",
                    "Events not run because their partition was revoked first (the next owner reads them)",
                ),
            ),
            client_errors: registered(
                registry,
                IntCounter::new("apex_kafka_client_errors_total", "Errors reported by the Kafka client"),
            ),
        }
    }

    pub fn event_in(&self, format: &str) {
        self.events_in.with_label_values(&[format]).inc();
    }

    pub fn kafka_assigned(&self, partitions: usize) {
        self.assigned.set(partitions as i64);
    }

    pub fn kafka_rebalance(&self, kind: &str) {
        self.rebalances.with_label_values(&[kind]).inc();
    }

    /// Refreshes one partition's offsets; `None` leaves a value unknown (unset).
    pub fn kafka_partition(
        &self,
        topic: &str,
        partition: i32,
        position: Option<i64>,
        committed: Option<i64>,
        lag: Option<i64>,
    ) {
        let p = partition.to_string();
        for (gauge, value) in [(&self.position, position), (&self.committed, committed), (&self.lag, lag)] {
            if let Some(v) = value {
                gauge.with_label_values(&[topic, &p]).set(v);
            }
        }
    }

    pub fn kafka_paused(&self, topic: &str, partition: i32, paused: bool) {
        self.paused.with_label_values(&[topic, &partition.to_string()]).set(i64::from(paused));
    }

    /// The partition left this member: its series stop (another member reports it).
    pub fn kafka_released(&self, topic: &str, partition: i32) {
        let p = partition.to_string();
        for gauge in [&self.position, &self.committed, &self.lag, &self.paused] {
            let _ = gauge.remove_label_values(&[topic, &p]);
        }
    }

    pub fn kafka_commit(&self, ok: bool) {
        self.commits.with_label_values(&[if ok { "ok" } else { "failed" }]).inc();
    }

    pub fn kafka_dropped_on_revoke(&self, events: usize) {
        self.dropped_on_revoke.inc_by(events as u64);
    }

    pub fn kafka_client_error(&self) {
        self.client_errors.inc();
    }
}
