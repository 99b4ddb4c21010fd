//! Which version of the Worker Deployment new workflows start on
//! (`apex-ingest worker rollout`): the server routes each new workflow to the
//! current version, or to the ramping one for its share; a pinned workflow
//! ends on the version it started on. Every change is made with the conflict
//! token of the state it was decided on, so two operators cannot undo each
//! other unseen.

use anyhow::{Context, bail};
use temporalio_client::Client;
use temporalio_common::protos::temporal::api::deployment::v1::WorkerDeploymentInfo;
use temporalio_common::protos::temporal::api::enums::v1::WorkerDeploymentVersionStatus;
use temporalio_common::protos::temporal::api::workflowservice::v1::{
    DescribeWorkerDeploymentRequest, SetWorkerDeploymentCurrentVersionRequest,
    SetWorkerDeploymentRampingVersionRequest,
};

use crate::config::TemporalConfig;

const IDENTITY: &str = "apex-ingest worker rollout";

/// One version the deployment has seen, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct Version {
    pub build_id: String,
    /// `current`, `ramping`, `draining`, `drained` or `inactive`.
    pub status: String,
    /// When it last stopped being current (Unix seconds); 0 if never current.
    pub last_current: i64,
}

/// Where new workflows go now.
#[derive(Debug, Clone, PartialEq)]
pub struct Routing {
    pub deployment: String,
    /// `None`: the unversioned workers take them.
    pub current: Option<String>,
    pub ramping: Option<(String, f32)>,
    pub versions: Vec<Version>,
    conflict_token: Vec<u8>,
}

fn deployment_name(t: &TemporalConfig) -> anyhow::Result<&str> {
    if t.deployment_name.is_empty() {
        bail!("temporal.deployment_name is empty: name the Worker Deployment the workers join");
    }
    Ok(&t.deployment_name)
}

/// A server refusal with what to do about it.
fn explain(status: tonic::Status, t: &TemporalConfig, build_id: &str) -> anyhow::Error {
    let hint = match status.code() {
        tonic::Code::NotFound => format!(
            "no Worker Deployment {:?} (or version {build_id:?}) on namespace {:?}: start a worker with \
             temporal.deployment_name = {:?} and temporal.build_id = {build_id:?} first",
            t.deployment_name, t.namespace, t.deployment_name
        ),
        tonic::Code::FailedPrecondition => format!(
            "the server refused ({}): are workers of version {build_id:?} running and polling {:?}?",
            status.message(),
            t.task_queue
        ),
        tonic::Code::Aborted => {
            "the deployment changed meanwhile: read `worker rollout status` and decide again".into()
        }
        _ => format!("{}: {}", status.code(), status.message()),
    };
    anyhow::anyhow!(hint)
}

fn routing(deployment: &str, info: WorkerDeploymentInfo, conflict_token: Vec<u8>) -> Routing {
    let config = info.routing_config.unwrap_or_default();
    let mut versions: Vec<Version> = info
        .version_summaries
        .into_iter()
        .map(|v| Version {
            build_id: v.deployment_version.map(|d| d.build_id).unwrap_or_default(),
            status: WorkerDeploymentVersionStatus::try_from(v.status)
                .map(|s| {
                    s.as_str_name().trim_start_matches("WORKER_DEPLOYMENT_VERSION_STATUS_").to_lowercase()
                })
                .unwrap_or_default(),
            last_current: v.last_current_time.map_or(0, |t| t.seconds),
        })
        .collect();
    versions.sort_by(|a, b| b.last_current.cmp(&a.last_current).then_with(|| a.build_id.cmp(&b.build_id)));
    let ramping = config
        .ramping_deployment_version
        .filter(|v| !v.build_id.is_empty())
        .map(|v| (v.build_id, config.ramping_version_percentage));
    Routing {
        deployment: deployment.to_owned(),
        current: config.current_deployment_version.map(|v| v.build_id).filter(|b| !b.is_empty()),
        ramping,
        versions,
        conflict_token,
    }
}

pub async fn status(client: &Client, t: &TemporalConfig) -> anyhow::Result<Routing> {
    let deployment = deployment_name(t)?;
    let request = DescribeWorkerDeploymentRequest {
        namespace: t.namespace.clone(),
        deployment_name: deployment.to_owned(),
    };
    let answer = client
        .connection()
        .workflow_service()
        .describe_worker_deployment(tonic::Request::new(request))
        .await
        .map_err(|e| explain(e, t, ""))?
        .into_inner();
    let info = answer.worker_deployment_info.context("the server described no deployment")?;
    Ok(routing(deployment, info, answer.conflict_token))
}

/// Makes `build_id` current (`ramp` None), or the ramping version at that share.
async fn route(
    client: &Client,
    t: &TemporalConfig,
    conflict_token: Vec<u8>,
    build_id: &str,
    ramp: Option<f32>,
) -> anyhow::Result<()> {
    let (namespace, deployment_name) = (t.namespace.clone(), deployment_name(t)?.to_owned());
    let (build_id_owned, identity) = (build_id.to_owned(), IDENTITY.to_owned());
    let mut service = client.connection().workflow_service();
    let sent = match ramp {
        None => {
            let request = SetWorkerDeploymentCurrentVersionRequest {
                namespace,
                deployment_name,
                build_id: build_id_owned,
                conflict_token,
                identity,
                ..Default::default()
            };
            service.set_worker_deployment_current_version(tonic::Request::new(request)).await.map(drop)
        }
        Some(percentage) => {
            let request = SetWorkerDeploymentRampingVersionRequest {
                namespace,
                deployment_name,
                build_id: build_id_owned,
                percentage,
                conflict_token,
                identity,
                ..Default::default()
            };
            service.set_worker_deployment_ramping_version(tonic::Request::new(request)).await.map(drop)
        }
    };
    sent.map_err(|e| explain(e, t, build_id))
}

/// Sends `percent` of new workflows to `build_id` (its workers must be polling).
pub async fn ramp(
    client: &Client,
    t: &TemporalConfig,
    build_id: &str,
    percent: f32,
) -> anyhow::Result<Routing> {
    if !(percent > 0.0 && percent < 100.0) {
        bail!("a ramp is between 0 and 100 % exclusive, not {percent}: `promote` makes a version current");
    }
    let now = status(client, t).await?;
    if now.current.as_deref() == Some(build_id) {
        bail!("{build_id} is already current");
    }
    route(client, t, now.conflict_token, build_id, Some(percent)).await?;
    status(client, t).await
}

/// Makes `build_id` current: every new workflow starts on it (a ramp of it ends).
pub async fn promote(client: &Client, t: &TemporalConfig, build_id: &str) -> anyhow::Result<Routing> {
    let now = status(client, t).await?;
    route(client, t, now.conflict_token, build_id, None).await?;
    status(client, t).await
}

/// One step back: a ramp in progress is stopped (new workflows all go to the
/// current version); else the version current before this one is made current again.
pub async fn rollback(client: &Client, t: &TemporalConfig) -> anyhow::Result<Routing> {
    let now = status(client, t).await?;
    if now.ramping.is_some() {
        route(client, t, now.conflict_token, "", Some(0.0)).await?;
        return status(client, t).await;
    }
    let Some(previous) = now
        .versions
        .iter()
        .find(|v| v.last_current > 0 && Some(&v.build_id) != now.current.as_ref())
        .map(|v| v.build_id.clone())
    else {
        let current = now.current.as_deref().unwrap_or("the unversioned workers");
        bail!("no version of {} was current before {current}: nothing to roll back to", now.deployment);
    };
    route(client, t, now.conflict_token, &previous, None).await?;
    status(client, t).await
}

impl std::fmt::Display for Routing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "deployment {}", self.deployment)?;
        writeln!(f, "current    {}", self.current.as_deref().unwrap_or("(unversioned workers)"))?;
        match &self.ramping {
            Some((build_id, percent)) => writeln!(f, "ramping    {build_id} at {percent}%")?,
            None => writeln!(f, "ramping    none")?,
        }
        for v in &self.versions {
            writeln!(f, "version    {:<24} {}", v.build_id, v.status)?;
        }
        Ok(())
    }
}
