//! Which provider events were already accepted. A request first *claims* its
//! event id for as long as its produce may take; once the broker has
//! acknowledged the message the id is marked *accepted* for the dedupe TTL; a
//! failed produce *releases* the claim, so the provider's retry is served. A
//! re-send finds the id accepted (200, nothing produced) or, while the first
//! delivery is still being produced, claimed (503: try again).
//!
//! Redis: `SET <prefix>:webhook:<id> <claim token> NX PX <hold>`, then
//! `SET … accepted PX <ttl>`; the release deletes only its own claim (Lua).
//! Embedded: in process, at most `capacity` ids, the oldest forgotten first.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redis::aio::ConnectionManager;

use crate::config::RedisConfig;

const ACCEPTED: &str = "accepted";

const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This request produces the event; `accept` or `release` it after.
    Claimed(String),
    /// The event was accepted before.
    Accepted,
    /// Another request is producing it right now.
    InProgress,
}

#[async_trait]
pub trait DedupeLedger: Send + Sync {
    async fn claim(&self, id: &str, hold: Duration) -> anyhow::Result<Claim>;
    async fn accept(&self, id: &str, ttl: Duration) -> anyhow::Result<()>;
    async fn release(&self, id: &str, token: &str) -> anyhow::Result<()>;
}

fn new_token() -> String {
    format!("claim:{:032x}", rand::random::<u128>())
}

pub struct RedisLedger {
    con: ConnectionManager,
    prefix: String,
}

impl RedisLedger {
    pub async fn connect(config: &RedisConfig, prefix: &str) -> anyhow::Result<Self> {
        let manager = redis::aio::ConnectionManagerConfig::new()
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(1);
        let con = crate::store::redis::connect(config, Duration::from_secs(2), manager).await?;
        Ok(RedisLedger { con, prefix: format!("{prefix}:webhook:") })
    }
}

#[async_trait]
impl DedupeLedger for RedisLedger {
    async fn claim(&self, id: &str, hold: Duration) -> anyhow::Result<Claim> {
        let key = format!("{}{id}", self.prefix);
        let token = new_token();
        let mut con = self.con.clone();
        let set: Option<String> = redis::cmd("SET")
            .arg(&key)
            .arg(&token)
            .arg("NX")
            .arg("PX")
            .arg(hold.as_millis() as u64)
            .query_async(&mut con)
            .await?;
        if set.is_some() {
            return Ok(Claim::Claimed(token));
        }
        let held: Option<String> = redis::cmd("GET").arg(&key).query_async(&mut con).await?;
        Ok(match held.as_deref() {
            Some(ACCEPTED) => Claim::Accepted,
            // A claim that expired between the two calls: the caller's retry will claim it.
            _ => Claim::InProgress,
        })
    }

    async fn accept(&self, id: &str, ttl: Duration) -> anyhow::Result<()> {
        redis::cmd("SET")
            .arg(format!("{}{id}", self.prefix))
            .arg(ACCEPTED)
            .arg("PX")
            .arg(ttl.as_millis() as u64)
            .query_async::<()>(&mut self.con.clone())
            .await?;
        Ok(())
    }

    async fn release(&self, id: &str, token: &str) -> anyhow::Result<()> {
        redis::cmd("EVAL")
            .arg(RELEASE)
            .arg(1)
            .arg(format!("{}{id}", self.prefix))
            .arg(token)
            .query_async::<i64>(&mut self.con.clone())
            .await?;
        Ok(())
    }
}

#[derive(Default)]
struct Entries {
    /// id → (claim token or `ACCEPTED`, expiry)
    by_id: HashMap<String, (String, Instant)>,
    /// ids in insertion order, to forget the oldest past `capacity`.
    order: VecDeque<String>,
}

pub struct MemoryLedger {
    entries: Mutex<Entries>,
    capacity: usize,
}

impl MemoryLedger {
    pub fn new(capacity: usize) -> Self {
        MemoryLedger { entries: Mutex::new(Entries::default()), capacity }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, Entries> {
        // Plain maps stay usable after a panic elsewhere.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set(&self, id: &str, value: String, ttl: Duration) {
        let mut e = self.entries();
        if e.by_id.insert(id.to_owned(), (value, Instant::now() + ttl)).is_none() {
            e.order.push_back(id.to_owned());
        }
        while e.order.len() > self.capacity {
            if let Some(oldest) = e.order.pop_front() {
                e.by_id.remove(&oldest);
            }
        }
    }
}

#[async_trait]
impl DedupeLedger for MemoryLedger {
    async fn claim(&self, id: &str, hold: Duration) -> anyhow::Result<Claim> {
        let now = Instant::now();
        let held = self.entries().by_id.get(id).filter(|(_, until)| *until > now).map(|(v, _)| v.clone());
        Ok(match held.as_deref() {
            Some(ACCEPTED) => Claim::Accepted,
            Some(_) => Claim::InProgress,
            None => {
                let token = new_token();
                self.set(id, token.clone(), hold);
                Claim::Claimed(token)
            }
        })
    }

    async fn accept(&self, id: &str, ttl: Duration) -> anyhow::Result<()> {
        self.set(id, ACCEPTED.to_owned(), ttl);
        Ok(())
    }

    async fn release(&self, id: &str, token: &str) -> anyhow::Result<()> {
        let mut e = self.entries();
        if e.by_id.get(id).is_some_and(|(v, _)| v == token) {
            e.by_id.remove(id);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOLD: Duration = Duration::from_secs(10);

    #[tokio::test]
    async fn claim_accept_release_and_capacity() {
        let ledger = MemoryLedger::new(2);
        let Claim::Claimed(token) = ledger.claim("a", HOLD).await.unwrap() else { panic!("first claim") };
        assert_eq!(ledger.claim("a", HOLD).await.unwrap(), Claim::InProgress);
        ledger.release("a", "someone else's").await.unwrap();
        assert_eq!(ledger.claim("a", HOLD).await.unwrap(), Claim::InProgress);
        ledger.release("a", &token).await.unwrap();
        assert!(matches!(ledger.claim("a", HOLD).await.unwrap(), Claim::Claimed(_)));
        ledger.accept("a", HOLD).await.unwrap();
        assert_eq!(ledger.claim("a", HOLD).await.unwrap(), Claim::Accepted);
        ledger.accept("b", HOLD).await.unwrap();
        ledger.accept("c", HOLD).await.unwrap();
        assert!(matches!(ledger.claim("a", HOLD).await.unwrap(), Claim::Claimed(_)), "a was forgotten");
    }

    #[tokio::test]
    async fn an_expired_claim_can_be_taken() {
        let ledger = MemoryLedger::new(10);
        ledger.claim("a", Duration::from_millis(1)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(matches!(ledger.claim("a", HOLD).await.unwrap(), Claim::Claimed(_)));
    }
}
