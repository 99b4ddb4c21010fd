//! Kafka plumbing shared by the consumer source, the topic admin, the load
//! producer, the dead-letter topic and load runs: client settings and message headers.

pub mod dead_letter_topic;
pub mod group_watch;
pub mod read_back;
pub mod topics;

use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Headers;
use rdkafka::{ClientConfig, ClientContext, Message};
use secrecy::ExposeSecret;

use crate::config::KafkaConfig;
use crate::model::{Format, Origin, RawEvent};

/// The header naming the format of a message's body (`samsara`, `edi`, `front`,
/// …), on every message this service produces: inputs, webhooks, dead letters.
pub const FORMAT_HEADER: &str = "apex-format";

/// How long admin and metadata calls may take before they fail.
pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(15);

/// How long a starting member or edge waits for the brokers' first answer
/// before it starts unready (a refused certificate or login stops it sooner).
const CONNECT_PROBE: Duration = Duration::from_secs(5);

/// Settings every client of this service starts from: the brokers, the
/// security settings of `[kafka]` and its `[kafka.client]` pass-through.
pub fn client_config(k: &KafkaConfig) -> anyhow::Result<ClientConfig> {
    let mut c = ClientConfig::new();
    for (key, value) in k.passed_through() {
        c.set(key, value);
    }
    c.set("bootstrap.servers", &k.brokers)
        .set("client.id", "apex-ingest")
        .set("security.protocol", &k.security_protocol);
    if k.uses_sasl() {
        let password =
            k.sasl_password.read("kafka.sasl_password")?.context("kafka.sasl_password is not set")?;
        c.set("sasl.mechanism", &k.sasl_mechanism)
            .set("sasl.username", &k.sasl_username)
            .set("sasl.password", password.expose_secret());
    }
    let mut file = |key: &str, path: &std::path::Path| {
        if !path.as_os_str().is_empty() {
            c.set(key, path.to_string_lossy());
        }
    };
    file("ssl.ca.location", &k.ca_file);
    file("ssl.certificate.location", &k.client_cert_file);
    file("ssl.key.location", &k.client_key_file);
    Ok(c)
}

/// A producer that never writes a message twice or out of order per partition.
pub fn producer_config(k: &KafkaConfig) -> anyhow::Result<ClientConfig> {
    let mut c = client_config(k)?;
    c.set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("compression.type", "lz4")
        // The Java client's default, so keys land where other producers put them.
        .set("partitioner", "murmur2_random");
    Ok(c)
}

/// Keeps the last error librdkafka reported, the cause a failed metadata
/// call does not carry ("SSL handshake failed: certificate verify failed",
/// "SASL authentication error: Authentication failed"), and whether it was
/// one no retry fixes (TLS or authentication).
#[derive(Default)]
struct LastError(Mutex<Option<(String, bool)>>);

impl ClientContext for LastError {
    /// librdkafka's hints ("might be caused by incorrect security.protocol
    /// configuration") come as warnings in its log, not as errors.
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        tracing::debug!(facility, message, "librdkafka");
        if (level as i32) <= RDKafkaLogLevel::Warning as i32 {
            let mut last = self.0.lock().unwrap_or_else(|p| p.into_inner());
            if last.as_ref().is_none_or(|(_, fatal)| !fatal) {
                *last = Some((message.to_owned(), false));
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        use rdkafka::types::RDKafkaErrorCode as C;
        tracing::debug!(%error, reason, "kafka client error");
        let code = error.rdkafka_error_code();
        let mut last = self.0.lock().unwrap_or_else(|p| p.into_inner());
        // "1/1 brokers are down" follows the error that says why: keep that one.
        if code == Some(C::AllBrokersDown) && last.is_some() {
            return;
        }
        // An OpenSSL error (a certificate refused either way) is no more transient than these codes.
        let fatal = matches!(code, Some(C::SSL | C::Authentication)) || reason.contains("SSL routines");
        *last = Some((reason.to_owned(), fatal));
    }
}

impl ConsumerContext for LastError {}

/// Why the brokers were not reached.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// A TLS or login failure: no retry fixes the settings.
    #[error("connecting to Kafka at {brokers} ({protocol}): {cause}")]
    Refused { brokers: String, protocol: String, cause: String },
    /// No answer within the timeout: down, starting, or a protocol mismatch.
    #[error(
        "connecting to Kafka at {brokers} ({protocol}): {cause} (no answer within {timeout:?}; a plaintext \
         client at a TLS listener waits like this: does kafka.security_protocol match the listener?)"
    )]
    NoAnswer { brokers: String, protocol: String, cause: String, timeout: Duration },
    #[error("creating a Kafka client for {brokers}: {cause:#}")]
    Client { brokers: String, cause: anyhow::Error },
}

/// Waits up to `timeout` for the brokers of `k` to answer a metadata request
/// with these security settings, failing at once on a TLS or login failure;
/// the error names the brokers, the protocol and the cause. librdkafka itself
/// retries a refused handshake or login for ever, silently.
pub fn check_connection(k: &KafkaConfig, timeout: Duration) -> Result<(), ConnectError> {
    let client_error = |cause: anyhow::Error| ConnectError::Client { brokers: k.brokers.clone(), cause };
    let client: BaseConsumer<LastError> = client_config(k)
        .map_err(client_error)?
        .create_with_context(LastError::default())
        .map_err(|e| client_error(e.into()))?;
    let started = std::time::Instant::now();
    let (brokers, protocol) = (k.brokers.clone(), k.security_protocol.clone());
    loop {
        let attempt = client.fetch_metadata(None, Duration::from_millis(500));
        // Serves the error callbacks (they run from the client's poll).
        let _ = client.poll(Duration::ZERO);
        let last = client.context().0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match (attempt, last) {
            (Ok(_), _) => return Ok(()),
            (Err(_), Some((cause, true))) => return Err(ConnectError::Refused { brokers, protocol, cause }),
            (Err(e), last) if started.elapsed() >= timeout => {
                let cause = last.map_or_else(|| e.to_string(), |(cause, _)| cause);
                return Err(ConnectError::NoAnswer { brokers, protocol, cause, timeout });
            }
            (Err(_), _) => {}
        }
    }
}

/// A long-lived client's start (member, edge): a refused certificate or
/// login stops it; brokers that do not answer within `CONNECT_PROBE` let it
/// start, unready, until they do (a broker still starting must not crash-loop it).
pub fn check_at_start(k: &KafkaConfig) -> Result<(), ConnectError> {
    match check_connection(k, CONNECT_PROBE) {
        Err(e @ ConnectError::NoAnswer { .. }) => {
            tracing::warn!(error = %e, "starting without the brokers");
            Ok(())
        }
        checked => checked,
    }
}

/// A produce error no retry will fix: the message is too large, or the topic
/// is unknown or forbidden. Anything else (a full queue, a timeout, a broker
/// outage) passes.
pub fn is_permanent_produce_error(e: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(
            C::MessageSizeTooLarge
                | C::InvalidMessageSize
                | C::UnknownTopicOrPartition
                | C::UnknownTopic
                | C::TopicAuthorizationFailed
        )
    )
}

/// A consumed message as the pipeline carries it: origin, key, payload,
/// headers and broker timestamp. A message without a payload (a tombstone)
/// has empty bytes, which parse as poison.
/// `headers` with the W3C trace context of `span` added (`traceparent`,
/// `tracestate`): the batch that reads the message links to it. Unchanged
/// when traces are off.
pub fn with_trace(
    headers: rdkafka::message::OwnedHeaders,
    span: &tracing::Span,
) -> rdkafka::message::OwnedHeaders {
    crate::telemetry::trace_headers(span).iter().fold(headers, |h, (key, value)| {
        h.insert(rdkafka::message::Header { key: key.as_str(), value: Some(value.as_str()) })
    })
}

pub fn raw_event(m: &impl Message, format: Format) -> RawEvent {
    let headers = m
        .headers()
        .map(|h| h.iter().map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec())).collect())
        .unwrap_or_default();
    RawEvent {
        format,
        origin: Origin { topic: m.topic().to_owned(), partition: m.partition(), offset: m.offset() },
        key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
        payload: m.payload().unwrap_or_default().to_vec(),
        headers,
        timestamp: m.timestamp().to_millis().and_then(DateTime::<Utc>::from_timestamp_millis),
    }
}
