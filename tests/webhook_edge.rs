//! The webhook edge against the real broker (and Redis for the shared dedupe
//! ledger): every test asserts the status code and what is, or is not, in the
//! topics afterwards. Each test has topics of its own; the edge runs in
//! process on a free port with secrets handed in as its environment.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use apex_ingest::config::{Config, DedupeKind, SignatureScheme};
use apex_ingest::edge::signature::sign;
use apex_ingest::edge::{self, Edge};
use apex_ingest::kafka::dead_letter_topic::headers as dlq_headers;
use apex_ingest::kafka::read_back::read_to_end;
use apex_ingest::kafka::topics::{self, TopicSpec};
use apex_ingest::metrics::Metrics;
use apex_ingest::model::{Format, RawEvent};
use reqwest::StatusCode;
use tokio_util::sync::CancellationToken;

/// The FINDINGS test vector's secret (base64, as Samsara's portal shows it).
const SAMSARA_SECRET: &str = "dGVzdC1zZWNyZXQ=";
/// The next secret of a rotation.
const SAMSARA_NEXT: &str = "bmV4dC1zZWNyZXQ=";
const FRONT_SECRET: &str = "front-app-secret";
const TURVO_TOKEN: &str = "Bearer turvo-shared-token";
const READ_TIMEOUT: Duration = Duration::from_secs(30);

struct Topics {
    samsara: String,
    front: String,
    turvo: String,
    dlq: String,
}

struct RunningEdge {
    url: String,
    brokers: String,
    topics: Topics,
    stop: CancellationToken,
    http: reqwest::Client,
}

impl Drop for RunningEdge {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn create_topics(brokers: &str) -> Topics {
    let u = support::unique("edge");
    let topics = Topics {
        samsara: format!("samsara.telemetry.v1.{u}"),
        front: format!("webhooks.frontapp.v1.{u}"),
        turvo: format!("webhooks.turvo.v1.{u}"),
        dlq: format!("ingest.dlq.v1.{u}"),
    };
    let specs: Vec<TopicSpec> = [&topics.samsara, &topics.front, &topics.turvo, &topics.dlq]
        .into_iter()
        .map(|name| TopicSpec::scratch(name, 2))
        .collect();
    topics::apply(&support::kafka_at(brokers), &specs, Some(1)).await.unwrap();
    topics
}

fn edge_config(brokers: &str, topics: &Topics) -> Config {
    let mut c = support::config();
    c.kafka.brokers = brokers.to_owned();
    c.kafka.dlq_topic = topics.dlq.clone();
    c.edge.listen = "127.0.0.1:0".into();
    c.edge.samsara.secret_env = vec!["SAMSARA_SECRET".into(), "SAMSARA_NEXT".into()];
    c.edge.samsara.topic = topics.samsara.clone();
    c.edge.front.secret_env = vec!["FRONT_SECRET".into()];
    c.edge.front.topic = topics.front.clone();
    c.edge.turvo.secret_env = vec!["TURVO_TOKEN".into()];
    c.edge.turvo.topic = topics.turvo.clone();
    c
}

fn environment(name: &str) -> Option<String> {
    let env = HashMap::from([
        ("SAMSARA_SECRET", SAMSARA_SECRET),
        ("SAMSARA_NEXT", SAMSARA_NEXT),
        ("FRONT_SECRET", FRONT_SECRET),
        ("TURVO_TOKEN", TURVO_TOKEN),
    ]);
    env.get(name).map(|s| (*s).to_owned())
}

/// Starts an edge on a free port; with `wait_ready`, returns once /readyz says the broker is reachable.
async fn start(config: Config, topics: Topics, wait_ready: bool) -> RunningEdge {
    let edge = Edge::start(&config, Metrics::new(), environment).await.expect("the edge starts");
    let listener = edge::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let stop = CancellationToken::new();
    tokio::spawn(edge::serve(edge, listener, stop.clone().cancelled_owned()));
    let running = RunningEdge {
        url,
        brokers: config.kafka.brokers.clone(),
        topics,
        stop,
        http: reqwest::Client::new(),
    };
    if wait_ready {
        for _ in 0..100 {
            if running.get("/readyz").await.0 == StatusCode::OK {
                return running;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the edge did not become ready: is Kafka at {} reachable?", config.kafka.brokers);
    }
    running
}

async fn start_default() -> RunningEdge {
    let brokers = support::kafka_brokers();
    let topics = create_topics(&brokers).await;
    start(edge_config(&brokers, &topics), topics, true).await
}

fn now_secs() -> String {
    chrono::Utc::now().timestamp().to_string()
}

fn samsara_body(event_id: &str) -> String {
    format!(
        r#"{{"eventId":"{event_id}","eventTime":"2026-11-20T14:03:27Z","eventType":"VehicleLocation","orgId":42,
        "data":{{"vehicle":{{"id":"v-1","name":"Truck 1"}},"location":{{"time":"2026-11-20T14:03:27Z",
        "latitude":35.1495,"longitude":-90.049}}}}}}"#
    )
}

fn samsara_headers(secret: &str, ts: &str, body: &str) -> Vec<(&'static str, String)> {
    vec![
        ("x-samsara-signature", sign(SignatureScheme::SamsaraV1, secret, ts, body.as_bytes())),
        ("x-samsara-timestamp", ts.to_owned()),
    ]
}

impl RunningEdge {
    async fn post(&self, provider: &str, headers: &[(&str, String)], body: &str) -> (StatusCode, String) {
        let mut request = self.http.post(format!("{}/webhooks/{provider}", self.url)).body(body.to_owned());
        for (k, v) in headers {
            request = request.header(*k, v);
        }
        let response = request.send().await.expect("the edge answers");
        let status = response.status();
        let retry_after = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
        let text = response.text().await.unwrap();
        if matches!(status, StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS) {
            assert!(retry_after.is_some(), "{status} without Retry-After: {text}");
        }
        (status, text)
    }

    async fn get(&self, path: &str) -> (StatusCode, String) {
        let response = self.http.get(format!("{}{path}", self.url)).send().await.expect("the edge answers");
        (response.status(), response.text().await.unwrap())
    }

    fn messages(&self, topic: &str) -> Vec<RawEvent> {
        read_to_end(&support::kafka_at(&self.brokers), topic, Format::Samsara, READ_TIMEOUT).unwrap()
    }

    async fn rejected(&self, reason: &str) -> i64 {
        let metrics = self.get("/metrics").await.1;
        support::metric_series(&metrics, "apex_webhook_rejected_total")
            .iter()
            .filter(|(labels, _)| labels.contains(&format!("reason=\"{reason}\"")))
            .map(|(_, v)| v)
            .sum()
    }
}

fn header<'e>(event: &'e RawEvent, name: &str) -> Option<&'e str> {
    event.headers.iter().find(|(k, _)| k == name).and_then(|(_, v)| std::str::from_utf8(v).ok())
}

#[tokio::test]
async fn a_signed_samsara_event_lands_once_with_its_key_and_headers_and_a_re_send_lands_nothing() {
    let edge = start_default().await;
    let body = samsara_body("evt-1");
    let headers = samsara_headers(SAMSARA_SECRET, &now_secs(), &body);
    assert_eq!(
        edge.post("samsara", &headers, &body).await,
        (StatusCode::OK, r#"{"status":"accepted"}"#.into())
    );
    // A replay of the captured request inside the window: answered, not produced again.
    let again = edge.post("samsara", &headers, &body).await;
    assert_eq!(again, (StatusCode::OK, r#"{"status":"duplicate"}"#.into()));
    let messages = edge.messages(&edge.topics.samsara);
    assert_eq!(messages.len(), 1, "one message for an event sent twice");
    let m = &messages[0];
    assert_eq!(m.key.as_deref(), Some("evt-1"));
    assert_eq!(m.payload, body.as_bytes(), "the body is produced as the provider sent it");
    assert_eq!(header(m, "apex-provider"), Some("samsara"));
    assert_eq!(header(m, "apex-format"), Some("samsara"));
    assert!(header(m, "apex-request-id").is_some_and(|id| !id.is_empty()));
    assert!(
        header(m, "apex-received-at").is_some_and(|t| t.parse::<chrono::DateTime<chrono::Utc>>().is_ok())
    );
    // The consumer parses what the edge produced.
    let records = apex_ingest::pipeline::parse::parse(m).unwrap();
    assert_eq!(records[0].natural_key, "evt-1");
}

#[tokio::test]
async fn forged_wrong_secret_and_unsigned_requests_are_401_and_produce_nothing() {
    let edge = start_default().await;
    let body = samsara_body("evt-forged");
    let ts = now_secs();
    let mut forged = samsara_headers(SAMSARA_SECRET, &ts, &body);
    forged[0].1 = format!("v1={}", "0".repeat(64));
    assert_eq!(edge.post("samsara", &forged, &body).await.0, StatusCode::UNAUTHORIZED);
    let wrong_secret = samsara_headers("b3RoZXItc2VjcmV0", &ts, &body);
    assert_eq!(edge.post("samsara", &wrong_secret, &body).await.0, StatusCode::UNAUTHORIZED);
    // A body changed after signing.
    let tampered = body.replace("Truck 1", "Truck 2");
    let signed = samsara_headers(SAMSARA_SECRET, &ts, &body);
    assert_eq!(edge.post("samsara", &signed, &tampered).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(edge.post("samsara", &[], &body).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(edge.rejected("bad_signature").await, 3);
    assert_eq!(edge.rejected("missing_signature").await, 1);
    assert!(edge.messages(&edge.topics.samsara).is_empty(), "nothing rejected reaches the topic");
}

#[tokio::test]
async fn a_secret_of_the_rotation_list_is_accepted() {
    let edge = start_default().await;
    let (old, new) = (samsara_body("evt-old-secret"), samsara_body("evt-new-secret"));
    let ts = now_secs();
    assert_eq!(
        edge.post("samsara", &samsara_headers(SAMSARA_SECRET, &ts, &old), &old).await.0,
        StatusCode::OK
    );
    assert_eq!(edge.post("samsara", &samsara_headers(SAMSARA_NEXT, &ts, &new), &new).await.0, StatusCode::OK);
    let keys: Vec<_> = edge.messages(&edge.topics.samsara).into_iter().filter_map(|m| m.key).collect();
    assert_eq!(keys.len(), 2);
    assert!(keys.contains(&"evt-old-secret".into()) && keys.contains(&"evt-new-secret".into()), "{keys:?}");
}

#[tokio::test]
async fn stale_and_future_timestamps_are_401() {
    let edge = start_default().await;
    let body = samsara_body("evt-time");
    let now = chrono::Utc::now().timestamp();
    for (offset, reason) in [(-301, "stale_timestamp"), (301, "future_timestamp")] {
        let headers = samsara_headers(SAMSARA_SECRET, &(now + offset).to_string(), &body);
        assert_eq!(edge.post("samsara", &headers, &body).await.0, StatusCode::UNAUTHORIZED, "{reason}");
        assert_eq!(edge.rejected(reason).await, 1);
    }
    assert!(edge.messages(&edge.topics.samsara).is_empty());
}

#[tokio::test]
async fn a_captured_request_replayed_after_the_window_is_401() {
    let brokers = support::kafka_brokers();
    let topics = create_topics(&brokers).await;
    let mut config = edge_config(&brokers, &topics);
    config.edge.timestamp_tolerance = Duration::from_secs(1);
    let edge = start(config, topics, true).await;
    let body = samsara_body("evt-captured");
    let headers = samsara_headers(SAMSARA_SECRET, &now_secs(), &body);
    assert_eq!(edge.post("samsara", &headers, &body).await.0, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(edge.post("samsara", &headers, &body).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(edge.rejected("stale_timestamp").await, 1);
    assert_eq!(edge.messages(&edge.topics.samsara).len(), 1);
}

#[tokio::test]
async fn an_oversized_body_is_413() {
    let brokers = support::kafka_brokers();
    let topics = create_topics(&brokers).await;
    let mut config = edge_config(&brokers, &topics);
    config.edge.max_body_bytes = 4096;
    let edge = start(config, topics, true).await;
    let body = samsara_body(&"x".repeat(5000));
    let headers = samsara_headers(SAMSARA_SECRET, &now_secs(), &body);
    assert_eq!(edge.post("samsara", &headers, &body).await.0, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(edge.rejected("body_too_large").await, 1);
    assert!(edge.messages(&edge.topics.samsara).is_empty());
}

#[tokio::test]
async fn invalid_json_with_a_valid_signature_is_400_and_dead_lettered_with_its_reason() {
    let edge = start_default().await;
    let body = r#"{"eventId": "evt-broken", "eventTime": "#;
    let headers = samsara_headers(SAMSARA_SECRET, &now_secs(), body);
    let (status, text) = edge.post("samsara", &headers, body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(text.contains("invalid_json"), "{text}");
    assert!(edge.messages(&edge.topics.samsara).is_empty(), "nothing reaches the data topic");
    let letters = edge.messages(&edge.topics.dlq);
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].payload, body.as_bytes());
    assert_eq!(header(&letters[0], dlq_headers::REASON), Some("invalid_json"));
    assert_eq!(header(&letters[0], dlq_headers::ORIGIN_TOPIC), Some(edge.topics.samsara.as_str()));
}

#[tokio::test]
async fn the_front_challenge_is_answered_and_front_events_land_keyed_by_event_id() {
    let edge = start_default().await;
    let ts = (chrono::Utc::now().timestamp_millis()).to_string();
    let sync = r#"{"type":"sync","authorization":{"id":"cmp_1"}}"#;
    let mut headers = vec![
        ("x-front-signature", sign(SignatureScheme::FrontApplication, FRONT_SECRET, &ts, sync.as_bytes())),
        ("x-front-request-timestamp", ts.clone()),
        ("x-front-challenge", "challenge-123".into()),
    ];
    assert_eq!(
        edge.post("front", &headers, sync).await,
        (StatusCode::OK, r#"{"challenge":"challenge-123"}"#.into())
    );
    headers.pop();
    let event = r#"{"type":"inbound","authorization":{"id":"cmp_1"},"payload":{"id":"evt_front_1","type":"inbound",
        "emitted_at":1700000000,"conversation":{"id":"cnv_1","subject":"SCAC ABCD late"}}}"#;
    headers[0].1 = sign(SignatureScheme::FrontApplication, FRONT_SECRET, &ts, event.as_bytes());
    assert_eq!(edge.post("front", &headers, event).await.0, StatusCode::OK);
    let messages = edge.messages(&edge.topics.front);
    assert_eq!(messages.len(), 1, "the challenge produced nothing");
    assert_eq!(messages[0].key.as_deref(), Some("evt_front_1"));
    assert_eq!(header(&messages[0], "apex-format"), Some("front"));
}

#[tokio::test]
async fn turvo_is_checked_by_its_shared_token_and_keyed_by_the_body_digest() {
    let edge = start_default().await;
    let body = r#"{"tenantId":"t1","eventName":"SHIPMENT_STATUS_UPDATE","eventTime":"2026-11-20T10:00:00Z",
        "eventPayload":{"id":98765,"customId":"SH-1001","status":{"code":{"key":"2106","value":"En route"}}}}"#;
    let wrong = [("authorization", "Bearer guessed".to_owned())];
    assert_eq!(edge.post("turvo", &wrong, body).await.0, StatusCode::UNAUTHORIZED);
    let right = [("authorization", TURVO_TOKEN.to_owned())];
    assert_eq!(edge.post("turvo", &right, body).await.0, StatusCode::OK);
    assert_eq!(edge.post("turvo", &right, body).await.1, r#"{"status":"duplicate"}"#);
    let messages = edge.messages(&edge.topics.turvo);
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].key.as_ref().map(String::len), Some(64), "SHA-256 of the body, hex");
    assert_eq!(edge.post("nobody", &right, body).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn over_the_rate_limit_is_429_with_retry_after() {
    let brokers = support::kafka_brokers();
    let topics = create_topics(&brokers).await;
    let mut config = edge_config(&brokers, &topics);
    config.edge.turvo.rate_limit = 2;
    let edge = start(config, topics, true).await;
    let right = [("authorization", TURVO_TOKEN.to_owned())];
    let mut statuses = Vec::new();
    for i in 0..5 {
        let body = format!(r#"{{"eventName":"PING","eventTime":"2026-11-20T10:00:0{i}Z"}}"#);
        statuses.push(edge.post("turvo", &right, &body).await.0);
    }
    let limited = statuses.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count();
    assert!(limited >= 2, "{statuses:?}");
    assert_eq!(edge.rejected("rate_limited").await, limited as i64);
    assert_eq!(edge.messages(&edge.topics.turvo).len(), 5 - limited, "every 200 is one message");
}

/// Kafka unreachable: 503 with Retry-After and nothing remembered, so the
/// provider's retry (here reaching an edge that reaches the broker, sharing
/// the Redis dedupe ledger) lands exactly once.
#[tokio::test]
async fn with_kafka_unreachable_it_is_503_and_the_retried_request_lands_exactly_once() {
    let brokers = support::kafka_brokers();
    let redis = support::redis_url();
    let topics = create_topics(&brokers).await;
    let mut shared = edge_config(&brokers, &topics);
    shared.edge.dedupe = DedupeKind::Redis;
    shared.redis.url = redis;
    shared.stores.redis_prefix = support::unique("edge");
    let mut cut_off = shared.clone();
    // Nothing listens on port 1.
    cut_off.kafka.brokers = "127.0.0.1:1".into();
    let down = start(cut_off, create_topics(&brokers).await, false).await;
    let body = samsara_body("evt-outage");
    let headers = samsara_headers(SAMSARA_SECRET, &now_secs(), &body);
    assert_eq!(down.get("/readyz").await.0, StatusCode::SERVICE_UNAVAILABLE);
    // Once the broker watch has looked, /readyz names what is down.
    let looked = Instant::now();
    while !down.get("/readyz").await.1.contains("kafka: the brokers do not answer") {
        assert!(looked.elapsed() < Duration::from_secs(15), "{:?}", down.get("/readyz").await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, text) = down.post("samsara", &headers, &body).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{text}");
    assert_eq!(down.rejected("broker_unavailable").await, 1);

    let up = start(shared, topics, true).await;
    assert_eq!(up.post("samsara", &headers, &body).await.1, r#"{"status":"accepted"}"#);
    assert_eq!(up.post("samsara", &headers, &body).await.1, r#"{"status":"duplicate"}"#);
    assert_eq!(up.messages(&up.topics.samsara).len(), 1);
}

#[tokio::test]
async fn without_any_route_or_with_a_missing_secret_the_edge_does_not_start() {
    let config = support::config();
    let err = Edge::start(&config, Metrics::new(), environment).await.err().expect("no route configured");
    assert!(err.to_string().contains("no webhook route"), "{err}");
    let mut config = support::config();
    config.edge.front.secret_env = vec!["FRONT_SECRET_NOT_SET".into()];
    let err = Edge::start(&config, Metrics::new(), environment).await.err().expect("a missing secret");
    assert!(err.to_string().contains("FRONT_SECRET_NOT_SET, which is not set"), "{err}");
}

/// A route whose secret lives in a file (a mounted Secret): rewriting the file
/// rotates the secret without a restart; a file that goes missing keeps the
/// last secret and is counted failed; each reload is counted.
#[tokio::test]
async fn a_secret_file_rotated_while_the_edge_runs_is_served_without_a_restart() {
    let brokers = support::kafka_brokers();
    let topics = create_topics(&brokers).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("turvo-token");
    std::fs::write(&file, "first-token\n").unwrap();
    let mut config = edge_config(&brokers, &topics);
    config.edge.turvo.secret_env.clear();
    config.edge.turvo.secret_files = vec![file.clone()];
    config.edge.secret_refresh = Duration::from_millis(100);
    let edge = start(config, topics, true).await;
    let body = |n: u32| format!(r#"{{"tenantId":"t1","eventName":"SHIPMENT_STATUS_UPDATE","n":{n}}}"#);
    let token = |t: &str| [("authorization", t.to_owned())];
    assert_eq!(edge.post("turvo", &token("first-token"), &body(1)).await.0, StatusCode::OK);

    std::fs::write(&file, "second-token").unwrap();
    let reloads = |outcome: &'static str| {
        let edge = &edge;
        async move {
            let metrics = edge.get("/metrics").await.1;
            support::metric_series(&metrics, "apex_webhook_secret_reloads_total")
                .iter()
                .filter(|(labels, _)| labels.contains(&format!("outcome=\"{outcome}\"")))
                .map(|(_, v)| *v)
                .sum::<i64>()
        }
    };
    let started = Instant::now();
    while reloads("ok").await == 0 {
        assert!(started.elapsed() < Duration::from_secs(10), "the rewritten file was never read again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(edge.post("turvo", &token("first-token"), &body(2)).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(edge.post("turvo", &token("second-token"), &body(3)).await.0, StatusCode::OK);

    std::fs::remove_file(&file).unwrap();
    while reloads("failed").await == 0 {
        assert!(started.elapsed() < Duration::from_secs(20), "a missing file was not counted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        edge.post("turvo", &token("second-token"), &body(4)).await.0,
        StatusCode::OK,
        "the last secret stays"
    );
    assert_eq!(edge.messages(&edge.topics.turvo).len(), 3);
}
