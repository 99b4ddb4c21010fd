//! `apex-ingest pollers`: the pollers' workflows on Temporal (`poll.on_temporal`).

use clap::Subcommand;

use crate::config::Config;
use crate::orchestrate::temporal;
use crate::poll::configured_sources;
use crate::poll::workflow::{self, PollingWorkflow};

#[derive(Subcommand)]
pub enum PollersAction {
    /// Starts a PollingWorkflow (id apex-poll-<source>-<task queue>) for each configured
    /// source; a running one is left as it is, so starting again is harmless.
    /// A new one starts from the cursor the in-process poller saved. Needs
    /// poll.on_temporal = true, so `run` members stop polling themselves.
    Start,
    /// Prints each configured source's get_stats answer (one JSON line each).
    Stats,
}

pub async fn pollers(config_path: Option<&std::path::Path>, action: PollersAction) -> anyhow::Result<()> {
    let config = Config::load(config_path)?;
    let sources = configured_sources(&config.poll);
    anyhow::ensure!(
        !sources.is_empty(),
        "no poll source is configured: name a source's credentials in [poll.*]"
    );
    anyhow::ensure!(
        config.poll.on_temporal,
        "poll.on_temporal is false, so `run` members poll in process: set it to true \
         (on members and workers) to run the pollers on Temporal"
    );
    let client = temporal::connect(&config.temporal).await?;
    match action {
        PollersAction::Start => {
            let stores = crate::app::open_stores(&config).await?;
            for (id, run) in
                workflow::start_pollers(&client, &config, &sources, stores.relational.as_ref()).await?
            {
                println!("{id} running (run {run})");
            }
        }
        PollersAction::Stats => {
            for source in sources {
                let id = workflow::workflow_id(&config.temporal.task_queue, source);
                let stats = client
                    .get_workflow_handle::<PollingWorkflow>(id.clone())
                    .query(PollingWorkflow::get_stats, (), Default::default())
                    .await
                    .map_err(|e| anyhow::anyhow!("{id}: {e} (started with `apex-ingest pollers start`?)"))?;
                println!("{}", serde_json::json!({"source": source, "workflow_id": id, "stats": stats}));
            }
        }
    }
    Ok(())
}
