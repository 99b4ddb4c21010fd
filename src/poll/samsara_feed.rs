//! Vehicle stats from Samsara's stats feed (source `samsara`), as its contract
//! reads (../shared/FINDINGS.md, "Sources"): `GET /fleet/vehicles/stats/feed`
//! with `types` (at most 3) and `after` = the last `endCursor`; the first call,
//! without `after`, answers the latest value per vehicle. While `hasNextPage`
//! is true the next page is fetched at once; once it is false the feed is
//! caught up and the next call waits at least 5 s. A 429's `Retry-After` is
//! honoured by the requester.
//!
//! Each stat point becomes the webhook event members already parse (v2
//! envelope, `VehicleLocation` for gps, `VehicleStats` for the others) with an
//! `eventId` made of vehicle, stat type and time, so a page produced twice is
//! the same records.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio::sync::Mutex;

use super::http::{Requester, per_second};
use super::{Change, Page, PollError, PolledRecord, Provider, secret};
use crate::config::PollConfig;

pub const SOURCE: &str = "samsara";
/// Samsara: when `hasNextPage` is false, wait at least this long before the next call.
pub const CAUGHT_UP_WAIT: Duration = Duration::from_secs(5);

pub struct SamsaraFeed {
    url: String,
    token: String,
    types: String,
    topic: String,
    requester: Requester,
    /// When the feed last answered `hasNextPage: false`.
    caught_up_at: Mutex<Option<Instant>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Pagination {
    end_cursor: String,
    has_next_page: bool,
}

#[derive(Deserialize)]
struct FeedPage {
    data: Vec<Map<String, Value>>,
    pagination: Pagination,
}

impl SamsaraFeed {
    /// The token from `lookup` (variable name → value).
    pub fn with_credentials(
        config: &PollConfig,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Self> {
        let c = &config.samsara_feed;
        Ok(SamsaraFeed {
            url: c.url.trim_end_matches('/').to_owned(),
            token: secret(&lookup, "poll.samsara_feed", &c.token_env, "the API token")?,
            types: c.types.join(","),
            topic: c.topic.clone(),
            requester: Requester::new(config, per_second(c.requests_per_second))?,
            caught_up_at: Mutex::new(None),
        })
    }

    fn fail(&self, detail: String) -> PollError {
        PollError::Provider { poller: SOURCE, detail }
    }
}

/// The webhook event for one stat point of `vehicle`, or `None` for a stat
/// type this feed does not turn into events.
fn event_of(vehicle: &Value, stat: &str, point: &Value) -> Option<(String, Value)> {
    let time = point.get("time")?.as_str()?;
    let vehicle_id = vehicle.get("id")?.as_str()?;
    let (event_type, data) = match stat {
        "gps" => ("VehicleLocation", json!({"vehicle": vehicle, "location": point})),
        "engineStates" => ("VehicleStats", json!({"vehicle": vehicle, "engineState": point})),
        "fuelPercents" => ("VehicleStats", json!({"vehicle": vehicle, "fuelPercent": point})),
        "obdOdometerMeters" => ("VehicleStats", json!({"vehicle": vehicle, "obdOdometerMeters": point})),
        "engineCoolantTemperatureMilliC" => {
            ("VehicleStats", json!({"vehicle": vehicle, "engineCoolantTemperatureMilliC": point}))
        }
        _ => return None,
    };
    let event_id = format!("feed:{vehicle_id}:{stat}:{time}");
    let event = json!({"eventId": event_id, "eventTime": time, "eventType": event_type, "data": data});
    Some((event_id, event))
}

/// Every stat point of a feed page as events, in the page's order.
fn events(page: &FeedPage) -> Vec<PolledRecord> {
    let mut out = Vec::new();
    for item in &page.data {
        let vehicle = json!({"id": item.get("id"), "name": item.get("name")});
        for (stat, points) in item {
            for point in points.as_array().into_iter().flatten() {
                if let Some((id, body)) = event_of(&vehicle, stat, point) {
                    out.push(PolledRecord { id, change: Change::Upsert, body });
                }
            }
        }
    }
    out
}

#[async_trait]
impl Provider for SamsaraFeed {
    fn source(&self) -> &'static str {
        SOURCE
    }

    fn topic(&self) -> &str {
        &self.topic
    }

    async fn fetch_page(&self, cursor: Option<&str>) -> Result<Page, PollError> {
        let mut caught_up_at = self.caught_up_at.lock().await;
        if let Some(at) = *caught_up_at {
            tokio::time::sleep(CAUGHT_UP_WAIT.saturating_sub(at.elapsed())).await;
        }
        let mut query = vec![("types", self.types.as_str())];
        if let Some(after) = cursor {
            query.push(("after", after));
        }
        let url = reqwest::Url::parse_with_params(&format!("{}/fleet/vehicles/stats/feed", self.url), &query)
            .map_err(|e| self.fail(format!("{}: {e}", self.url)))?;
        let answer = self
            .requester
            .send(|| self.requester.client().get(url.clone()).bearer_auth(&self.token))
            .await
            .map_err(|e| PollError::request(SOURCE, &url, e))?;
        let page: FeedPage = answer.json(SOURCE, &url)?;
        *caught_up_at = (!page.pagination.has_next_page).then(Instant::now);
        let cursor = (!page.pagination.end_cursor.is_empty()).then(|| page.pagination.end_cursor.clone());
        Ok(Page { records: events(&page), cursor, more: page.pagination.has_next_page })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::samsara::{SamsaraData, SamsaraEvent};

    #[test]
    fn feed_points_become_the_webhook_events_members_parse() {
        let page: FeedPage = serde_json::from_value(json!({
            "data": [{"id": "281474", "name": "Truck 12",
                "gps": [{"time": "2026-11-20T10:00:00Z", "latitude": 41.9, "longitude": -87.6,
                         "headingDegrees": 90, "speedMilesPerHour": 55,
                         "reverseGeo": {"formattedLocation": "Chicago, IL"}}],
                "fuelPercents": [{"time": "2026-11-20T10:00:05Z", "value": 64}],
                "engineStates": [{"time": "2026-11-20T10:00:06Z", "value": "On"}]}],
            "pagination": {"endCursor": "c1", "hasNextPage": false}
        }))
        .unwrap();
        let records = events(&page);
        assert_eq!(records.len(), 3);
        let parsed: Vec<SamsaraEvent> =
            records.iter().map(|r| SamsaraEvent::parse(&r.body.to_string()).unwrap()).collect();
        assert!(records.iter().all(|r| r.id.starts_with("feed:281474:")), "{:?}", records[0].id);
        assert!(parsed.iter().any(|e| matches!(&e.data,
            SamsaraData::VehicleLocation { place: Some(p), speed_mph: Some(s), .. } if p == "Chicago, IL" && *s == 55.0)));
        assert!(parsed.iter().any(|e| matches!(&e.data,
            SamsaraData::VehicleStats { fuel_percent: Some(f), .. } if *f == 64.0)));
        assert!(parsed.iter().any(|e| matches!(&e.data,
            SamsaraData::VehicleStats { engine_state: Some(s), .. } if s == "On")));
    }
}
