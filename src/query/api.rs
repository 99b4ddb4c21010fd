//! The query API (`apex-ingest serve`): `POST /v1/query` answers a question
//! as `apex-ingest query --json` does, for clients holding one of the
//! configured bearer tokens, each token rate limited on its own, beside
//! /metrics, /healthz and /readyz. Exists so that dashboards and tools can ask
//! the memory without a shell on the cluster.
//!
//! Bad input is a 400 that says what is wrong (an unknown field, a malformed
//! time, an absurd k, a place the gazetteer lacks); a missing or unknown token
//! 401; over the token's rate 429 with Retry-After; a body over
//! `serve.max_body_bytes` 413; a store that fails, or a question not answered
//! within `serve.timeout`, 503; a question beyond `serve.max_in_flight`
//! answered at once, 503 with Retry-After at once (queued, they would all
//! time out together: load/results/2026-12-07-query-latency.md). A client
//! that goes away drops its question, and with it the store calls in
//! progress. A client that accepts
//! `application/x-ndjson` gets each store call's records as it returns
//! ([`super::stream`]).

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::{DateTime, Utc};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;

use super::cache::{AnswerCache, CachedAnswer, ask_cached};
use super::{Filters, QueryError, QueryStores, Question, Retrieval};
use crate::config::{SecretSource, ServeConfig};
use crate::metrics::{self, Metrics};

/// A question as a client sends it; any other field is refused by name.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QueryRequest {
    question: String,
    #[serde(default)]
    as_of: Option<DateTime<Utc>>,
    #[serde(default)]
    ingested_before: Option<DateTime<Utc>>,
    #[serde(default = "default_k")]
    k: usize,
    /// Structured filters (`query::Filters`); an unknown one is refused by name.
    #[serde(default)]
    filters: Filters,
    /// `hybrid` (the default), `vector` or `lexical`.
    #[serde(default)]
    retrieval: Retrieval,
}

fn default_k() -> usize {
    20
}

pub struct QueryApi {
    stores: QueryStores,
    /// `None` with `serve.cache_ttl = 0s`.
    cache: Option<Arc<dyn AnswerCache>>,
    tokens: Tokens,
    limiter: DefaultKeyedRateLimiter<usize>,
    /// A permit per question being answered (`serve.max_in_flight`).
    in_flight: Arc<tokio::sync::Semaphore>,
    settings: ServeConfig,
    metrics: Arc<Metrics>,
}

impl QueryApi {
    /// Reads the tokens (failing at start on none, or on one that cannot be
    /// read) and reads the token files again every `serve.secret_refresh`.
    pub fn start(
        settings: &ServeConfig,
        stores: QueryStores,
        cache: Option<Arc<dyn AnswerCache>>,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Arc<Self>> {
        anyhow::ensure!(
            !settings.tokens.is_empty(),
            "serve.tokens names no token: the query API answers only bearers of one (\"env:VARIABLE\" or \"file:/path\")"
        );
        let per_second =
            NonZeroU32::new(settings.requests_per_second).context("serve.requests_per_second is 0")?;
        let api = Arc::new(QueryApi {
            stores,
            cache,
            tokens: Tokens::read(&settings.tokens)?,
            limiter: RateLimiter::keyed(Quota::per_second(per_second)),
            in_flight: Arc::new(tokio::sync::Semaphore::new(settings.max_in_flight)),
            settings: settings.clone(),
            metrics,
        });
        if settings.tokens.iter().any(|t| matches!(t, SecretSource::File(_))) {
            tokio::spawn(refresh_tokens(Arc::downgrade(&api), settings.secret_refresh));
        }
        Ok(api)
    }

    /// `POST /v1/query` beside /metrics, /healthz and /readyz.
    pub fn router(self: Arc<Self>) -> Router {
        let metrics = self.metrics.clone();
        Router::new()
            .route("/v1/query", post(ask))
            .layer(DefaultBodyLimit::max(self.settings.max_body_bytes))
            .with_state(self)
            .merge(metrics::router(metrics))
            .layer(tower_http::catch_panic::CatchPanicLayer::new())
    }
}

/// A refusal: its status, the metric's outcome, and what to tell the client.
fn refuse(api: &QueryApi, status: StatusCode, outcome: &str, message: &str) -> Response {
    api.metrics.query.refused(outcome);
    (status, axum::Json(json!({"error": message}))).into_response()
}

async fn ask(
    State(api): State<Arc<QueryApi>>,
    headers: HeaderMap,
    body: Result<axum::Json<QueryRequest>, JsonRejection>,
) -> Response {
    let started = Instant::now();
    let Some(token) = api.tokens.which(&headers) else {
        let mut answer = refuse(
            &api,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a bearer token of serve.tokens is needed",
        );
        answer.headers_mut().insert(header::WWW_AUTHENTICATE, "Bearer".parse().expect("a header value"));
        return answer;
    };
    if api.limiter.check_key(&token).is_err() {
        let mut answer = refuse(
            &api,
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            &format!(
                "more than serve.requests_per_second ({}) questions for this token",
                api.settings.requests_per_second
            ),
        );
        answer.headers_mut().insert(header::RETRY_AFTER, "1".parse().expect("a header value"));
        return answer;
    }
    let request = match body {
        Ok(axum::Json(request)) => request,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            let limit = api.settings.max_body_bytes;
            return refuse(
                &api,
                e.status(),
                "too_large",
                &format!("the body is over serve.max_body_bytes ({limit})"),
            );
        }
        Err(e) => return refuse(&api, StatusCode::BAD_REQUEST, "bad_request", &e.body_text()),
    };
    let Ok(permit) = api.in_flight.clone().try_acquire_owned() else {
        let max = api.settings.max_in_flight;
        let mut answer = refuse(
            &api,
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            &format!("serve.max_in_flight ({max}) questions are being answered; ask again shortly"),
        );
        answer.headers_mut().insert(header::RETRY_AFTER, "1".parse().expect("a header value"));
        return answer;
    };
    let question = Question {
        text: request.question,
        as_of: request.as_of,
        ingested_before: request.ingested_before,
        k: request.k,
        filters: request.filters,
        retrieval: request.retrieval,
    };
    let streamed = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/x-ndjson"));
    if streamed {
        let timeout = api.settings.timeout;
        return match super::stream::answer(
            &api.stores,
            question,
            timeout,
            api.metrics.clone(),
            started,
            permit,
        ) {
            Ok(stream) => stream,
            // A question that cannot be read is a 400 still, before any line.
            Err(e) => refuse(&api, StatusCode::BAD_REQUEST, "bad_request", &e.to_string()),
        };
    }
    let asked = async {
        match &api.cache {
            Some(cache) => ask_cached(&api.stores, cache.as_ref(), api.settings.cache_ttl, &question).await,
            None => super::ask(&api.stores, &question).await.map(|answer| CachedAnswer::fresh(&answer)),
        }
    };
    let outcome = tokio::time::timeout(api.settings.timeout, asked).await;
    drop(permit);
    match outcome {
        Ok(Ok(answer)) => answered(&api, answer, started.elapsed()),
        Ok(Err(QueryError::BadQuestion(message))) => {
            refuse(&api, StatusCode::BAD_REQUEST, "bad_request", &message)
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "a question failed in a store");
            refuse(&api, StatusCode::SERVICE_UNAVAILABLE, "store_failed", &e.to_string())
        }
        Err(_) => refuse(
            &api,
            StatusCode::SERVICE_UNAVAILABLE,
            "timed_out",
            &format!("no answer within serve.timeout ({:?})", api.settings.timeout),
        ),
    }
}

/// The answer's JSON; `x-apex-cache` says whether it was kept from before.
fn answered(api: &QueryApi, answer: CachedAnswer, took: Duration) -> Response {
    api.metrics.query.answered(answer.intent, took);
    if api.cache.is_some() {
        api.metrics.query.cached(answer.hit);
    }
    let cache = if answer.hit { "hit" } else { "miss" };
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::HeaderName::from_static("x-apex-cache"), cache),
        ],
        answer.json,
    )
        .into_response()
}

/// The tokens of `serve.tokens`, by their place in the list (a rotated token
/// keeps its place, and so its rate limit).
struct Tokens {
    sources: Vec<SecretSource>,
    current: RwLock<Vec<SecretString>>,
}

impl Tokens {
    fn read(sources: &[SecretSource]) -> anyhow::Result<Self> {
        let current = sources
            .iter()
            .enumerate()
            .map(|(i, s)| s.read(&format!("serve.tokens[{i}]"))?.context("serve.tokens holds an empty entry"))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Tokens { sources: sources.to_vec(), current: RwLock::new(current) })
    }

    /// The place of the request's bearer token, compared in constant time.
    fn which(&self, headers: &HeaderMap) -> Option<usize> {
        let presented = headers.get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ")?;
        let current = self.current.read().unwrap_or_else(|p| p.into_inner());
        current.iter().position(|t| bool::from(t.expose_secret().as_bytes().ct_eq(presented.as_bytes())))
    }

    /// Reads the files again: how many changed, and how many could not be
    /// read (those keep their last token).
    fn reload(&self) -> (usize, usize) {
        let (mut changed, mut failed) = (0, 0);
        for (i, source) in self.sources.iter().enumerate() {
            if !matches!(source, SecretSource::File(_)) {
                continue;
            }
            match source.read(&format!("serve.tokens[{i}]")) {
                Ok(Some(token)) => {
                    let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
                    if current[i].expose_secret() != token.expose_secret() {
                        current[i] = token;
                        changed += 1;
                    }
                }
                Ok(None) | Err(_) => failed += 1,
            }
        }
        (changed, failed)
    }
}

/// Reads the token files every `every` while the API lives.
async fn refresh_tokens(api: Weak<QueryApi>, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let Some(api) = api.upgrade() else { return };
        let (changed, failed) = api.tokens.reload();
        for _ in 0..changed {
            api.metrics.query.token_reload("ok");
        }
        if failed > 0 {
            api.metrics.query.token_reload("failed");
            tracing::warn!(failed, "serve.tokens: a token file could not be read; its last token stays");
        }
        if changed > 0 {
            tracing::info!(changed, "serve.tokens: rotated tokens read");
        }
    }
}

/// Binds the API's listener, failing at start (not later) when the address is taken.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for questions on {addr}"))
}

/// Serves the API on `listener` until `shutdown`, letting questions in progress finish.
pub async fn serve(
    api: Arc<QueryApi>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    tracing::info!(addr = %listener.local_addr()?, "serving questions");
    api.metrics.set_ready(Ok(()));
    axum::serve(listener, api.router()).with_graceful_shutdown(shutdown).await?;
    Ok(())
}
