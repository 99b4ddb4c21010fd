//! The graph policy (`[graph] state_kinds`): which records the graph keeps
//! as a node each, and which only as a vehicle's state. A location or stats
//! ping every few seconds per truck would make the graph the biggest and
//! slowest store for the least-read data; kept as state, the graph holds
//! each vehicle's newest position and stats and its visits to location cells
//! (first and last seen, a count), and every ping stays whole in the
//! relational store. Both graph stores write what [`GraphBatch::of`] merges.

use std::collections::{BTreeMap, BTreeSet};

use chrono::SecondsFormat;

use crate::config::GraphConfig;
use crate::model::samsara::SamsaraData;
use crate::model::{EntityKey, Label, RecordBody, RecordId, Relation};
use crate::pipeline::ProcessedRecord;

/// Which record kinds become vehicle state instead of Event nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphPolicy {
    state_kinds: BTreeSet<String>,
}

impl Default for GraphPolicy {
    /// The default configuration's: location and stats pings kept as state.
    fn default() -> Self {
        GraphPolicy::of(&GraphConfig::default())
    }
}

impl GraphPolicy {
    /// The policy `[graph]` asks for: records of its `state_kinds` (those
    /// `GRAPH_STATE_KINDS` allows, as the configuration checks) kept as state.
    pub fn of(config: &GraphConfig) -> Self {
        GraphPolicy { state_kinds: config.state_kinds.iter().cloned().collect() }
    }

    pub fn keeps_as_state(&self, kind: &str) -> bool {
        self.state_kinds.contains(kind)
    }
}

/// One vehicle's newest reading of one kind in a batch: written over the
/// stored one only when its version (event time, then record id) is higher,
/// so a re-delivered or late ping never moves the state back.
#[derive(Debug, Clone, PartialEq)]
pub struct StateUpdate {
    pub vehicle: String,
    pub kind: String,
    /// `<event time, RFC 3339 with nanoseconds> <record id>`: sorts as text as
    /// the readings do in time.
    pub version: String,
    /// The reading's event time, RFC 3339 with nanoseconds.
    pub at: String,
    /// The vehicle's properties this reading sets, its version among them
    /// (under [`version_key`]), with its record id and event time; a field
    /// the reading lacks is `None`, which removes what an older one set.
    pub props: BTreeMap<String, Option<String>>,
}

/// A vehicle's pings in one location cell within a batch: the store adds to
/// its visit's count only the times after the visit's last seen, so a
/// re-delivery adds nothing (a ping older than the last seen, arriving late,
/// is not counted; its row is in the relational store).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct VisitPings {
    /// Event times (RFC 3339 with nanoseconds), sorted.
    pub times: Vec<String>,
}

impl VisitPings {
    pub fn first(&self) -> &str {
        self.times.first().map_or("", String::as_str)
    }
    pub fn last(&self) -> &str {
        self.times.last().map_or("", String::as_str)
    }
}

/// What a batch writes to the graph under a policy.
#[derive(Debug, Default)]
pub struct GraphBatch {
    /// Each node once, the props of its repeated mentions combined.
    pub nodes: BTreeMap<EntityKey, BTreeMap<String, String>>,
    pub edges: BTreeSet<Relation>,
    /// Per vehicle and kind, the newest reading.
    pub states: Vec<StateUpdate>,
    /// Per vehicle and location cell, the pings there.
    pub visits: BTreeMap<(String, String), VisitPings>,
}

/// The property of a vehicle that holds its `kind` reading's version.
pub fn version_key(kind: &str) -> String {
    format!("{kind}_version")
}

/// The property of a vehicle that holds its newest `kind` reading's record id.
pub fn record_key(kind: &str) -> String {
    format!("{kind}_record")
}

impl GraphBatch {
    /// Merges the rows: a record of a state kind gives its vehicle's state
    /// (and, with a position, a visit to its cell) and no Event node; every
    /// other record its nodes and edges.
    pub fn of(rows: &[&ProcessedRecord], policy: &GraphPolicy) -> Self {
        let mut batch = GraphBatch::default();
        let mut newest: BTreeMap<(String, String), StateUpdate> = BTreeMap::new();
        for r in rows {
            let state = policy.keeps_as_state(&r.record.kind).then(|| state_of(r)).flatten();
            let Some((update, cell)) = state else {
                for e in &r.extraction.entities {
                    batch.nodes.entry(e.key.clone()).or_default().extend(e.props.clone());
                }
                batch.edges.extend(r.extraction.relations.iter().cloned());
                continue;
            };
            // The vehicle and the cell are nodes still; the Event and its edges are not.
            for e in r.extraction.entities.iter().filter(|e| e.key.label != Label::Event) {
                batch.nodes.entry(e.key.clone()).or_default().extend(e.props.clone());
            }
            if let Some(cell) = cell {
                batch.visits.entry((update.vehicle.clone(), cell)).or_default().times.push(update.at.clone());
            }
            let key = (update.vehicle.clone(), update.kind.clone());
            match newest.get(&key) {
                Some(held) if held.version >= update.version => {}
                _ => {
                    newest.insert(key, update);
                }
            }
        }
        for pings in batch.visits.values_mut() {
            pings.times.sort();
        }
        batch.states = newest.into_values().collect();
        batch
    }
}

/// The record's state update and, for a position, its location cell (the
/// extraction's Location node); `None` for a record that is no vehicle's reading.
fn state_of(r: &ProcessedRecord) -> Option<(StateUpdate, Option<String>)> {
    let RecordBody::Samsara(event) = &r.record.body else { return None };
    let vehicle = event.data.vehicle()?;
    let kind = r.record.kind.clone();
    let at = r.record.occurred_at.to_rfc3339_opts(SecondsFormat::Nanos, true);
    let version = format!("{at} {}", r.record.id.as_str());
    let mut props: BTreeMap<String, Option<String>> = BTreeMap::new();
    let mut put = |k: &str, v: Option<String>| {
        props.insert(k.to_owned(), v);
    };
    match &event.data {
        SamsaraData::VehicleLocation { position, heading_degrees, speed_mph, place, .. } => {
            put("latitude", Some(position.latitude.to_string()));
            put("longitude", Some(position.longitude.to_string()));
            put("heading_degrees", heading_degrees.map(|v| v.to_string()));
            put("speed_mph", speed_mph.map(|v| v.to_string()));
            put("place", place.clone());
        }
        SamsaraData::VehicleStats {
            engine_state, fuel_percent, odometer_meters, coolant_celsius, ..
        } => {
            put("engine_state", engine_state.clone());
            put("fuel_percent", fuel_percent.map(|v| v.to_string()));
            put("odometer_meters", odometer_meters.map(|v| v.to_string()));
            put("coolant_celsius", coolant_celsius.map(|v| v.to_string()));
        }
        _ => {}
    }
    put(&format!("{kind}_at"), Some(at.clone()));
    put(&record_key(&kind), Some(r.record.id.as_str().to_owned()));
    put(&version_key(&kind), Some(version.clone()));
    let cell = r
        .extraction
        .entities
        .iter()
        .find(|e| e.key.label == Label::Location)
        .filter(|_| matches!(event.data, SamsaraData::VehicleLocation { .. }))
        .map(|e| e.key.key.clone());
    Some((StateUpdate { vehicle: vehicle.id.clone(), kind, version, at, props }, cell))
}

/// A vehicle's state of one kind as a graph store holds it (for `verify`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct HeldState {
    pub vehicle: String,
    pub kind: String,
    pub record: RecordId,
}

/// A vehicle's visit to a location cell as a graph store holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldVisit {
    pub vehicle: String,
    pub cell: String,
    pub first_seen: String,
    pub last_seen: String,
    pub count: i64,
}
