//! One webhook's journey, read back from a real trace backend: Jaeger
//! (`scripts/services up jaeger`, OTLP on 4317, its query API on 16686), the
//! real broker, an `apex-ingest edge` and an `apex-ingest run` member as
//! processes exporting spans. The webhook arrives with a `traceparent`: the
//! edge continues that trace and produces under it; the member's batch span,
//! in a trace of its own, links to the message's span, and the store writes
//! and the commit are its children, with the attributes an operator reads.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use apex_ingest::config::SignatureScheme;
use apex_ingest::edge::signature::sign;
use apex_ingest::kafka::topics::{self, TopicSpec};
use serde_json::Value;

const SAMSARA_SECRET: &str = "dGVzdC1zZWNyZXQ=";
const WAIT: Duration = Duration::from_secs(60);

/// A child process killed when dropped; its stderr in a file.
struct Process(Child, std::path::PathBuf);

impl Process {
    fn start(
        args: &[&str],
        config: &std::path::Path,
        env: &[(&str, &str)],
        log: std::path::PathBuf,
    ) -> Process {
        let child = Command::new(env!("CARGO_BIN_EXE_apex-ingest"))
            .args(args)
            .arg("--config")
            .arg(config)
            .envs(env.iter().copied())
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Process(child, log)
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.1).unwrap_or_default()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Every span of the answer of Jaeger's `/api/v3/traces…`, flattened, each
/// with its service's name under `"service"`.
fn spans(answer: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    for resource in answer["result"]["resourceSpans"].as_array().into_iter().flatten() {
        let service = resource["resource"]["attributes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["key"] == "service.name")
            .map(|a| a["value"]["stringValue"].clone())
            .unwrap_or_default();
        for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
            for span in scope["spans"].as_array().into_iter().flatten() {
                let mut span = span.clone();
                span["service"] = service.clone();
                out.push(span);
            }
        }
    }
    out
}

fn attribute(span: &Value, key: &str) -> Option<Value> {
    span["attributes"].as_array()?.iter().find(|a| a["key"] == key).map(|a| {
        let v = &a["value"];
        v.get("stringValue").or(v.get("intValue")).or(v.get("boolValue")).cloned().unwrap_or(Value::Null)
    })
}

async fn jaeger(url: &str) -> Value {
    match reqwest::get(url).await {
        Ok(r) if r.status().is_success() => r.json().await.unwrap_or(Value::Null),
        _ => Value::Null,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_s_trace_runs_from_the_edge_through_kafka_to_the_batch_and_its_store_writes() {
    let brokers = support::kafka_brokers();
    let otlp = support::services_var("SERVICES_JAEGER_OTLP", "jaeger");
    let query = support::services_var("SERVICES_JAEGER_QUERY", "jaeger");
    support::require("jaeger", "SERVICES_JAEGER_OTLP", &otlp);
    let u = support::unique("traces");
    let (samsara, dlq) = (format!("samsara.telemetry.v1.{u}"), format!("ingest.dlq.v1.{u}"));
    let specs = [TopicSpec::scratch(&samsara, 1), TopicSpec::scratch(&dlq, 1)];
    topics::apply(&support::kafka_at(&brokers), &specs, Some(1)).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let edge_port = free_port();
    let edge_config = dir.path().join("edge.toml");
    std::fs::write(
        &edge_config,
        format!(
            "[kafka]\nbrokers = {brokers:?}\ndlq_topic = {dlq:?}\n\
             [edge]\nlisten = \"127.0.0.1:{edge_port}\"\n\
             [edge.samsara]\nsecret_env = [\"SAMSARA_SECRET\"]\ntopic = {samsara:?}\n\
             [traces]\nendpoint = {otlp:?}\nservice_name = \"edge-{u}\"\n"
        ),
    )
    .unwrap();
    let member_config = dir.path().join("member.toml");
    std::fs::write(
        &member_config,
        format!(
            "[source]\nkind = \"kafka\"\n[batch]\nmax_wait = \"1s\"\n\
             [stores]\ndata_dir = {data:?}\n[metrics]\nlisten = \"\"\n\
             [kafka]\nbrokers = {brokers:?}\ngroup_id = \"{u}\"\nsamsara_topic = {samsara:?}\ndlq_topic = {dlq:?}\n{off}\
             [traces]\nendpoint = {otlp:?}\nservice_name = \"member-{u}\"\n",
            data = dir.path().join("data").display().to_string(),
            off = support::topics_off_except("samsara_topic"),
        ),
    )
    .unwrap();
    let edge = Process::start(
        &["edge"],
        &edge_config,
        &[("SAMSARA_SECRET", SAMSARA_SECRET)],
        dir.path().join("edge.log"),
    );
    let member = Process::start(&["run"], &member_config, &[], dir.path().join("member.log"));

    // The sender's trace: our own trace id, so the backend can be asked for it.
    let trace_id = format!("{:032x}", rand::random::<u128>() | 1);
    let traceparent = format!("00-{trace_id}-{:016x}-01", rand::random::<u64>() | 1);
    let body = r#"{"eventId":"evt-trace-1","eventTime":"2026-11-20T14:03:27Z","eventType":"VehicleLocation","orgId":42,"data":{"vehicle":{"id":"v-1","name":"Truck 1"},"location":{"time":"2026-11-20T14:03:27Z","latitude":35.1495,"longitude":-90.049}}}"#;
    let http = reqwest::Client::new();
    let started = Instant::now();
    let status = loop {
        let ts = chrono::Utc::now().timestamp().to_string();
        let sent = http
            .post(format!("http://127.0.0.1:{edge_port}/webhooks/samsara"))
            .header(
                "x-samsara-signature",
                sign(SignatureScheme::SamsaraV1, SAMSARA_SECRET, &ts, body.as_bytes()),
            )
            .header("x-samsara-timestamp", ts)
            .header("traceparent", &traceparent)
            .body(body)
            .send()
            .await;
        match sent {
            Ok(r) if r.status() != reqwest::StatusCode::SERVICE_UNAVAILABLE => break r.status(),
            _ if started.elapsed() < WAIT => tokio::time::sleep(Duration::from_millis(200)).await,
            other => panic!("the edge never took the webhook ({other:?}):\n{}", edge.logs()),
        }
    };
    assert_eq!(status, 200, "{}", edge.logs());

    // The edge's part: our trace, continued.
    let started = Instant::now();
    let edge_spans = loop {
        let found = spans(&jaeger(&format!("{query}/api/v3/traces/{trace_id}")).await);
        if found.iter().any(|s| s["name"] == "produce") {
            break found;
        }
        assert!(started.elapsed() < WAIT, "no edge spans of trace {trace_id} in Jaeger:\n{}", edge.logs());
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let webhook = edge_spans.iter().find(|s| s["name"] == "webhook").expect("a webhook span");
    let produce = edge_spans.iter().find(|s| s["name"] == "produce").unwrap();
    assert_eq!(webhook["service"], format!("edge-{u}"));
    assert_eq!(produce["parentSpanId"], webhook["spanId"], "produce is the webhook's child");
    assert_eq!(webhook["parentSpanId"], traceparent[36..52], "continues the caller's span");
    assert_eq!(attribute(webhook, "provider"), Some("samsara".into()));
    assert_eq!(attribute(produce, "messaging.destination.name"), Some(Value::String(samsara.clone())));

    // The member's part: a batch in a trace of its own, linked to the message's span.
    let started = Instant::now();
    let batch_trace = loop {
        let since = (chrono::Utc::now() - chrono::Duration::minutes(10))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let until = (chrono::Utc::now() + chrono::Duration::minutes(1))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let url = format!(
            "{query}/api/v3/traces?query.service_name=member-{u}&query.start_time_min={since}&query.start_time_max={until}&query.num_traces=100"
        );
        let found = spans(&jaeger(&url).await);
        let linked = found.iter().find(|s| {
            s["name"] == "batch"
                && s["links"].as_array().is_some_and(|l| {
                    l.iter().any(|l| l["traceId"] == trace_id && l["spanId"] == produce["spanId"])
                })
        });
        if let Some(batch) = linked {
            let trace = batch["traceId"].clone();
            let whole: Vec<Value> = found.into_iter().filter(|s| s["traceId"] == trace).collect();
            if whole.iter().any(|s| s["name"] == "commit") {
                break whole;
            }
        }
        assert!(
            started.elapsed() < WAIT,
            "no batch linked to the webhook's trace in Jaeger:\n{}",
            member.logs()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let batch = batch_trace.iter().find(|s| s["name"] == "batch").unwrap();
    assert_ne!(batch["traceId"], trace_id, "a batch joins many traces: linked, not parented");
    // OTLP's JSON writes 64-bit integers as strings.
    assert_eq!(attribute(batch, "batch.events"), Some("1".into()), "{batch:#}");
    let writes: Vec<&Value> = batch_trace.iter().filter(|s| s["name"] == "store_write").collect();
    let stores: std::collections::BTreeSet<String> =
        writes.iter().filter_map(|s| attribute(s, "store")?.as_str().map(String::from)).collect();
    assert_eq!(
        stores,
        ["cache", "graph", "relational", "vector"].map(String::from).into(),
        "{batch_trace:#?}"
    );
    for write in &writes {
        assert_eq!(write["parentSpanId"], batch["spanId"], "a store write is the batch's child");
        for key in ["records", "retries", "breaker"] {
            assert!(attribute(write, key).is_some(), "{key} missing on {write:#}");
        }
        assert_eq!(attribute(write, "breaker"), Some("closed".into()));
    }
    let commit = batch_trace.iter().find(|s| s["name"] == "commit").unwrap();
    assert_eq!(commit["parentSpanId"], batch["spanId"], "the commit is the batch's child");
    for stage in ["parse", "extract", "embed"] {
        let span =
            batch_trace.iter().find(|s| s["name"] == stage).unwrap_or_else(|| panic!("no {stage} span"));
        assert_eq!(span["parentSpanId"], batch["spanId"], "{stage} is the batch's child");
    }
}
