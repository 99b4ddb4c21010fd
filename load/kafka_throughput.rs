//! Throughput on the real broker (`scripts/services up kafka`). Run:
//!
//!     cargo run --release --example kafka_throughput -- [events]
//!
//! 1. produces `events` Samsara messages (1 % poison) and 15 % as many EDI
//!    interchanges to fresh topics (6 and 3 partitions) with `produce`;
//! 2. consume only: a consumer group reads both topics to the end and does
//!    nothing else (broker + client ceiling);
//! 3. end to end: the pipeline as `run` assembles it (Kafka source, batches of
//!    100, direct orchestrator, embedded stores in a temporary directory,
//!    poison to the DLQ topic) until the group has committed every partition to
//!    its end offset.

use std::time::{Duration, Instant};

use anyhow::Context;
use apex_ingest::app;
use apex_ingest::config::{Config, SourceKind};
use apex_ingest::kafka::group_watch::GroupWatch;
use apex_ingest::kafka::topics::{self, TopicSpec};
use apex_ingest::metrics::Metrics;
use apex_ingest::model::Format;
use apex_ingest::source::produce::{ProduceSettings, produce};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

fn consumer(brokers: &str, group: &str) -> anyhow::Result<BaseConsumer> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let events: u64 = std::env::args().nth(1).map(|a| a.parse()).transpose()?.unwrap_or(50_000);
    let edi_events = events * 15 / 100;
    let mut config = Config::load(None)?;
    let brokers = config.kafka.brokers.clone();
    let run = format!("{:08x}", rand::random::<u32>());
    let (samsara, edi, dlq) =
        (format!("load.samsara.{run}"), format!("load.edi.{run}"), format!("load.dlq.{run}"));
    topics::apply(
        &config.kafka,
        &[TopicSpec::scratch(&samsara, 6), TopicSpec::scratch(&edi, 3), TopicSpec::scratch(&dlq, 1)],
        Some(1),
    )
    .await?;

    let started = Instant::now();
    for (topic, format, n, seed) in
        [(&samsara, Format::Samsara, events, 1), (&edi, Format::Edi, edi_events, 2)]
    {
        let settings = ProduceSettings {
            topic: topic.clone(),
            format,
            events: n,
            rate: None,
            poison_fraction: 0.01,
            seed,
        };
        produce(&config.kafka, &settings, |_| {}).await?;
    }
    let total = events + edi_events;
    let secs = started.elapsed().as_secs_f64();
    println!("| produce (idempotent, acks=all, lz4) | {total} | {secs:.2} | {:.0} |", total as f64 / secs);

    // Consume only.
    let c = consumer(&brokers, &format!("load-consume-{run}"))?;
    c.subscribe(&[&samsara, &edi])?;
    let started = Instant::now();
    let mut read = 0;
    while read < total {
        if let Some(m) = c.poll(Duration::from_secs(1)) {
            m?;
            read += 1;
        }
        anyhow::ensure!(started.elapsed() < Duration::from_secs(600), "consume-only read {read} of {total}");
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "| consume only (one member, no processing) | {total} | {secs:.2} | {:.0} |",
        total as f64 / secs
    );

    // End to end, embedded stores.
    let dir = tempfile::tempdir()?;
    config.source.kind = SourceKind::Kafka;
    config.stores.data_dir = dir.path().to_path_buf();
    config.metrics.listen = String::new();
    config.kafka.group_id = format!("load-e2e-{run}");
    config.kafka.samsara_topic = samsara.clone();
    config.kafka.edi_topic = edi.clone();
    config.kafka.only_samsara_and_edi();
    config.kafka.dlq_topic = dlq;
    let metrics = Metrics::new();
    let stores = apex_ingest::app::open_stores(&config).await?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let orchestrator = app::direct_over(&config, &stores, metrics.clone(), &shutdown)?;
    let source = app::build_source(&config, metrics.clone())?;
    let started = Instant::now();
    let pipeline = {
        let (config, shutdown, metrics) = (config.clone(), shutdown.clone(), metrics.clone());
        tokio::spawn(async move {
            app::run_pipeline(&config, source, orchestrator, metrics, shutdown, |_| {}).await
        })
    };
    let group = config.kafka.group_id.clone();
    while !metrics.render().contains("apex_kafka_assigned_partitions 9") {
        tokio::time::sleep(Duration::from_millis(20)).await;
        anyhow::ensure!(started.elapsed() < Duration::from_secs(60), "no partitions assigned");
    }
    let joined = started.elapsed().as_secs_f64();
    let watch = GroupWatch::new(&config.kafka, &group)?;
    while watch.progress(&[&samsara, &edi])?.1 != total as i64 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        anyhow::ensure!(started.elapsed() < Duration::from_secs(1800), "end to end did not finish");
    }
    let secs = started.elapsed().as_secs_f64();
    shutdown.cancel();
    let totals = pipeline.await.context("pipeline task")??;
    println!(
        "| end to end (Kafka → batches of 100 → embedded stores, committed to the end) | {total} | {secs:.2} | {:.0} | ({} records, {} dead letters; joined the group after {joined:.2} s; {:.0} events/s after joining)",
        total as f64 / secs,
        totals.records,
        totals.dead_letters,
        total as f64 / (secs - joined)
    );
    Ok(())
}
