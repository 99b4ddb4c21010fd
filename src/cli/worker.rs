//! `apex-ingest worker`: a Temporal worker over the configured stores: the
//! batch workflows, the query workflow, and the pollers' workflows when
//! `poll.on_temporal`.

use tokio_util::sync::CancellationToken;

use super::serve_metrics;
use crate::app;
use crate::config::Config;
use crate::orchestrate::temporal::worker::Extra;
use crate::poll;
use crate::query::{QueryStores, workflow as query_workflow};

pub async fn worker(config_path: Option<&std::path::Path>) -> anyhow::Result<()> {
    let config = Config::load(config_path)?;
    let metrics = serve_metrics(&config).await?;
    let stores = app::open_stores(&config).await?;
    let shutdown = CancellationToken::new();
    app::cancel_on_signal(shutdown.clone());
    let writer = app::saga_writer(&config, &stores, metrics.clone(), &shutdown)?;
    let pollers = poll::workflow::registrations(&config, &metrics)?;
    let embedder = app::build_embedder(&config)?;
    let queries = query_workflow::registrations(
        QueryStores::over(&stores, embedder.clone()),
        app::build_answer_cache(&config).await?,
        config.serve.cache_ttl,
    );
    let extra: Extra = Box::new(move |options| {
        pollers(options)?;
        queries(options)
    });
    crate::orchestrate::temporal::worker::run_worker(&config, embedder, writer, &metrics, extra, shutdown)
        .await
}
