//! Reconciliation: every record id must be in every store. Compares the stores'
//! id sets (the whole data set) or checks the records of a time window (taken
//! from the relational store) in every store, and reports what is missing where.

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
pub async fn reconcile(
    stores: &Stores,
    window: Option<(DateTime<Utc>, DateTime<Utc>)>,
) -> Result<Differences, StoreError> {
    let (all, skipped): (Vec<_>, Vec<_>) = stores.all().into_iter().partition(|s| s.durable());
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
    let skipped = skipped.iter().map(|s| s.name()).collect();
    let mut diff = Differences { checked: ids.len(), missing: BTreeMap::new(), skipped };
    for s in &all {
        let mut present = std::collections::HashSet::new();
        for chunk in ids.chunks(5_000) {
            present.extend(s.present(chunk).await?);
        }
        let missing = ids.iter().filter(|id| !present.contains(*id)).cloned().collect();
        diff.missing.insert(s.name(), missing);
    }
    Ok(diff)
}
