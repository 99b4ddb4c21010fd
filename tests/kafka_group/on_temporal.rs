//! With every batch on Temporal: killed members and workers, a server restart, nothing
//! lost or doubled.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::members::*;
use crate::support::{self};
use crate::world::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_temporal_a_killed_member_and_a_killed_worker_lose_nothing_and_duplicate_nothing() {
    let _serial = SERIAL.lock().await;
    let run = TemporalRun::new("kafka-kill", 11, 4_500, 500).await;
    let mut worker = run.worker("first");
    let mut member = run.member();
    run.wait_committed(20, "a fifth of the events are committed through Temporal").await;
    member.child.kill().unwrap(); // SIGKILL: batches of its own still run on Temporal
    member.child.wait().unwrap();
    let member = run.member();
    run.wait_committed(50, "half of the events are committed after the member restarted").await;
    worker.kill();
    let worker = run.worker("second");
    run.assert_complete().await;
    assert!(member.logs().contains("rollout: share of batches on Temporal"), "{}", member.logs());
    drop((member, worker));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_temporal_a_server_restart_mid_run_loses_nothing_and_duplicates_nothing() {
    let _serial = SERIAL.lock().await;
    let run = TemporalRun::new("kafka-restart", 13, 4_500, 500).await;
    let worker = run.worker("only");
    let member = run.member();
    run.wait_committed(20, "a fifth of the events are committed through Temporal").await;
    let services = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/services");
    let down = Command::new(&services).args(["down", "temporal"]).output().unwrap();
    assert!(down.status.success(), "{}", String::from_utf8_lossy(&down.stderr));
    // Only a server `scripts/services` runs can be restarted from here.
    let url = support::config().temporal.url;
    let host = url.trim_start_matches("http://").trim_start_matches("https://");
    assert!(
        std::net::TcpStream::connect(host).is_err(),
        "Temporal at {url} is still up after `scripts/services down temporal`: this test needs the dev server \
         of `scripts/services`"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let up = Command::new(&services).args(["up", "temporal"]).output().unwrap();
    assert!(up.status.success(), "{}", String::from_utf8_lossy(&up.stderr));
    run.assert_complete().await;
    drop((member, worker));
}
