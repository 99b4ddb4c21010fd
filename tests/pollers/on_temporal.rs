//! On Temporal: the same poll step in a PollingWorkflow run by a worker.

use apex_ingest::app;
use apex_ingest::metrics::Metrics;
use apex_ingest::orchestrate::temporal::worker::while_working;
use apex_ingest::poll::PollStep;
use apex_ingest::poll::plaid::Plaid;
use apex_ingest::poll::workflow::{self, PollActivities, PollingWorkflow};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::fake_plaid::*;
use crate::support::{self};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_temporal_the_polling_workflow_keeps_its_cursor_across_continue_as_new_honours_retry_after_and_starts_once()
 {
    let world = World::new(6).await;
    world.item.lock().unwrap().faults = vec![Fault::RateLimited("1")];
    let dir = tempfile::tempdir().unwrap();
    let mut config = support::config();
    support::require("temporal", "APEX_TEMPORAL_URL", &config.temporal.url);
    config.temporal.task_queue = support::unique("apex-poll-test");
    config.stores.data_dir = dir.path().to_path_buf();
    config.metrics.listen = String::new();
    config.kafka.brokers = world.brokers.clone();
    config.poll = world.poll.clone();
    (config.poll.on_temporal, config.poll.interval, config.poll.iterations_per_run) =
        (true, Duration::from_millis(200), 3);

    // What `apex-ingest worker` registers, with the test's credentials instead of the environment.
    let metrics = Metrics::new();
    let mut once = world.poll.clone();
    once.max_attempts = 1;
    let provider = Arc::new(Plaid::with_credentials(&once, credentials).unwrap());
    let step =
        PollStep::new(provider, &crate::support::kafka_at(&world.brokers), metrics.poll.clone()).unwrap();
    let extra: apex_ingest::orchestrate::temporal::worker::Extra = Box::new(move |options| {
        options.register_workflow::<PollingWorkflow>()?;
        options.register_activities(PollActivities::new(vec![step]));
        Ok(())
    });
    let stores = app::open_stores(&config).await.unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let writer = app::saga_writer(&config, &stores, metrics.clone(), &shutdown).unwrap();
    let embedder = app::build_embedder(&config).unwrap();

    let client = apex_ingest::orchestrate::temporal::connect(&config.temporal).await.unwrap();
    let id = workflow::workflow_id(&config.temporal.task_queue, "bank");
    let handle = client.get_workflow_handle::<PollingWorkflow>(id.clone());
    let stats = || async {
        handle.query(PollingWorkflow::get_stats, (), temporalio_client::WorkflowQueryOptions::default()).await
    };
    let work = async {
        let first =
            workflow::start_pollers(&client, &config, &["bank"], world.cursors.as_ref()).await.unwrap();
        assert_eq!(first[0].0, id);
        // Changes while it polls; two continue-as-news (3 polls a run) later, every one is in the topic.
        let started = Instant::now();
        let mut changed = false;
        loop {
            let s = stats().await.ok();
            if !changed && s.as_ref().is_some_and(|s| s.polls_ok >= 1) {
                let mut item = world.item.lock().unwrap();
                item.log.push(Event::Modified(tx("tx-2", 99.0, "Fuel stop")));
                item.log.push(Event::Removed("tx-5".into()));
                item.log.push(Event::Added(tx("tx-6", 7.0, "Scale ticket")));
                changed = true;
            }
            if s.as_ref().is_some_and(|s| s.runs >= 3) {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(90), "{s:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // Starting again leaves the running workflow as it is: its counts go on.
        let before = stats().await.unwrap();
        let again =
            workflow::start_pollers(&client, &config, &["bank"], world.cursors.as_ref()).await.unwrap();
        assert_eq!(again[0].0, id);
        let later = stats().await.unwrap();
        assert!(
            later.runs >= before.runs && later.iterations >= before.iterations,
            "{before:?} then {later:?}"
        );
        handle.terminate(Default::default()).await.unwrap();
        // For the replay test (scripts/record-histories): a run begun by continue-as-new.
        support::keep_history(&client, &id, "polling").await;
        later
    };
    let stats_after = while_working(&config, embedder, writer, &metrics, extra, work).await.unwrap();

    assert!(stats_after.iterations >= 6 && stats_after.polls_ok >= 6, "{stats_after:?}");
    // The worker's metrics count the polls its steps ended.
    let m = metrics.render();
    let ok = support::metric_series(&m, "apex_poll_total{outcome=\"ok\",source=\"bank\"}");
    assert!(ok.first().is_some_and(|(_, n)| *n as u64 >= stats_after.polls_ok), "{m}");
    assert_eq!(stats_after.cursor.as_deref(), Some("9"), "the cursor after every change, kept across runs");
    let item = world.item.lock().unwrap();
    // One request without a cursor: the very first; every later run went on from its cursor.
    assert_eq!(item.requests.iter().filter(|(c, _)| c.is_none()).count(), 2, "the 429 and its retry");
    assert!(item.requests[1].1 - item.requests[0].1 >= Duration::from_secs(1), "Retry-After: 1 waited");
    drop(item);
    world.assert_topic_matches_the_item();
}
