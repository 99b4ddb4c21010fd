//! `apex-ingest top`: which components to watch, from the arguments or a config.

use std::path::PathBuf;
use std::time::Duration;

use crate::config::Config;
use crate::top::{self, Target};

#[derive(clap::Args)]
pub struct TopArgs {
    /// Components to watch: `URL`, `host:port` (its /metrics) or `NAME=URL`,
    /// e.g. member-0=http://10.0.0.7:9464/metrics.
    pub targets: Vec<String>,
    /// Also watch what this configuration serves: metrics.listen (a member or
    /// worker), edge.listen when a webhook route is on, serve.listen when a
    /// query token is set.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Time between scrapes; rates cover the last one.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub every: Duration,
}

/// `host:port` or a URL without a path gets `/metrics`; `0.0.0.0` is read on loopback.
fn metrics_url(address: &str) -> String {
    let with_scheme = if address.contains("://") { address.to_owned() } else { format!("http://{address}") };
    let local = with_scheme.replace("://0.0.0.0:", "://127.0.0.1:").replace("://[::]:", "://[::1]:");
    let path_starts = local.find("://").map_or(0, |i| i + 3);
    if local[path_starts..].contains('/') { local } else { format!("{local}/metrics") }
}

fn target(arg: &str) -> Target {
    match arg.split_once('=').filter(|(name, _)| !name.contains('/') && !name.contains(':')) {
        Some((name, url)) => Target { name: name.to_owned(), url: metrics_url(url) },
        None => {
            let url = metrics_url(arg);
            let name = url.split("://").nth(1).and_then(|rest| rest.split('/').next()).unwrap_or(arg);
            Target { name: name.to_owned(), url }
        }
    }
}

fn discovered(config: &Config) -> Vec<Target> {
    let mut out = Vec::new();
    if !config.metrics.listen.is_empty() {
        out.push(Target { name: "member".into(), url: metrics_url(&config.metrics.listen) });
    }
    if config.edge.routes().iter().any(|(_, w)| !w.secret_env.is_empty() || !w.secret_files.is_empty()) {
        out.push(Target { name: "edge".into(), url: metrics_url(&config.edge.listen) });
    }
    if !config.serve.tokens.is_empty() {
        out.push(Target { name: "query-api".into(), url: metrics_url(&config.serve.listen) });
    }
    out
}

pub async fn top(args: TopArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.every >= Duration::from_millis(100), "--every must be at least 100ms");
    let mut targets: Vec<Target> = args.targets.iter().map(|t| target(t)).collect();
    if let Some(path) = &args.config {
        targets.extend(discovered(&Config::load(Some(path))?));
    }
    top::run(targets, args.every).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_read_as_urls_with_names() {
        let t = target("127.0.0.1:9464");
        assert_eq!((t.name.as_str(), t.url.as_str()), ("127.0.0.1:9464", "http://127.0.0.1:9464/metrics"));
        let t = target("edge=http://0.0.0.0:8088");
        assert_eq!((t.name.as_str(), t.url.as_str()), ("edge", "http://127.0.0.1:8088/metrics"));
        let t = target("https://m.example:9464/custom/metrics");
        assert_eq!(t.url, "https://m.example:9464/custom/metrics");
    }

    #[test]
    fn a_config_names_what_it_serves() {
        let mut config = Config::default();
        assert_eq!(discovered(&config).len(), 1, "only metrics.listen when no route or token is on");
        config.edge.samsara.secret_env = vec!["SAMSARA_SECRET".into()];
        let names: Vec<String> = discovered(&config).into_iter().map(|t| t.name).collect();
        assert_eq!(names, ["member", "edge"]);
    }
}
