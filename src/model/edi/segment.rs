//! One X12 segment and the readers of its elements (dates, cents, numbers),
//! which the envelope and every transaction set share.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};

use crate::model::poison::PoisonReason;

/// One segment, split into elements; `el(n)` is X12's 1-based element n.
pub(super) struct Segment<'a> {
    pub(super) elements: Vec<&'a str>,
}

impl<'a> Segment<'a> {
    pub(super) fn id(&self) -> &'a str {
        self.elements[0]
    }

    /// Element n (1-based), trimmed; `None` when absent or blank.
    pub(super) fn el(&self, n: usize) -> Option<&'a str> {
        self.elements.get(n).map(|s| s.trim()).filter(|s| !s.is_empty())
    }

    pub(super) fn owned(&self, n: usize) -> Option<String> {
        self.el(n).map(str::to_owned)
    }

    pub(super) fn required(&self, n: usize) -> Result<&'a str, PoisonReason> {
        self.el(n).ok_or_else(|| PoisonReason::EdiEnvelope(format!("{}{:02} is missing", self.id(), n)))
    }
}

pub(super) fn parse_date_time(date: Option<&str>, time: Option<&str>) -> Option<DateTime<Utc>> {
    let date = date?;
    let d = match date.len() {
        8 => NaiveDate::parse_from_str(date, "%Y%m%d").ok()?,
        6 => NaiveDate::parse_from_str(date, "%y%m%d").ok()?,
        _ => return None,
    };
    let t = time.and_then(|t| NaiveTime::parse_from_str(t.get(..4)?, "%H%M").ok()).unwrap_or(NaiveTime::MIN);
    Some(NaiveDateTime::new(d, t).and_utc())
}

pub(super) fn cents(s: Option<&str>) -> Option<i64> {
    s.and_then(|v| v.parse::<i64>().ok())
}

pub(super) fn number(s: Option<&str>) -> Option<f64> {
    s.and_then(|v| v.parse::<f64>().ok())
}
