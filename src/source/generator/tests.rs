//! The generated world's invariants, read back from the events it sends
//! (their wire form, not the pipeline's parse) against its ground truth.

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDateTime;
use serde_json::Value;

use super::truth::TripTruth;
use super::*;
use crate::pipeline::parse::parse;
use crate::places::{all_places, along, bearing, km_between, nearest_place};

fn settings(poison_fraction: f64) -> GeneratorSettings {
    GeneratorSettings {
        poison_fraction,
        vehicles: 8,
        partitions: 4,
        days: 3.0,
        ..GeneratorSettings::clean(7)
    }
}

/// Three days of eight trucks: every event, and the truth (generated once for all tests).
fn world() -> &'static (Vec<RawEvent>, Truth) {
    static WORLD: std::sync::OnceLock<(Vec<RawEvent>, Truth)> = std::sync::OnceLock::new();
    WORLD.get_or_init(|| {
        let mut fleet = Fleet::new(settings(0.0));
        let events: Vec<RawEvent> = fleet.by_ref().collect();
        (events, fleet.truth())
    })
}

fn json(e: &RawEvent) -> Value {
    serde_json::from_slice(&e.payload).unwrap()
}

fn time(v: &Value) -> DateTime<Utc> {
    v.as_str().unwrap().parse().unwrap()
}

fn hub_at(truth: &Truth, name: &str) -> (f64, f64) {
    let h = truth.hubs.iter().find(|h| format!("{}, {}", h.city, h.state) == name).unwrap();
    (h.latitude, h.longitude)
}

/// The truck's trip under way at `t` (from loading to delivered), per the truth.
fn trip_at<'a>(truth: &'a Truth, truck: &str, t: DateTime<Utc>) -> Option<&'a TripTruth> {
    truth.trips.iter().find(|trip| {
        trip.truck_id == truck
            && trip.stretches[0].start <= t
            && t <= trip.stretches[trip.stretches.len() - 1].end
    })
}

/// Where the truth says the truck was at `t`.
fn truth_position(truth: &Truth, truck: &str, t: DateTime<Utc>) -> (f64, f64) {
    let trip = trip_at(truth, truck, t).unwrap_or_else(|| panic!("{truck} has no trip at {t}"));
    let s = trip.stretches.iter().find(|s| t <= s.end).unwrap();
    let span = (s.end - s.start).num_milliseconds().max(1) as f64;
    let done = ((t - s.start).num_milliseconds() as f64 / span).clamp(0.0, 1.0);
    let fraction = s.from_fraction + (s.to_fraction - s.from_fraction) * done;
    along(hub_at(truth, &trip.from), hub_at(truth, &trip.to), fraction)
}

fn samsara<'a>(events: &'a [RawEvent], kind: &'a str) -> impl Iterator<Item = Value> + 'a {
    events.iter().filter(|e| e.format == Format::Samsara).map(json).filter(move |v| v["eventType"] == kind)
}

/// Every EDI transaction sent: (set, its segments split into elements).
fn transactions(events: &[RawEvent]) -> Vec<(String, Vec<Vec<String>>)> {
    let mut out = Vec::new();
    for e in events.iter().filter(|e| e.format == Format::Edi) {
        let text = String::from_utf8(e.payload.clone()).unwrap();
        let mut current: Option<(String, Vec<Vec<String>>)> = None;
        for seg in text.split('~').filter(|s| !s.is_empty()) {
            let els: Vec<String> = seg.split('*').map(str::to_owned).collect();
            match els[0].as_str() {
                "ST" => current = Some((els[1].clone(), Vec::new())),
                "SE" => out.extend(current.take()),
                _ => {
                    if let Some((_, segs)) = current.as_mut() {
                        segs.push(els);
                    }
                }
            }
        }
    }
    out
}

fn segment<'a>(segs: &'a [Vec<String>], id: &str) -> &'a Vec<String> {
    segs.iter().find(|s| s[0] == id).unwrap_or_else(|| panic!("no {id} in {segs:?}"))
}

fn edi_time(date: &str, time: &str) -> DateTime<Utc> {
    NaiveDateTime::parse_from_str(&format!("{date}{time}"), "%Y%m%d%H%M").unwrap().and_utc()
}

#[test]
fn clean_traffic_parses_offsets_are_dense_and_the_events_span_the_days() {
    let (events, truth) = world();
    let mut seen: HashMap<(String, i32), i64> = HashMap::new();
    for e in events {
        let records = parse(e).unwrap_or_else(|r| panic!("{r}: {}", String::from_utf8_lossy(&e.payload)));
        assert!(!records.is_empty());
        let next = seen.entry((e.origin.topic.clone(), e.origin.partition)).or_insert(0);
        assert_eq!(e.origin.offset, *next);
        *next += 1;
    }
    assert!(seen.keys().any(|(t, _)| t == EDI_TOPIC) && seen.keys().any(|(t, _)| t == SAMSARA_TOPIC));
    let times: Vec<DateTime<Utc>> =
        samsara(events, "VehicleLocation").map(|v| time(&v["eventTime"])).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "events in time order");
    assert!(times[0] - truth.from < Duration::hours(4), "{} starts late", times[0]);
    assert!(truth.until - times[times.len() - 1] < Duration::hours(12), "ends early");
    assert!(*times.last().unwrap() <= truth.until);
    assert_eq!(truth.events_sent, events.len() as u64);
}

#[test]
fn poison_fraction_is_honoured_and_same_seed_repeats() {
    let mut a = Fleet::new(settings(0.1));
    let mut b = Fleet::new(settings(0.1));
    let mut bad = 0;
    for _ in 0..3000 {
        let (x, y) = (a.next_event().unwrap(), b.next_event().unwrap());
        assert_eq!(x.payload, y.payload);
        if parse(&x).is_err() {
            bad += 1;
        }
    }
    assert!((200..400).contains(&bad), "{bad} poison events of 3000 at 10%");
}

#[test]
fn a_ping_is_where_the_truth_says_labelled_with_its_nearest_place_heading_and_speed_from_the_motion() {
    let (events, truth) = world();
    let mut pings = 0;
    for v in samsara(events, "VehicleLocation") {
        let (truck, at) = (v["data"]["vehicle"]["id"].as_str().unwrap(), time(&v["eventTime"]));
        let l = &v["data"]["location"];
        let pos = (l["latitude"].as_f64().unwrap(), l["longitude"].as_f64().unwrap());
        assert!(km_between(pos, truth_position(truth, truck, at)) < 0.5, "{truck} at {at}");
        let (near, km) = nearest_place(pos);
        assert_eq!(l["reverseGeo"]["formattedLocation"], format!("near {}, {}", near.city, near.state));
        assert!(km < 130.0, "{pos:?} labelled with a place {km:.0} km away");
        let trip = trip_at(truth, truck, at).unwrap();
        let course = bearing(hub_at(truth, &trip.from), hub_at(truth, &trip.to));
        let heading = l["headingDegrees"].as_f64().unwrap();
        let off = (heading - course + 540.0) % 360.0 - 180.0;
        assert!(off.abs() <= 4.0, "heading {heading} on a course of {course:.0}");
        let mph = l["speedMilesPerHour"].as_f64().unwrap();
        assert!((48.0..70.0).contains(&mph), "{mph} mph");
        pings += 1;
    }
    assert!(pings > 10_000, "{pings} pings");
}

#[test]
fn trips_progress_toward_their_destination_and_pings_come_every_5_to_30_s_while_driving() {
    let (events, truth) = world();
    let mut last: BTreeMap<String, (DateTime<Utc>, f64, String)> = BTreeMap::new();
    for v in samsara(events, "VehicleLocation") {
        let (truck, at) = (v["data"]["vehicle"]["id"].as_str().unwrap().to_owned(), time(&v["eventTime"]));
        let l = &v["data"]["location"];
        let trip = trip_at(truth, &truck, at).unwrap();
        let pos = (l["latitude"].as_f64().unwrap(), l["longitude"].as_f64().unwrap());
        let to_go = km_between(pos, hub_at(truth, &trip.to));
        let key = format!("{}{}", trip.stretches[0].start, trip.to);
        if let Some((t, before, k)) = last.get(&truck)
            && *k == key
        {
            assert!(
                to_go <= before + 0.05,
                "{truck} moved away from {}: {before:.2} → {to_go:.2} km",
                trip.to
            );
            let gap = at - *t;
            // Longer gaps are stops (breaks, rests, delays), when no ping is sent.
            assert!(gap >= Duration::seconds(5) || gap < Duration::zero(), "{truck} pinged {gap} apart");
        }
        last.insert(truck, (at, to_go, key));
    }
    assert_eq!(last.len(), 8, "every truck drove");
    let mut odometers: BTreeMap<String, f64> = BTreeMap::new();
    for v in samsara(events, "VehicleStats") {
        let truck = v["data"]["vehicle"]["id"].as_str().unwrap().to_owned();
        let reading = v["data"]["obdOdometerMeters"]["value"].as_f64().unwrap();
        let before = odometers.insert(truck.clone(), reading).unwrap_or(0.0);
        assert!(reading >= before, "{truck}'s odometer went back from {before} to {reading}");
    }
}

#[test]
fn duty_changes_follow_the_hours_of_service_shape() {
    let (events, _) = world();
    // Per driver: current status, since when, hours driven since the last 10 h rest, and since a 30 min break.
    let mut drivers: BTreeMap<String, (String, DateTime<Utc>, f64, f64)> = BTreeMap::new();
    let mut changes = 0;
    for v in samsara(events, "HosStatusChange") {
        let d = &v["data"];
        let (driver, at) = (d["driver"]["id"].as_str().unwrap().to_owned(), time(&v["eventTime"]));
        let (previous, current) =
            (d["previousStatus"].as_str().unwrap(), d["currentStatus"].as_str().unwrap());
        assert_ne!(previous, current);
        if let Some((status, since, shift, stint)) = drivers.get_mut(&driver) {
            assert_eq!(status, previous, "{driver} changed from a status it was not in");
            let h = (at - *since).num_seconds() as f64 / 3600.0;
            if status == "driving" {
                (*shift, *stint) = (*shift + h, *stint + h);
                assert!(*shift <= 11.0 + 1e-3, "{driver} drove {shift:.2} h in a shift");
                assert!(*stint <= 8.0 + 1e-3, "{driver} drove {stint:.2} h without a break");
            } else if h >= 10.0 - 1e-3 {
                (*shift, *stint) = (0.0, 0.0);
            } else if h >= 0.5 - 1e-3 {
                *stint = 0.0;
            }
            (*status, *since) = (current.to_owned(), at);
        } else {
            drivers.insert(driver, (current.to_owned(), at, 0.0, 0.0));
        }
        changes += 1;
    }
    assert_eq!(drivers.len(), 8);
    assert!(changes > 100, "{changes} duty changes");
}

#[test]
fn every_214_is_on_its_carriers_truck_during_that_trucks_trip_in_order() {
    let (events, truth) = world();
    let shipments: BTreeMap<&str, &truth::ShipmentTruth> =
        truth.shipments.iter().map(|s| (s.pro.as_str(), s)).collect();
    let trailers: BTreeMap<String, String> = samsara(events, "VehicleLocation")
        .map(|v| (v["data"]["vehicle"]["id"].as_str().unwrap().to_owned(), String::new()))
        .collect();
    assert_eq!(trailers.len(), 8);
    let mut codes: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (set, segs) in transactions(events) {
        let pro = match set.as_str() {
            "214" => segment(&segs, "B10")[1].clone(),
            "204" => segment(&segs, "B2")[4].clone(),
            "990" => segment(&segs, "B1")[2].clone(),
            _ => segment(&segs, "B3")[3].clone(),
        };
        let s = shipments[pro.as_str()];
        if set != "214" {
            codes.entry(pro).or_default().push(set);
            continue;
        }
        assert_eq!(segment(&segs, "B10")[3], s.scac, "{pro} reported by another carrier");
        let at7 = segment(&segs, "AT7");
        // Sent at minute precision: the trip spans the status's minute.
        let minute = edi_time(&at7[5], &at7[6]);
        let at = match trip_at(truth, &s.truck_id, minute) {
            Some(_) => minute,
            None => minute + Duration::seconds(59),
        };
        let trip = trip_at(truth, &s.truck_id, at)
            .unwrap_or_else(|| panic!("{pro} status {} at {at} with its truck on no trip", at7[1]));
        assert_eq!((trip.from.as_str(), trip.to.as_str()), (s.origin.as_str(), s.destination.as_str()));
        let ms1 = segment(&segs, "MS1");
        let place = all_places().find(|p| p.city == ms1[1] && p.state == ms1[2]).unwrap();
        let km = km_between(place.at(), truth_position(truth, &s.truck_id, at));
        assert!(km < 150.0, "{pro} {} reported at {} {km:.0} km from its truck", at7[1], ms1[1]);
        codes.entry(pro).or_default().push(at7[1].clone());
    }
    let order = ["204", "990", "X3", "AF", "X6", "SD", "X1", "D1", "210"];
    // Shipments tendered before the span opened are seen from the middle on.
    let whole = codes.values().filter(|seen| seen[0] == "204").count();
    assert!(whole * 2 > codes.len(), "{whole} of {} shipments seen from their tender", codes.len());
    for (pro, seen) in codes.iter().filter(|(_, seen)| seen[0] == "204") {
        let rank: Vec<usize> = seen.iter().map(|c| order.iter().position(|o| o == c).unwrap()).collect();
        let mut sorted = rank.clone();
        sorted.sort();
        // X6 and SD interleave on the road; otherwise every step comes in order.
        let coarse = |r: &usize| if *r == 5 { 4 } else { *r };
        assert!(rank.iter().map(coarse).eq(sorted.iter().map(coarse)), "{pro}: {seen:?}");
    }
}

#[test]
fn late_shipments_are_exactly_those_delivered_after_their_appointment() {
    let (events, truth) = world();
    let (mut appointment, mut delivered, mut delayed) = (BTreeMap::new(), BTreeMap::new(), BTreeSet::new());
    for (set, segs) in transactions(events) {
        match set.as_str() {
            "204" => {
                let g62 = segs.iter().find(|s| s[0] == "G62" && s[1] == "68").unwrap();
                appointment.insert(segment(&segs, "B2")[4].clone(), edi_time(&g62[2], &g62[4]));
            }
            "214" => {
                let (pro, at7) = (segment(&segs, "B10")[1].clone(), segment(&segs, "AT7"));
                match at7[1].as_str() {
                    "D1" => drop(delivered.insert(pro, edi_time(&at7[5], &at7[6]))),
                    "SD" => drop(delayed.insert(pro)),
                    _ => {}
                }
            }
            _ => {}
        }
    }
    // Shipments whose tender and delivery both fall in the span.
    delivered.retain(|pro, _| appointment.contains_key(pro));
    let late_on_the_wire: BTreeSet<&String> =
        delivered.iter().filter(|(pro, d)| **d > appointment[*pro]).map(|(pro, _)| pro).collect();
    let late_in_truth: BTreeSet<&String> = truth
        .shipments
        .iter()
        .filter(|s| s.late_by_minutes.is_some() && delivered.contains_key(&s.pro))
        .map(|s| &s.pro)
        .collect();
    assert_eq!(late_on_the_wire, late_in_truth);
    let share = late_in_truth.len() as f64 / delivered.len() as f64;
    assert!((0.03..0.4).contains(&share), "{} of {} late", late_in_truth.len(), delivered.len());
    for pro in &late_in_truth {
        assert!(delayed.contains(*pro), "{pro} is late without a delay status");
    }
    for s in truth.shipments.iter().filter(|s| s.delivered_at.is_some()) {
        assert_eq!(s.delivered_at.map(|d| d > s.appointment), Some(s.late_by_minutes.is_some()), "{}", s.pro);
    }
}

#[test]
fn geofences_fire_at_their_hub_and_safety_events_lie_on_the_route() {
    let (events, truth) = world();
    let mut crossings = 0;
    for v in samsara(events, "GeofenceEnter").chain(samsara(events, "GeofenceExit")) {
        let (truck, at) = (v["data"]["vehicle"]["id"].as_str().unwrap(), time(&v["eventTime"]));
        let hub = v["data"]["address"]["formattedAddress"].as_str().unwrap();
        let km = km_between(truth_position(truth, truck, at), hub_at(truth, hub));
        assert!(km < 1.0, "{truck} crossed the {hub} fence {km:.1} km away");
        crossings += 1;
    }
    assert_eq!(crossings, truth.geofences.len());
    assert!(crossings >= 16, "{crossings} crossings");
    let (mut behaviors, mut severities) = (BTreeSet::new(), BTreeSet::new());
    let safety: Vec<Value> = samsara(events, "SafetyEvent").collect();
    for v in &safety {
        let (truck, at) = (v["data"]["vehicle"]["id"].as_str().unwrap(), time(&v["eventTime"]));
        let l = &v["data"]["location"];
        let pos = (l["latitude"].as_f64().unwrap(), l["longitude"].as_f64().unwrap());
        assert!(km_between(pos, truth_position(truth, truck, at)) < 0.5);
        behaviors.insert(v["data"]["behaviorLabel"].as_str().unwrap().to_owned());
        severities.insert(v["data"]["severity"].as_str().unwrap().to_owned());
    }
    assert_eq!(safety.len(), truth.safety_events.len());
    assert!(behaviors.len() >= 3 && severities.len() >= 2, "{behaviors:?} {severities:?}");
}

#[test]
fn only_one_format_sends_that_source_of_the_same_world() {
    let mut edi = Fleet::new(GeneratorSettings { only: Some(Format::Edi), ..settings(0.0) });
    let all: Vec<RawEvent> =
        Fleet::new(settings(0.0)).filter(|e| e.format == Format::Edi).take(200).collect();
    let only: Vec<RawEvent> = edi.by_ref().take(200).collect();
    assert_eq!(
        all.iter().map(|e| &e.payload).collect::<Vec<_>>(),
        only.iter().map(|e| &e.payload).collect::<Vec<_>>()
    );
}
