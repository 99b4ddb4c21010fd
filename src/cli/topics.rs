//! `apex-ingest topics`: topics as code (`topics/topics.toml`) applied and listed.

use std::path::PathBuf;

use clap::Subcommand;

use crate::config::Config;

#[derive(Subcommand)]
pub enum TopicsAction {
    /// Creates missing topics, raises partition counts and sets retention and
    /// cleanup policy; prints what changed and any drift it cannot fix.
    Apply {
        /// Topic definitions.
        #[arg(long, default_value = "topics/topics.toml")]
        file: PathBuf,
        /// Use this replication factor for every topic instead of the file's
        /// (1 on a single-broker development cluster).
        #[arg(long, value_parser = clap::value_parser!(i32).range(1..))]
        replication_factor: Option<i32>,
    },
    /// Lists the cluster's topics with partition counts and replication.
    List,
    /// Prints the topics as Kubernetes resources of a topic operator, for
    /// clusters where topics are managed in Kubernetes (needs no broker):
    /// `topics render --format strimzi > deploy/strimzi/kafka-topics.yaml`.
    Render {
        /// Topic definitions.
        #[arg(long, default_value = "topics/topics.toml")]
        file: PathBuf,
        #[arg(long, value_enum, default_value = "strimzi")]
        format: RenderFormat,
        /// The Strimzi `Kafka` cluster the topics belong to (the `strimzi.io/cluster` label).
        #[arg(long, default_value = "apex-kafka")]
        cluster: String,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum RenderFormat {
    /// `KafkaTopic` resources (kafka.strimzi.io/v1beta2) for the Strimzi Topic Operator.
    Strimzi,
}

pub async fn topics(config: Option<&std::path::Path>, action: TopicsAction) -> anyhow::Result<()> {
    use crate::kafka::topics;
    // Rendering needs no broker, so no configuration either.
    let kafka = || Config::load(config).map(|c| c.kafka);
    match action {
        TopicsAction::Render { file, format: RenderFormat::Strimzi, cluster } => {
            let specs = topics::load(&file)?;
            print!("{}", topics::render_strimzi(&specs, &cluster, &file.display().to_string())?);
        }
        TopicsAction::Apply { file, replication_factor } => {
            let specs = topics::load(&file)?;
            let reports = topics::apply(&kafka()?, &specs, replication_factor).await?;
            for r in &reports {
                println!("{r}");
            }
            let drift = reports
                .iter()
                .flat_map(|r| &r.changes)
                .filter(|c| matches!(c, topics::Change::Drift(_)))
                .count();
            anyhow::ensure!(drift == 0, "{drift} difference(s) apply cannot fix; see DRIFT above");
        }
        TopicsAction::List => {
            let list = topics::list(&kafka()?)?;
            println!("{:<40} {:>10} {:>11}", "topic", "partitions", "replication");
            for t in &list {
                println!("{:<40} {:>10} {:>11}", t.name, t.partitions, t.replication);
            }
        }
    }
    Ok(())
}
