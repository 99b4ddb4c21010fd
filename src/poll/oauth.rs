//! An OAuth 2.0 app's access token, kept fresh with its refresh token
//! (RFC 6749 §6), as Intuit issues them for QuickBooks: an access token lives
//! an hour, and each refresh answers a new refresh token, the old one dying
//! once the new pair is used. The refresh token lives in the relational store
//! beside the poll cursors (shared by every member), and the new one is saved
//! there *before* the new access token is used: a crash between the refresh
//! and the save leaves the old token, which still works; a crash after it
//! leaves the new one. Only the refresh token's variable seeds the store.

use std::sync::Arc;
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::PollError;
use crate::store::PollCursors;

/// A token is refreshed this long before it expires (or at half its life, if shorter).
const REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);

pub struct OAuthApp {
    pub poller: &'static str,
    pub token_url: String,
    pub client_id: String,
    pub client_secret: SecretString,
    /// Used while the store holds none.
    pub first_refresh_token: SecretString,
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
        let response = self
            .http
            .post(&self.app.token_url)
            .basic_auth(&self.app.client_id, Some(self.app.client_secret.expose_secret()))
            .header("accept", "application/json")
            .form(&[("grant_type", "refresh_token"), ("refresh_token", refresh_token.expose_secret())])
            .send()
            .await
            .map_err(|e| PollError::Request {
                poller,
                detail: format!("refreshing the access token at {}: {e}", self.app.token_url),
                retry_after: None,
            })?;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        if !status.is_success() {
            // The answer's `error` (e.g. invalid_grant), never the body: it could echo a token.
            let error = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("error")?.as_str().map(str::to_owned))
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
