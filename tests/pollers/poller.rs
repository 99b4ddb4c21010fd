//! What every poller does whatever its provider (shown on the fake Plaid): crash
//! safety, retries, credentials, one poll per interval among members.

use apex_ingest::config::PollConfig;
use apex_ingest::poll::PollError;
use apex_ingest::poll::plaid::Plaid;
use std::time::{Duration, Instant};

use crate::fake_plaid::*;
use crate::support::{self};

#[tokio::test]
async fn a_crash_between_produce_and_cursor_save_refetches_and_loses_nothing() {
    let world = World::new(5).await;
    // Another writer holds the records database's write lock: the cursor cannot
    // be saved after the records were produced (the process "dies" there).
    let lock = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect(&format!("sqlite://{}", world.dir.path().join("records.db").display()))
        .await
        .unwrap();
    let mut held = lock.acquire().await.unwrap();
    sqlx::query("BEGIN IMMEDIATE").execute(&mut *held).await.unwrap();
    let failed = world.poller().poll_once().await;
    assert!(matches!(failed, Err(PollError::Cursor { .. })), "{failed:?}");
    sqlx::query("ROLLBACK").execute(&mut *held).await.unwrap();
    drop(held);
    assert_eq!(world.saved_cursor().await, None, "the cursor did not move");
    let (_, produced) = world.topic_state();
    assert_eq!(produced, 5, "the records were produced before the cursor failed");

    // A new poller (the restarted process) starts from the saved cursor again.
    let again = world.poller().poll_once().await.unwrap();
    assert_eq!(again.upserts, 5);
    assert_eq!(world.saved_cursor().await.as_deref(), Some("5"));
    world.assert_topic_matches_the_item();
    let (latest, messages) = world.topic_state();
    assert_eq!((latest.len(), messages), (5, 10), "each record produced twice under its own key: none lost");
}

#[tokio::test]
async fn rate_limits_and_server_errors_are_retried_then_the_poll_fails_and_the_next_interval_succeeds() {
    let world = World::new(3).await;

    // A 429 asking for 0.4 s and a 503: retried, honouring Retry-After.
    world.item.lock().unwrap().faults = vec![Fault::RateLimited("0.4"), Fault::Unavailable];
    let report = world.poller().poll_once().await.unwrap();
    assert_eq!(report.upserts, 3);
    let times: Vec<Instant> = world.item.lock().unwrap().requests.iter().map(|(_, t)| *t).collect();
    assert_eq!(times.len(), 4, "429, 503, then two pages");
    assert!(times[1] - times[0] >= Duration::from_millis(400), "Retry-After was not honoured");

    // Failing on every attempt: the poll fails, is counted, and the next interval tries again.
    {
        let mut item = world.item.lock().unwrap();
        item.log.push(Event::Added(tx("tx-9", 1.0, "Late fee")));
        item.faults = vec![Fault::Unavailable; 4];
    }
    let poller = world.poller();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { poller.run(Duration::from_millis(300), shutdown).await }
    });
    let started = Instant::now();
    let metrics = world.metrics.clone();
    while !metrics.render().contains("apex_poll_total{outcome=\"ok\",source=\"bank\"} 1") {
        assert!(started.elapsed() < Duration::from_secs(20), "{}", metrics.render());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    shutdown.cancel();
    running.await.unwrap();
    let m = metrics.render();
    assert!(m.contains("apex_poll_total{outcome=\"failed\",source=\"bank\"} 1"), "{m}");
    assert!(m.contains("apex_poll_last_success_timestamp_seconds{source=\"bank\"}"), "{m}");
    assert!(m.contains("apex_poll_last_records{source=\"bank\"}"), "{m}");
    assert!(m.contains("apex_poll_cursor_age_seconds{source=\"bank\"} 0"), "{m}");
    world.assert_topic_matches_the_item();
    assert_eq!(world.saved_cursor().await.as_deref(), Some("4"));
}

#[tokio::test]
async fn missing_credentials_fail_at_start_naming_the_variable_not_a_value() {
    let mut poll = PollConfig::default();
    poll.plaid.access_token_env = "TEST_PLAID_UNSET_TOKEN".into();
    poll.plaid.client_id_env = "TEST_PLAID_CLIENT_ID".into();
    poll.plaid.secret_env = "TEST_PLAID_SECRET".into();
    let e = Plaid::with_credentials(&poll, credentials)
        .err()
        .expect("an unset access token is refused")
        .to_string();
    // From the environment too, as `run` reads them (nothing sets this variable).
    let mut config = support::config();
    config.poll = poll;
    let dir = tempfile::tempdir().unwrap();
    let tokens = std::sync::Arc::new(
        apex_ingest::store::sqlite_records::SqliteRecordStore::open(&dir.path().join("cursors.db"))
            .await
            .unwrap(),
    );
    let from_env = apex_ingest::poll::configured(&config, tokens)
        .err()
        .expect("an unset variable is refused")
        .to_string();
    assert!(from_env.contains("$TEST_PLAID_CLIENT_ID"), "{from_env}");
    assert!(e.contains("$TEST_PLAID_UNSET_TOKEN"), "{e}");
    assert!(!e.contains("secret-1") && !e.contains("client-1"), "{e}");
}

#[tokio::test]
async fn members_sharing_a_coordinator_poll_once_per_interval_between_them() {
    let world = World::new(2).await;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let interval = Duration::from_millis(500);
    let members: Vec<_> = (0..3)
        .map(|_| {
            let (poller, shutdown) = (world.poller(), shutdown.clone());
            tokio::spawn(async move { poller.run(interval, shutdown).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(2_600)).await;
    shutdown.cancel();
    for m in members {
        m.await.unwrap();
    }
    // Three members over about five intervals: one poll each interval, not three.
    let polls = world.metrics.counter("apex_poll_total", "ok");
    assert!((4..=7).contains(&polls), "{polls} polls by three members in ~5 intervals");
    world.assert_topic_matches_the_item();
}

#[tokio::test]
async fn a_poll_longer_than_the_interval_keeps_the_lock_and_no_other_member_starts_it_again() {
    let world = World::new(6).await;
    // 3 pages of 2 at 400 ms each: a poll takes about 1.2 s, the interval is 0.5 s.
    world.item.lock().unwrap().delay = Duration::from_millis(400);
    let shutdown = tokio_util::sync::CancellationToken::new();
    let members: Vec<_> = (0..2)
        .map(|_| {
            let (poller, shutdown) = (world.poller(), shutdown.clone());
            tokio::spawn(async move { poller.run(Duration::from_millis(500), shutdown).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(3_000)).await;
    shutdown.cancel();
    for m in members {
        m.await.unwrap();
    }
    let item = world.item.lock().unwrap();
    assert!(item.requests.len() >= 4, "{} requests", item.requests.len());
    assert_eq!(item.most_in_flight, 1, "two members polled at once");
}
