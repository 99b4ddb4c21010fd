//! The query API's metrics: questions by outcome, how long answered ones
//! took by intent, answer-cache hits, and reloads of the token files.

use std::time::Duration;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Registry};

use super::{counter_vec, registered};

/// The outcomes of a question (`apex_query_requests_total`).
const OUTCOMES: [&str; 9] = [
    "answered",
    "bad_request",
    "unauthorized",
    "rate_limited",
    "too_large",
    "store_failed",
    "timed_out",
    "abandoned",
    "overloaded",
];
/// The intents a question is read into (`Intent::name`).
const INTENTS: [&str; 6] = ["position", "late_shipments", "events", "about", "dwell", "semantic"];

#[derive(Clone)]
pub struct QueryMetrics {
    requests: IntCounterVec,
    latency: HistogramVec,
    token_reloads: IntCounterVec,
    cache: IntCounterVec,
}

impl QueryMetrics {
    /// Every outcome, intent and reload outcome exists at 0 from the start,
    /// so `rate()` and `increase()` see the first one (and the dashboard's
    /// queries find their series on any component).
    pub(super) fn new(registry: &Registry) -> Self {
        let metrics = QueryMetrics {
            requests: counter_vec(
                registry,
                "apex_query_requests_total",
                "Questions to POST /v1/query, by outcome (answered, bad_request, unauthorized, \
                 rate_limited, too_large, store_failed, timed_out; abandoned: a streaming client went away \
                 before the answer and its store calls were cancelled; overloaded: serve.max_in_flight \
                 questions were being answered)",
                &["outcome"],
            ),
            latency: registered(
                registry,
                HistogramVec::new(
                    HistogramOpts::new(
                        "apex_query_seconds",
                        "From a question's request to its answer, by intent",
                    )
                    .buckets(prometheus::exponential_buckets(0.001, 2.0, 15).expect("valid buckets")),
                    &["intent"],
                ),
            ),
            token_reloads: counter_vec(
                registry,
                "apex_query_token_reloads_total",
                "Changed token files read again, by outcome (ok; failed: unreadable or empty, the last token stays)",
                &["outcome"],
            ),
            cache: counter_vec(
                registry,
                "apex_query_cache_total",
                "Answered questions by whether the answer cache held them (hit, miss)",
                &["outcome"],
            ),
        };
        for outcome in OUTCOMES {
            metrics.requests.with_label_values(&[outcome]);
        }
        for intent in INTENTS {
            metrics.latency.with_label_values(&[intent]);
        }
        for outcome in ["ok", "failed"] {
            metrics.token_reloads.with_label_values(&[outcome]);
        }
        for outcome in ["hit", "miss"] {
            metrics.cache.with_label_values(&[outcome]);
        }
        metrics
    }

    pub fn answered(&self, intent: &str, took: Duration) {
        self.requests.with_label_values(&["answered"]).inc();
        self.latency.with_label_values(&[intent]).observe(took.as_secs_f64());
    }

    pub fn cached(&self, hit: bool) {
        self.cache.with_label_values(&[if hit { "hit" } else { "miss" }]).inc();
    }

    pub fn refused(&self, outcome: &str) {
        self.requests.with_label_values(&[outcome]).inc();
    }

    pub fn token_reload(&self, outcome: &str) {
        self.token_reloads.with_label_values(&[outcome]).inc();
    }
}
