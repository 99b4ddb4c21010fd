//! `apex-ingest codec`: the Temporal remote codec endpoint for the Web UI and CLI.

use std::path::PathBuf;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::app;
use crate::config::Config;
use crate::orchestrate::temporal::codec_server;

#[derive(clap::Args)]
pub struct CodecArgs {
    /// TOML configuration (temporal.compress_payloads decides what /encode does).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Where /decode and /encode listen.
    #[arg(long, default_value = "127.0.0.1:8081")]
    pub listen: std::net::SocketAddr,
    /// Origins of the Temporal Web UI allowed to call from a browser (CORS);
    /// the dev server `scripts/services` starts serves it at http://127.0.0.1:8233.
    #[arg(long = "ui-origin", default_value = "http://127.0.0.1:8233")]
    pub ui_origins: Vec<String>,
}

pub async fn codec(args: CodecArgs) -> anyhow::Result<()> {
    let config = Config::load(args.config.as_deref())?;
    let router = codec_server::router(&args.ui_origins, config.temporal.compress_payloads)?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen for the codec on {}", args.listen))?;
    tracing::info!(addr = %args.listen, origins = ?args.ui_origins, "serving the Temporal codec");
    let shutdown = CancellationToken::new();
    app::cancel_on_signal(shutdown.clone());
    axum::serve(listener, router).with_graceful_shutdown(shutdown.cancelled_owned()).await?;
    Ok(())
}
