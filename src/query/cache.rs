//! Answers kept for `serve.cache_ttl` under the question as read (intent,
//! entities, window, k, `as_of`, filters) and the relational store's write watermark,
//! read before the stores are asked: a batch written afterwards moves the
//! watermark, so the next question misses and sees it. In Redis where the
//! deployment has one (`stores.cache = "redis"`, shared by every replica),
//! else in this process.

use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{Answer, QueryError, QueryStores, Question, Reading};
use crate::store::StoreError;
use crate::store::redis::RedisStore;

/// Where answers are kept, as the JSON the API sends.
#[async_trait]
pub trait AnswerCache: Send + Sync {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    async fn put(&self, key: &str, answer: &[u8], ttl: Duration) -> Result<(), StoreError>;
}

/// The embedded default: the most recently used answers of this process.
pub struct MemoryAnswers {
    answers: Mutex<lru::LruCache<String, (Instant, Vec<u8>)>>,
}

impl MemoryAnswers {
    pub fn new(capacity: NonZeroUsize) -> Self {
        MemoryAnswers { answers: Mutex::new(lru::LruCache::new(capacity)) }
    }
}

#[async_trait]
impl AnswerCache for MemoryAnswers {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let mut answers = self.answers.lock().unwrap_or_else(|p| p.into_inner());
        Ok(match answers.get(key) {
            Some((expires, answer)) if *expires > Instant::now() => Some(answer.clone()),
            _ => None,
        })
    }

    async fn put(&self, key: &str, answer: &[u8], ttl: Duration) -> Result<(), StoreError> {
        let mut answers = self.answers.lock().unwrap_or_else(|p| p.into_inner());
        answers.put(key.to_owned(), (Instant::now() + ttl, answer.to_vec()));
        Ok(())
    }
}

/// Under `<stores.redis_prefix>:answer:<key>`, expiring after the TTL.
#[async_trait]
impl AnswerCache for RedisStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.value("answer", key).await
    }

    async fn put(&self, key: &str, answer: &[u8], ttl: Duration) -> Result<(), StoreError> {
        self.keep_value("answer", key, answer, ttl).await
    }
}

/// An answer as the API sends it, and whether it came from the cache.
pub struct CachedAnswer {
    pub json: Vec<u8>,
    pub intent: &'static str,
    pub hit: bool,
}

impl CachedAnswer {
    /// An answer just read from the stores.
    pub fn fresh(answer: &Answer) -> Self {
        CachedAnswer {
            json: serde_json::to_vec(answer).expect("an answer serialises"),
            intent: answer.reading.intent.name(),
            hit: false,
        }
    }
}

/// The key of a question's answer: the question as read, its bounds, and
/// the write watermark, read before the stores are asked (a write after this
/// moves it).
pub(crate) async fn key_of(
    stores: &QueryStores,
    question: &Question,
    reading: &Reading,
) -> Result<String, QueryError> {
    let watermark = stores.records.watermark().await?;
    let plan = json!({
        "reading": reading,
        "k": question.k,
        "as_of": question.as_of,
        "ingested_before": question.ingested_before,
        "filters": question.filters,
        "retrieval": question.retrieval,
        "watermark": watermark,
    });
    Ok(hex::encode(Sha256::digest(plan.to_string().as_bytes())))
}

/// `query::ask` through `cache`: the same answer, kept for `ttl`. A cache
/// that fails is logged and passed by (the question is answered from the
/// stores); a failing store is the question's error.
pub async fn ask_cached(
    stores: &QueryStores,
    cache: &dyn AnswerCache,
    ttl: Duration,
    question: &Question,
) -> Result<CachedAnswer, QueryError> {
    let as_of = question.as_of.unwrap_or_else(chrono::Utc::now);
    let reading = super::read(question, as_of)?;
    let key = key_of(stores, question, &reading).await?;
    if let Some(json) = lookup(cache, &key).await {
        return Ok(CachedAnswer { json, intent: reading.intent.name(), hit: true });
    }
    let answer = CachedAnswer::fresh(&super::answer_reading(stores, question, as_of, reading).await?);
    keep(cache, &key, &answer.json, ttl).await;
    Ok(answer)
}

/// The answer kept under `key`; a cache that fails is logged and passed by.
pub(crate) async fn lookup(cache: &dyn AnswerCache, key: &str) -> Option<Vec<u8>> {
    cache.get(key).await.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "answer cache unreadable; asking the stores");
        None
    })
}

/// Keeps an answer for `ttl`; a cache that fails is logged and passed by.
pub(crate) async fn keep(cache: &dyn AnswerCache, key: &str, json: &[u8], ttl: Duration) {
    if let Err(e) = cache.put(key, json, ttl).await {
        tracing::warn!(error = %e, "answer not cached");
    }
}
