//! Embedded cache and coordination: latest state per vehicle/shipment, a marker
//! per record, locks with expiry and owner tokens, and idempotency records, all
//! in process. Lost on restart by design: in embedded mode a re-run re-writes
//! through idempotent upserts, so losing these costs time, never correctness.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{BatchOutcome, BatchStore, Coordinator, LockToken, StoreError};
use crate::model::RecordId;
use crate::pipeline::ProcessedRecord;

const NAME: &str = "cache";

/// The state a cache keeps for one subject: the newest record about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Latest {
    pub record_id: RecordId,
    pub occurred_at: chrono::DateTime<chrono::Utc>,
    pub summary: String,
}

#[derive(Default)]
struct State {
    records: HashMap<RecordId, Option<String>>,
    latest: HashMap<String, Latest>,
    locks: HashMap<String, (LockToken, Instant)>,
    outcomes: HashMap<String, BatchOutcome>,
}

#[derive(Default)]
pub struct MemoryCache {
    state: Mutex<State>,
}

impl MemoryCache {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned mutex only means another task panicked mid-update of plain
        // maps; the data is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl BatchStore for MemoryCache {
    fn name(&self) -> &'static str {
        NAME
    }

    fn durable(&self) -> bool {
        false
    }

    async fn upsert_batch(&self, rows: &[&ProcessedRecord]) -> Result<(), StoreError> {
        let mut s = self.lock();
        for r in rows {
            let subject = r.record.subject();
            s.records.insert(r.record.id.clone(), subject.clone());
            if let Some(subject) = subject {
                let newer = s.latest.get(&subject).is_none_or(|l| l.occurred_at <= r.record.occurred_at);
                if newer {
                    s.latest.insert(
                        subject,
                        Latest {
                            record_id: r.record.id.clone(),
                            occurred_at: r.record.occurred_at,
                            summary: r.summary.clone(),
                        },
                    );
                }
            }
        }
        Ok(())
    }

    async fn remove_records(&self, ids: &[RecordId]) -> Result<(), StoreError> {
        let mut s = self.lock();
        for id in ids {
            if let Some(Some(subject)) = s.records.remove(id)
                && s.latest.get(&subject).is_some_and(|l| &l.record_id == id)
            {
                s.latest.remove(&subject);
            }
        }
        Ok(())
    }

    async fn present(&self, ids: &[RecordId]) -> Result<std::collections::HashSet<RecordId>, StoreError> {
        let s = self.lock();
        Ok(ids.iter().filter(|id| s.records.contains_key(*id)).cloned().collect())
    }

    async fn record_ids(&self) -> Result<Vec<RecordId>, StoreError> {
        Ok(self.lock().records.keys().cloned().collect())
    }

    async fn count_records(&self) -> Result<u64, StoreError> {
        Ok(self.lock().records.len() as u64)
    }
}

#[async_trait]
impl Coordinator for MemoryCache {
    async fn try_lock(&self, key: &str, ttl: Duration) -> Result<Option<LockToken>, StoreError> {
        let mut s = self.lock();
        let now = Instant::now();
        if s.locks.get(key).is_some_and(|(_, until)| *until > now) {
            return Ok(None);
        }
        let token = LockToken(format!("{:032x}", rand::random::<u128>()));
        s.locks.insert(key.to_owned(), (token.clone(), now + ttl));
        Ok(Some(token))
    }

    async fn unlock(&self, key: &str, token: &LockToken) -> Result<bool, StoreError> {
        let mut s = self.lock();
        if s.locks.get(key).is_some_and(|(t, _)| t == token) {
            s.locks.remove(key);
            return Ok(true);
        }
        Ok(false)
    }

    async fn extend(&self, key: &str, token: &LockToken, ttl: Duration) -> Result<bool, StoreError> {
        let mut s = self.lock();
        match s.locks.get_mut(key) {
            Some((t, until)) if t == token => {
                *until = Instant::now() + ttl;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn outcome(&self, batch_key: &str) -> Result<Option<BatchOutcome>, StoreError> {
        Ok(self.lock().outcomes.get(batch_key).cloned())
    }

    async fn record_outcome(&self, batch_key: &str, outcome: &BatchOutcome) -> Result<(), StoreError> {
        self.lock().outcomes.insert(batch_key.to_owned(), outcome.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lock_is_exclusive_and_owner_released() {
        let c = MemoryCache::new();
        let t = c.try_lock("b", Duration::from_secs(10)).await.unwrap().unwrap();
        assert!(c.try_lock("b", Duration::from_secs(10)).await.unwrap().is_none());
        assert!(!c.unlock("b", &LockToken("someone else".into())).await.unwrap());
        assert!(c.unlock("b", &t).await.unwrap());
        assert!(c.try_lock("b", Duration::from_secs(10)).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn expired_lock_can_be_taken() {
        let c = MemoryCache::new();
        c.try_lock("b", Duration::from_millis(1)).await.unwrap().unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert!(c.try_lock("b", Duration::from_secs(10)).await.unwrap().is_some());
    }
}
