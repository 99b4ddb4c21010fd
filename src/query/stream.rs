//! NDJSON answers (`POST /v1/query` with `Accept: application/x-ndjson`): a
//! line per store call as it returns — its route (store, statement, rows,
//! milliseconds) and the records it read — then the whole answer, or the
//! error, as the last line. So a client shows the fast stores' records while a
//! slow one is still asked. Never from the cache. A client that goes away
//! drops the stream, and with it the question's task and its store calls.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use futures::StreamExt;
use serde::Serialize;
use serde_json::json;
use tokio::sync::{OwnedSemaphorePermit, mpsc};

use super::answer::{Hit, Route};
use super::{QueryError, QueryStores, Question};
use crate::metrics::Metrics;

/// One store call's result, before the answer is merged.
#[derive(Debug, Clone, Serialize)]
pub struct Partial {
    pub route: Route,
    /// The records it read (none for a vector search: its ids are read next).
    pub hits: Vec<Hit>,
}

/// Where the routes send each store call's result as it returns.
pub type Progress = mpsc::UnboundedSender<Partial>;

/// Aborts the question's task when the response is dropped, counting the
/// question abandoned if it was still being answered.
struct AbortOnDrop {
    task: tokio::task::AbortHandle,
    metrics: Arc<Metrics>,
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if !self.task.is_finished() {
            self.task.abort();
            self.metrics.query.refused("abandoned");
        }
    }
}

fn line(value: &serde_json::Value) -> Result<Bytes, std::convert::Infallible> {
    let mut text = value.to_string();
    text.push('\n');
    Ok(Bytes::from(text))
}

/// The streamed answer to a question, once it is read (a question that
/// cannot be read is the error, before any line); `timeout` bounds the
/// whole of it (the last line then says so). The permit of its place among
/// the questions in flight is held until the question's task ends.
pub fn answer(
    stores: &QueryStores,
    question: Question,
    timeout: Duration,
    metrics: Arc<Metrics>,
    started: Instant,
    permit: OwnedSemaphorePermit,
) -> Result<Response, QueryError> {
    let as_of = question.as_of.unwrap_or_else(Utc::now);
    let reading = super::read(&question, as_of)?;
    let (progress, partials) = mpsc::unbounded_channel();
    let stores = QueryStores { progress: Some(progress), ..stores.clone() };
    let task = tokio::spawn(async move {
        let _permit = permit;
        let answer = super::answer_reading(&stores, &question, as_of, reading);
        match tokio::time::timeout(timeout, answer).await {
            Ok(answer) => answer.map_err(|e| ("store_failed", e.to_string())),
            Err(_) => Err(("timed_out", format!("no answer within serve.timeout ({timeout:?})"))),
        }
    });
    let running = AbortOnDrop { task: task.abort_handle(), metrics: metrics.clone() };
    let partials = futures::stream::unfold(partials, |mut partials| async move {
        let partial = partials.recv().await?;
        Some((line(&json!({"partial": partial})), partials))
    });
    let last = futures::stream::once(async move {
        let _running = running;
        match task.await {
            Ok(Ok(answer)) => {
                metrics.query.answered(answer.reading.intent.name(), started.elapsed());
                line(&json!({"answer": answer}))
            }
            Ok(Err((outcome, message))) => {
                metrics.query.refused(outcome);
                line(&json!({"error": message}))
            }
            Err(e) => line(&json!({"error": format!("the question's task ended: {e}")})),
        }
    });
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], Body::from_stream(partials.chain(last)))
        .into_response())
}
