//! Dwell time per facility, the long analysis: how long a carrier's trucks
//! stood at each shipper and consignee, from its 214 statuses (X3 arrived at
//! pickup → AF picked up, at the SH party; X1 arrived at delivery → D1
//! delivered, at the CN party). The window is read a slice at a time (a day,
//! halved again where a slice holds more statuses than one read returns), and
//! the visits still open are carried from one slice to the next, so in
//! process (`query::ask`) or as a `ComplexQueryWorkflow`'s activities, one
//! per slice, the answer is the same.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::answer::{Hit, Measured, Route};
use super::{QueryError, QueryStores, Question, Reading};
use crate::store::RecordFilter;

/// The event time one slice covers at most.
pub const SLICE: Duration = Duration::days(1);
/// Statuses one read returns at most: a slice holding more is halved.
const ROWS_PER_READ: usize = 5_000;

/// Event time `[from, to)`.
pub type Window = (DateTime<Utc>, DateTime<Utc>);

/// Where along a shipment a truck dwelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stop {
    Pickup,
    Delivery,
}

impl Stop {
    fn of(status: &str) -> Option<(Stop, bool)> {
        match status {
            "X3" => Some((Stop::Pickup, true)),
            "AF" => Some((Stop::Pickup, false)),
            "X1" => Some((Stop::Delivery, true)),
            "D1" => Some((Stop::Delivery, false)),
            _ => None,
        }
    }

    /// The N1 role of the party the truck stands at.
    fn party(self) -> &'static str {
        match self {
            Stop::Pickup => "SH",
            Stop::Delivery => "CN",
        }
    }
}

/// One facility's visits: their count, total and longest minutes, and the
/// status that closed the longest (its citation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FacilityDwell {
    pub facility: String,
    pub stop: Stop,
    pub visits: u64,
    pub total_minutes: i64,
    pub longest_minutes: i64,
    pub longest: Hit,
}

/// The analysis so far: the visits closed by facility, those still open
/// (arrived, not yet left) by PRO and stop, and the statuses read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DwellTally {
    pub facilities: BTreeMap<String, FacilityDwell>,
    pub open: BTreeMap<String, (String, DateTime<Utc>)>,
    pub statuses: u64,
}

/// The slices of the window a dwell question reads.
pub fn slices_of(question: &Question, reading: &Reading) -> Result<Vec<Window>, QueryError> {
    match super::store_call::event_window(question, reading) {
        (Some(from), Some(to)) => Ok(slices(from, to)),
        _ => Err(QueryError::BadQuestion(
            "a dwell analysis needs a window (\"this quarter\", \"last 30 days\")".into(),
        )),
    }
}

/// The slices of `[from, to)`, in order.
pub fn slices(from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Window> {
    let mut out = Vec::new();
    let mut at = from;
    while at < to {
        let end = (at + SLICE).min(to);
        out.push((at, end));
        at = end;
    }
    out
}

/// Reads one slice's statuses of `scac` in event-time order and adds them to `tally`.
pub async fn tally_slice(
    stores: &QueryStores,
    question: &Question,
    scac: Option<&str>,
    slice: Window,
    tally: &mut DwellTally,
) -> Result<Vec<Route>, QueryError> {
    let mut routes = Vec::new();
    // Windows still to read, the earliest last: a full read is halved.
    let mut windows = vec![slice];
    while let Some((from, to)) = windows.pop() {
        let f = RecordFilter {
            kinds: vec!["214".into()],
            scac: scac.map(str::to_string),
            from: Some(from),
            to: Some(to),
            written_before: question.ingested_before,
            current: true,
            newest_first: false,
            limit: ROWS_PER_READ,
            ..RecordFilter::default()
        };
        let (rows, route) = super::store_call::read(stores, "statuses", &f, Some(&question.filters)).await?;
        routes.push(route);
        if rows.len() == ROWS_PER_READ {
            let middle = from + (to - from) / 2;
            if middle > from {
                windows.extend([(middle, to), (from, middle)]);
                continue;
            }
            return Err(QueryError::BadQuestion(format!(
                "more than {ROWS_PER_READ} statuses at {from}: the analysis cannot read them in order"
            )));
        }
        for row in rows {
            tally.statuses += 1;
            tally.add(Hit::of(row, stores.records_store));
        }
    }
    Ok(routes)
}

impl DwellTally {
    /// One 214: each arrival opens a visit at its stop's party, each departure closes it.
    fn add(&mut self, hit: Hit) {
        let content = &hit.body["content"];
        let Some(pro) = content["pro"].as_str() else { return };
        let party = |role: &str| {
            content["parties"].as_array()?.iter().find(|p| p["role"] == role)?["name"]
                .as_str()
                .map(str::to_string)
        };
        for status in content["statuses"].as_array().into_iter().flatten() {
            let (Some((stop, arriving)), Some(at)) = (
                status["status_code"].as_str().and_then(Stop::of),
                status["at"].as_str().and_then(|t| t.parse::<DateTime<Utc>>().ok()),
            ) else {
                continue;
            };
            let visit = format!("{pro}/{stop:?}");
            if arriving {
                if let Some(facility) = party(stop.party()) {
                    self.open.insert(visit, (facility, at));
                }
                continue;
            }
            // A departure whose arrival fell before the window is not a visit of it.
            let Some((facility, arrived)) = self.open.remove(&visit) else { continue };
            let minutes = (at - arrived).num_minutes();
            let row =
                self.facilities.entry(format!("{facility}/{stop:?}")).or_insert_with(|| FacilityDwell {
                    facility,
                    stop,
                    visits: 0,
                    total_minutes: 0,
                    longest_minutes: minutes,
                    longest: hit.clone(),
                });
            row.visits += 1;
            row.total_minutes += minutes;
            if minutes > row.longest_minutes {
                row.longest_minutes = minutes;
                row.longest = hit.clone();
            }
        }
    }

    /// The facilities, longest mean dwell first, at most `k`: each as the
    /// status that closed its longest visit, noted and measured.
    pub fn hits(&self, k: usize) -> Vec<Hit> {
        let mut rows: Vec<&FacilityDwell> = self.facilities.values().collect();
        let mean = |r: &FacilityDwell| r.total_minutes as f64 / r.visits as f64;
        rows.sort_by(|a, b| mean(b).total_cmp(&mean(a)).then_with(|| a.facility.cmp(&b.facility)));
        rows.into_iter()
            .take(k)
            .map(|r| {
                let group = format!("{} ({})", r.facility, format!("{:?}", r.stop).to_lowercase());
                let note = format!(
                    "dwell at {group}: {} visits, mean {:.0} min, longest {} min (this one)",
                    r.visits,
                    mean(r),
                    r.longest_minutes
                );
                let mut hit = r.longest.clone().noted(note);
                let values = BTreeMap::from([
                    ("visits".to_string(), r.visits as f64),
                    ("mean_minutes".to_string(), mean(r)),
                    ("longest_minutes".to_string(), r.longest_minutes as f64),
                ]);
                hit.measured = Some(Measured { group, values });
                hit
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_cover_the_window_in_days() {
        let t = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let s = slices(t("2026-11-01T06:00:00Z"), t("2026-11-03T00:00:00Z"));
        assert_eq!(
            s,
            [
                (t("2026-11-01T06:00:00Z"), t("2026-11-02T06:00:00Z")),
                (t("2026-11-02T06:00:00Z"), t("2026-11-03T00:00:00Z"))
            ]
        );
        assert!(slices(t("2026-11-01T00:00:00Z"), t("2026-11-01T00:00:00Z")).is_empty());
    }
}
