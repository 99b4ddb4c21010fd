//! Bank transactions from Plaid's `POST /transactions/sync` (source `bank`),
//! as its contract reads (../shared/FINDINGS.md, "Sources"): `cursor` (none for
//! the first sync) and `count` (≤ 500); loop while `has_more`, collecting
//! `added`, `modified` and `removed`; the cursor is handed back to be saved only
//! once `has_more` is false. On `TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION`
//! the loop's pages are discarded and it restarts from the cursor it started
//! with (never from none). An empty `next_cursor` means Plaid has no data yet.

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};

use super::http::{Requester, per_minute};
use super::{Change, Page, PollError, PolledRecord, Provider, secret};
use crate::config::PollConfig;

pub const SOURCE: &str = "bank";
/// Restarts after mutations within one poll before it fails (the next interval tries again).
const MAX_RESTARTS: usize = 5;

pub struct Plaid {
    url: String,
    client_id: String,
    secret: String,
    access_token: String,
    count: u32,
    topic: String,
    requester: Requester,
}

#[derive(Deserialize)]
struct SyncResponse {
    #[serde(default)]
    added: Vec<Value>,
    #[serde(default)]
    modified: Vec<Value>,
    #[serde(default)]
    removed: Vec<Value>,
    #[serde(default)]
    next_cursor: String,
    has_more: bool,
}

#[derive(Deserialize)]
struct PlaidError {
    #[serde(default)]
    error_code: String,
    #[serde(default)]
    error_message: String,
}

/// What one `/transactions/sync` call said.
enum Step {
    Page(SyncResponse),
    /// `TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION`: start the loop again.
    Mutated,
}

impl Plaid {
    /// The credentials from `lookup` (variable name → value).
    pub fn with_credentials(
        config: &PollConfig,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Self> {
        let c = &config.plaid;
        Ok(Plaid {
            url: c.url.trim_end_matches('/').to_owned(),
            client_id: secret(&lookup, "poll.plaid", &c.client_id_env, "the client id")?,
            secret: secret(&lookup, "poll.plaid", &c.secret_env, "the secret")?,
            access_token: secret(&lookup, "poll.plaid", &c.access_token_env, "the access token")?,
            count: c.count,
            topic: c.topic.clone(),
            requester: Requester::new(config, per_minute(c.requests_per_minute))?,
        })
    }

    async fn sync(&self, cursor: Option<&str>) -> Result<Step, PollError> {
        let mut body = json!({
            "client_id": self.client_id,
            "secret": self.secret,
            "access_token": self.access_token,
            "count": self.count,
        });
        if let Some(c) = cursor {
            body["cursor"] = json!(c);
        }
        let url = format!("{}/transactions/sync", self.url);
        let fail = |detail: String| PollError::Provider { poller: SOURCE, detail };
        let answer = self
            .requester
            .send(|| self.requester.client().post(&url).json(&body))
            .await
            .map_err(|e| PollError::request(SOURCE, &url, e))?;
        if answer.status.is_success() {
            let page = serde_json::from_str(&answer.body)
                .map_err(|e| fail(format!("{url}: unreadable /transactions/sync answer: {e}")))?;
            return Ok(Step::Page(page));
        }
        let error: Option<PlaidError> = serde_json::from_str(&answer.body).ok();
        match error {
            Some(e) if e.error_code == "TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION" => Ok(Step::Mutated),
            Some(e) => {
                Err(fail(format!("{url}: HTTP {}: {} {}", answer.status, e.error_code, e.error_message)))
            }
            None => Err(fail(format!("{url}: HTTP {}", answer.status))),
        }
    }
}

fn transaction_id(v: &Value) -> Option<String> {
    v.get("transaction_id")?.as_str().filter(|s| !s.is_empty()).map(String::from)
}

#[async_trait]
impl Provider for Plaid {
    fn source(&self) -> &'static str {
        SOURCE
    }

    fn topic(&self) -> &str {
        &self.topic
    }

    /// The whole `has_more` loop is one page: its cursor may only be saved at the end.
    async fn fetch_page(&self, start: Option<&str>) -> Result<Page, PollError> {
        'restart: for _ in 0..=MAX_RESTARTS {
            let (mut records, mut cursor) = (Vec::new(), start.map(String::from));
            loop {
                let page = match self.sync(cursor.as_deref()).await? {
                    Step::Page(page) => page,
                    Step::Mutated => {
                        tracing::info!(
                            source = SOURCE,
                            "transactions changed during pagination; restarting the loop"
                        );
                        continue 'restart;
                    }
                };
                let changes = [
                    (page.added, Change::Upsert),
                    (page.modified, Change::Upsert),
                    (page.removed, Change::Removed),
                ];
                for (items, change) in changes {
                    for body in items {
                        let id = transaction_id(&body).ok_or_else(|| PollError::Provider {
                            poller: SOURCE,
                            detail: format!("a transaction without transaction_id: {body}"),
                        })?;
                        records.push(PolledRecord { id, change, body });
                    }
                }
                if page.next_cursor.is_empty() {
                    // Plaid has no data for this Item yet: nothing to save.
                    return Ok(Page { records, cursor: None, more: false });
                }
                cursor = Some(page.next_cursor);
                if !page.has_more {
                    return Ok(Page { records, cursor, more: false });
                }
            }
        }
        Err(PollError::Provider {
            poller: SOURCE,
            detail: format!("transactions kept changing during pagination ({MAX_RESTARTS} restarts)"),
        })
    }
}
