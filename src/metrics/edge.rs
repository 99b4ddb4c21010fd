//! The webhook edge's metrics: webhooks accepted, re-sent, rejected (by reason)
//! and how long an accepted one took to answer (the broker's acknowledgement included).

use std::time::Duration;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Registry};

use super::{counter_vec, registered};

#[derive(Clone)]
pub struct EdgeMetrics {
    accepted: IntCounterVec,
    duplicates: IntCounterVec,
    rejected: IntCounterVec,
    latency: HistogramVec,
    secret_reloads: IntCounterVec,
}

impl EdgeMetrics {
    pub(super) fn new(registry: &Registry) -> Self {
        EdgeMetrics {
            accepted: counter_vec(
                registry,
                "apex_webhook_accepted_total",
                "Webhooks verified and acknowledged by the broker (one message each)",
                &["provider"],
            ),
            duplicates: counter_vec(
                registry,
                "apex_webhook_duplicates_total",
                "Re-sent webhooks answered 200 without producing (event id already accepted)",
                &["provider"],
            ),
            rejected: counter_vec(
                registry,
                "apex_webhook_rejected_total",
                "Webhooks refused, by reason (bad_signature, stale_timestamp, body_too_large, \
                 invalid_json, rate_limited, broker_unavailable, …)",
                &["provider", "reason"],
            ),
            secret_reloads: counter_vec(
                registry,
                "apex_webhook_secret_reloads_total",
                "Changed secret files read again, by outcome (ok; failed: unreadable or unusable, the last secrets stay)",
                &["provider", "outcome"],
            ),
            latency: registered(
                registry,
                HistogramVec::new(
                    HistogramOpts::new(
                        "apex_webhook_latency_seconds",
                        "From a webhook's request to its 2xx answer, broker acknowledgement included",
                    )
                    .buckets(prometheus::exponential_buckets(0.001, 2.0, 14).expect("valid buckets")),
                    &["provider"],
                ),
            ),
        }
    }

    pub fn accepted(&self, provider: &str, latency: Duration) {
        self.accepted.with_label_values(&[provider]).inc();
        self.latency.with_label_values(&[provider]).observe(latency.as_secs_f64());
    }

    pub fn duplicate(&self, provider: &str) {
        self.duplicates.with_label_values(&[provider]).inc();
    }

    pub fn rejected(&self, provider: &str, reason: &str) {
        self.rejected.with_label_values(&[provider, reason]).inc();
    }

    pub fn secret_reload(&self, provider: &str, outcome: &str) {
        self.secret_reloads.with_label_values(&[provider, outcome]).inc();
    }
}
