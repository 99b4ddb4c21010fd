//! Partitions move between members: handed over without loss, and a batch still running
//! at the revoke deadline is fenced.

use apex_ingest::metrics::Metrics;
use apex_ingest::model::{Format, Origin, RecordId};
use apex_ingest::source::produce::{ProduceSettings, produce};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::members::*;
use crate::support::{self, kafka_brokers};
use crate::world::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_members_split_the_partitions_and_hand_them_over_without_loss_or_duplicates() {
    let brokers = kafka_brokers();
    let _serial = SERIAL.lock().await;
    let names = create_topics(&brokers, 6, 3).await;
    // Traffic keeps arriving while members join and leave.
    let producing = {
        let (brokers, names) = (brokers.clone(), names.clone());
        tokio::spawn(async move {
            let settings = |topic: &str, format: Format, events: u64, seed: u64| ProduceSettings {
                topic: topic.into(),
                format,
                events,
                rate: std::num::NonZeroU32::new(events as u32 / 20),
                poison_fraction: 0.01,
                seed,
            };
            let samsara = settings(&names.samsara, Format::Samsara, 8_000, 5);
            let edi = settings(&names.edi, Format::Edi, 1_000, 6);
            let kafka = crate::support::kafka_at(&brokers);
            let (a, b) = tokio::join!(produce(&kafka, &samsara, |_| {}), produce(&kafka, &edi, |_| {}));
            (a.unwrap().sent, b.unwrap().sent)
        })
    };
    // Each member writes to its own embedded stores, so a record written by
    // both would show up in both: the strictest check of "no duplicates".
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let batch = "max_events = 50\nmax_wait = \"1s\"\nmax_in_flight = 2";
    let mut a = Member::start(&brokers, &names, dir_a.path(), batch);
    wait_ready(&a).await;
    wait_until("member a has committed something", || committed_total(&brokers, &names) > 0).await;
    let b = Member::start(&brokers, &names, dir_b.path(), batch);
    wait_ready(&b).await;
    // The group settles with the nine partitions split between the two.
    let started = Instant::now();
    loop {
        let (owned_a, owned_b) = (a.owned().await, b.owned().await);
        if !owned_a.is_empty()
            && !owned_b.is_empty()
            && owned_a.len() + owned_b.len() == 9
            && owned_a.is_disjoint(&owned_b)
        {
            break;
        }
        assert!(started.elapsed() < WAIT, "partitions not split: a {owned_a:?}, b {owned_b:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(a.value("apex_kafka_rebalances_total{kind=\"revoke\"}").await >= 1, "a gave partitions up");

    // Member a leaves (SIGTERM) while traffic still flows: b takes everything over.
    assert!(a.terminate().await.success(), "{}", a.logs());
    let started = Instant::now();
    while b.value("apex_kafka_assigned_partitions").await != 9 {
        assert!(started.elapsed() < WAIT, "b did not take over:\n{}", b.logs());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (samsara_sent, edi_sent) = producing.await.unwrap();
    assert_eq!((samsara_sent, edi_sent), (8_000, 1_000));
    wait_until_committed_to_end(&brokers, &names).await;
    drop(b);

    let want = expected(&brokers, &names);
    let (in_a, in_b) = (stored(dir_a.path()).await, stored(dir_b.path()).await);
    let ids = |s: &Stored| -> BTreeSet<RecordId> { s.ids["relational"].iter().cloned().collect() };
    let (ids_a, ids_b) = (ids(&in_a), ids(&in_b));
    assert!(!ids_a.is_empty() && !ids_b.is_empty(), "both members wrote");
    assert_eq!(ids_a.intersection(&ids_b).count(), 0, "a record was written by both members");
    let union: BTreeSet<RecordId> = ids_a.union(&ids_b).cloned().collect();
    assert_eq!(union.len(), want.ids.len(), "records lost");
    assert_eq!(union, want.ids);
    let dead: BTreeSet<Origin> = in_a.dead.iter().chain(&in_b.dead).map(|d| d.origin.clone()).collect();
    assert_eq!(dead.len(), in_a.dead.len() + in_b.dead.len(), "a poison message dead-lettered twice");
    assert_eq!(dead, want.poison);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_still_running_at_the_revoke_deadline_is_fenced_and_never_writes_moved_partitions() {
    let brokers = kafka_brokers();
    let _serial = SERIAL.lock().await;
    let names = create_topics(&brokers, 4, 2).await;
    produce_to(&brokers, &names.samsara, Format::Samsara, 200, 0.0, 17).await;
    produce_to(&brokers, &names.edi, Format::Edi, 40, 0.0, 18).await;
    let want = expected(&brokers, &names);

    // Member a: one batch of every event (so of every partition) held by its
    // graph store past a short revoke deadline.
    let dir_a = tempfile::tempdir().unwrap();
    let mut config = in_process_config(&names, dir_a.path());
    config.batch.max_events = 1_000;
    config.batch.max_wait = Duration::from_secs(3);
    config.batch.max_in_flight = 1;
    config.kafka.revoke_deadline = Duration::from_secs(2);
    let a = HeldMember::start(&config).await;
    wait_until("a holds a batch", || a.metrics.render().contains("apex_batches_in_flight 1")).await;

    // Member b joins: a gives partitions up while its batch is still held.
    let dir_b = tempfile::tempdir().unwrap();
    let b = Member::start(&brokers, &names, dir_b.path(), "max_wait = \"1s\"");
    wait_ready(&b).await;
    let abandoned = |m: &Metrics| support::metric_series(&m.render(), "apex_batches_abandoned_total");
    wait_until("a fenced its held batch", || abandoned(&a.metrics).first().is_some_and(|(_, n)| *n >= 1))
        .await;

    // The store comes back: the fenced batch must not reach it.
    a.graph.hold(false);
    wait_until_committed_to_end(&brokers, &names).await;
    a.stop().await;
    drop(b);
    let (in_a, in_b) = (stored(dir_a.path()).await, stored(dir_b.path()).await);
    let of = |store: &str, s: &Stored| -> BTreeSet<RecordId> { s.ids[store].iter().cloned().collect() };
    // Either member's graph may hold no node (only pings, kept as vehicle state).
    assert!(!of("relational", &in_a).is_empty() && !of("relational", &in_b).is_empty(), "both members wrote");
    let (graph_a, graph_b) = (of("graph", &in_a), of("graph", &in_b));
    assert_eq!(graph_a.intersection(&graph_b).count(), 0, "the fenced batch wrote partitions b owned");
    let union: BTreeSet<RecordId> = graph_a.union(&graph_b).cloned().collect();
    assert_eq!(union, want.of("graph"), "records lost");
}
