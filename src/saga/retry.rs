//! Retries with exponential backoff and jitter (1 s → 2 s → 4 s by default)
//! for transient store errors, behind the store's circuit breaker. Every store
//! call of the saga goes through [`GuardedStore::call`]. Once the process is
//! shutting down a wait between tries ends at once and no further try starts:
//! the batch is given up uncommitted rather than holding up the drain.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use tokio_util::sync::CancellationToken;

use super::breaker::Breaker;
use crate::metrics::SagaMetrics;
use crate::store::StoreError;

#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub first_delay: Duration,
    /// Retries after the first attempt (3: waits of 1 s, 2 s, 4 s).
    pub retries: usize,
    pub breaker_threshold: u32,
    pub breaker_cooldown: Duration,
}

/// A store's breaker and retry policy, applied to any call on that store.
pub struct GuardedStore {
    pub name: &'static str,
    breaker: Breaker,
    policy: RetryPolicy,
    metrics: SagaMetrics,
    /// Cancelled at shutdown: ends the wait between tries.
    shutdown: CancellationToken,
}

impl GuardedStore {
    pub fn new(
        name: &'static str,
        policy: RetryPolicy,
        metrics: SagaMetrics,
        shutdown: CancellationToken,
    ) -> Self {
        GuardedStore {
            name,
            breaker: Breaker::new(name, policy.breaker_threshold, policy.breaker_cooldown, metrics.clone()),
            policy,
            metrics,
            shutdown,
        }
    }

    /// From now on, a wait between tries ends when `shutdown` is cancelled.
    pub fn stop_on(&mut self, shutdown: CancellationToken) {
        self.shutdown = shutdown;
    }

    pub async fn call<T, F, Fut>(&self, op: F) -> Result<T, StoreError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let tries = AtomicUsize::new(0);
        let attempt = || async {
            // The wait before this retry ended at shutdown: give up instead.
            if tries.fetch_add(1, Ordering::Relaxed) > 0 && self.shutdown.is_cancelled() {
                return Err(StoreError {
                    store: self.name,
                    message: "not retried: shutting down".into(),
                    transient: true,
                });
            }
            self.breaker.allow()?;
            let result = op().await;
            self.breaker.record(&result);
            result
        };
        let result = attempt
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(self.policy.first_delay)
                    .with_factor(2.0)
                    .with_jitter()
                    .with_max_times(self.policy.retries),
            )
            .sleep(sleep_unless_cancelled(self.shutdown.clone()))
            .when(|e: &StoreError| e.transient && !self.shutdown.is_cancelled())
            .notify(|e, after| {
                self.metrics.store_retried(self.name);
                tracing::warn!(store = self.name, error = %e, ?after, "store call failed; retrying");
            })
            .await;
        // Into the caller's span (a store write's declares these fields); only
        // for an exported trace: reading the breaker's state takes its lock,
        // on every store call.
        if crate::telemetry::traces_on() {
            let span = tracing::Span::current();
            span.record("retries", tries.load(Ordering::Relaxed).saturating_sub(1));
            span.record("breaker", self.breaker.state_name());
        }
        result
    }
}

/// A backoff sleeper whose waits end early once `token` is cancelled.
pub fn sleep_unless_cancelled(
    token: CancellationToken,
) -> impl Fn(Duration) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> + 'static {
    move |delay| {
        let token = token.clone();
        Box::pin(async move {
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = token.cancelled() => {}
            }
        })
    }
}
