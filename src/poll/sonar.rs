//! Market index values from FreightWaves SONAR (source `market`), which has no
//! webhooks (../shared/FINDINGS.md, "Sources"): `POST /Credential/authenticate`
//! with the username and password gives a bearer token (kept, and fetched again
//! once on a 401); `GET /data/{index}/{qualifier}/{start}/{end}` gives the
//! index's values for each date of the range. 100 requests a minute across
//! every call, by governor.
//!
//! Each configured index and qualifier is a series; one request reads one
//! series from the last date it has (values of recent dates are revised, and a
//! revision comes under the same key) to today. The cursor keeps each series'
//! last date and, during a poll, the next series, so it is saved after every
//! request.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{NaiveDate, Utc};
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::Mutex;

use super::http::{Answer, Requester, per_minute};
use super::{Change, Page, PollError, PolledRecord, Provider, read_position, secret, write_position};
use crate::config::PollConfig;

pub const SOURCE: &str = "market";

pub struct Sonar {
    url: String,
    username: String,
    password: String,
    /// `index:qualifier`, every pair of the configured ones.
    series: Vec<(String, String)>,
    backfill: chrono::Duration,
    topic: String,
    requester: Requester,
    token: Mutex<Option<String>>,
}

/// The cursor's JSON.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Position {
    /// Series (`OTRI:USA`) → the last date read.
    #[serde(default)]
    last: BTreeMap<String, NaiveDate>,
    /// During a poll: the index of the next series to read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    next: Option<usize>,
}

#[derive(Deserialize)]
struct AuthToken {
    token: String,
}

impl Sonar {
    /// The credentials from `lookup` (variable name → value).
    pub fn with_credentials(
        config: &PollConfig,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Self> {
        let c = &config.sonar;
        let series =
            c.indices.iter().flat_map(|i| c.qualifiers.iter().map(|q| (i.clone(), q.clone()))).collect();
        Ok(Sonar {
            url: c.url.trim_end_matches('/').to_owned(),
            username: secret(&lookup, "poll.sonar", &c.username_env, "the username")?,
            password: secret(&lookup, "poll.sonar", &c.password_env, "the password")?,
            series,
            backfill: chrono::Duration::from_std(c.backfill)?,
            topic: c.topic.clone(),
            requester: Requester::new(config, per_minute(c.requests_per_minute))?,
            token: Mutex::new(None),
        })
    }

    fn fail(&self, detail: String) -> PollError {
        PollError::Provider { poller: SOURCE, detail }
    }

    /// The kept bearer token, or a new one from `/Credential/authenticate`.
    async fn token(&self, renew: bool) -> Result<String, PollError> {
        let mut token = self.token.lock().await;
        if let (Some(t), false) = (token.as_ref(), renew) {
            return Ok(t.clone());
        }
        let url = format!("{}/Credential/authenticate", self.url);
        let body = json!({"username": self.username, "password": self.password});
        let answer = self
            .requester
            .send(|| self.requester.client().post(&url).json(&body))
            .await
            .map_err(|e| PollError::request(SOURCE, &url, e))?;
        if !answer.status.is_success() {
            // The body may echo the request; the password is never logged.
            return Err(self.fail(format!("{url}: HTTP {}: authentication refused", answer.status)));
        }
        let fresh: AuthToken = answer.json(SOURCE, &url)?;
        *token = Some(fresh.token.clone());
        Ok(fresh.token)
    }

    /// One data request with the token; on a 401 once more with a new token.
    async fn data(&self, url: &str) -> Result<Answer, PollError> {
        let mut renew = false;
        loop {
            let token = self.token(renew).await?;
            let answer = self
                .requester
                .send(|| self.requester.client().get(url).bearer_auth(&token))
                .await
                .map_err(|e| PollError::request(SOURCE, &url, e))?;
            if answer.status == StatusCode::UNAUTHORIZED && !renew {
                renew = true;
                continue;
            }
            return Ok(answer);
        }
    }
}

#[async_trait]
impl Provider for Sonar {
    fn source(&self) -> &'static str {
        SOURCE
    }

    fn topic(&self) -> &str {
        &self.topic
    }

    /// One series from its last date to today.
    async fn fetch_page(&self, cursor: Option<&str>) -> Result<Page, PollError> {
        let mut at: Position = read_position(SOURCE, cursor)?;
        let n = at.next.filter(|n| *n < self.series.len()).unwrap_or(0);
        let (index, qualifier) = &self.series[n];
        let key = format!("{index}:{qualifier}");
        let today = Utc::now().date_naive();
        let start = at.last.get(&key).copied().unwrap_or(today - self.backfill).min(today);
        let url = format!("{}/data/{index}/{qualifier}/{start}/{today}", self.url);
        let answer = self.data(&url).await?;
        let points: Vec<Value> = answer.json(SOURCE, &url)?;
        let mut records = Vec::with_capacity(points.len());
        for point in points {
            let date = point
                .get("date")
                .and_then(Value::as_str)
                .and_then(|d| NaiveDate::parse_from_str(d.get(..10)?, "%Y-%m-%d").ok())
                .ok_or_else(|| self.fail(format!("{url}: a point without a date: {point}")))?;
            let last = at.last.entry(key.clone()).or_insert(date);
            *last = (*last).max(date);
            records.push(PolledRecord { id: format!("{key}:{date}"), change: Change::Upsert, body: point });
        }
        at.next = (n + 1 < self.series.len()).then_some(n + 1);
        let more = at.next.is_some();
        let cursor = write_position(SOURCE, &at)?;
        Ok(Page { records, cursor: Some(cursor), more })
    }
}
