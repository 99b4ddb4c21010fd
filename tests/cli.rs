//! The `apex-ingest` binary as a user runs it.

use std::process::Command;

fn apex() -> Command {
    Command::new(env!("CARGO_BIN_EXE_apex-ingest"))
}

#[test]
fn demo_runs_and_reconciles() {
    let dir = tempfile::tempdir().unwrap();
    let out = apex()
        .args(["demo", "--events", "1500", "--poison-fraction", "0.05", "--data-dir"])
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("events in            1500"), "{stdout}");
    assert!(stdout.contains("reconciled: each store holds all"), "{stdout}");
    for f in ["records.db", "graph.db", "vectors.db"] {
        assert!(dir.path().join("data").join(f).exists(), "{f} missing");
    }
}

/// The Helm chart's pods run with `APEX_LOG_FORMAT=json`: that is the log
/// format, not a configuration key, and every log line is one JSON object.
#[test]
fn json_logs_as_the_chart_sets_them() {
    let dir = tempfile::tempdir().unwrap();
    let out = apex()
        .args(["demo", "--events", "200", "--data-dir"])
        .arg(dir.path().join("data"))
        .env("RUST_LOG", "info")
        .env("APEX_LOG_FORMAT", "json")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "no log lines");
    for line in lines {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v["level"].is_string() && v["fields"].is_object(), "{line}");
    }
}

#[test]
fn help_explains_every_subcommand() {
    let top = apex().arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&top.stdout);
    assert!(text.contains("demo") && text.contains("run") && text.contains("APEX_"), "{text}");
    let demo = String::from_utf8_lossy(&apex().args(["demo", "--help"]).output().unwrap().stdout).to_string();
    assert!(demo.contains("--events") && demo.contains("--data-dir"), "{demo}");
    let run = String::from_utf8_lossy(&apex().args(["run", "--help"]).output().unwrap().stdout).to_string();
    assert!(run.contains("--config") && run.contains("SIGTERM") && run.contains("kafka"), "{run}");
    assert!(run.contains("rollout_percent"), "{run}");
    let worker =
        String::from_utf8_lossy(&apex().args(["worker", "--help"]).output().unwrap().stdout).to_string();
    assert!(worker.contains("task_queue") && worker.contains("max_concurrent_activities"), "{worker}");
    let topics =
        String::from_utf8_lossy(&apex().args(["topics", "--help"]).output().unwrap().stdout).to_string();
    assert!(topics.contains("apply") && topics.contains("list"), "{topics}");
    let produce =
        String::from_utf8_lossy(&apex().args(["produce", "--help"]).output().unwrap().stdout).to_string();
    assert!(
        produce.contains("--topic") && produce.contains("--events") && produce.contains("--rate"),
        "{produce}"
    );
    let pollers =
        String::from_utf8_lossy(&apex().args(["pollers", "--help"]).output().unwrap().stdout).to_string();
    assert!(
        pollers.contains("start") && pollers.contains("stats") && pollers.contains("on_temporal"),
        "{pollers}"
    );
}

/// `pollers start` refuses what would poll twice or nothing, before it reaches Temporal.
#[test]
fn pollers_start_names_what_is_missing() {
    let none = apex().args(["pollers", "start"]).env("APEX_POLL_ON_TEMPORAL", "true").output().unwrap();
    let text = String::from_utf8_lossy(&none.stderr);
    assert!(!none.status.success() && text.contains("no poll source is configured"), "{text}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("apex.toml");
    std::fs::write(&file, "[poll.hubspot]\ntoken_env = \"HUBSPOT_TOKEN\"\n").unwrap();
    let in_process = apex().args(["pollers", "start", "--config"]).arg(&file).output().unwrap();
    let text = String::from_utf8_lossy(&in_process.stderr);
    assert!(!in_process.status.success() && text.contains("poll.on_temporal is false"), "{text}");
}

#[test]
fn bad_config_fails_at_start_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("apex.toml");
    std::fs::write(&file, "[batch]\nmax_wait = \"soon\"\n").unwrap();
    let out = apex().args(["run", "--config"]).arg(&file).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("batch.max_wait"), "{err}");

    let missing = apex().args(["run", "--config", "/nonexistent/apex.toml"]).output().unwrap();
    assert!(String::from_utf8_lossy(&missing.stderr).contains("does not exist"));

    std::fs::write(&file, "[temporal]\nrollout_percent = 150\n").unwrap();
    let out = apex().args(["run", "--config"]).arg(&file).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("temporal.rollout_percent must be between 0 and 100"), "{err}");
}

#[test]
fn a_worker_without_temporal_fails_and_says_how_to_start_it() {
    let out = apex()
        .arg("worker")
        .env("APEX_TEMPORAL_URL", "http://127.0.0.1:1")
        .env("APEX_METRICS_LISTEN", "")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("connecting to Temporal at http://127.0.0.1:1"), "{err}");
    assert!(err.contains("scripts/services up temporal"), "{err}");
}

#[test]
fn run_reads_files_from_config_and_serves_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let samples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/samples");
    let file = dir.path().join("apex.toml");
    std::fs::write(
        &file,
        format!(
            "[source]\nkind = \"file\"\npaths = [{:?}, {:?}]\n[stores]\ndata_dir = {:?}\n[metrics]\nlisten = \"127.0.0.1:0\"\n",
            samples.join("samsara"),
            samples.join("edi"),
            dir.path().join("data")
        ),
    )
    .unwrap();
    let out = apex().args(["run", "--config"]).arg(&file).env("RUST_LOG", "info").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("pipeline finished") && err.contains("records=14") && err.contains("dead_letters=3"),
        "{err}"
    );
}
