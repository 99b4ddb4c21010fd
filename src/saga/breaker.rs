//! Circuit breaker per store: opens after `threshold` consecutive failures, lets
//! calls through again (half-open) after `cooldown`, closes on a success. While
//! open, calls fail at once instead of waiting on a store that is down.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::metrics::{BreakerState, SagaMetrics};
use crate::store::StoreError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen,
}

pub struct Breaker {
    store: &'static str,
    threshold: u32,
    cooldown: Duration,
    state: Mutex<State>,
    metrics: SagaMetrics,
}

impl Breaker {
    pub fn new(store: &'static str, threshold: u32, cooldown: Duration, metrics: SagaMetrics) -> Self {
        metrics.store_registered(store);
        Breaker { store, threshold, cooldown, state: Mutex::new(State::Closed { failures: 0 }), metrics }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `closed`, `open` or `half-open` (a trace's store write carries it).
    pub fn state_name(&self) -> &'static str {
        match *self.state() {
            State::Closed { .. } => "closed",
            State::Open { .. } => "open",
            State::HalfOpen => "half-open",
        }
    }

    /// Err (transient) while the circuit is open; moves to half-open after the cool-down.
    pub fn allow(&self) -> Result<(), StoreError> {
        let mut s = self.state();
        if let State::Open { until } = *s {
            if Instant::now() < until {
                return Err(StoreError {
                    store: self.store,
                    message: format!("circuit open for {:?} more", until - Instant::now()),
                    transient: true,
                });
            }
            *s = State::HalfOpen;
            self.metrics.breaker_state(self.store, BreakerState::HalfOpen);
        }
        Ok(())
    }

    /// Records a call's outcome. Permanent errors (a bad record, a bad query)
    /// say nothing about the store's health and do not count.
    pub fn record<T>(&self, result: &Result<T, StoreError>) {
        let mut s = self.state();
        match result {
            Ok(_) => {
                if !matches!(*s, State::Closed { .. }) {
                    self.metrics.breaker_state(self.store, BreakerState::Closed);
                }
                *s = State::Closed { failures: 0 };
            }
            Err(e) if e.transient => {
                let failures = match *s {
                    State::Closed { failures } => failures + 1,
                    State::HalfOpen => self.threshold,
                    State::Open { .. } => return,
                };
                if failures >= self.threshold {
                    *s = State::Open { until: Instant::now() + self.cooldown };
                    self.metrics.breaker_state(self.store, BreakerState::Open);
                    tracing::warn!(store = self.store, cooldown = ?self.cooldown, "circuit breaker opened");
                } else {
                    *s = State::Closed { failures };
                }
            }
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    fn outage() -> Result<(), StoreError> {
        Err(StoreError { store: "s", message: "down".into(), transient: true })
    }

    #[test]
    fn opens_after_threshold_then_half_opens_and_closes() {
        let m = Metrics::new();
        let b = Breaker::new("s", 5, Duration::from_millis(30), m.saga.clone());
        for _ in 0..4 {
            b.allow().unwrap();
            b.record(&outage());
        }
        b.allow().expect("still closed after 4 failures");
        b.record(&outage());
        assert!(b.allow().is_err(), "open after 5");
        assert_eq!(m.gauge("apex_breaker_state", "s"), 2);
        std::thread::sleep(Duration::from_millis(40));
        b.allow().expect("half-open after the cool-down");
        assert_eq!(m.gauge("apex_breaker_state", "s"), 1);
        b.record(&Ok(()));
        assert_eq!(m.gauge("apex_breaker_state", "s"), 0);
        b.allow().unwrap();
    }

    #[test]
    fn a_failure_while_half_open_reopens_and_permanent_errors_do_not_count() {
        let b = Breaker::new("s", 2, Duration::from_millis(10), Metrics::new().saga.clone());
        for _ in 0..5 {
            b.record(&Err::<(), _>(StoreError { store: "s", message: "bad row".into(), transient: false }));
        }
        b.allow().expect("permanent errors leave it closed");
        b.record(&outage());
        b.record(&outage());
        assert!(b.allow().is_err());
        std::thread::sleep(Duration::from_millis(15));
        b.allow().unwrap();
        b.record(&outage());
        assert!(b.allow().is_err(), "one failure in half-open reopens");
    }
}
