//! Worker Deployments on the Temporal dev server (`scripts/services up
//! temporal redis`): two `apex-ingest worker` processes, versions v1 and v2 of
//! one deployment, and `apex-ingest worker rollout` moving new batch workflows
//! between them as an operator would: v1 current, v2 ramped to 50 %, promoted,
//! rolled back. Which version ran each batch is read from the server's
//! visibility (`TemporalWorkerDeploymentVersion`).

#[path = "support/mod.rs"]
mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use apex_ingest::config::Config;
use apex_ingest::metrics::Metrics;
use apex_ingest::orchestrate::Orchestrator;
use apex_ingest::orchestrate::temporal::{TemporalOrchestrator, connect, deployment};
use support::WorkerProcess;
use temporalio_client::{Client, WorkflowCountOptions};

const WAIT: Duration = Duration::from_secs(120);

/// `apex-ingest worker rollout …` as an operator runs it; its stdout.
fn rollout(config: &Config, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_apex-ingest"))
        .args(["worker", "rollout"])
        .args(args)
        .env("APEX_TEMPORAL_URL", &config.temporal.url)
        .env("APEX_TEMPORAL_TASK_QUEUE", &config.temporal.task_queue)
        .env("APEX_TEMPORAL_DEPLOYMENT_NAME", &config.temporal.deployment_name)
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "worker rollout {args:?}: {stdout}{stderr}");
    stdout.into_owned()
}

/// Batch workflows of the test's queue that ran on `build_id`.
async fn ran_on(client: &Client, config: &Config, build_id: &str) -> usize {
    let query = format!(
        "WorkflowType = 'BatchIngestWorkflow' AND TaskQueue = '{}' AND TemporalWorkerDeploymentVersion = '{}:{build_id}'",
        config.temporal.task_queue, config.temporal.deployment_name
    );
    client.count_workflows(&query, WorkflowCountOptions::default()).await.unwrap().count() as usize
}

/// Waits until visibility has caught up with `expected` (v1, v2) batches.
async fn assert_ran(client: &Client, config: &Config, expected: (usize, usize)) {
    let started = Instant::now();
    loop {
        let seen = (ran_on(client, config, "v1").await, ran_on(client, config, "v2").await);
        if seen == expected {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "batches on (v1, v2): {seen:?}, not {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// (v1, v2) once visibility shows `total` batches between them.
async fn split_once_seen(client: &Client, config: &Config, total: usize) -> (usize, usize) {
    let started = Instant::now();
    loop {
        let seen = (ran_on(client, config, "v1").await, ran_on(client, config, "v2").await);
        if seen.0 + seen.1 == total {
            return seen;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "batches on (v1, v2): {seen:?}, not {total} in all"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn wait_for_version(client: &Client, config: &Config, build_id: &str) {
    let started = Instant::now();
    while !deployment::status(client, &config.temporal)
        .await
        .is_ok_and(|r| r.versions.iter().any(|v| v.build_id == build_id))
    {
        assert!(started.elapsed() < WAIT, "the server never saw version {build_id}'s worker poll");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// `n` batches of 3 generated events, of ids no earlier run used.
async fn run_batches(orchestrator: &TemporalOrchestrator, n: usize) {
    let run = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    for i in 0..n {
        let batch = support::generated_batch(3, run ^ i as u64, 0.0);
        tokio::time::timeout(WAIT, orchestrator.run_batch(&batch)).await.unwrap().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_worker_version_ramps_is_promoted_and_rolls_back_with_one_command() {
    let mut config = support::config();
    support::require("temporal", "APEX_TEMPORAL_URL", &config.temporal.url);
    support::require("redis", "APEX_REDIS_URL", &config.redis.url);
    config.temporal.task_queue = support::unique("apex-rollout");
    config.temporal.deployment_name = support::unique("apex-rollout");
    config.metrics.listen = String::new();
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let version = |build_id: &str, dir: &tempfile::TempDir| {
        let mut c = config.clone();
        c.temporal.build_id = build_id.into();
        c.stores.data_dir = dir.path().to_path_buf();
        c
    };
    let client = connect(&config.temporal).await.unwrap();
    let orchestrator = TemporalOrchestrator::new(client.clone(), config.temporal.clone(), Metrics::new());

    let _v1 = WorkerProcess::start(&version("v1", &dirs[0]), "v1");
    wait_for_version(&client, &config, "v1").await;
    let status = rollout(&config, &["promote", "v1"]);
    assert!(status.contains("current    v1\nramping    none"), "{status}");
    run_batches(&orchestrator, 3).await;
    assert_ran(&client, &config, (3, 0)).await;

    let _v2 = WorkerProcess::start(&version("v2", &dirs[1]), "v2");
    wait_for_version(&client, &config, "v2").await;
    let status = rollout(&config, &["ramp", "v2", "50"]);
    assert!(status.contains("current    v1\nramping    v2 at 50%"), "{status}");
    run_batches(&orchestrator, 16).await;
    let (on_v1, on_v2) = split_once_seen(&client, &config, 19).await;
    assert!(on_v1 > 3 && on_v2 > 0, "a 50 % ramp sent (v1, v2) = ({on_v1}, {on_v2}) of 3 + 16");

    let status = rollout(&config, &["promote", "v2"]);
    assert!(status.contains("current    v2\nramping    none"), "{status}");
    run_batches(&orchestrator, 3).await;
    let (before, on_v2) = split_once_seen(&client, &config, 22).await;
    assert_eq!(before, on_v1, "after the promotion, v2 took every new batch");

    // The one-command rollback: v1 is current again, and new batches run there.
    let status = rollout(&config, &["rollback"]);
    assert!(status.contains("current    v1\nramping    none"), "{status}");
    run_batches(&orchestrator, 3).await;
    assert_ran(&client, &config, (before + 3, on_v2)).await;

    // A ramp in progress rolls back to no ramp.
    rollout(&config, &["ramp", "v2", "10"]);
    let status = rollout(&config, &["rollback"]);
    assert!(status.contains("current    v1\nramping    none"), "{status}");
    assert!(status.contains("version    v1") && status.contains("version    v2"), "{status}");
}
