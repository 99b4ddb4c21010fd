//! `apex-ingest edge`: the webhook edge until SIGTERM / Ctrl-C.

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::app;
use crate::config::Config;
use crate::edge::{self, Edge};
use crate::metrics::Metrics;

pub async fn edge(config_path: Option<&std::path::Path>) -> anyhow::Result<()> {
    let config = Config::load(config_path)?;
    let addr = config.edge.listen.parse().with_context(|| {
        format!("invalid configuration: edge.listen {:?} is not host:port", config.edge.listen)
    })?;
    let edge = Edge::start(&config, Metrics::new(), |name| std::env::var(name).ok()).await?;
    let shutdown = CancellationToken::new();
    app::cancel_on_signal(shutdown.clone());
    edge::serve(edge, edge::bind(addr).await?, shutdown.cancelled_owned()).await
}
