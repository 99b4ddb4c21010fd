//! Batches on the real Temporal dev server (`scripts/services up temporal`):
//! a batch workflow with a child workflow per event or per share of events, a
//! worker killed mid-batch, re-delivery, poison events and the rollout between paths.
//! Workers write to embedded stores in a temporary directory; each test has
//! its own task queue, so no worker runs another test's workflows.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

use apex_ingest::app;
use apex_ingest::batch::{Batch, CloseReason};
use apex_ingest::config::{CacheKind, ChildSteps, Config};
use apex_ingest::metrics::Metrics;
use apex_ingest::orchestrate::Orchestrator;
use apex_ingest::orchestrate::rollout::{RolloutOrchestrator, Route, route_for};
use apex_ingest::orchestrate::temporal::worker::while_working;
use apex_ingest::orchestrate::temporal::{
    BatchIngestWorkflow, BatchStatus, Phase, TemporalOrchestrator, batch_workflow_id, connect,
};
use apex_ingest::pipeline::parse_events;
use apex_ingest::source::generator::{Fleet, GeneratorSettings};
use apex_ingest::store::{DeadLetterFilter, Stores};
use apex_ingest::verify::Expectations;
use support::{WorkerProcess, held_by};
use temporalio_client::{Client, WorkflowCountOptions, WorkflowQueryOptions};

/// One test at a time: each runs a worker, and two cores are shared.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const WAIT: Duration = Duration::from_secs(180);

/// Settings of one test: its own task queue and store directory.
fn test_config(dir: &Path, name: &str) -> Config {
    let mut c = support::config();
    support::require("temporal", "APEX_TEMPORAL_URL", &c.temporal.url);
    c.temporal.task_queue = format!("apex-test-{name}-{}-{}", std::process::id(), nanos());
    c.stores = Config::default().stores;
    c.stores.data_dir = dir.to_path_buf();
    c.metrics.listen = String::new();
    c
}

fn nanos() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
}

/// A batch of generated traffic; seeds differ per test so batch ids do too.
fn batch(events: usize, seed: u64, poison: f64) -> Batch {
    support::generated_batch(events, seed ^ (nanos() as u64), poison)
}

/// Runs `body` while an in-process worker polls the test's task queue.
async fn with_worker<T>(config: &Config, stores: &Stores, body: impl Future<Output = T>) -> T {
    let metrics = Metrics::new();
    let writer = app::saga_writer(config, stores, metrics.clone(), &CancellationToken::new()).unwrap();
    let embedder = app::build_embedder(config).unwrap();
    while_working(config, embedder, writer, &metrics, Box::new(|_| Ok(())), body)
        .await
        .expect("worker ran and stopped cleanly")
}

async fn executions(client: &Client, query: &str) -> usize {
    client.count_workflows(query, WorkflowCountOptions::default()).await.expect("count workflows").count()
}

/// Visibility trails the history a little: waits until `query` counts `expected`.
async fn assert_count(client: &Client, query: &str, expected: usize) {
    let started = Instant::now();
    loop {
        let n = executions(client, query).await;
        if n == expected {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "{query}: {n} executions, expected {expected}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The visibility query of `batch`'s completed workflow by its search
/// attributes. A batch id names offsets only, and other tests' batches over
/// the same offsets share it: the workflow id (offsets and payloads) singles it out.
fn completed(batch: &Batch) -> String {
    format!(
        "BatchId = '{}' AND WorkflowId = '{}' AND `Status` = 'completed'",
        batch.id,
        batch_workflow_id(batch)
    )
}

async fn status(client: &Client, batch: &Batch) -> Option<BatchStatus> {
    client
        .get_workflow_handle::<BatchIngestWorkflow>(batch_workflow_id(batch))
        .query(BatchIngestWorkflow::get_status, (), WorkflowQueryOptions::default())
        .await
        .ok()
}

/// Every store holds exactly the records the batch parses into (the graph
/// its pings as each vehicle's newest state, not as nodes).
async fn assert_landed_once(stores: &Stores, batch: &Batch) -> usize {
    let (records, _) = parse_events(&batch.events);
    for store in stores.all() {
        let mut expected: Vec<String> =
            held_by(store.name(), &records).iter().map(|i| i.to_string()).collect();
        expected.sort();
        let mut ids: Vec<String> = store.record_ids().await.unwrap().iter().map(|i| i.to_string()).collect();
        ids.sort();
        assert_eq!(ids, expected, "{} holds other records than the batch parses into", store.name());
    }
    assert_reconciled(stores).await;
    records.len()
}

/// `verify` under the default policies finds nothing missing, vehicle states
/// included.
async fn assert_reconciled(stores: &Stores) {
    let diff = apex_ingest::verify::reconcile(stores, None, &Expectations::default()).await.unwrap();
    assert!(diff.is_clean(), "{:?}", diff.missing);
}

/// What most tests start from: their own store directory and task queue, the
/// stores, a client and an orchestrator with its metrics.
struct Setup {
    _dir: tempfile::TempDir,
    config: Config,
    stores: Stores,
    client: Client,
    metrics: Arc<Metrics>,
    orchestrator: TemporalOrchestrator,
}

async fn setup(name: &str) -> Setup {
    setup_with(name, |_| {}).await
}

async fn setup_with(name: &str, adjust: impl FnOnce(&mut Config)) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path(), name);
    adjust(&mut config);
    let stores = apex_ingest::app::open_stores(&config).await.unwrap();
    let client = connect(&config.temporal).await.unwrap();
    let metrics = Metrics::new();
    let orchestrator = TemporalOrchestrator::new(client.clone(), config.temporal.clone(), metrics.clone());
    Setup { _dir: dir, config, stores, client, metrics, orchestrator }
}

/// The seeds' design: one child workflow per event, an activity per stage.
fn child_per_event(config: &mut Config) {
    config.temporal.events_per_child = 1;
    config.temporal.child_steps = ChildSteps::Stages;
}

fn children_of(batch: &Batch) -> String {
    format!(
        "WorkflowType = 'IngestEventsWorkflow' AND WorkflowId STARTS_WITH '{}/'",
        batch_workflow_id(batch)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_event_batch_runs_through_a_child_workflow_per_event_and_lands_once() {
    let _serial = SERIAL.lock().await;
    let Setup { config, stores, client, metrics, orchestrator, .. } =
        &setup_with("hundred", child_per_event).await;
    let batch = batch(100, 1, 0.0);

    let report = with_worker(config, stores, async {
        let report = tokio::time::timeout(WAIT, orchestrator.run_batch(&batch)).await.unwrap().unwrap();
        let status = status(client, &batch).await.expect("get_status answers after completion");
        assert_eq!(status.phase, Phase::Completed);
        assert_eq!((status.events, status.children_started, status.children_done), (100, 100, 100));
        report
    })
    .await;

    let records = assert_landed_once(stores, &batch).await;
    assert_eq!(report.records, records as u64);
    assert_eq!((report.events, report.dead_letters, report.already_written), (100, 0, false));
    assert_count(client, &children_of(&batch), 100).await;
    // Findable in the UI by its search attributes.
    assert_count(client, &completed(&batch), 1).await;
    assert_eq!(metrics.counter("apex_workflow_results_total", "completed"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_500_event_batch_completes_and_is_written_in_parts_under_the_payload_limit() {
    let _serial = SERIAL.lock().await;
    let Setup { config, stores, client, orchestrator, .. } = &setup("five-hundred").await;
    // EDI only: more records per event, so the rows pass one 2 MB payload.
    let fleet = Fleet::new(GeneratorSettings {
        only: Some(apex_ingest::model::Format::Edi),
        ..GeneratorSettings::clean(nanos() as u64)
    });
    let batch = Batch::new(fleet.take(500).collect(), CloseReason::Size);

    let (report, done) = with_worker(config, stores, async {
        // A test of completion, not speed: two cores shared with the server and worker.
        let report = tokio::time::timeout(3 * WAIT, orchestrator.run_batch(&batch)).await.unwrap().unwrap();
        (report, status(client, &batch).await.unwrap())
    })
    .await;

    // Children of `events_per_child` (100 by default) events each.
    assert_eq!((done.phase, done.children_done), (Phase::Completed, 5));
    assert!(done.write_parts > 1, "{done:?}");
    let records = assert_landed_once(stores, &batch).await;
    assert_eq!(report.records, records as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_batch_is_replaced_and_the_batch_lands_once() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path(), "kill");
    // A child per event, so the kill can land between children.
    child_per_event(&mut config);
    // The cache role (with the batch locks and idempotency records) must outlive
    // a worker process: real Redis under a prefix of this test's own.
    config.redis.url = support::redis_url();
    config.stores.cache = CacheKind::Redis;
    config.stores.redis_prefix = format!("apex-test-kill-{}", nanos());
    let client = connect(&config.temporal).await.unwrap();
    let orchestrator =
        Arc::new(TemporalOrchestrator::new(client.clone(), config.temporal.clone(), Metrics::new()));
    let batch = batch(100, 2, 0.0);

    let mut first = WorkerProcess::start(&config, "first");
    let running = tokio::spawn({
        let (orchestrator, batch) = (orchestrator.clone(), batch.clone());
        async move { orchestrator.run_batch(&batch).await }
    });
    // Kill once some children are done and the batch is not yet written.
    let started = Instant::now();
    let seen = loop {
        if let Some(s) = status(&client, &batch).await
            && s.children_done >= 30
        {
            break s;
        }
        assert!(started.elapsed() < WAIT, "the batch never got going:\n{}", first.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    first.kill();
    assert_eq!(seen.phase, Phase::Processing, "killed too late to be mid-batch: {seen:?}");
    assert!(seen.children_done < 100, "{seen:?}");

    let second = WorkerProcess::start(&config, "second");
    let report = tokio::time::timeout(WAIT, running)
        .await
        .unwrap_or_else(|_| panic!("the batch did not finish on the new worker:\n{}", second.logs()))
        .unwrap()
        .unwrap();
    let done = status(&client, &batch).await.unwrap();
    assert_eq!((done.phase, done.children_done), (Phase::Completed, 100));
    drop(second);

    let stores = apex_ingest::app::open_stores(&config).await.unwrap();
    let records = assert_landed_once(&stores, &batch).await;
    assert_eq!(report.records, records as u64);
    assert_count(&client, &format!("WorkflowId = '{}'", batch_workflow_id(&batch)), 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_batch_attaches_to_its_workflow_and_writes_nothing_twice() {
    let _serial = SERIAL.lock().await;
    let Setup { config, stores, client, metrics, orchestrator, .. } =
        &setup_with("redeliver", |c| c.temporal.events_per_child = 10).await;
    let batch = batch(40, 3, 0.0);

    let (a, b, again) = with_worker(config, stores, async {
        // Delivered twice at once (a rebalance), then once more after it completed.
        let (a, b) = tokio::join!(orchestrator.run_batch(&batch), orchestrator.run_batch(&batch));
        let again = orchestrator.run_batch(&batch).await;
        (a.unwrap(), b.unwrap(), again.unwrap())
    })
    .await;

    assert_eq!(a, b);
    assert_eq!(again.records, a.records);
    assert_eq!(metrics.counter("apex_workflow_starts_total", "started"), 2);
    assert_eq!(metrics.counter("apex_workflow_starts_total", "completed_before"), 1);
    let id = batch_workflow_id(&batch);
    assert_count(client, &format!("WorkflowId = '{id}'"), 1).await;
    // Children of 10 events each, each started once.
    assert_count(client, &children_of(&batch), 4).await;
    let records = assert_landed_once(stores, &batch).await;
    assert_eq!(a.records, records as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_event_goes_to_the_dead_letters_alone_while_the_rest_of_its_child_lands() {
    let _serial = SERIAL.lock().await;
    for steps in [ChildSteps::Stages, ChildSteps::Combined, ChildSteps::Local] {
        let Setup { config, stores, client, orchestrator, .. } = &setup_with("poison", |c| {
            c.temporal.events_per_child = 20;
            c.temporal.child_steps = steps;
        })
        .await;
        let batch = batch(60, 4, 0.1);
        let (_, expected_dead) = parse_events(&batch.events);
        assert!(!expected_dead.is_empty(), "the generated batch holds poison");

        let report = with_worker(config, stores, async {
            tokio::time::timeout(WAIT, orchestrator.run_batch(&batch)).await.unwrap().unwrap()
        })
        .await;

        assert_landed_once(stores, &batch).await;
        assert_eq!(report.dead_letters, expected_dead.len() as u64, "{steps:?}");
        // Each poison event's letter carries the same id, reason and detail as on the direct path.
        let stored =
            stores.relational.dead_letters(&DeadLetterFilter { limit: 1000, ..Default::default() }).await;
        let stored: BTreeMap<String, (String, String)> = stored
            .unwrap()
            .into_iter()
            .map(|d| (d.letter.id.clone(), (d.letter.reason.clone(), d.letter.detail.clone())))
            .collect();
        let expected: BTreeMap<String, (String, String)> =
            expected_dead.iter().map(|d| (d.id.clone(), (d.reason.clone(), d.detail.clone()))).collect();
        assert_eq!(stored, expected, "{steps:?}");
        // Poison is data, not a failure: all three children completed.
        assert_count(client, &format!("{} AND ExecutionStatus = 'Completed'", children_of(&batch)), 3).await;
        // For the replay test (scripts/record-histories): the batch, and a child of each kind of steps.
        let id = batch_workflow_id(&batch);
        let child =
            apex_ingest::orchestrate::temporal::workflows::child_workflow_id(&id, &batch.events[..20]);
        support::keep_history(client, &child, &format!("child-{steps:?}").to_lowercase()).await;
        if steps == ChildSteps::Stages {
            support::keep_history(client, &id, "batch").await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rollout_routes_each_batch_as_its_hash_says() {
    let _serial = SERIAL.lock().await;
    let Setup { config, stores, client, .. } = &setup("rollout").await;
    let batches: Vec<Batch> = (0..8).map(|i| batch(3, 100 + i, 0.0)).collect();

    with_worker(config, stores, async {
        for percent in [0u8, 50, 100] {
            let metrics = Metrics::new();
            let direct =
                app::direct_over(config, stores, metrics.clone(), &CancellationToken::new()).unwrap();
            let temporal =
                Arc::new(TemporalOrchestrator::new(client.clone(), config.temporal.clone(), metrics.clone()));
            let rollout = RolloutOrchestrator::new(direct, temporal, percent, metrics.clone());
            // Fresh batch ids per percentage, so a workflow can only come from this round.
            let round: Vec<Batch> =
                batches.iter().map(|b| Batch::new(shifted(&b.events, percent), b.close_reason)).collect();
            let mut routed = BTreeMap::<&str, u64>::new();
            for b in &round {
                rollout.run_batch(b).await.unwrap();
                let route = route_for(&b.id, percent);
                *routed.entry(route.as_str()).or_default() += 1;
                let on_temporal = usize::from(route == Route::Temporal);
                assert_count(client, &format!("WorkflowId = '{}'", batch_workflow_id(b)), on_temporal).await;
            }
            for path in ["direct", "temporal"] {
                let expected = routed.get(path).copied().unwrap_or(0);
                assert_eq!(
                    metrics.counter("apex_orchestrator_batches_total", path),
                    expected,
                    "{percent}% {path}"
                );
            }
            match percent {
                0 => assert_eq!(routed.get("temporal"), None),
                100 => assert_eq!(routed.get("direct"), None),
                _ => {}
            }
        }
    })
    .await;
    // Whichever path took a batch, its records are in every store.
    assert!(stores.relational.count_records().await.unwrap() > 0);
    assert_reconciled(stores).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_compressed_by_the_member_are_read_by_a_worker_that_does_not_compress() {
    let _serial = SERIAL.lock().await;
    // The worker (from `config`) does not compress; the member's client does.
    let Setup { config, stores, client, .. } =
        &setup_with("codec", |c| c.temporal.compress_payloads = false).await;
    let mut member = config.temporal.clone();
    member.compress_payloads = true;
    let orchestrator = TemporalOrchestrator::new(connect(&member).await.unwrap(), member, Metrics::new());
    let batch = batch(100, 6, 0.02);

    let report = with_worker(config, stores, async {
        tokio::time::timeout(WAIT, orchestrator.run_batch(&batch)).await.unwrap().unwrap()
    })
    .await;

    let records = assert_landed_once(stores, &batch).await;
    assert_eq!(report.records, records as u64);
    assert_count(client, &completed(&batch), 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_no_worker_takes_shows_as_stalled_until_a_worker_polls() {
    let _serial = SERIAL.lock().await;
    let Setup { config, stores, metrics, orchestrator, .. } =
        &setup_with("stall", |c| c.temporal.stall_warning = Duration::from_secs(1)).await;
    let queue = config.temporal.task_queue.as_str();
    let shutdown = CancellationToken::new();
    let watching = orchestrator.watch_stalls(shutdown.clone());
    let batch = batch(10, 5, 0.0);

    let running = orchestrator.run_batch(&batch);
    let stalled = async {
        // No worker polls this test's task queue: the batch waits, and says so.
        let started = Instant::now();
        while metrics.gauge("apex_temporal_stalled_batches", queue) != 1 {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the waiting batch never counted as stalled"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(metrics.gauge("apex_temporal_oldest_waiting_batch_seconds", queue) >= 1);
        while metrics.gauge("apex_temporal_task_queue_pollers", queue) != 0
            || !metrics.render().contains("apex_temporal_task_queue_pollers{")
        {
            assert!(started.elapsed() < Duration::from_secs(20), "the task queue's pollers were never asked");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let mut running = std::pin::pin!(running);
    tokio::select! {
        done = &mut running => panic!("the batch finished without a worker: {done:?}"),
        () = stalled => {}
    }
    // A worker comes: the batch completes and nothing counts as stalled any more.
    let report = with_worker(config, stores, tokio::time::timeout(WAIT, running)).await.unwrap().unwrap();
    assert_eq!(report.events, 10);
    let started = Instant::now();
    while metrics.gauge("apex_temporal_stalled_batches", queue) != 0 {
        assert!(started.elapsed() < Duration::from_secs(20), "the completed batch still counts as stalled");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    shutdown.cancel();
    watching.await.unwrap();
}

/// The same events at other offsets: another batch id, the same records.
fn shifted(events: &[apex_ingest::model::RawEvent], by: u8) -> Vec<apex_ingest::model::RawEvent> {
    events
        .iter()
        .map(|e| {
            let mut e = e.clone();
            e.origin.offset += 1_000_000 * i64::from(by);
            e
        })
        .collect()
}

/// The dev server's Web UI and the CLI read a batch workflow's compressed
/// input through `apex-ingest codec`'s endpoint (Temporal's remote codec
/// protocol): the CLI shows zstd bytes without it and the batch's JSON with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compressed_batch_reads_as_json_through_the_codec_endpoint() {
    use apex_ingest::orchestrate::temporal::codec_server;
    let _serial = SERIAL.lock().await;
    let Setup { config, stores, orchestrator, .. } = &setup("codec").await;
    assert!(config.temporal.compress_payloads, "the default compresses");
    let batch = batch(100, nanos() as u64, 0.0);
    let report = with_worker(config, stores, tokio::time::timeout(WAIT, orchestrator.run_batch(&batch)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(report.events, 100);

    let ui = "http://127.0.0.1:8233";
    let router = codec_server::router(&[ui.to_string()], true).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let codec = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });

    let cli = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".state/venv/bin/temporal");
    assert!(cli.is_file(), "no temporal CLI at {}: run `scripts/services up temporal`", cli.display());
    let address = config.temporal.url.trim_start_matches("http://").to_owned();
    let id = apex_ingest::orchestrate::temporal::workflows::batch_workflow_id(&batch);
    let endpoint = codec.clone();
    let show = move |with_codec: bool| {
        let mut c = std::process::Command::new(&cli);
        c.args(["workflow", "show", "--address", &address, "--workflow-id", &id, "--output", "json"]);
        if with_codec {
            c.args(["--codec-endpoint", &endpoint]);
        }
        let out = c.output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let topic = batch.events[0].origin.topic.clone();
    // The CLI runs its own runtime: ask it off this test's workers.
    let (plain, decoded) = tokio::task::spawn_blocking(move || (show(false), show(true))).await.unwrap();
    // The batch as the workflow started with it: the first history event's
    // input payload, its encoding and its bytes (base64 in the CLI's JSON).
    let input = |history: &str| {
        use base64::Engine;
        let history: serde_json::Value = serde_json::from_str(history).unwrap();
        let payload =
            &history["events"][0]["workflowExecutionStartedEventAttributes"]["input"]["payloads"][0];
        let text = |v: &serde_json::Value| {
            let bytes =
                base64::engine::general_purpose::STANDARD.decode(v.as_str().unwrap_or_default()).unwrap();
            String::from_utf8_lossy(&bytes).into_owned()
        };
        (text(&payload["metadata"]["encoding"]), text(&payload["data"]))
    };
    let ((plain_encoding, plain), (encoding, decoded)) = (input(&plain), input(&decoded));
    assert_eq!(plain_encoding, "binary/zstd");
    assert!(!plain.contains(&topic), "readable without the codec: not compressed");
    assert_eq!(encoding, "json/plain");
    let batch_json: serde_json::Value = serde_json::from_str(&decoded).unwrap();
    assert_eq!(batch_json["events"].as_array().map(Vec::len), Some(100), "{decoded:.300}");
    assert!(decoded.contains(&topic));

    // The UI calls from the browser: its origin passes CORS, another does not.
    let http = reqwest::Client::new();
    let preflight = |origin: &'static str| {
        http.request(reqwest::Method::OPTIONS, format!("{codec}/decode"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type,x-namespace")
            .send()
    };
    let allowed = preflight("http://127.0.0.1:8233").await.unwrap();
    assert_eq!(allowed.headers().get("access-control-allow-origin").unwrap(), ui);
    let other = preflight("http://elsewhere.example").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
    // A body that is not a Payloads message is refused, saying so.
    let bad = http
        .post(format!("{codec}/decode"))
        .body("{\"payloads\": [{\"data\": \"%%%\"}]}")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert!(bad.text().await.unwrap().contains("payload 0: data is not base64"));
    // And the UI itself is served by the dev server the scripts start.
    let page = http.get(ui).send().await.unwrap_or_else(|e| panic!("no Temporal UI at {ui} ({e}): start it with `scripts/services down temporal && scripts/services up temporal` (older scripts started it headless)"));
    assert!(page.status().is_success(), "{}", page.status());
}
