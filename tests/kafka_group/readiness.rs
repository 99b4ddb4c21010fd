//! A member is ready only once it holds partitions.

use std::time::{Duration, Instant};

use crate::members::*;
use crate::support::{self};
use crate::world::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_is_not_ready_until_it_has_partitions() {
    // A broker address where nothing listens: the member runs, but never gets partitions.
    let names = Names {
        samsara: "samsara.telemetry.v1".into(),
        edi: "edi.carrier.v1".into(),
        dlq: "ingest.dlq.v1".into(),
        group: support::unique("unready"),
    };
    let dir = tempfile::tempdir().unwrap();
    let port = free_port().to_string();
    let member = Member::start(&format!("127.0.0.1:{port}"), &names, dir.path(), "max_wait = \"1s\"");
    let started = Instant::now();
    while member.get("/healthz").await.is_none() {
        assert!(started.elapsed() < Duration::from_secs(30), "{}", member.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(member.get("/healthz").await.map(|(s, _)| s), Some(200), "alive");
    assert_eq!(member.get("/readyz").await.map(|(s, _)| s), Some(503), "not ready without partitions");
    // Counted by the member's consumer, made once the start-up probe (CONNECT_PROBE) gave up.
    while member.value("apex_kafka_client_errors_total").await == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the broker errors are not counted: {}",
            member.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, body) = member.get("/readyz").await.unwrap();
    assert_eq!(status, 503, "still not ready");
    assert!(body.contains("kafka: no partitions assigned"), "/readyz names what it waits for: {body}");
}
