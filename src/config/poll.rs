//! The pollers: their schedule and one section per provider.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{BANK_TOPIC, CRM_TOPIC, Config, FINANCIAL_TOPIC, MARKET_TOPIC, SAMSARA_TOPIC, require};

/// The stat types of Samsara's stats feed the poller turns into events.
pub const SAMSARA_FEED_TYPES: [&str; 5] =
    ["gps", "engineStates", "fuelPercents", "obdOdometerMeters", "engineCoolantTemperatureMilliC"];

/// The pollers: each configured source is fetched every `interval`, its
/// records produced to its topic before its cursor moves (`src/poll`).
/// Every `*_env` key names where a credential is read, never the value: a
/// variable, or `file:/path` (a mounted Secret), read when the pollers start.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PollConfig {
    /// Time between two polls of one source.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Attempts of one provider request (429 and 5xx are retried; a 429's Retry-After is honoured).
    pub max_attempts: u32,
    /// Wait before the second attempt, doubling after each (unless Retry-After says otherwise).
    #[serde(with = "humantime_serde")]
    pub first_backoff: Duration,
    /// One provider request, answer included.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Poll on Temporal: a `PollingWorkflow` per source (`apex-ingest pollers
    /// start`) run by the workers, and `run` polls nothing itself.
    pub on_temporal: bool,
    /// A `PollingWorkflow` continues as new after this many polls (its history stays small).
    pub iterations_per_run: u32,
    pub plaid: PlaidConfig,
    pub hubspot: HubspotConfig,
    pub samsara_feed: SamsaraFeedConfig,
    pub sonar: SonarConfig,
    pub quickbooks: QuickbooksConfig,
}

impl Default for PollConfig {
    fn default() -> Self {
        PollConfig {
            interval: Duration::from_secs(15 * 60),
            max_attempts: 5,
            first_backoff: Duration::from_secs(1),
            request_timeout: Duration::from_secs(30),
            on_temporal: false,
            iterations_per_run: 100,
            plaid: PlaidConfig::default(),
            hubspot: HubspotConfig::default(),
            samsara_feed: SamsaraFeedConfig::default(),
            sonar: SonarConfig::default(),
            quickbooks: QuickbooksConfig::default(),
        }
    }
}

/// Vehicle stats from Samsara's stats feed (source `samsara`), for fleets
/// that poll instead of pushing webhooks.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SamsaraFeedConfig {
    /// Samsara's API: https://api.samsara.com.
    pub url: String,
    /// Variable holding the API token (never the value); "" = off.
    pub token_env: String,
    /// Stat types asked for (Samsara allows at most 3): gps, engineStates,
    /// fuelPercents, obdOdometerMeters, engineCoolantTemperatureMilliC.
    pub types: Vec<String>,
    /// Requests per second at most (Samsara allows 150 per token).
    pub requests_per_second: u32,
    /// Where the events go: the Samsara topic members already read.
    pub topic: String,
}

impl Default for SamsaraFeedConfig {
    fn default() -> Self {
        SamsaraFeedConfig {
            url: "https://api.samsara.com".into(),
            token_env: String::new(),
            types: ["gps", "engineStates", "fuelPercents"].map(String::from).to_vec(),
            requests_per_second: 25,
            topic: SAMSARA_TOPIC.into(),
        }
    }
}

/// Market index values from FreightWaves SONAR (source `market`; SONAR has
/// no webhooks).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SonarConfig {
    /// SONAR's API: https://api.freightwaves.com.
    pub url: String,
    /// Variables holding the SONAR username and password (never the values),
    /// exchanged for a bearer token; the source is on when `username_env` is set.
    pub username_env: String,
    pub password_env: String,
    /// Index tickers (`OTRI`, `NTI`, ...), each read for every qualifier.
    pub indices: Vec<String>,
    /// Markets, lanes or levels (`USA`, `ATL`, `ATLCHI`).
    pub qualifiers: Vec<String>,
    /// How far back the first poll of a series reads.
    #[serde(with = "humantime_serde")]
    pub backfill: Duration,
    /// Requests per minute at most (SONAR's global limit is 100; over it, it blocks for minutes).
    pub requests_per_minute: u32,
    pub topic: String,
}

impl Default for SonarConfig {
    fn default() -> Self {
        SonarConfig {
            url: "https://api.freightwaves.com".into(),
            username_env: String::new(),
            password_env: "SONAR_PASSWORD".into(),
            indices: ["OTRI", "NTI"].map(String::from).to_vec(),
            qualifiers: vec!["USA".into()],
            backfill: Duration::from_secs(30 * 86_400),
            requests_per_minute: 100,
            topic: MARKET_TOPIC.into(),
        }
    }
}

/// Accounting objects from QuickBooks Online's change data capture (source `financial`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuickbooksConfig {
    /// QuickBooks Online's API: https://quickbooks.api.intuit.com.
    pub url: String,
    /// The company (realm) id.
    pub realm_id: String,
    /// Variable holding an OAuth 2 access token (never the value), for a
    /// token made by hand (it lasts an hour); "" = off, or `refresh_token_env`.
    pub token_env: String,
    /// An OAuth 2 app instead: variables holding its client id and secret and
    /// a first refresh token. The poller refreshes the access token before it
    /// expires and after a 401, and keeps each new refresh token in the
    /// relational store (before using it): the variable only seeds the store.
    pub client_id_env: String,
    pub client_secret_env: String,
    pub refresh_token_env: String,
    /// Intuit's token endpoint.
    pub token_url: String,
    /// Entities read (CDC supports most; not JournalCode, TaxAgency, TimeActivity, TaxCode, TaxRate).
    pub entities: Vec<String>,
    /// Requests per minute at most (QuickBooks allows 500 per company).
    pub requests_per_minute: u32,
    /// When the cursor is older than CDC's 30-day look-back, read everything
    /// again with queries (a full re-sync) instead of failing the poll.
    pub resync_after_gap: bool,
    pub topic: String,
}

impl QuickbooksConfig {
    /// On when a way to authenticate is named.
    pub fn is_on(&self) -> bool {
        self.oauth().is_on()
    }

    pub fn oauth(&self) -> OAuthKeys<'_> {
        OAuthKeys {
            section: "poll.quickbooks",
            token_env: &self.token_env,
            client_id_env: &self.client_id_env,
            client_secret_env: &self.client_secret_env,
            refresh_token_env: &self.refresh_token_env,
            token_url: &self.token_url,
        }
    }
}

/// How a poller that takes an access token or an OAuth app (QuickBooks,
/// HubSpot) names its credentials: the variables, never the values.
pub struct OAuthKeys<'a> {
    pub section: &'static str,
    pub token_env: &'a str,
    pub client_id_env: &'a str,
    pub client_secret_env: &'a str,
    pub refresh_token_env: &'a str,
    pub token_url: &'a str,
}

impl OAuthKeys<'_> {
    /// On when a way to authenticate is named.
    pub fn is_on(&self) -> bool {
        !self.token_env.is_empty() || !self.refresh_token_env.is_empty()
    }

    fn validate(&self, on_temporal: bool) -> anyhow::Result<()> {
        let s = self.section;
        let app = !self.refresh_token_env.is_empty();
        require(&[
            (
                self.token_env.is_empty() || !app,
                &format!("{s}.token_env"),
                "or refresh_token_env: one way to authenticate, not both",
            ),
            (
                !app || !(self.client_id_env.is_empty() || self.client_secret_env.is_empty()),
                &format!("{s}.refresh_token_env"),
                "needs client_id_env and client_secret_env (the OAuth app)",
            ),
            (
                !app || !on_temporal,
                &format!("{s}.refresh_token_env"),
                "keeps its refresh token in the relational store of `run`: not yet with poll.on_temporal",
            ),
        ])
    }
}

impl Default for QuickbooksConfig {
    fn default() -> Self {
        QuickbooksConfig {
            url: "https://quickbooks.api.intuit.com".into(),
            realm_id: String::new(),
            token_env: String::new(),
            client_id_env: String::new(),
            client_secret_env: String::new(),
            refresh_token_env: String::new(),
            token_url: "https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer".into(),
            entities: ["Invoice", "Payment", "Bill", "Customer", "Vendor"].map(String::from).to_vec(),
            requests_per_minute: 100,
            resync_after_gap: true,
            topic: FINANCIAL_TOPIC.into(),
        }
    }
}

/// CRM objects from HubSpot's CRM search (source `crm`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HubspotConfig {
    /// HubSpot's API: https://api.hubapi.com.
    pub url: String,
    /// Variable holding a private app's access token (never the value); "" =
    /// off, or `refresh_token_env`.
    pub token_env: String,
    /// A public OAuth app instead: variables holding its client id and secret
    /// and a refresh token. The poller refreshes the 30-minute access token
    /// before it expires and after a 401, and keeps the refresh token HubSpot
    /// answers in the relational store (before using it).
    pub client_id_env: String,
    pub client_secret_env: String,
    pub refresh_token_env: String,
    /// HubSpot's token endpoint.
    pub token_url: String,
    /// Object types searched, each by its modified-date property
    /// (`lastmodifieddate` for contacts, `hs_lastmodifieddate` for the others).
    pub objects: Vec<String>,
    /// Results per search request (HubSpot allows at most 200).
    pub page_size: u32,
    /// Search requests per second at most (HubSpot's limit is 5 per account).
    pub requests_per_second: u32,
    /// A poll's window ends this long before the poll starts: HubSpot's
    /// search shows edits with a lag, and an edit not yet searchable when its
    /// window closed would be missed for good.
    #[serde(with = "humantime_serde")]
    pub search_lag: Duration,
    pub topic: String,
}

impl HubspotConfig {
    pub fn oauth(&self) -> OAuthKeys<'_> {
        OAuthKeys {
            section: "poll.hubspot",
            token_env: &self.token_env,
            client_id_env: &self.client_id_env,
            client_secret_env: &self.client_secret_env,
            refresh_token_env: &self.refresh_token_env,
            token_url: &self.token_url,
        }
    }
}

impl Default for HubspotConfig {
    fn default() -> Self {
        HubspotConfig {
            url: "https://api.hubapi.com".into(),
            token_env: String::new(),
            client_id_env: String::new(),
            client_secret_env: String::new(),
            refresh_token_env: String::new(),
            token_url: "https://api.hubapi.com/oauth/v1/token".into(),
            objects: ["contacts", "companies", "deals"].map(String::from).to_vec(),
            page_size: 200,
            requests_per_second: 5,
            search_lag: Duration::from_secs(60),
            topic: CRM_TOPIC.into(),
        }
    }
}

/// Bank transactions from Plaid's `/transactions/sync` (source `bank`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlaidConfig {
    /// Plaid's API: https://production.plaid.com (or sandbox./development.).
    pub url: String,
    /// Variables holding the client id, the secret and the Item's access token
    /// (never the values). The source is on when `access_token_env` is set.
    pub client_id_env: String,
    pub secret_env: String,
    pub access_token_env: String,
    /// Transactions per page (Plaid allows at most 500).
    pub count: u32,
    /// Requests per minute at most.
    pub requests_per_minute: u32,
    pub topic: String,
}

impl Default for PlaidConfig {
    fn default() -> Self {
        PlaidConfig {
            url: "https://production.plaid.com".into(),
            client_id_env: "PLAID_CLIENT_ID".into(),
            secret_env: "PLAID_SECRET".into(),
            access_token_env: String::new(),
            count: 500,
            requests_per_minute: 50,
            topic: BANK_TOPIC.into(),
        }
    }
}

/// The checks of these sections.
pub(super) fn validate(c: &Config) -> anyhow::Result<()> {
    require(&[
        (!c.poll.interval.is_zero(), "poll.interval", "must be longer than 0 s"),
        (c.poll.max_attempts > 0, "poll.max_attempts", "must be at least 1"),
        (!c.poll.request_timeout.is_zero(), "poll.request_timeout", "must be longer than 0 s"),
        (c.poll.iterations_per_run > 0, "poll.iterations_per_run", "must be at least 1"),
        (
            (1..=500).contains(&c.poll.plaid.count),
            "poll.plaid.count",
            "must be between 1 and 500 (Plaid's limit)",
        ),
        (c.poll.plaid.requests_per_minute > 0, "poll.plaid.requests_per_minute", "must be at least 1"),
        (
            (1..=200).contains(&c.poll.hubspot.page_size),
            "poll.hubspot.page_size",
            "must be between 1 and 200 (HubSpot's limit)",
        ),
        (c.poll.hubspot.requests_per_second > 0, "poll.hubspot.requests_per_second", "must be at least 1"),
        (!c.poll.hubspot.objects.is_empty(), "poll.hubspot.objects", "must name at least one object type"),
        (
            (1..=3).contains(&c.poll.samsara_feed.types.len()),
            "poll.samsara_feed.types",
            "must name 1 to 3 stat types (Samsara's limit)",
        ),
        (
            c.poll.samsara_feed.types.iter().all(|t| SAMSARA_FEED_TYPES.contains(&t.as_str())),
            "poll.samsara_feed.types",
            "takes gps, engineStates, fuelPercents, obdOdometerMeters, engineCoolantTemperatureMilliC",
        ),
        (
            c.poll.sonar.username_env.is_empty()
                || !(c.poll.sonar.indices.is_empty() || c.poll.sonar.qualifiers.is_empty()),
            "poll.sonar",
            "needs at least one of indices and one of qualifiers",
        ),
        (
            !c.poll.quickbooks.is_on()
                || !(c.poll.quickbooks.realm_id.is_empty() || c.poll.quickbooks.entities.is_empty()),
            "poll.quickbooks",
            "needs realm_id and at least one entity",
        ),
        (
            (1..=500).contains(&c.poll.quickbooks.requests_per_minute),
            "poll.quickbooks.requests_per_minute",
            "must be between 1 and 500 (QuickBooks' limit per company)",
        ),
        (
            (1..=100).contains(&c.poll.sonar.requests_per_minute),
            "poll.sonar.requests_per_minute",
            "must be between 1 and 100 (SONAR's limit)",
        ),
        (
            c.poll.samsara_feed.requests_per_second > 0,
            "poll.samsara_feed.requests_per_second",
            "must be at least 1",
        ),
    ])?;
    c.poll.quickbooks.oauth().validate(c.poll.on_temporal)?;
    c.poll.hubspot.oauth().validate(c.poll.on_temporal)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(q: QuickbooksConfig, on_temporal: bool) -> String {
        let mut c = Config::default();
        c.poll.quickbooks = q;
        c.poll.on_temporal = on_temporal;
        validate(&c).map(|()| "ok".to_owned()).unwrap_or_else(|e| e.to_string())
    }

    #[test]
    fn quickbooks_takes_one_way_to_authenticate_and_an_oauth_app_whole() {
        let app = QuickbooksConfig {
            realm_id: "9341453".into(),
            client_id_env: "QB_CLIENT_ID".into(),
            client_secret_env: "QB_CLIENT_SECRET".into(),
            refresh_token_env: "QB_REFRESH_TOKEN".into(),
            ..QuickbooksConfig::default()
        };
        assert!(app.is_on());
        assert_eq!(check(app.clone(), false), "ok");
        let both = QuickbooksConfig { token_env: "QB_TOKEN".into(), ..app.clone() };
        assert!(check(both, false).contains("not both"));
        let no_secret = QuickbooksConfig { client_secret_env: String::new(), ..app.clone() };
        assert!(check(no_secret, false).contains("client_secret_env"));
        assert!(check(app, true).contains("not yet with poll.on_temporal"));
        assert!(!QuickbooksConfig::default().is_on());
    }
}
