//! Embed stage. Three embedders behind one trait:
//! - [`HashingEmbedder`], the embedded default: deterministic feature hashing of
//!   words and word pairs into a fixed number of dimensions, L2-normalised. It is
//!   *lexical*: records that share words are near, synonyms are not. Good enough
//!   to exercise vector storage and search with no model or network.
//! - [`MiniLmEmbedder`]: a local semantic model (all-MiniLM-L6-v2) run in
//!   process; synonyms are near. No service, no network at run time.
//! - [`OpenAiEmbedder`]: any OpenAI-compatible `POST /v1/embeddings` endpoint,
//!   batched, rate limited (governor) and retried with backoff (backon).

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use backon::{ExponentialBuilder, Retryable};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde::{Deserialize, Serialize};

mod minilm;

pub use minilm::MiniLmEmbedder;

#[derive(Debug, Clone, thiserror::Error)]
pub enum EmbedError {
    /// Worth retrying: timeouts, connection errors, 429 and 5xx.
    #[error("embedding provider unavailable: {0}")]
    Transient(String),
    /// Not worth retrying: bad request, bad credentials, a malformed answer.
    #[error("embedding failed: {0}")]
    Permanent(String),
}

impl EmbedError {
    pub fn is_transient(&self) -> bool {
        matches!(self, EmbedError::Transient(_))
    }
}

#[async_trait]
pub trait Embedder: Send + Sync {
    fn dims(&self) -> usize;
    /// Whether its vectors are of the words themselves (records that share
    /// words are near, synonyms are not): the query room then leans on the
    /// full-text index rather than on them.
    fn of_words(&self) -> bool {
        false
    }
    /// One vector per text, in the same order.
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError>;
}

/// Which record kinds get a vector (`[embed] skip_kinds`). A record of a
/// skipped kind gets an empty embedding: every store but the vector role takes it.
#[derive(Debug, Clone, Default)]
pub struct EmbedPolicy {
    skip_kinds: std::collections::BTreeSet<String>,
    /// No vector role at all: nothing is embedded.
    skip_all: bool,
}

impl EmbedPolicy {
    /// Embeds every kind except `kinds`.
    pub fn except(kinds: &[String]) -> Self {
        EmbedPolicy { skip_kinds: kinds.iter().cloned().collect(), skip_all: false }
    }

    /// The policy `config` asks for: `[embed] skip_kinds`, or nothing at all
    /// when there is no vector role (`stores.vector = "none"`).
    pub fn for_config(config: &crate::config::Config) -> Self {
        if config.stores.vector == crate::config::VectorKind::None {
            Self::nothing()
        } else {
            Self::except(&config.embed.skip_kinds)
        }
    }

    /// Embeds nothing (no vector store is configured).
    pub fn nothing() -> Self {
        EmbedPolicy { skip_kinds: Default::default(), skip_all: true }
    }

    pub fn embeds(&self, kind: &str) -> bool {
        !self.skip_all && !self.skip_kinds.contains(kind)
    }

    /// One vector per `(kind, text)`, in order; an empty one where the kind is
    /// skipped. Only the embedded texts reach the embedder, in one call.
    pub async fn embed(
        &self,
        embedder: &dyn Embedder,
        items: &[(&str, &str)],
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
        let wanted: Vec<String> =
            items.iter().filter(|(kind, _)| self.embeds(kind)).map(|(_, text)| (*text).to_owned()).collect();
        let mut vectors =
            if wanted.is_empty() { Vec::new() } else { embedder.embed(&wanted).await? }.into_iter();
        Ok(items
            .iter()
            .map(|(kind, _)| if self.embeds(kind) { vectors.next().unwrap_or_default() } else { Vec::new() })
            .collect())
    }
}

/// Deterministic lexical embedder (see the module docs for what it is not).
pub struct HashingEmbedder {
    dims: usize,
}

impl HashingEmbedder {
    pub fn new(dims: usize) -> Self {
        HashingEmbedder { dims }
    }

    pub fn embed_one(&self, text: &str) -> Vec<f32> {
        let mut v = vec![0f32; self.dims];
        let words: Vec<String> = text
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .collect();
        let mut add = |feature: &str| {
            let h = xxhash_rust::xxh3::xxh3_64(feature.as_bytes());
            let index = (h % self.dims as u64) as usize;
            // The top bit picks the sign so collisions cancel rather than pile up.
            v[index] += if h >> 63 == 0 { 1.0 } else { -1.0 };
        };
        for w in &words {
            add(w);
        }
        for pair in words.windows(2) {
            add(&format!("{} {}", pair[0], pair[1]));
        }
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            v.iter_mut().for_each(|x| *x /= norm);
        }
        v
    }
}

#[async_trait]
impl Embedder for HashingEmbedder {
    fn of_words(&self) -> bool {
        true
    }

    fn dims(&self) -> usize {
        self.dims
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        Ok(texts.iter().map(|t| self.embed_one(t)).collect())
    }
}

/// Settings of an OpenAI-compatible provider.
#[derive(Debug, Clone)]
pub struct OpenAiSettings {
    /// Base URL; `/v1/embeddings` is appended.
    pub base_url: String,
    pub model: String,
    pub api_key: Option<String>,
    pub dims: usize,
    pub max_inputs_per_request: usize,
    pub requests_per_second: NonZeroU32,
    pub max_attempts: usize,
    pub first_backoff: Duration,
    pub timeout: Duration,
}

pub struct OpenAiEmbedder {
    settings: OpenAiSettings,
    client: reqwest::Client,
    limiter: Arc<DefaultDirectRateLimiter>,
}

#[derive(Serialize)]
struct EmbeddingsRequest<'a> {
    model: &'a str,
    input: &'a [String],
}

#[derive(Deserialize)]
struct EmbeddingsResponse {
    data: Vec<EmbeddingItem>,
}

#[derive(Deserialize)]
struct EmbeddingItem {
    index: usize,
    embedding: Vec<f32>,
}

impl OpenAiEmbedder {
    pub fn new(settings: OpenAiSettings) -> Result<Self, EmbedError> {
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .build()
            .map_err(|e| EmbedError::Permanent(format!("HTTP client: {e}")))?;
        let limiter = Arc::new(RateLimiter::direct(Quota::per_second(settings.requests_per_second)));
        Ok(OpenAiEmbedder { settings, client, limiter })
    }

    async fn request(&self, inputs: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.limiter.until_ready().await;
        let url = format!("{}/v1/embeddings", self.settings.base_url.trim_end_matches('/'));
        let mut req =
            self.client.post(&url).json(&EmbeddingsRequest { model: &self.settings.model, input: inputs });
        if let Some(key) = &self.settings.api_key {
            req = req.bearer_auth(key);
        }
        let resp = req.send().await.map_err(|e| EmbedError::Transient(format!("{url}: {e}")))?;
        let status = resp.status();
        if status.as_u16() == 429 || status.is_server_error() {
            return Err(EmbedError::Transient(format!("{url}: HTTP {status}")));
        }
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            return Err(EmbedError::Permanent(format!("{url}: HTTP {status}: {body}")));
        }
        let mut parsed: EmbeddingsResponse = resp
            .json()
            .await
            .map_err(|e| EmbedError::Permanent(format!("{url}: unreadable response: {e}")))?;
        if parsed.data.len() != inputs.len() {
            return Err(EmbedError::Permanent(format!(
                "{url}: {} embeddings for {} inputs",
                parsed.data.len(),
                inputs.len()
            )));
        }
        parsed.data.sort_by_key(|d| d.index);
        if let Some(bad) = parsed.data.iter().find(|d| d.embedding.len() != self.settings.dims) {
            return Err(EmbedError::Permanent(format!(
                "{url}: embedding has {} dimensions, configured {}",
                bad.embedding.len(),
                self.settings.dims
            )));
        }
        Ok(parsed.data.into_iter().map(|d| d.embedding).collect())
    }
}

#[async_trait]
impl Embedder for OpenAiEmbedder {
    fn dims(&self) -> usize {
        self.settings.dims
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.settings.first_backoff)
            .with_factor(2.0)
            .with_jitter()
            .with_max_times(self.settings.max_attempts.saturating_sub(1));
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(self.settings.max_inputs_per_request.max(1)) {
            let vectors = (|| self.request(chunk))
                .retry(backoff)
                .when(EmbedError::is_transient)
                .notify(|e, after| tracing::warn!(error = %e, ?after, "retrying embedding request"))
                .await?;
            out.extend(vectors);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cosine(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn hashing_is_deterministic_normalised_and_lexical() {
        let e = HashingEmbedder::new(384);
        let a = e.embed_one("vehicle 12 location Memphis TN speed 61 mph");
        assert_eq!(a, e.embed_one("vehicle 12 location Memphis TN speed 61 mph"));
        assert_eq!(a.len(), 384);
        assert!((cosine(&a, &a) - 1.0).abs() < 1e-5);
        let near = e.embed_one("vehicle 12 location Memphis TN speed 58 mph");
        let far = e.embed_one("freight invoice INV90331 amount due 482.50 USD");
        assert!(cosine(&a, &near) > cosine(&a, &far));
    }

    #[tokio::test]
    async fn policy_embeds_only_the_kinds_it_keeps_and_keeps_the_order() {
        let e = HashingEmbedder::new(8);
        let policy = EmbedPolicy::except(&["VehicleLocation".to_owned()]);
        let items = [("VehicleLocation", "ping"), ("SafetyEvent", "harsh brake"), ("214", "delivered")];
        let v = policy.embed(&e, &items).await.unwrap();
        assert!(v[0].is_empty());
        assert_eq!(v[1], e.embed_one("harsh brake"));
        assert_eq!(v[2], e.embed_one("delivered"));
        let none = EmbedPolicy::nothing().embed(&e, &items).await.unwrap();
        assert!(none.iter().all(Vec::is_empty));
        let all = EmbedPolicy::default().embed(&e, &items).await.unwrap();
        assert!(all.iter().all(|v| v.len() == 8));
    }

    #[test]
    fn empty_text_gives_zero_vector_not_nan() {
        let v = HashingEmbedder::new(8).embed_one("");
        assert!(v.iter().all(|x| *x == 0.0));
    }
}
