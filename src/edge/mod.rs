//! The webhook edge (`apex-ingest edge`): `POST /webhooks/{provider}` for
//! Samsara, Front, Turvo and a generic HMAC route, beside /metrics, /healthz
//! and /readyz. Each request, in order: rate limit (429), body within its size
//! and time (413, 408), authentication (401), Front's challenge answered,
//! JSON object or dead letter (400), dedupe by the provider's event id (200,
//! nothing produced, for a re-send), then one Kafka message answered 200 only
//! once the broker acknowledged it (503 + Retry-After when it cannot be).
//! Every refusal is counted by reason; no secret or signature is logged.

pub mod dedupe;
pub mod forward;
mod secrets;
pub mod signature;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::{DateTime, Utc};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde_json::{Value, json};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::config::{Config, DedupeKind, EdgeConfig, WebhookConfig};
use crate::kafka::check_at_start;
use crate::kafka::dead_letter_topic::DeadLetterTopic;
use crate::metrics::{self, Metrics};
use crate::model::webhook::body_digest;
use crate::model::{DeadLetter, Format, Origin, PoisonReason, RawEvent};
use crate::saga::dlq::DeadLetterPublisher;
use crate::telemetry;
use dedupe::{Claim, DedupeLedger, MemoryLedger, RedisLedger};
use forward::{ForwardError, Forwarder};
use secrets::RouteSecrets;

/// Headers of every message the edge produces.
pub mod headers {
    pub const PROVIDER: &str = "apex-provider";
    pub const FORMAT: &str = crate::kafka::FORMAT_HEADER;
    pub const RECEIVED_AT: &str = "apex-received-at";
    pub const REQUEST_ID: &str = "apex-request-id";
    pub const EVENT_ID: &str = "apex-event-id";
}

const FRONT_CHALLENGE: &str = "x-front-challenge";
const REQUEST_ID: &str = "x-request-id";
/// Room for message headers beside the largest body.
const HEADER_ROOM: usize = 64 * 1024;

/// One provider's route.
struct Route {
    name: &'static str,
    format: Format,
    topic: String,
    secrets: RouteSecrets,
    limiter: Option<DefaultDirectRateLimiter>,
    event_id_pointer: String,
}

pub struct Edge {
    routes: HashMap<&'static str, Route>,
    forwarder: Arc<Forwarder>,
    ledger: Box<dyn DedupeLedger>,
    dead_letters: DeadLetterTopic,
    metrics: Arc<Metrics>,
    settings: EdgeConfig,
}

/// A refused request: its status, its counted reason, and whether to ask for a retry later.
struct Refusal {
    status: StatusCode,
    reason: &'static str,
    retry_later: bool,
}

impl Refusal {
    fn new(status: StatusCode, reason: &'static str) -> Self {
        Refusal { status, reason, retry_later: false }
    }

    fn retry_later(status: StatusCode, reason: &'static str) -> Self {
        Refusal { status, reason, retry_later: true }
    }
}

enum Answer {
    Accepted,
    Duplicate,
    Challenge(String),
}

fn format_of(provider: &str) -> Format {
    match provider {
        "samsara" => Format::Samsara,
        "front" => Format::Front,
        "turvo" => Format::Turvo,
        _ => Format::Webhook,
    }
}

impl Edge {
    /// Builds every route whose `secret_env` or `secret_files` is set, reading
    /// the variables through `env` (the process environment in `apex-ingest
    /// edge`); fails at start on a missing variable or file, a bad secret or no
    /// route at all. The files are read again every `edge.secret_refresh`.
    pub async fn start(
        config: &Config,
        metrics: Arc<Metrics>,
        env: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Arc<Self>> {
        let settings = config.edge.clone();
        let mut routes = HashMap::new();
        for (name, route) in settings.routes() {
            if !route.secret_env.is_empty() || !route.secret_files.is_empty() {
                routes.insert(name, Self::route(name, route, &settings, &env)?);
            }
        }
        anyhow::ensure!(
            !routes.is_empty(),
            "no webhook route is configured: set edge.<provider>.secret_env or secret_files for samsara, front, turvo or generic"
        );
        let ledger: Box<dyn DedupeLedger> = match settings.dedupe {
            DedupeKind::Embedded => Box::new(MemoryLedger::new(settings.dedupe_capacity)),
            DedupeKind::Redis => Box::new(
                RedisLedger::connect(&config.redis, &config.stores.redis_prefix)
                    .await
                    .context("edge.dedupe = \"redis\"")?,
            ),
        };
        let kafka = config.kafka.clone();
        tokio::task::spawn_blocking(move || check_at_start(&kafka)).await??;
        let forwarder = Arc::new(Forwarder::new(
            &config.kafka,
            settings.produce_timeout,
            settings.max_body_bytes + HEADER_ROOM,
        )?);
        let ready = metrics.clone();
        tokio::spawn(forwarder.clone().watch_broker(move |reachable| {
            ready.set_ready(if reachable { Ok(()) } else { Err("kafka: the brokers do not answer") })
        }));
        let edge = Arc::new(Edge {
            routes,
            forwarder,
            ledger,
            dead_letters: DeadLetterTopic::new(&config.kafka, &config.kafka.dlq_topic)?,
            metrics,
            settings,
        });
        if edge.routes.values().any(|r| r.secrets.has_files()) {
            tokio::spawn(secrets::refresh(Arc::downgrade(&edge), edge.settings.secret_refresh));
        }
        Ok(edge)
    }

    fn route(
        name: &'static str,
        route: &WebhookConfig,
        settings: &EdgeConfig,
        env: &impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Route> {
        let secrets = RouteSecrets::read(name, route, settings.timestamp_tolerance, env)?;
        Ok(Route {
            name,
            format: format_of(name),
            topic: route.topic.clone(),
            secrets,
            limiter: NonZeroU32::new(route.rate_limit).map(|r| RateLimiter::direct(Quota::per_second(r))),
            event_id_pointer: route.event_id_pointer.clone(),
        })
    }

    /// The names of the routes served.
    pub fn providers(&self) -> Vec<&'static str> {
        let mut names: Vec<_> = self.routes.keys().copied().collect();
        names.sort();
        names
    }

    /// The webhook routes beside /metrics, /healthz and /readyz.
    pub fn router(self: Arc<Self>) -> Router {
        // Bounds a whole request; the body alone is bounded tighter in `accept`.
        let whole = self.settings.body_timeout + self.settings.produce_timeout + Duration::from_secs(5);
        Router::new()
            .route("/webhooks/{provider}", post(webhook))
            .with_state(self.clone())
            .merge(metrics::router(self.metrics.clone()))
            .layer(tower_http::timeout::TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, whole))
            .layer(tower_http::catch_panic::CatchPanicLayer::new())
    }

    async fn accept(
        &self,
        route: &Route,
        headers: &HeaderMap,
        body: Body,
        request_id: &str,
    ) -> Result<Answer, Refusal> {
        let received = Utc::now();
        if route.limiter.as_ref().is_some_and(|l| l.check().is_err()) {
            return Err(Refusal::retry_later(StatusCode::TOO_MANY_REQUESTS, "rate_limited"));
        }
        let body = self.read_body(headers, body).await?;
        route
            .secrets
            .verifier()
            .verify(headers, &body, received)
            .map_err(|failure| Refusal::new(StatusCode::UNAUTHORIZED, failure.label()))?;
        if route.format == Format::Front
            && let Some(challenge) = headers.get(FRONT_CHALLENGE).and_then(|v| v.to_str().ok())
        {
            return Ok(Answer::Challenge(challenge.to_owned()));
        }
        let event = match serde_json::from_slice::<Value>(&body) {
            Ok(v) if v.is_object() => v,
            Ok(_) => {
                let reason = PoisonReason::InvalidWebhook("the body is not a JSON object".into());
                return Err(self.dead_letter(route, &body, received, &reason).await);
            }
            Err(e) => {
                let reason = PoisonReason::InvalidJson(e.to_string());
                return Err(self.dead_letter(route, &body, received, &reason).await);
            }
        };
        let event_id = event_id(&event, &route.event_id_pointer, &body);
        if !self.forwarder.broker_reachable() {
            return Err(Refusal::retry_later(StatusCode::SERVICE_UNAVAILABLE, "broker_unavailable"));
        }
        let ledger_id = format!("{}:{event_id}", route.name);
        let hold = self.settings.produce_timeout + Duration::from_secs(5);
        let token = match self.ledger.claim(&ledger_id, hold).await {
            Ok(Claim::Claimed(token)) => token,
            Ok(Claim::Accepted) => return Ok(Answer::Duplicate),
            Ok(Claim::InProgress) => {
                return Err(Refusal::retry_later(StatusCode::SERVICE_UNAVAILABLE, "in_progress"));
            }
            Err(e) => {
                tracing::warn!(provider = route.name, error = %e, "dedupe ledger unreachable");
                return Err(Refusal::retry_later(StatusCode::SERVICE_UNAVAILABLE, "dedupe_unavailable"));
            }
        };
        let received_at = received.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let produce = tracing::info_span!("produce", otel.kind = "producer",
            messaging.destination.name = %route.topic, messaging.message.id = %event_id);
        // The trace goes on with the message (W3C `traceparent`), to the batch that links it.
        let trace = telemetry::trace_headers(&produce);
        let mut message_headers = vec![
            (headers::PROVIDER, route.name),
            (headers::FORMAT, route.format.as_str()),
            (headers::RECEIVED_AT, received_at.as_str()),
            (headers::REQUEST_ID, request_id),
            (headers::EVENT_ID, event_id.as_str()),
        ];
        message_headers.extend(trace.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let sent =
            self.forwarder.send(&route.topic, &event_id, &body, &message_headers).instrument(produce).await;
        if let Err(e) = sent {
            if let Err(release) = self.ledger.release(&ledger_id, &token).await {
                // The claim then expires by itself after `hold`.
                tracing::warn!(provider = route.name, error = %release, "could not release a dedupe claim");
            }
            return Err(match e {
                ForwardError::Unavailable(detail) => {
                    tracing::warn!(provider = route.name, request_id, %detail, "webhook not produced");
                    Refusal::retry_later(StatusCode::SERVICE_UNAVAILABLE, "broker_unavailable")
                }
                ForwardError::Refused(detail) => {
                    tracing::error!(provider = route.name, request_id, %detail, "webhook refused by the broker");
                    Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, "broker_refused")
                }
            });
        }
        if let Err(e) = self.ledger.accept(&ledger_id, self.settings.dedupe_ttl).await {
            // Produced and acknowledged: answer 200. A re-send may then produce
            // a second message with the same key, which the consumer writes once.
            tracing::warn!(provider = route.name, error = %e, "could not mark a webhook accepted");
        }
        Ok(Answer::Accepted)
    }

    async fn read_body(&self, headers: &HeaderMap, body: Body) -> Result<Bytes, Refusal> {
        let limit = self.settings.max_body_bytes;
        let too_large = Refusal::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large");
        let declared =
            headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
        if declared.is_some_and(|n| n > limit) {
            return Err(too_large);
        }
        match tokio::time::timeout(self.settings.body_timeout, axum::body::to_bytes(body, limit)).await {
            Err(_) => Err(Refusal::new(StatusCode::REQUEST_TIMEOUT, "slow_body")),
            Ok(Ok(bytes)) => Ok(bytes),
            Ok(Err(e)) => {
                let over =
                    std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
                Err(if over { too_large } else { Refusal::new(StatusCode::BAD_REQUEST, "unreadable_body") })
            }
        }
    }

    /// A correctly signed body that is no event: to the DLQ topic with its
    /// reason, then 400 (a retry would not fix it); 503 if the DLQ cannot take it.
    async fn dead_letter(
        &self,
        route: &Route,
        body: &[u8],
        received: DateTime<Utc>,
        reason: &PoisonReason,
    ) -> Refusal {
        let raw = RawEvent {
            timestamp: Some(received),
            ..RawEvent::new(
                route.format,
                // Not yet in any partition: the route's topic, no offset.
                Origin { topic: route.topic.clone(), partition: -1, offset: -1 },
                None,
                body.to_vec(),
            )
        };
        match self.dead_letters.publish(&[DeadLetter::poison(&raw, reason)]).await {
            Ok(()) => Refusal::new(StatusCode::BAD_REQUEST, reason.label()),
            Err(e) => {
                tracing::warn!(provider = route.name, error = %e, "could not dead-letter a webhook");
                Refusal::retry_later(StatusCode::SERVICE_UNAVAILABLE, "dlq_unavailable")
            }
        }
    }
}

/// The provider's event id at `pointer`, or the body's SHA-256 when it has none.
fn event_id(event: &Value, pointer: &str, body: &[u8]) -> String {
    let found = (!pointer.is_empty()).then(|| event.pointer(pointer)).flatten();
    match found {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => body_digest(body),
    }
}

async fn webhook(
    State(edge): State<Arc<Edge>>,
    Path(provider): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let request_id = headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
    let Some(route) = edge.routes.get(provider.as_str()) else {
        edge.metrics.edge.rejected("unknown", "unknown_provider");
        return (StatusCode::NOT_FOUND, axum::Json(json!({"error": "unknown_provider"}))).into_response();
    };
    // Continues the sender's trace (`traceparent`), or begins one.
    let span = tracing::info_span!("webhook", otel.kind = "server", provider = route.name,
        http.request_id = %request_id, http.response.status_code = tracing::field::Empty);
    let carried: Vec<(&str, &str)> = ["traceparent", "tracestate"]
        .into_iter()
        .filter_map(|k| Some((k, headers.get(k)?.to_str().ok()?)))
        .collect();
    if !carried.is_empty() {
        let _ = span.set_parent(telemetry::remote_context(&carried));
    }
    let accepted = edge.accept(route, &headers, body, &request_id).instrument(span.clone()).await;
    let mut response = match accepted {
        Ok(Answer::Accepted) => {
            edge.metrics.edge.accepted(route.name, started.elapsed());
            axum::Json(json!({"status": "accepted"})).into_response()
        }
        Ok(Answer::Duplicate) => {
            edge.metrics.edge.duplicate(route.name);
            axum::Json(json!({"status": "duplicate"})).into_response()
        }
        Ok(Answer::Challenge(challenge)) => axum::Json(json!({"challenge": challenge})).into_response(),
        Err(refusal) => {
            edge.metrics.edge.rejected(route.name, refusal.reason);
            tracing::debug!(provider = route.name, request_id, reason = refusal.reason, "webhook refused");
            let mut r = (refusal.status, axum::Json(json!({"error": refusal.reason}))).into_response();
            if refusal.retry_later {
                let secs = edge.settings.retry_after.as_secs().max(1);
                r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            r
        }
    };
    if let Ok(id) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID, id);
    }
    span.record("http.response.status_code", response.status().as_u16());
    response
}

/// Binds the webhook listener, failing at start (not later) when the address is taken.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen for webhooks on {addr}"))
}

/// Serves the edge on `listener` until `shutdown`, letting requests in progress finish.
pub async fn serve(
    edge: Arc<Edge>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    tracing::info!(addr = %listener.local_addr()?, providers = ?edge.providers(), "serving webhooks");
    axum::serve(listener, edge.router()).with_graceful_shutdown(shutdown).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_id_follows_the_pointer_or_digests_the_body() {
        let v: Value = serde_json::from_str(r#"{"eventId":"e1","payload":{"id":7}}"#).unwrap();
        assert_eq!(event_id(&v, "/eventId", b"x"), "e1");
        assert_eq!(event_id(&v, "/payload/id", b"x"), "7");
        let digest = event_id(&v, "", b"x");
        assert_eq!(digest, event_id(&v, "/missing", b"x"));
        assert_eq!(digest.len(), 64);
    }
}
