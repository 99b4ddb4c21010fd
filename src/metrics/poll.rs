//! The pollers' metrics, per source: polls by outcome, records produced by
//! change, the last successful poll and what it produced, and the age of the
//! saved cursor.

use std::time::Duration;

use prometheus::{IntCounterVec, IntGaugeVec, Registry};

use super::{counter_vec, gauge_vec};

#[derive(Clone)]
pub struct PollMetrics {
    polls: IntCounterVec,
    records: IntCounterVec,
    last_success: IntGaugeVec,
    last_records: IntGaugeVec,
    cursor_age: IntGaugeVec,
}

impl PollMetrics {
    pub(super) fn new(registry: &Registry) -> Self {
        PollMetrics {
            polls: counter_vec(
                registry,
                "apex_poll_total",
                "Polls of a source, by outcome (ok, failed: retries exhausted or the broker did not take the records)",
                &["source", "outcome"],
            ),
            records: counter_vec(
                registry,
                "apex_poll_records_total",
                "Records a source's polls produced, by change (upsert, removed)",
                &["source", "change"],
            ),
            last_success: gauge_vec(
                registry,
                "apex_poll_last_success_timestamp_seconds",
                "Unix time of a source's last successful poll",
                &["source"],
            ),
            last_records: gauge_vec(
                registry,
                "apex_poll_last_records",
                "Records a source's last successful poll produced",
                &["source"],
            ),
            cursor_age: gauge_vec(
                registry,
                "apex_poll_cursor_age_seconds",
                "Seconds since a source's cursor last moved (checked at every poll)",
                &["source"],
            ),
        }
    }

    /// A source is configured: its counters exist at 0 (alerts see the first failure).
    pub fn source_registered(&self, source: &str) {
        for outcome in ["ok", "failed"] {
            self.polls.with_label_values(&[source, outcome]);
        }
        for change in ["upsert", "removed"] {
            self.records.with_label_values(&[source, change]);
        }
    }

    pub fn produced(&self, source: &str, upserts: usize, removals: usize) {
        self.records.with_label_values(&[source, "upsert"]).inc_by(upserts as u64);
        self.records.with_label_values(&[source, "removed"]).inc_by(removals as u64);
    }

    /// `records`: what a successful poll produced; `None` for a failed one.
    pub fn poll_finished(&self, source: &str, records: Option<usize>, now_unix: i64) {
        self.polls.with_label_values(&[source, if records.is_some() { "ok" } else { "failed" }]).inc();
        if let Some(n) = records {
            self.last_success.with_label_values(&[source]).set(now_unix);
            self.last_records.with_label_values(&[source]).set(n as i64);
        }
    }

    pub fn cursor_age(&self, source: &str, age: Duration) {
        self.cursor_age.with_label_values(&[source]).set(age.as_secs() as i64);
    }
}
