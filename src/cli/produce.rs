//! `apex-ingest produce`: synthetic Samsara or EDI traffic into a Kafka topic.

use std::path::PathBuf;

use anyhow::Context;
use indicatif::ProgressBar;
use tracing::Instrument;

use crate::config::Config;

#[derive(clap::Args)]
pub struct ProduceArgs {
    /// Topic to write to.
    #[arg(long)]
    topic: String,
    /// Number of messages.
    #[arg(long)]
    events: u64,
    /// Messages per second (0 = as fast as the broker takes them).
    #[arg(long, default_value_t = 0)]
    rate: u32,
    /// samsara or edi; by default taken from the topic name.
    #[arg(long, value_parser = ["samsara", "edi"])]
    format: Option<String>,
    /// Share of deliberately invalid messages (0 to 1).
    #[arg(long, default_value_t = 0.0)]
    poison_fraction: f64,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// TOML file for [kafka] brokers; APEX_KAFKA_BROKERS overrides it.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
}

pub async fn produce(args: ProduceArgs) -> anyhow::Result<()> {
    use crate::model::Format;
    use crate::source::produce::{self as producer, ProduceSettings};
    let config = Config::load(args.config.as_deref())?;
    let format = match args.format.as_deref() {
        Some("edi") => Format::Edi,
        Some(_) => Format::Samsara,
        None => producer::format_of_topic(&args.topic).with_context(|| {
            format!(
                "cannot tell the format of topic {:?} from its name; pass --format samsara|edi",
                args.topic
            )
        })?,
    };
    let settings = ProduceSettings {
        topic: args.topic,
        format,
        events: args.events,
        rate: std::num::NonZeroU32::new(args.rate),
        poison_fraction: args.poison_fraction,
        seed: args.seed,
    };
    let bar = ProgressBar::new(args.events);
    // One trace for the run: every message carries it, batches link to it.
    let span = tracing::info_span!("produce", otel.kind = "producer",
        messaging.destination.name = %settings.topic, events = settings.events);
    let report =
        producer::produce(&config.kafka, &settings, |n| bar.set_position(n)).instrument(span).await?;
    bar.finish_and_clear();
    let secs = report.elapsed.as_secs_f64().max(1e-9);
    println!(
        "produced {} {} messages to {} in {secs:.2} s ({:.0} messages/s)",
        report.sent,
        format.as_str(),
        settings.topic,
        report.sent as f64 / secs
    );
    Ok(())
}
