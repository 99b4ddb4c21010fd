//! Kafka over TLS with authentication, against the broker `scripts/services up
//! kafka` starts with, beside its plaintext listener, SASL_SSL (PLAIN and
//! SCRAM users) and SSL with client certificates required, from the
//! throw-away CA of `scripts/tls-ca`. Each mechanism carries the admin client
//! (`topics apply`), the producer and a reader; a member runs batches end to
//! end through SCRAM-SHA-512; each wrong setting (wrong CA, expired
//! certificate, wrong password, no client certificate, plaintext to TLS and
//! the reverse) fails fast, naming the brokers and the cause; no password is in any output.

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use apex_ingest::config::{KafkaConfig, SecretSource};
use apex_ingest::kafka::group_watch::GroupWatch;
use apex_ingest::kafka::read_back::read_to_end;
use apex_ingest::kafka::topics::{self, TopicSpec};
use apex_ingest::kafka::{ADMIN_TIMEOUT, check_connection};
use apex_ingest::model::Format;
use apex_ingest::source::produce::{ProduceSettings, produce};

struct Listeners {
    tls: PathBuf,
    sasl_ssl: String,
    ssl: String,
}

fn listeners() -> Listeners {
    let var = |name: &str| support::services_var(name, "kafka");
    let l = Listeners {
        tls: var("SERVICES_TLS_DIR").into(),
        sasl_ssl: var("SERVICES_KAFKA_SASL_SSL"),
        ssl: var("SERVICES_KAFKA_SSL"),
    };
    support::require("kafka", "SERVICES_KAFKA_SASL_SSL", &l.sasl_ssl);
    support::require("kafka", "SERVICES_KAFKA_SSL", &l.ssl);
    l
}

impl Listeners {
    fn file(&self, name: &str) -> PathBuf {
        self.tls.join(name)
    }

    fn password(&self) -> String {
        std::fs::read_to_string(self.file("kafka.password")).unwrap().trim().to_owned()
    }

    fn sasl(&self, mechanism: &str) -> KafkaConfig {
        KafkaConfig {
            brokers: self.sasl_ssl.clone(),
            security_protocol: "sasl_ssl".into(),
            sasl_mechanism: mechanism.into(),
            sasl_username: "apex".into(),
            sasl_password: SecretSource::File(self.file("kafka.password")),
            ca_file: self.file("ca.crt"),
            ..KafkaConfig::default()
        }
    }

    fn mtls(&self) -> KafkaConfig {
        KafkaConfig {
            brokers: self.ssl.clone(),
            security_protocol: "ssl".into(),
            ca_file: self.file("ca.crt"),
            client_cert_file: self.file("client.crt"),
            client_key_file: self.file("client.key"),
            ..KafkaConfig::default()
        }
    }
}

/// `check_connection` fails within the admin timeout, naming the brokers; the error.
fn fails(config: &KafkaConfig, secret: &str) -> String {
    let started = Instant::now();
    let e =
        check_connection(config, ADMIN_TIMEOUT).expect_err("the connection should have failed").to_string();
    assert!(started.elapsed() < ADMIN_TIMEOUT + Duration::from_secs(3), "took {:?}: {e}", started.elapsed());
    assert!(e.contains(&format!("connecting to Kafka at {}", config.brokers)), "{e}");
    assert!(!e.contains(secret), "a password in: {e}");
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mechanism_carries_admin_producer_and_reader_and_each_wrong_setting_fails_by_name() {
    let l = listeners();
    let secret = l.password();
    for (mechanism, config) in [
        ("PLAIN", l.sasl("PLAIN")),
        ("SCRAM-SHA-256", l.sasl("SCRAM-SHA-256")),
        ("SCRAM-SHA-512", l.sasl("SCRAM-SHA-512")),
        ("mTLS", l.mtls()),
    ] {
        let topic = format!("secure.{}", support::unique(&mechanism.to_lowercase()));
        topics::apply(&config, &[TopicSpec::scratch(&topic, 2)], Some(1)).await.unwrap();
        let settings = ProduceSettings {
            topic: topic.clone(),
            format: Format::Samsara,
            events: 20,
            rate: None,
            poison_fraction: 0.0,
            seed: 7,
        };
        assert_eq!(produce(&config, &settings, |_| {}).await.unwrap().sent, 20, "{mechanism}");
        let read = read_to_end(&config, &topic, Format::Samsara, Duration::from_secs(30)).unwrap();
        assert_eq!(read.len(), 20, "{mechanism}");
    }

    let wrong_ca = KafkaConfig { ca_file: l.file("other-ca.crt"), ..l.sasl("SCRAM-SHA-256") };
    let e = fails(&wrong_ca, &secret);
    assert!(e.contains("certificate verify failed"), "{e}");

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("wrong"), "not-the-password").unwrap();
    let wrong_password = KafkaConfig {
        sasl_password: SecretSource::File(dir.path().join("wrong")),
        ..l.sasl("SCRAM-SHA-512")
    };
    let e = fails(&wrong_password, "not-the-password");
    assert!(e.contains("Authentication failed"), "{e}");

    let no_client_certificate =
        KafkaConfig { client_cert_file: PathBuf::new(), client_key_file: PathBuf::new(), ..l.mtls() };
    let e = fails(&no_client_certificate, &secret);
    assert!(e.to_lowercase().contains("ssl"), "{e}");

    let plaintext_to_tls = KafkaConfig { brokers: l.sasl_ssl.clone(), ..KafkaConfig::default() };
    let e = fails(&plaintext_to_tls, &secret);
    assert!(e.contains("kafka.security_protocol"), "{e}");

    let plain = support::kafka_brokers();
    let tls_to_plaintext = KafkaConfig { brokers: plain, ..l.sasl("SCRAM-SHA-256") };
    let e = fails(&tls_to_plaintext, &secret);
    assert!(e.to_lowercase().contains("ssl"), "{e}");

    // A broker whose certificate expired (presented by a TLS front with nothing behind it).
    let expired = support::tls_front::expired(&l.tls, false).await;
    let at_expired =
        KafkaConfig { brokers: format!("localhost:{}", expired.addr.port()), ..l.sasl("SCRAM-SHA-256") };
    let e = fails(&at_expired, &secret);
    // librdkafka words every verification failure alike (the CA is right here: only the dates are not).
    assert!(e.contains("certificate verify failed"), "{e}");
}

/// `apex-ingest run` as a member of a group on SCRAM-SHA-512 over TLS: it
/// commits every event it was given (offsets are committed only for written
/// batches) and prints no password, at debug level.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_writes_batches_end_to_end_over_sasl_ssl_and_prints_no_password() {
    let l = listeners();
    let secret = l.password();
    let kafka = l.sasl("SCRAM-SHA-512");
    let topic = format!("secure.member.{}", support::unique("t"));
    let dlq = format!("{topic}.dlq");
    topics::apply(&kafka, &[TopicSpec::scratch(&topic, 2), TopicSpec::scratch(&dlq, 1)], Some(1))
        .await
        .unwrap();
    let settings = ProduceSettings {
        topic: topic.clone(),
        format: Format::Samsara,
        events: 250,
        rate: None,
        poison_fraction: 0.02,
        seed: 11,
    };
    produce(&kafka, &settings, |_| {}).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let group = support::unique("secure-member");
    let log = dir.path().join("run.log");
    let mut member = member(dir.path(), &kafka, &topic, &dlq, &group, &secret, &log);
    let watch = GroupWatch::new(&kafka, &group).unwrap();
    let started = Instant::now();
    loop {
        let (end, committed) = watch.progress(&[&topic]).unwrap();
        if end == 250 && committed == end {
            break;
        }
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(member.try_wait().unwrap().is_none(), "the member exited: {text}");
        assert!(started.elapsed() < Duration::from_secs(90), "committed {committed} of {end}: {text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // SIGTERM: it drains, commits and leaves the group.
    Command::new("kill").arg("-TERM").arg(member.id().to_string()).status().unwrap();
    assert!(member.wait().unwrap().success());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains(&secret), "the Kafka password in the member's log");
    // The dead-letter publisher went through the same settings.
    let dead = read_to_end(&kafka, &dlq, Format::Samsara, Duration::from_secs(30)).unwrap();
    assert!(!dead.is_empty(), "no dead letter on {dlq}");
}

/// `apex-ingest run --config` of a member of `group` reading `topic` on
/// SCRAM-SHA-512 over TLS, the password `password` from a variable, logging
/// at debug level to `log`.
fn member(
    dir: &std::path::Path,
    kafka: &KafkaConfig,
    topic: &str,
    dlq: &str,
    group: &str,
    password: &str,
    log: &std::path::Path,
) -> std::process::Child {
    let file = dir.join("apex.toml");
    let off = support::topics_off_except("samsara_topic");
    std::fs::write(
        &file,
        format!(
            "[source]\nkind = \"kafka\"\n[stores]\ndata_dir = {data:?}\n[metrics]\nlisten = \"\"\n\
             [batch]\nmax_wait = \"300ms\"\n\
             [kafka]\nbrokers = {brokers:?}\ngroup_id = {group:?}\nsamsara_topic = {topic:?}\ndlq_topic = {dlq:?}\n{off}\
             security_protocol = \"sasl_ssl\"\nsasl_mechanism = \"SCRAM-SHA-512\"\nsasl_username = \"apex\"\n\
             sasl_password = \"env:TEST_KAFKA_PASSWORD\"\nca_file = {ca:?}\n",
            data = dir.join("data").display().to_string(),
            brokers = kafka.brokers,
            ca = kafka.ca_file.display().to_string(),
        ),
    )
    .unwrap();
    let envs = [
        ("TEST_KAFKA_PASSWORD", password.to_owned()),
        // The suite's APEX_KAFKA_BROKERS names the plaintext listener.
        ("APEX_KAFKA_BROKERS", kafka.brokers.clone()),
        ("RUST_LOG", "debug".to_owned()),
    ];
    support::spawn_run(&file, &envs, log)
}

/// A member given a wrong password stops at once, saying where and why, and
/// does not print the password it was given.
#[test]
fn a_member_with_a_wrong_password_stops_with_the_cause() {
    let l = listeners();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("run.log");
    let wrong = "not-the-kafka-password";
    let mut child =
        member(dir.path(), &l.sasl("SCRAM-SHA-512"), "unused", "unused.dlq", "unused", wrong, &log);
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "the member kept running with a wrong password");
        std::thread::sleep(Duration::from_millis(100));
    };
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!status.success(), "{text}");
    assert!(text.contains(&format!("connecting to Kafka at {}", l.sasl_ssl)), "{text}");
    assert!(text.contains("Authentication failed"), "{text}");
    assert!(!text.contains(wrong), "the password in the member's log");
}
