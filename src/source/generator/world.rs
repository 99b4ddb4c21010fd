//! The fleet as a small discrete-event model: trucks drive trips between hubs
//! under the hours-of-service shape (at most 11 h driving a shift, a 30 min
//! break after 8 h, 10 h in the sleeper berth), carrying shipments whose EDI
//! follows the trip, some of them held up by a delay on the road. Each planned
//! occurrence waits in a queue ordered by time; the fleet pops them in order.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use chrono::{DateTime, Duration, Utc};
use rand::Rng;
use rand::rngs::StdRng;

use crate::places::{HUBS, along, km_between};

pub const CARRIERS: &[&str] = &["FXFE", "ODFL", "SAIA", "ABFS", "RLCA", "EXLA", "AVRT", "XPOL"];
const SHIPPERS: &[&str] =
    &["ACME PAPER CO", "GULF COAST RESIN", "MIDWEST GRAIN LLC", "DELTA STEEL", "OZARK FOODS"];
const CONSIGNEES: &[&str] =
    &["DELTA OFFICE SUPPLY", "RIVERSIDE FOODS", "SUMMIT HARDWARE", "BLUEGRASS BOTTLING", "PIEDMONT RETAIL"];
const DRIVER_NAMES: &[&str] =
    &["Dana Ortiz", "Sam Reyes", "Lee Carter", "Alex Kim", "Jordan Bell", "Casey Diaz"];
/// X12 AT702 status reason codes a delay is reported with, and what held the truck.
pub const DELAYS: &[(&str, &str)] =
    &[("AI", "mechanical breakdown"), ("AJ", "reefer unit failure"), ("AO", "weather"), ("AF", "accident")];
/// Share of trips held up on the road.
const DELAYED_TRIPS: f64 = 0.25;
/// Road distance over the great-circle one.
const ROAD_FACTOR: f64 = 1.18;
const MAX_DRIVING_SHIFT_H: f64 = 11.0;
const BREAK_AFTER_H: f64 = 8.0;

/// A driver's hours-of-service duty status, as Samsara names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DutyStatus {
    OffDuty,
    SleeperBerth,
    OnDuty,
    Driving,
}

impl DutyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DutyStatus::OffDuty => "offDuty",
            DutyStatus::SleeperBerth => "sleeperBerth",
            DutyStatus::OnDuty => "onDuty",
            DutyStatus::Driving => "driving",
        }
    }
}

pub struct Truck {
    pub id: String,
    pub name: String,
    pub vin: String,
    pub trailer: String,
    pub driver_id: String,
    pub driver_name: &'static str,
    pub scac: &'static str,
    pub hub: usize,
    pub odometer_m: f64,
    pub fuel: f64,
    pub duty: DutyStatus,
    /// Hours driven since the last 10 h rest.
    shift_driven_h: f64,
    /// The trip under way (index into `World::trips`).
    pub trip: Option<usize>,
}

/// A part of a trip: the truck moving from one fraction of the route to
/// another, or standing (`from == to`) in one duty status.
#[derive(Debug, Clone)]
pub struct Stretch {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub from: f64,
    pub to: f64,
    pub duty: DutyStatus,
    /// Set on the stretch a delay holds the truck for (an index into `DELAYS`).
    pub delay: Option<usize>,
}

pub struct Trip {
    pub truck: usize,
    pub from: usize,
    pub to: usize,
    pub road_km: f64,
    pub stretches: Vec<Stretch>,
    pub shipments: Vec<usize>,
}

impl Trip {
    /// Where on the route (0 to 1) the truck is at `t`, and the stretch it is in.
    pub fn at(&self, t: DateTime<Utc>) -> (f64, &Stretch) {
        let s =
            self.stretches.iter().find(|s| t < s.end).unwrap_or(&self.stretches[self.stretches.len() - 1]);
        let span = (s.end - s.start).num_milliseconds().max(1) as f64;
        let done = ((t - s.start).num_milliseconds() as f64 / span).clamp(0.0, 1.0);
        (s.from + (s.to - s.from) * done, s)
    }

    pub fn position(&self, t: DateTime<Utc>) -> (f64, f64) {
        along(HUBS[self.from].at(), HUBS[self.to].at(), self.at(t).0)
    }
}

pub struct Shipment {
    pub pro: String,
    pub bol: String,
    pub scac: &'static str,
    pub truck: usize,
    pub shipper: &'static str,
    pub consignee: &'static str,
    pub origin: usize,
    pub destination: usize,
    pub tendered_at: DateTime<Utc>,
    pub appointment: DateTime<Utc>,
    pub picked_up_at: DateTime<Utc>,
    /// When the D1 (delivered) status is due; the shipment is late when this passes `appointment`.
    pub delivery_due: DateTime<Utc>,
    pub delay: Option<(usize, i64)>,
    pub weight_lb: u32,
    pub pieces: u32,
    pub charge_cents: u64,
}

/// A 214 shipment status: X3 arrived at pickup, AF departed pickup, X6 en
/// route, SD delayed, X1 arrived at delivery, D1 delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    ArrivedAtPickup,
    PickedUp,
    EnRoute,
    Delayed(usize),
    ArrivedAtDelivery,
    Delivered,
}

impl Status {
    pub fn code(self) -> &'static str {
        match self {
            Status::ArrivedAtPickup => "X3",
            Status::PickedUp => "AF",
            Status::EnRoute => "X6",
            Status::Delayed(_) => "SD",
            Status::ArrivedAtDelivery => "X1",
            Status::Delivered => "D1",
        }
    }
}

/// Something that happens at a moment of the world and becomes an event.
#[derive(Debug, Clone)]
pub enum Happening {
    /// A telemetry ping while driving (a location, now and then engine stats).
    Ping {
        truck: usize,
    },
    DutyChange {
        truck: usize,
        from: DutyStatus,
        to: DutyStatus,
    },
    Geofence {
        truck: usize,
        hub: usize,
        enter: bool,
    },
    Safety {
        truck: usize,
    },
    Tender {
        trip: usize,
    },
    Response {
        trip: usize,
    },
    Status {
        trip: usize,
        status: Status,
    },
    Invoice {
        trip: usize,
    },
    /// Not an event: the truck is free to take its next trip.
    TripDone {
        truck: usize,
    },
}

struct Scheduled {
    at: DateTime<Utc>,
    seq: u64,
    what: Happening,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    // Earliest first out of a max-heap; ties in the order they were planned.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

pub struct World {
    pub trucks: Vec<Truck>,
    pub trips: Vec<Trip>,
    pub shipments: Vec<Shipment>,
    queue: BinaryHeap<Scheduled>,
    seq: u64,
    next_pro: u64,
}

fn minutes(m: f64) -> Duration {
    Duration::milliseconds((m * 60_000.0) as i64)
}

fn whole_minute(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp() / 60 * 60, 0).unwrap_or(t)
}

fn hours(h: f64) -> Duration {
    minutes(h * 60.0)
}

impl World {
    /// `vehicles` trucks at random hubs, each on a trip that began in the day before `start`.
    pub fn new(rng: &mut StdRng, vehicles: usize, start: DateTime<Utc>) -> World {
        let mut world = World {
            trucks: Vec::new(),
            trips: Vec::new(),
            shipments: Vec::new(),
            queue: BinaryHeap::new(),
            seq: 0,
            next_pro: rng.random_range(10_000_000..80_000_000),
        };
        for n in 0..vehicles.max(1) {
            world.trucks.push(Truck {
                id: format!("2814749770{n:05}"),
                name: format!("Truck {}", n + 1),
                vin: format!("1FUJGLDR{:09}", rng.random_range(0..1_000_000_000u64)),
                trailer: format!("TRL{:05}", rng.random_range(10_000..99_999)),
                driver_id: format!("{}", 40000 + n),
                driver_name: DRIVER_NAMES[n % DRIVER_NAMES.len()],
                scac: CARRIERS[n % CARRIERS.len()],
                hub: rng.random_range(0..HUBS.len()),
                odometer_m: rng.random_range(50_000_000.0..900_000_000.0),
                fuel: rng.random_range(40.0..100.0),
                duty: DutyStatus::OffDuty,
                shift_driven_h: 0.0,
                trip: None,
            });
            // Already at work when the span opens: the first trip began up to
            // a day before, so each truck is somewhere in its cycle.
            world.schedule(start - minutes(rng.random_range(0.0..1440.0)), Happening::TripDone { truck: n });
        }
        world
    }

    pub fn schedule(&mut self, at: DateTime<Utc>, what: Happening) {
        self.seq += 1;
        self.queue.push(Scheduled { at, seq: self.seq, what });
    }

    /// When the next happening is due.
    pub fn next_at(&self) -> Option<DateTime<Utc>> {
        self.queue.peek().map(|s| s.at)
    }

    pub fn pop(&mut self) -> Option<(DateTime<Utc>, Happening)> {
        self.queue.pop().map(|s| (s.at, s.what))
    }

    /// Plans the truck's next trip from the hub it stands at, starting at `now`:
    /// every duty change, status, geofence and ping start goes on the queue.
    pub fn plan_trip(&mut self, rng: &mut StdRng, truck: usize, now: DateTime<Utc>) {
        let from = self.trucks[truck].hub;
        let near: Vec<usize> = (0..HUBS.len())
            .filter(|&h| h != from && (250.0..1100.0).contains(&km_between(HUBS[from].at(), HUBS[h].at())))
            .collect();
        let to =
            if near.is_empty() { (from + 1) % HUBS.len() } else { near[rng.random_range(0..near.len())] };
        let road_km = km_between(HUBS[from].at(), HUBS[to].at()) * ROAD_FACTOR;
        let speed_kmh = rng.random_range(88.0..100.0);
        let delay = rng.random_bool(DELAYED_TRIPS).then(|| {
            (rng.random_range(0..DELAYS.len()), rng.random_range(0.15..0.85), rng.random_range(60.0..420.0))
        });

        // Tender now, accepted within the hour, loading an hour later.
        let trip = self.trips.len();
        let tendered = now;
        let load_start = now + minutes(rng.random_range(45.0..90.0));
        let depart = load_start + minutes(rng.random_range(45.0..90.0));
        let mut stretches = vec![Stretch {
            start: load_start,
            end: depart,
            from: 0.0,
            to: 0.0,
            duty: DutyStatus::OnDuty,
            delay: None,
        }];
        let (mut t, mut done, mut since_break) = (depart, 0.0_f64, 0.0_f64);
        let mut shift = self.trucks[truck].shift_driven_h;
        let mut delay_left = delay;
        while done < 1.0 - 1e-9 {
            // Drive until the route ends, a break or rest is due, or the delay strikes.
            let left_h = (1.0 - done) * road_km / speed_kmh;
            let mut drive_h = left_h.min(BREAK_AFTER_H - since_break).min(MAX_DRIVING_SHIFT_H - shift);
            if let Some((_, at, _)) = delay_left
                && at > done
            {
                drive_h = drive_h.min((at - done) * road_km / speed_kmh);
            }
            let upto = (done + drive_h * speed_kmh / road_km).min(1.0);
            if drive_h > 1e-6 {
                stretches.push(Stretch {
                    start: t,
                    end: t + hours(drive_h),
                    from: done,
                    to: upto,
                    duty: DutyStatus::Driving,
                    delay: None,
                });
            }
            t += hours(drive_h);
            (done, since_break, shift) = (upto, since_break + drive_h, shift + drive_h);
            if done >= 1.0 - 1e-9 {
                break;
            }
            let (duty, stop_h, which) = match delay_left {
                Some((which, at, mins)) if (at - done).abs() < 1e-9 => {
                    delay_left = None;
                    (DutyStatus::OnDuty, mins / 60.0, Some(which))
                }
                _ if shift >= MAX_DRIVING_SHIFT_H - 1e-6 => {
                    (shift, since_break) = (0.0, 0.0);
                    (DutyStatus::SleeperBerth, 10.0, None)
                }
                _ => {
                    since_break = 0.0;
                    (DutyStatus::OffDuty, 0.5, None)
                }
            };
            stretches.push(Stretch {
                start: t,
                end: t + hours(stop_h),
                from: done,
                to: done,
                duty,
                delay: which,
            });
            t += hours(stop_h);
        }
        let arrive = t;
        // Whole minutes, as the 214 and 204 carry them, so late reads the same on the wire.
        let delivered = whole_minute(arrive + minutes(rng.random_range(45.0..120.0)));
        stretches.push(Stretch {
            start: arrive,
            end: delivered,
            from: 1.0,
            to: 1.0,
            duty: DutyStatus::OnDuty,
            delay: None,
        });
        let delay_minutes = delay.map_or(0.0, |(_, _, m)| m);
        // The appointment is the undelayed delivery plus the shipper's slack.
        let slack = minutes(rng.random_range(60.0..240.0));
        let appointment = whole_minute(delivered - minutes(delay_minutes) + slack);
        self.trucks[truck].shift_driven_h = shift;

        let count = rng.random_range(3..=10);
        let mut shipments = Vec::new();
        for _ in 0..count {
            self.next_pro += 1;
            shipments.push(self.shipments.len());
            let weight_lb = rng.random_range(500..12_000);
            self.shipments.push(Shipment {
                pro: format!("PRO{:08}", self.next_pro),
                bol: format!("BOL{:07}", rng.random_range(0..10_000_000)),
                scac: self.trucks[truck].scac,
                truck,
                shipper: SHIPPERS[rng.random_range(0..SHIPPERS.len())],
                consignee: CONSIGNEES[rng.random_range(0..CONSIGNEES.len())],
                origin: from,
                destination: to,
                tendered_at: tendered,
                appointment,
                picked_up_at: depart,
                delivery_due: delivered,
                delay: delay.map(|(which, _, m)| (which, m.round() as i64)),
                weight_lb,
                pieces: rng.random_range(1..30),
                charge_cents: u64::from(weight_lb) * rng.random_range(18..40),
            });
        }
        self.trips.push(Trip { truck, from, to, road_km, stretches, shipments });
        self.trucks[truck].trip = Some(trip);
        self.schedule_trip(rng, trip);
    }

    fn schedule_trip(&mut self, rng: &mut StdRng, trip: usize) {
        let (truck, from, to) = (self.trips[trip].truck, self.trips[trip].from, self.trips[trip].to);
        let stretches = self.trips[trip].stretches.clone();
        let tendered = self.shipments[self.trips[trip].shipments[0]].tendered_at;
        self.schedule(tendered, Happening::Tender { trip });
        self.schedule(tendered + minutes(rng.random_range(5.0..40.0)), Happening::Response { trip });
        let first = &stretches[0];
        self.schedule(first.start, Happening::Status { trip, status: Status::ArrivedAtPickup });
        let mut duty = self.trucks[truck].duty;
        let mut last = first.start;
        let mut en_route = [1.0 / 3.0, 2.0 / 3.0].into_iter().peekable();
        for s in &stretches {
            if s.duty != duty {
                self.schedule(s.start, Happening::DutyChange { truck, from: duty, to: s.duty });
                duty = s.duty;
            }
            if s.duty == DutyStatus::Driving {
                if s.from == 0.0 {
                    self.schedule(s.start, Happening::Geofence { truck, hub: from, enter: false });
                    self.schedule(s.start, Happening::Status { trip, status: Status::PickedUp });
                }
                self.schedule(
                    s.start + Duration::seconds(rng.random_range(1..10)),
                    Happening::Ping { truck },
                );
                // A safety event at most once a stretch, about one every three driving hours.
                let h = (s.end - s.start).num_seconds() as f64 / 3600.0;
                if rng.random_bool((h / 3.0).min(1.0)) {
                    let at = s.start + hours(rng.random_range(0.0..h));
                    self.schedule(at, Happening::Safety { truck });
                }
                while let Some(&f) = en_route.peek() {
                    if f >= s.to {
                        break;
                    }
                    en_route.next();
                    let at = s.start + hours((f - s.from) / (s.to - s.from) * h);
                    self.schedule(at, Happening::Status { trip, status: Status::EnRoute });
                }
            }
            if let Some(which) = s.delay {
                self.schedule(s.start, Happening::Status { trip, status: Status::Delayed(which) });
            }
            if s.from == 1.0 && s.to == 1.0 {
                self.schedule(s.start, Happening::Geofence { truck, hub: to, enter: true });
                self.schedule(s.start, Happening::Status { trip, status: Status::ArrivedAtDelivery });
            }
            last = s.end;
        }
        self.schedule(last, Happening::Status { trip, status: Status::Delivered });
        self.schedule(
            last,
            Happening::DutyChange { truck, from: DutyStatus::OnDuty, to: DutyStatus::OffDuty },
        );
        self.schedule(last + hours(rng.random_range(2.0..20.0)), Happening::Invoice { trip });
        // A long shift ends in a 10 h rest in the sleeper berth before the next trip.
        let rest = if self.trucks[truck].shift_driven_h > 7.0 {
            self.schedule(
                last + minutes(15.0),
                Happening::DutyChange { truck, from: DutyStatus::OffDuty, to: DutyStatus::SleeperBerth },
            );
            hours(10.25)
        } else {
            minutes(rng.random_range(30.0..120.0))
        };
        self.schedule(last + rest, Happening::TripDone { truck });
    }

    /// The truck has delivered (or is new): it stands at its destination
    /// with a rested driver if it slept, and takes the next trip.
    pub fn trip_done(&mut self, rng: &mut StdRng, truck: usize, now: DateTime<Utc>) {
        if let Some(trip) = self.trucks[truck].trip.take() {
            let t = &mut self.trucks[truck];
            t.hub = self.trips[trip].to;
            t.odometer_m += self.trips[trip].road_km * 1000.0;
            // Refuelled at the hub.
            t.fuel = 100.0;
            if t.duty == DutyStatus::SleeperBerth {
                t.shift_driven_h = 0.0;
            }
        }
        self.plan_trip(rng, truck, now);
    }
}
