//! Accounting objects from QuickBooks Online (source `financial`), as its
//! contract reads (../shared/FINDINGS.md, "Sources"):
//! `GET /v3/company/{realm}/cdc?entities=…&changedSince=…` answers what changed
//! since a time, at most 1,000 objects per answer across the entities asked,
//! and its `time` is the next `changedSince`. An object with
//! `status: "Deleted"` is a removal. CDC looks back 30 days at most.
//!
//! An answer with 1,000 objects or more is taken as truncated and the window
//! is split: first one CDC per entity (the cap is shared); an entity still
//! truncated alone is split in time by bisection, finding the earliest
//! `changedSince` whose answer is whole. That suffix of the window comes from
//! CDC, removals included; CDC has no upper bound, so the prefix before it can
//! only be read with queries (`SELECT … WHERE MetaData.LastUpdatedTime >= a AND
//! < b`, keyset on `Id`, 1,000 a page), which do not return deleted objects: a
//! deletion in such a prefix is not seen, and the poll says so in its log.
//!
//! The first poll (no cursor) and a poll whose cursor is past the 30 days
//! (with `resync_after_gap`) read every object with queries, then go on with
//! CDC from the time that read started. The cursor (where CDC starts, and any
//! query read in progress) is saved after every page.
//!
//! Authentication: an access token from a variable (made by hand, it lasts an
//! hour), or an OAuth app's refresh token (`oauth`), refreshed before expiry
//! and after a 401.

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use std::sync::Arc;

use super::http::{Requester, per_minute};
use super::oauth::{ClientAuth, Credential};
use super::{Change, Page, PollError, PolledRecord, Provider, read_position, write_position};
use crate::config::PollConfig;
use crate::store::PollCursors;

pub const SOURCE: &str = "financial";
/// An answer with this many objects may have been cut short.
pub const TRUNCATED_AT: usize = 1_000;
/// CDC's look-back.
pub const MAX_LOOKBACK: chrono::Duration = chrono::Duration::days(30);
/// Bisection steps when one entity's window is truncated (30 days / 2^12 ≈ 10 min).
const MAX_SPLITS: u32 = 12;
/// Objects per query page (QuickBooks' MAXRESULTS limit).
const QUERY_PAGE: usize = 1_000;

pub struct Quickbooks {
    base: String,
    auth: Credential,
    entities: Vec<String>,
    resync_after_gap: bool,
    topic: String,
    requester: Requester,
}

/// A read with queries: every object of `entities` last updated in `[from, to)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct QueryRead {
    /// Entities still to read; the first is being read.
    entities: Vec<String>,
    /// `None`: from the beginning (a full sync).
    from: Option<DateTime<Utc>>,
    to: DateTime<Utc>,
    /// The last `Id` read of the first entity (keyset).
    after_id: Option<String>,
}

/// The cursor's JSON.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Position {
    /// CDC's next `changedSince`; `None` before the first full sync.
    since: Option<DateTime<Utc>>,
    /// Query reads still to do before CDC goes on from `since`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    reads: Vec<QueryRead>,
}

/// One entity's objects from a CDC or query answer, and whether it was whole.
struct Answered {
    objects: Vec<(String, Value)>,
    time: DateTime<Utc>,
}

impl Answered {
    fn truncated(&self) -> bool {
        self.objects.len() >= TRUNCATED_AT
    }
}

fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The array `v` is, moved out; empty for anything else.
fn array(v: Option<Value>) -> Vec<Value> {
    match v {
        Some(Value::Array(items)) => items,
        _ => Vec::new(),
    }
}

/// `(entity, object)` pairs moved out of `[{"Invoice": [...], ...}, ...]`.
fn objects_in(responses: impl IntoIterator<Item = Value>, entities: &[String]) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for mut r in responses {
        for entity in entities {
            let objects = array(r.get_mut(entity).map(Value::take));
            out.extend(objects.into_iter().map(|o| (entity.clone(), o)));
        }
    }
    out
}

impl Quickbooks {
    /// The credentials from `lookup` (variable name → value); an OAuth app's
    /// refresh tokens are kept in `tokens`.
    pub fn with_credentials(
        config: &PollConfig,
        lookup: impl Fn(&str) -> Option<String>,
        tokens: Option<Arc<dyn PollCursors>>,
    ) -> anyhow::Result<Self> {
        let c = &config.quickbooks;
        let requester = Requester::new(config, per_minute(c.requests_per_minute))?;
        let auth = Credential::from_keys(
            SOURCE,
            c.oauth(),
            ClientAuth::Basic,
            &lookup,
            tokens,
            requester.client().clone(),
        )?;
        Ok(Quickbooks {
            base: format!("{}/v3/company/{}", c.url.trim_end_matches('/'), c.realm_id),
            auth,
            entities: c.entities.clone(),
            resync_after_gap: c.resync_after_gap,
            topic: c.topic.clone(),
            requester,
        })
    }

    fn fail(&self, detail: String) -> PollError {
        PollError::Provider { poller: SOURCE, detail }
    }

    /// A GET on `path` with `query`; QuickBooks' Fault answer becomes the
    /// error. A 401 with an OAuth app refreshes its token and asks once more.
    async fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<Map<String, Value>, PollError> {
        let url = reqwest::Url::parse_with_params(&format!("{}/{path}", self.base), query)
            .map_err(|e| self.fail(format!("{}/{path}: {e}", self.base)))?;
        let mut refreshed = false;
        let answer = loop {
            let token = self.auth.bearer().await?;
            let answer = self
                .requester
                .send(|| {
                    self.requester
                        .client()
                        .get(url.clone())
                        .bearer_auth(&token)
                        .header("accept", "application/json")
                        .header("content-type", "text/plain")
                })
                .await
                .map_err(|e| PollError::request(SOURCE, &url, e))?;
            if !self.auth.retry_after(answer.status, &mut refreshed).await {
                break answer;
            }
        };
        let body: Option<Map<String, Value>> = serde_json::from_str(&answer.body).ok();
        match body {
            Some(b) if answer.status.is_success() && !b.contains_key("Fault") => Ok(b),
            Some(b) if b.contains_key("Fault") => {
                Err(self.fail(format!("{url}: HTTP {}: Fault {}", answer.status, b["Fault"])))
            }
            _ => Err(self.fail(format!("{url}: HTTP {}: {}", answer.status, answer.body))),
        }
    }

    fn time_of(&self, body: &Map<String, Value>) -> Result<DateTime<Utc>, PollError> {
        body.get("time")
            .and_then(Value::as_str)
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
            .ok_or_else(|| self.fail(format!("an answer without a readable time: {:?}", body.get("time"))))
    }

    async fn cdc(&self, entities: &[String], since: DateTime<Utc>) -> Result<Answered, PollError> {
        let (names, since) = (entities.join(","), iso(since));
        let mut body = self.get("cdc", &[("entities", &names), ("changedSince", &since)]).await?;
        let time = self.time_of(&body)?;
        let responses = array(body.remove("CDCResponse"))
            .into_iter()
            .flat_map(|mut c| array(c.get_mut("QueryResponse").map(Value::take)));
        Ok(Answered { objects: objects_in(responses, entities), time })
    }

    /// One page of a query read, and the read as it stands after it.
    async fn query_page(
        &self,
        mut read: QueryRead,
    ) -> Result<(Vec<(String, Value)>, Option<QueryRead>), PollError> {
        let entity = read.entities[0].clone();
        let mut conditions = vec![format!("MetaData.LastUpdatedTime < '{}'", iso(read.to))];
        if let Some(from) = read.from {
            conditions.push(format!("MetaData.LastUpdatedTime >= '{}'", iso(from)));
        }
        if let Some(id) = &read.after_id {
            conditions.push(format!("Id > '{id}'"));
        }
        let sql = format!(
            "SELECT * FROM {entity} WHERE {} ORDERBY Id MAXRESULTS {QUERY_PAGE}",
            conditions.join(" AND ")
        );
        let mut body = self.get("query", &[("query", &sql)]).await?;
        let found = objects_in(body.remove("QueryResponse"), std::slice::from_ref(&entity));
        if found.len() >= QUERY_PAGE {
            read.after_id = found.last().and_then(|(_, o)| o.get("Id")?.as_str().map(String::from));
            return Ok((found, Some(read)));
        }
        read.entities.remove(0);
        read.after_id = None;
        Ok((found, (!read.entities.is_empty()).then_some(read)))
    }

    /// What changed since `since`, split until every part is whole; the query
    /// reads left for prefixes CDC cannot bound, and the next `since`.
    async fn changes(
        &self,
        since: DateTime<Utc>,
    ) -> Result<(Vec<(String, Value)>, Vec<QueryRead>, DateTime<Utc>), PollError> {
        let all = self.cdc(&self.entities, since).await?;
        if !all.truncated() {
            return Ok((all.objects, Vec::new(), all.time));
        }
        let (mut objects, mut reads) = (Vec::new(), Vec::new());
        let next_since = all.time;
        for entity in &self.entities {
            let one = std::slice::from_ref(entity);
            let alone = self.cdc(one, since).await?;
            if !alone.truncated() {
                objects.extend(alone.objects);
                continue;
            }
            // Bisect: `lo` truncated, `hi` whole (CDC from the answer's time is empty).
            let (mut lo, mut hi, mut whole) = (since, alone.time, Vec::new());
            for _ in 0..MAX_SPLITS {
                let mid = lo + (hi - lo) / 2;
                let part = self.cdc(one, mid).await?;
                if part.truncated() {
                    lo = mid;
                } else {
                    (hi, whole) = (mid, part.objects);
                }
            }
            tracing::warn!(
                source = SOURCE,
                entity = %entity,
                from = %iso(since),
                to = %iso(hi),
                "over 1,000 changes: this part is read with queries, which do not return deleted objects"
            );
            objects.extend(whole);
            reads.push(QueryRead {
                entities: vec![entity.clone()],
                from: Some(since),
                to: hi,
                after_id: None,
            });
        }
        Ok((objects, reads, next_since))
    }
}

/// A record per object: a removal when QuickBooks says it was deleted.
fn polled(objects: Vec<(String, Value)>) -> Result<Vec<PolledRecord>, String> {
    objects
        .into_iter()
        .map(|(entity, body)| {
            let id = body
                .get("Id")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("a {entity} without Id: {body}"))?;
            let removed = body.get("status").and_then(Value::as_str) == Some("Deleted");
            let change = if removed { Change::Removed } else { Change::Upsert };
            Ok(PolledRecord { id: format!("{entity}:{id}"), change, body })
        })
        .collect()
}

#[async_trait]
impl Provider for Quickbooks {
    fn source(&self) -> &'static str {
        SOURCE
    }

    fn topic(&self) -> &str {
        &self.topic
    }

    async fn fetch_page(&self, cursor: Option<&str>) -> Result<Page, PollError> {
        let mut at: Position = read_position(SOURCE, cursor)?;
        let now = Utc::now();
        let gap = at.since.is_some_and(|s| now - s > MAX_LOOKBACK);
        if at.reads.is_empty() && (at.since.is_none() || gap) {
            if gap && !self.resync_after_gap {
                return Err(self.fail(format!(
                    "the cursor is from {}, past CDC's 30 days: a full re-sync is needed \
                     (poll.quickbooks.resync_after_gap = true runs it)",
                    at.since.map(iso).unwrap_or_default()
                )));
            }
            if gap {
                tracing::warn!(source = SOURCE, since = ?at.since, "past CDC's 30 days: reading everything again");
            }
            // A full read up to now, then CDC from now.
            at = Position {
                since: Some(now),
                reads: vec![QueryRead {
                    entities: self.entities.clone(),
                    from: None,
                    to: now,
                    after_id: None,
                }],
            };
        }
        let (objects, more) = if let Some(read) = at.reads.first().cloned() {
            let (objects, rest) = self.query_page(read).await?;
            match rest {
                Some(r) => at.reads[0] = r,
                None => {
                    at.reads.remove(0);
                }
            }
            (objects, true)
        } else {
            let since = at.since.unwrap_or(now);
            let (objects, reads, next) = self.changes(since).await?;
            at = Position { since: Some(next), reads };
            (objects, !at.reads.is_empty())
        };
        let records = polled(objects).map_err(|e| self.fail(e))?;
        let cursor = write_position(SOURCE, &at)?;
        Ok(Page { records, cursor: Some(cursor), more })
    }
}
