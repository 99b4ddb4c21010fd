//! Market index points as the SONAR poller produced them: SONAR's data point
//! unchanged (`{index, qualifier, date, value}`), keyed
//! `<index>:<qualifier>:<date>`. A revised value for the same date comes under
//! the same key and replaces the earlier one.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::poison::PoisonReason;
use super::polled::text;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MarketPoint {
    /// The index ticker (`OTRI`, `NTI`).
    pub index: String,
    /// The market, lane or level it is measured for (`ATL`, `ATLCHI`, `USA`).
    pub qualifier: String,
    pub date: NaiveDate,
    pub value: f64,
}

impl MarketPoint {
    /// One data point, and its date as a time (midnight UTC).
    pub fn parse(json: &str) -> Result<(Self, DateTime<Utc>), PoisonReason> {
        let bad = |m: String| PoisonReason::InvalidMarketPoint(m);
        let v: Value = serde_json::from_str(json).map_err(|e| PoisonReason::InvalidJson(e.to_string()))?;
        let index = text(&v, "index").ok_or_else(|| bad("no index".into()))?;
        let qualifier = text(&v, "qualifier").ok_or_else(|| bad(format!("{index}: no qualifier")))?;
        let date = text(&v, "date").ok_or_else(|| bad(format!("{index} {qualifier}: no date")))?;
        // SONAR writes dates as YYYY-MM-DD, sometimes with a time of day.
        let date = NaiveDate::parse_from_str(date.get(..10).unwrap_or(&date), "%Y-%m-%d")
            .map_err(|e| bad(format!("{index} {qualifier}: date {date:?}: {e}")))?;
        let value = v
            .get("value")
            .and_then(Value::as_f64)
            .filter(|x| x.is_finite())
            .ok_or_else(|| bad(format!("{index} {qualifier} {date}: no numeric value")))?;
        let at = date.and_hms_opt(0, 0, 0).map(|t| t.and_utc()).ok_or_else(|| bad(format!("date {date}")))?;
        Ok((MarketPoint { index, qualifier, date, value }, at))
    }

    pub fn natural_key(&self) -> String {
        format!("sonar:{}:{}:{}", self.index, self.qualifier, self.date)
    }

    pub fn summary(&self) -> String {
        format!("SONAR {} for {} on {}: {}", self.index, self.qualifier, self.date, self.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_point_parses_with_its_date_as_midnight_utc() {
        let (p, at) = MarketPoint::parse(
            r#"{"index":"OTRI","qualifier":"ATL","date":"2026-11-20T00:00:00","value":6.12}"#,
        )
        .unwrap();
        assert_eq!((p.index.as_str(), p.qualifier.as_str(), p.value), ("OTRI", "ATL", 6.12));
        assert_eq!(at.to_rfc3339(), "2026-11-20T00:00:00+00:00");
        assert_eq!(p.natural_key(), "sonar:OTRI:ATL:2026-11-20");
    }

    #[test]
    fn bad_points_are_poison_with_a_reason() {
        for bad in [
            r#"{"qualifier":"ATL","date":"2026-11-20","value":1}"#,
            r#"{"index":"OTRI","date":"2026-11-20","value":1}"#,
            r#"{"index":"OTRI","qualifier":"ATL","value":1}"#,
            r#"{"index":"OTRI","qualifier":"ATL","date":"20/11/2026","value":1}"#,
            r#"{"index":"OTRI","qualifier":"ATL","date":"2026-11-20","value":"high"}"#,
            "[",
        ] {
            assert!(MarketPoint::parse(bad).is_err(), "{bad}");
        }
    }
}
