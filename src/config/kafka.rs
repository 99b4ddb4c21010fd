//! The Kafka consumer group, its topics and its backpressure.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use serde::{Deserialize, Serialize};

use super::{
    BANK_TOPIC, CRM_TOPIC, Config, DLQ_TOPIC, EDI_TOPIC, FINANCIAL_TOPIC, FRONT_TOPIC, MARKET_TOPIC,
    SAMSARA_TOPIC, SecretSource, TURVO_TOPIC, require,
};

/// librdkafka's `security.protocol` values.
const KAFKA_PROTOCOLS: [&str; 4] = ["plaintext", "ssl", "sasl_plaintext", "sasl_ssl"];
/// The SASL mechanisms offered (all three need no Kerberos or OAuth set-up).
const SASL_MECHANISMS: [&str; 3] = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];

/// librdkafka properties `[kafka.client]` may not hold: the ones the
/// pipeline's clients set themselves (offsets, delivery, backpressure and
/// limits depend on them), and the ones with a key of their own above.
const NOT_PASSED_THROUGH: [&str; 30] = [
    "bootstrap.servers",
    "metadata.broker.list",
    "client.id",
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "auto.offset.reset",
    "partition.assignment.strategy",
    "session.timeout.ms",
    "enable.partition.eof",
    "queued.max.messages.kbytes",
    "enable.idempotence",
    "acks",
    "request.required.acks",
    "linger.ms",
    "compression.type",
    "partitioner",
    "message.max.bytes",
    "message.timeout.ms",
    "security.protocol",
    "sasl.mechanism",
    "sasl.mechanisms",
    "sasl.username",
    "sasl.password",
    "ssl.ca.location",
    "ssl.certificate.location",
    "ssl.key.location",
    "ssl.key.password",
    "ssl.key.pem",
    "sasl.oauthbearer.client.secret",
];

/// Connection settings of the real services; defaults are where
/// `scripts/services up` starts them (`scripts/services env` prints them).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Comma-separated bootstrap servers.
    pub brokers: String,
    /// "plaintext", "ssl", "sasl_plaintext" or "sasl_ssl": the same for every
    /// client (members, the edge, the pollers, the DLQ publisher, `topics`).
    pub security_protocol: String,
    /// With sasl_*: "PLAIN", "SCRAM-SHA-256" or "SCRAM-SHA-512".
    pub sasl_mechanism: String,
    pub sasl_username: String,
    /// `env:NAME` or `file:PATH`, read when a client is made (a rotated one
    /// is used after a restart: librdkafka keeps the settings it was given).
    pub sasl_password: SecretSource,
    /// PEM file of the CA the brokers' certificates chain to (ssl, sasl_ssl);
    /// empty: the system's roots.
    pub ca_file: PathBuf,
    /// PEM files of the client certificate and its key (mTLS).
    pub client_cert_file: PathBuf,
    pub client_key_file: PathBuf,
    /// Any other librdkafka property, passed to every client as given; `_`
    /// in a key reads as `.`, so a variable reaches it
    /// (`APEX_KAFKA_CLIENT__SOCKET_KEEPALIVE_ENABLE=true`). Keys the pipeline
    /// sets itself, or that have a key above, are refused. Values may be
    /// written as TOML strings, numbers or booleans.
    #[serde(deserialize_with = "scalars_as_strings")]
    pub client: BTreeMap<String, String>,
    /// Consumer group: every process with this id shares the partitions.
    pub group_id: String,
    /// Topic of Samsara telemetry (JSON).
    pub samsara_topic: String,
    /// Topic of carrier EDI (X12 interchanges).
    pub edi_topic: String,
    /// Topic of Front webhooks (the edge produces them); empty is not read.
    pub front_topic: String,
    /// Topic of Turvo webhooks (the edge produces them); empty is not read.
    pub turvo_topic: String,
    /// Topic of bank transactions (the Plaid poller produces them); empty is not read.
    pub bank_topic: String,
    /// Topic of CRM objects (the HubSpot poller produces them); empty is not read.
    pub crm_topic: String,
    /// Topic of market index points (the SONAR poller produces them); empty is not read.
    pub market_topic: String,
    /// Topic of invoices, payments and other accounting objects (the QuickBooks poller); empty is not read.
    pub financial_topic: String,
    /// Where poison records are published (besides the dead-letter table).
    pub dlq_topic: String,
    /// Where to start a partition that has no committed offset: "earliest" or "latest".
    pub auto_offset_reset: String,
    /// A member that sends no heartbeat for this long leaves the group.
    #[serde(with = "humantime_serde")]
    pub session_timeout: Duration,
    /// How often each assigned partition's lag is measured against the broker's end offset.
    #[serde(with = "humantime_serde")]
    pub statistics_interval: Duration,
    /// On revocation, how long batches of the revoked partitions may take to
    /// finish before they are fenced (stopped before their next store call,
    /// uncommitted) and the partitions released.
    #[serde(with = "humantime_serde")]
    pub revoke_deadline: Duration,
    /// Fetched events a member holds that no batch has taken yet (the pipeline
    /// is full): at this many it pauses its partitions, at half as many it
    /// resumes. Half must cover what the pipeline writes while a resumed
    /// partition is fetched again (librdkafka drops a paused partition's
    /// prefetched messages), and must hold `source.queue`.
    pub max_buffered_events: usize,
}

impl KafkaConfig {
    /// Reads the Samsara and EDI topics only: not the webhook and poll topics
    /// (load runs and tests on topics of their own).
    pub fn only_samsara_and_edi(&mut self) {
        for topic in [
            &mut self.front_topic,
            &mut self.turvo_topic,
            &mut self.bank_topic,
            &mut self.crm_topic,
            &mut self.market_topic,
            &mut self.financial_topic,
        ] {
            topic.clear();
        }
    }
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "127.0.0.1:9092".into(),
            security_protocol: "plaintext".into(),
            sasl_mechanism: String::new(),
            sasl_username: String::new(),
            sasl_password: SecretSource::Unset,
            ca_file: PathBuf::new(),
            client_cert_file: PathBuf::new(),
            client_key_file: PathBuf::new(),
            client: BTreeMap::new(),
            group_id: "apex-ingest".into(),
            samsara_topic: SAMSARA_TOPIC.into(),
            edi_topic: EDI_TOPIC.into(),
            front_topic: FRONT_TOPIC.into(),
            turvo_topic: TURVO_TOPIC.into(),
            bank_topic: BANK_TOPIC.into(),
            crm_topic: CRM_TOPIC.into(),
            market_topic: MARKET_TOPIC.into(),
            financial_topic: FINANCIAL_TOPIC.into(),
            dlq_topic: DLQ_TOPIC.into(),
            auto_offset_reset: "earliest".into(),
            session_timeout: Duration::from_secs(30),
            statistics_interval: Duration::from_secs(5),
            revoke_deadline: Duration::from_secs(20),
            max_buffered_events: 20_000,
        }
    }
}

/// The checks of these sections.
pub(super) fn validate(c: &Config) -> anyhow::Result<()> {
    require(&[
        (
            c.kafka.max_buffered_events / 2 >= c.source.queue,
            "kafka.max_buffered_events",
            "must be at least twice source.queue (a member resumes at half of it)",
        ),
        (
            ["earliest", "latest"].contains(&c.kafka.auto_offset_reset.as_str()),
            "kafka.auto_offset_reset",
            "must be \"earliest\" or \"latest\"",
        ),
        (!c.kafka.group_id.is_empty(), "kafka.group_id", "must not be empty"),
    ])?;
    validate_security(&c.kafka)
}

/// A librdkafka property's value as TOML or a variable gives it.
#[derive(Deserialize)]
#[serde(untagged)]
enum Scalar {
    Text(String),
    Flag(bool),
    Whole(i64),
    Real(f64),
}

fn scalars_as_strings<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    let map = BTreeMap::<String, Scalar>::deserialize(d)?;
    Ok(map
        .into_iter()
        .map(|(k, v)| {
            let v = match v {
                Scalar::Text(s) => s,
                Scalar::Flag(b) => b.to_string(),
                Scalar::Whole(n) => n.to_string(),
                Scalar::Real(x) => x.to_string(),
            };
            (k, v)
        })
        .collect())
}

impl KafkaConfig {
    pub fn uses_sasl(&self) -> bool {
        self.security_protocol.starts_with("sasl_")
    }

    pub fn uses_tls(&self) -> bool {
        self.security_protocol.ends_with("ssl")
    }

    /// `[kafka.client]` with its keys as librdkafka spells them.
    pub fn passed_through(&self) -> impl Iterator<Item = (String, &str)> {
        self.client.iter().map(|(k, v)| (k.replace('_', "."), v.as_str()))
    }
}

fn validate_security(k: &KafkaConfig) -> anyhow::Result<()> {
    let set = |p: &PathBuf| !p.as_os_str().is_empty();
    require(&[
        (
            KAFKA_PROTOCOLS.contains(&k.security_protocol.as_str()),
            "kafka.security_protocol",
            "must be plaintext, ssl, sasl_plaintext or sasl_ssl",
        ),
        (
            !k.uses_sasl() || SASL_MECHANISMS.contains(&k.sasl_mechanism.as_str()),
            "kafka.sasl_mechanism",
            "must be PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 with a sasl_* security_protocol",
        ),
        (
            !k.uses_sasl() || (!k.sasl_username.is_empty() && k.sasl_password.is_set()),
            "kafka.sasl_username",
            "and kafka.sasl_password are needed with a sasl_* security_protocol",
        ),
        (
            k.uses_sasl()
                || (k.sasl_mechanism.is_empty() && k.sasl_username.is_empty() && !k.sasl_password.is_set()),
            "kafka.sasl_mechanism",
            "and the SASL user are only read with security_protocol sasl_plaintext or sasl_ssl",
        ),
        (
            k.uses_tls() || ![&k.ca_file, &k.client_cert_file, &k.client_key_file].into_iter().any(set),
            "kafka.ca_file",
            "and the client certificate are only read with security_protocol ssl or sasl_ssl",
        ),
        (
            set(&k.client_cert_file) == set(&k.client_key_file),
            "kafka.client_cert_file",
            "and kafka.client_key_file go together",
        ),
    ])?;
    for (key, _) in k.passed_through() {
        if NOT_PASSED_THROUGH.contains(&key.as_str()) {
            bail!(
                "invalid configuration: kafka.client.{key} is set by the pipeline itself or by a key of [kafka] \
                 (security_protocol, sasl_*, ca_file, client_*_file): not passed through"
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(k: KafkaConfig) -> String {
        validate_security(&k).map(|()| "ok".to_owned()).unwrap_or_else(|e| e.to_string())
    }

    #[test]
    fn security_settings_are_checked_together_and_pipeline_keys_are_not_passed_through() {
        let sasl = KafkaConfig {
            security_protocol: "sasl_ssl".into(),
            sasl_mechanism: "SCRAM-SHA-512".into(),
            sasl_username: "apex".into(),
            sasl_password: SecretSource::Env("KAFKA_PASSWORD".into()),
            ..KafkaConfig::default()
        };
        assert_eq!(check(sasl.clone()), "ok");
        assert!(
            check(KafkaConfig { security_protocol: "SASL".into(), ..sasl.clone() })
                .contains("security_protocol")
        );
        assert!(
            check(KafkaConfig { sasl_mechanism: "GSSAPI".into(), ..sasl.clone() }).contains("sasl_mechanism")
        );
        assert!(
            check(KafkaConfig { sasl_password: SecretSource::Unset, ..sasl.clone() })
                .contains("sasl_password")
        );
        let plaintext_with_user = KafkaConfig { security_protocol: "plaintext".into(), ..sasl.clone() };
        assert!(check(plaintext_with_user).contains("only read with"));
        let ca_without_tls = KafkaConfig { ca_file: "/ca.crt".into(), ..KafkaConfig::default() };
        assert!(check(ca_without_tls).contains("kafka.ca_file"));
        let cert_without_key = KafkaConfig {
            client_cert_file: "/c.crt".into(),
            ..KafkaConfig { security_protocol: "ssl".into(), ..KafkaConfig::default() }
        };
        assert!(check(cert_without_key).contains("go together"));

        let mut passed = KafkaConfig::default();
        passed.client.insert("socket_keepalive_enable".into(), "true".into());
        assert_eq!(check(passed.clone()), "ok");
        assert_eq!(
            passed.passed_through().collect::<Vec<_>>(),
            [("socket.keepalive.enable".to_owned(), "true")]
        );
        for refused in ["enable.auto.commit", "enable_auto_commit", "sasl.password", "acks"] {
            let mut k = KafkaConfig::default();
            k.client.insert(refused.into(), "x".into());
            let e = check(k);
            assert!(e.contains("not passed through") && e.contains(&refused.replace('_', ".")), "{e}");
        }
    }
}
