//! The query room: a question read by rules into an intent ([`intent`],
//! [`when`]), the stores asked over typed, parameterised filters
//! ([`routes`]), and the hits returned with their citations ([`answer`]);
//! in process (`apex-ingest query`) or over HTTP ([`api`], `apex-ingest serve`,
//! answers kept under the write watermark by [`cache`]), or on Temporal
//! ([`workflow`], `apex-ingest query --via temporal`).
//! It reads what the pipeline wrote and writes nothing.

pub mod answer;
pub mod api;
pub mod cache;
pub mod dwell;
pub mod filters;
pub mod intent;
mod parts;
mod routes;
mod store_call;
pub mod stream;
pub mod when;
pub mod workflow;

use std::sync::Arc;

use chrono::{DateTime, Utc};

pub use answer::{Answer, Hit, Route};
pub use filters::Filters;
pub use intent::{Entity, Intent, Reading};
pub use parts::{Part, PartAnswer, Ranked, distinct, fuse, lexical_weight};

use crate::pipeline::embed::{EmbedError, Embedder};
use crate::store::{GraphReads, RecordReads, StoreError, Stores, VectorStore};

/// The most hits a question may ask for.
pub const MAX_K: usize = 1000;

/// What the query room reads: the relational store always, the vectors where
/// the deployment has them, and the embedder the records were embedded with.
#[derive(Clone)]
pub struct QueryStores {
    pub records: Arc<dyn RecordReads>,
    pub records_store: &'static str,
    pub vectors: Option<Arc<dyn VectorStore>>,
    /// The graph, for an entity's neighbourhood; `None` where no graph is kept.
    pub graph: Option<Arc<dyn GraphReads>>,
    pub embedder: Arc<dyn Embedder>,
    /// Where each store call's result goes as it returns (a streamed answer).
    pub progress: Option<stream::Progress>,
}

impl QueryStores {
    /// The roles of `stores` the query room reads.
    pub fn over(stores: &Stores, embedder: Arc<dyn Embedder>) -> Self {
        let records: Arc<dyn RecordReads> = stores.relational.clone();
        QueryStores {
            records,
            records_store: stores.relational.name(),
            vectors: stores.vector.clone(),
            graph: stores.graph_reads.clone(),
            embedder,
            progress: None,
        }
    }

    /// Sends a store call's result to a streamed answer, if this is one.
    fn report(&self, route: &Route, hits: impl FnOnce() -> Vec<Hit>) {
        if let Some(progress) = &self.progress {
            // A client gone: the question's task is being aborted.
            let _ = progress.send(stream::Partial { route: route.clone(), hits: hits() });
        }
    }
}

/// A question and how to read it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Question {
    pub text: String,
    /// Answer as the memory stood at this event time (and read "yesterday"
    /// from it); `None` is now.
    pub as_of: Option<DateTime<Utc>>,
    /// Only what was ingested before this instant.
    pub ingested_before: Option<DateTime<Utc>>,
    /// How many hits at most.
    pub k: usize,
    /// What the client narrows every read by, beside what the question says.
    pub filters: Filters,
    /// Which retrievers answer a question by meaning.
    pub retrieval: Retrieval,
}

/// Which retrievers answer a question by meaning (the structured intents are
/// exact and ignore it): both at once, fused, or one alone to compare.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Retrieval {
    /// The vector store and the full-text index, fused by weighted
    /// reciprocal rank; the full-text index alone without a vector store.
    #[default]
    Hybrid,
    /// Nearest vectors only.
    Vector,
    /// The full-text index only (the question's words, stemmed).
    Lexical,
}

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The question cannot be read or asks for something out of bounds.
    #[error("{0}")]
    BadQuestion(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("embedding the question: {0}")]
    Embed(#[from] EmbedError),
}

impl QueryError {
    /// Whether asking again may answer: a store's outage, an embedder's.
    pub fn is_transient(&self) -> bool {
        match self {
            QueryError::BadQuestion(_) => false,
            QueryError::Store(e) => e.transient,
            QueryError::Embed(e) => e.is_transient(),
        }
    }
}

/// Reads the question, asks the stores, returns the hits with citations.
pub async fn ask(stores: &QueryStores, question: &Question) -> Result<Answer, QueryError> {
    let as_of = question.as_of.unwrap_or_else(Utc::now);
    let reading = read(question, as_of)?;
    answer_reading(stores, question, as_of, reading).await
}

/// The question checked and read, before any store is asked.
pub(crate) fn read(question: &Question, as_of: DateTime<Utc>) -> Result<Reading, QueryError> {
    check(question)?;
    intent::read(&question.text, as_of).map_err(QueryError::BadQuestion)
}

/// What is out of bounds in a question before it is read: `k`, the filters.
fn check(question: &Question) -> Result<(), QueryError> {
    let k = question.k;
    if k == 0 || k > MAX_K {
        return Err(QueryError::BadQuestion(format!("k must be between 1 and {MAX_K}, not {k}")));
    }
    question.filters.check().map_err(QueryError::BadQuestion)
}

/// The stores asked for a question already read.
pub(crate) async fn answer_reading(
    stores: &QueryStores,
    question: &Question,
    as_of: DateTime<Utc>,
    reading: Reading,
) -> Result<Answer, QueryError> {
    let (hits, routes) = routes::answer(stores, question, &reading).await?;
    Ok(Answer { question: question.text.clone(), as_of, reading, hits, routes })
}
