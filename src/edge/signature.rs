//! Webhook authentication exactly as each provider documents it (FINDINGS.md,
//! "Sources"): Samsara v1, Front application and rule webhooks, a shared
//! token (Turvo), and a generic HMAC-SHA256. Every comparison is constant-time
//! (`hmac`'s `verify_slice`, `subtle` for tokens); a timestamp outside the
//! tolerance window is refused after the signature, so nothing is learned
//! from an unsigned request. Secrets never appear in `Debug` output.

use std::time::Duration;

use axum::http::HeaderMap;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use subtle::ConstantTimeEq;

use crate::config::{SignatureEncoding, SignatureScheme, WebhookConfig};

const SAMSARA_SIGNATURE: &str = "x-samsara-signature";
const SAMSARA_TIMESTAMP: &str = "x-samsara-timestamp";
const FRONT_SIGNATURE: &str = "x-front-signature";
const FRONT_TIMESTAMP: &str = "x-front-request-timestamp";

/// Why a request was not authenticated; each is a 401 with this label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    MissingSignature,
    BadSignature,
    MissingTimestamp,
    StaleTimestamp,
    FutureTimestamp,
}

impl AuthFailure {
    pub fn label(self) -> &'static str {
        match self {
            AuthFailure::MissingSignature => "missing_signature",
            AuthFailure::BadSignature => "bad_signature",
            AuthFailure::MissingTimestamp => "missing_timestamp",
            AuthFailure::StaleTimestamp => "stale_timestamp",
            AuthFailure::FutureTimestamp => "future_timestamp",
        }
    }
}

/// Key material of one secret; `Debug` shows only that it is there.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Checks one provider's requests against every secret of a rotation.
#[derive(Debug, Clone)]
pub struct Verifier {
    scheme: SignatureScheme,
    secrets: Vec<Secret>,
    signature_header: String,
    timestamp_header: String,
    encoding: SignatureEncoding,
    tolerance: chrono::Duration,
}

impl Verifier {
    /// `secrets` as the environment holds them; Samsara's are base64 (the
    /// portal shows them so) and are decoded here, failing at start if not.
    pub fn new(config: &WebhookConfig, secrets: &[String], tolerance: Duration) -> anyhow::Result<Self> {
        anyhow::ensure!(!secrets.is_empty(), "no secret given");
        let secrets = secrets
            .iter()
            .map(|s| match config.scheme {
                SignatureScheme::SamsaraV1 => BASE64
                    .decode(s.trim())
                    .map(Secret)
                    .map_err(|e| anyhow::anyhow!("a Samsara webhook secret must be base64: {e}")),
                _ => Ok(Secret(s.as_bytes().to_vec())),
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Verifier {
            scheme: config.scheme,
            secrets,
            signature_header: config.signature_header.to_ascii_lowercase(),
            timestamp_header: config.timestamp_header.to_ascii_lowercase(),
            encoding: config.encoding,
            tolerance: chrono::Duration::from_std(tolerance)?,
        })
    }

    pub fn verify(&self, headers: &HeaderMap, body: &[u8], now: DateTime<Utc>) -> Result<(), AuthFailure> {
        match self.scheme {
            SignatureScheme::SamsaraV1 => {
                let signature = header(headers, SAMSARA_SIGNATURE)?;
                let timestamp =
                    header(headers, SAMSARA_TIMESTAMP).map_err(|_| AuthFailure::MissingTimestamp)?;
                let tag = signature.strip_prefix("v1=").and_then(|h| hex::decode(h).ok());
                let ok = tag.is_some_and(|tag| {
                    self.any_mac::<Hmac<sha2::Sha256>>(&[b"v1:", timestamp.as_bytes(), b":", body], &tag)
                });
                self.signed(ok)?;
                self.in_window(timestamp, 1, now)
            }
            SignatureScheme::FrontApplication => {
                let signature = header(headers, FRONT_SIGNATURE)?;
                let timestamp =
                    header(headers, FRONT_TIMESTAMP).map_err(|_| AuthFailure::MissingTimestamp)?;
                let ok = BASE64.decode(signature).is_ok_and(|tag| {
                    self.any_mac::<Hmac<sha2::Sha256>>(&[timestamp.as_bytes(), b":", body], &tag)
                });
                self.signed(ok)?;
                self.in_window(timestamp, 1_000, now)
            }
            SignatureScheme::FrontRule => {
                let signature = header(headers, FRONT_SIGNATURE)?;
                let ok =
                    BASE64.decode(signature).is_ok_and(|tag| self.any_mac::<Hmac<sha1::Sha1>>(&[body], &tag));
                self.signed(ok)
            }
            SignatureScheme::SharedToken => {
                let token = header(headers, &self.signature_header)?;
                let ok = self.secrets.iter().any(|s| bool::from(s.0.as_slice().ct_eq(token.as_bytes())));
                self.signed(ok)
            }
            SignatureScheme::HmacSha256 => {
                let signature = header(headers, &self.signature_header)?;
                let tag = match self.encoding {
                    SignatureEncoding::Hex => hex::decode(signature).ok(),
                    SignatureEncoding::Base64 => BASE64.decode(signature).ok(),
                };
                if self.timestamp_header.is_empty() {
                    let ok = tag.is_some_and(|tag| self.any_mac::<Hmac<sha2::Sha256>>(&[body], &tag));
                    return self.signed(ok);
                }
                let timestamp =
                    header(headers, &self.timestamp_header).map_err(|_| AuthFailure::MissingTimestamp)?;
                let ok = tag.is_some_and(|tag| {
                    self.any_mac::<Hmac<sha2::Sha256>>(&[timestamp.as_bytes(), b".", body], &tag)
                });
                self.signed(ok)?;
                self.in_window(timestamp, 1, now)
            }
        }
    }

    fn signed(&self, ok: bool) -> Result<(), AuthFailure> {
        if ok { Ok(()) } else { Err(AuthFailure::BadSignature) }
    }

    /// True when some secret's MAC over the concatenated `parts` is `tag` (constant time).
    fn any_mac<M: Mac + KeyInit>(&self, parts: &[&[u8]], tag: &[u8]) -> bool {
        self.secrets.iter().any(|secret| mac::<M>(&secret.0, parts).verify_slice(tag).is_ok())
    }

    /// `timestamp` in `per_second` units (1: seconds, 1000: ms) within the tolerance of `now`.
    fn in_window(&self, timestamp: &str, per_second: i64, now: DateTime<Utc>) -> Result<(), AuthFailure> {
        let sent = timestamp
            .trim()
            .parse::<i64>()
            .ok()
            .and_then(|t| DateTime::<Utc>::from_timestamp_millis(t.saturating_mul(1_000 / per_second)))
            .ok_or(AuthFailure::MissingTimestamp)?;
        if sent < now - self.tolerance {
            Err(AuthFailure::StaleTimestamp)
        } else if sent > now + self.tolerance {
            Err(AuthFailure::FutureTimestamp)
        } else {
            Ok(())
        }
    }
}

/// The MAC of the concatenated `parts`.
fn mac<M: Mac + KeyInit>(key: &[u8], parts: &[&[u8]]) -> M {
    let mut mac = <M as KeyInit>::new_from_slice(key).expect("HMAC takes a key of any length");
    for part in parts {
        mac.update(part);
    }
    mac
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Result<&'h str, AuthFailure> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .ok_or(AuthFailure::MissingSignature)
}

/// Signature headers for a body, as the provider would send them: used by the
/// tests and by load runs that play a provider.
pub fn sign(scheme: SignatureScheme, secret: &str, timestamp: &str, body: &[u8]) -> String {
    fn tag<M: Mac + KeyInit>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        mac::<M>(key, parts).finalize().into_bytes().to_vec()
    }
    match scheme {
        SignatureScheme::SamsaraV1 => {
            let key = BASE64.decode(secret).unwrap_or_default();
            let tag = tag::<Hmac<sha2::Sha256>>(&key, &[b"v1:", timestamp.as_bytes(), b":", body]);
            format!("v1={}", hex::encode(tag))
        }
        SignatureScheme::FrontApplication => {
            BASE64.encode(tag::<Hmac<sha2::Sha256>>(secret.as_bytes(), &[timestamp.as_bytes(), b":", body]))
        }
        SignatureScheme::FrontRule => BASE64.encode(tag::<Hmac<sha1::Sha1>>(secret.as_bytes(), &[body])),
        SignatureScheme::SharedToken => secret.to_owned(),
        SignatureScheme::HmacSha256 if timestamp.is_empty() => {
            hex::encode(tag::<Hmac<sha2::Sha256>>(secret.as_bytes(), &[body]))
        }
        SignatureScheme::HmacSha256 => {
            hex::encode(tag::<Hmac<sha2::Sha256>>(secret.as_bytes(), &[timestamp.as_bytes(), b".", body]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EdgeConfig;

    const MINUTES_5: Duration = Duration::from_secs(300);

    fn headers(pairs: &[(&str, String)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        h
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).unwrap()
    }

    /// The official Samsara .NET SDK's test vector (FINDINGS.md).
    #[test]
    fn samsara_test_vector() {
        let expected = "v1=e05d9d1f326a1f8a845d2520d09d45c6b20c1931828bbd1dd3858446e7ae7082";
        assert_eq!(
            sign(SignatureScheme::SamsaraV1, "dGVzdC1zZWNyZXQ=", "1700000000", b"test-body"),
            expected
        );
        let v =
            Verifier::new(&EdgeConfig::default().samsara, &["dGVzdC1zZWNyZXQ=".into()], MINUTES_5).unwrap();
        let h = headers(&[(SAMSARA_SIGNATURE, expected.into()), (SAMSARA_TIMESTAMP, "1700000000".into())]);
        assert_eq!(v.verify(&h, b"test-body", at(1_700_000_100)), Ok(()));
        assert_eq!(v.verify(&h, b"test-body!", at(1_700_000_100)), Err(AuthFailure::BadSignature));
        assert_eq!(v.verify(&h, b"test-body", at(1_700_000_301)), Err(AuthFailure::StaleTimestamp));
        assert_eq!(v.verify(&h, b"test-body", at(1_699_999_699)), Err(AuthFailure::FutureTimestamp));
    }

    #[test]
    fn a_secret_of_the_rotation_list_is_accepted_and_a_wrong_one_is_not() {
        let config = EdgeConfig::default().front;
        let v = Verifier::new(&config, &["old".into(), "new".into()], MINUTES_5).unwrap();
        let ts = "1700000000000";
        for (secret, expected) in
            [("old", Ok(())), ("new", Ok(())), ("other", Err(AuthFailure::BadSignature))]
        {
            let sig = sign(SignatureScheme::FrontApplication, secret, ts, b"{}");
            let h = headers(&[(FRONT_SIGNATURE, sig), (FRONT_TIMESTAMP, ts.into())]);
            assert_eq!(v.verify(&h, b"{}", at(1_700_000_000)), expected, "signed with {secret}");
        }
    }

    #[test]
    fn front_rule_turvo_and_generic_schemes() {
        let mut config = EdgeConfig::default().front;
        config.scheme = SignatureScheme::FrontRule;
        let v = Verifier::new(&config, &["s".into()], MINUTES_5).unwrap();
        let h = headers(&[(FRONT_SIGNATURE, sign(SignatureScheme::FrontRule, "s", "", b"body"))]);
        assert_eq!(v.verify(&h, b"body", at(0)), Ok(()));

        let turvo = Verifier::new(&EdgeConfig::default().turvo, &["tok".into()], MINUTES_5).unwrap();
        assert_eq!(turvo.verify(&headers(&[("authorization", "tok".into())]), b"x", at(0)), Ok(()));
        let wrong = turvo.verify(&headers(&[("authorization", "tok2".into())]), b"x", at(0));
        assert_eq!(wrong, Err(AuthFailure::BadSignature));
        assert_eq!(turvo.verify(&HeaderMap::new(), b"x", at(0)), Err(AuthFailure::MissingSignature));

        let generic = Verifier::new(&EdgeConfig::default().generic, &["g".into()], MINUTES_5).unwrap();
        let sig = sign(SignatureScheme::HmacSha256, "g", "1700000000", b"{}");
        let h = headers(&[("x-signature", sig.clone()), ("x-timestamp", "1700000000".into())]);
        assert_eq!(generic.verify(&h, b"{}", at(1_700_000_000)), Ok(()));
        let no_ts = headers(&[("x-signature", sig)]);
        assert_eq!(generic.verify(&no_ts, b"{}", at(1_700_000_000)), Err(AuthFailure::MissingTimestamp));
    }

    #[test]
    fn a_samsara_secret_that_is_not_base64_fails_at_start_and_secrets_are_not_printed() {
        let err =
            Verifier::new(&EdgeConfig::default().samsara, &["not base64!".into()], MINUTES_5).unwrap_err();
        assert!(err.to_string().contains("base64"), "{err}");
        let v = Verifier::new(&EdgeConfig::default().turvo, &["hunter2".into()], MINUTES_5).unwrap();
        assert!(!format!("{v:?}").contains("hunter2"));
    }
}
