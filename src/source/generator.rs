//! Synthetic traffic: a fleet of trucks driving between US freight hubs and the
//! carrier EDI their shipments produce. Deterministic for a seed, so a run can
//! be repeated exactly. A configurable fraction of events is deliberately
//! poison (broken JSON, impossible positions, bad EDI envelopes, non-UTF-8).

use std::collections::HashMap;
use std::num::NonZeroU32;

use async_trait::async_trait;
use chrono::{DateTime, Duration, TimeZone, Utc};
use governor::{Quota, RateLimiter};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Source;
use crate::config::{EDI_TOPIC, SAMSARA_TOPIC};
use crate::model::{Format, Origin, RawEvent};

#[derive(Debug, Clone)]
pub struct GeneratorSettings {
    /// How many events; `None` runs until shutdown.
    pub events: Option<u64>,
    /// Events per second; `None` is as fast as the pipeline takes them.
    pub rate: Option<NonZeroU32>,
    pub poison_fraction: f64,
    /// Share of events that are EDI interchanges rather than telemetry.
    pub edi_fraction: f64,
    pub vehicles: usize,
    pub partitions: i32,
    pub seed: u64,
}

impl GeneratorSettings {
    /// Endless, unthrottled, valid traffic with the configuration defaults' mix.
    pub fn clean(seed: u64) -> Self {
        GeneratorSettings {
            events: None,
            rate: None,
            poison_fraction: 0.0,
            edi_fraction: 0.15,
            vehicles: 250,
            partitions: 6,
            seed,
        }
    }
}

const HUBS: &[(&str, &str, f64, f64)] = &[
    ("MEMPHIS", "TN", 35.1495, -90.0490),
    ("DALLAS", "TX", 32.7767, -96.7970),
    ("ATLANTA", "GA", 33.7490, -84.3880),
    ("CHICAGO", "IL", 41.8781, -87.6298),
    ("INDIANAPOLIS", "IN", 39.7684, -86.1581),
    ("LITTLE ROCK", "AR", 34.7465, -92.2896),
    ("NASHVILLE", "TN", 36.1627, -86.7816),
    ("LOUISVILLE", "KY", 38.2527, -85.7585),
    ("KANSAS CITY", "MO", 39.0997, -94.5786),
    ("HOUSTON", "TX", 29.7604, -95.3698),
    ("COLUMBUS", "OH", 39.9612, -82.9988),
    ("CHARLOTTE", "NC", 35.2271, -80.8431),
    ("ST LOUIS", "MO", 38.6270, -90.1994),
    ("BIRMINGHAM", "AL", 33.5186, -86.8104),
    ("OKLAHOMA CITY", "OK", 35.4676, -97.5164),
    ("JACKSON", "MS", 32.2988, -90.1848),
];
const CARRIERS: &[&str] = &["FXFE", "ODFL", "SAIA", "ABFS", "RLCA", "EXLA", "AVRT", "XPOL"];
const SHIPPERS: &[&str] =
    &["ACME PAPER CO", "GULF COAST RESIN", "MIDWEST GRAIN LLC", "DELTA STEEL", "OZARK FOODS"];
const CONSIGNEES: &[&str] =
    &["DELTA OFFICE SUPPLY", "RIVERSIDE FOODS", "SUMMIT HARDWARE", "BLUEGRASS BOTTLING", "PIEDMONT RETAIL"];
const DRIVER_NAMES: &[&str] =
    &["Dana Ortiz", "Sam Reyes", "Lee Carter", "Alex Kim", "Jordan Bell", "Casey Diaz"];
const STATUSES: &[&str] = &["X3", "X6", "AF", "X1", "D1", "AG"];
const BEHAVIORS: &[&str] = &["HarshBrake", "HarshAcceleration", "HarshTurn", "Speeding", "FollowingDistance"];
const DUTY: &[&str] = &["offDuty", "sleeperBerth", "onDuty", "driving"];

struct Truck {
    id: String,
    name: String,
    vin: String,
    driver_id: String,
    driver_name: &'static str,
    from: usize,
    to: usize,
    progress: f64,
    odometer_m: f64,
    fuel: f64,
    duty: usize,
}

/// Produces the synthetic event stream; shared by the generator source and `produce`.
pub struct Fleet {
    rng: StdRng,
    trucks: Vec<Truck>,
    clock: DateTime<Utc>,
    interchange: u64,
    settings: GeneratorSettings,
    offsets: HashMap<(&'static str, i32), i64>,
}

impl Fleet {
    pub fn new(settings: GeneratorSettings) -> Self {
        let mut rng = StdRng::seed_from_u64(settings.seed);
        let trucks = (0..settings.vehicles.max(1))
            .map(|n| {
                let from = rng.random_range(0..HUBS.len());
                Truck {
                    id: format!("2814749770{n:05}"),
                    name: format!("Truck {}", n + 1),
                    vin: format!("1FUJGLDR{:09}", rng.random_range(0..1_000_000_000u64)),
                    driver_id: format!("{}", 40000 + n),
                    driver_name: DRIVER_NAMES[n % DRIVER_NAMES.len()],
                    from,
                    to: (from + 1 + rng.random_range(0..HUBS.len() - 1)) % HUBS.len(),
                    progress: rng.random_range(0.0..1.0),
                    odometer_m: rng.random_range(50_000_000.0..900_000_000.0),
                    fuel: rng.random_range(20.0..100.0),
                    duty: 3,
                }
            })
            .collect();
        // Control numbers start where the seed says, so runs with other seeds
        // produce other interchanges (and so other record ids).
        let interchange = rng.random_range(100_000..900_000_000);
        Fleet {
            rng,
            trucks,
            clock: Utc.with_ymd_and_hms(2026, 11, 20, 6, 0, 0).single().unwrap_or_default(),
            interchange,
            settings,
            offsets: HashMap::new(),
        }
    }

    /// The next event, with its origin (topic, partition by key, next offset).
    pub fn next_event(&mut self) -> RawEvent {
        self.clock += Duration::milliseconds(self.rng.random_range(50..400));
        let poison = self.rng.random_bool(self.settings.poison_fraction.clamp(0.0, 1.0));
        let edi = self.rng.random_bool(self.settings.edi_fraction.clamp(0.0, 1.0));
        let (format, topic, key, payload) = if edi {
            let (key, text) = self.interchange_text(poison);
            (Format::Edi, EDI_TOPIC, key, text)
        } else {
            let t = self.rng.random_range(0..self.trucks.len());
            let key = self.trucks[t].id.clone();
            (Format::Samsara, SAMSARA_TOPIC, key, self.samsara_bytes(t, poison))
        };
        let partition =
            (xxhash_rust::xxh3::xxh3_64(key.as_bytes()) % self.settings.partitions.max(1) as u64) as i32;
        let offset = self.offsets.entry((topic, partition)).or_insert(0);
        let origin = Origin { topic: topic.to_owned(), partition, offset: *offset };
        *offset += 1;
        RawEvent::new(format, origin, Some(key), payload)
    }

    fn event_id(&mut self) -> String {
        let v: u128 = self.rng.random();
        let h = format!("{v:032x}");
        format!("{}-{}-4{}-a{}-{}", &h[0..8], &h[8..12], &h[13..16], &h[17..20], &h[20..32])
    }

    fn samsara_bytes(&mut self, t: usize, poison: bool) -> Vec<u8> {
        if poison {
            match self.rng.random_range(0..4) {
                0 => return br#"{"eventId":"trunc","eventTime":"2026-11-20T1"#.to_vec(),
                1 => return vec![0xff, 0xfe, b'{', 0x80],
                _ => {}
            }
        }
        let event_time = self.clock;
        let id = self.event_id();
        let roll = self.rng.random_range(0..100);
        let truck = &mut self.trucks[t];
        let (a, b) = (HUBS[truck.from], HUBS[truck.to]);
        truck.progress += 0.01;
        truck.odometer_m += 1600.0;
        truck.fuel = (truck.fuel - 0.05).max(5.0);
        let arrived = truck.progress >= 1.0;
        if arrived {
            truck.from = truck.to;
            truck.to = (truck.to + 1 + (id.len() % (HUBS.len() - 1))) % HUBS.len();
            truck.progress = 0.0;
            truck.fuel = 100.0;
        }
        let lat = a.2 + (b.2 - a.2) * truck.progress;
        let lon = a.3 + (b.3 - a.3) * truck.progress;
        let vehicle = json!({"id": truck.id, "name": truck.name});
        let at = (event_time - Duration::seconds(2)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let (event_type, data) = if arrived {
            let hub = HUBS[truck.from];
            (
                if roll % 2 == 0 { "GeofenceEnter" } else { "GeofenceExit" },
                json!({"vehicle": vehicle, "address": {"id": format!("DC-{}", hub.0.replace(' ', "-")),
                    "name": format!("{} DC", hub.0), "formattedAddress": format!("{}, {}", hub.0, hub.1)}, "time": at}),
            )
        } else if roll < 72 {
            let lat = if poison { lat + 120.0 } else { lat };
            (
                "VehicleLocation",
                json!({"vehicle": {"id": truck.id, "name": truck.name, "externalIds": {"samsara.vin": truck.vin}},
                    "location": {"time": at, "latitude": lat, "longitude": lon,
                        "headingDegrees": 90, "speedMilesPerHour": 55.0 + (roll as f64) / 4.0,
                        "reverseGeo": {"formattedLocation": format!("near {}, {}", a.0, a.1)}}}),
            )
        } else if roll < 87 {
            (
                "VehicleStats",
                json!({"vehicle": vehicle, "engineState": {"time": at, "value": "On"},
                    "fuelPercent": {"time": at, "value": truck.fuel.round()},
                    "obdOdometerMeters": {"time": at, "value": truck.odometer_m.round()},
                    "engineCoolantTemperatureMilliC": {"time": at, "value": 85000 + roll * 100}}),
            )
        } else if roll < 95 {
            let previous = DUTY[truck.duty];
            truck.duty = (truck.duty + 1) % DUTY.len();
            (
                "HosStatusChange",
                json!({"driver": {"id": truck.driver_id, "name": truck.driver_name}, "vehicle": vehicle,
                    "previousStatus": previous, "currentStatus": DUTY[truck.duty], "changedAtTime": at,
                    "location": {"latitude": lat, "longitude": lon}}),
            )
        } else {
            (
                "SafetyEvent",
                json!({"vehicle": vehicle, "driver": {"id": truck.driver_id, "name": truck.driver_name},
                    "behaviorLabel": BEHAVIORS[roll as usize % BEHAVIORS.len()], "severity": "moderate",
                    "maxAccelerationGForce": 0.3 + (roll as f64) / 200.0, "time": at,
                    "location": {"latitude": lat, "longitude": lon}}),
            )
        };
        let mut body = json!({"eventId": id, "eventTime": event_time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "eventType": event_type, "orgId": "20936", "data": data});
        if poison && event_type != "VehicleLocation" {
            // Strip the vehicle so the event has no identity and no subject.
            body["data"].as_object_mut().map(|d| d.remove("vehicle"));
            body["data"]["driver"] = json!({"id": ""});
        }
        body.to_string().into_bytes()
    }

    /// One interchange with 1–3 transactions of one carrier; returns (sender, text).
    fn interchange_text(&mut self, poison: bool) -> (String, Vec<u8>) {
        self.interchange += 1;
        let ctrl = self.interchange;
        let scac = CARRIERS[self.rng.random_range(0..CARRIERS.len())];
        let date = self.clock.format("%Y%m%d").to_string();
        let time = self.clock.format("%H%M").to_string();
        let set = match self.rng.random_range(0..10) {
            0..=5 => "214",
            6..=7 => "210",
            8 => "204",
            _ => "990",
        };
        let count = if set == "214" { self.rng.random_range(1..=3) } else { 1 };
        let mut txs = Vec::new();
        for n in 0..count {
            let pro = format!("PRO{:07}", self.rng.random_range(0..10_000_000));
            let bol = format!("BOL{:07}", self.rng.random_range(0..10_000_000));
            let sh = SHIPPERS[self.rng.random_range(0..SHIPPERS.len())];
            let cn = CONSIGNEES[self.rng.random_range(0..CONSIGNEES.len())];
            let (o, d) =
                (HUBS[self.rng.random_range(0..HUBS.len())], HUBS[self.rng.random_range(0..HUBS.len())]);
            let body: Vec<String> = match set {
                "214" => vec![
                    format!("B10*{pro}*{bol}*{scac}"),
                    format!("L11*PO-{}*PO", self.rng.random_range(100_000..999_999)),
                    format!("N1*SH*{sh}*93*SH{:04}", sh.len() * 97 % 10_000),
                    format!("N4*{}*{}*{:05}*US", o.0, o.1, self.rng.random_range(10_000..99_999)),
                    format!("N1*CN*{cn}*93*CN{:04}", cn.len() * 89 % 10_000),
                    format!("N4*{}*{}*{:05}*US", d.0, d.1, self.rng.random_range(10_000..99_999)),
                    "LX*1".to_string(),
                    format!(
                        "AT7*{}*NS***{date}*{time}*CT",
                        STATUSES[self.rng.random_range(0..STATUSES.len())]
                    ),
                    format!("MS1*{}*{}*US", o.0, o.1),
                    format!("MS2*{scac}*TRL{:05}", self.rng.random_range(10_000..99_999)),
                    format!(
                        "AT8*G*L*{}*{}",
                        self.rng.random_range(500..44_000),
                        self.rng.random_range(1..30)
                    ),
                ],
                "210" => {
                    let charge = self.rng.random_range(20_000..900_000);
                    vec![
                        format!(
                            "B3**INV{:06}*{pro}*PP**{date}*{charge}**{date}*035*{scac}",
                            ctrl % 1_000_000
                        ),
                        format!("N9*BM*{bol}"),
                        format!("N1*SH*{sh}"),
                        format!("N1*CN*{cn}"),
                        "LX*1".to_string(),
                        "L5*1*GENERAL FREIGHT".to_string(),
                        format!(
                            "L0*1***{}*G***{}*PLT",
                            self.rng.random_range(500..44_000),
                            self.rng.random_range(1..30)
                        ),
                        format!("L1*1*2.35*PH*{charge}"),
                        format!("L3*18250*G***{charge}"),
                    ]
                }
                "204" => vec![
                    format!("B2**{scac}**{pro}**PP"),
                    "B2A*00".to_string(),
                    format!("N1*SH*{sh}*93*SH{:04}", sh.len() * 97 % 10_000),
                    format!("S5*1*LD"),
                    format!("S5*2*UL"),
                ],
                _ => vec![format!("B1*{scac}*{pro}*{date}*{}", if n % 2 == 0 { "A" } else { "D" })],
            };
            txs.push(body);
        }
        let text = build_interchange(scac, "APEXLOGIS", ctrl, &date, &time, set, &txs, poison);
        (scac.to_owned(), text.into_bytes())
    }
}

/// Wraps transaction bodies in ST/SE, GS/GE and ISA/IEA with correct counts;
/// with `corrupt`, the first SE count is off by two, an envelope error.
#[allow(clippy::too_many_arguments)]
fn build_interchange(
    sender: &str,
    receiver: &str,
    ctrl: u64,
    date: &str,
    time: &str,
    set: &str,
    txs: &[Vec<String>],
    corrupt: bool,
) -> String {
    let functional = match set {
        "214" => "QM",
        "210" => "IM",
        "204" => "SM",
        _ => "GF",
    };
    let mut out = format!(
        "ISA*00*          *00*          *02*{sender:<15}*ZZ*{receiver:<15}*{}*{time}*U*00401*{ctrl:09}*0*P*>~GS*{functional}*{sender}*{receiver}*{date}*{time}*{ctrl}*X*004010~",
        &date[2..]
    );
    for (i, body) in txs.iter().enumerate() {
        let control = format!("{:04}", i + 1);
        let count = body.len() + 2 + if corrupt && i == 0 { 2 } else { 0 };
        out.push_str(&format!("ST*{set}*{control}~"));
        for seg in body {
            out.push_str(seg);
            out.push('~');
        }
        out.push_str(&format!("SE*{count}*{control}~"));
    }
    out.push_str(&format!("GE*{}*{ctrl}~IEA*1*{ctrl:09}~", txs.len()));
    out
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
        let mut fleet = Fleet::new(self.settings);
        let mut sent = 0u64;
        while limit.is_none_or(|n| sent < n) {
            if let Some(l) = &limiter {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = l.until_ready() => {}
                }
            }
            let event = fleet.next_event();
            tokio::select! {
                _ = shutdown.cancelled() => break,
                r = tx.send(event) => if r.is_err() { break },
            }
            sent += 1;
        }
        Ok(sent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::parse::parse;

    fn settings(poison_fraction: f64) -> GeneratorSettings {
        GeneratorSettings {
            events: None,
            rate: None,
            poison_fraction,
            edi_fraction: 0.2,
            vehicles: 20,
            partitions: 4,
            seed: 7,
        }
    }

    #[test]
    fn clean_traffic_parses_and_offsets_are_dense_per_partition() {
        let mut fleet = Fleet::new(settings(0.0));
        let mut seen: HashMap<(String, i32), i64> = HashMap::new();
        for _ in 0..2000 {
            let e = fleet.next_event();
            let records =
                parse(&e).unwrap_or_else(|r| panic!("{r}: {}", String::from_utf8_lossy(&e.payload)));
            assert!(!records.is_empty());
            let next = seen.entry((e.origin.topic.clone(), e.origin.partition)).or_insert(0);
            assert_eq!(e.origin.offset, *next);
            *next += 1;
        }
        assert!(seen.keys().any(|(t, _)| t == EDI_TOPIC) && seen.keys().any(|(t, _)| t == SAMSARA_TOPIC));
    }

    #[test]
    fn poison_fraction_is_honoured_and_same_seed_repeats() {
        let mut a = Fleet::new(settings(0.1));
        let mut b = Fleet::new(settings(0.1));
        let mut bad = 0;
        for _ in 0..3000 {
            let (x, y) = (a.next_event(), b.next_event());
            assert_eq!(x.payload, y.payload);
            if parse(&x).is_err() {
                bad += 1;
            }
        }
        assert!((200..400).contains(&bad), "{bad} poison events of 3000 at 10%");
    }
}
