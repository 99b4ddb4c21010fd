//! Time phrases of a question: the window it asks about and the instant
//! ("at 14:00"), read in UTC relative to `now` (the clock, or `--as-of`).
//!
//! Hand-written over chrono: the crates that parse English dates return one
//! instant, and a question needs a window ("last week") as often as a point.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, TimeZone, Utc};

/// What the question says about time.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct When {
    /// Event time in `[from, to)`.
    pub window: Option<(DateTime<Utc>, DateTime<Utc>)>,
    /// An instant ("at 14:00 yesterday", an RFC 3339 time).
    pub at: Option<DateTime<Utc>>,
}

/// Reads the time phrases of `text`; the words it used are returned too, so
/// the rest of the question is not mistaken for places or names.
pub fn read(text: &str, now: DateTime<Utc>) -> Result<(When, Vec<usize>), String> {
    let words: Vec<String> =
        text.split_whitespace().map(|w| w.trim_matches(&['?', ',', '.'][..]).to_lowercase()).collect();
    let today = now.date_naive();
    let day = |d: NaiveDate| (midnight(d), midnight(d + Duration::days(1)));
    let mut when = When::default();
    let mut used = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let w = words[i].as_str();
        let next = words.get(i + 1).map(String::as_str);
        let taken = match (w, next) {
            ("today", _) => Some((1, (midnight(today), now))),
            ("yesterday", _) => Some((1, day(today - Duration::days(1)))),
            ("this", Some("week")) => {
                let monday = today - Duration::days(i64::from(today.weekday().num_days_from_monday()));
                Some((2, (midnight(monday), now)))
            }
            ("this", Some("month")) => Some((2, (midnight(today.with_day(1).unwrap_or(today)), now))),
            ("this", Some("quarter")) => {
                let first_month = (today.month0() / 3) * 3 + 1;
                let start = NaiveDate::from_ymd_opt(today.year(), first_month, 1).unwrap_or(today);
                Some((2, (midnight(start), now)))
            }
            ("last" | "past", Some(unit)) if span(unit, 1).is_some() => {
                Some((2, (now - span(unit, 1).unwrap_or_default(), now)))
            }
            ("last" | "past", Some(n)) if n.parse::<i64>().is_ok() => {
                let n = n.parse::<i64>().unwrap_or(1);
                let unit = words.get(i + 2).map(String::as_str).unwrap_or("");
                let length =
                    span(unit, n).ok_or_else(|| format!("\"last {n} {unit}\": say hours, days or weeks"))?;
                Some((3, (now - length, now)))
            }
            (date, _) if NaiveDate::parse_from_str(date, "%Y-%m-%d").is_ok() => {
                NaiveDate::parse_from_str(date, "%Y-%m-%d").ok().map(|d| (1, day(d)))
            }
            _ => None,
        };
        if let Some((n, window)) = taken {
            if when.window.is_some() {
                return Err(format!("two time windows in one question (\"{}\")", words[i..i + n].join(" ")));
            }
            when.window = Some(window);
            used.extend(i..i + n);
            i += n;
            continue;
        }
        if let Ok(t) = DateTime::parse_from_rfc3339(&words[i].to_uppercase()) {
            when.at = Some(t.with_timezone(&Utc));
            used.push(i);
        } else if w == "at"
            && let Some(t) = next.and_then(clock)
        {
            when.at = Some(Utc.from_utc_datetime(&today.and_time(t)));
            used.extend([i, i + 1]);
            i += 1;
        }
        i += 1;
    }
    // "at 14:00 yesterday": the clock time on the window's day.
    if let (Some(at), Some((from, _))) = (when.at, when.window)
        && words.iter().any(|w| w == "at")
        && at.date_naive() == today
    {
        when.at = Some(Utc.from_utc_datetime(&from.date_naive().and_time(at.time())));
        when.window = None;
    }
    Ok((when, used))
}

fn midnight(d: NaiveDate) -> DateTime<Utc> {
    Utc.from_utc_datetime(&d.and_time(NaiveTime::MIN))
}

fn span(unit: &str, n: i64) -> Option<Duration> {
    match unit.trim_end_matches('s') {
        "hour" | "h" => Some(Duration::hours(n)),
        "day" => Some(Duration::days(n)),
        "week" => Some(Duration::weeks(n)),
        "month" => Some(Duration::days(30 * n)),
        _ => None,
    }
}

/// "14:00", "14:05", "2pm", "9am".
fn clock(w: &str) -> Option<NaiveTime> {
    if let Ok(t) = NaiveTime::parse_from_str(w, "%H:%M") {
        return Some(t);
    }
    let (hour, pm) = match (w.strip_suffix("pm"), w.strip_suffix("am")) {
        (Some(h), _) => (h, true),
        (_, Some(h)) => (h, false),
        _ => return None,
    };
    let hour: u32 = hour.parse().ok().filter(|h| (1..=12).contains(h))?;
    NaiveTime::from_hms_opt(hour % 12 + if pm { 12 } else { 0 }, 0, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-11-20T06:00:00Z".parse().unwrap()
    }

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn windows_are_read_relative_to_now() {
        let (w, used) = read("harsh braking near Dallas last week", now()).unwrap();
        assert_eq!(w.window, Some((t("2026-11-13T06:00:00Z"), now())));
        assert_eq!(used, vec![4, 5]);
        let (w, _) = read("late shipments yesterday", now()).unwrap();
        assert_eq!(w.window, Some((t("2026-11-19T00:00:00Z"), t("2026-11-20T00:00:00Z"))));
        let (w, _) = read("stops in the last 6 hours", now()).unwrap();
        assert_eq!(w.window, Some((t("2026-11-20T00:00:00Z"), now())));
        let (w, _) = read("events on 2026-11-02", now()).unwrap();
        assert_eq!(w.window, Some((t("2026-11-02T00:00:00Z"), t("2026-11-03T00:00:00Z"))));
        let (w, _) = read("dwell time this quarter", now()).unwrap();
        assert_eq!(w.window, Some((t("2026-10-01T00:00:00Z"), now())));
        let (w, _) = read("dwell time this month", now()).unwrap();
        assert_eq!(w.window, Some((t("2026-11-01T00:00:00Z"), now())));
    }

    #[test]
    fn instants_take_the_day_they_are_said_with() {
        let (w, _) = read("where was truck 12 at 14:00 yesterday?", now()).unwrap();
        assert_eq!((w.at, w.window), (Some(t("2026-11-19T14:00:00Z")), None));
        let (w, _) = read("where was truck 12 at 2pm", now()).unwrap();
        assert_eq!(w.at, Some(t("2026-11-20T14:00:00Z")));
        let (w, _) = read("where was truck 12 at 2026-11-18T09:30:00Z", now()).unwrap();
        assert_eq!(w.at, Some(t("2026-11-18T09:30:00Z")));
        let (w, used) = read("everything about PRO 84213377", now()).unwrap();
        assert_eq!((w, used), (When::default(), vec![]));
    }

    #[test]
    fn unreadable_or_doubled_times_are_errors() {
        assert!(read("the last 3 fortnights", now()).unwrap_err().contains("hours, days or weeks"));
        assert!(read("yesterday and last week", now()).unwrap_err().contains("two time windows"));
    }
}
