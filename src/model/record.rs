//! Raw events, records and their identity.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::bank::BankTransaction;
use super::crm::CrmObject;
use super::edi::EdiTransaction;
use super::financial::FinancialObject;
use super::market::MarketPoint;
use super::samsara::SamsaraEvent;
use super::webhook::{WebhookEvent, WebhookSubject};

/// Which parser a raw event needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Samsara,
    Edi,
    /// Front (FrontApp) webhooks from the edge.
    Front,
    /// Turvo webhooks from the edge.
    Turvo,
    /// Bodies of the edge's generic HMAC route.
    Webhook,
    /// Bank transactions from the Plaid poller.
    Bank,
    /// CRM objects from the HubSpot poller.
    Crm,
    /// Market index points from the SONAR poller.
    Market,
    /// Invoices, payments and other accounting objects from the QuickBooks poller.
    Financial,
}

impl Format {
    pub const ALL: [Format; 9] = [
        Format::Samsara,
        Format::Edi,
        Format::Front,
        Format::Turvo,
        Format::Webhook,
        Format::Bank,
        Format::Crm,
        Format::Market,
        Format::Financial,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Samsara => "samsara",
            Format::Edi => "edi",
            Format::Front => "front",
            Format::Turvo => "turvo",
            Format::Webhook => "webhook",
            Format::Bank => "bank",
            Format::Crm => "crm",
            Format::Market => "market",
            Format::Financial => "financial",
        }
    }
}

impl std::str::FromStr for Format {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Format::ALL.into_iter().find(|f| f.as_str() == name).ok_or_else(|| format!("unknown format {name:?}"))
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
    /// Front, Turvo and generic webhooks.
    Webhook(WebhookEvent),
    /// A bank transaction, or its removal.
    Bank(BankTransaction),
    /// A HubSpot contact, company or deal.
    Crm(CrmObject),
    /// A SONAR index value for one qualifier and date.
    Market(MarketPoint),
    /// A QuickBooks object, or its deletion.
    Financial(FinancialObject),
}

/// One parsed, validated unit of memory: a Samsara event, one EDI transaction or a webhook event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub id: RecordId,
    pub format: Format,
    /// Event type (`VehicleLocation`, `inbound`, `SHIPMENT_STATUS_UPDATE`) or transaction set (`214`).
    pub kind: String,
    pub natural_key: String,
    pub occurred_at: DateTime<Utc>,
    pub origin: Origin,
    pub body: RecordBody,
}

impl Record {
    /// What the record is about, as a cache key for "latest state":
    /// `vehicle:<id>` for telemetry, `shipment:<ref>` for EDI and Turvo,
    /// `conversation:<id>` for Front, `account:<id>` for bank transactions,
    /// `crm:<object>:<id>` for CRM objects, `market:<index>:<qualifier>` for
    /// market index points, `quickbooks:<Entity>:<Id>` for accounting objects.
    pub fn subject(&self) -> Option<String> {
        match &self.body {
            RecordBody::Samsara(e) => e.data.vehicle().map(|v| format!("vehicle:{}", v.id)),
            RecordBody::Edi(t) => t.shipment_ref().map(|s| format!("shipment:{s}")),
            RecordBody::Webhook(w) => match &w.subject {
                WebhookSubject::FrontConversation { conversation_id, .. } => {
                    Some(format!("conversation:{conversation_id}"))
                }
                WebhookSubject::TurvoShipment { reference, turvo_id, .. } => {
                    Some(format!("shipment:{}", reference.as_deref().unwrap_or(turvo_id)))
                }
                WebhookSubject::Other => None,
            },
            RecordBody::Bank(t) => t.account_id.as_ref().map(|a| format!("account:{a}")),
            RecordBody::Crm(o) => Some(format!("crm:{}:{}", o.object, o.id)),
            RecordBody::Market(p) => Some(format!("market:{}:{}", p.index, p.qualifier)),
            RecordBody::Financial(o) => Some(format!("quickbooks:{}:{}", o.entity, o.id)),
        }
    }

    /// A one-line text rendering used for embedding and for people reading stores.
    pub fn summary(&self) -> String {
        match &self.body {
            RecordBody::Samsara(e) => e.summary(),
            RecordBody::Edi(t) => t.summary(),
            RecordBody::Webhook(w) => w.summary(self.format.as_str()),
            RecordBody::Bank(t) => t.summary(),
            RecordBody::Crm(o) => o.summary(),
            RecordBody::Market(p) => p.summary(),
            RecordBody::Financial(o) => o.summary(),
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

    #[test]
    fn format_names_round_trip() {
        for f in Format::ALL {
            assert_eq!(f.as_str().parse::<Format>(), Ok(f));
        }
        assert!("x12".parse::<Format>().is_err());
    }
}
