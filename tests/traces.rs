//! One webhook's journey, read back from a real trace backend: Jaeger
//! (`scripts/services up jaeger`, OTLP on 4317, its query API on 16686), the
//! real broker, an `apex-ingest edge`, an `apex-ingest run` member with half
//! its batches on Temporal and an `apex-ingest worker`, all processes
//! exporting spans. Each webhook arrives with a `traceparent`: the edge
//! continues that trace and produces under it; the member's batch span, in a
//! trace of its own, links to the message's span. On the direct path the
//! stages, the store writes and the commit are the batch's children; on
//! Temporal the batch starts the workflow, whose run (on the worker), child
//! and activities carry the trace down to the store writes.

mod support;

use std::path::Path;
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

/// The processes and where to read their spans.
struct Journey {
    edge: Process,
    member: Process,
    _worker: Process,
    edge_port: u16,
    query: String,
    u: String,
    samsara: String,
    http: reqwest::Client,
}

/// A webhook's edge spans: the trace the caller began, and its produce span.
struct Sent {
    trace_id: String,
    produce: Value,
}

fn write_config(dir: &Path, name: &str, text: String) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

impl Journey {
    async fn start(dir: &Path) -> Journey {
        let brokers = support::kafka_brokers();
        let temporal = support::temporal_url();
        let otlp = support::services_var("SERVICES_JAEGER_OTLP", "jaeger");
        let query = support::services_var("SERVICES_JAEGER_QUERY", "jaeger");
        support::require("jaeger", "SERVICES_JAEGER_OTLP", &otlp);
        let u = support::unique("traces");
        let (samsara, dlq) = (format!("samsara.telemetry.v1.{u}"), format!("ingest.dlq.v1.{u}"));
        let specs = [TopicSpec::scratch(&samsara, 1), TopicSpec::scratch(&dlq, 1)];
        topics::apply(&support::kafka_at(&brokers), &specs, Some(1)).await.unwrap();
        let edge_port = free_port();
        let traces = |who: &str| format!("[traces]\nendpoint = {otlp:?}\nservice_name = \"{who}-{u}\"\n");
        let edge_config = write_config(
            dir,
            "edge.toml",
            format!(
                "[kafka]\nbrokers = {brokers:?}\ndlq_topic = {dlq:?}\n\
                 [edge]\nlisten = \"127.0.0.1:{edge_port}\"\n\
                 [edge.samsara]\nsecret_env = [\"SAMSARA_SECRET\"]\ntopic = {samsara:?}\n{}",
                traces("edge")
            ),
        );
        // The member and the worker share the stores (the worker writes the Temporal half).
        let shared = format!(
            "[stores]\ndata_dir = {data:?}\n[metrics]\nlisten = \"\"\n\
             [temporal]\nurl = {temporal:?}\ntask_queue = \"{u}\"\nrollout_percent = 50\n",
            data = dir.join("data").display().to_string(),
        );
        let member_config = write_config(
            dir,
            "member.toml",
            format!(
                "[source]\nkind = \"kafka\"\n[batch]\nmax_wait = \"1s\"\n{shared}\
                 [kafka]\nbrokers = {brokers:?}\ngroup_id = \"{u}\"\nsamsara_topic = {samsara:?}\ndlq_topic = {dlq:?}\n{off}{}",
                traces("member"),
                off = support::topics_off_except("samsara_topic"),
            ),
        );
        let worker_config = write_config(dir, "worker.toml", format!("{shared}{}", traces("worker")));
        let secret = [("SAMSARA_SECRET", SAMSARA_SECRET)];
        Journey {
            edge: Process::start(&["edge"], &edge_config, &secret, dir.join("edge.log")),
            member: Process::start(&["run"], &member_config, &[], dir.join("member.log")),
            _worker: Process::start(&["worker"], &worker_config, &[], dir.join("worker.log")),
            edge_port,
            query,
            u,
            samsara,
            http: reqwest::Client::new(),
        }
    }

    /// Sends webhook `n` with a trace of the caller's; checks the edge's spans of it.
    async fn send(&self, n: usize) -> Sent {
        let trace_id = format!("{:032x}", rand::random::<u128>() | 1);
        let caller_span = format!("{:016x}", rand::random::<u64>() | 1);
        let body = format!(
            r#"{{"eventId":"evt-trace-{n}-{u}","eventTime":"2026-11-20T14:03:27Z","eventType":"VehicleLocation","orgId":42,"data":{{"vehicle":{{"id":"v-{n}","name":"Truck {n}"}},"location":{{"time":"2026-11-20T14:03:27Z","latitude":35.1495,"longitude":-90.049}}}}}}"#,
            u = self.u
        );
        let started = Instant::now();
        let status = loop {
            let ts = chrono::Utc::now().timestamp().to_string();
            let sent = self
                .http
                .post(format!("http://127.0.0.1:{}/webhooks/samsara", self.edge_port))
                .header(
                    "x-samsara-signature",
                    sign(SignatureScheme::SamsaraV1, SAMSARA_SECRET, &ts, body.as_bytes()),
                )
                .header("x-samsara-timestamp", ts)
                .header("traceparent", format!("00-{trace_id}-{caller_span}-01"))
                .body(body.clone())
                .send()
                .await;
            match sent {
                Ok(r) if r.status() != reqwest::StatusCode::SERVICE_UNAVAILABLE => break r.status(),
                _ if started.elapsed() < WAIT => tokio::time::sleep(Duration::from_millis(200)).await,
                other => panic!("the edge never took the webhook ({other:?}):\n{}", self.edge.logs()),
            }
        };
        assert_eq!(status, 200, "{}", self.edge.logs());
        let started = Instant::now();
        let spans = loop {
            let found = spans(&jaeger(&format!("{}/api/v3/traces/{trace_id}", self.query)).await);
            if found.iter().any(|s| s["name"] == "produce") {
                break found;
            }
            assert!(
                started.elapsed() < WAIT,
                "no edge spans of trace {trace_id} in Jaeger:\n{}",
                self.edge.logs()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        let webhook = spans.iter().find(|s| s["name"] == "webhook").expect("a webhook span");
        let produce = spans.iter().find(|s| s["name"] == "produce").unwrap();
        assert_eq!(webhook["service"], format!("edge-{}", self.u));
        assert_eq!(webhook["parentSpanId"], caller_span, "the edge continues the caller's span");
        assert_eq!(produce["parentSpanId"], webhook["spanId"], "produce is the webhook's child");
        assert_eq!(attribute(webhook, "provider"), Some("samsara".into()));
        assert_eq!(attribute(webhook, "http.response.status_code"), Some("200".into()));
        assert_eq!(
            attribute(produce, "messaging.destination.name"),
            Some(Value::String(self.samsara.clone()))
        );
        Sent { trace_id, produce: produce.clone() }
    }

    /// The whole trace of the batch linked to `sent`'s message, once its commit is in.
    async fn batch_of(&self, sent: &Sent) -> Vec<Value> {
        let started = Instant::now();
        loop {
            let since = (chrono::Utc::now() - chrono::Duration::minutes(10))
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            let until = (chrono::Utc::now() + chrono::Duration::minutes(1))
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            let url = format!(
                "{}/api/v3/traces?query.service_name=member-{}&query.start_time_min={since}&query.start_time_max={until}&query.num_traces=100",
                self.query, self.u
            );
            let linked = spans(&jaeger(&url).await).into_iter().find(|s| {
                s["name"] == "batch"
                    && s["links"].as_array().is_some_and(|l| {
                        l.iter()
                            .any(|l| l["traceId"] == sent.trace_id && l["spanId"] == sent.produce["spanId"])
                    })
            });
            if let Some(batch) = linked {
                // Every service's spans of that trace (the worker's too).
                let id = batch["traceId"].as_str().unwrap();
                let whole = spans(&jaeger(&format!("{}/api/v3/traces/{id}", self.query)).await);
                let writes = whole.iter().filter(|s| s["name"] == "store_write").count();
                if writes >= 4 && whole.iter().any(|s| s["name"] == "commit") {
                    return whole;
                }
            }
            assert!(
                started.elapsed() < WAIT,
                "no complete batch trace linked to {} in Jaeger:\n{}",
                sent.trace_id,
                self.member.logs()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

fn named<'a>(trace: &'a [Value], name: &str) -> &'a Value {
    trace.iter().find(|s| s["name"] == name).unwrap_or_else(|| panic!("no {name} span in {trace:#?}"))
}

/// Four store writes, each the child of `parent`, with the attributes an operator reads.
fn assert_store_writes(trace: &[Value], parent: &Value) {
    let writes: Vec<&Value> = trace.iter().filter(|s| s["name"] == "store_write").collect();
    let stores: std::collections::BTreeSet<String> =
        writes.iter().filter_map(|s| attribute(s, "store")?.as_str().map(String::from)).collect();
    assert_eq!(stores, ["cache", "graph", "relational", "vector"].map(String::from).into(), "{trace:#?}");
    for write in &writes {
        assert_eq!(
            write["parentSpanId"], parent["spanId"],
            "a store write is the {}'s child",
            parent["name"]
        );
        for key in ["records", "retries", "group_commit.records"] {
            assert!(attribute(write, key).is_some(), "{key} missing on {write:#}");
        }
        assert_eq!(attribute(write, "breaker"), Some("closed".into()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_s_trace_runs_from_the_edge_through_kafka_to_its_batch_on_either_path() {
    let dir = tempfile::tempdir().unwrap();
    let journey = Journey::start(dir.path()).await;
    let (mut direct, mut temporal) = (false, false);
    // Each webhook its own batch; the rollout's hash sends about half to Temporal.
    for n in 1..=20 {
        if direct && temporal {
            break;
        }
        let sent = journey.send(n).await;
        let trace = journey.batch_of(&sent).await;
        let batch = named(&trace, "batch");
        assert_ne!(batch["traceId"], sent.trace_id, "a batch joins many traces: linked, not parented");
        // OTLP's JSON writes 64-bit integers as strings.
        assert_eq!(attribute(batch, "batch.events"), Some("1".into()), "{batch:#}");
        assert_eq!(
            named(&trace, "commit")["parentSpanId"],
            batch["spanId"],
            "the commit is the batch's child"
        );
        if trace.iter().any(|s| s["name"] == "StartWorkflow:BatchIngestWorkflow") {
            temporal = true;
            let start = named(&trace, "StartWorkflow:BatchIngestWorkflow");
            assert_eq!(start["parentSpanId"], batch["spanId"], "the batch starts the workflow");
            let run = named(&trace, "RunWorkflow:BatchIngestWorkflow");
            assert_eq!(run["parentSpanId"], start["spanId"]);
            assert_eq!(run["service"], format!("worker-{}", journey.u), "the workflow runs on the worker");
            let child = named(&trace, "StartChildWorkflow:IngestEventsWorkflow");
            assert_eq!(child["parentSpanId"], run["spanId"]);
            let child_run = named(&trace, "RunWorkflow:IngestEventsWorkflow");
            assert_eq!(child_run["parentSpanId"], child["spanId"]);
            let write = named(&trace, "StartActivity:write_batch");
            assert_eq!(write["parentSpanId"], run["spanId"]);
            let write_run = named(&trace, "RunActivity:write_batch");
            assert_eq!(write_run["parentSpanId"], write["spanId"]);
            assert_store_writes(&trace, write_run);
        } else {
            direct = true;
            for stage in ["parse", "extract", "embed"] {
                assert_eq!(
                    named(&trace, stage)["parentSpanId"],
                    batch["spanId"],
                    "{stage} is the batch's child"
                );
            }
            assert_store_writes(&trace, batch);
        }
    }
    assert!(
        direct && temporal,
        "20 batches at a 50 % rollout took one path only: direct {direct}, Temporal {temporal}"
    );
}
