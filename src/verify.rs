//! Reconciliation: every record id must be in every store, as the policies
//! say: a vector store of its own holds only the records the embedding policy
//! embeds, and the graph holds no node for the pings it keeps as state, but
//! each vehicle's state must be its newest ping in the relational store.
//! Compares the stores' id sets (the whole data set) or checks the records of
//! a time window (taken from the relational store) in every store, and
//! reports what is missing where.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use crate::config::Config;
use crate::model::RecordId;
use crate::store::{StoreError, Stores};

/// What the policies leave out of a store.
#[derive(Debug, Clone)]
pub struct Expectations {
    /// `[embed] skip_kinds`: no vector.
    pub embed_skip: Vec<String>,
    /// `[graph] state_kinds`: no Event node, the vehicle's state instead.
    pub graph_state: Vec<String>,
}

impl Default for Expectations {
    /// The default configuration's: every record in every store but the
    /// graph, which keeps location and stats pings as vehicle state.
    fn default() -> Self {
        Expectations::of(&Config::default())
    }
}

impl Expectations {
    pub fn of(config: &Config) -> Self {
        Expectations {
            embed_skip: config.embed.skip_kinds.clone(),
            graph_state: config.graph.state_kinds.clone(),
        }
    }
}

#[derive(Debug, Default)]
pub struct Differences {
    /// Record ids checked.
    pub checked: usize,
    /// Per store, the checked ids it does not hold.
    pub missing: BTreeMap<&'static str, Vec<RecordId>>,
    /// Stores not checked: in-process ones, empty in a new process by design.
    pub skipped: Vec<&'static str>,
    /// Vehicle states checked (one per vehicle and state kind in the relational store).
    pub states_checked: usize,
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
    expect: &Expectations,
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
    check_ids(stores, &ids, expect).await
}

/// Which of `ids` each durable store lacks (the in-process cache is not
/// checked), and, with pings kept as state, which vehicles' graph state is not
/// their newest ping (its record id counted missing from the graph).
pub async fn check_ids(
    stores: &Stores,
    ids: &[RecordId],
    expect: &Expectations,
) -> Result<Differences, StoreError> {
    let (all, skipped): (Vec<_>, Vec<_>) = stores.all().into_iter().partition(|s| s.durable());
    let vector = stores.separate_vector_store().map(|v| v.name());
    let graph = stores.graph.as_ref().map(|g| g.name());
    let not_embedded = left_out(stores, &expect.embed_skip, vector, Some(ids)).await?;
    let state_only = left_out(stores, &expect.graph_state, graph, Some(ids)).await?;
    let skipped = skipped.iter().map(|s| s.name()).collect();
    let mut diff = Differences { checked: ids.len(), missing: BTreeMap::new(), skipped, states_checked: 0 };
    for s in &all {
        let left_out = match s.name() {
            name if Some(name) == vector => &not_embedded,
            name if Some(name) == graph => &state_only,
            _ => &BTreeSet::new(),
        };
        let expected: Vec<RecordId> = ids.iter().filter(|id| !left_out.contains(*id)).cloned().collect();
        let mut present = std::collections::HashSet::new();
        for chunk in expected.chunks(5_000) {
            present.extend(s.present(chunk).await?);
        }
        let missing = expected.into_iter().filter(|id| !present.contains(id)).collect();
        diff.missing.insert(s.name(), missing);
    }
    if let Some(name) = graph {
        let (checked, stale) = stale_states(stores, &expect.graph_state, Some(ids)).await?;
        diff.states_checked = checked;
        diff.missing.entry(name).or_default().extend(stale);
    }
    Ok(diff)
}

/// The records of `kinds` (of those `among`, or all), which a policy leaves
/// out of `store` (when it exists).
pub async fn left_out(
    stores: &Stores,
    kinds: &[String],
    store: Option<&'static str>,
    among: Option<&[RecordId]>,
) -> Result<BTreeSet<RecordId>, StoreError> {
    let mut left = BTreeSet::new();
    if store.is_none() || kinds.is_empty() {
        return Ok(left);
    }
    match among {
        Some(ids) => {
            for chunk in ids.chunks(5_000) {
                left.extend(stores.relational.record_ids_of_kinds(kinds, Some(chunk)).await?);
            }
        }
        None => left.extend(stores.relational.record_ids_of_kinds(kinds, None).await?),
    }
    Ok(left)
}

/// Vehicle states checked, and the newest pings (by record id) the graph's
/// state of their vehicle is not: each vehicle's (of the records `among`, or
/// every vehicle's) newest record of each kind the graph keeps as state,
/// against what the graph holds.
pub async fn stale_states(
    stores: &Stores,
    kinds: &[String],
    among: Option<&[RecordId]>,
) -> Result<(usize, Vec<RecordId>), StoreError> {
    let Some(reads) = stores.graph_reads.as_ref().filter(|_| !kinds.is_empty()) else {
        return Ok((0, Vec::new()));
    };
    let vehicles: Option<Vec<String>> = match among {
        Some(ids) => {
            let mut vehicles = BTreeSet::new();
            for chunk in ids.chunks(5_000) {
                vehicles.extend(stores.relational.vehicles_of(chunk, kinds).await?);
            }
            Some(vehicles.into_iter().collect())
        }
        None => None,
    };
    let mut newest = Vec::new();
    match &vehicles {
        Some(vehicles) => {
            for chunk in vehicles.chunks(5_000) {
                newest.extend(stores.relational.newest_readings(kinds, Some(chunk)).await?);
            }
        }
        None => newest = stores.relational.newest_readings(kinds, None).await?,
    }
    let held: BTreeSet<_> = reads.vehicle_states(kinds).await?.into_iter().collect();
    let checked = newest.len();
    Ok((checked, newest.into_iter().filter(|n| !held.contains(n)).map(|n| n.record).collect()))
}
