//! Rollout coordinator: a stable hash of the batch id against
//! `temporal.rollout_percent` sends each batch to Temporal or the direct path,
//! so traffic moves over gradually and back. The same batch always takes the
//! same path, whichever member runs it and however often it is re-delivered.

use std::sync::Arc;

use async_trait::async_trait;

use super::{BatchReport, OrchestrateError, Orchestrator};
use crate::batch::Batch;
use crate::metrics::{Metrics, OrchestratorMetrics};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Direct,
    Temporal,
}

impl Route {
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Direct => "direct",
            Route::Temporal => "temporal",
        }
    }
}

/// The batch's bucket in 0..100: xxh3 of its id, stable across processes and releases.
pub fn bucket(batch_id: &str) -> u8 {
    (xxhash_rust::xxh3::xxh3_64(batch_id.as_bytes()) % 100) as u8
}

/// Temporal for buckets below `percent`: 0 sends nothing, 100 everything, and
/// raising the percentage only moves batches from direct to Temporal.
pub fn route_for(batch_id: &str, percent: u8) -> Route {
    if bucket(batch_id) < percent { Route::Temporal } else { Route::Direct }
}

pub struct RolloutOrchestrator {
    direct: Arc<dyn Orchestrator>,
    temporal: Arc<dyn Orchestrator>,
    percent: u8,
    metrics: OrchestratorMetrics,
}

impl RolloutOrchestrator {
    pub fn new(
        direct: Arc<dyn Orchestrator>,
        temporal: Arc<dyn Orchestrator>,
        percent: u8,
        metrics: Arc<Metrics>,
    ) -> Self {
        RolloutOrchestrator { direct, temporal, percent, metrics: metrics.orchestrator.clone() }
    }
}

#[async_trait]
impl Orchestrator for RolloutOrchestrator {
    async fn run_batch(&self, batch: &Batch) -> Result<BatchReport, OrchestrateError> {
        let route = route_for(&batch.id, self.percent);
        self.metrics.batch_routed(route.as_str());
        match route {
            Route::Direct => self.direct.run_batch(batch).await,
            Route::Temporal => self.temporal.run_batch(batch).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> Vec<String> {
        (0..10_000).map(|i| format!("{:064x}", i * 7919)).collect()
    }

    #[test]
    fn edges_send_all_or_nothing() {
        for id in ids() {
            assert_eq!(route_for(&id, 0), Route::Direct);
            assert_eq!(route_for(&id, 100), Route::Temporal);
        }
    }

    #[test]
    fn share_follows_the_percentage_and_only_grows() {
        let ids = ids();
        for percent in [10u8, 50, 90] {
            let temporal = ids.iter().filter(|id| route_for(id, percent) == Route::Temporal).count();
            let share = temporal as f64 / ids.len() as f64 * 100.0;
            assert!((share - f64::from(percent)).abs() < 2.0, "{percent}%: {share:.1}%");
        }
        // A batch on Temporal at 50 % stays there at 90 %.
        for id in &ids {
            if route_for(id, 50) == Route::Temporal {
                assert_eq!(route_for(id, 90), Route::Temporal);
            }
        }
    }
}
