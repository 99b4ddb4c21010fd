//! Samsara webhook events: the envelope, v2 (`eventId`, `eventTime`, `eventType`,
//! `data`) or v1 (`eventId`, `eventMs`, `eventType` "Alert"/"Ping", `event`), and
//! typed payloads for the event types the pipeline understands. Unknown event
//! types (and v1 events) are kept as generic records rather than rejected.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::poison::PoisonReason;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VehicleRef {
    pub id: String,
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriverRef {
    pub id: String,
    pub name: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LatLon {
    pub latitude: f64,
    pub longitude: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum GeofenceTransition {
    Enter,
    Exit,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum SamsaraData {
    VehicleLocation {
        vehicle: VehicleRef,
        time: DateTime<Utc>,
        position: LatLon,
        heading_degrees: Option<f64>,
        speed_mph: Option<f64>,
        place: Option<String>,
    },
    VehicleStats {
        vehicle: VehicleRef,
        engine_state: Option<String>,
        fuel_percent: Option<f64>,
        odometer_meters: Option<f64>,
        coolant_celsius: Option<f64>,
    },
    HosStatusChange {
        driver: DriverRef,
        vehicle: Option<VehicleRef>,
        previous_status: String,
        current_status: String,
        changed_at: DateTime<Utc>,
        position: Option<LatLon>,
    },
    SafetyEvent {
        vehicle: VehicleRef,
        driver: Option<DriverRef>,
        behavior: String,
        severity: Option<String>,
        max_acceleration_g: Option<f64>,
        position: Option<LatLon>,
    },
    Geofence {
        transition: GeofenceTransition,
        vehicle: VehicleRef,
        facility_id: String,
        facility_name: Option<String>,
        address: Option<String>,
    },
    /// An event type this version does not model; kept whole.
    Other { data: Value },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SamsaraEvent {
    pub event_id: Option<String>,
    pub event_time: DateTime<Utc>,
    pub event_type: String,
    pub org_id: Option<String>,
    pub data: SamsaraData,
}

// ---- wire shapes (Samsara's JSON), converted into the typed payloads above ----

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireEnvelope {
    event_id: Option<String>,
    event_type: String,
    org_id: Option<Value>,
    /// v2
    event_time: Option<DateTime<Utc>>,
    data: Option<Value>,
    /// v1
    event_ms: Option<i64>,
    event: Option<Value>,
}

#[derive(Deserialize)]
struct WireNamed {
    id: String,
    name: Option<String>,
}

#[derive(Deserialize)]
struct WireLatLon {
    latitude: f64,
    longitude: f64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireGps {
    time: DateTime<Utc>,
    latitude: f64,
    longitude: f64,
    heading_degrees: Option<f64>,
    speed_miles_per_hour: Option<f64>,
    reverse_geo: Option<WireReverseGeo>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireReverseGeo {
    formatted_location: Option<String>,
}

#[derive(Deserialize)]
struct WireLocationData {
    vehicle: WireNamed,
    location: WireGps,
}

#[derive(Deserialize)]
struct WireStat<T> {
    value: T,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireStatsData {
    vehicle: WireNamed,
    engine_state: Option<WireStat<String>>,
    fuel_percent: Option<WireStat<f64>>,
    obd_odometer_meters: Option<WireStat<f64>>,
    engine_coolant_temperature_milli_c: Option<WireStat<f64>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireHosData {
    driver: WireNamed,
    vehicle: Option<WireNamed>,
    previous_status: String,
    current_status: String,
    changed_at_time: DateTime<Utc>,
    location: Option<WireLatLon>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireSafetyData {
    vehicle: WireNamed,
    driver: Option<WireNamed>,
    behavior_label: String,
    severity: Option<String>,
    max_acceleration_g_force: Option<f64>,
    location: Option<WireLatLon>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireAddress {
    id: String,
    name: Option<String>,
    formatted_address: Option<String>,
}

#[derive(Deserialize)]
struct WireGeofenceData {
    vehicle: WireNamed,
    address: WireAddress,
}

impl From<WireNamed> for VehicleRef {
    fn from(w: WireNamed) -> Self {
        VehicleRef { id: w.id, name: w.name }
    }
}

impl From<WireNamed> for DriverRef {
    fn from(w: WireNamed) -> Self {
        DriverRef { id: w.id, name: w.name }
    }
}

fn checked_position(latitude: f64, longitude: f64) -> Result<LatLon, PoisonReason> {
    if !(-90.0..=90.0).contains(&latitude) || !(-180.0..=180.0).contains(&longitude) {
        return Err(PoisonReason::InvalidSamsara(format!(
            "position out of range: latitude {latitude}, longitude {longitude}"
        )));
    }
    Ok(LatLon { latitude, longitude })
}

fn checked_opt_position(p: Option<WireLatLon>) -> Result<Option<LatLon>, PoisonReason> {
    p.map(|p| checked_position(p.latitude, p.longitude)).transpose()
}

fn non_empty(what: &str, id: &str) -> Result<(), PoisonReason> {
    if id.trim().is_empty() {
        return Err(PoisonReason::InvalidSamsara(format!("{what} id is empty")));
    }
    Ok(())
}

fn typed<T: for<'de> Deserialize<'de>>(event_type: &str, data: Value) -> Result<T, PoisonReason> {
    serde_json::from_value(data).map_err(|e| PoisonReason::InvalidSamsara(format!("{event_type} data: {e}")))
}

fn parse_data(event_type: &str, data: Value) -> Result<SamsaraData, PoisonReason> {
    let parsed = match event_type {
        "VehicleLocation" => {
            let d: WireLocationData = typed(event_type, data)?;
            SamsaraData::VehicleLocation {
                position: checked_position(d.location.latitude, d.location.longitude)?,
                vehicle: d.vehicle.into(),
                time: d.location.time,
                heading_degrees: d.location.heading_degrees,
                speed_mph: d.location.speed_miles_per_hour,
                place: d.location.reverse_geo.and_then(|g| g.formatted_location),
            }
        }
        "VehicleStats" => {
            let d: WireStatsData = typed(event_type, data)?;
            SamsaraData::VehicleStats {
                vehicle: d.vehicle.into(),
                engine_state: d.engine_state.map(|s| s.value),
                fuel_percent: d.fuel_percent.map(|s| s.value),
                odometer_meters: d.obd_odometer_meters.map(|s| s.value),
                coolant_celsius: d.engine_coolant_temperature_milli_c.map(|s| s.value / 1000.0),
            }
        }
        "HosStatusChange" => {
            let d: WireHosData = typed(event_type, data)?;
            non_empty("driver", &d.driver.id)?;
            SamsaraData::HosStatusChange {
                position: checked_opt_position(d.location)?,
                driver: d.driver.into(),
                vehicle: d.vehicle.map(Into::into),
                previous_status: d.previous_status,
                current_status: d.current_status,
                changed_at: d.changed_at_time,
            }
        }
        "SafetyEvent" => {
            let d: WireSafetyData = typed(event_type, data)?;
            SamsaraData::SafetyEvent {
                position: checked_opt_position(d.location)?,
                vehicle: d.vehicle.into(),
                driver: d.driver.map(Into::into),
                behavior: d.behavior_label,
                severity: d.severity,
                max_acceleration_g: d.max_acceleration_g_force,
            }
        }
        "GeofenceEnter" | "GeofenceExit" => {
            let d: WireGeofenceData = typed(event_type, data)?;
            non_empty("address", &d.address.id)?;
            SamsaraData::Geofence {
                transition: if event_type == "GeofenceEnter" {
                    GeofenceTransition::Enter
                } else {
                    GeofenceTransition::Exit
                },
                vehicle: d.vehicle.into(),
                facility_id: d.address.id,
                facility_name: d.address.name,
                address: d.address.formatted_address,
            }
        }
        _ => return Ok(SamsaraData::Other { data }),
    };
    if let Some(v) = parsed.vehicle() {
        non_empty("vehicle", &v.id)?;
    }
    Ok(parsed)
}

impl SamsaraData {
    pub fn vehicle(&self) -> Option<&VehicleRef> {
        match self {
            SamsaraData::VehicleLocation { vehicle, .. }
            | SamsaraData::VehicleStats { vehicle, .. }
            | SamsaraData::SafetyEvent { vehicle, .. }
            | SamsaraData::Geofence { vehicle, .. } => Some(vehicle),
            SamsaraData::HosStatusChange { vehicle, .. } => vehicle.as_ref(),
            SamsaraData::Other { .. } => None,
        }
    }

    pub fn driver(&self) -> Option<&DriverRef> {
        match self {
            SamsaraData::HosStatusChange { driver, .. } => Some(driver),
            SamsaraData::SafetyEvent { driver, .. } => driver.as_ref(),
            _ => None,
        }
    }

    pub fn position(&self) -> Option<LatLon> {
        match self {
            SamsaraData::VehicleLocation { position, .. } => Some(*position),
            SamsaraData::HosStatusChange { position, .. } | SamsaraData::SafetyEvent { position, .. } => {
                *position
            }
            _ => None,
        }
    }
}

impl SamsaraEvent {
    /// Parses one webhook body. Errors say which field was wrong.
    pub fn parse(json: &str) -> Result<Self, PoisonReason> {
        let env: WireEnvelope = serde_json::from_str(json).map_err(|e| match e.classify() {
            serde_json::error::Category::Data => PoisonReason::InvalidSamsara(format!("envelope: {e}")),
            _ => PoisonReason::InvalidJson(e.to_string()),
        })?;
        if env.event_type.trim().is_empty() {
            return Err(PoisonReason::InvalidSamsara("eventType is empty".into()));
        }
        let (event_time, data) = match (env.event_time, env.data, env.event_ms, env.event) {
            (Some(time), Some(data), _, _) => (time, parse_data(&env.event_type, data)?),
            (None, None, Some(ms), Some(event)) => {
                let time = DateTime::<Utc>::from_timestamp_millis(ms)
                    .ok_or_else(|| PoisonReason::InvalidSamsara(format!("eventMs {ms} is not a time")))?;
                (time, SamsaraData::Other { data: event })
            }
            _ => {
                return Err(PoisonReason::InvalidSamsara(
                    "envelope: needs eventTime and data (v2) or eventMs and event (v1)".into(),
                ));
            }
        };
        let org_id = env.org_id.map(|v| match v {
            Value::String(s) => s,
            other => other.to_string(),
        });
        Ok(SamsaraEvent {
            event_id: env.event_id.filter(|s| !s.trim().is_empty()),
            event_time,
            event_type: env.event_type,
            org_id,
            data,
        })
    }

    /// The natural key: the event id, or vehicle + time + kind when Samsara sent none.
    pub fn natural_key(&self) -> Result<String, PoisonReason> {
        if let Some(id) = &self.event_id {
            return Ok(id.clone());
        }
        match self.data.vehicle() {
            Some(v) => Ok(format!("{}|{}|{}", v.id, self.event_time.to_rfc3339(), self.event_type)),
            None => Err(PoisonReason::InvalidSamsara(
                "no eventId and no vehicle to derive an identity from".into(),
            )),
        }
    }

    pub fn summary(&self) -> String {
        let who = self
            .data
            .vehicle()
            .map(|v| format!("vehicle {} {}", v.id, v.name.as_deref().unwrap_or("")))
            .unwrap_or_default();
        let what = match &self.data {
            SamsaraData::VehicleLocation { position, speed_mph, place, .. } => format!(
                "location {:.4},{:.4} speed {:.0} mph {}",
                position.latitude,
                position.longitude,
                speed_mph.unwrap_or(0.0),
                place.as_deref().unwrap_or("")
            ),
            SamsaraData::VehicleStats { engine_state, fuel_percent, odometer_meters, .. } => {
                format!(
                    "engine {} fuel {:.0}% odometer {:.0} m",
                    engine_state.as_deref().unwrap_or("unknown"),
                    fuel_percent.unwrap_or(f64::NAN),
                    odometer_meters.unwrap_or(f64::NAN)
                )
            }
            SamsaraData::HosStatusChange { driver, previous_status, current_status, .. } => {
                format!(
                    "driver {} {} duty status {} to {}",
                    driver.id,
                    driver.name.as_deref().unwrap_or(""),
                    spoken(previous_status),
                    spoken(current_status)
                )
            }
            SamsaraData::SafetyEvent { behavior, severity, .. } => {
                format!("safety {} severity {}", spoken(behavior), severity.as_deref().unwrap_or("unknown"))
            }
            SamsaraData::Geofence { transition, facility_name, address, .. } => format!(
                "geofence {transition:?} {} {}",
                facility_name.as_deref().unwrap_or(""),
                address.as_deref().unwrap_or("")
            ),
            SamsaraData::Other { .. } => String::new(),
        };
        format!("samsara {} {who} {what}", self.event_type).split_whitespace().collect::<Vec<_>>().join(" ")
    }
}

/// A Samsara label as words for summaries: `HarshBrake` and `offDuty` read
/// as "harsh brake" and "off duty" to the text route and the embedders.
fn spoken(label: &str) -> String {
    let mut words = String::with_capacity(label.len() + 4);
    for (i, c) in label.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            words.push(' ');
        }
        words.extend(c.to_lowercase());
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCATION: &str = include_str!("../../tests/fixtures/samples/samsara/vehicle_location.json");

    #[test]
    fn labels_read_as_words_in_summaries() {
        assert_eq!(spoken("HarshBrake"), "harsh brake");
        assert_eq!(spoken("offDuty"), "off duty");
        assert_eq!(spoken("driving"), "driving");
    }

    #[test]
    fn unknown_event_type_is_kept() {
        let e = SamsaraEvent::parse(
            r#"{"eventId":"x1","eventTime":"2026-11-20T14:03:27Z","eventType":"DocumentSubmitted","data":{"doc":1}}"#,
        )
        .unwrap();
        assert!(matches!(e.data, SamsaraData::Other { .. }));
        assert_eq!(e.natural_key().unwrap(), "x1");
    }

    #[test]
    fn v1_envelope_is_kept_whole() {
        let e = SamsaraEvent::parse(
            r#"{"eventId":"a1","eventMs":1700000000000,"eventType":"Alert","event":{"alertConditionId":"DeviceLocationInsideGeofence"}}"#,
        )
        .unwrap();
        assert_eq!(e.event_time.timestamp(), 1_700_000_000);
        assert_eq!(e.event_type, "Alert");
        assert!(matches!(e.data, SamsaraData::Other { .. }));
        let err = SamsaraEvent::parse(r#"{"eventId":"a1","eventType":"Ping","event":{}}"#).unwrap_err();
        assert!(err.to_string().contains("eventMs and event (v1)"), "{err}");
    }

    #[test]
    fn out_of_range_position_is_poison() {
        let bad = LOCATION.replace("35.1495", "135.1495");
        let err = SamsaraEvent::parse(&bad).unwrap_err();
        assert_eq!(err.label(), "invalid_samsara");
        assert!(err.to_string().contains("latitude 135.1495"), "{err}");
    }

    #[test]
    fn missing_field_names_the_field() {
        let bad = LOCATION.replace("\"latitude\"", "\"lat\"");
        let err = SamsaraEvent::parse(&bad).unwrap_err();
        assert!(err.to_string().contains("latitude"), "{err}");
    }

    #[test]
    fn broken_json_is_invalid_json() {
        let err = SamsaraEvent::parse("{\"eventId\": ").unwrap_err();
        assert_eq!(err.label(), "invalid_json");
    }
}
