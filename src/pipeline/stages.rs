//! The stages over a batch (or a child workflow's share of one): parse every
//! event, then extract and embed the records. The direct orchestrator, the
//! Temporal activities, the tests and the load runs all walk a batch this way.

use std::collections::BTreeMap;

use tracing::Instrument;

use super::ProcessedRecord;
use super::embed::{EmbedError, EmbedPolicy, Embedder};
use super::{extract::extract, parse::parse};
use crate::model::{DeadLetter, RawEvent, Record, RecordId};

/// Parses events (a batch's, or a child workflow's share of one): the records
/// (one copy per id, the last delivery winning) and a dead letter per poison event.
pub fn parse_events(events: &[RawEvent]) -> (Vec<Record>, Vec<DeadLetter>) {
    let mut records: BTreeMap<RecordId, Record> = BTreeMap::new();
    let mut dead = Vec::new();
    for raw in events {
        match parse(raw) {
            Ok(rs) => records.extend(rs.into_iter().map(|r| (r.id.clone(), r))),
            Err(reason) => {
                tracing::info!(topic = %raw.origin.topic, partition = raw.origin.partition,
                    offset = raw.origin.offset, reason = %reason, "poison event to dead letters");
                dead.push(DeadLetter::poison(raw, &reason));
            }
        }
    }
    (records.into_values().collect(), dead)
}

/// Extracts and embeds parsed records (one embedding call for the whole batch;
/// records of kinds the policy skips get no vector).
pub async fn process_records(
    embedder: &dyn Embedder,
    policy: &EmbedPolicy,
    records: Vec<Record>,
) -> Result<Vec<ProcessedRecord>, EmbedError> {
    let summaries: Vec<String> = records.iter().map(Record::summary).collect();
    let items: Vec<(&str, &str)> =
        records.iter().zip(&summaries).map(|(r, s)| (r.kind.as_str(), s.as_str())).collect();
    let embeddings = policy
        .embed(embedder, &items)
        .instrument(tracing::info_span!("embed", records = items.len()))
        .await?;
    let _extract = tracing::info_span!("extract", records = records.len()).entered();
    Ok(records
        .into_iter()
        .zip(summaries)
        .zip(embeddings)
        .map(|((record, summary), embedding)| ProcessedRecord {
            extraction: extract(&record, &summary),
            record,
            summary,
            embedding,
        })
        .collect())
}

/// parse → extract → embed over events: the rows for the saga writer and a
/// dead letter per poison event (the direct path's stages, and the Temporal
/// `process` activity's).
pub async fn process_events(
    embedder: &dyn Embedder,
    policy: &EmbedPolicy,
    events: &[RawEvent],
) -> Result<(Vec<ProcessedRecord>, Vec<DeadLetter>), EmbedError> {
    let (records, dead) =
        tracing::info_span!("parse", events = events.len()).in_scope(|| parse_events(events));
    Ok((process_records(embedder, policy, records).await?, dead))
}
