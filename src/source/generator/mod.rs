//! Synthetic traffic from a small, deterministic model of a fleet: trucks
//! driving trips between US freight hubs under the hours-of-service shape,
//! pinging every 5–30 s while they drive, and the carrier EDI of the
//! shipments they carry (tender, response, statuses along the actual trip,
//! invoice), a share of them late. The same seed and span make the same
//! traffic; the ground truth can be written beside it (`truth`). A
//! configurable fraction of events is deliberately poison (broken JSON,
//! impossible positions, bad EDI envelopes, non-UTF-8).

mod render;
mod truth;
mod world;

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::path::PathBuf;

use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, Duration, TimeZone, Utc};
use governor::{Quota, RateLimiter};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use self::truth::Truth;
use self::truth::{GeofenceTruth, SafetyTruth, Sent};
use self::world::{DutyStatus, Happening, World};
use super::Source;
use crate::config::{EDI_TOPIC, SAMSARA_TOPIC};
use crate::model::{Format, Origin, RawEvent};
use crate::places::{HUBS, bearing, nearest_place};

pub use crate::places::Place;

const BEHAVIORS: &[&str] = &["HarshBrake", "HarshAcceleration", "HarshTurn", "Speeding", "FollowingDistance"];

#[derive(Debug, Clone)]
pub struct GeneratorSettings {
    /// How many events at most; `None` runs until the span ends or shutdown.
    pub events: Option<u64>,
    /// Events per second; `None` is as fast as the pipeline takes them.
    pub rate: Option<NonZeroU32>,
    pub poison_fraction: f64,
    /// Only this source's events (`produce --format`); `None` sends both.
    pub only: Option<Format>,
    pub vehicles: usize,
    pub partitions: i32,
    pub seed: u64,
    /// The world runs `days` of driving ending at `until`.
    pub days: f64,
    pub until: DateTime<Utc>,
    /// Where to write the ground truth when the source ends.
    pub truth: Option<PathBuf>,
}

/// The fixed end of the world the tests and load runs generate (so a seed repeats).
pub fn fixed_until() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 20, 6, 0, 0).single().unwrap_or_default()
}

impl GeneratorSettings {
    /// Valid traffic of the configuration defaults' fleet over three months ending
    /// at a fixed instant: more events than any test or load run takes.
    pub fn clean(seed: u64) -> Self {
        GeneratorSettings {
            events: None,
            rate: None,
            poison_fraction: 0.0,
            only: None,
            vehicles: 250,
            partitions: 6,
            seed,
            days: 90.0,
            until: fixed_until(),
            truth: None,
        }
    }
}

/// Produces the event stream of the world, in time order; shared by the
/// generator source and `produce`. Ends when the span does.
pub struct Fleet {
    /// What the world does (trips, delays, ping intervals): the same for a
    /// seed whatever is sent.
    plan: StdRng,
    /// How it is sent (event ids, sensor noise, poison): only for events sent.
    wire: StdRng,
    world: World,
    settings: GeneratorSettings,
    interchange: u64,
    offsets: HashMap<(&'static str, i32), i64>,
    from: DateTime<Utc>,
    sent: Sent,
}

impl Fleet {
    pub fn new(settings: GeneratorSettings) -> Self {
        let mut plan = StdRng::seed_from_u64(settings.seed);
        let wire = StdRng::seed_from_u64(settings.seed ^ 0x9e37_79b9_7f4a_7c15);
        let from = settings.until - Duration::milliseconds((settings.days.max(0.0) * 86_400_000.0) as i64);
        let world = World::new(&mut plan, settings.vehicles, from);
        // Control numbers start where the seed says, so runs with other seeds
        // produce other interchanges (and so other record ids).
        let interchange = plan.random_range(100_000..900_000_000);
        Fleet {
            plan,
            wire,
            world,
            settings,
            interchange,
            offsets: HashMap::new(),
            from,
            sent: Sent::default(),
        }
    }

    /// The next event, with its origin (topic, partition by key, next offset);
    /// `None` once the world has reached the end of its span.
    pub fn next_event(&mut self) -> Option<RawEvent> {
        loop {
            if self.world.next_at()? > self.settings.until {
                return None;
            }
            let (at, what) = self.world.pop()?;
            self.advance(at, &what);
            // Before the span the world only runs up to speed.
            if at < self.from {
                continue;
            }
            let format = match what {
                Happening::TripDone { .. } => continue,
                Happening::Tender { .. }
                | Happening::Response { .. }
                | Happening::Status { .. }
                | Happening::Invoice { .. } => Format::Edi,
                _ => Format::Samsara,
            };
            if self.settings.only.is_some_and(|f| f != format) {
                continue;
            }
            let poison = self.wire.random_bool(self.settings.poison_fraction.clamp(0.0, 1.0));
            let Some((key, payload, note)) = self.happen(at, what, poison) else { continue };
            match note {
                Some(Note::Safety(s)) => self.sent.safety_events.push(s),
                Some(Note::Geofence(g)) => self.sent.geofences.push(g),
                None => {}
            }
            self.sent.events += 1;
            self.sent.until = Some(at);
            let topic = if format == Format::Edi { EDI_TOPIC } else { SAMSARA_TOPIC };
            let partition =
                (xxhash_rust::xxh3::xxh3_64(key.as_bytes()) % self.settings.partitions.max(1) as u64) as i32;
            let offset = self.offsets.entry((topic, partition)).or_insert(0);
            let origin = Origin { topic: topic.to_owned(), partition, offset: *offset };
            *offset += 1;
            return Some(RawEvent::new(format, origin, Some(key), payload));
        }
    }

    /// What the world did, up to the last event sent.
    pub fn truth(&self) -> Truth {
        Truth::of(&self.world, self.settings.seed, (self.from, self.settings.until), &self.sent)
    }

    fn event_id(&mut self) -> String {
        let v: u128 = self.wire.random();
        let h = format!("{v:032x}");
        format!("{}-{}-4{}-a{}-{}", &h[0..8], &h[8..12], &h[13..16], &h[17..20], &h[20..32])
    }

    /// Where the truck is at `at`: on its trip's route, or at its hub.
    fn truck_position(&self, truck: usize, at: DateTime<Utc>) -> (f64, f64) {
        match self.world.trucks[truck].trip {
            Some(trip) => self.world.trips[trip].position(at),
            None => HUBS[self.world.trucks[truck].hub].at(),
        }
    }

    /// What a happening changes in the world, whether or not it is sent: the
    /// next trip planned, the next ping due, the duty status, a delivery.
    fn advance(&mut self, at: DateTime<Utc>, what: &Happening) {
        match *what {
            Happening::TripDone { truck } => self.world.trip_done(&mut self.plan, truck, at),
            Happening::Ping { truck } => {
                let Some(trip) = self.world.trucks[truck].trip else { return };
                let end = self.world.trips[trip].at(at).1.end;
                let next = at + Duration::seconds(self.plan.random_range(5..=30));
                if next < end {
                    self.world.schedule(next, Happening::Ping { truck });
                }
            }
            Happening::DutyChange { truck, to, .. } => self.world.trucks[truck].duty = to,
            Happening::Status { trip, status } => {
                self.sent.statuses.resize(self.world.shipments.len(), Default::default());
                for &s in &self.world.trips[trip].shipments {
                    self.sent.statuses[s].insert(status.code(), at);
                }
            }
            _ => {}
        }
    }

    /// The event a happening sends, if any: (key, payload, what the truth
    /// notes of it).
    fn happen(
        &mut self,
        at: DateTime<Utc>,
        what: Happening,
        poison: bool,
    ) -> Option<(String, Vec<u8>, Option<Note>)> {
        if let Happening::Tender { trip }
        | Happening::Response { trip }
        | Happening::Status { trip, .. }
        | Happening::Invoice { trip } = what
        {
            return Some(self.edi(at, trip, &what, poison));
        }
        let broken = if poison { render::broken_samsara(self.wire.random_range(0..4)) } else { None };
        let id = self.event_id();
        let data_at = render::data_time(at);
        let (truck, event_type, data, note) = match what {
            Happening::Ping { truck } => {
                let trip = self.world.trucks[truck].trip?;
                let t = &self.world.trips[trip];
                let (fraction, stretch) = t.at(at);
                if stretch.duty != DutyStatus::Driving {
                    return None;
                }
                let hours = (stretch.end - stretch.start).num_milliseconds() as f64 / 3_600_000.0;
                let kmh = t.road_km * (stretch.to - stretch.from) / hours.max(1e-6);
                let (a, b) = (HUBS[t.from].at(), HUBS[t.to].at());
                let pos = t.position(at);
                // The odometer and fuel gauge at the start of the trip, moved on by the distance driven since.
                let truck_now = &self.world.trucks[truck];
                let driven_km = fraction * t.road_km;
                let gauges =
                    (truck_now.odometer_m + driven_km * 1000.0, (truck_now.fuel - driven_km / 25.0).max(5.0));
                let (event_type, data) = if self.wire.random_range(0..8) == 0 {
                    let coolant = 85_000 + self.wire.random_range(0..6_000);
                    ("VehicleStats", render::stats(truck_now, data_at, gauges, coolant))
                } else {
                    let heading = (bearing(a, b) + self.wire.random_range(-3.0..3.0) + 360.0) % 360.0;
                    let mph = kmh / 1.609_344 + self.wire.random_range(-3.0..3.0);
                    let near = nearest_place(pos).0;
                    ("VehicleLocation", render::location(truck_now, data_at, pos, heading, mph, near))
                };
                (truck, event_type, data, None)
            }
            Happening::DutyChange { truck, from, to } => {
                let pos = self.truck_position(truck, at);
                let t = &self.world.trucks[truck];
                let data = json!({"driver": render::driver(t), "vehicle": render::vehicle(t),
                    "previousStatus": from.as_str(), "currentStatus": to.as_str(), "changedAtTime": render::rfc3339(data_at),
                    "location": {"latitude": pos.0, "longitude": pos.1}});
                (truck, "HosStatusChange", data, None)
            }
            Happening::Geofence { truck, hub, enter } => {
                let t = &self.world.trucks[truck];
                let note = GeofenceTruth {
                    event_id: id.clone(),
                    truck_id: t.id.clone(),
                    hub: render::hub_id(hub),
                    time: at,
                    enter,
                };
                (
                    truck,
                    if enter { "GeofenceEnter" } else { "GeofenceExit" },
                    render::geofence(t, hub, data_at),
                    Some(Note::Geofence(note)),
                )
            }
            Happening::Safety { truck } => {
                let pos = self.truck_position(truck, at);
                let behavior = BEHAVIORS[self.wire.random_range(0..BEHAVIORS.len())];
                let g: f64 = self.wire.random_range(0.25..0.8);
                let severity = match g {
                    g if g < 0.4 => "low",
                    g if g < 0.55 => "moderate",
                    g if g < 0.7 => "high",
                    _ => "critical",
                };
                let t = &self.world.trucks[truck];
                let data = json!({"vehicle": render::vehicle(t), "driver": render::driver(t),
                    "behaviorLabel": behavior, "severity": severity,
                    "maxAccelerationGForce": (g * 100.0).round() / 100.0, "time": render::rfc3339(data_at),
                    "location": {"latitude": pos.0, "longitude": pos.1}});
                let note = SafetyTruth::at((id.clone(), t.id.clone()), at, pos, behavior, severity);
                (truck, "SafetyEvent", data, Some(Note::Safety(note)))
            }
            _ => return None,
        };
        let key = self.world.trucks[truck].id.clone();
        let payload = broken.unwrap_or_else(|| render::samsara(&id, at, event_type, data, poison));
        Some((key, payload, note))
    }

    /// One interchange from the trip's carrier about every shipment it carries.
    fn edi(
        &mut self,
        at: DateTime<Utc>,
        trip: usize,
        what: &Happening,
        poison: bool,
    ) -> (String, Vec<u8>, Option<Note>) {
        self.interchange += 1;
        let (set, status) = match what {
            Happening::Tender { .. } => ("204", None),
            Happening::Response { .. } => ("990", None),
            Happening::Status { status, .. } => ("214", Some(*status)),
            _ => ("210", None),
        };
        let t = &self.world.trips[trip];
        let truck = &self.world.trucks[t.truck];
        let city = nearest_place(t.position(at)).0;
        let shipments: Vec<_> = t.shipments.iter().map(|&s| &self.world.shipments[s]).collect();
        let bodies = render::edi_bodies(set, &shipments, truck, status, at, city, self.interchange);
        let text = render::interchange(truck.scac, self.interchange, at, set, &bodies, poison);
        (truck.scac.to_owned(), text.into_bytes(), None)
    }
}

/// What the truth keeps of a sent event.
enum Note {
    Safety(SafetyTruth),
    Geofence(GeofenceTruth),
}

impl Iterator for Fleet {
    type Item = RawEvent;
    fn next(&mut self) -> Option<RawEvent> {
        self.next_event()
    }
}

pub struct GeneratorSource {
    settings: GeneratorSettings,
}

impl GeneratorSource {
    pub fn new(settings: GeneratorSettings) -> Self {
        GeneratorSource { settings }
    }
}

#[async_trait]
impl Source for GeneratorSource {
    async fn run(
        self: Box<Self>,
        tx: mpsc::Sender<RawEvent>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<u64> {
        let limiter = self.settings.rate.map(|r| RateLimiter::direct(Quota::per_second(r)));
        let limit = self.settings.events;
        let truth_file = self.settings.truth.clone();
        let mut fleet = Fleet::new(self.settings);
        let mut sent = 0u64;
        while limit.is_none_or(|n| sent < n) {
            if let Some(l) = &limiter {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = l.until_ready() => {}
                }
            }
            let Some(event) = fleet.next_event() else { break };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                r = tx.send(event) => if r.is_err() { break },
            }
            sent += 1;
        }
        if let Some(path) = truth_file {
            write_truth(&fleet.truth(), &path)?;
        }
        Ok(sent)
    }
}

/// Writes the truth as JSON beside `path` and moves it into place, so a
/// reader never sees half a file.
pub fn write_truth(truth: &Truth, path: &std::path::Path) -> anyhow::Result<()> {
    let partial = path.with_extension("json.partial");
    let file = std::fs::File::create(&partial)
        .with_context(|| format!("cannot write the ground truth to {}", partial.display()))?;
    serde_json::to_writer_pretty(std::io::BufWriter::new(file), truth)
        .with_context(|| format!("cannot write the ground truth to {}", partial.display()))?;
    std::fs::rename(&partial, path)
        .with_context(|| format!("cannot move the ground truth to {}", path.display()))?;
    tracing::info!(path = %path.display(), events = truth.events_sent, "ground truth written");
    Ok(())
}

#[cfg(test)]
mod tests;
