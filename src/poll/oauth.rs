//! An OAuth 2.0 app's access token, kept fresh with its refresh token
//! (RFC 6749 §6), as Intuit issues them for QuickBooks (an access token lives
//! an hour, and each refresh answers a new refresh token, the old one dying
//! once the new pair is used) and HubSpot for public apps (30 minutes; the
//! refresh token answered is kept the same way). The refresh token lives in
//! the relational store beside the poll cursors (shared by every member), and
//! the new one is saved there *before* the new access token is used: a crash
//! between the refresh and the save leaves the old token, which still works;
//! a crash after it leaves the new one. Only the refresh token's variable
//! seeds the store.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::{PollError, secret};
use crate::config::OAuthKeys;
use crate::store::PollCursors;

/// A token is refreshed this long before it expires (or at half its life, if shorter).
const REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);

/// How the app proves itself at the token endpoint.
#[derive(Clone, Copy)]
pub enum ClientAuth {
    /// HTTP Basic with the client id and secret (Intuit).
    Basic,
    /// `client_id` and `client_secret` in the form (HubSpot).
    Form,
}

pub struct OAuthApp {
    pub poller: &'static str,
    pub token_url: String,
    pub client_id: String,
    pub client_secret: SecretString,
    pub client_auth: ClientAuth,
    /// Used while the store holds none.
    pub first_refresh_token: SecretString,
}

/// How a poller's requests are authorized.
pub enum Credential {
    /// An access token from a variable (a private app's, or one made by hand).
    Token(String),
    /// An OAuth app's access token, refreshed.
    Refreshing(RefreshingToken),
}

impl Credential {
    /// The access token a poller of `keys` uses: a variable's, or an OAuth
    /// app's (its refresh tokens kept in `tokens`), from `lookup` (variable name → value).
    pub fn from_keys(
        poller: &'static str,
        keys: OAuthKeys<'_>,
        client_auth: ClientAuth,
        lookup: &impl Fn(&str) -> Option<String>,
        tokens: Option<Arc<dyn PollCursors>>,
        http: reqwest::Client,
    ) -> anyhow::Result<Self> {
        let section = keys.section;
        if keys.refresh_token_env.is_empty() {
            return Ok(Credential::Token(secret(lookup, section, keys.token_env, "the access token")?));
        }
        let app = OAuthApp {
            poller,
            token_url: keys.token_url.to_owned(),
            client_id: secret(lookup, section, keys.client_id_env, "the OAuth client id")?,
            client_secret: secret(lookup, section, keys.client_secret_env, "the OAuth client secret")?.into(),
            client_auth,
            first_refresh_token: secret(lookup, section, keys.refresh_token_env, "the refresh token")?.into(),
        };
        let tokens = tokens
            .with_context(|| format!("{section}.refresh_token_env needs a store for its refresh tokens"))?;
        Ok(Credential::Refreshing(RefreshingToken::new(app, http, tokens)))
    }

    pub async fn bearer(&self) -> Result<String, PollError> {
        match self {
            Credential::Token(token) => Ok(token.clone()),
            Credential::Refreshing(t) => t.bearer().await,
        }
    }

    /// Whether to ask again after an answer of `status`: once (`refreshed`
    /// remembers) after a 401 to an OAuth app, whose token is then refreshed.
    pub async fn retry_after(&self, status: reqwest::StatusCode, refreshed: &mut bool) -> bool {
        match self {
            Credential::Refreshing(t) if status == reqwest::StatusCode::UNAUTHORIZED && !*refreshed => {
                tracing::info!(poller = t.app.poller, "401: refreshing the access token");
                t.invalidate().await;
                *refreshed = true;
                true
            }
            _ => false,
        }
    }
}

struct Access {
    token: SecretString,
    refresh_at: Instant,
}

#[derive(Deserialize)]
struct Granted {
    access_token: String,
    expires_in: u64,
    refresh_token: Option<String>,
}

pub struct RefreshingToken {
    app: OAuthApp,
    http: reqwest::Client,
    store: Arc<dyn PollCursors>,
    current: tokio::sync::Mutex<Option<Access>>,
}

impl RefreshingToken {
    pub fn new(app: OAuthApp, http: reqwest::Client, store: Arc<dyn PollCursors>) -> Self {
        RefreshingToken { app, http, store, current: tokio::sync::Mutex::new(None) }
    }

    /// The store's key of the refresh token: beside the source's cursor.
    fn key(&self) -> String {
        format!("{}.oauth-refresh-token", self.app.poller)
    }

    /// An access token good for a while, refreshed first when it is not.
    pub async fn bearer(&self) -> Result<String, PollError> {
        let mut current = self.current.lock().await;
        if let Some(access) = current.as_ref().filter(|a| Instant::now() < a.refresh_at) {
            return Ok(access.token.expose_secret().to_owned());
        }
        let access = self.refresh().await?;
        let token = access.token.expose_secret().to_owned();
        *current = Some(access);
        Ok(token)
    }

    /// After a 401: the next `bearer` refreshes.
    pub async fn invalidate(&self) {
        *self.current.lock().await = None;
    }

    async fn refresh(&self) -> Result<Access, PollError> {
        let poller = self.app.poller;
        let cursor_error = |error| PollError::Cursor { poller, error };
        let stored = self.store.poll_cursor(&self.key()).await.map_err(cursor_error)?;
        let refresh_token = stored
            .map(|(t, _)| SecretString::from(t))
            .unwrap_or_else(|| self.app.first_refresh_token.clone());
        let fail = |detail: String| PollError::Provider {
            poller,
            detail: format!("refreshing the access token at {}: {detail}", self.app.token_url),
        };
        let mut form =
            vec![("grant_type", "refresh_token"), ("refresh_token", refresh_token.expose_secret())];
        let request = self.http.post(&self.app.token_url).header("accept", "application/json");
        let request = match self.app.client_auth {
            ClientAuth::Basic => {
                request.basic_auth(&self.app.client_id, Some(self.app.client_secret.expose_secret()))
            }
            ClientAuth::Form => {
                form.push(("client_id", &self.app.client_id));
                form.push(("client_secret", self.app.client_secret.expose_secret()));
                request
            }
        };
        let response = request.form(&form).send().await.map_err(|e| PollError::Request {
            poller,
            detail: format!("refreshing the access token at {}: {e}", self.app.token_url),
            retry_after: None,
        })?;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        if !status.is_success() {
            // The answer's `error` (RFC 6749: invalid_grant, …) or HubSpot's
            // `status` (BAD_REFRESH_TOKEN, …), never the body: it could echo a token.
            let error = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| ["error", "status"].iter().find_map(|k| v.get(*k)?.as_str().map(str::to_owned)))
                .unwrap_or_default();
            return Err(fail(format!("HTTP {status} {error}")));
        }
        let granted: Granted =
            serde_json::from_str(&body).map_err(|e| fail(format!("an unreadable answer: {e}")))?;
        if let Some(next) = granted.refresh_token.filter(|t| !t.is_empty()) {
            // Durable before the new access token is used.
            self.store.save_poll_cursor(&self.key(), &next).await.map_err(cursor_error)?;
        }
        let life = Duration::from_secs(granted.expires_in);
        let refresh_at = Instant::now() + life.saturating_sub(REFRESH_MARGIN.min(life / 2));
        tracing::info!(poller, expires_in = granted.expires_in, "access token refreshed");
        Ok(Access { token: granted.access_token.into(), refresh_at })
    }
}
