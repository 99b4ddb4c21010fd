//! Structured filters a client sends beside its question (`POST /v1/query`
//! `filters`): each narrows every store read of the answer, on top of what
//! the question itself says, so "harsh braking last week" with
//! `{"vehicle": "Truck 3"}` is truck 3's alone. Values are bound
//! parameters like the question's.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::places::km_between;
use crate::store::{GeoBox, RecordFilter};

/// Any field left out does not narrow; an unknown one is refused by name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filters {
    /// A vehicle by its id or its name (any case).
    #[serde(default)]
    pub vehicle: Option<String>,
    /// A driver by id or name (any case): Samsara records naming them.
    #[serde(default)]
    pub driver: Option<String>,
    /// A facility: a geofence's id or name, or a party of an EDI document
    /// (shipper, consignee, stop) by name (any case).
    #[serde(default)]
    pub facility: Option<String>,
    /// A shipment by its PRO, BOL or shipment id.
    #[serde(default)]
    pub shipment: Option<String>,
    /// A carrier's SCAC.
    #[serde(default)]
    pub scac: Option<String>,
    /// Record kinds (`SafetyEvent`, `214`, ...).
    #[serde(default)]
    pub kinds: Vec<String>,
    /// Event time in `[from, to)`.
    #[serde(default)]
    pub from: Option<DateTime<Utc>>,
    #[serde(default)]
    pub to: Option<DateTime<Utc>>,
    /// Records with a position within `radius_km` of a point.
    #[serde(default)]
    pub near: Option<Radius>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Radius {
    pub latitude: f64,
    pub longitude: f64,
    pub radius_km: f64,
}

impl Filters {
    /// What is wrong with them, said so a client can fix it.
    pub fn check(&self) -> Result<(), String> {
        if let (Some(from), Some(to)) = (self.from, self.to)
            && from >= to
        {
            return Err(format!("filters.from ({from}) must be before filters.to ({to})"));
        }
        if let Some(r) = self.near {
            let valid = (-90.0..=90.0).contains(&r.latitude)
                && (-180.0..=180.0).contains(&r.longitude)
                && r.radius_km > 0.0
                && r.radius_km <= 1000.0;
            if !valid {
                return Err("filters.near needs latitude in -90..90, longitude in -180..180 and radius_km \
                            in (0, 1000]"
                    .into());
            }
        }
        Ok(())
    }

    /// `f` narrowed by these filters too; `None` when the two cannot both
    /// hold (the question names one vehicle, the filter another).
    pub fn narrow(&self, mut f: RecordFilter) -> Option<RecordFilter> {
        fn both(a: &mut Option<String>, b: &Option<String>) -> bool {
            match (a.as_ref(), b) {
                (Some(x), Some(y)) => x.eq_ignore_ascii_case(y),
                (None, Some(y)) => {
                    *a = Some(y.clone());
                    true
                }
                _ => true,
            }
        }
        let pairs = [
            (&mut f.vehicle, &self.vehicle),
            (&mut f.scac, &self.scac),
            (&mut f.driver, &self.driver),
            (&mut f.facility, &self.facility),
        ];
        if !pairs.into_iter().all(|(asked, filter)| both(asked, filter)) {
            return None;
        }
        if let Some(s) = &self.shipment {
            if !f.shipments.is_empty() && !f.shipments.contains(s) {
                return None;
            }
            f.shipments = vec![s.clone()];
        }
        if !self.kinds.is_empty() {
            f.kinds = if f.kinds.is_empty() {
                self.kinds.clone()
            } else {
                f.kinds.iter().filter(|k| self.kinds.contains(k)).cloned().collect()
            };
            if f.kinds.is_empty() {
                return None;
            }
        }
        f.from = f.from.max(self.from);
        f.to = match (f.to, self.to) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let (Some(from), Some(to)) = (f.from, f.to)
            && from >= to
        {
            return None;
        }
        if let Some(r) = self.near {
            let around = geo_box(r.latitude, r.longitude, r.radius_km);
            f.within = match f.within {
                None => Some(around),
                Some(b) => {
                    let lat = (b.lat.0.max(around.lat.0), b.lat.1.min(around.lat.1));
                    let lon = (b.lon.0.max(around.lon.0), b.lon.1.min(around.lon.1));
                    if lat.0 > lat.1 || lon.0 > lon.1 {
                        return None;
                    }
                    Some(GeoBox { lat, lon })
                }
            };
        }
        Some(f)
    }

    /// Whether a record (its body) read under `narrow`'s box is inside the radius too.
    pub fn keeps(&self, body: &serde_json::Value) -> bool {
        let Some(r) = self.near else { return true };
        position(body).is_some_and(|p| km_between(p, (r.latitude, r.longitude)) <= r.radius_km)
    }
}

/// The box around a radius (a degree of longitude shrinks with latitude).
pub(super) fn geo_box(latitude: f64, longitude: f64, radius_km: f64) -> GeoBox {
    let dlat = radius_km / 111.0;
    let dlon = radius_km / (111.0 * latitude.to_radians().cos().max(0.01));
    GeoBox { lat: (latitude - dlat, latitude + dlat), lon: (longitude - dlon, longitude + dlon) }
}

/// A Samsara record's position.
pub(super) fn position(body: &serde_json::Value) -> Option<(f64, f64)> {
    let p = body.pointer("/data/position")?;
    Some((p.get("latitude")?.as_f64()?, p.get("longitude")?.as_f64()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_and_the_question_must_both_hold() {
        let vehicle = Filters { vehicle: Some("truck 3".into()), ..Filters::default() };
        let asked = RecordFilter { vehicle: Some("Truck 3".into()), ..RecordFilter::default() };
        assert_eq!(vehicle.narrow(asked.clone()).unwrap().vehicle.as_deref(), Some("Truck 3"));
        let other = RecordFilter { vehicle: Some("Truck 4".into()), ..RecordFilter::default() };
        assert!(vehicle.narrow(other).is_none());

        let kinds = Filters { kinds: vec!["214".into(), "210".into()], ..Filters::default() };
        let asked = RecordFilter { kinds: vec!["214".into(), "204".into()], ..RecordFilter::default() };
        assert_eq!(kinds.narrow(asked).unwrap().kinds, ["214"]);
        let disjoint = RecordFilter { kinds: vec!["SafetyEvent".into()], ..RecordFilter::default() };
        assert!(kinds.narrow(disjoint).is_none());
    }

    #[test]
    fn a_radius_is_a_box_in_the_store_and_an_exact_cut_after() {
        let dallas = Radius { latitude: 32.7767, longitude: -96.797, radius_km: 50.0 };
        let near = Filters { near: Some(dallas), ..Filters::default() };
        let b = near.narrow(RecordFilter::default()).unwrap().within.unwrap();
        assert!(b.lat.0 < 32.7767 && 32.7767 < b.lat.1 && b.lon.0 < -96.797 && -96.797 < b.lon.1);
        let at = |lat: f64, lon: f64| serde_json::json!({"data": {"position": {"latitude": lat, "longitude": lon}}});
        assert!(near.keeps(&at(32.9, -96.8)));
        // Inside the box's corner, outside the circle.
        assert!(!near.keeps(&at(b.lat.1 - 0.01, b.lon.1 - 0.01)));
        assert!(!near.keeps(&serde_json::json!({"content": {}})), "a record with no position is not near");
        let bad = Filters { near: Some(Radius { radius_km: 0.0, ..dallas }), ..Filters::default() };
        assert!(bad.check().is_err());
    }
}
