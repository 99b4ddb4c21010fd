//! `apex-ingest worker`: a Temporal worker over the configured stores.

use tokio_util::sync::CancellationToken;

use super::serve_metrics;
use crate::app;
use crate::config::Config;

pub async fn worker(config_path: Option<&std::path::Path>) -> anyhow::Result<()> {
    let config = Config::load(config_path)?;
    let metrics = serve_metrics(&config).await?;
    let stores = app::open_stores(&config).await?;
    let shutdown = CancellationToken::new();
    app::cancel_on_signal(shutdown.clone());
    let writer = app::saga_writer(&config, &stores, metrics.clone(), &shutdown)?;
    crate::orchestrate::temporal::worker::run_worker(
        &config,
        app::build_embedder(&config)?,
        writer,
        &metrics,
        shutdown,
    )
    .await
}
