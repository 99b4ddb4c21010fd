//! Provider requests: a rate limit per provider (governor), then 429, 5xx and
//! transport errors retried up to `poll.max_attempts` times, waiting what a
//! 429's `Retry-After` says (seconds, possibly fractional) or else an
//! exponential backoff from `poll.first_backoff` (backon). Any other answer is
//! handed back for the provider to read (its own error bodies mean things).

use std::num::NonZeroU32;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::StatusCode;

use super::PollError;
use crate::config::PollConfig;

/// An answer the provider reads: status and body.
pub struct Answer {
    pub status: StatusCode,
    pub body: String,
}

impl Answer {
    /// A 2xx answer's JSON; any other status is `poller`'s error with the
    /// status and body, as is a body that does not read as a `T`.
    pub fn json<T: serde::de::DeserializeOwned>(
        &self,
        poller: &'static str,
        url: &impl std::fmt::Display,
    ) -> Result<T, PollError> {
        let fail = |detail| PollError::Provider { poller, detail };
        if !self.status.is_success() {
            return Err(fail(format!("{url}: HTTP {}: {}", self.status, self.body)));
        }
        serde_json::from_str(&self.body).map_err(|e| fail(format!("{url}: unreadable answer: {e}")))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("HTTP {status}: {body}")]
    Retryable { status: u16, body: String, retry_after: Option<Duration> },
    #[error("{0}")]
    Transport(String),
}

impl RequestError {
    /// The provider's `Retry-After`, when it sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            RequestError::Retryable { retry_after, .. } => *retry_after,
            RequestError::Transport(_) => None,
        }
    }
}

/// At most `n` requests a minute (at least 1).
pub fn per_minute(n: u32) -> Quota {
    Quota::per_minute(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN))
}

/// At most `n` requests a second (at least 1).
pub fn per_second(n: u32) -> Quota {
    Quota::per_second(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN))
}

pub struct Requester {
    client: reqwest::Client,
    limiter: DefaultDirectRateLimiter,
    max_attempts: u32,
    first_backoff: Duration,
}

impl Requester {
    /// `quota`: the provider's rate limit ([`per_minute`], [`per_second`]).
    pub fn new(config: &PollConfig, quota: Quota) -> anyhow::Result<Self> {
        Ok(Requester {
            client: reqwest::Client::builder().timeout(config.request_timeout).build()?,
            limiter: RateLimiter::direct(quota),
            max_attempts: config.max_attempts,
            first_backoff: config.first_backoff,
        })
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Sends the request `build` makes (once per attempt) and returns the first
    /// answer that is neither a 429 nor a 5xx; after the last attempt, the error.
    pub async fn send(&self, build: impl Fn() -> reqwest::RequestBuilder) -> Result<Answer, RequestError> {
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.first_backoff)
            .with_factor(2.0)
            .with_jitter()
            .with_max_times(self.max_attempts.saturating_sub(1) as usize);
        (|| async {
            self.limiter.until_ready().await;
            let response = build().send().await.map_err(|e| RequestError::Transport(e.to_string()))?;
            let status = response.status();
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok()?.trim().parse::<f64>().ok())
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(Duration::from_secs_f64);
            let body = response.text().await.map_err(|e| RequestError::Transport(e.to_string()))?;
            if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
                return Err(RequestError::Retryable { status: status.as_u16(), body, retry_after });
            }
            Ok(Answer { status, body })
        })
        .retry(backoff)
        .adjust(|e: &RequestError, backoff| backoff.map(|b| e.retry_after().unwrap_or(b)))
        .notify(|e, after| tracing::warn!(error = %e, ?after, "provider request failed; retrying"))
        .await
    }
}
