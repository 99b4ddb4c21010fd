//! The gazetteer: freight hubs (the DCs loads start and end at) and the towns
//! between them, with their coordinates and the great-circle arithmetic over
//! them. The generated fleet drives on this map and labels its positions with
//! it; the query room resolves the place names of a question ("near Dallas")
//! against it.

/// A named place: city, state, latitude, longitude.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Place {
    pub city: &'static str,
    pub state: &'static str,
    pub lat: f64,
    pub lon: f64,
}

const fn place(city: &'static str, state: &'static str, lat: f64, lon: f64) -> Place {
    Place { city, state, lat, lon }
}

/// The facilities trucks load and unload at (each has a DC geofence).
pub const HUBS: &[Place] = &[
    place("MEMPHIS", "TN", 35.1495, -90.0490),
    place("DALLAS", "TX", 32.7767, -96.7970),
    place("ATLANTA", "GA", 33.7490, -84.3880),
    place("CHICAGO", "IL", 41.8781, -87.6298),
    place("INDIANAPOLIS", "IN", 39.7684, -86.1581),
    place("LITTLE ROCK", "AR", 34.7465, -92.2896),
    place("NASHVILLE", "TN", 36.1627, -86.7816),
    place("LOUISVILLE", "KY", 38.2527, -85.7585),
    place("KANSAS CITY", "MO", 39.0997, -94.5786),
    place("HOUSTON", "TX", 29.7604, -95.3698),
    place("COLUMBUS", "OH", 39.9612, -82.9988),
    place("CHARLOTTE", "NC", 35.2271, -80.8431),
    place("ST LOUIS", "MO", 38.6270, -90.1994),
    place("BIRMINGHAM", "AL", 33.5186, -86.8104),
    place("OKLAHOMA CITY", "OK", 35.4676, -97.5164),
    place("JACKSON", "MS", 32.2988, -90.1848),
];

/// Towns between the hubs, so that every point of a route has a place
/// within about 120 km to be "near".
const TOWNS: &[Place] = &[
    place("TEXARKANA", "TX", 33.4251, -94.0477),
    place("TYLER", "TX", 32.3513, -95.3011),
    place("SHREVEPORT", "LA", 32.5252, -93.7502),
    place("MONROE", "LA", 32.5093, -92.1193),
    place("MERIDIAN", "MS", 32.3643, -88.7037),
    place("TUPELO", "MS", 34.2576, -88.7034),
    place("TUSCALOOSA", "AL", 33.2098, -87.5692),
    place("MONTGOMERY", "AL", 32.3792, -86.3077),
    place("HUNTSVILLE", "AL", 34.7304, -86.5861),
    place("CHATTANOOGA", "TN", 35.0456, -85.3097),
    place("KNOXVILLE", "TN", 35.9606, -83.9207),
    place("JACKSON", "TN", 35.6145, -88.8139),
    place("BOWLING GREEN", "KY", 36.9685, -86.4808),
    place("LEXINGTON", "KY", 38.0406, -84.5037),
    place("CINCINNATI", "OH", 39.1031, -84.5120),
    place("DAYTON", "OH", 39.7589, -84.1916),
    place("EVANSVILLE", "IN", 37.9716, -87.5711),
    place("TERRE HAUTE", "IN", 39.4667, -87.4139),
    place("EFFINGHAM", "IL", 39.1200, -88.5434),
    place("SPRINGFIELD", "IL", 39.7817, -89.6501),
    place("CHAMPAIGN", "IL", 40.1164, -88.2434),
    place("BLOOMINGTON", "IL", 40.4842, -88.9937),
    place("LAFAYETTE", "IN", 40.4167, -86.8753),
    place("FORT WAYNE", "IN", 41.0793, -85.1394),
    place("TOLEDO", "OH", 41.6528, -83.5379),
    place("PEORIA", "IL", 40.6936, -89.5890),
    place("DAVENPORT", "IA", 41.5236, -90.5776),
    place("COLUMBIA", "MO", 38.9517, -92.3341),
    place("SPRINGFIELD", "MO", 37.2090, -93.2923),
    place("JOPLIN", "MO", 37.0842, -94.5133),
    place("TULSA", "OK", 36.1540, -95.9928),
    place("WICHITA", "KS", 37.6872, -97.3301),
    place("FORT SMITH", "AR", 35.3859, -94.3985),
    place("JONESBORO", "AR", 35.8423, -90.7043),
    place("PINE BLUFF", "AR", 34.2284, -92.0032),
    place("CAPE GIRARDEAU", "MO", 37.3059, -89.5181),
    place("PADUCAH", "KY", 37.0834, -88.6000),
    place("CLARKSVILLE", "TN", 36.5298, -87.3595),
    place("WACO", "TX", 31.5493, -97.1467),
    place("AUSTIN", "TX", 30.2672, -97.7431),
    place("SAN ANTONIO", "TX", 29.4241, -98.4936),
    place("BEAUMONT", "TX", 30.0802, -94.1266),
    place("LAKE CHARLES", "LA", 30.2266, -93.2174),
    place("BATON ROUGE", "LA", 30.4515, -91.1871),
    place("HATTIESBURG", "MS", 31.3271, -89.2903),
    place("LUFKIN", "TX", 31.3382, -94.7291),
    place("ARDMORE", "OK", 34.1743, -97.1436),
    place("WICHITA FALLS", "TX", 33.9137, -98.4934),
    place("MCALESTER", "OK", 34.9334, -95.7697),
    place("GREENVILLE", "SC", 34.8526, -82.3940),
    place("SPARTANBURG", "SC", 34.9496, -81.9320),
    place("COLUMBIA", "SC", 34.0007, -81.0348),
    place("AUGUSTA", "GA", 33.4735, -82.0105),
    place("MACON", "GA", 32.8407, -83.6324),
    place("ASHEVILLE", "NC", 35.5951, -82.5515),
    place("GREENSBORO", "NC", 36.0726, -79.7920),
    place("CHARLESTON", "WV", 38.3498, -81.6326),
    place("HUNTINGTON", "WV", 38.4192, -82.4452),
    place("BRISTOL", "TN", 36.5951, -82.1887),
    place("GADSDEN", "AL", 34.0143, -86.0066),
    place("DECATUR", "AL", 34.6059, -86.9833),
    place("COLUMBUS", "MS", 33.4957, -88.4273),
    place("GREENWOOD", "MS", 33.5162, -90.1795),
    place("CLARKSDALE", "MS", 34.2001, -90.5709),
    place("SALINA", "KS", 38.8403, -97.6114),
    place("TOPEKA", "KS", 39.0473, -95.6752),
    place("ST JOSEPH", "MO", 39.7675, -94.8467),
    place("DES MOINES", "IA", 41.5868, -93.6250),
    place("CEDAR RAPIDS", "IA", 41.9779, -91.6656),
    place("ROCKFORD", "IL", 42.2711, -89.0940),
    place("MILWAUKEE", "WI", 43.0389, -87.9065),
    place("KALAMAZOO", "MI", 42.2917, -85.5872),
    place("DETROIT", "MI", 42.3314, -83.0458),
    place("MANSFIELD", "OH", 40.7584, -82.5154),
    place("ZANESVILLE", "OH", 39.9403, -82.0132),
    place("PARKERSBURG", "WV", 39.2667, -81.5615),
    place("CORBIN", "KY", 36.9487, -84.0969),
    place("COOKEVILLE", "TN", 36.1628, -85.5016),
    place("DICKSON", "TN", 36.0770, -87.3878),
    place("FORREST CITY", "AR", 35.0081, -90.7898),
    place("RUSSELLVILLE", "AR", 35.2784, -93.1338),
    place("HOT SPRINGS", "AR", 34.5037, -93.0552),
    place("EL DORADO", "AR", 33.2076, -92.6663),
    place("VICKSBURG", "MS", 32.3526, -90.8779),
    place("NATCHEZ", "MS", 31.5604, -91.4032),
    place("MOBILE", "AL", 30.6954, -88.0399),
    place("DOTHAN", "AL", 31.2232, -85.3905),
    place("COLUMBUS", "GA", 32.4610, -84.9877),
    place("ROME", "GA", 34.2570, -85.1647),
    place("DALTON", "GA", 34.7698, -84.9702),
    place("LAWTON", "OK", 34.6036, -98.3959),
    place("ENID", "OK", 36.3956, -97.8784),
    place("SHERMAN", "TX", 33.6357, -96.6089),
    place("TEMPLE", "TX", 31.0982, -97.3428),
    place("COLLEGE STATION", "TX", 30.6280, -96.3344),
    place("VICTORIA", "TX", 28.8053, -97.0036),
    place("CORPUS CHRISTI", "TX", 27.8006, -97.3964),
    place("ABILENE", "TX", 32.4487, -99.7331),
    place("ROLLA", "MO", 37.9514, -91.7713),
    place("WEST PLAINS", "MO", 36.7281, -91.8524),
    place("POPLAR BLUFF", "MO", 36.7570, -90.3929),
    place("HARRISON", "AR", 36.2298, -93.1077),
    place("LEBANON", "MO", 37.6806, -92.6638),
    place("SEDALIA", "MO", 38.7045, -93.2283),
    place("MOUNTAIN HOME", "AR", 36.3354, -92.3852),
    place("HANNIBAL", "MO", 39.7084, -91.3585),
    place("QUINCY", "IL", 39.9356, -91.4099),
    place("MACOMB", "IL", 40.4592, -90.6718),
    place("KIRKSVILLE", "MO", 40.1948, -92.5833),
    place("CHILLICOTHE", "MO", 39.7953, -93.5524),
];

const EARTH_KM: f64 = 6371.0;

/// Great-circle distance in km.
pub fn km_between(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (la1, lo1, la2, lo2) = (a.0.to_radians(), a.1.to_radians(), b.0.to_radians(), b.1.to_radians());
    let h = ((la2 - la1) / 2.0).sin().powi(2) + la1.cos() * la2.cos() * ((lo2 - lo1) / 2.0).sin().powi(2);
    2.0 * EARTH_KM * h.sqrt().asin()
}

/// Initial bearing from `a` to `b`, degrees clockwise from north in [0, 360).
pub fn bearing(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (la1, la2, dlon) = (a.0.to_radians(), b.0.to_radians(), (b.1 - a.1).to_radians());
    let y = dlon.sin() * la2.cos();
    let x = la1.cos() * la2.sin() - la1.sin() * la2.cos() * dlon.cos();
    (y.atan2(x).to_degrees() + 360.0) % 360.0
}

/// The point a `fraction` of the way from `a` to `b` (straight in latitude
/// and longitude: over a few hundred km the difference from the great circle
/// is a few km).
pub fn along(a: (f64, f64), b: (f64, f64), fraction: f64) -> (f64, f64) {
    (a.0 + (b.0 - a.0) * fraction, a.1 + (b.1 - a.1) * fraction)
}

impl Place {
    pub fn at(&self) -> (f64, f64) {
        (self.lat, self.lon)
    }

    /// "DALLAS, TX": how labels, truth files and answers name the place.
    pub fn name(&self) -> String {
        format!("{}, {}", self.city, self.state)
    }
}

/// Every hub and town.
pub fn all_places() -> impl Iterator<Item = &'static Place> {
    HUBS.iter().chain(TOWNS)
}

/// The hub or town nearest to `at`, and how far it is (km).
pub fn nearest_place(at: (f64, f64)) -> (Place, f64) {
    nearest_of(all_places(), at)
}

/// The hub nearest to `at`, and how far it is (km).
pub fn nearest_hub(at: (f64, f64)) -> (Place, f64) {
    nearest_of(HUBS.iter(), at)
}

/// The place a name means: "Dallas", "dallas, tx", "St Louis" (case and
/// commas aside; a city with no state given is the first of that name).
pub fn find_place(name: &str) -> Option<Place> {
    let words =
        |s: &str| s.to_uppercase().replace(['.', ','], " ").split_whitespace().collect::<Vec<_>>().join(" ");
    let wanted = words(name);
    all_places().find(|p| wanted == p.city || wanted == format!("{} {}", p.city, p.state)).copied()
}

fn nearest_of<'a>(places: impl Iterator<Item = &'a Place>, at: (f64, f64)) -> (Place, f64) {
    places
        .map(|p| (*p, km_between(at, p.at())))
        .min_by(|x, y| x.1.total_cmp(&y.1))
        .unwrap_or((HUBS[0], f64::INFINITY))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_and_bearings_match_known_pairs() {
        // Memphis–Dallas is about 675 km as the crow flies, heading west-south-west.
        let d = km_between(HUBS[0].at(), HUBS[1].at());
        assert!((650.0..700.0).contains(&d), "{d}");
        let b = bearing(HUBS[0].at(), HUBS[1].at());
        assert!((240.0..260.0).contains(&b), "{b}");
        // Chicago is north-north-west of Indianapolis.
        let n = bearing(HUBS[4].at(), HUBS[3].at());
        assert!((320.0..345.0).contains(&n), "{n}");
    }

    #[test]
    fn names_resolve_with_or_without_their_state() {
        assert_eq!(find_place("Dallas").map(|p| p.state), Some("TX"));
        assert_eq!(find_place("st. louis, mo").map(|p| p.city), Some("ST LOUIS"));
        assert_eq!(find_place("Kansas City MO").map(|p| p.city), Some("KANSAS CITY"));
        assert_eq!(find_place("Atlantis"), None);
    }

    #[test]
    fn every_point_between_two_hubs_has_a_place_within_130_km() {
        for a in HUBS {
            for b in HUBS {
                for step in 0..=20 {
                    let p = along(a.at(), b.at(), f64::from(step) / 20.0);
                    let (near, km) = nearest_place(p);
                    if km_between(a.at(), b.at()) < 1300.0 {
                        assert!(
                            km < 130.0,
                            "{p:?} between {} and {}: {} is {km:.0} km",
                            a.city,
                            b.city,
                            near.city
                        );
                    }
                }
            }
        }
    }
}
