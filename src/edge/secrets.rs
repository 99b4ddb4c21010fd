//! A route's webhook secrets: the variables `secret_env` names, read once at
//! start, and the files `secret_files` names (a mounted Kubernetes Secret),
//! read again every `edge.secret_refresh`. Kubelet swaps a mounted Secret's
//! files when it changes, so a rotated secret is served without a restart;
//! during a rotation the Secret holds the old and the new one (two keys, two
//! files) and a request signed with either is accepted.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};

use super::Edge;
use super::signature::Verifier;
use crate::config::{SecretSource, WebhookConfig};

pub(super) struct RouteSecrets {
    config: WebhookConfig,
    tolerance: Duration,
    from_env: Vec<SecretString>,
    /// The files' contents the verifier was last built with.
    from_files: Mutex<Vec<SecretString>>,
    verifier: RwLock<Arc<Verifier>>,
}

impl RouteSecrets {
    /// Reads the route's variables through `env` and its files; fails on a
    /// missing variable or file, or a secret the scheme cannot use.
    pub fn read(
        name: &str,
        config: &WebhookConfig,
        tolerance: Duration,
        env: &impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Self> {
        let from_env = config
            .secret_env
            .iter()
            .map(|var| {
                env(var).filter(|s| !s.is_empty()).map(SecretString::from).with_context(|| {
                    format!("edge.{name}.secret_env names {var}, which is not set in the environment")
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let from_files = read_files(name, &config.secret_files)?;
        let verifier = build(config, &from_env, &from_files, tolerance).with_context(|| {
            format!("edge.{name}: a secret named by secret_env or secret_files is unusable")
        })?;
        Ok(RouteSecrets {
            config: config.clone(),
            tolerance,
            from_env,
            from_files: Mutex::new(from_files),
            verifier: RwLock::new(Arc::new(verifier)),
        })
    }

    pub fn has_files(&self) -> bool {
        !self.config.secret_files.is_empty()
    }

    pub fn verifier(&self) -> Arc<Verifier> {
        self.verifier.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Reads the files again: `Ok(true)` when they changed and the verifier
    /// now uses them; an unreadable file or unusable secret keeps the last ones.
    fn reload(&self, name: &str) -> anyhow::Result<bool> {
        let files = read_files(name, &self.config.secret_files)?;
        let mut last = self.from_files.lock().unwrap_or_else(|p| p.into_inner());
        let same = files.len() == last.len()
            && files.iter().zip(last.iter()).all(|(a, b)| a.expose_secret() == b.expose_secret());
        if same {
            return Ok(false);
        }
        let verifier = build(&self.config, &self.from_env, &files, self.tolerance)
            .with_context(|| format!("edge.{name}: a secret of secret_files is unusable"))?;
        *self.verifier.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(verifier);
        *last = files;
        Ok(true)
    }
}

fn read_files(name: &str, files: &[PathBuf]) -> anyhow::Result<Vec<SecretString>> {
    let key = format!("edge.{name}.secret_files");
    files.iter().map(|path| SecretSource::File(path.clone()).read(&key)?.context("no file named")).collect()
}

fn build(
    config: &WebhookConfig,
    from_env: &[SecretString],
    from_files: &[SecretString],
    tolerance: Duration,
) -> anyhow::Result<Verifier> {
    let all: Vec<String> = from_env.iter().chain(from_files).map(|s| s.expose_secret().to_owned()).collect();
    Verifier::new(config, &all, tolerance)
}

/// Every `every`, reads the secret files of each route of `edge` again, for
/// as long as the edge lives; counts each reload by outcome.
pub(super) async fn refresh(edge: Weak<Edge>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(edge) = edge.upgrade() else { return };
        for route in edge.routes.values().filter(|r| r.secrets.has_files()) {
            match route.secrets.reload(route.name) {
                Ok(false) => {}
                Ok(true) => {
                    tracing::info!(provider = route.name, "webhook secrets reloaded from their files");
                    edge.metrics.edge.secret_reload(route.name, "ok");
                }
                Err(e) => {
                    tracing::warn!(
                        provider = route.name,
                        error = format!("{e:#}"),
                        "webhook secrets not reloaded; the last ones stay"
                    );
                    edge.metrics.edge.secret_reload(route.name, "failed");
                }
            }
        }
    }
}
