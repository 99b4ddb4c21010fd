//!/ The dashboard and the alert rules (deploy/) only use metrics a member or a
//!/ worker really serves: a member on Kafka with half its batches on Temporal,
//!/ with poison events, and its worker are scraped over HTTP after it has
//!/ written everything. The worker's `/metrics` carries the Temporal SDK's
//!/ metrics beside ours.

use apex_ingest::model::Format;
use std::collections::BTreeSet;
use std::path::Path;

use crate::members::*;
use crate::support::{self};
use crate::world::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_metric_the_dashboard_and_the_alert_rules_use_is_served_by_a_running_member() {
    let _serial = SERIAL.lock().await;
    let mut run = TemporalRun::new("metrics", 41, 300, 40).await;
    for (key, value) in &mut run.member_env {
        if *key == "APEX_TEMPORAL_ROLLOUT_PERCENT" {
            *value = "50".to_owned();
        }
    }
    // Poison in nearly every batch, so batches the member writes itself (not
    // the worker) dead-letter some: 1 % alone left that to chance.
    produce_to(&run.brokers, &run.names.samsara, Format::Samsara, 100, 0.5, 43).await;
    run.want = expected(&run.brokers, &run.names);
    let worker = run.worker("a");
    let mut member = run.member();
    wait_until_committed_to_end(&run.brokers, &run.names).await;
    assert_exactly_once(&stored(run.dir()).await, &run.want);
    let (status, scraped) = member.get("/metrics").await.expect("the member serves /metrics");
    assert_eq!(status, 200);
    let from_worker = reqwest::get(&worker.metrics).await.unwrap().text().await.unwrap();
    let worker_series = |name: &str| -> f64 {
        support::metric_series(&from_worker, name).iter().map(|(_, v)| *v as f64).sum()
    };
    // One endpoint: ours, and the SDK's counted what this worker did.
    for (name, what) in [
        ("apex_records_written_total", "records the worker's activities wrote"),
        ("temporal_workflow_completed_total", "workflows completed (the SDK's counter)"),
        ("temporal_activity_schedule_to_start_latency_count", "activities timed from schedule to start"),
        (
            "temporal_workflow_task_schedule_to_start_latency_count",
            "workflow tasks timed from schedule to start",
        ),
        ("temporal_worker_task_slots_available", "free task slots"),
    ] {
        assert!(worker_series(name) > 0.0, "the worker's /metrics has no {what} ({name}):\n{from_worker}");
    }
    // Both paths ran, and something was dead-lettered.
    for (name, what) in [
        ("apex_orchestrator_batches_total{path=\"direct\"}", "direct batches"),
        ("apex_workflow_results_total{outcome=\"completed\"}", "completed batch workflows"),
        ("apex_dead_letters_total", "dead letters"),
    ] {
        assert!(member.value(name).await > 0, "no {what}:\n{scraped}");
    }

    // The queries: the dashboard's panel and variable queries, the rules' expressions
    // (their annotations may name a metric that only exists while something is wrong).
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(deploy.join("grafana/apex-ingest.json")).unwrap())
            .unwrap();
    let panel_queries = dashboard["panels"].as_array().unwrap().iter().flat_map(|p| {
        p["targets"].as_array().unwrap().iter().map(|t| t["expr"].as_str().unwrap().to_owned())
    });
    let variable_queries = dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["query"].as_str().map(String::from));
    let rules = std::fs::read_to_string(deploy.join("prometheus/alerts.yaml")).unwrap();
    let rule_queries = rules
        .lines()
        .filter(|l| !l.trim_start().starts_with("summary:") && !l.trim_start().starts_with("description:"))
        .map(String::from);
    let used: BTreeSet<String> = panel_queries
        .chain(variable_queries)
        .chain(rule_queries)
        .flat_map(|q| support::metric_names(&q))
        .collect();
    assert!(used.len() >= 12, "{used:?}");
    let both = format!("{scraped}{from_worker}");
    let served: BTreeSet<&str> =
        both.lines().filter(|l| !l.starts_with('#')).filter_map(|l| l.split(['{', ' ']).next()).collect();
    let missing: Vec<&String> = used.iter().filter(|n| !served.contains(n.as_str())).collect();
    assert!(missing.is_empty(), "used in deploy/ but not served: {missing:?}\n{both}");
    assert!(member.terminate().await.success(), "{}", member.logs());
}
