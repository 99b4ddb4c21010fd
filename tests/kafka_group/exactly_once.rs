//! Every event lands once and the group commits to the end, also when a member is
//! killed mid-run.

use apex_ingest::model::Format;
use std::time::{Duration, Instant};

use crate::members::*;
use crate::support::kafka_brokers;
use crate::world::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_events_land_once_and_the_group_commits_to_the_end() {
    let brokers = kafka_brokers();
    let _serial = SERIAL.lock().await;
    let names = create_topics(&brokers, 6, 3).await;
    produce_to(&brokers, &names.samsara, Format::Samsara, 17_000, 0.01, 1).await;
    produce_to(&brokers, &names.edi, Format::Edi, 3_000, 0.01, 2).await;
    let want = expected(&brokers, &names);
    assert!(!want.poison.is_empty());

    let dir = tempfile::tempdir().unwrap();
    let mut member = Member::start(&brokers, &names, dir.path(), "max_wait = \"1s\"");
    // Not ready before partitions are assigned is checked implicitly: ready needs an assignment.
    wait_ready(&member).await;
    assert_eq!(member.value("apex_kafka_assigned_partitions").await, 9);
    wait_until_committed_to_end(&brokers, &names).await;
    // The lag metric reaches zero once the statistics catch up.
    let started = Instant::now();
    while member.value("apex_kafka_consumer_lag").await != 0 || member.owned().await.len() != 9 {
        assert!(started.elapsed() < Duration::from_secs(30), "lag metric did not reach 0");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(member.value("apex_kafka_commits_total{outcome=\"failed\"}").await, 0);
    assert!(member.terminate().await.success(), "{}", member.logs());
    assert!(member.logs().contains("partitions released"), "left the group cleanly");

    assert_exactly_once(&stored(dir.path()).await, &want);
    assert_eq!(committed(&brokers, &names.group, &names.inputs()), end_offsets(&brokers, &names.inputs()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_killed_mid_run_loses_nothing_and_duplicates_nothing_after_restart() {
    let brokers = kafka_brokers();
    let _serial = SERIAL.lock().await;
    let names = create_topics(&brokers, 6, 3).await;
    produce_to(&brokers, &names.samsara, Format::Samsara, 7_000, 0.01, 3).await;
    produce_to(&brokers, &names.edi, Format::Edi, 1_000, 0.01, 4).await;
    let want = expected(&brokers, &names);
    let total: i64 = end_offsets(&brokers, &names.inputs()).values().sum();

    let dir = tempfile::tempdir().unwrap();
    // Small batches, one at a time: the run lasts long enough to be killed in the middle.
    let batch = "max_events = 25\nmax_wait = \"1s\"\nmax_in_flight = 1";
    let mut member = Member::start(&brokers, &names, dir.path(), batch);
    wait_until("a quarter of the events are committed", || committed_total(&brokers, &names) >= total / 4)
        .await;
    member.child.kill().unwrap(); // SIGKILL: no drain, no final commit
    member.child.wait().unwrap();
    let at_kill = committed_total(&brokers, &names);
    assert!(at_kill < total, "killed after the end ({at_kill} of {total}); the test proves nothing");

    let restarted = Member::start(&brokers, &names, dir.path(), batch);
    wait_until_committed_to_end(&brokers, &names).await;
    drop(restarted);
    assert_exactly_once(&stored(dir.path()).await, &want);
}
