//! What a question asks, read by rules (no model): the entities it names
//! (PRO/BOL numbers, vehicles, SCACs, places, safety behaviours), its time
//! phrases, and from them one intent with a typed plan.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::when::{self, When};
use crate::places::find_place;

/// Samsara safety behaviours and the words people use for them.
const BEHAVIORS: &[(&str, &str)] = &[
    ("harsh brak", "HarshBrake"),
    ("hard brak", "HarshBrake"),
    ("harsh accel", "HarshAcceleration"),
    ("harsh turn", "HarshTurn"),
    ("harsh corner", "HarshTurn"),
    ("speeding", "Speeding"),
    ("following distance", "FollowingDistance"),
    ("tailgat", "FollowingDistance"),
];

/// Event kinds a question can name, by the words it uses.
const KINDS: &[(&str, &[&str])] = &[
    ("safety event", &["SafetyEvent"]),
    ("geofence", &["GeofenceEnter", "GeofenceExit"]),
    ("arriv", &["GeofenceEnter"]),
    ("depart", &["GeofenceExit"]),
    ("duty", &["HosStatusChange"]),
    ("hos", &["HosStatusChange"]),
];

/// Capitalised words that are never a SCAC.
const NOT_SCAC: &[&str] = &["PRO", "BOL", "EDI", "HOS", "UTC", "ETA", "GPS", "USA", "DC"];

/// The window of a dwell analysis when the question gives none.
pub const DEFAULT_DWELL_DAYS: i64 = 30;

/// Radius of "near <place>" when the question gives none.
pub const DEFAULT_RADIUS_KM: f64 = 50.0;

/// The entity a question is about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Entity {
    /// A PRO, BOL or shipment id.
    Shipment { reference: String },
    /// A vehicle id, or its name ("Truck 12").
    Vehicle { vehicle: String },
}

/// Events near a place.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Near {
    pub place: String,
    pub latitude: f64,
    pub longitude: f64,
    pub radius_km: f64,
}

/// The question's intent; each structured one has its typed plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "intent", rename_all = "snake_case")]
pub enum Intent {
    /// Where a vehicle was at an instant (its last position at or before it).
    Position { vehicle: String, at: DateTime<Utc> },
    /// Shipments delivered after their appointment, or not delivered when it passed.
    LateShipments { scac: Option<String> },
    /// Events of some kinds (a safety behaviour), optionally near a place.
    Events { kinds: Vec<String>, behavior: Option<String>, near: Option<Near> },
    /// Every record about one entity.
    About { entity: Entity },
    /// How long trucks stood at each facility (of one carrier), over the
    /// window: the long analysis.
    Dwell { scac: Option<String> },
    /// Anything else: answered by similarity of meaning.
    Semantic { text: String },
}

impl Intent {
    /// The intent's name, as its JSON tag and metrics label say it.
    pub fn name(&self) -> &'static str {
        match self {
            Intent::Position { .. } => "position",
            Intent::LateShipments { .. } => "late_shipments",
            Intent::Events { .. } => "events",
            Intent::About { .. } => "about",
            Intent::Dwell { .. } => "dwell",
            Intent::Semantic { .. } => "semantic",
        }
    }
}

/// A question read: its intent and the event-time window it is limited to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    #[serde(flatten)]
    pub intent: Intent,
    pub window: Option<(DateTime<Utc>, DateTime<Utc>)>,
}

/// Reads `text` at `now` (the clock, or the question's `as_of`).
pub fn read(text: &str, now: DateTime<Utc>) -> Result<Reading, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("the question is empty".into());
    }
    let (When { window, at }, time_words) = when::read(text, now)?;
    let words: Vec<&str> =
        text.split_whitespace().map(|w| w.trim_matches(&['?', ',', '.', '"'][..])).collect();
    let lower = text.to_lowercase();
    let said = |options: &[&str]| words.iter().any(|w| options.contains(&w.to_lowercase().as_str()));
    let shipment = reference(&words);
    let vehicle = vehicle(&words);
    let mut window = window;
    let intent = if said(&["dwell", "dwelled", "dwelling"]) {
        // An analysis over everything stored would never end: 30 days unless said.
        window = window.or(Some((now - chrono::Duration::days(DEFAULT_DWELL_DAYS), now)));
        Intent::Dwell { scac: scac(&words) }
    } else if said(&["where", "position", "location"]) && vehicle.is_some() {
        Intent::Position { vehicle: vehicle.unwrap_or_default(), at: at.unwrap_or(now) }
    } else if said(&["late", "overdue"]) || lower.contains("missed appointment") {
        Intent::LateShipments { scac: scac(&words) }
    } else if let Some(reference) = shipment {
        Intent::About { entity: Entity::Shipment { reference } }
    } else if let Some((kinds, behavior)) = event_kinds(&lower) {
        let near = near(&words, &time_words, &lower)?;
        Intent::Events { kinds, behavior, near }
    } else if let Some(vehicle) = vehicle {
        Intent::About { entity: Entity::Vehicle { vehicle } }
    } else {
        Intent::Semantic { text: text.to_string() }
    };
    Ok(Reading { intent, window })
}

/// `PRO 84213377`, `PRO84213377`, `BOL 5528114`: the reference as stored.
fn reference(words: &[&str]) -> Option<String> {
    words.iter().enumerate().find_map(|(i, w)| {
        let upper = w.to_uppercase();
        ["PRO", "BOL"].iter().find_map(|prefix| {
            let rest = upper.strip_prefix(prefix)?.trim_start_matches(['#', '-', ':']);
            let digits = if rest.is_empty() { words.get(i + 1)?.trim_start_matches('#') } else { rest };
            (digits.len() >= 5 && digits.chars().all(|c| c.is_ascii_digit()))
                .then(|| format!("{prefix}{digits}"))
        })
    })
}

/// `truck 12` / `vehicle 12` / `unit 12` (a name), or a long number (an id).
fn vehicle(words: &[&str]) -> Option<String> {
    let long_id = |w: &str| w.len() >= 9 && w.chars().all(|c| c.is_ascii_digit());
    words.iter().enumerate().find_map(|(i, w)| {
        let w = w.trim_end_matches("'s");
        if long_id(w) {
            return Some(w.to_string());
        }
        let noun = w.to_lowercase();
        let n = words.get(i + 1)?.trim_end_matches("'s");
        match noun.as_str() {
            "truck" | "vehicle" | "unit" if long_id(n) => Some(n.to_string()),
            "truck" | "vehicle" | "unit" if n.chars().all(|c| c.is_ascii_digit()) => {
                Some(format!("Truck {n}"))
            }
            _ => None,
        }
    })
}

/// The word after "carrier"/"scac", else a capitalised 2–4 letter word.
fn scac(words: &[&str]) -> Option<String> {
    let code = |w: &str| {
        let w = w.trim_end_matches("'s").trim_end_matches('\'');
        (2..=4).contains(&w.len()) && w.chars().all(|c| c.is_ascii_alphabetic())
    };
    let after = words.windows(2).find_map(|p| {
        (["carrier", "scac"].contains(&p[0].to_lowercase().as_str()) && code(p[1])).then(|| p[1].to_string())
    });
    let capital = || {
        words
            .iter()
            .find(|w| code(w) && w.chars().all(|c| c.is_ascii_uppercase()) && !NOT_SCAC.contains(w))
            .map(|w| w.to_string())
    };
    after.or_else(capital).map(|w| w.trim_end_matches("'s").trim_end_matches('\'').to_uppercase())
}

fn event_kinds(lower: &str) -> Option<(Vec<String>, Option<String>)> {
    if let Some((_, b)) = BEHAVIORS.iter().find(|(words, _)| lower.contains(words)) {
        return Some((vec!["SafetyEvent".into()], Some(b.to_string())));
    }
    KINDS
        .iter()
        .find(|(words, _)| lower.contains(words))
        .map(|(_, kinds)| (kinds.iter().map(|k| k.to_string()).collect(), None))
}

/// "near Dallas", "around Kansas City", "within 30 km of Memphis", "within 20 mi of St Louis".
fn near(words: &[&str], time_words: &[usize], lower: &str) -> Result<Option<Near>, String> {
    let is = |i: usize, options: &[&str]| options.contains(&words[i].to_lowercase().as_str());
    let starts: Vec<usize> = (0..words.len()).filter(|&i| is(i, &["near", "around", "of", "in"])).collect();
    let resolve = |start: usize| {
        (1..=3).rev().find_map(|len| {
            let span = start + 1..(start + 1 + len).min(words.len());
            if span.is_empty() || span.clone().any(|i| time_words.contains(&i)) {
                return None;
            }
            find_place(&words[span].join(" "))
        })
    };
    let Some(place) = starts.iter().find_map(|&start| resolve(start)) else {
        return match starts.iter().find(|&&i| is(i, &["near", "around"])) {
            Some(&i) => Err(format!(
                "unknown place {:?} after {:?} (known: the hubs and towns of the gazetteer)",
                words.get(i + 1).copied().unwrap_or(""),
                words[i]
            )),
            None => Ok(None),
        };
    };
    let radius_km =
        match lower.split("within ").nth(1).map(|r| r.split_whitespace().take(2).collect::<Vec<_>>()) {
            Some(r) if r.len() == 2 => {
                let n: f64 = r[0]
                    .parse()
                    .map_err(|_| format!("\"within {} {}\": the radius must be a number", r[0], r[1]))?;
                match r[1] {
                    "km" => n,
                    "mi" | "miles" | "mile" => n * 1.609_344,
                    unit => return Err(format!("\"within {n} {unit}\": say km or mi")),
                }
            }
            _ => DEFAULT_RADIUS_KM,
        };
    if !(0.0..=2000.0).contains(&radius_km) || radius_km == 0.0 {
        return Err(format!("a radius of {radius_km} km is out of range (0 to 2000 km)"));
    }
    Ok(Some(Near { place: place.name(), latitude: place.lat, longitude: place.lon, radius_km }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-11-20T06:00:00Z".parse().unwrap()
    }

    fn intent(q: &str) -> Intent {
        read(q, now()).unwrap().intent
    }

    #[test]
    fn the_issues_questions_get_their_intents() {
        assert_eq!(
            intent("where was truck 12 at 14:00 yesterday"),
            Intent::Position { vehicle: "Truck 12".into(), at: "2026-11-19T14:00:00Z".parse().unwrap() }
        );
        assert_eq!(
            intent("which of carrier ODFL's shipments are late"),
            Intent::LateShipments { scac: Some("ODFL".into()) }
        );
        assert_eq!(
            intent("late shipments for SAIA last week"),
            Intent::LateShipments { scac: Some("SAIA".into()) }
        );
        let Intent::Events { kinds, behavior, near: Some(near) } =
            intent("harsh braking near Dallas last week")
        else {
            panic!("not an events intent");
        };
        assert_eq!((kinds, behavior.as_deref()), (vec!["SafetyEvent".to_string()], Some("HarshBrake")));
        assert_eq!((near.place.as_str(), near.radius_km), ("DALLAS, TX", DEFAULT_RADIUS_KM));
        assert_eq!(
            intent("everything about PRO 84213377"),
            Intent::About { entity: Entity::Shipment { reference: "PRO84213377".into() } }
        );
        assert_eq!(
            intent("loads delayed by a reefer problem"),
            Intent::Semantic { text: "loads delayed by a reefer problem".into() }
        );
    }

    #[test]
    fn radii_units_and_vehicle_ids_are_read() {
        let Intent::Events { near: Some(near), .. } =
            intent("speeding within 20 mi of Kansas City yesterday")
        else {
            panic!("not an events intent");
        };
        assert_eq!(near.place, "KANSAS CITY, MO");
        assert!((near.radius_km - 32.19).abs() < 0.01);
        assert_eq!(
            intent("everything about vehicle 281474977000012"),
            Intent::About { entity: Entity::Vehicle { vehicle: "281474977000012".into() } }
        );
        assert_eq!(
            intent("pro#12345678 history"),
            Intent::About { entity: Entity::Shipment { reference: "PRO12345678".into() } }
        );
    }

    #[test]
    fn bad_questions_say_what_is_wrong() {
        assert_eq!(read("  ", now()).unwrap_err(), "the question is empty");
        assert!(
            read("harsh braking near Atlantis", now()).unwrap_err().contains("unknown place \"Atlantis\"")
        );
        assert!(read("speeding within 5000 km of Dallas", now()).unwrap_err().contains("out of range"));
        assert!(read("speeding within 5 parsecs of Dallas", now()).unwrap_err().contains("say km or mi"));
    }
}
