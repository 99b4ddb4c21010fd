//! Two days of a generated fleet through the pipeline into the stores, and
//! what its truth file says (positions, late shipments, hubs).

use std::collections::{BTreeMap, BTreeSet};

use apex_ingest::app;
use apex_ingest::config::{Config, SourceKind};
use apex_ingest::metrics::Metrics;
use apex_ingest::query::{self, Answer, QueryStores, Question};
use apex_ingest::store::{RecordFilter, Stores};
use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

pub const UNTIL: &str = "2026-11-20T06:00:00Z";

pub struct World {
    pub truth: Value,
    pub stores: QueryStores,
    /// The settings and the stores the world was written with (a worker's).
    pub config: Config,
    pub opened: Stores,
    pub written: (DateTime<Utc>, DateTime<Utc>),
    _dir: tempfile::TempDir,
}

/// Two days of eight trucks ending at `UNTIL`, run through the pipeline into
/// the stores `config` names; its truth file beside them.
pub async fn world(mut config: Config) -> World {
    let dir = tempfile::tempdir().unwrap();
    let truth = dir.path().join("truth.json");
    config.source.kind = SourceKind::Generator;
    config.source.events = 0;
    config.source.vehicles = 8;
    config.source.days = 2.0;
    config.source.until = UNTIL.into();
    config.source.seed = 29;
    config.source.poison_fraction = 0.0;
    config.source.truth = truth.clone();
    config.stores.data_dir = dir.path().to_path_buf();
    let metrics = Metrics::new();
    let stores = app::open_stores(&config).await.unwrap();
    let shutdown = CancellationToken::new();
    let orchestrator = app::direct_over(&config, &stores, metrics.clone(), &shutdown).unwrap();
    let started = Utc::now();
    let source = app::build_source(&config, metrics.clone()).unwrap();
    app::run_pipeline(&config, source, orchestrator, metrics, shutdown, |_| {}).await.unwrap();
    let written = (started, Utc::now());
    let truth: Value = serde_json::from_slice(&std::fs::read(&truth).unwrap()).unwrap();
    let opened = stores;
    let stores = QueryStores::over(&opened, app::build_embedder(&config).unwrap());
    World { truth, stores, config, opened, written, _dir: dir }
}

pub fn time(v: &Value) -> DateTime<Utc> {
    v.as_str().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("not a time: {v}"))
}

impl World {
    /// `text` asked at `as_of`, else at the world's end, for every hit.
    pub fn question(&self, text: &str, as_of: Option<DateTime<Utc>>) -> Question {
        Question {
            text: text.into(),
            as_of: as_of.or(Some(time(&self.truth["until"]))),
            ingested_before: None,
            k: 1000,
            filters: Default::default(),
            retrieval: Default::default(),
        }
    }

    pub async fn ask(&self, text: &str, as_of: Option<DateTime<Utc>>) -> Answer {
        let q = self.question(text, as_of);
        query::ask(&self.stores, &q).await.unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    pub fn hub(&self, name: &str) -> (f64, f64) {
        let h = self.truth["hubs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| format!("{}, {}", h["city"].as_str().unwrap(), h["state"].as_str().unwrap()) == name)
            .unwrap();
        (h["latitude"].as_f64().unwrap(), h["longitude"].as_f64().unwrap())
    }

    /// How many records the relational store holds, read through the query filter.
    pub async fn count(&self) -> usize {
        let all = RecordFilter { limit: 1_000_000, ..RecordFilter::default() };
        self.stores.records.find_records(&all).await.unwrap().len()
    }

    /// Where the truth says `truck` was at `t`, if it was on a trip's stretch.
    pub fn position(&self, truck: &str, t: DateTime<Utc>) -> Option<(f64, f64)> {
        self.truth["trips"].as_array().unwrap().iter().filter(|trip| trip["truck_id"] == truck).find_map(
            |trip| {
                let s = trip["stretches"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|s| time(&s["start"]) <= t && t < time(&s["end"]))?;
                let share = (t - time(&s["start"])).num_milliseconds() as f64
                    / (time(&s["end"]) - time(&s["start"])).num_milliseconds() as f64;
                let (f0, f1) = (s["from_fraction"].as_f64().unwrap(), s["to_fraction"].as_f64().unwrap());
                let f = f0 + (f1 - f0) * share;
                let (a, b) =
                    (self.hub(trip["from"].as_str().unwrap()), self.hub(trip["to"].as_str().unwrap()));
                Some((a.0 + (b.0 - a.0) * f, a.1 + (b.1 - a.1) * f))
            },
        )
    }

    /// Shipments tendered in the span and, by `until`, delivered late or
    /// not delivered with their appointment past (overdue), by PRO.
    pub fn late(&self, scac: Option<&str>, until: DateTime<Utc>) -> BTreeSet<String> {
        let from = time(&self.truth["from"]);
        let delivered_by = |s: &Value| !s["delivered_at"].is_null() && time(&s["delivered_at"]) <= until;
        self.truth["shipments"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| scac.is_none_or(|c| s["scac"] == c) && time(&s["tendered_at"]) >= from)
            .filter(|s| {
                let late = delivered_by(s) && !s["late_by_minutes"].is_null();
                let overdue = !delivered_by(s) && time(&s["appointment"]) < until;
                late || overdue
            })
            .map(|s| s["pro"].as_str().unwrap().to_string())
            .collect()
    }
}

impl World {
    /// The PRO of the first shipment tendered in the span and delivered.
    pub fn delivered_pro(&self) -> &str {
        let from = time(&self.truth["from"]);
        let shipments = self.truth["shipments"].as_array().unwrap();
        let s = shipments.iter().find(|s| !s["delivered_at"].is_null() && time(&s["tendered_at"]) >= from);
        s.expect("a delivered shipment")["pro"].as_str().unwrap()
    }

    /// By facility ("OZARK FOODS (pickup)"), the dwell minutes of each visit
    /// of `scac`'s trucks the truth saw whole inside the span.
    pub fn dwell(&self, scac: &str) -> BTreeMap<String, Vec<f64>> {
        let mut out: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for s in self.truth["shipments"].as_array().unwrap().iter().filter(|s| s["scac"] == scac) {
            for (party, stop) in [("shipper", "pickup"), ("consignee", "delivery")] {
                if let Some(minutes) = s[format!("{stop}_dwell_minutes")].as_f64() {
                    out.entry(format!("{} ({stop})", s[party].as_str().unwrap())).or_default().push(minutes);
                }
            }
        }
        out
    }
}

/// The PROs of the hits: a 214's `pro`, a 204's `shipment_id`.
pub fn pros(a: &Answer) -> BTreeSet<String> {
    let pro = |h: &apex_ingest::query::Hit| {
        let content = &h.body["content"];
        content["pro"].as_str().or(content["shipment_id"].as_str()).unwrap().to_string()
    };
    a.hits.iter().map(pro).collect()
}

pub fn km(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (la1, la2, dla, dlo) =
        (a.0.to_radians(), b.0.to_radians(), (b.0 - a.0).to_radians(), (b.1 - a.1).to_radians());
    let h = (dla / 2.0).sin().powi(2) + la1.cos() * la2.cos() * (dlo / 2.0).sin().powi(2);
    2.0 * 6371.0 * h.sqrt().asin()
}
