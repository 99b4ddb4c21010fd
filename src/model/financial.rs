//! Accounting objects as the QuickBooks poller produced them: QuickBooks' JSON
//! for the object unchanged, keyed `<Entity>:<Id>` (`Invoice:130`), so the
//! entity comes from the key. A deletion (`status: "Deleted"`, Id and MetaData
//! only) keeps the object's record id and replaces it, marked deleted.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::poison::PoisonReason;
use super::polled::{pro_in, text, typed_key};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinancialObject {
    /// QuickBooks' entity (`Invoice`, `Payment`, `Customer`).
    pub entity: String,
    pub id: String,
    pub deleted: bool,
    pub doc_number: Option<String>,
    pub total: Option<f64>,
    /// The customer or vendor it is with: (`Customer`|`Vendor`, id, name).
    pub party: Option<(String, String, Option<String>)>,
    /// A Customer's or Vendor's own name.
    pub name: Option<String>,
    /// A PRO number in its memo, note or line descriptions: the shipment it is for.
    pub pro_number: Option<String>,
}

/// The first PRO number in the object's free-text fields.
fn pro_number(v: &Value) -> Option<String> {
    let memo = v.get("CustomerMemo").and_then(|m| text(m, "value"));
    let lines =
        v.get("Line").and_then(Value::as_array).into_iter().flatten().filter_map(|l| text(l, "Description"));
    [text(v, "PrivateNote"), memo, text(v, "DocNumber")]
        .into_iter()
        .flatten()
        .chain(lines)
        .find_map(|t| pro_in(&t))
}

impl FinancialObject {
    /// The object under message key `key` (`Invoice:130`), and when it was last updated.
    pub fn parse(json: &str, key: Option<&str>) -> Result<(Self, DateTime<Utc>), PoisonReason> {
        let bad = |m: String| PoisonReason::InvalidFinancialObject(m);
        let (entity, key_id) =
            typed_key(key).ok_or_else(|| bad(format!("message key {key:?} is not <Entity>:<Id>")))?;
        let v: Value = serde_json::from_str(json).map_err(|e| PoisonReason::InvalidJson(e.to_string()))?;
        let id = text(&v, "Id").ok_or_else(|| bad(format!("{entity}: no Id")))?;
        if id != key_id {
            return Err(bad(format!("{entity}: Id {id} under key {key_id}")));
        }
        let updated = v
            .get("MetaData")
            .and_then(|m| text(m, "LastUpdatedTime"))
            .ok_or_else(|| bad(format!("{entity} {id}: no MetaData.LastUpdatedTime")))?;
        let updated = DateTime::parse_from_rfc3339(&updated)
            .map_err(|e| bad(format!("{entity} {id}: LastUpdatedTime {updated:?}: {e}")))?
            .with_timezone(&Utc);
        let party = ["CustomerRef", "VendorRef"].iter().find_map(|r| {
            let reference = v.get(*r)?;
            let kind = r.trim_end_matches("Ref").to_owned();
            Some((kind, text(reference, "value")?, text(reference, "name")))
        });
        let object = FinancialObject {
            deleted: text(&v, "status").as_deref() == Some("Deleted"),
            doc_number: text(&v, "DocNumber"),
            total: v.get("TotalAmt").and_then(Value::as_f64),
            name: text(&v, "DisplayName").or_else(|| text(&v, "CompanyName")),
            pro_number: pro_number(&v),
            party,
            entity: entity.to_owned(),
            id,
        };
        Ok((object, updated))
    }

    pub fn natural_key(&self) -> String {
        format!("quickbooks:{}:{}", self.entity, self.id)
    }

    /// `QbInvoice`, or `QbInvoiceDeleted` for a deletion.
    pub fn kind(&self) -> String {
        format!("Qb{}{}", self.entity, if self.deleted { "Deleted" } else { "" })
    }

    pub fn summary(&self) -> String {
        if self.deleted {
            return format!("QuickBooks {} {} deleted", self.entity, self.id);
        }
        let mut s = format!("QuickBooks {} {}", self.entity, self.doc_number.as_deref().unwrap_or(&self.id));
        if let Some(name) = &self.name {
            s.push_str(&format!(" {name}"));
        }
        if let Some((kind, _, name)) = &self.party {
            s.push_str(&format!(" {} {}", kind.to_ascii_lowercase(), name.as_deref().unwrap_or("?")));
        }
        if let Some(total) = self.total {
            s.push_str(&format!(" total {total:.2}"));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invoice_parses_with_its_customer_total_and_pro_number() {
        let json = r#"{"Id":"130","DocNumber":"1037","TotalAmt":1850.0,
            "CustomerRef":{"value":"58","name":"Acme Foods"},
            "Line":[{"Description":"Linehaul Chicago-Atlanta PRO# 77889900","Amount":1850.0}],
            "MetaData":{"CreateTime":"2026-11-20T09:00:00-08:00","LastUpdatedTime":"2026-11-20T10:00:00-08:00"}}"#;
        let (inv, at) = FinancialObject::parse(json, Some("Invoice:130")).unwrap();
        assert_eq!(inv.party, Some(("Customer".into(), "58".into(), Some("Acme Foods".into()))));
        assert_eq!(inv.pro_number.as_deref(), Some("77889900"));
        assert_eq!(
            (inv.kind(), at.to_rfc3339()),
            ("QbInvoice".to_owned(), "2026-11-20T18:00:00+00:00".to_owned())
        );
        assert!(inv.summary().contains("customer Acme Foods total 1850.00"), "{}", inv.summary());
    }

    #[test]
    fn a_deletion_keeps_the_id_and_is_marked_deleted() {
        let json = r#"{"domain":"QBO","status":"Deleted","Id":"130","MetaData":{"LastUpdatedTime":"2026-11-21T10:00:00Z"}}"#;
        let (inv, _) = FinancialObject::parse(json, Some("Invoice:130")).unwrap();
        assert_eq!(
            (inv.deleted, inv.kind(), inv.natural_key()),
            (true, "QbInvoiceDeleted".into(), "quickbooks:Invoice:130".into())
        );
    }

    #[test]
    fn bad_objects_are_poison_with_a_reason() {
        let ok = r#"{"Id":"1","MetaData":{"LastUpdatedTime":"2026-11-21T10:00:00Z"}}"#;
        for (json, key) in [
            (ok, None),
            (ok, Some("Invoice:2")),
            (r#"{"MetaData":{"LastUpdatedTime":"2026-11-21T10:00:00Z"}}"#, Some("Invoice:1")),
            (r#"{"Id":"1"}"#, Some("Invoice:1")),
            (r#"{"Id":"1","MetaData":{"LastUpdatedTime":"noon"}}"#, Some("Invoice:1")),
            ("{", Some("Invoice:1")),
        ] {
            assert!(FinancialObject::parse(json, key).is_err(), "{json} {key:?}");
        }
    }
}
