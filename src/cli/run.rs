//! `apex-ingest run`: the long-lived service (a consumer-group member with `kind = "kafka"`).

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::serve_metrics;
use crate::app;
use crate::config::Config;
use crate::poll;

pub async fn run(config_path: &std::path::Path) -> anyhow::Result<()> {
    let config = Config::load(Some(config_path))?;
    let metrics = serve_metrics(&config).await?;
    let shutdown = CancellationToken::new();
    app::cancel_on_signal(shutdown.clone());
    let (stores, orchestrator) = app::build_orchestrator(&config, metrics.clone(), &shutdown).await?;
    let source = app::build_source(&config, metrics.clone())?;
    // The pollers run beside the pipeline (unless they run on Temporal):
    // cursors in the relational store, one member polling a source per
    // interval (the coordinator's lock).
    let in_process = if config.poll.on_temporal {
        Vec::new()
    } else {
        poll::configured(&config, stores.relational.clone())?
    };
    for provider in in_process {
        let (cursors, coordinator) = (stores.relational.clone(), stores.coordinator.clone());
        let poller = poll::Poller::new(provider, cursors, coordinator, &config.kafka, metrics.poll.clone())?;
        let (interval, shutdown) = (config.poll.interval, shutdown.clone());
        tokio::spawn(async move { poller.run(interval, shutdown).await });
    }
    tracing::info!(source = ?config.source.kind, data_dir = %config.stores.data_dir.display(), "pipeline starting");
    let t = app::run_pipeline(&config, source, orchestrator, Arc::clone(&metrics), shutdown, |r| {
        tracing::info!(batch = %r.batch_id, events = r.events, records = r.records,
            dead_letters = r.dead_letters, reason = r.close_reason.as_str(), "batch written");
    })
    .await?;
    tracing::info!(
        events = t.events,
        records = t.records,
        dead_letters = t.dead_letters,
        seconds = t.elapsed.as_secs_f64(),
        "pipeline finished"
    );
    Ok(())
}
