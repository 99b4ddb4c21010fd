//! Raw events, records and their identity.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::edi::EdiTransaction;
use super::samsara::SamsaraEvent;

/// Which parser a raw event needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Samsara,
    Edi,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Samsara => "samsara",
            Format::Edi => "edi",
        }
    }
}

/// Where a raw event came from: enough to find it again and to commit past it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Origin {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// One message as a source delivered it, before any parsing.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RawEvent {
    pub format: Format,
    pub origin: Origin,
    pub key: Option<String>,
    #[serde(with = "super::wire::bytes")]
    pub payload: Vec<u8>,
    /// Message headers (Kafka); empty for other sources.
    #[serde(with = "super::wire::headers")]
    pub headers: Vec<(String, Vec<u8>)>,
    /// When the message was produced (Kafka create or log-append time), if known.
    pub timestamp: Option<DateTime<Utc>>,
}

impl RawEvent {
    /// An event without headers or timestamp (generator, files, tests).
    pub fn new(format: Format, origin: Origin, key: Option<String>, payload: Vec<u8>) -> Self {
        RawEvent { format, origin, key, payload, headers: Vec::new(), timestamp: None }
    }
}

/// Stable record identity: SHA-256 over the source and its natural key, hex encoded.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RecordId(String);

impl RecordId {
    pub fn derive(format: Format, natural_key: &str) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(format.as_str().as_bytes());
        hasher.update([0u8]);
        hasher.update(natural_key.as_bytes());
        RecordId(hex::encode(hasher.finalize()))
    }

    /// Wraps an id read back from a store.
    pub fn from_stored(hex: String) -> Self {
        RecordId(hex)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The typed content of a record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "format", rename_all = "lowercase")]
pub enum RecordBody {
    Samsara(SamsaraEvent),
    Edi(EdiTransaction),
}

/// One parsed, validated unit of memory: a Samsara event or one EDI transaction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub id: RecordId,
    pub format: Format,
    /// Event type (`VehicleLocation`) or transaction set (`214`).
    pub kind: String,
    pub natural_key: String,
    pub occurred_at: DateTime<Utc>,
    pub origin: Origin,
    pub body: RecordBody,
}

impl Record {
    /// What the record is about, as a cache key for "latest state":
    /// `vehicle:<id>` for telemetry, `shipment:<ref>` for EDI.
    pub fn subject(&self) -> Option<String> {
        match &self.body {
            RecordBody::Samsara(e) => e.data.vehicle().map(|v| format!("vehicle:{}", v.id)),
            RecordBody::Edi(t) => t.shipment_ref().map(|s| format!("shipment:{s}")),
        }
    }

    /// A one-line text rendering used for embedding and for people reading stores.
    pub fn summary(&self) -> String {
        match &self.body {
            RecordBody::Samsara(e) => e.summary(),
            RecordBody::Edi(t) => t.summary(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_id_is_stable_and_source_scoped() {
        let a = RecordId::derive(Format::Samsara, "abc");
        assert_eq!(a, RecordId::derive(Format::Samsara, "abc"));
        assert_ne!(a, RecordId::derive(Format::Edi, "abc"));
        assert_eq!(a.as_str().len(), 64);
    }
}
