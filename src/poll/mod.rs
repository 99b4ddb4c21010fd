//! Pollers: sources fetched on an interval (`[poll]`). One poll step reads the
//! source's saved cursor, fetches pages from the provider, produces each page's
//! records to the source's topic (the idempotent producer, `acks=all`, key =
//! the provider's record id) and only then saves the page's cursor in the
//! relational store. A crash between the two fetches and produces the page
//! again; the provider's stable ids make that harmless downstream. Removals
//! are produced as records too (`apex-change: removed`), so the log holds them.
//!
//! Provider requests go through [`http::Requester`]: a rate limit per provider
//! (governor), and 429 / 5xx / timeouts retried up to `poll.max_attempts` with
//! backoff (backon) or the provider's `Retry-After`.

pub mod http;
pub mod hubspot;
pub mod oauth;
pub mod plaid;
pub mod quickbooks;
pub mod samsara_feed;
pub mod sonar;
pub mod workflow;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use chrono::Utc;
use futures::future::try_join_all;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::{Config, KafkaConfig, PollConfig};
use crate::kafka::{producer_config, with_trace};
use crate::metrics::PollMetrics;
use crate::store::{Coordinator, LockToken, PollCursors, StoreError};

pub use crate::model::polled::{Change, headers};

/// One record as the provider returned it.
#[derive(Debug, Clone, PartialEq)]
pub struct PolledRecord {
    /// The provider's id of the record (the message key).
    pub id: String,
    pub change: Change,
    /// The provider's JSON for it, unchanged.
    pub body: serde_json::Value,
}

/// What one fetch returned.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Page {
    pub records: Vec<PolledRecord>,
    /// The cursor to save once `records` are safe; `None` keeps the saved one.
    pub cursor: Option<String>,
    /// More pages wait now (fetch again from `cursor` in this poll).
    pub more: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum PollError {
    /// The provider answered something unusable.
    #[error("{poller} provider: {detail}")]
    Provider { poller: &'static str, detail: String },
    /// A request failed after every attempt (429, 5xx, transport); `retry_after`
    /// is the provider's last `Retry-After`.
    #[error("{poller} provider: {detail}")]
    Request { poller: &'static str, detail: String, retry_after: Option<Duration> },
    #[error("the broker did not take {poller}'s records: {detail}")]
    Broker { poller: &'static str, detail: String },
    #[error("{poller}'s cursor: {error}")]
    Cursor { poller: &'static str, error: StoreError },
}

impl PollError {
    /// A request to `url` that failed after every attempt.
    pub fn request(poller: &'static str, url: &impl std::fmt::Display, error: http::RequestError) -> Self {
        PollError::Request { poller, detail: format!("{url}: {error}"), retry_after: error.retry_after() }
    }

    /// How long the provider asked to wait before the next request, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            PollError::Request { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// A source that can be polled.
#[async_trait]
pub trait Provider: Send + Sync {
    /// The source's name (`bank`): its cursor's and its metrics' label.
    fn source(&self) -> &'static str;
    /// The topic its records are produced to.
    fn topic(&self) -> &str;
    /// The page after `cursor` (`None`: from the beginning).
    async fn fetch_page(&self, cursor: Option<&str>) -> Result<Page, PollError>;
}

/// What one poll did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PollReport {
    pub pages: usize,
    pub upserts: usize,
    pub removals: usize,
    /// The cursor saved at the end (unchanged if nothing moved).
    pub cursor: Option<String>,
}

/// Whose poll it is this interval.
enum Turn {
    /// This member's: it holds the source's lock.
    Locked(LockToken),
    /// This member's, without a lock: the coordinator failed (ids make a second poll harmless).
    Unlocked,
    /// Another member holds the lock.
    Theirs,
}

/// One poll step: a page fetched from the provider and produced to its topic,
/// every record acknowledged by the broker. The in-process loop ([`Poller`])
/// and the Temporal workflow ([`workflow`]) both run it; each keeps the cursor
/// its own way (the relational store, the workflow's state).
pub struct PollStep {
    provider: Arc<dyn Provider>,
    producer: FutureProducer,
    metrics: PollMetrics,
}

/// What one step did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StepReport {
    /// The cursor after the page (`None`: keep the one there is).
    pub cursor: Option<String>,
    /// More pages wait now.
    pub more: bool,
    pub upserts: usize,
    pub removals: usize,
}

impl PollStep {
    pub fn new(
        provider: Arc<dyn Provider>,
        kafka: &KafkaConfig,
        metrics: PollMetrics,
    ) -> anyhow::Result<Self> {
        let producer = producer_config(kafka)?.create().with_context(|| {
            format!("creating the {} poller's Kafka producer for {}", provider.source(), kafka.brokers)
        })?;
        metrics.source_registered(provider.source());
        Ok(PollStep { provider, producer, metrics })
    }

    pub fn source(&self) -> &'static str {
        self.provider.source()
    }

    /// A poll of this source ended: with the records it produced, or failed (`None`).
    pub fn poll_finished(&self, records: Option<usize>) {
        self.metrics.poll_finished(self.source(), records, Utc::now().timestamp());
    }

    /// The cursor moved this long ago.
    fn cursor_age(&self, age: Duration) {
        self.metrics.cursor_age(self.source(), age);
    }

    /// The page after `cursor`, produced; the cursor may move once this returns.
    pub async fn run(&self, cursor: Option<&str>) -> Result<StepReport, PollError> {
        let page = self.provider.fetch_page(cursor).await?;
        // Each page's messages carry its trace (a trace per page).
        let span = tracing::info_span!(
            "poll_page",
            otel.kind = "producer",
            source = self.source(),
            records = page.records.len(),
            messaging.destination.name = self.provider.topic()
        );
        self.produce(&page.records).instrument(span).await?;
        let removals = page.records.iter().filter(|r| r.change == Change::Removed).count();
        let upserts = page.records.len() - removals;
        self.metrics.produced(self.source(), upserts, removals);
        Ok(StepReport { cursor: page.cursor, more: page.more, upserts, removals })
    }

    /// Every record of a page, each acknowledged by the broker (all or an error).
    async fn produce(&self, records: &[PolledRecord]) -> Result<(), PollError> {
        let (source, topic) = (self.provider.source(), self.provider.topic());
        let sends = records.iter().map(|r| async move {
            let body = r.body.to_string();
            let headers = OwnedHeaders::new()
                .insert(Header { key: headers::SOURCE, value: Some(source) })
                .insert(Header { key: headers::CHANGE, value: Some(r.change.as_str()) });
            let headers = with_trace(headers, &tracing::Span::current());
            let message = FutureRecord::to(topic).key(&r.id).payload(&body).headers(headers);
            self.producer.send(message, Duration::from_secs(30)).await.map_err(|(e, _)| e)
        });
        try_join_all(sends).await.map_err(|e| PollError::Broker { poller: source, detail: e.to_string() })?;
        Ok(())
    }
}

/// One source's in-process loop: its steps with the cursor in the relational store.
pub struct Poller {
    step: PollStep,
    cursors: Arc<dyn PollCursors>,
    /// Every member runs the pollers; a lock per source and interval lets one poll.
    coordinator: Arc<dyn Coordinator>,
}

impl Poller {
    pub fn new(
        provider: Arc<dyn Provider>,
        cursors: Arc<dyn PollCursors>,
        coordinator: Arc<dyn Coordinator>,
        kafka: &KafkaConfig,
        metrics: PollMetrics,
    ) -> anyhow::Result<Self> {
        let step = PollStep::new(provider, kafka, metrics)?;
        Ok(Poller { step, cursors, coordinator })
    }

    /// From the saved cursor until the provider has no more pages: each page
    /// produced and acknowledged, then its cursor saved.
    pub async fn poll_once(&self) -> Result<PollReport, PollError> {
        let source = self.step.source();
        let cursor_error = |error| PollError::Cursor { poller: source, error };
        let saved = self.cursors.poll_cursor(source).await.map_err(cursor_error)?;
        if let Some((_, at)) = &saved {
            self.step.cursor_age((Utc::now() - *at).to_std().unwrap_or_default());
        }
        let mut report = PollReport { cursor: saved.map(|(c, _)| c), ..PollReport::default() };
        loop {
            let step = self.step.run(report.cursor.as_deref()).await?;
            report.pages += 1;
            report.upserts += step.upserts;
            report.removals += step.removals;
            if let Some(next) = step.cursor
                && report.cursor.as_ref() != Some(&next)
            {
                self.cursors.save_poll_cursor(source, &next).await.map_err(cursor_error)?;
                self.step.cursor_age(Duration::ZERO);
                report.cursor = Some(next);
            }
            if !step.more {
                return Ok(report);
            }
        }
    }

    /// Whether this member polls now: it takes the source's lock for one
    /// interval, so of the members sharing a coordinator (Redis) one polls per
    /// interval, and another takes over when that one is gone.
    async fn my_turn(&self, interval: Duration) -> Turn {
        match self.coordinator.try_lock(&self.lock_key(), interval).await {
            Ok(Some(token)) => Turn::Locked(token),
            Ok(None) => Turn::Theirs,
            Err(e) => {
                tracing::warn!(source = self.step.source(), error = %e, "cannot take the poll lock; polling anyway");
                Turn::Unlocked
            }
        }
    }

    fn lock_key(&self) -> String {
        format!("poll:{}", self.step.source())
    }

    /// Keeps the lock while a poll runs longer than an interval, so no other
    /// member starts the same poll meanwhile. Never returns.
    async fn keep_lock(&self, turn: Turn, interval: Duration) -> Infallible {
        let Turn::Locked(token) = turn else { return std::future::pending().await };
        loop {
            tokio::time::sleep(interval / 3).await;
            if let Err(e) = self.coordinator.extend(&self.lock_key(), &token, interval).await {
                tracing::warn!(source = self.step.source(), error = %e, "cannot extend the poll lock");
            }
        }
    }

    /// Polls now and then every `interval` until `shutdown`, when it is this
    /// member's turn; a failed poll is counted and logged, and the next
    /// interval tries again.
    pub async fn run(&self, interval: Duration, shutdown: CancellationToken) {
        let source = self.step.source();
        loop {
            let turn = self.my_turn(interval).await;
            if !matches!(turn, Turn::Theirs) {
                let outcome = tokio::select! {
                    () = shutdown.cancelled() => return,
                    outcome = self.poll_once() => outcome,
                    never = self.keep_lock(turn, interval) => match never {},
                };
                match &outcome {
                    Ok(r) => {
                        tracing::info!(
                            source,
                            pages = r.pages,
                            upserts = r.upserts,
                            removals = r.removals,
                            "polled"
                        );
                    }
                    Err(e) => {
                        tracing::warn!(source, error = %e, "poll failed; the next interval tries again")
                    }
                }
                self.step.poll_finished(outcome.as_ref().ok().map(|r| r.upserts + r.removals));
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
        }
    }
}

/// A provider's cursor: its position as JSON (`None`: where a first poll starts).
fn read_position<T: serde::de::DeserializeOwned + Default>(
    poller: &'static str,
    cursor: Option<&str>,
) -> Result<T, PollError> {
    let Some(c) = cursor else { return Ok(T::default()) };
    serde_json::from_str(c).map_err(|e| PollError::Provider {
        poller,
        detail: format!("the saved cursor {c:?} is not a position of this poller: {e}"),
    })
}

/// The cursor of a position.
fn write_position<T: serde::Serialize>(poller: &'static str, position: &T) -> Result<String, PollError> {
    serde_json::to_string(position).map_err(|e| PollError::Provider { poller, detail: e.to_string() })
}

/// The variable `name` through `lookup`, for the config section `section`;
/// the error names the variable, never a value.
fn secret(
    lookup: &impl Fn(&str) -> Option<String>,
    section: &str,
    name: &str,
    what: &str,
) -> anyhow::Result<String> {
    lookup(name).filter(|v| !v.is_empty()).ok_or_else(|| match name.strip_prefix("file:") {
        Some(path) => {
            anyhow::anyhow!("{section}: {what} is read from {path}, which cannot be read or is empty")
        }
        None => anyhow::anyhow!("{section}: {what} is read from ${name}, which is not set"),
    })
}

/// The sources `config` turns on: a source is on when its credentials are named.
pub fn configured_sources(p: &PollConfig) -> Vec<&'static str> {
    [
        (plaid::SOURCE, !p.plaid.access_token_env.is_empty()),
        (hubspot::SOURCE, p.hubspot.oauth().is_on()),
        (samsara_feed::SOURCE, !p.samsara_feed.token_env.is_empty()),
        (sonar::SOURCE, !p.sonar.username_env.is_empty()),
        (quickbooks::SOURCE, p.quickbooks.is_on()),
    ]
    .into_iter()
    .filter_map(|(source, on)| on.then_some(source))
    .collect()
}

/// The provider of `source`, credentials through `lookup` (variable name → value).
/// `tokens` keeps the refresh tokens of OAuth apps (QuickBooks and HubSpot
/// with `refresh_token_env`; the relational store in `run`).
pub fn provider(
    p: &PollConfig,
    source: &str,
    lookup: impl Fn(&str) -> Option<String>,
    tokens: Option<Arc<dyn PollCursors>>,
) -> anyhow::Result<Arc<dyn Provider>> {
    Ok(match source {
        plaid::SOURCE => Arc::new(plaid::Plaid::with_credentials(p, lookup)?),
        hubspot::SOURCE => Arc::new(hubspot::Hubspot::with_credentials(p, lookup, tokens)?),
        samsara_feed::SOURCE => Arc::new(samsara_feed::SamsaraFeed::with_credentials(p, lookup)?),
        quickbooks::SOURCE => Arc::new(quickbooks::Quickbooks::with_credentials(p, lookup, tokens)?),
        sonar::SOURCE => Arc::new(sonar::Sonar::with_credentials(p, lookup)?),
        other => anyhow::bail!("no poller is called {other:?}"),
    })
}

/// The providers `config` turns on, credentials from the environment.
pub fn configured(config: &Config, tokens: Arc<dyn PollCursors>) -> anyhow::Result<Vec<Arc<dyn Provider>>> {
    let env = |name: &str| crate::config::named_value(name);
    configured_sources(&config.poll)
        .into_iter()
        .map(|source| provider(&config.poll, source, env, Some(tokens.clone())))
        .collect()
}
