//! What each embedder costs, side by side in one run, over the record
//! summaries of the generator's traffic:
//!
//!     scripts/model && cargo run --release --example embed_rate -- [--events 5000]
//!         [--skip-kinds VehicleLocation,VehicleStats]
//!
//! Prints texts/s of the hashing and MiniLM embedders, and what that makes of
//! a 100-event batch under the embedding policy (`--skip-kinds`).

use std::time::Instant;

use apex_ingest::pipeline::embed::{EmbedPolicy, Embedder, HashingEmbedder, MiniLmEmbedder};
use apex_ingest::pipeline::{parse_events, process_records};
use apex_ingest::source::generator::{Fleet, GeneratorSettings};
use clap::Parser;

#[derive(Parser)]
struct Args {
    /// Generated events whose records are embedded.
    #[arg(long, default_value_t = 5000)]
    events: usize,
    /// Record kinds the policy does not embed (comma-separated).
    #[arg(long, value_delimiter = ',')]
    skip_kinds: Vec<String>,
    /// The MiniLM model directory (`scripts/model` prints it).
    #[arg(long, default_value = ".state/models/all-MiniLM-L6-v2")]
    model_dir: std::path::PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let events: Vec<_> = Fleet::new(GeneratorSettings::clean(11)).take(args.events).collect();
    let (records, _) = parse_events(&events);
    let policy = EmbedPolicy::except(&args.skip_kinds);
    let embedded = records.iter().filter(|r| policy.embeds(&r.kind)).count();
    println!(
        "{} events → {} records, {} of them embedded under the policy (skip {:?})",
        events.len(),
        records.len(),
        embedded,
        args.skip_kinds
    );
    let minilm = MiniLmEmbedder::load(&args.model_dir)?;
    let embedders: [(&str, &dyn Embedder); 2] =
        [("hashing/384", &HashingEmbedder::new(384)), ("minilm", &minilm)];
    for (name, embedder) in embedders {
        let started = Instant::now();
        let processed = process_records(embedder, &policy, records.clone()).await?;
        let seconds = started.elapsed().as_secs_f64();
        let per_batch_ms = seconds * 1000.0 * 100.0 / events.len() as f64;
        println!(
            "{name:>12}: {:>9.0} texts/s, {:>9.0} events/s through embedding, {per_batch_ms:.1} ms per 100-event batch \
             ({} vectors)",
            embedded as f64 / seconds,
            events.len() as f64 / seconds,
            processed.iter().filter(|p| p.is_embedded()).count()
        );
    }
    Ok(())
}
