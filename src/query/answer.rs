//! An answer: the hits with their citations (where each record lives and
//! the source's own ids), the score from each retriever that found it, and
//! the plan that produced them; rendered as a table, as JSON, or explained.

use std::collections::BTreeMap;
use std::fmt::Write;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::intent::Reading;
use crate::model::Origin;
use crate::store::StoredRecord;

/// Where a hit lives and how the source names it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Citation {
    /// The store the record was read from.
    pub store: String,
    pub record_id: String,
    pub kind: String,
    /// The source's own ids: Samsara event id, EDI control numbers, ...
    pub source_ids: BTreeMap<String, String>,
    /// The Kafka topic, partition and offset it came from.
    pub origin: Origin,
    pub event_time: DateTime<Utc>,
    pub ingest_time: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hit {
    pub summary: String,
    /// What makes it an answer: "late by 95 min", "12.4 km from DALLAS, TX".
    pub note: Option<String>,
    /// Each retriever's score (rank fusion is `fused`).
    pub scores: BTreeMap<String, f64>,
    /// What an analysis measured of the group this hit stands for; `None`
    /// for a retrieved record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measured: Option<Measured>,
    pub citation: Citation,
    /// The record whole, for the caller's own reading; not sent (the API's
    /// answer and a workflow's result carry the citation).
    #[serde(skip)]
    pub body: Value,
}

impl Hit {
    pub fn of(record: StoredRecord, store: &'static str) -> Hit {
        let body = &record.body;
        let text = |key: &str| body.get(key).and_then(Value::as_str).map(str::to_string);
        let mut source_ids = BTreeMap::new();
        let named: &[(&'static str, &str)] = match record.format.as_str() {
            "samsara" => &[("samsara_event_id", "event_id")],
            "edi" => &[
                ("isa13_interchange", "interchange_control"),
                ("gs06_group", "group_control"),
                ("st02_transaction", "set_control"),
                ("sender", "sender_id"),
            ],
            _ => &[],
        };
        for (name, key) in named {
            if let Some(v) = text(key) {
                source_ids.insert(name.to_string(), v);
            }
        }
        if source_ids.is_empty() {
            source_ids.insert("natural_key".into(), record.natural_key.clone());
        }
        Hit {
            summary: record.summary,
            note: None,
            scores: BTreeMap::new(),
            measured: None,
            citation: Citation {
                store: store.to_string(),
                record_id: record.id.to_string(),
                kind: record.kind,
                source_ids,
                origin: record.origin,
                event_time: record.occurred_at,
                ingest_time: record.written_at,
            },
            body: record.body,
        }
    }

    pub fn scored(mut self, retriever: &str, score: f64) -> Hit {
        self.scores.insert(retriever.to_string(), score);
        self
    }

    pub fn noted(mut self, note: String) -> Hit {
        self.note = Some(note);
        self
    }
}

/// A group an analysis measured ("OZARK FOODS (pickup)") and its figures
/// (`visits`, `mean_minutes`, `longest_minutes`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measured {
    pub group: String,
    pub values: BTreeMap<String, f64>,
}

/// One store call of the plan, for `--explain`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Route {
    pub retriever: String,
    pub store: String,
    pub statement: String,
    pub rows: usize,
    pub millis: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    pub question: String,
    /// The instant the question was read at (its `as_of`, else the clock).
    pub as_of: DateTime<Utc>,
    pub reading: Reading,
    pub hits: Vec<Hit>,
    pub routes: Vec<Route>,
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

impl Answer {
    /// The hits as a table, one citation line under each.
    pub fn table(&self) -> String {
        let mut out = String::new();
        if self.hits.is_empty() {
            let _ = writeln!(out, "no records answer this question (read at {})", time(self.as_of));
        }
        for (n, h) in self.hits.iter().enumerate() {
            let c = &h.citation;
            let note = h.note.as_deref().map(|n| format!("  [{n}]")).unwrap_or_default();
            let _ = writeln!(out, "{:>3}. {}  {}{note}", n + 1, time(c.event_time), h.summary);
            let ids: Vec<String> = c.source_ids.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let scores: Vec<String> = h.scores.iter().map(|(k, v)| format!("{k} {v:.3}")).collect();
            let _ = writeln!(
                out,
                "     {} {} {}  {}  {}/{}@{}  ingested {}{}",
                c.store,
                c.kind,
                &c.record_id[..12.min(c.record_id.len())],
                ids.join(" "),
                c.origin.topic,
                c.origin.partition,
                c.origin.offset,
                time(c.ingest_time),
                if scores.is_empty() { String::new() } else { format!("  scores: {}", scores.join(", ")) }
            );
        }
        out
    }

    /// The plan: the intent, its entities and window, each store call and its time.
    pub fn explain(&self) -> String {
        let mut out = String::new();
        let reading = serde_json::to_string(&self.reading).unwrap_or_default();
        let _ =
            writeln!(out, "question: {}\nread at:  {}\nplan:     {reading}", self.question, time(self.as_of));
        for r in &self.routes {
            let _ = writeln!(
                out,
                "route {} on {}: {} rows in {:.1} ms\n  {}",
                r.retriever, r.store, r.rows, r.millis, r.statement
            );
        }
        out
    }
}
