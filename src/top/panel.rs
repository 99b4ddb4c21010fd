//! What `top` shows of one component, worked out from its last two scrapes:
//! rates are counter deltas over the time between them, latency quantiles come
//! from the histogram buckets filled between them, and every figure carries
//! whether it is a sign of trouble (the screen colours those).

use std::collections::BTreeMap;

use super::scrape::{Buckets, Snapshot};

/// How a figure reads to an operator: the screen colours Warn yellow and Bad red.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Health {
    Ok,
    Warn,
    Bad,
}

/// A per-second rate over the last interval; `None` until two scrapes exist.
pub type Rate = Option<f64>;

pub struct StoreRow {
    pub store: String,
    pub p50: Option<f64>,
    pub p99: Option<f64>,
    pub written_per_s: Rate,
    pub retries: f64,
    pub retries_rising: bool,
    /// 0 closed, 1 half-open, 2 open (`apex_breaker_state`).
    pub breaker: f64,
}

impl StoreRow {
    pub fn health(&self) -> Health {
        match self.breaker {
            b if b >= 2.0 => Health::Bad,
            b if b >= 1.0 => Health::Warn,
            _ if self.retries_rising => Health::Warn,
            _ => Health::Ok,
        }
    }
}

/// A counter by one label: its total and what the last interval added.
pub struct Reason {
    pub reason: String,
    pub total: f64,
    pub new: f64,
}

pub struct Partition {
    pub name: String,
    pub lag: f64,
    /// Lag now minus lag at the scrape before (0 at the first).
    pub change: f64,
    pub paused: bool,
}

/// The figures of a reachable component.
pub struct Figures {
    pub events_in: f64,
    pub events_in_per_s: Rate,
    /// Records every store holds (the least written of the stores), and its rate.
    pub written: f64,
    pub written_per_s: Rate,
    pub in_flight: f64,
    pub assigned: f64,
    pub partitions: Vec<Partition>,
    pub stores: Vec<StoreRow>,
    pub dead_letters: Vec<Reason>,
    pub stalled_batches: Option<f64>,
    pub edge_accepted: Option<(f64, Rate)>,
    pub edge_rejected: Vec<Reason>,
}

impl Figures {
    pub fn lag(&self) -> f64 {
        self.partitions.iter().map(|p| p.lag).sum()
    }

    pub fn paused(&self) -> usize {
        self.partitions.iter().filter(|p| p.paused).count()
    }

    pub fn lag_health(&self) -> Health {
        let growing: f64 = self.partitions.iter().map(|p| p.change).sum();
        if growing > 0.0 && self.lag() > 0.0 { Health::Warn } else { Health::Ok }
    }

    /// New dead letters are a warning: bad input is the producer's fault, and it is kept.
    pub fn dead_letter_health(&self) -> Health {
        if self.dead_letters.iter().any(|r| r.new > 0.0) { Health::Warn } else { Health::Ok }
    }

    /// The worst thing about the component, for sorting the panels.
    pub fn health(&self) -> Health {
        let stalled = match self.stalled_batches {
            Some(n) if n > 0.0 => Health::Bad,
            _ => Health::Ok,
        };
        let rejected = if self.edge_rejected.iter().any(|r| r.new > 0.0) { Health::Warn } else { Health::Ok };
        let paused = if self.paused() > 0 { Health::Warn } else { Health::Ok };
        self.stores
            .iter()
            .map(StoreRow::health)
            .chain([self.lag_health(), self.dead_letter_health(), stalled, rejected, paused])
            .max()
            .unwrap_or(Health::Ok)
    }
}

/// One component as the screen shows it: its figures, or why it could not be read.
pub struct Panel {
    pub name: String,
    pub url: String,
    pub figures: Result<Figures, String>,
}

impl Panel {
    pub fn health(&self) -> Health {
        self.figures.as_ref().map_or(Health::Bad, Figures::health)
    }
}

/// Works out the figures from the current scrape and, for rates, the one before.
pub fn figures(now: &Snapshot, before: Option<&Snapshot>) -> Figures {
    let secs = before.map(|b| now.at.duration_since(b.at).as_secs_f64()).filter(|s| *s > 0.0);
    let rate = |name: &str, value: f64| -> Rate {
        let (before, secs) = (before?, secs?);
        Some(increase(value, before.total(name)) / secs)
    };
    let events_in = now.total("apex_events_in_total");
    let written_by_store = now.by("apex_records_written_total", "store");
    let least = |m: &BTreeMap<String, f64>| m.values().copied().reduce(f64::min).unwrap_or(0.0);
    let written = least(&written_by_store);
    let written_per_s = match (before, secs) {
        (Some(b), Some(secs)) => {
            Some(increase(written, least(&b.by("apex_records_written_total", "store"))) / secs)
        }
        _ => None,
    };
    let accepted = now.has("apex_webhook_accepted_total").then(|| {
        let total = now.total("apex_webhook_accepted_total");
        (total, rate("apex_webhook_accepted_total", total))
    });
    Figures {
        events_in,
        events_in_per_s: rate("apex_events_in_total", events_in),
        written,
        written_per_s,
        in_flight: now.total("apex_batches_in_flight"),
        assigned: now.total("apex_kafka_assigned_partitions"),
        partitions: partitions(now, before),
        stores: stores(now, before, secs),
        dead_letters: reasons(now, before, "apex_dead_letters_total"),
        stalled_batches: now
            .has("apex_temporal_stalled_batches")
            .then(|| now.total("apex_temporal_stalled_batches")),
        edge_accepted: accepted,
        edge_rejected: reasons(now, before, "apex_webhook_rejected_total"),
    }
}

/// A counter's increase; a counter that went down restarted from 0.
fn increase(now: f64, before: f64) -> f64 {
    if now >= before { now - before } else { now }
}

fn partitions(now: &Snapshot, before: Option<&Snapshot>) -> Vec<Partition> {
    let lag_before =
        before.map(|b| b.by_pair("apex_kafka_consumer_lag", "topic", "partition")).unwrap_or_default();
    let paused = now.by_pair("apex_kafka_partition_paused", "topic", "partition");
    let mut out: Vec<Partition> = now
        .by_pair("apex_kafka_consumer_lag", "topic", "partition")
        .into_iter()
        .map(|(name, lag)| Partition {
            change: lag_before.get(&name).map_or(0.0, |b| lag - b),
            paused: paused.get(&name).is_some_and(|p| *p > 0.0),
            name,
            lag,
        })
        .collect();
    out.sort_by(|a, b| b.lag.total_cmp(&a.lag).then_with(|| a.name.cmp(&b.name)));
    out
}

fn stores(now: &Snapshot, before: Option<&Snapshot>, secs: Option<f64>) -> Vec<StoreRow> {
    let latency_now = now.histograms("apex_store_write_seconds", "store");
    let latency_before =
        before.map(|b| b.histograms("apex_store_write_seconds", "store")).unwrap_or_default();
    let written_now = now.by("apex_records_written_total", "store");
    let written_before = before.map(|b| b.by("apex_records_written_total", "store"));
    let retries_now = now.by("apex_store_retries_total", "store");
    let retries_before = before.map(|b| b.by("apex_store_retries_total", "store")).unwrap_or_default();
    let mut rows: Vec<StoreRow> = now
        .by("apex_breaker_state", "store")
        .into_iter()
        .map(|(store, breaker)| {
            let window = latency_now.get(&store).map(|b| window(b, latency_before.get(&store)));
            let written = written_now.get(&store).copied().unwrap_or(0.0);
            let retries = retries_now.get(&store).copied().unwrap_or(0.0);
            StoreRow {
                p50: window.as_ref().and_then(|b| quantile(0.5, b)),
                p99: window.as_ref().and_then(|b| quantile(0.99, b)),
                written_per_s: written_before
                    .as_ref()
                    .zip(secs)
                    .map(|(b, secs)| increase(written, b.get(&store).copied().unwrap_or(0.0)) / secs),
                retries_rising: retries > retries_before.get(&store).copied().unwrap_or(retries),
                retries,
                breaker,
                store,
            }
        })
        .collect();
    rows.sort_by(|a, b| {
        b.health().cmp(&a.health()).then(b.p99.unwrap_or(0.0).total_cmp(&a.p99.unwrap_or(0.0)))
    });
    rows
}

/// A counter by reason (summed over its other labels), largest first.
fn reasons(now: &Snapshot, before: Option<&Snapshot>, name: &str) -> Vec<Reason> {
    let totals_before = before.map(|b| b.by(name, "reason")).unwrap_or_default();
    let mut out: Vec<Reason> = now
        .by(name, "reason")
        .into_iter()
        .filter(|(_, total)| *total > 0.0)
        .map(|(reason, total)| Reason {
            new: before.map_or(0.0, |_| increase(total, totals_before.get(&reason).copied().unwrap_or(0.0))),
            reason,
            total,
        })
        .collect();
    out.sort_by(|a, b| b.total.total_cmp(&a.total).then_with(|| a.reason.cmp(&b.reason)));
    out
}

/// The buckets filled since the scrape before; everything since the start when
/// nothing was observed in between (or there is no scrape before).
fn window(now: &Buckets, before: Option<&Buckets>) -> Buckets {
    let Some(before) = before.filter(|b| b.len() == now.len()) else { return now.clone() };
    let delta: Buckets = now.iter().zip(before).map(|(n, b)| (n.0, increase(n.1, b.1))).collect();
    if delta.last().is_some_and(|b| b.1 > 0.0) { delta } else { now.clone() }
}

/// The q-quantile of cumulative buckets, interpolated inside its bucket as
/// Prometheus' `histogram_quantile` does; the top finite bound when it falls in +Inf.
pub fn quantile(q: f64, buckets: &Buckets) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let (mut lower, mut below) = (0.0, 0.0);
    for &(bound, count) in buckets {
        if count >= rank {
            if bound.is_infinite() {
                return Some(lower);
            }
            let inside = count - below;
            let fraction = if inside > 0.0 { (rank - below) / inside } else { 0.0 };
            return Some(lower + (bound - lower) * fraction);
        }
        (lower, below) = (bound, count);
    }
    Some(lower)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::metrics::{BreakerState, Metrics};

    fn snapshot(metrics: &Metrics, at: Instant) -> Snapshot {
        Snapshot::parse(&metrics.render(), at).unwrap()
    }

    #[test]
    fn quantiles_interpolate_inside_the_bucket() {
        let buckets = vec![(0.01, 0.0), (0.1, 50.0), (1.0, 100.0), (f64::INFINITY, 100.0)];
        assert!((quantile(0.5, &buckets).unwrap() - 0.1).abs() < 1e-12);
        assert!((quantile(0.25, &buckets).unwrap() - 0.055).abs() < 1e-12);
        assert!((quantile(0.99, &buckets).unwrap() - 0.982).abs() < 1e-12);
        assert_eq!(quantile(0.5, &vec![(1.0, 0.0), (f64::INFINITY, 0.0)]), None);
        assert_eq!(quantile(0.99, &vec![(1.0, 1.0), (f64::INFINITY, 10.0)]), Some(1.0));
    }

    /// Rates, latency and trouble read from two real renders of our registry.
    #[test]
    fn rates_and_trouble_come_from_two_scrapes() {
        let m = Metrics::new();
        let t0 = Instant::now();
        for store in ["graph", "relational"] {
            m.saga.store_registered(store);
        }
        m.saga.store_written("graph", 100, Duration::from_millis(400));
        m.saga.store_written("relational", 100, Duration::from_millis(4));
        (0..120).for_each(|_| m.source.event_in("samsara"));
        m.source.kafka_partition("events.samsara", 0, None, None, Some(50));
        let first = snapshot(&m, t0);

        (0..200).for_each(|_| m.source.event_in("samsara"));
        m.saga.store_written("graph", 150, Duration::from_millis(20));
        m.saga.store_written("relational", 200, Duration::from_millis(4));
        m.saga.store_retried("graph");
        m.saga.breaker_state("graph", BreakerState::Open);
        m.saga.dead_lettered("invalid_json");
        m.source.kafka_partition("events.samsara", 0, None, None, Some(80));
        m.source.kafka_partition("events.samsara", 1, None, None, Some(5));
        m.source.kafka_paused("events.samsara", 1, true);
        let second = snapshot(&m, t0 + Duration::from_secs(2));

        let f = figures(&second, Some(&first));
        assert_eq!(f.events_in, 320.0);
        assert_eq!(f.events_in_per_s, Some(100.0));
        assert_eq!((f.written, f.written_per_s), (250.0, Some(75.0)), "the least written store counts");
        let graph = &f.stores[0];
        assert_eq!(
            (graph.store.as_str(), graph.health()),
            ("graph", Health::Bad),
            "open breaker sorts first"
        );
        assert_eq!(graph.written_per_s, Some(75.0));
        assert!(graph.retries_rising);
        let p99 = graph.p99.unwrap();
        assert!(p99 > 0.01 && p99 <= 0.05, "only the last interval's write (20 ms, not 400) counts: {p99}");
        assert_eq!(f.partitions[0].name, "events.samsara/0");
        assert_eq!((f.lag(), f.paused()), (85.0, 1));
        assert_eq!(f.lag_health(), Health::Warn);
        assert_eq!(f.dead_letters[0].reason, "invalid_json");
        assert_eq!(f.dead_letters[0].new, 1.0);
        assert_eq!(f.health(), Health::Bad);

        let calm = figures(&snapshot(&m, t0 + Duration::from_secs(4)), Some(&second));
        assert_eq!(calm.dead_letter_health(), Health::Ok, "no new dead letter in the interval");
        assert_eq!(figures(&first, None).events_in_per_s, None, "no rate from one scrape");
    }
}
