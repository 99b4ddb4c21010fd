//! The query room against a generated world: each intent's answer compared
//! with the generator's ground truth (read from its JSON file, not computed
//! by the code under test), on the embedded stores and on the real
//! PostgreSQL; `as_of` on event and ingest time; hostile values as bound
//! parameters; bad questions refused with what is wrong. Beside it, what
//! each store's reads must keep true on their own (`stores`), and the same
//! questions as a workflow on Temporal (`temporal`).
//! `world` builds the world and reads its truth; `intents` holds the checks.

#[path = "../support/mod.rs"]
mod support;

mod intents;
mod stores;
mod temporal;
mod world;

use apex_ingest::query::Intent;
use intents::every_check;
use world::world;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_stores_answer_as_the_truth_says() {
    let w = world(support::config()).await;
    every_check(&w).await;
    // By meaning: the hashing embedder finds the summaries that share the words.
    let a = w.ask("freight invoice amount due", None).await;
    assert!(matches!(a.reading.intent, Intent::Semantic { .. }), "{:?}", a.reading.intent);
    let kinds: Vec<&str> = a.hits.iter().take(5).map(|h| h.citation.kind.as_str()).collect();
    assert_eq!(kinds, ["210"; 5]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_answers_as_the_truth_says() {
    let config = support::postgres_only_config("apex_query_test").await;
    let w = world(config).await;
    assert_eq!(w.stores.records_store, "relational");
    every_check(&w).await;
}
