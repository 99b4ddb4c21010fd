//! A slow store pauses the partitions, and the lag metric is the real lag.

use apex_ingest::metrics::Metrics;
use apex_ingest::model::Format;
use std::time::Duration;

use crate::members::*;
use crate::support::{self, kafka_brokers};
use crate::world::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_store_pauses_the_partitions_and_the_lag_metric_is_the_real_lag() {
    let brokers = kafka_brokers();
    let _serial = SERIAL.lock().await;
    let names = create_topics(&brokers, 4, 2).await;
    produce_to(&brokers, &names.samsara, Format::Samsara, 2_000, 0.0, 7).await;
    produce_to(&brokers, &names.edi, Format::Edi, 200, 0.0, 8).await;

    let dir = tempfile::tempdir().unwrap();
    let mut config = in_process_config(&names, dir.path());
    config.batch.max_events = 50;
    config.batch.max_wait = Duration::from_millis(500);
    config.batch.max_in_flight = 2;
    let member = HeldMember::start(&config).await;
    let (graph, metrics) = (member.graph.clone(), member.metrics.clone());

    let paused = |m: &Metrics| {
        let series = support::metric_series(&m.render(), "apex_kafka_partition_paused");
        (series.len(), series.iter().map(|(_, v)| v).sum::<i64>())
    };
    wait_until("all six partitions are paused", || paused(&metrics) == (6, 6)).await;
    assert!(metrics.render().contains("apex_batches_in_flight 2"), "paused at max_in_flight");

    // Producers keep writing while the partitions are paused (nothing fetches them).
    produce_to(&brokers, &names.samsara, Format::Samsara, 300, 0.0, 9).await;
    // Held well past the session timeout: the paused member keeps polling and stays in the group.
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert!(!metrics.render().contains("kind=\"revoke\""), "the paused member was not evicted");
    // Nothing is written, so nothing moves: the metric must equal the real lag,
    // new messages on paused partitions included.
    let end = end_offsets(&brokers, &names.inputs());
    let done = committed(&brokers, &names.group, &names.inputs());
    let text = metrics.render();
    for ((topic, partition), high) in &end {
        let real = high - done.get(&(topic.clone(), *partition)).copied().unwrap_or(0);
        let line = format!("apex_kafka_consumer_lag{{partition=\"{partition}\",topic=\"{topic}\"}} {real}");
        assert!(text.contains(&line), "want `{line}` in\n{text}");
    }
    assert!(end.values().sum::<i64>() - done.values().sum::<i64>() > 0, "there is real lag to compare");

    // The store recovers: partitions resume and the group catches up.
    graph.hold(false);
    wait_until_committed_to_end(&brokers, &names).await;
    assert_eq!(paused(&metrics), (6, 0), "resumed");
    wait_until("the lag metric shows zero", || {
        let lags = support::metric_series(&metrics.render(), "apex_kafka_consumer_lag");
        lags.len() == 6 && lags.iter().all(|(_, lag)| *lag == 0)
    })
    .await;
    let totals = member.stop().await;
    assert_eq!(totals.events, 2_500);
}
