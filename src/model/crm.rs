//! CRM objects as the HubSpot poller produced them: a search result unchanged
//! (`{id, properties, createdAt, updatedAt, archived}`), keyed `<object>:<id>`
//! (`contacts:51`), so the object type comes from the key.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::poison::PoisonReason;
use super::polled::{pro_in, typed_key};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CrmType {
    Contact,
    Company,
    Deal,
    /// Another object type the poller was configured to search.
    Other,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrmObject {
    pub object_type: CrmType,
    /// HubSpot's object type as searched (`contacts`).
    pub object: String,
    pub id: String,
    /// The string and number properties HubSpot returned (empty ones left out).
    pub properties: BTreeMap<String, String>,
    /// A PRO number in a deal's name: the shipment it is about.
    pub pro_number: Option<String>,
}

/// A property that is a string or a number, as text.
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// HubSpot's dates: ISO 8601, or milliseconds since the epoch.
fn time(v: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(v)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| v.parse::<i64>().ok().and_then(DateTime::from_timestamp_millis))
}

impl CrmObject {
    /// The object under message key `key` (`contacts:51`), and when it was last modified.
    pub fn parse(json: &str, key: Option<&str>) -> Result<(Self, DateTime<Utc>), PoisonReason> {
        let bad = |m: String| PoisonReason::InvalidCrmObject(m);
        let (object, key_id) =
            typed_key(key).ok_or_else(|| bad(format!("message key {key:?} is not <object>:<id>")))?;
        let v: Value = serde_json::from_str(json).map_err(|e| PoisonReason::InvalidJson(e.to_string()))?;
        let id = v.get("id").and_then(scalar).ok_or_else(|| bad(format!("{object}: no id")))?;
        if id != key_id {
            return Err(bad(format!("{object}: id {id} under key {key_id}")));
        }
        let properties: BTreeMap<String, String> = match v.get("properties") {
            Some(Value::Object(m)) => m.iter().filter_map(|(k, v)| Some((k.clone(), scalar(v)?))).collect(),
            Some(Value::Null) | None => BTreeMap::new(),
            Some(other) => return Err(bad(format!("{object} {id}: properties is {other}, not an object"))),
        };
        let modified = ["updatedAt", "createdAt"]
            .iter()
            .find_map(|k| v.get(*k).and_then(Value::as_str))
            .or_else(|| {
                properties
                    .get("lastmodifieddate")
                    .or(properties.get("hs_lastmodifieddate"))
                    .map(String::as_str)
            })
            .ok_or_else(|| bad(format!("{object} {id}: no updatedAt or modified date")))?;
        let modified =
            time(modified).ok_or_else(|| bad(format!("{object} {id}: modified date {modified:?}")))?;
        let object_type = match object {
            "contacts" => CrmType::Contact,
            "companies" => CrmType::Company,
            "deals" => CrmType::Deal,
            _ => CrmType::Other,
        };
        let pro_number = (object_type == CrmType::Deal)
            .then(|| properties.get("dealname").and_then(|n| pro_in(n)))
            .flatten();
        Ok((CrmObject { object_type, object: object.to_owned(), id, properties, pro_number }, modified))
    }

    pub fn natural_key(&self) -> String {
        format!("hubspot:{}:{}", self.object, self.id)
    }

    pub fn kind(&self) -> &'static str {
        match self.object_type {
            CrmType::Contact => "CrmContact",
            CrmType::Company => "CrmCompany",
            CrmType::Deal => "CrmDeal",
            CrmType::Other => "CrmObject",
        }
    }

    pub fn prop(&self, name: &str) -> Option<&str> {
        self.properties.get(name).map(String::as_str)
    }

    /// A contact's email in lower case: the same person as a Front contact.
    pub fn email(&self) -> Option<String> {
        self.prop("email").map(str::to_ascii_lowercase)
    }

    pub fn summary(&self) -> String {
        let p = |k| self.prop(k).unwrap_or("");
        match self.object_type {
            CrmType::Contact => {
                format!(
                    "CRM contact {} {} <{}> at {}",
                    p("firstname"),
                    p("lastname"),
                    p("email"),
                    p("company")
                )
            }
            CrmType::Company => {
                format!("CRM company {} ({}) {} {}", p("name"), p("domain"), p("city"), p("state"))
            }
            CrmType::Deal => {
                format!("CRM deal {} amount {} stage {}", p("dealname"), p("amount"), p("dealstage"))
            }
            CrmType::Other => format!("CRM {} {}", self.object, self.id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deal_parses_with_its_type_time_and_pro_number() {
        let json = r#"{"id":"77","properties":{"dealname":"Reefer lane PRO 4455667","amount":"1200",
            "hs_lastmodifieddate":"1764000000000","hs_object_id":"77"},"updatedAt":"2026-11-20T10:00:00Z","archived":false}"#;
        let (deal, at) = CrmObject::parse(json, Some("deals:77")).unwrap();
        assert_eq!((deal.object_type, deal.kind()), (CrmType::Deal, "CrmDeal"));
        assert_eq!(deal.pro_number.as_deref(), Some("4455667"));
        assert_eq!(at.to_rfc3339(), "2026-11-20T10:00:00+00:00");
        assert_eq!(deal.natural_key(), "hubspot:deals:77");
        assert!(deal.summary().contains("amount 1200"), "{}", deal.summary());
    }

    #[test]
    fn the_modified_property_in_milliseconds_stands_in_for_updated_at() {
        let json =
            r#"{"id":"5","properties":{"email":"Ann@Carrier.example","lastmodifieddate":"1764000000000"}}"#;
        let (c, at) = CrmObject::parse(json, Some("contacts:5")).unwrap();
        assert_eq!(at.timestamp_millis(), 1_764_000_000_000);
        assert_eq!(c.email().as_deref(), Some("ann@carrier.example"));
    }

    #[test]
    fn bad_objects_are_poison_with_a_reason() {
        let ok = r#"{"id":"5","updatedAt":"2026-11-20T10:00:00Z"}"#;
        for (json, key) in [
            (ok, None),
            (ok, Some("contacts")),
            (ok, Some("contacts:6")),
            (r#"{"updatedAt":"2026-11-20T10:00:00Z"}"#, Some("contacts:5")),
            (r#"{"id":"5"}"#, Some("contacts:5")),
            (r#"{"id":"5","updatedAt":"yesterday"}"#, Some("contacts:5")),
            (r#"{"id":"5","updatedAt":"2026-11-20T10:00:00Z","properties":[1]}"#, Some("contacts:5")),
            ("{", Some("contacts:5")),
        ] {
            assert!(CrmObject::parse(json, key).is_err(), "{json} {key:?}");
        }
    }
}
