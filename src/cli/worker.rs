//! `apex-ingest worker`: a Temporal worker over the configured stores, and
//! the pollers' workflows when `poll.on_temporal`.

use tokio_util::sync::CancellationToken;

use super::serve_metrics;
use crate::app;
use crate::config::Config;
use crate::poll;

pub async fn worker(config_path: Option<&std::path::Path>) -> anyhow::Result<()> {
    let config = Config::load(config_path)?;
    let metrics = serve_metrics(&config).await?;
    let stores = app::open_stores(&config).await?;
    let shutdown = CancellationToken::new();
    app::cancel_on_signal(shutdown.clone());
    let writer = app::saga_writer(&config, &stores, metrics.clone(), &shutdown)?;
    let pollers = poll::workflow::registrations(&config, &metrics)?;
    crate::orchestrate::temporal::worker::run_worker(
        &config,
        app::build_embedder(&config)?,
        writer,
        &metrics,
        pollers,
        shutdown,
    )
    .await
}
