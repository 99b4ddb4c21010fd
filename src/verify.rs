//! Reconciliation: every record id must be in every store (a vector store of
//! its own holds only the records the embedding policy embeds). Compares the
//! stores' id sets (the whole data set) or checks the records of a time window
//! (taken from the relational store) in every store, and reports what is
//! missing where.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use crate::model::RecordId;
use crate::store::{StoreError, Stores};

#[derive(Debug, Default)]
pub struct Differences {
    /// Record ids checked.
    pub checked: usize,
    /// Per store, the checked ids it does not hold.
    pub missing: BTreeMap<&'static str, Vec<RecordId>>,
    /// Stores not checked: in-process ones, empty in a new process by design.
    pub skipped: Vec<&'static str>,
}

impl Differences {
    pub fn is_clean(&self) -> bool {
        self.missing.values().all(Vec::is_empty)
    }
}

/// `window`: only records whose event time is in `[from, to)`; `None`: all.
/// `skip_kinds`: the kinds `[embed] skip_kinds` leaves without a vector.
pub async fn reconcile(
    stores: &Stores,
    window: Option<(DateTime<Utc>, DateTime<Utc>)>,
    skip_kinds: &[String],
) -> Result<Differences, StoreError> {
    let all: Vec<_> = stores.all().into_iter().filter(|s| s.durable()).collect();
    let ids: BTreeSet<RecordId> = match window {
        Some((from, to)) => stores.relational.record_ids_between(from, to).await?.into_iter().collect(),
        None => {
            let mut union = BTreeSet::new();
            for s in &all {
                union.extend(s.record_ids().await?);
            }
            union
        }
    };
    let ids: Vec<RecordId> = ids.into_iter().collect();
    check_ids(stores, &ids, skip_kinds).await
}

/// Which of `ids` each durable store lacks (the in-process cache is not checked).
pub async fn check_ids(
    stores: &Stores,
    ids: &[RecordId],
    skip_kinds: &[String],
) -> Result<Differences, StoreError> {
    let (all, skipped): (Vec<_>, Vec<_>) = stores.all().into_iter().partition(|s| s.durable());
    let not_embedded: BTreeSet<RecordId> = match stores.separate_vector_store() {
        Some(_) if !skip_kinds.is_empty() => {
            stores.relational.record_ids_of_kinds(skip_kinds).await?.into_iter().collect()
        }
        _ => BTreeSet::new(),
    };
    let vector = stores.separate_vector_store().map(|v| v.name());
    let skipped = skipped.iter().map(|s| s.name()).collect();
    let mut diff = Differences { checked: ids.len(), missing: BTreeMap::new(), skipped };
    for s in &all {
        let expected: Vec<RecordId> = if Some(s.name()) == vector {
            ids.iter().filter(|id| !not_embedded.contains(*id)).cloned().collect()
        } else {
            ids.to_vec()
        };
        let mut present = std::collections::HashSet::new();
        for chunk in expected.chunks(5_000) {
            present.extend(s.present(chunk).await?);
        }
        let missing = expected.into_iter().filter(|id| !present.contains(id)).collect();
        diff.missing.insert(s.name(), missing);
    }
    Ok(diff)
}
