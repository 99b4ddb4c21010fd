//! CRM objects from HubSpot's CRM search (source `crm`), as its contract reads
//! (../shared/FINDINGS.md, "Sources"): `POST /crm/v3/objects/{object}/search`
//! with filters on the object's modified-date property (`lastmodifieddate` for
//! contacts, `hs_lastmodifieddate` for the others), at most 200 results per
//! request, 5 requests per second.
//!
//! A search reaches at most 10,000 results, and many objects share one
//! modified time (bulk updates), so a poll never pages on the timestamp: it
//! reads a closed window `since ≤ modified ≤ until` (`until` fixed when the
//! poll starts, `poll.hubspot.search_lag` before now) in `hs_object_id` order,
//! each request asking for the ids after the last one it has (keyset). No
//! query ever pages past its first 200, so the cap is never met, and an object
//! edited mid-poll that leaves the window moves no other object's position
//! (offset paging with `after` would skip one); the next window holds it.
//! The cursor is saved after every page: where the window is, which object
//! type, and the last id, so a restarted poll goes on from there.
//!
//! Authentication: a private app's token from a variable, or a public OAuth
//! app's refresh token (`oauth`), refreshed before expiry and after a 401.

use async_trait::async_trait;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use std::sync::Arc;

use super::http::{Requester, per_second};
use super::oauth::{ClientAuth, Credential};
use super::{Change, Page, PollError, PolledRecord, Provider, read_position, write_position};
use crate::config::PollConfig;
use crate::store::PollCursors;

pub const SOURCE: &str = "crm";

pub struct Hubspot {
    url: String,
    auth: Credential,
    objects: Vec<String>,
    page_size: u32,
    search_lag: chrono::Duration,
    topic: String,
    requester: Requester,
}

/// Where a poll is: the cursor's JSON.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Position {
    /// Objects modified at or after this (ms since the epoch) are not yet read.
    since: i64,
    /// The end of the window being read (ms), while a poll is in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    until: Option<i64>,
    /// The object type being read, and the last id read of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    object: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    after_id: Option<String>,
}

#[derive(Deserialize)]
struct SearchResponse {
    #[serde(default)]
    results: Vec<Value>,
    #[serde(default)]
    paging: Option<Value>,
}

/// The modified-date property HubSpot keeps for an object type.
pub fn modified_property(object: &str) -> &'static str {
    if object == "contacts" { "lastmodifieddate" } else { "hs_lastmodifieddate" }
}

impl Hubspot {
    /// The credentials from `lookup` (variable name → value); a public OAuth
    /// app's refresh tokens are kept in `tokens`.
    pub fn with_credentials(
        config: &PollConfig,
        lookup: impl Fn(&str) -> Option<String>,
        tokens: Option<Arc<dyn PollCursors>>,
    ) -> anyhow::Result<Self> {
        let c = &config.hubspot;
        let requester = Requester::new(config, per_second(c.requests_per_second))?;
        Ok(Hubspot {
            url: c.url.trim_end_matches('/').to_owned(),
            auth: Credential::from_keys(
                SOURCE,
                c.oauth(),
                ClientAuth::Form,
                &lookup,
                tokens,
                requester.client().clone(),
            )?,
            objects: c.objects.clone(),
            page_size: c.page_size,
            search_lag: chrono::Duration::from_std(c.search_lag)?,
            topic: c.topic.clone(),
            requester,
        })
    }

    fn fail(&self, detail: String) -> PollError {
        PollError::Provider { poller: SOURCE, detail }
    }

    /// One search request: the objects of `object` in the window after `after_id`.
    async fn search(
        &self,
        object: &str,
        since: i64,
        until: i64,
        after_id: Option<&str>,
    ) -> Result<SearchResponse, PollError> {
        let modified = modified_property(object);
        let mut filters = vec![
            json!({"propertyName": modified, "operator": "GTE", "value": since.to_string()}),
            json!({"propertyName": modified, "operator": "LTE", "value": until.to_string()}),
        ];
        if let Some(id) = after_id {
            filters.push(json!({"propertyName": "hs_object_id", "operator": "GT", "value": id}));
        }
        let body = json!({
            "filterGroups": [{"filters": filters}],
            "sorts": [{"propertyName": "hs_object_id", "direction": "ASCENDING"}],
            "properties": properties(object),
            "limit": self.page_size,
        });
        let url = format!("{}/crm/v3/objects/{object}/search", self.url);
        let mut refreshed = false;
        loop {
            let token = self.auth.bearer().await?;
            let answer = self
                .requester
                .send(|| self.requester.client().post(&url).bearer_auth(&token).json(&body))
                .await
                .map_err(|e| PollError::request(SOURCE, &url, e))?;
            if !self.auth.retry_after(answer.status, &mut refreshed).await {
                return answer.json(SOURCE, &url);
            }
        }
    }
}

/// The properties asked for per object type (search returns only those named).
fn properties(object: &str) -> Vec<&'static str> {
    let mut p = vec!["hs_object_id", modified_property(object)];
    p.extend_from_slice(match object {
        "contacts" => &["email", "firstname", "lastname", "company", "phone"][..],
        "companies" => &["name", "domain", "city", "state"],
        "deals" => &["dealname", "amount", "dealstage", "closedate", "pipeline"],
        _ => &[],
    });
    p
}

fn object_id(v: &Value) -> Option<String> {
    match v.get("id")? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[async_trait]
impl Provider for Hubspot {
    fn source(&self) -> &'static str {
        SOURCE
    }

    fn topic(&self) -> &str {
        &self.topic
    }

    /// One search request; its cursor says where the next one starts.
    async fn fetch_page(&self, cursor: Option<&str>) -> Result<Page, PollError> {
        let mut at: Position = read_position(SOURCE, cursor)?;
        let until = *at.until.get_or_insert_with(|| (Utc::now() - self.search_lag).timestamp_millis());
        let object = match &at.object {
            Some(o) if self.objects.contains(o) => o.clone(),
            // A new window, or the object type is no longer configured: start the list again.
            _ => {
                at.after_id = None;
                self.objects[0].clone()
            }
        };
        let found = self.search(&object, at.since, until, at.after_id.as_deref()).await?;
        let mut records = Vec::with_capacity(found.results.len());
        for body in found.results {
            let id =
                object_id(&body).ok_or_else(|| self.fail(format!("a {object} result without id: {body}")))?;
            at.after_id = Some(id.clone());
            records.push(PolledRecord { id: format!("{object}:{id}"), change: Change::Upsert, body });
        }
        let more_of_this = found.paging.as_ref().and_then(|p| p.get("next")).is_some() && !records.is_empty();
        let next_object = self.objects.iter().skip_while(|o| **o != object).nth(1);
        let more = match (more_of_this, next_object) {
            (true, _) => {
                at.object = Some(object);
                true
            }
            (false, Some(next)) => {
                (at.object, at.after_id) = (Some(next.clone()), None);
                true
            }
            (false, None) => {
                // The window is read: the next poll's starts where this one ended.
                at = Position { since: until, ..Position::default() };
                false
            }
        };
        let cursor = write_position(SOURCE, &at)?;
        Ok(Page { records, cursor: Some(cursor), more })
    }
}
