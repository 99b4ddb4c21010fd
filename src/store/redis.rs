//! Redis store: the cache role (latest state per vehicle/shipment, a marker per
//! record) written in one pipeline per batch, and the coordinator (per-batch
//! locks with expiry and an owner token, idempotency records).
//!
//! Keys, under a configurable prefix `P`:
//! `P:records` (set of record ids), `P:record:<id>` (the record's subject),
//! `P:latest:<subject>` (hash: at_ms, record_id, summary), `P:lock:<batch key>`,
//! `P:batch:<batch key>` (the recorded outcome, JSON, kept `OUTCOME_TTL`).

use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ClientTlsConfig, IntoConnectionInfo, TlsCertificates};
use secrecy::ExposeSecret;

use super::{BatchOutcome, BatchStore, Coordinator, LockToken, StoreError};
use crate::config::RedisConfig;
use crate::model::RecordId;
use crate::pipeline::ProcessedRecord;

const NAME: &str = "cache";
/// How long a written batch's idempotency record is kept: far longer than any
/// re-delivery (Kafka retention of the source topics is days).
const OUTCOME_TTL: Duration = Duration::from_secs(14 * 24 * 3600);

/// Sets the latest state of a subject unless a newer record already holds it.
const SET_LATEST: &str = r"
local cur = redis.call('HGET', KEYS[1], 'at_ms')
if not cur or tonumber(cur) <= tonumber(ARGV[1]) then
  redis.call('HSET', KEYS[1], 'at_ms', ARGV[1], 'record_id', ARGV[2], 'summary', ARGV[3])
end
return 1";

/// Removes a record's marker and, if it is the subject's latest, the latest state.
const REMOVE_RECORD: &str = r"
local subject = redis.call('GET', KEYS[1])
if subject and subject ~= '' then
  local latest = ARGV[2] .. subject
  if redis.call('HGET', latest, 'record_id') == ARGV[1] then redis.call('DEL', latest) end
end
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[1])
return 1";

const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0";

const EXTEND: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0";

#[derive(Clone)]
pub struct RedisStore {
    con: ConnectionManager,
    prefix: String,
}

fn err(e: redis::RedisError) -> StoreError {
    let transient = e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || matches!(
            e.kind(),
            redis::ErrorKind::Server(redis::ServerErrorKind::BusyLoading | redis::ServerErrorKind::TryAgain)
        );
    StoreError { store: NAME, message: e.to_string(), transient }
}

/// A connection to the Redis of `config` (the URL, the ACL user and password,
/// the TLS files), kept open by the manager, reconnecting within `timeout`
/// per attempt; the first connection fails within `timeout` too (a TLS
/// handshake with a plaintext port would wait for ever). Errors name the
/// address, never the password.
pub async fn connect(
    config: &RedisConfig,
    timeout: Duration,
    manager: ConnectionManagerConfig,
) -> Result<ConnectionManager, StoreError> {
    let fail = |address: &str, e: String| StoreError {
        store: NAME,
        message: format!("connecting to Redis at {address}: {e}"),
        transient: true,
    };
    let info = config.url.as_str().into_connection_info().map_err(err)?;
    let address = info.addr().to_string();
    let mut settings = info.redis_settings().clone();
    if !config.user.is_empty() {
        settings = settings.set_username(&config.user);
    }
    if let Some(password) = StoreError::secret(NAME, &config.password, "redis.password")? {
        settings = settings.set_password(password.expose_secret());
    }
    let info = info.set_redis_settings(settings);
    let client = if config.ca_file.as_os_str().is_empty() && config.client_cert_file.as_os_str().is_empty() {
        redis::Client::open(info)
    } else {
        let read = |path: &std::path::Path| {
            std::fs::read(path).map_err(|e| fail(&address, format!("cannot read {}: {e}", path.display())))
        };
        let client_tls = if config.client_cert_file.as_os_str().is_empty() {
            None
        } else {
            Some(ClientTlsConfig {
                client_cert: read(&config.client_cert_file)?,
                client_key: read(&config.client_key_file)?,
            })
        };
        let root_cert =
            if config.ca_file.as_os_str().is_empty() { None } else { Some(read(&config.ca_file)?) };
        redis::Client::build_with_tls(info, TlsCertificates { client_tls, root_cert })
    };
    super::name_tls_provider();
    let client = client.map_err(|e| fail(&address, e.to_string()))?;
    let manager = manager.set_connection_timeout(Some(timeout));
    match tokio::time::timeout(timeout, ConnectionManager::new_with_config(client, manager)).await {
        Ok(connected) => connected.map_err(|e| {
            let transient = err(e.clone()).transient;
            StoreError { transient, ..fail(&address, e.to_string()) }
        }),
        Err(_) => Err(fail(
            &address,
            format!("no answer within {timeout:?} (a TLS URL to a plaintext port, or nothing routes there)"),
        )),
    }
}

impl RedisStore {
    pub async fn connect(config: &RedisConfig, prefix: &str) -> Result<Self, StoreError> {
        let manager = ConnectionManagerConfig::new()
            .set_response_timeout(Some(Duration::from_secs(10)))
            .set_number_of_retries(2);
        let con = connect(config, Duration::from_secs(5), manager).await?;
        Ok(RedisStore { con, prefix: prefix.to_owned() })
    }

    fn key(&self, kind: &str, rest: &str) -> String {
        format!("{}:{kind}:{rest}", self.prefix)
    }

    fn records_key(&self) -> String {
        format!("{}:records", self.prefix)
    }

    /// The value kept under `kind:rest`, if it has not expired (the query room's answers).
    pub async fn value(&self, kind: &str, rest: &str) -> Result<Option<Vec<u8>>, StoreError> {
        redis::cmd("GET").arg(self.key(kind, rest)).query_async(&mut self.con.clone()).await.map_err(err)
    }

    /// Keeps `value` under `kind:rest` for `ttl`.
    pub async fn keep_value(
        &self,
        kind: &str,
        rest: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        redis::cmd("SET")
            .arg(self.key(kind, rest))
            .arg(value)
            .arg("PX")
            .arg(millis)
            .query_async::<()>(&mut self.con.clone())
            .await
            .map_err(err)
    }
}

#[async_trait]
impl BatchStore for RedisStore {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn upsert_batch(&self, rows: &[&ProcessedRecord]) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        let ids: Vec<&str> = rows.iter().map(|r| r.record.id.as_str()).collect();
        pipe.cmd("SADD").arg(self.records_key()).arg(&ids).ignore();
        for r in rows {
            let subject = r.record.subject();
            pipe.cmd("SET")
                .arg(self.key("record", r.record.id.as_str()))
                .arg(subject.as_deref().unwrap_or(""))
                .ignore();
            if let Some(subject) = subject {
                pipe.cmd("EVAL")
                    .arg(SET_LATEST)
                    .arg(1)
                    .arg(self.key("latest", &subject))
                    .arg(r.record.occurred_at.timestamp_millis())
                    .arg(r.record.id.as_str())
                    .arg(&r.summary)
                    .ignore();
            }
        }
        pipe.query_async::<()>(&mut self.con.clone()).await.map_err(err)
    }

    async fn remove_records(&self, ids: &[RecordId]) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        let latest_prefix = self.key("latest", "");
        for id in ids {
            pipe.cmd("EVAL")
                .arg(REMOVE_RECORD)
                .arg(2)
                .arg(self.key("record", id.as_str()))
                .arg(self.records_key())
                .arg(id.as_str())
                .arg(&latest_prefix)
                .ignore();
        }
        pipe.query_async::<()>(&mut self.con.clone()).await.map_err(err)
    }

    async fn present(&self, ids: &[RecordId]) -> Result<std::collections::HashSet<RecordId>, StoreError> {
        if ids.is_empty() {
            return Ok(Default::default());
        }
        let ids_str: Vec<&str> = ids.iter().map(RecordId::as_str).collect();
        let flags: Vec<bool> = redis::cmd("SMISMEMBER")
            .arg(self.records_key())
            .arg(&ids_str)
            .query_async(&mut self.con.clone())
            .await
            .map_err(err)?;
        Ok(ids.iter().zip(flags).filter(|(_, f)| *f).map(|(id, _)| id.clone()).collect())
    }

    async fn record_ids(&self) -> Result<Vec<RecordId>, StoreError> {
        let ids: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.records_key())
            .query_async(&mut self.con.clone())
            .await
            .map_err(err)?;
        Ok(ids.into_iter().map(RecordId::from_stored).collect())
    }

    async fn count_records(&self) -> Result<u64, StoreError> {
        redis::cmd("SCARD").arg(self.records_key()).query_async(&mut self.con.clone()).await.map_err(err)
    }
}

#[async_trait]
impl Coordinator for RedisStore {
    async fn try_lock(&self, key: &str, ttl: Duration) -> Result<Option<LockToken>, StoreError> {
        let token = LockToken(format!("{:032x}", rand::random::<u128>()));
        let set: Option<String> = redis::cmd("SET")
            .arg(self.key("lock", key))
            .arg(&token.0)
            .arg("NX")
            .arg("PX")
            .arg(ttl.as_millis() as u64)
            .query_async(&mut self.con.clone())
            .await
            .map_err(err)?;
        Ok(set.map(|_| token))
    }

    async fn unlock(&self, key: &str, token: &LockToken) -> Result<bool, StoreError> {
        let n: i64 = redis::cmd("EVAL")
            .arg(RELEASE)
            .arg(1)
            .arg(self.key("lock", key))
            .arg(&token.0)
            .query_async(&mut self.con.clone())
            .await
            .map_err(err)?;
        Ok(n == 1)
    }

    async fn extend(&self, key: &str, token: &LockToken, ttl: Duration) -> Result<bool, StoreError> {
        let n: i64 = redis::cmd("EVAL")
            .arg(EXTEND)
            .arg(1)
            .arg(self.key("lock", key))
            .arg(&token.0)
            .arg(ttl.as_millis() as u64)
            .query_async(&mut self.con.clone())
            .await
            .map_err(err)?;
        Ok(n == 1)
    }

    async fn outcome(&self, batch_key: &str) -> Result<Option<BatchOutcome>, StoreError> {
        let json: Option<String> = redis::cmd("GET")
            .arg(self.key("batch", batch_key))
            .query_async(&mut self.con.clone())
            .await
            .map_err(err)?;
        json.map(|j| {
            serde_json::from_str(&j).map_err(|e| StoreError {
                store: NAME,
                message: format!("unreadable outcome of batch {batch_key}: {e}"),
                transient: false,
            })
        })
        .transpose()
    }

    async fn record_outcome(&self, batch_key: &str, outcome: &BatchOutcome) -> Result<(), StoreError> {
        let json = serde_json::to_string(outcome).unwrap_or_default();
        redis::cmd("SET")
            .arg(self.key("batch", batch_key))
            .arg(json)
            .arg("EX")
            .arg(OUTCOME_TTL.as_secs())
            .query_async::<()>(&mut self.con.clone())
            .await
            .map_err(err)
    }
}
