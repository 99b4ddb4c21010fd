//! Retries with exponential backoff and jitter (1 s → 2 s → 4 s by default)
//! for transient store errors, behind the store's circuit breaker. Every store
//! call of the saga goes through [`GuardedStore::call`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};

use super::breaker::Breaker;
use crate::metrics::Metrics;
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
    metrics: Arc<Metrics>,
}

impl GuardedStore {
    pub fn new(name: &'static str, policy: RetryPolicy, metrics: Arc<Metrics>) -> Self {
        GuardedStore {
            name,
            breaker: Breaker::new(name, policy.breaker_threshold, policy.breaker_cooldown, metrics.clone()),
            policy,
            metrics,
        }
    }

    pub async fn call<T, F, Fut>(&self, op: F) -> Result<T, StoreError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let attempt = || async {
            self.breaker.allow()?;
            let result = op().await;
            self.breaker.record(&result);
            result
        };
        attempt
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(self.policy.first_delay)
                    .with_factor(2.0)
                    .with_jitter()
                    .with_max_times(self.policy.retries),
            )
            .when(|e: &StoreError| e.transient)
            .notify(|e, after| {
                self.metrics.store_retried(self.name);
                tracing::warn!(store = self.name, error = %e, ?after, "store call failed; retrying");
            })
            .await
    }
}
