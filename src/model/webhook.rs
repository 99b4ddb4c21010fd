//! Webhook bodies from Front, Turvo and the generic HMAC route, as the edge
//! produced them (the provider's JSON, unchanged, keyed by the provider's event
//! id). Front conversation, message and contact events and Turvo shipment
//! status events become typed subjects; every other event type is kept whole.
//!
//! Shapes: Front application webhooks `{type, authorization, payload: <event>}`
//! and rule webhooks `<event>`, an event being `{id, type, emitted_at,
//! conversation, target, …}` (dev.frontapp.com); Turvo `{tenantId, eventName,
//! eventTime, eventPayload: {id, customId, status: {code: {key, value}}}}`
//! (third-party fixtures: Turvo's own docs are tenant-gated).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::poison::PoisonReason;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookEvent {
    pub event_type: String,
    pub occurred_at: DateTime<Utc>,
    pub subject: WebhookSubject,
    /// The body as the provider sent it.
    pub payload: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum WebhookSubject {
    /// A Front event about a conversation (inbound or outbound message, comment, tag, assignment…).
    FrontConversation {
        conversation_id: String,
        subject: Option<String>,
        status: Option<String>,
        /// The carrier the conversation names: a `scac:XXXX` tag or `SCAC XXXX` in the subject.
        carrier_scac: Option<String>,
        /// The message the event is about, when its target is a message.
        message_id: Option<String>,
        /// The handle (e-mail address, phone) of the conversation's recipient.
        contact: Option<String>,
    },
    /// A Turvo shipment status or update.
    TurvoShipment {
        turvo_id: String,
        /// Turvo's customer-facing shipment number: the reference EDI uses.
        reference: Option<String>,
        status: Option<String>,
    },
    /// An event type this version does not model (kept whole in `payload`).
    Other,
}

/// The identity of a webhook without an event id (Turvo): SHA-256 of the body, hex.
pub fn body_digest(body: &[u8]) -> String {
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(body))
}

fn text(v: &Value, pointer: &str) -> Option<String> {
    match v.pointer(pointer)? {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A time given as epoch seconds (Front's `emitted_at`, fractional) or RFC 3339 text.
fn time(v: &Value, pointer: &str) -> Option<DateTime<Utc>> {
    match v.pointer(pointer)? {
        Value::Number(n) => DateTime::from_timestamp_millis((n.as_f64()? * 1000.0) as i64),
        Value::String(s) => DateTime::parse_from_rfc3339(s).ok().map(|t| t.with_timezone(&Utc)),
        _ => None,
    }
}

fn object(json: &str) -> Result<Value, PoisonReason> {
    let value: Value = serde_json::from_str(json).map_err(|e| PoisonReason::InvalidJson(e.to_string()))?;
    if !value.is_object() {
        return Err(PoisonReason::InvalidWebhook("the body is not a JSON object".into()));
    }
    Ok(value)
}

/// `SCAC ABCD`, `SCAC: ABCD` or `scac:abcd` (2–4 letters) anywhere in `text`.
fn scac_in(text: &str) -> Option<String> {
    let lower = text.to_ascii_lowercase();
    let at = lower.find("scac")?;
    let rest = text[at + 4..].trim_start_matches([':', ' ', '#']);
    let code: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
    (2..=4).contains(&code.len()).then(|| code.to_ascii_uppercase())
}

impl WebhookEvent {
    /// A Front application webhook (the event under `payload`) or rule webhook
    /// (the event itself). `fallback_time` is used when the event carries none.
    pub fn front(json: &str, fallback_time: Option<DateTime<Utc>>) -> Result<Self, PoisonReason> {
        let body = object(json)?;
        let event = if body.get("payload").is_some_and(Value::is_object) { &body["payload"] } else { &body };
        let event_type = text(event, "/type")
            .or_else(|| text(&body, "/type"))
            .ok_or_else(|| PoisonReason::InvalidWebhook("Front event has no type".into()))?;
        let occurred_at = time(event, "/emitted_at")
            .or(fallback_time)
            .ok_or_else(|| PoisonReason::InvalidWebhook("Front event has no emitted_at".into()))?;
        let subject = match text(event, "/conversation/id") {
            Some(conversation_id) => {
                let subject = text(event, "/conversation/subject");
                let tags = event.pointer("/conversation/tags").and_then(Value::as_array);
                let tag_scac =
                    tags.into_iter().flatten().filter_map(|t| t.get("name")?.as_str()).find_map(scac_in);
                let is_message = text(event, "/target/_meta/type").as_deref() == Some("message");
                WebhookSubject::FrontConversation {
                    carrier_scac: tag_scac.or_else(|| subject.as_deref().and_then(scac_in)),
                    subject,
                    status: text(event, "/conversation/status"),
                    message_id: is_message.then(|| text(event, "/target/data/id")).flatten(),
                    contact: text(event, "/conversation/recipient/handle"),
                    conversation_id,
                }
            }
            None => WebhookSubject::Other,
        };
        Ok(WebhookEvent { event_type, occurred_at, subject, payload: body })
    }

    /// A Turvo webhook: shipment status and update events are typed.
    pub fn turvo(json: &str, fallback_time: Option<DateTime<Utc>>) -> Result<Self, PoisonReason> {
        let body = object(json)?;
        let event_type = text(&body, "/eventName")
            .ok_or_else(|| PoisonReason::InvalidWebhook("Turvo event has no eventName".into()))?;
        let occurred_at = time(&body, "/eventTime")
            .or(fallback_time)
            .ok_or_else(|| PoisonReason::InvalidWebhook("Turvo event has no eventTime".into()))?;
        let subject = match (event_type.starts_with("SHIPMENT_"), text(&body, "/eventPayload/id")) {
            (true, Some(turvo_id)) => WebhookSubject::TurvoShipment {
                turvo_id,
                reference: text(&body, "/eventPayload/customId"),
                status: text(&body, "/eventPayload/status/code/value")
                    .or_else(|| text(&body, "/eventPayload/status/code/key")),
            },
            (true, None) => {
                return Err(PoisonReason::InvalidWebhook(format!("{event_type} has no eventPayload.id")));
            }
            _ => WebhookSubject::Other,
        };
        Ok(WebhookEvent { event_type, occurred_at, subject, payload: body })
    }

    /// A body from the generic HMAC route: kept whole, typed by its `type` field if any.
    pub fn generic(json: &str, fallback_time: Option<DateTime<Utc>>) -> Result<Self, PoisonReason> {
        let body = object(json)?;
        let occurred_at = time(&body, "/time").or(fallback_time).ok_or_else(|| {
            PoisonReason::InvalidWebhook("webhook has no time and no broker timestamp".into())
        })?;
        let event_type = text(&body, "/type").unwrap_or_else(|| "webhook".into());
        Ok(WebhookEvent { event_type, occurred_at, subject: WebhookSubject::Other, payload: body })
    }

    pub fn summary(&self, provider: &str) -> String {
        let about = match &self.subject {
            WebhookSubject::FrontConversation { subject, status, carrier_scac, contact, .. } => format!(
                "conversation {} status {} carrier {} contact {}",
                subject.as_deref().unwrap_or(""),
                status.as_deref().unwrap_or("unknown"),
                carrier_scac.as_deref().unwrap_or("unknown"),
                contact.as_deref().unwrap_or("")
            ),
            WebhookSubject::TurvoShipment { reference, status, turvo_id } => format!(
                "shipment {} turvo {turvo_id} status {}",
                reference.as_deref().unwrap_or(""),
                status.as_deref().unwrap_or("unknown")
            ),
            WebhookSubject::Other => String::new(),
        };
        format!("{provider} {} {about}", self.event_type).split_whitespace().collect::<Vec<_>>().join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn front_application_event_names_conversation_message_contact_and_carrier() {
        let body = r#"{"type":"inbound","authorization":{"id":"cmp_1"},"payload":{"id":"evt_9","type":"inbound",
            "emitted_at":1700000000.25,"conversation":{"id":"cnv_1","subject":"Load 4411 delayed, SCAC: abcd",
            "status":"unassigned","tags":[],"recipient":{"handle":"dispatch@carrier.example"}},
            "target":{"_meta":{"type":"message"},"data":{"id":"msg_7"}}}}"#;
        let e = WebhookEvent::front(body, None).unwrap();
        assert_eq!(e.event_type, "inbound");
        assert_eq!(e.occurred_at.timestamp_millis(), 1_700_000_000_250);
        assert_eq!(
            e.subject,
            WebhookSubject::FrontConversation {
                conversation_id: "cnv_1".into(),
                subject: Some("Load 4411 delayed, SCAC: abcd".into()),
                status: Some("unassigned".into()),
                carrier_scac: Some("ABCD".into()),
                message_id: Some("msg_7".into()),
                contact: Some("dispatch@carrier.example".into()),
            }
        );
    }

    #[test]
    fn front_rule_event_and_a_tag_naming_the_carrier() {
        let body = r#"{"id":"evt_2","type":"tag","emitted_at":1700000001,
            "conversation":{"id":"cnv_2","subject":"rates","tags":[{"name":"scac:XPOL"}]}}"#;
        let e = WebhookEvent::front(body, None).unwrap();
        assert!(
            matches!(e.subject, WebhookSubject::FrontConversation { carrier_scac: Some(ref s), .. } if s == "XPOL")
        );
    }

    #[test]
    fn turvo_shipment_status_is_typed_and_other_events_kept_whole() {
        let body = r#"{"tenantId":"t1","eventName":"SHIPMENT_STATUS_UPDATE","eventTime":"2026-11-20T10:00:00Z",
            "eventPayload":{"id":98765,"customId":"SH-1001","status":{"code":{"key":"2106","value":"En route"}}}}"#;
        let e = WebhookEvent::turvo(body, None).unwrap();
        assert_eq!(
            e.subject,
            WebhookSubject::TurvoShipment {
                turvo_id: "98765".into(),
                reference: Some("SH-1001".into()),
                status: Some("En route".into())
            }
        );
        let other =
            r#"{"eventName":"CUSTOMER_UPDATE","eventTime":"2026-11-20T10:00:00Z","eventPayload":{"id":1}}"#;
        assert_eq!(WebhookEvent::turvo(other, None).unwrap().subject, WebhookSubject::Other);
    }

    #[test]
    fn bad_bodies_say_what_is_missing() {
        let err = WebhookEvent::turvo(r#"{"eventTime":"2026-11-20T10:00:00Z"}"#, None).unwrap_err();
        assert!(err.to_string().contains("eventName"), "{err}");
        let err = WebhookEvent::front("[1]", None).unwrap_err();
        assert!(err.to_string().contains("not a JSON object"), "{err}");
        let err = WebhookEvent::generic(r#"{"a":1}"#, None).unwrap_err();
        assert!(err.to_string().contains("no time"), "{err}");
        assert_eq!(WebhookEvent::front("{", None).unwrap_err().label(), "invalid_json");
    }
}
