//! What a happening of the world looks like on the wire: Samsara webhook
//! JSON for telemetry, X12 interchanges for the carriers' EDI, and the
//! deliberately broken variants of both (the poison share).

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde_json::{Value, json};

use super::world::{DELAYS, Shipment, Status, Truck};
use crate::places::{HUBS, Place};

pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

pub fn hub_id(hub: usize) -> String {
    format!("DC-{}", HUBS[hub].city.replace(' ', "-"))
}

/// A Samsara webhook event around `data`; a poison one loses its vehicle (so
/// it has no subject) or, for a location, gets an impossible latitude.
pub fn samsara(
    event_id: &str,
    at: DateTime<Utc>,
    event_type: &str,
    mut data: Value,
    poison: bool,
) -> Vec<u8> {
    if poison {
        if event_type == "VehicleLocation" {
            let lat = data["location"]["latitude"].as_f64().unwrap_or(0.0);
            data["location"]["latitude"] = json!(lat + 120.0);
        } else {
            data.as_object_mut().map(|d| d.remove("vehicle"));
            data["driver"] = json!({"id": ""});
        }
    }
    json!({"eventId": event_id, "eventTime": at.to_rfc3339_opts(SecondsFormat::Millis, true),
        "eventType": event_type, "orgId": "20936", "data": data})
    .to_string()
    .into_bytes()
}

pub fn vehicle(t: &Truck) -> Value {
    json!({"id": t.id, "name": t.name})
}

pub fn driver(t: &Truck) -> Value {
    json!({"id": t.driver_id, "name": t.driver_name})
}

/// A location ping: position, heading and speed from the motion, the place it is near.
pub fn location(t: &Truck, at: DateTime<Utc>, pos: (f64, f64), heading: f64, mph: f64, near: Place) -> Value {
    json!({"vehicle": {"id": t.id, "name": t.name, "externalIds": {"samsara.vin": t.vin}},
        "location": {"time": rfc3339(at), "latitude": pos.0, "longitude": pos.1,
            "headingDegrees": heading.round(), "speedMilesPerHour": (mph * 10.0).round() / 10.0,
            "reverseGeo": {"formattedLocation": format!("near {}, {}", near.city, near.state)}}})
}

/// Engine stats: `gauges` is (odometer in metres, fuel percent).
pub fn stats(t: &Truck, at: DateTime<Utc>, gauges: (f64, f64), coolant_milli_c: i64) -> Value {
    let at = rfc3339(at);
    json!({"vehicle": vehicle(t), "engineState": {"time": at, "value": "On"},
        "fuelPercent": {"time": at, "value": gauges.1.round()},
        "obdOdometerMeters": {"time": at, "value": gauges.0.round()},
        "engineCoolantTemperatureMilliC": {"time": at, "value": coolant_milli_c}})
}

pub fn geofence(t: &Truck, hub: usize, at: DateTime<Utc>) -> Value {
    let h = HUBS[hub];
    json!({"vehicle": vehicle(t), "address": {"id": hub_id(hub), "name": format!("{} DC", h.city),
        "formattedAddress": h.name()}, "time": rfc3339(at)})
}

/// A truncated or non-UTF-8 Samsara body (broken before it is JSON).
pub fn broken_samsara(which: u32) -> Option<Vec<u8>> {
    match which {
        0 => Some(br#"{"eventId":"trunc","eventTime":"2026-11-20T1"#.to_vec()),
        1 => Some(vec![0xff, 0xfe, b'{', 0x80]),
        _ => None,
    }
}

/// The transactions of one document about `shipments`; `set` is the X12
/// transaction set, `status` the 214's, `at` when it is sent and `city` where
/// the truck is then.
pub fn edi_bodies(
    set: &str,
    shipments: &[&Shipment],
    truck: &Truck,
    status: Option<Status>,
    at: DateTime<Utc>,
    city: Place,
    interchange: u64,
) -> Vec<Vec<String>> {
    let (date, time) = (at.format("%Y%m%d").to_string(), at.format("%H%M").to_string());
    let day_time = |t: DateTime<Utc>| (t.format("%Y%m%d").to_string(), t.format("%H%M").to_string());
    shipments
        .iter()
        .enumerate()
        .map(|(n, s)| {
            let (o, d) = (HUBS[s.origin], HUBS[s.destination]);
            let (pro, bol, scac) = (&s.pro, &s.bol, s.scac);
            match (set, status) {
                ("214", Some(status)) => {
                    let reason = match status {
                        Status::Delayed(which) => DELAYS[which].0,
                        _ => "NS",
                    };
                    vec![
                        format!("B10*{pro}*{bol}*{scac}"),
                        format!("L11*PO-{}*PO", &pro[3..]),
                        format!("N1*SH*{}*93*SH{:04}", s.shipper, s.shipper.len() * 97 % 10_000),
                        format!("N4*{}*{}**US", o.city, o.state),
                        format!("N1*CN*{}*93*CN{:04}", s.consignee, s.consignee.len() * 89 % 10_000),
                        format!("N4*{}*{}**US", d.city, d.state),
                        "LX*1".to_string(),
                        format!("AT7*{}*{reason}***{date}*{time}*UT", status.code()),
                        format!("MS1*{}*{}*US", city.city, city.state),
                        format!("MS2*{scac}*{}", truck.trailer),
                        format!("AT8*G*L*{}*{}", s.weight_lb, s.pieces),
                    ]
                }
                ("210", _) => {
                    let charge = s.charge_cents;
                    vec![
                        format!(
                            "B3**INV{:06}{n:02}*{pro}*PP**{date}*{charge}**{date}*035*{scac}",
                            interchange % 1_000_000
                        ),
                        format!("N9*BM*{bol}"),
                        format!("N1*SH*{}", s.shipper),
                        format!("N1*CN*{}", s.consignee),
                        "LX*1".to_string(),
                        "L5*1*GENERAL FREIGHT".to_string(),
                        format!("L0*1***{}*G***{}*PLT", s.weight_lb, s.pieces),
                        format!("L1*1*2.35*PH*{charge}"),
                        format!("L3*{}*G***{charge}", s.weight_lb),
                    ]
                }
                ("204", _) => {
                    let (pickup_day, pickup_time) = day_time(s.picked_up_at);
                    let (due_day, due_time) = day_time(s.appointment);
                    vec![
                        format!("B2**{scac}**{pro}**PP"),
                        "B2A*00".to_string(),
                        format!("N1*SH*{}*93*SH{:04}", s.shipper, s.shipper.len() * 97 % 10_000),
                        "S5*1*LD".to_string(),
                        format!("G62*69*{pickup_day}*U*{pickup_time}"),
                        format!("N1*SF*{}", o.city),
                        "S5*2*UL".to_string(),
                        format!("G62*68*{due_day}*X*{due_time}"),
                        format!("N1*ST*{}", d.city),
                    ]
                }
                _ => vec![format!("B1*{scac}*{pro}*{date}*A")],
            }
        })
        .collect()
}

/// Wraps transaction bodies in ST/SE, GS/GE and ISA/IEA with correct counts;
/// with `corrupt`, the first SE count is off by two, an envelope error.
pub fn interchange(
    sender: &str,
    ctrl: u64,
    at: DateTime<Utc>,
    set: &str,
    txs: &[Vec<String>],
    corrupt: bool,
) -> String {
    let receiver = "APEXLOGIS";
    let (date, time) = (at.format("%Y%m%d").to_string(), at.format("%H%M").to_string());
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

/// Samsara stamps `data` times a moment before the event is sent.
pub fn data_time(at: DateTime<Utc>) -> DateTime<Utc> {
    at - Duration::seconds(2)
}
