//! The generator's ground truth: what the world it generated actually did
//! (trips with their timed stretches, shipments and whether they were late,
//! the safety events and geofence crossings it sent), written as one JSON
//! file so an evaluation reads answers the code under test did not compute.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::world::{DELAYS, World};
use crate::places::{HUBS, nearest_hub, nearest_place};

/// What the fleet noted of the events it sent, as it sent them.
#[derive(Debug, Default)]
pub struct Sent {
    pub events: u64,
    pub until: Option<DateTime<Utc>>,
    pub safety_events: Vec<SafetyTruth>,
    pub geofences: Vec<GeofenceTruth>,
    /// Per shipment (by index), when each of its 214 statuses happened, by code.
    pub statuses: Vec<BTreeMap<&'static str, DateTime<Utc>>>,
}

#[derive(Debug, Serialize)]
pub struct Truth {
    pub seed: u64,
    /// The world's span: events fall in `[from, until]`.
    pub from: DateTime<Utc>,
    pub until: DateTime<Utc>,
    /// The time of the last event sent (the run may stop before `until`).
    pub sent_until: Option<DateTime<Utc>>,
    pub events_sent: u64,
    pub hubs: Vec<HubTruth>,
    pub trips: Vec<TripTruth>,
    pub shipments: Vec<ShipmentTruth>,
    pub safety_events: Vec<SafetyTruth>,
    pub geofences: Vec<GeofenceTruth>,
}

#[derive(Debug, Serialize)]
pub struct HubTruth {
    pub id: String,
    pub city: &'static str,
    pub state: &'static str,
    pub latitude: f64,
    pub longitude: f64,
}

/// A trip as planned: the truck is at `along` of the straight route from
/// `from` to `to` over each stretch (moving from `from_fraction` to `to_fraction`).
#[derive(Debug, Serialize)]
pub struct TripTruth {
    pub truck_id: String,
    pub truck_name: String,
    pub driver_id: String,
    pub from: String,
    pub to: String,
    pub road_km: f64,
    pub stretches: Vec<StretchTruth>,
}

#[derive(Debug, Serialize)]
pub struct StretchTruth {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub from_fraction: f64,
    pub to_fraction: f64,
    pub duty: &'static str,
    pub delay_reason: Option<&'static str>,
}

#[derive(Debug, Serialize)]
pub struct ShipmentTruth {
    pub pro: String,
    pub bol: String,
    pub scac: &'static str,
    pub truck_id: String,
    pub shipper: &'static str,
    pub consignee: &'static str,
    pub origin: String,
    pub destination: String,
    pub tendered_at: DateTime<Utc>,
    pub appointment: DateTime<Utc>,
    pub picked_up_at: DateTime<Utc>,
    /// Minutes the truck stood at the shipper (its X3 arrived → AF picked
    /// up) and at the consignee (X1 arrived → D1 delivered), where both
    /// statuses were sent inside the span.
    pub pickup_dwell_minutes: Option<f64>,
    pub delivery_dwell_minutes: Option<f64>,
    /// When its D1 (delivered) status was sent; `None` if the run ended first.
    pub delivered_at: Option<DateTime<Utc>>,
    /// Minutes past the appointment, for a delivered shipment that was late.
    pub late_by_minutes: Option<i64>,
    pub delay_code: Option<&'static str>,
    pub delay_reason: Option<&'static str>,
    pub delay_minutes: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SafetyTruth {
    pub event_id: String,
    pub truck_id: String,
    pub time: DateTime<Utc>,
    pub latitude: f64,
    pub longitude: f64,
    pub behavior: &'static str,
    pub severity: &'static str,
    /// The nearest hub and how far it is, for "near Dallas" questions.
    pub nearest_hub: String,
    pub nearest_hub_km: f64,
    pub near: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct GeofenceTruth {
    pub event_id: String,
    pub truck_id: String,
    pub hub: String,
    pub time: DateTime<Utc>,
    pub enter: bool,
}

fn hub_name(h: usize) -> String {
    HUBS[h].name()
}

impl Truth {
    /// The world's trips and shipments that had begun by the last event sent
    /// (as planned, with their deliveries as far as they went), and what `sent` noted.
    pub fn of(world: &World, seed: u64, span: (DateTime<Utc>, DateTime<Utc>), sent: &Sent) -> Truth {
        let hubs = HUBS
            .iter()
            .enumerate()
            .map(|(i, h)| HubTruth {
                id: super::render::hub_id(i),
                city: h.city,
                state: h.state,
                latitude: h.lat,
                longitude: h.lon,
            })
            .collect();
        let started = |t: DateTime<Utc>| sent.until.is_some_and(|s| t <= s);
        let trips = world
            .trips
            .iter()
            .filter(|t| started(t.stretches[0].start))
            .map(|t| {
                let truck = &world.trucks[t.truck];
                TripTruth {
                    truck_id: truck.id.clone(),
                    truck_name: truck.name.clone(),
                    driver_id: truck.driver_id.clone(),
                    from: hub_name(t.from),
                    to: hub_name(t.to),
                    road_km: t.road_km.round(),
                    stretches: t
                        .stretches
                        .iter()
                        .map(|s| StretchTruth {
                            start: s.start,
                            end: s.end,
                            from_fraction: s.from,
                            to_fraction: s.to,
                            duty: s.duty.as_str(),
                            delay_reason: s.delay.map(|d| DELAYS[d].1),
                        })
                        .collect(),
                }
            })
            .collect();
        let shipments = world
            .shipments
            .iter()
            .enumerate()
            .filter(|(_, s)| started(s.tendered_at))
            .map(|(i, s)| {
                let sent_at = |code: &str| sent.statuses.get(i).and_then(|s| s.get(code)).copied();
                let delivered_at = sent_at("D1");
                let dwell = |arrived: &str, left: &str| match (sent_at(arrived), sent_at(left)) {
                    (Some(a), Some(l)) if a >= span.0 => Some((l - a).num_seconds() as f64 / 60.0),
                    _ => None,
                };
                ShipmentTruth {
                    pro: s.pro.clone(),
                    bol: s.bol.clone(),
                    scac: s.scac,
                    truck_id: world.trucks[s.truck].id.clone(),
                    shipper: s.shipper,
                    consignee: s.consignee,
                    origin: hub_name(s.origin),
                    destination: hub_name(s.destination),
                    tendered_at: s.tendered_at,
                    appointment: s.appointment,
                    picked_up_at: s.picked_up_at,
                    pickup_dwell_minutes: dwell("X3", "AF"),
                    delivery_dwell_minutes: dwell("X1", "D1"),
                    delivered_at,
                    late_by_minutes: delivered_at
                        .filter(|d| *d > s.appointment)
                        .map(|d| (d - s.appointment).num_minutes().max(1)),
                    delay_code: s.delay.map(|(d, _)| DELAYS[d].0),
                    delay_reason: s.delay.map(|(d, _)| DELAYS[d].1),
                    delay_minutes: s.delay.map(|(_, m)| m),
                }
            })
            .collect();
        Truth {
            seed,
            from: span.0,
            until: span.1,
            sent_until: sent.until,
            events_sent: sent.events,
            hubs,
            trips,
            shipments,
            safety_events: sent.safety_events.clone(),
            geofences: sent.geofences.clone(),
        }
    }
}

impl SafetyTruth {
    /// A safety event sent at `pos`, with its nearest hub and place.
    pub fn at(
        (event_id, truck_id): (String, String),
        time: DateTime<Utc>,
        pos: (f64, f64),
        behavior: &'static str,
        severity: &'static str,
    ) -> SafetyTruth {
        let (hub, km) = nearest_hub(pos);
        let near = nearest_place(pos).0;
        SafetyTruth {
            event_id,
            truck_id,
            time,
            latitude: pos.0,
            longitude: pos.1,
            behavior,
            severity,
            nearest_hub: hub.name(),
            nearest_hub_km: (km * 10.0).round() / 10.0,
            near: near.name(),
        }
    }
}
