//! The query as a `QueryWorkflow` on the real Temporal dev server
//! (`scripts/services up temporal`): a worker over the world's stores
//! answers each intent as the in-process path does, keeps the answer in the
//! cache, and a question it cannot read fails with what is wrong; an
//! analysis runs as a `ComplexQueryWorkflow` and stops when cancelled.

use std::sync::Arc;
use std::time::Duration;

use apex_ingest::app;
use apex_ingest::metrics::Metrics;
use apex_ingest::orchestrate::temporal::connect;
use apex_ingest::orchestrate::temporal::worker::while_working;
use apex_ingest::query::cache::{AnswerCache, MemoryAnswers};
use apex_ingest::query::workflow::{
    AnalysisProgress, ComplexQueryWorkflow, QueryProgress, QueryWorkflow, ask_via_temporal, is_analysis,
    query_workflow_id, registrations,
};
use apex_ingest::query::{self, Answer, Question};
use serde_json::Value;
use temporalio_client::errors::WorkflowGetResultError;
use temporalio_client::{Client, WorkflowGetResultOptions, WorkflowQueryOptions};
use tokio_util::sync::CancellationToken;

use crate::support;
use crate::world::{World, world};

/// What must be alike both ways: the reading, the hits in order with their
/// citations and scores, and each store call but its time. Scores to 12
/// digits: a payload's JSON is parsed by serde_json without its exact-float
/// feature, which may move the last bit (ranks, and so the order, are the
/// workflow's own).
fn comparable(a: &Answer) -> Value {
    let routes: Vec<Value> =
        a.routes.iter().map(|r| serde_json::json!([r.retriever, r.store, r.statement, r.rows])).collect();
    let mut hits = serde_json::to_value(&a.hits).unwrap();
    for hit in hits.as_array_mut().unwrap() {
        for score in hit["scores"].as_object_mut().unwrap().values_mut() {
            *score = format!("{:.12e}", score.as_f64().unwrap()).into();
        }
    }
    serde_json::json!({"reading": a.reading, "as_of": a.as_of, "hits": hits, "routes": routes})
}

async fn analysis_progress(client: &Client, id: &str) -> Option<AnalysisProgress> {
    client
        .get_workflow_handle::<ComplexQueryWorkflow>(id.to_owned())
        .query(ComplexQueryWorkflow::get_progress, (), WorkflowQueryOptions::default())
        .await
        .ok()
}

/// A dwell question runs as a `ComplexQueryWorkflow` (a slice a day) and
/// answers as the process does; one over 400 days, cancelled by its asker
/// once two slices are read, ends cancelled with the rest unread.
async fn an_analysis_runs_a_slice_a_day_and_stops_when_cancelled(w: &World, client: &Client, queue: &str) {
    let scac = w.truth["shipments"][0]["scac"].as_str().unwrap();
    let dwell = w.question(&format!("dwell time per facility for carrier {scac} in the last 3 days"), None);
    assert!(is_analysis(&dwell));
    let here = query::ask(&w.stores, &dwell).await.unwrap();
    assert!(!here.hits.is_empty());
    let id = query_workflow_id();
    let via = ask_via_temporal(client, queue, &id, dwell, CancellationToken::new()).await.unwrap();
    assert_eq!(comparable(&via), comparable(&here));
    let p = analysis_progress(client, &id).await.unwrap();
    assert_eq!((p.slices, p.slices_done, p.cached), (3, 3, false), "{p:?}");
    assert!(p.records > 0, "{p:?}");
    // For the replay test (scripts/record-histories).
    support::keep_history(client, &id, "complex-query").await;

    let long = w.question(&format!("dwell time per facility for carrier {scac} in the last 400 days"), None);
    let id = query_workflow_id();
    let stop = CancellationToken::new();
    let asking = ask_via_temporal(client, queue, &id, long, stop.clone());
    let watching = async {
        let started = std::time::Instant::now();
        while analysis_progress(client, &id).await.is_none_or(|p| p.slices_done < 2) {
            assert!(started.elapsed() < Duration::from_secs(60), "no two slices read in 60 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        stop.cancel();
    };
    let (asked, ()) = tokio::join!(asking, watching);
    let message = format!("{:#}", asked.unwrap_err());
    assert!(message.contains("cancelled"), "{message}");
    let handle = client.get_workflow_handle::<ComplexQueryWorkflow>(id.clone());
    let ended = handle.get_result(WorkflowGetResultOptions::default()).await;
    assert!(matches!(ended, Err(WorkflowGetResultError::Cancelled { .. })), "{ended:?}");
    let p = analysis_progress(client, &id).await.unwrap();
    assert!(p.slices == 400 && p.slices_done < 400, "{p:?}");
    support::keep_history(client, &id, "complex-query-cancelled").await;
}

async fn progress(client: &Client, id: &str) -> QueryProgress {
    client
        .get_workflow_handle::<QueryWorkflow>(id.to_owned())
        .query(QueryWorkflow::get_progress, (), WorkflowQueryOptions::default())
        .await
        .unwrap()
}

/// One question of each intent the world can answer, with the parts it asks.
fn questions(w: &World) -> Vec<(String, usize)> {
    let trip = &w.truth["trips"][0];
    let pro = w.delivered_pro();
    let city = w.truth["hubs"][0]["city"].as_str().unwrap().to_lowercase();
    vec![
        (format!("where was {} at 12:00 yesterday", trip["truck_name"].as_str().unwrap()), 1),
        ("which shipments are late".into(), 1),
        (format!("safety events within 300 km of {city} in the last 3 days"), 1),
        // The records' exact and full-text lists, and the graph's neighbourhood.
        (format!("everything about PRO {}", &pro[3..]), 2),
        // The vectors' nearest and the full-text index's best.
        ("freight invoice amount due".into(), 2),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_workflow_answers_as_the_process_does() {
    let mut config = support::config();
    support::require("temporal", "APEX_TEMPORAL_URL", &config.temporal.url);
    config.temporal.task_queue = support::unique("apex-test-query");
    let w = world(config).await;
    let metrics = Metrics::new();
    let writer = app::saga_writer(&w.config, &w.opened, metrics.clone(), &CancellationToken::new()).unwrap();
    let cache: Arc<dyn AnswerCache> = Arc::new(MemoryAnswers::new(64.try_into().unwrap()));
    let extra = registrations(w.stores.clone(), Some(cache), Duration::from_secs(300));
    let embedder = app::build_embedder(&w.config).unwrap();
    let client = connect(&w.config.temporal).await.unwrap();
    let queue = w.config.temporal.task_queue.clone();
    let ask = |question: Question| {
        let (client, queue) = (client.clone(), queue.clone());
        async move {
            let id = query_workflow_id();
            let answer = ask_via_temporal(&client, &queue, &id, question, CancellationToken::new()).await;
            (id, answer)
        }
    };
    let checks = async {
        let mut last = None;
        for (text, parts) in questions(&w) {
            let question = w.question(&text, None);
            let here = query::ask(&w.stores, &question).await.unwrap();
            let (id, via) = ask(question.clone()).await;
            let via = via.unwrap_or_else(|e| panic!("{text:?} on Temporal: {e:#}"));
            assert!(!here.hits.is_empty(), "{text:?} found nothing: the comparison would prove little");
            assert_eq!(comparable(&via), comparable(&here), "{text:?}");
            let done = progress(&client, &id).await;
            let expected = QueryProgress {
                intent: Some(here.reading.intent.name().into()),
                parts,
                parts_done: parts,
                cached: false,
            };
            assert_eq!(done, expected, "{text:?}");
            if text.starts_with("everything about") {
                // For the replay test (scripts/record-histories): two parts at once.
                support::keep_history(&client, &id, "query-two-parts").await;
            }
            last = Some((question, via));
        }
        // Asked again, the worker's cache answers: the very answer, its
        // store calls' times too, and no part asked.
        let (question, first) = last.unwrap();
        let (id, again) = ask(question).await;
        assert_eq!(again.unwrap(), first);
        let p = progress(&client, &id).await;
        assert!(p.cached && p.parts_done == 0, "{p:?}");
        support::keep_history(&client, &id, "query-cached").await;
        // A question it cannot read fails at once, saying why.
        let bad = Question { k: 0, ..w.question("which shipments are late", None) };
        let (_, refused) = ask(bad).await;
        let message = format!("{:#}", refused.unwrap_err());
        assert!(message.contains("k must be between 1 and 1000, not 0"), "{message}");
        an_analysis_runs_a_slice_a_day_and_stops_when_cancelled(&w, &client, &queue).await;
    };
    while_working(&w.config, embedder, writer, &metrics, extra, checks)
        .await
        .expect("the worker ran and stopped");
}
