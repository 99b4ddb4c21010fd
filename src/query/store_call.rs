//! One call to the relational store on a question's behalf: its event-time
//! window, the client's filters pushed in, the call timed and its statement
//! kept for `--explain` (and sent to a streamed answer as it returns).

use std::time::Instant;

use chrono::{DateTime, Duration, Utc};

use super::answer::{Hit, Route};
use super::filters::Filters;
use super::intent::Reading;
use super::{QueryError, QueryStores, Question};
use crate::store::{RecordFilter, StoredRecord};

/// The event time a question reads: its window, ending by its `as_of`.
pub fn event_window(
    question: &Question,
    reading: &Reading,
) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
    let end = question.as_of.map(|t| t + Duration::milliseconds(1));
    (reading.window.map(|w| w.0), earliest(reading.window.map(|w| w.1), end))
}

pub fn earliest(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// One store call, timed, with the statement it sent; narrowed by the
/// client's structured filters where given (a read of the answer's records,
/// not a lookup beside them).
pub async fn read(
    stores: &QueryStores,
    retriever: &'static str,
    filter: &RecordFilter,
    filters: Option<&Filters>,
) -> Result<(Vec<StoredRecord>, Route), QueryError> {
    let started = Instant::now();
    let narrowed = match filters {
        Some(filters) => filters.narrow(filter.clone()),
        None => Some(filter.clone()),
    };
    let Some(filter) = narrowed else {
        let statement = "none: the filters and the question exclude each other".to_string();
        return Ok((
            Vec::new(),
            Route {
                retriever: retriever.into(),
                store: stores.records_store.into(),
                statement,
                rows: 0,
                millis: 0.0,
            },
        ));
    };
    let mut rows = stores.records.find_records(&filter).await?;
    if let Some(filters) = filters {
        rows.retain(|r| filters.keeps(&r.body));
    }
    let route = Route {
        retriever: retriever.into(),
        store: stores.records_store.into(),
        statement: stores.records.statement(&filter),
        rows: rows.len(),
        millis: started.elapsed().as_secs_f64() * 1e3,
    };
    stores.report(&route, || rows.iter().map(|r| Hit::of(r.clone(), stores.records_store)).collect());
    Ok((rows, route))
}
