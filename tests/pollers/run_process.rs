//! The `apex-ingest run` process with the Plaid poller, killed mid-poll and restarted.

use apex_ingest::app;
use apex_ingest::kafka::group_watch::GroupWatch;
use apex_ingest::model::RecordId;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::fake_plaid::*;
use crate::support::{self};

/// `apex-ingest run` with the Plaid poller and a member reading its topic, on
/// embedded stores in `dir`; the fake's credentials in its environment.
fn run_process(world: &World, dir: &std::path::Path, group: &str) -> std::process::Child {
    let file = dir.join("apex.toml");
    let topics_off = support::topics_off_except("bank_topic");
    let toml = format!(
        "[source]\nkind = \"kafka\"\n[stores]\ndata_dir = {dir:?}\n[metrics]\nlisten = \"\"\n\
         [kafka]\nbrokers = {brokers:?}\ngroup_id = {group:?}\nbank_topic = {topic:?}\n{topics_off}\
         [batch]\nmax_wait = \"300ms\"\n[poll]\ninterval = \"500ms\"\nfirst_backoff = \"50ms\"\n\
         [poll.plaid]\nurl = {url:?}\ncount = 2\nrequests_per_minute = 6000\ntopic = {topic:?}\n\
         client_id_env = \"TEST_PLAID_CLIENT_ID\"\nsecret_env = \"TEST_PLAID_SECRET\"\n\
         access_token_env = \"TEST_PLAID_ACCESS_TOKEN\"\n",
        dir = dir.display().to_string(),
        brokers = world.brokers,
        topic = world.topic,
        url = world.poll.plaid.url,
    );
    std::fs::write(&file, toml).unwrap();
    let envs = ["TEST_PLAID_CLIENT_ID", "TEST_PLAID_SECRET", "TEST_PLAID_ACCESS_TOKEN"]
        .map(|v| (v, credentials(v).unwrap()));
    support::spawn_run(&file, &envs, &dir.join("run.log"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_process_killed_mid_poll_loses_and_doubles_nothing_in_the_stores_after_restart() {
    let world = World::new(6).await;
    world.item.lock().unwrap().delay = Duration::from_millis(300);
    let dir = tempfile::tempdir().unwrap();
    let group = support::unique("apex-poll-kill");

    // Killed (SIGKILL) while its first poll is between pages.
    let mut first = run_process(&world, dir.path(), &group);
    let started = Instant::now();
    while world.item.lock().unwrap().requests.len() < 2 {
        assert!(started.elapsed() < Duration::from_secs(30), "the poller never asked twice");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.kill().unwrap();
    first.wait().unwrap();
    {
        let mut item = world.item.lock().unwrap();
        item.log.push(Event::Modified(tx("tx-1", 12.0, "Fuel stop")));
        item.log.push(Event::Removed("tx-3".into()));
    }

    // Restarted: it polls on from the saved cursor, and the member writes the topic.
    let mut second = run_process(&world, dir.path(), &group);
    let watch = GroupWatch::new(&crate::support::kafka_at(&world.brokers), &group).unwrap();
    let want = state_of(&world.item);
    let started = Instant::now();
    loop {
        let (latest, _) = world.topic_state();
        let live: BTreeMap<String, Value> =
            latest.into_iter().filter(|(_, (_, c))| c == "upsert").map(|(k, (v, _))| (k, v)).collect();
        let (end, committed) = watch.progress(&[&world.topic]).unwrap();
        if live == want && end > 0 && committed == end {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "topic {live:?}, committed {committed} of {end}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    second.kill().unwrap();
    second.wait().unwrap();

    let mut config = support::config();
    config.stores.data_dir = dir.path().to_path_buf();
    let stores = app::open_stores(&config).await.unwrap();
    let ids: std::collections::BTreeSet<RecordId> =
        stores.relational.record_ids().await.unwrap().into_iter().collect();
    assert_eq!(ids, (0..6).map(|i| bank_id(&format!("tx-{i}"))).collect(), "every transaction, once");
    assert_eq!(stores.relational.count_records().await.unwrap(), 6, "nothing doubled");
    let removed =
        stores.relational.record_ids_of_kinds(&["BankTransactionRemoved".to_owned()], None).await.unwrap();
    assert_eq!(removed, vec![bank_id("tx-3")]);
    for s in stores.all() {
        if s.durable() {
            assert_eq!(
                s.present(&ids.iter().cloned().collect::<Vec<_>>()).await.unwrap().len(),
                6,
                "{}",
                s.name()
            );
        }
    }
}
