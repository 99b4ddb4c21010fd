//! Criterion benchmarks of the per-event hot paths: parse (Samsara, EDI),
//! extract, embed, the batcher, and an exact vector search.
//! Run: `cargo bench --bench hot_paths`; figures go to load/RESULTS.md.

use std::time::Duration;

use apex_ingest::batch::Batcher;
use apex_ingest::model::{Format, Origin, RawEvent};
use apex_ingest::pipeline::embed::HashingEmbedder;
use apex_ingest::pipeline::extract::extract;
use apex_ingest::pipeline::parse::parse;
use apex_ingest::source::generator::{Fleet, GeneratorSettings};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use tokio::sync::mpsc;

fn sample(format: Format, name: &str) -> RawEvent {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/samples").join(name);
    let payload = std::fs::read(path).expect("sample file");
    RawEvent::new(format, Origin { topic: "bench".into(), partition: 0, offset: 0 }, None, payload)
}

fn traffic(n: usize) -> Vec<RawEvent> {
    Fleet::new(GeneratorSettings::clean(1)).take(n).collect()
}

fn parse_benches(c: &mut Criterion) {
    let location = sample(Format::Samsara, "samsara/vehicle_location.json");
    let edi = sample(Format::Edi, "edi/214_two_shipments.x12");
    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Elements(1));
    g.bench_function("samsara_vehicle_location", |b| b.iter(|| parse(&location).expect("valid")));
    g.bench_function("edi_214_two_transactions", |b| b.iter(|| parse(&edi).expect("valid")));
    g.finish();
}

fn extract_and_embed_benches(c: &mut Criterion) {
    let records: Vec<_> = traffic(1000).iter().flat_map(|e| parse(e).expect("valid")).collect();
    let summaries: Vec<String> = records.iter().map(|r| r.summary()).collect();
    let embedder = HashingEmbedder::new(384);
    let mut g = c.benchmark_group("per_record");
    g.throughput(Throughput::Elements(records.len() as u64));
    g.bench_function("extract_1000_events", |b| {
        b.iter(|| records.iter().zip(&summaries).map(|(r, s)| extract(r, s).relations.len()).sum::<usize>())
    });
    g.bench_function("embed_hashing_384", |b| {
        b.iter(|| summaries.iter().map(|s| embedder.embed_one(s)[0]).sum::<f32>())
    });
    g.finish();
}

fn batcher_bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let events = traffic(10_000);
    let mut g = c.benchmark_group("batcher");
    g.throughput(Throughput::Elements(events.len() as u64));
    g.bench_function("10k_events_into_batches_of_100", |b| {
        b.to_async(&rt).iter_batched(
            || events.clone(),
            |events| async move {
                let (in_tx, in_rx) = mpsc::channel(1000);
                let (out_tx, mut out_rx) = mpsc::channel(16);
                let batcher = Batcher { max_events: 100, max_wait: Duration::from_secs(30) };
                tokio::spawn(batcher.run(in_rx, out_tx));
                tokio::spawn(async move {
                    for e in events {
                        in_tx.send(e).await.expect("batcher alive");
                    }
                });
                let mut n = 0;
                while let Some(b) = out_rx.recv().await {
                    n += b.events.len();
                }
                n
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, parse_benches, extract_and_embed_benches, batcher_bench);
criterion_main!(benches);
