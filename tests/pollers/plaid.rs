//! Plaid: full and incremental syncs, a mutation during pagination, and members writing
//! the transactions to every store.

use std::collections::BTreeSet;

use apex_ingest::model::RecordId;
use apex_ingest::query::Retrieval;

use crate::fake_plaid::*;
use crate::world::asked;

#[tokio::test]
async fn plaid_full_sync_over_pages_then_incremental_syncs_follow_adds_modifications_and_removals() {
    let world = World::new(7).await;
    let poller = world.poller();

    let first = poller.poll_once().await.unwrap();
    assert_eq!((first.upserts, first.removals), (7, 0));
    assert_eq!(world.saved_cursor().await.as_deref(), Some("7"));
    let requests: Vec<Option<String>> =
        world.item.lock().unwrap().requests.iter().map(|(c, _)| c.clone()).collect();
    assert_eq!(
        requests,
        [None, Some("2".into()), Some("4".into()), Some("6".into())],
        "4 pages of 2 from no cursor"
    );
    world.assert_topic_matches_the_item();

    // Changes on the Item: two added, one modified, one removed.
    {
        let mut item = world.item.lock().unwrap();
        item.log.push(Event::Added(tx("tx-7", 99.5, "Tolls")));
        item.log.push(Event::Modified(tx("tx-3", 13.25, "Fuel stop (corrected)")));
        item.log.push(Event::Removed("tx-5".into()));
        item.log.push(Event::Added(tx("tx-8", 7.0, "Parking")));
        item.requests.clear();
    }
    let second = poller.poll_once().await.unwrap();
    assert_eq!((second.upserts, second.removals), (3, 1));
    assert_eq!(world.saved_cursor().await.as_deref(), Some("11"));
    let first_request = world.item.lock().unwrap().requests[0].0.clone();
    assert_eq!(first_request.as_deref(), Some("7"), "an incremental sync starts from the saved cursor");
    world.assert_topic_matches_the_item();
    let (latest, _) = world.topic_state();
    assert_eq!(latest["tx-5"].1, "removed");
    assert_eq!(latest["tx-3"].0["name"], "Fuel stop (corrected)");

    // Nothing new: one request, nothing produced, the cursor stays.
    let third = poller.poll_once().await.unwrap();
    assert_eq!((third.upserts, third.removals, third.cursor.as_deref()), (0, 0, Some("11")));
    let m = world.metrics.render();
    assert!(m.contains("apex_poll_records_total{change=\"upsert\",source=\"bank\"} 10"), "{m}");
    assert!(m.contains("apex_poll_records_total{change=\"removed\",source=\"bank\"} 1"), "{m}");
}

#[tokio::test]
async fn plaid_mutation_during_pagination_restarts_from_the_loops_first_cursor_and_loses_nothing() {
    let world = World::new(4).await;
    let poller = world.poller();
    poller.poll_once().await.unwrap();
    assert_eq!(world.saved_cursor().await.as_deref(), Some("4"));

    {
        let mut item = world.item.lock().unwrap();
        for i in 10..15 {
            item.log.push(Event::Added(tx(&format!("tx-{i}"), i as f64, "Repair")));
        }
        // While the poller pages through them, tx-11 changes.
        item.mutate_during_pagination = Some(Event::Modified(tx("tx-11", 111.0, "Repair (final)")));
        item.requests.clear();
    }
    let report = poller.poll_once().await.unwrap();
    let requests: Vec<Option<String>> =
        world.item.lock().unwrap().requests.iter().map(|(c, _)| c.clone()).collect();
    assert_eq!(
        requests,
        [Some("4".into()), Some("6".into()), Some("4".into()), Some("6".into()), Some("8".into())],
        "after the mutation error the loop starts again from its first cursor (4), not from none"
    );
    // The discarded pages were never produced: the restarted loop's records only.
    assert_eq!(report.upserts, 6, "5 added and 1 modified, each once");
    assert_eq!(world.saved_cursor().await.as_deref(), Some("10"));
    world.assert_topic_matches_the_item();
    let (latest, messages) = world.topic_state();
    assert_eq!(latest["tx-11"].0["name"], "Repair (final)");
    assert_eq!(messages, 4 + 6, "nothing doubled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_write_polled_transactions_to_every_store_and_a_removal_marks_the_transaction_removed() {
    let world = World::new(6).await;
    let poller = world.poller();
    poller.poll_once().await.unwrap();
    {
        let mut item = world.item.lock().unwrap();
        item.log.push(Event::Modified(tx("tx-1", 12.0, "ACH XPO LOGISTICS PRO# 12345678")));
        item.log.push(Event::Removed("tx-4".into()));
    }
    poller.poll_once().await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let landed = member_reads_bank(&world, dir.path()).await;
    // Every transaction the Item ever had is in every durable store, once, under its Plaid id.
    let want: std::collections::BTreeSet<RecordId> = (0..6).map(|i| bank_id(&format!("tx-{i}"))).collect();
    assert!(landed.ids.len() >= 3, "{:?}", landed.ids.keys());
    for (store, ids) in &landed.ids {
        assert_eq!(ids, &want, "{store}");
    }
    // The removed one is marked removed; the rest are live.
    assert_eq!(landed.removed, [bank_id("tx-4")].into(), "only tx-4 is marked removed");
    let state = state_of(&world.item);
    assert!(!state.contains_key("tx-4") && state.len() == 5);

    // Asked, the memory answers its current state: the removed transaction
    // does not come back (its mark says "bank transaction tx-4 removed"), nor
    // tx-1's superseded "Fuel stop": by words it is not found, by meaning it
    // reads as it now does.
    let ids = |names: &[&str]| names.iter().map(|t| bank_id(t).to_string()).collect::<BTreeSet<_>>();
    let found = |hits: &[(String, String)]| hits.iter().map(|(id, _)| id.clone()).collect::<BTreeSet<_>>();
    let fuel = asked(dir.path(), "fuel stop", Retrieval::Lexical).await;
    assert_eq!(found(&fuel), ids(&["tx-0", "tx-2", "tx-3", "tx-5"]), "{fuel:?}");
    for retrieval in [Retrieval::Lexical, Retrieval::Hybrid] {
        let all = asked(dir.path(), "bank transaction fuel stop removed", retrieval).await;
        assert_eq!(found(&all), ids(&["tx-0", "tx-1", "tx-2", "tx-3", "tx-5"]), "{retrieval:?}");
        let tx1 = all.iter().find(|(id, _)| *id == bank_id("tx-1").to_string()).unwrap();
        assert!(tx1.1.contains("XPO LOGISTICS"), "{retrieval:?}: {tx1:?}");
    }
    let xpo = asked(dir.path(), "xpo logistics", Retrieval::Lexical).await;
    assert_eq!(xpo.first().map(|(id, _)| id.clone()), Some(bank_id("tx-1").to_string()), "{xpo:?}");

    // Read again from the start by a new group: the same stores, nothing doubled.
    let again = member_reads_bank(&world, dir.path()).await;
    for (store, ids) in &again.ids {
        assert_eq!(ids, &want, "{store} after a second read");
    }
    assert_eq!(again.removed, landed.removed);
}
