//! Parse stage: raw bytes to records, or a poison reason.

use crate::model::bank::BankTransaction;
use crate::model::crm::CrmObject;
use crate::model::edi::parse_interchange;
use crate::model::financial::FinancialObject;
use crate::model::market::MarketPoint;
use crate::model::polled::{Change, headers};
use crate::model::samsara::SamsaraEvent;
use crate::model::webhook::{WebhookEvent, body_digest};
use crate::model::{Format, PoisonReason, RawEvent, Record, RecordBody, RecordId};

/// Parses one raw event. A Samsara event, a webhook or a poller's record
/// yields one record; an EDI interchange yields one record per transaction.
pub fn parse(raw: &RawEvent) -> Result<Vec<Record>, PoisonReason> {
    let text = std::str::from_utf8(&raw.payload).map_err(|e| PoisonReason::NotUtf8(e.to_string()))?;
    match raw.format {
        Format::Samsara => {
            let event = SamsaraEvent::parse(text)?;
            let natural_key = event.natural_key()?;
            Ok(vec![Record {
                id: RecordId::derive(Format::Samsara, &natural_key),
                format: Format::Samsara,
                kind: event.event_type.clone(),
                natural_key,
                occurred_at: event.event_time,
                origin: raw.origin.clone(),
                body: RecordBody::Samsara(event),
            }])
        }
        Format::Edi => Ok(parse_interchange(text)?
            .into_iter()
            .map(|tx| {
                let natural_key = tx.natural_key();
                Record {
                    id: RecordId::derive(Format::Edi, &natural_key),
                    format: Format::Edi,
                    kind: tx.set_id.clone(),
                    natural_key,
                    occurred_at: tx.occurred_at,
                    origin: raw.origin.clone(),
                    body: RecordBody::Edi(tx),
                }
            })
            .collect()),
        Format::Front | Format::Turvo | Format::Webhook => {
            let event = match raw.format {
                Format::Front => WebhookEvent::front(text, raw.timestamp)?,
                Format::Turvo => WebhookEvent::turvo(text, raw.timestamp)?,
                _ => WebhookEvent::generic(text, raw.timestamp)?,
            };
            let natural_key = webhook_key(raw);
            Ok(vec![Record {
                id: RecordId::derive(raw.format, &natural_key),
                format: raw.format,
                kind: event.event_type.clone(),
                natural_key,
                occurred_at: event.occurred_at,
                origin: raw.origin.clone(),
                body: RecordBody::Webhook(event),
            }])
        }
        Format::Bank => {
            let removed = raw
                .headers
                .iter()
                .any(|(k, v)| k == headers::CHANGE && v == Change::Removed.as_str().as_bytes());
            let (tx, at) = BankTransaction::parse(text, removed, raw.timestamp)?;
            Ok(polled(raw, tx.natural_key(), tx.kind().to_owned(), at, RecordBody::Bank(tx)))
        }
        Format::Crm => {
            let (object, at) = CrmObject::parse(text, raw.key.as_deref())?;
            Ok(polled(raw, object.natural_key(), object.kind().to_owned(), at, RecordBody::Crm(object)))
        }
        Format::Market => {
            let (point, at) = MarketPoint::parse(text)?;
            Ok(polled(raw, point.natural_key(), "MarketIndexPoint".to_owned(), at, RecordBody::Market(point)))
        }
        Format::Financial => {
            let (object, at) = FinancialObject::parse(text, raw.key.as_deref())?;
            Ok(polled(raw, object.natural_key(), object.kind(), at, RecordBody::Financial(object)))
        }
    }
}

/// The one record of a poller's message.
fn polled(
    raw: &RawEvent,
    natural_key: String,
    kind: String,
    occurred_at: chrono::DateTime<chrono::Utc>,
    body: RecordBody,
) -> Vec<Record> {
    let id = RecordId::derive(raw.format, &natural_key);
    vec![Record { id, format: raw.format, kind, natural_key, occurred_at, origin: raw.origin.clone(), body }]
}

/// The edge keys each webhook message by the provider's event id (or the
/// body's digest); a message from elsewhere without a key gets the digest here.
fn webhook_key(raw: &RawEvent) -> String {
    match &raw.key {
        Some(key) if !key.is_empty() => key.clone(),
        _ => body_digest(&raw.payload),
    }
}
