//! Topics as code: the definitions in `topics/topics.toml`, applied to a cluster
//! with rdkafka's AdminClient. `apply` creates what is missing, raises partition
//! counts and sets the managed configs; what it cannot change (fewer partitions,
//! another replication factor) it reports as drift instead of hiding it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use figment::providers::{Format as _, Toml};
use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, NewPartitions, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::metadata::Metadata;
use serde::Deserialize;

use super::{ADMIN_TIMEOUT, check_connection, client_config};
use crate::config::KafkaConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CleanupPolicy {
    Delete,
    Compact,
}

impl CleanupPolicy {
    fn as_str(self) -> &'static str {
        match self {
            CleanupPolicy::Delete => "delete",
            CleanupPolicy::Compact => "compact",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i32,
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    pub cleanup_policy: CleanupPolicy,
    /// Where this topic's poison records go (a topic defined in the same file).
    #[serde(default)]
    pub dlq: Option<String>,
}

impl TopicSpec {
    /// A short-lived topic for load runs: one replica, kept an hour, deleted by age.
    pub fn scratch(name: &str, partitions: i32) -> Self {
        TopicSpec {
            name: name.into(),
            partitions,
            replication_factor: 1,
            retention: Duration::from_secs(3600),
            cleanup_policy: CleanupPolicy::Delete,
            dlq: None,
        }
    }

    /// The topic configs `apply` manages, as the broker spells them.
    fn configs(&self, replication: i32) -> BTreeMap<&'static str, String> {
        BTreeMap::from([
            ("retention.ms", self.retention.as_millis().to_string()),
            ("cleanup.policy", self.cleanup_policy.as_str().to_owned()),
            // Two in-sync replicas where there are three; one on a one-broker cluster.
            ("min.insync.replicas", (replication - 1).max(1).to_string()),
        ])
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TopicsFile {
    topic: Vec<TopicSpec>,
}

/// Reads and checks a topics file.
pub fn load(path: &Path) -> anyhow::Result<Vec<TopicSpec>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let file: TopicsFile = figment::Figment::from(Toml::string(&text))
        .extract()
        .with_context(|| format!("parsing {}", path.display()))?;
    check(&file.topic).with_context(|| format!("checking {}", path.display()))?;
    Ok(file.topic)
}

fn check(specs: &[TopicSpec]) -> anyhow::Result<()> {
    let mut names = BTreeSet::new();
    for s in specs {
        ensure!(
            !s.name.is_empty()
                && s.name.len() <= 249
                && s.name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)),
            "topic name {:?} is not a valid Kafka topic name",
            s.name
        );
        ensure!(names.insert(s.name.as_str()), "topic {} is defined twice", s.name);
        ensure!(s.partitions >= 1, "topic {}: partitions must be at least 1", s.name);
        ensure!(s.replication_factor >= 1, "topic {}: replication_factor must be at least 1", s.name);
    }
    for s in specs {
        if let Some(dlq) = &s.dlq {
            ensure!(names.contains(dlq.as_str()), "topic {}: dlq {dlq} is not defined in this file", s.name);
        }
    }
    Ok(())
}

/// The topics as Strimzi `KafkaTopic` resources (`kafka.strimzi.io/v1beta2`) of
/// the Kafka cluster `cluster`, for clusters whose topics the Strimzi Topic
/// Operator manages: the same partitions, replicas and configs `apply` sets.
pub fn render_strimzi(specs: &[TopicSpec], cluster: &str, source: &str) -> anyhow::Result<String> {
    let mut out = format!(
        "# Rendered from {source} by `apex-ingest topics render --format strimzi --cluster {cluster}`.\n\
         # Do not edit: change {source} and render again (tests/deploy/monitoring.rs checks they agree).\n"
    );
    let mut names = BTreeSet::new();
    for s in specs {
        // A resource name is a DNS subdomain; the Kafka name goes in spec.topicName.
        let resource = s.name.to_ascii_lowercase().replace('_', "-");
        ensure!(names.insert(resource.clone()), "topics {} and another map to one resource name", s.name);
        let q = |v: &str| serde_json::to_string(v).expect("a string serializes");
        out.push_str(&format!(
            "---\napiVersion: kafka.strimzi.io/v1beta2\nkind: KafkaTopic\nmetadata:\n  name: {}\n  labels:\n    \
             strimzi.io/cluster: {}\nspec:\n  topicName: {}\n  partitions: {}\n  replicas: {}\n  config:\n",
            q(&resource),
            q(cluster),
            q(&s.name),
            s.partitions,
            s.replication_factor
        ));
        for (key, value) in s.configs(s.replication_factor) {
            out.push_str(&format!("    {key}: {}\n", q(&value)));
        }
    }
    Ok(out)
}

/// One thing `apply` did, or found it could not do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Created {
        partitions: i32,
        replication: i32,
    },
    PartitionsRaised {
        from: i32,
        to: i32,
    },
    ConfigSet {
        key: String,
        from: Option<String>,
        to: String,
    },
    /// A difference `apply` does not change (Kafka cannot shrink partitions;
    /// replication changes need a reassignment).
    Drift(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicReport {
    pub name: String,
    /// Empty: the topic already matched its definition.
    pub changes: Vec<Change>,
}

impl std::fmt::Display for TopicReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.changes.is_empty() {
            return write!(f, "unchanged {}", self.name);
        }
        let parts: Vec<String> = self
            .changes
            .iter()
            .map(|c| match c {
                Change::Created { partitions, replication } => {
                    format!("created (partitions={partitions} replication={replication})")
                }
                Change::PartitionsRaised { from, to } => format!("partitions {from} -> {to}"),
                Change::ConfigSet { key, from, to } => {
                    format!("{key} {} -> {to}", from.as_deref().unwrap_or("(unset)"))
                }
                Change::Drift(what) => format!("DRIFT {what}"),
            })
            .collect();
        write!(f, "changed   {}: {}", self.name, parts.join("; "))
    }
}

/// A topic as the cluster holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    pub name: String,
    pub partitions: i32,
    pub replication: i32,
}

fn admin(kafka: &KafkaConfig) -> anyhow::Result<AdminClient<DefaultClientContext>> {
    check_connection(kafka, ADMIN_TIMEOUT)?;
    client_config(kafka)?
        .create()
        .with_context(|| format!("creating a Kafka admin client for {}", kafka.brokers))
}

fn cluster_metadata(admin: &AdminClient<DefaultClientContext>) -> anyhow::Result<Metadata> {
    admin
        .inner()
        .fetch_metadata(None, ADMIN_TIMEOUT)
        .context("fetching cluster metadata (is Kafka running? `scripts/services up kafka`)")
}

/// Whether every partition of the topic has a leader. A topic just created
/// reports "leader not available" (or no such topic) for a moment.
fn has_leaders(md: &Metadata, name: &str) -> bool {
    md.topics().iter().any(|t| {
        t.name() == name
            && t.error().is_none()
            && !t.partitions().is_empty()
            && t.partitions().iter().all(|p| p.leader() >= 0)
    })
}

/// Waits until every partition of `names` has a leader, so that what `apply`
/// reports created can be produced to, and is listed by the next `apply`
/// (which otherwise tried to create it again and failed on "already exists").
async fn wait_for_leaders(admin: &AdminClient<DefaultClientContext>, names: &[&str]) -> anyhow::Result<()> {
    let deadline = Instant::now() + ADMIN_TIMEOUT;
    loop {
        let md = cluster_metadata(admin)?;
        let waiting: Vec<&str> = names.iter().copied().filter(|n| !has_leaders(&md, n)).collect();
        if waiting.is_empty() {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "topics {waiting:?} were created but still have partitions without a leader after {ADMIN_TIMEOUT:?} \
             (check the brokers' logs)"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Topics on the cluster and its broker count.
fn describe_cluster(admin: &AdminClient<DefaultClientContext>) -> anyhow::Result<(Vec<TopicInfo>, usize)> {
    let md = cluster_metadata(admin)?;
    let topics = md
        .topics()
        .iter()
        .filter(|t| t.error().is_none())
        .map(|t| TopicInfo {
            name: t.name().to_owned(),
            partitions: t.partitions().len() as i32,
            replication: t.partitions().first().map_or(0, |p| p.replicas().len() as i32),
        })
        .collect();
    Ok((topics, md.brokers().len()))
}

/// Lists the cluster's topics (internal `__` topics left out), by name.
pub fn list(kafka: &KafkaConfig) -> anyhow::Result<Vec<TopicInfo>> {
    let (mut topics, _) = describe_cluster(&admin(kafka)?)?;
    topics.retain(|t| !t.name.starts_with("__"));
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(topics)
}

/// Brings the cluster in line with `specs`. `replication` overrides every
/// spec's replication factor (a one-broker development cluster needs 1).
/// Returns once every topic it created has a leader on each partition.
pub async fn apply(
    kafka: &KafkaConfig,
    specs: &[TopicSpec],
    replication: Option<i32>,
) -> anyhow::Result<Vec<TopicReport>> {
    check(specs)?;
    let admin = admin(kafka)?;
    let (existing, broker_count) = describe_cluster(&admin)?;
    let existing: BTreeMap<&str, &TopicInfo> = existing.iter().map(|t| (t.name.as_str(), t)).collect();
    let opts = AdminOptions::new().operation_timeout(Some(ADMIN_TIMEOUT));
    let mut reports = Vec::new();
    let mut created = Vec::new();
    for spec in specs {
        let rf = replication.unwrap_or(spec.replication_factor);
        if rf as usize > broker_count {
            bail!(
                "topic {} wants replication factor {rf} but the cluster has {broker_count} broker(s); \
                 on a development cluster run `apex-ingest topics apply --replication-factor 1`",
                spec.name
            );
        }
        let configs = spec.configs(rf);
        let mut changes = Vec::new();
        match existing.get(spec.name.as_str()) {
            None => {
                let mut topic = NewTopic::new(&spec.name, spec.partitions, TopicReplication::Fixed(rf));
                for (k, v) in &configs {
                    topic = topic.set(k, v);
                }
                let results = admin.create_topics([&topic], &opts).await?;
                for r in results {
                    r.map_err(|(name, code)| anyhow::anyhow!("creating topic {name}: {code}"))?;
                }
                created.push(spec.name.as_str());
                changes.push(Change::Created { partitions: spec.partitions, replication: rf });
            }
            Some(have) => {
                if spec.partitions > have.partitions {
                    let results = admin
                        .create_partitions([&NewPartitions::new(&spec.name, spec.partitions as usize)], &opts)
                        .await?;
                    for r in results {
                        r.map_err(|(name, code)| anyhow::anyhow!("adding partitions to {name}: {code}"))?;
                    }
                    changes.push(Change::PartitionsRaised { from: have.partitions, to: spec.partitions });
                } else if spec.partitions < have.partitions {
                    changes.push(Change::Drift(format!(
                        "has {} partitions, definition says {} (Kafka cannot remove partitions)",
                        have.partitions, spec.partitions
                    )));
                }
                if have.replication != rf {
                    changes.push(Change::Drift(format!(
                        "replication factor is {}, definition says {rf} (needs a partition reassignment)",
                        have.replication
                    )));
                }
                changes.extend(align_configs(&admin, &opts, &spec.name, &configs).await?);
            }
        }
        reports.push(TopicReport { name: spec.name.clone(), changes });
    }
    wait_for_leaders(&admin, &created).await?;
    Ok(reports)
}

/// Sets the managed configs that differ. AlterConfigs replaces a topic's whole
/// config, so every managed key is sent; keys this file does not manage return
/// to the broker default (set them here if they matter).
async fn align_configs(
    admin: &AdminClient<DefaultClientContext>,
    opts: &AdminOptions,
    topic: &str,
    wanted: &BTreeMap<&'static str, String>,
) -> anyhow::Result<Vec<Change>> {
    let described = admin.describe_configs([&ResourceSpecifier::Topic(topic)], opts).await?;
    let resource = described
        .into_iter()
        .next()
        .context("describe_configs returned nothing")?
        .map_err(|code| anyhow::anyhow!("describing configs of {topic}: {code}"))?;
    let current = resource.entry_map();
    let changes: Vec<Change> = wanted
        .iter()
        .filter_map(|(key, to)| {
            let from = current.get(key).and_then(|e| e.value.clone());
            (from.as_deref() != Some(to.as_str())).then(|| Change::ConfigSet {
                key: (*key).to_owned(),
                from,
                to: to.clone(),
            })
        })
        .collect();
    if !changes.is_empty() {
        let mut alter = AlterConfig::new(ResourceSpecifier::Topic(topic));
        for (k, v) in wanted {
            alter = alter.set(k, v);
        }
        for r in admin.alter_configs([&alter], opts).await? {
            r.map_err(|(_, code)| anyhow::anyhow!("altering configs of {topic}: {code}"))?;
        }
    }
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_repository_topics_file_is_valid_and_names_the_pipeline_topics() {
        let specs = load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("topics/topics.toml")).unwrap();
        let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        for t in [crate::config::SAMSARA_TOPIC, crate::config::EDI_TOPIC, "ingest.dlq.v1"] {
            assert!(names.contains(&t), "{t} missing from topics.toml");
        }
        assert!(names.iter().any(|n| n.starts_with("webhooks.")));
        assert!(names.iter().any(|n| n.starts_with("poll.")));
        let samsara = specs.iter().find(|s| s.name == crate::config::SAMSARA_TOPIC).unwrap();
        assert_eq!(samsara.dlq.as_deref(), Some("ingest.dlq.v1"));
        assert_eq!(samsara.configs(3)["min.insync.replicas"], "2");
        assert_eq!(samsara.configs(1)["min.insync.replicas"], "1");
    }

    #[test]
    fn bad_definitions_are_refused_with_the_topic_named() {
        let spec = |name: &str, partitions, dlq: Option<&str>| TopicSpec {
            name: name.into(),
            partitions,
            replication_factor: 1,
            retention: Duration::from_secs(60),
            cleanup_policy: CleanupPolicy::Delete,
            dlq: dlq.map(Into::into),
        };
        let err = check(&[spec("a", 0, None)]).unwrap_err().to_string();
        assert!(err.contains("topic a: partitions"), "{err}");
        let err = check(&[spec("a", 1, Some("nowhere"))]).unwrap_err().to_string();
        assert!(err.contains("dlq nowhere"), "{err}");
        let err = check(&[spec("a", 1, None), spec("a", 2, None)]).unwrap_err().to_string();
        assert!(err.contains("defined twice"), "{err}");
        let err = check(&[spec("bad name", 1, None)]).unwrap_err().to_string();
        assert!(err.contains("not a valid"), "{err}");
    }
}
