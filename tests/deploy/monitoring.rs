//! What operators watch and what Kafka is given: the alert rules through
//! promtool, the Strimzi topics rendered from `topics/`, the dashboard's panels.

use super::*;

#[test]
fn alert_rules_pass_promtool_check_and_their_unit_tests_and_a_wrong_expectation_fails() {
    let rules = repo().join("deploy/prometheus");
    let mut check = tool("promtool");
    check.args(["check", "rules"]).arg(rules.join("alerts.yaml"));
    let out = run(check);
    assert!(out.status.success() && text(&out).contains("SUCCESS: 10 rules found"), "{}", text(&out));

    let mut test = tool("promtool");
    test.args(["test", "rules"]).arg(rules.join("alerts_test.yaml"));
    let out = run(test);
    assert!(out.status.success(), "promtool test rules:\n{}", text(&out));

    // The tests do test: one expectation changed makes promtool fail.
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(rules.join("alerts.yaml"), dir.path().join("alerts.yaml")).unwrap();
    let tests = std::fs::read_to_string(rules.join("alerts_test.yaml")).unwrap();
    let wrong = tests.replacen("store: graph", "store: relational", 1);
    assert_ne!(wrong, tests);
    std::fs::write(dir.path().join("alerts_test.yaml"), wrong).unwrap();
    let mut test = tool("promtool");
    test.args(["test", "rules"]).arg(dir.path().join("alerts_test.yaml"));
    let out = run(test);
    assert!(!out.status.success(), "a wrong expectation passed:\n{}", text(&out));
}

#[test]
fn strimzi_topics_are_rendered_from_topics_toml_and_are_valid_kafka_topics() {
    let specs = apex_ingest::kafka::topics::load(&repo().join("topics/topics.toml")).unwrap();
    // The command the file's header names, run as a user runs it (no broker, no config).
    let out = Command::new(env!("CARGO_BIN_EXE_apex-ingest"))
        .args(["topics", "render", "--format", "strimzi"])
        .current_dir(repo())
        .env("APEX_KAFKA_BROKERS", "127.0.0.1:9")
        .output()
        .unwrap();
    assert!(out.status.success(), "topics render:\n{}", text(&out));
    let want = String::from_utf8(out.stdout).unwrap();
    let file = repo().join("deploy/strimzi/kafka-topics.yaml");
    let have = std::fs::read_to_string(&file).unwrap();
    assert_eq!(
        have,
        want,
        "{} is stale: run `apex-ingest topics render --format strimzi > deploy/strimzi/kafka-topics.yaml`",
        file.display()
    );
    for s in &specs {
        assert!(
            have.contains(&format!("topicName: \"{}\"\n  partitions: {}\n", s.name, s.partitions)),
            "{}",
            s.name
        );
    }
    let report = kubeconform(&have);
    assert!(report.contains(&format!("Valid: {}, Invalid: 0", specs.len())), "{report}");
    // Strict: a misspelled field of a KafkaTopic is refused.
    let out = kubeconform_output(&have.replacen("partitions:", "partition:", 1));
    assert!(!out.status.success() && text(&out).contains("partition"), "{}", text(&out));
}

#[test]
fn the_dashboard_shows_what_operators_need_and_documents_its_panels() {
    let text = std::fs::read_to_string(repo().join("deploy/grafana/apex-ingest.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let panels = dashboard["panels"].as_array().unwrap();
    let titles: Vec<&str> = panels.iter().map(|p| p["title"].as_str().unwrap()).collect();
    let docs = std::fs::read_to_string(repo().join("docs/deploy.md")).unwrap();
    for p in panels {
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{} has no query", p["title"]);
        assert!(
            docs.contains(p["title"].as_str().unwrap()),
            "docs/deploy.md does not describe {}",
            p["title"]
        );
    }
    let names = support::metric_names(&text);
    for needed in [
        "apex_events_in_total",
        "apex_batch_latency_seconds_bucket",
        "apex_kafka_consumer_lag",
        "apex_kafka_partition_paused",
        "apex_batches_in_flight",
        "apex_store_write_seconds_bucket",
        "apex_store_write_errors_total",
        "apex_breaker_state",
        "apex_compensations_total",
        "apex_dead_letters_total",
        "apex_workflow_results_total",
        "apex_temporal_oldest_waiting_batch_seconds",
        "temporal_activity_schedule_to_start_latency_bucket",
    ] {
        assert!(names.contains(needed), "no panel shows {needed}: {titles:?}");
    }
    // Every name the dashboard and the rules use is a documented metric.
    let metrics_doc = std::fs::read_to_string(repo().join("docs/metrics.md")).unwrap();
    let rules = std::fs::read_to_string(repo().join("deploy/prometheus/alerts.yaml")).unwrap();
    for name in names.union(&support::metric_names(&rules)) {
        let family = name.strip_suffix("_bucket").unwrap_or(name);
        assert!(metrics_doc.contains(&format!("`{family}")), "{name} is not in docs/metrics.md");
    }
}
