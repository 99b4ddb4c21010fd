//! One read of a component's `/metrics`: the Prometheus text parsed by
//! `prometheus-parse`, kept with the instant it was taken (rates are deltas
//! between two of them).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use prometheus_parse::{Sample, Scrape, Value};

/// The samples of one scrape and when it was taken.
pub struct Snapshot {
    pub at: Instant,
    samples: Vec<Sample>,
}

/// Cumulative bucket counts of one histogram series: (upper bound, count), ascending.
pub type Buckets = Vec<(f64, f64)>;

impl Snapshot {
    pub fn parse(text: &str, at: Instant) -> anyhow::Result<Snapshot> {
        let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
            .context("the /metrics answer is not the Prometheus text format")?;
        Ok(Snapshot { at, samples: scrape.samples })
    }

    fn series<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| s.metric == name)
    }

    /// Whether the component exports the metric with at least one series.
    pub fn has(&self, name: &str) -> bool {
        self.series(name).next().is_some()
    }

    /// The sum over every series of a counter or gauge (0 when absent).
    pub fn total(&self, name: &str) -> f64 {
        self.series(name).filter_map(|s| scalar(&s.value)).sum()
    }

    /// A counter or gauge summed per value of one label.
    pub fn by(&self, name: &str, label: &str) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for s in self.series(name) {
            if let (Some(key), Some(v)) = (s.labels.get(label), scalar(&s.value)) {
                *out.entry(key.to_owned()).or_insert(0.0) += v;
            }
        }
        out
    }

    /// A counter or gauge per value of two labels joined by `/` (topic/partition).
    pub fn by_pair(&self, name: &str, first: &str, second: &str) -> BTreeMap<String, f64> {
        self.series(name)
            .filter_map(|s| {
                let key = format!("{}/{}", s.labels.get(first)?, s.labels.get(second)?);
                Some((key, scalar(&s.value)?))
            })
            .collect()
    }

    /// A histogram's buckets per value of one label.
    pub fn histograms(&self, name: &str, label: &str) -> BTreeMap<String, Buckets> {
        self.series(name)
            .filter_map(|s| match &s.value {
                Value::Histogram(counts) => {
                    let mut buckets: Buckets = counts.iter().map(|c| (c.less_than, c.count)).collect();
                    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
                    Some((s.labels.get(label)?.to_owned(), buckets))
                }
                _ => None,
            })
            .collect()
    }
}

fn scalar(value: &Value) -> Option<f64> {
    match value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => Some(*v),
        Value::Histogram(_) | Value::Summary(_) => None,
    }
}

/// Reads one `/metrics` URL; an error says what failed (refused, timed out, a status).
pub async fn fetch(client: &reqwest::Client, url: &str, timeout: Duration) -> anyhow::Result<Snapshot> {
    let response = client.get(url).timeout(timeout).send().await.map_err(|e| {
        if e.is_timeout() {
            anyhow::anyhow!("no answer within {timeout:?}")
        } else if e.is_connect() {
            anyhow::anyhow!("cannot connect")
        } else {
            anyhow::anyhow!("{e}")
        }
    })?;
    let status = response.status();
    anyhow::ensure!(status.is_success(), "answered {status}");
    let text = response.text().await.context("reading the /metrics body")?;
    Snapshot::parse(&text, Instant::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# TYPE apex_dead_letters_total counter
apex_dead_letters_total{reason=\"invalid_json\"} 3
apex_dead_letters_total{reason=\"missing_field\"} 2
# TYPE apex_kafka_consumer_lag gauge
apex_kafka_consumer_lag{partition=\"0\",topic=\"t\"} 10
apex_kafka_consumer_lag{partition=\"1\",topic=\"t\"} 5
# TYPE apex_store_write_seconds histogram
apex_store_write_seconds_bucket{store=\"graph\",le=\"0.01\"} 1
apex_store_write_seconds_bucket{store=\"graph\",le=\"0.1\"} 4
apex_store_write_seconds_bucket{store=\"graph\",le=\"+Inf\"} 4
apex_store_write_seconds_sum{store=\"graph\"} 0.2
apex_store_write_seconds_count{store=\"graph\"} 4
";

    #[test]
    fn reads_counters_gauges_and_histograms_by_label() {
        let s = Snapshot::parse(TEXT, Instant::now()).unwrap();
        assert_eq!(s.total("apex_dead_letters_total"), 5.0);
        assert_eq!(s.by("apex_dead_letters_total", "reason")["invalid_json"], 3.0);
        assert_eq!(s.by_pair("apex_kafka_consumer_lag", "topic", "partition")["t/1"], 5.0);
        let graph = &s.histograms("apex_store_write_seconds", "store")["graph"];
        assert_eq!(graph.first(), Some(&(0.01, 1.0)));
        assert_eq!(graph.last().map(|b| (b.0.is_infinite(), b.1)), Some((true, 4.0)));
        assert!(!s.has("apex_breaker_state"));
    }
}
