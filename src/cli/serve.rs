//! `apex-ingest serve`: the query API until SIGTERM / Ctrl-C.

use std::path::PathBuf;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::app;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::query::QueryStores;
use crate::query::api::{self, QueryApi};

#[derive(clap::Args)]
pub struct ServeArgs {
    /// TOML configuration naming the stores and [serve]; APEX_* variables override it.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Directory of the embedded stores (the demo writes ./apex-demo).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = Config::load(args.config.as_deref())?;
    if let Some(dir) = args.data_dir {
        config.stores.data_dir = dir;
    }
    let addr = config.serve.listen.parse().with_context(|| {
        format!("invalid configuration: serve.listen {:?} is not host:port", config.serve.listen)
    })?;
    let stores = app::open_stores(&config).await?;
    let metrics = Metrics::new();
    let stores = QueryStores::over(&stores, app::build_embedder(&config)?);
    let cache = app::build_answer_cache(&config).await?;
    let query_api = QueryApi::start(&config.serve, stores, cache, metrics)?;
    let shutdown = CancellationToken::new();
    app::cancel_on_signal(shutdown.clone());
    api::serve(query_api, api::bind(addr).await?, shutdown.cancelled_owned()).await
}
