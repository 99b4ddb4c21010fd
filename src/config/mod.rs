//! Configuration: one TOML file plus `APEX_<SECTION>_<KEY>` environment
//! overrides (e.g. `APEX_BATCH_MAX_EVENTS=50`, `APEX_STORES_DATA_DIR=/data`;
//! which variables are keys: `env`).
//! Unknown keys and bad values fail at start with the key named. Plain
//! settings only: nothing here knows the components they configure (`app`
//! wires them). Each file holds one component's sections with their defaults
//! and checks; this one assembles them, loads and reports.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::Path;

use anyhow::{Context, bail};
use figment::Figment;
use figment::providers::{Format as _, Serialized, Toml};
use serde::{Deserialize, Serialize};

mod edge;
mod env;
mod kafka;
mod pipeline;
mod poll;
mod secret;
mod serve;
mod stores;
mod temporal;
mod traces;

pub use edge::*;
pub use kafka::*;
pub use pipeline::*;
pub use poll::*;
pub use secret::*;
pub use serve::*;
pub use stores::*;
pub use temporal::*;
pub use traces::*;

/// The topics of the design (`topics/topics.toml`), the `[kafka]` defaults.
pub const SAMSARA_TOPIC: &str = "samsara.telemetry.v1";
pub const EDI_TOPIC: &str = "edi.carrier.v1";
pub const DLQ_TOPIC: &str = "ingest.dlq.v1";
pub const FRONT_TOPIC: &str = "webhooks.frontapp.v1";
pub const TURVO_TOPIC: &str = "webhooks.turvo.v1";
pub const BANK_TOPIC: &str = "poll.bank.v1";
pub const CRM_TOPIC: &str = "poll.crm.v1";
pub const MARKET_TOPIC: &str = "poll.market.v1";
pub const FINANCIAL_TOPIC: &str = "poll.financial.v1";
pub const GENERIC_WEBHOOK_TOPIC: &str = "webhooks.generic.v1";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub source: SourceConfig,
    pub batch: BatchConfig,
    pub embed: EmbedConfig,
    pub stores: StoresConfig,
    pub graph: GraphConfig,
    pub saga: SagaConfig,
    pub metrics: MetricsConfig,
    pub kafka: KafkaConfig,
    pub postgres: PostgresConfig,
    pub redis: RedisConfig,
    pub neo4j: Neo4jConfig,
    pub temporal: TemporalConfig,
    pub qdrant: QdrantConfig,
    pub edge: EdgeConfig,
    pub poll: PollConfig,
    pub serve: ServeConfig,
    pub traces: TracesConfig,
}

/// Fails with the key and its problem at the first check that does not hold.
fn require(checks: &[(bool, &str, &str)]) -> anyhow::Result<()> {
    for (ok, key, problem) in checks {
        if !ok {
            bail!("invalid configuration: {key} {problem}");
        }
    }
    Ok(())
}

fn explain(e: figment::Error, variables: &[(String, env::Variable)]) -> String {
    // The path ends with the offending key (an unknown field's name included).
    match env::variable_of(&e.path.join("."), variables) {
        Some(name) => format!("{e} (set by the variable {name})"),
        None => e.to_string(),
    }
}

impl Config {
    /// Defaults, then the file (if any), then `APEX_*` variables; then validation.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.is_file() {
                bail!("config file {} does not exist", path.display());
            }
            fig = fig.merge(Toml::file_exact(path));
        }
        let defaults = figment::value::Value::serialize(Config::default())?;
        let sections: Vec<String> = defaults.into_dict().unwrap_or_default().into_keys().collect();
        let variables = env::variables(&sections);
        let ignored: Vec<&str> = variables
            .iter()
            .filter(|(_, v)| matches!(v, env::Variable::ServiceLink | env::Variable::NoSection))
            .map(|(name, _)| name.as_str())
            .collect();
        if !ignored.is_empty() {
            tracing::warn!(
                variables = ?ignored,
                "APEX_* variables ignored: not configuration keys (service links, or no section of that name; docs/configuration.md)"
            );
        }
        let config: Config = fig.merge(env::provider(sections)).extract().map_err(|e| {
            let detail: Vec<String> = e.into_iter().map(|e| explain(e, &variables)).collect();
            anyhow::anyhow!("invalid configuration: {}", detail.join("; "))
        })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> anyhow::Result<()> {
        for section in [
            pipeline::validate,
            stores::validate,
            kafka::validate,
            temporal::validate,
            edge::validate,
            poll::validate,
            serve::validate,
            traces::validate,
        ] {
            section(self)?;
        }
        self.metrics_addr()?;
        Ok(())
    }

    pub fn metrics_addr(&self) -> anyhow::Result<Option<SocketAddr>> {
        if self.metrics.listen.is_empty() {
            return Ok(None);
        }
        self.metrics.listen.parse().map(Some).with_context(|| {
            format!("invalid configuration: metrics.listen {:?} is not host:port", self.metrics.listen)
        })
    }

    pub fn generator_rate(&self) -> Option<NonZeroU32> {
        NonZeroU32::new(self.source.rate)
    }

    /// The generated world's last instant: `source.until`, or now (to the second).
    pub fn generator_until(&self) -> chrono::DateTime<chrono::Utc> {
        self.source.until.parse().unwrap_or_else(|_| {
            let now = chrono::Utc::now();
            chrono::DateTime::from_timestamp(now.timestamp(), 0).unwrap_or(now)
        })
    }
}

#[cfg(test)]
// figment's Jail API returns its large error type; that is its signature, not ours.
#[allow(clippy::result_large_err)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;

    /// figment's Jail isolates the environment and working directory per test.
    #[test]
    fn env_overrides_file_and_errors_name_the_key() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("apex.toml", "[batch]\nmax_events = 50\nmax_wait = \"5s\"\n")?;
            let c = Config::load(Some(Path::new("apex.toml"))).unwrap();
            assert_eq!((c.batch.max_events, c.batch.max_wait), (50, Duration::from_secs(5)));

            jail.set_env("APEX_BATCH_MAX_EVENTS", "7");
            jail.set_env("APEX_STORES_DATA_DIR", "/tmp/x");
            let c = Config::load(Some(Path::new("apex.toml"))).unwrap();
            assert_eq!(c.batch.max_events, 7);
            assert_eq!(c.stores.data_dir, PathBuf::from("/tmp/x"));

            // `__` reaches the nested sections; their other keys keep their defaults.
            jail.set_env("APEX_POLL_PLAID__COUNT", "100");
            jail.set_env("APEX_EDGE_SAMSARA__SECRET_ENV", "[OLD_SECRET, NEW_SECRET]");
            jail.set_env("APEX_POLL_SAMSARA_FEED__TOKEN_ENV", "SAMSARA_API_TOKEN");
            let c = Config::load(Some(Path::new("apex.toml"))).unwrap();
            assert_eq!(c.poll.plaid.count, 100);
            assert_eq!(c.poll.plaid.requests_per_minute, PlaidConfig::default().requests_per_minute);
            assert_eq!(c.edge.samsara.secret_env, ["OLD_SECRET", "NEW_SECRET"]);
            assert_eq!(c.edge.samsara.topic, EdgeConfig::default().samsara.topic);
            assert_eq!(c.poll.samsara_feed.token_env, "SAMSARA_API_TOKEN");

            // A librdkafka property through [kafka.client]; a secret by its source.
            jail.set_env("APEX_KAFKA_CLIENT__SOCKET_KEEPALIVE_ENABLE", "true");
            jail.set_env("APEX_POSTGRES_PASSWORD", "file:/run/secrets/pg");
            let c = Config::load(Some(Path::new("apex.toml"))).unwrap();
            assert_eq!(c.kafka.client.get("socket_keepalive_enable").map(String::as_str), Some("true"));
            assert_eq!(c.postgres.password, SecretSource::File("/run/secrets/pg".into()));
            jail.set_env("APEX_POSTGRES_PASSWORD", "hunter2");
            let e = Config::load(None).unwrap_err().to_string();
            assert!(e.to_lowercase().contains("postgres.password") && !e.contains("hunter2"), "{e}");
            jail.set_env("APEX_POSTGRES_PASSWORD", "");

            jail.set_env("APEX_BATCH_MAX_EVENTS", "many");
            // figment names env keys upper-case: `BATCH.MAX_EVENTS in APEX_ ...`.
            let e = Config::load(None).unwrap_err().to_string().to_lowercase();
            assert!(e.contains("batch.max_events") && e.contains("many"), "{e}");

            jail.set_env("APEX_BATCH_MAX_EVENTS", "0");
            let e = Config::load(None).unwrap_err().to_string();
            assert!(e.contains("batch.max_events must be at least 1"), "{e}");
            Ok(())
        });
    }

    #[test]
    fn unknown_key_is_rejected_by_name() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("apex.toml", "[batch]\nmax_event = 50\n")?;
            let e = Config::load(Some(Path::new("apex.toml"))).unwrap_err().to_string();
            assert!(e.contains("max_event"), "{e}");
            // Variables of other parts (the chart sets APEX_LOG_FORMAT) are not keys.
            jail.set_env("APEX_LOG_FORMAT", "json");
            jail.set_env("APEX_STATE_DIR", "/var/lib/apex");
            Config::load(None).unwrap();
            // What Kubernetes gives a pod of a release named `apex` or `apex-ingest`.
            jail.set_env("APEX_EDGE_SERVICE_HOST", "10.0.0.7");
            jail.set_env("APEX_EDGE_PORT", "tcp://10.0.0.7:8088");
            jail.set_env("APEX_EDGE_PORT_8088_TCP_ADDR", "10.0.0.7");
            jail.set_env("APEX_INGEST_EDGE_SERVICE_HOST", "10.0.0.7");
            jail.set_env("APEX_INGEST_EDGE_PORT", "tcp://10.0.0.7:8088");
            Config::load(None).unwrap();
            jail.set_env("APEX_POLL_PLAID__COUNTS", "1");
            let e = Config::load(None).unwrap_err().to_string();
            assert!(e.contains("counts") && e.contains("variable APEX_POLL_PLAID__COUNTS"), "{e}");
            jail.set_env("APEX_POLL_PLAID__COUNTS", "");
            jail.set_env("APEX_BATCH_MAX_EVENT", "1");
            let e = Config::load(None).unwrap_err().to_string();
            assert!(e.contains("max_event") && e.contains("variable APEX_BATCH_MAX_EVENT"), "{e}");
            Ok(())
        });
    }
}
