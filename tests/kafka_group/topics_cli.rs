//! `topics apply`, `topics list` and `produce` against the broker.

use apex_ingest::model::Format;
use std::collections::{BTreeMap, BTreeSet};

use crate::support::{self, kafka_brokers};
use crate::world::*;

#[test]
fn topics_apply_creates_updates_and_reports_drift_and_produce_fills_a_topic() {
    let brokers = kafka_brokers();
    let u = support::unique("cli");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("topics.toml");
    let define = |partitions: i32, retention: &str| {
        let text = format!(
            "[[topic]]\nname = \"samsara.telemetry.v1.{u}\"\npartitions = {partitions}\nreplication_factor = 3\n\
             retention = \"{retention}\"\ncleanup_policy = \"delete\"\ndlq = \"ingest.dlq.v1.{u}\"\n\
             [[topic]]\nname = \"ingest.dlq.v1.{u}\"\npartitions = 1\nreplication_factor = 3\n\
             retention = \"30d\"\ncleanup_policy = \"delete\"\n"
        );
        std::fs::write(&file, text).unwrap();
    };
    let file_arg = file.to_str().unwrap();
    define(2, "7d");
    // Three replicas cannot be had from one broker: refused, with the way out named.
    let (ok, _, err) = apex(&["topics", "apply", "--file", file_arg]);
    assert!(!ok && err.contains("--replication-factor 1"), "{err}");

    let apply = || apex(&["topics", "apply", "--file", file_arg, "--replication-factor", "1"]);
    let (ok, out, err) = apply();
    assert!(ok, "{out}{err}");
    assert!(
        out.contains(&format!("changed   samsara.telemetry.v1.{u}: created (partitions=2 replication=1)")),
        "{out}"
    );
    let (ok, out, _) = apply();
    assert!(ok && out.contains(&format!("unchanged samsara.telemetry.v1.{u}")), "{out}");

    define(4, "3d");
    let (ok, out, _) = apply();
    assert!(ok, "{out}");
    assert!(
        out.contains("partitions 2 -> 4") && out.contains("retention.ms 604800000 -> 259200000"),
        "{out}"
    );

    define(3, "3d");
    let (ok, out, err) = apply();
    assert!(!ok && out.contains("DRIFT has 4 partitions, definition says 3"), "{out}{err}");

    let (ok, out, _) = apex(&["topics", "list"]);
    let line = out.lines().find(|l| l.starts_with(&format!("samsara.telemetry.v1.{u} "))).unwrap_or_default();
    assert!(ok && line.split_whitespace().collect::<Vec<_>>()[1..] == ["4", "1"], "{out}");

    let topic = format!("samsara.telemetry.v1.{u}");
    let (ok, out, err) = apex(&["produce", "--topic", &topic, "--events", "300", "--rate", "1000"]);
    assert!(ok && out.contains(&format!("produced 300 samsara messages to {topic}")), "{out}{err}");
    assert_eq!(end_offsets(&brokers, &[&topic]).values().sum::<i64>(), 300);
    // Keys are vehicle ids: every message of a key is in one partition.
    let mut partitions_of_key: BTreeMap<String, BTreeSet<i32>> = BTreeMap::new();
    for m in read_topic(&brokers, &topic, Format::Samsara) {
        partitions_of_key.entry(m.key.unwrap()).or_default().insert(m.origin.partition);
    }
    assert!(partitions_of_key.values().all(|p| p.len() == 1));
    let (ok, _, err) = apex(&["produce", "--topic", &format!("ingest.dlq.v1.{u}"), "--events", "1"]);
    assert!(!ok && err.contains("--format samsara|edi"), "{err}");
}
