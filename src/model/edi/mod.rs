//! ANSI X12 interchanges: ISA…IEA holding groups GS…GE of transactions ST…SE.
//!
//! Separators come from the ISA segment. The envelope is validated in full
//! (control numbers, group and transaction counts, SE segment counts); any
//! envelope error rejects the whole interchange, as a TA1/999 would, so one
//! raw message is either entirely records or entirely one dead letter.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

mod codes;
mod envelope;
mod segment;
mod transactions;

pub use envelope::parse_interchange;

/// A party from an N1 loop, with its N4 location when present.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Party {
    /// N101 entity identifier code: SH shipper, CN consignee, BT bill-to, ...
    pub role: String,
    pub name: String,
    pub id: Option<String>,
    pub city: Option<String>,
    pub state: Option<String>,
    pub postal_code: Option<String>,
    pub country: Option<String>,
}

/// One status detail (LX loop) of a 214.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusDetail {
    /// AT701 shipment status code (X6 en route, D1 delivered, AF departed, ...).
    pub status_code: String,
    pub reason_code: Option<String>,
    pub at: Option<DateTime<Utc>>,
    pub city: Option<String>,
    pub state: Option<String>,
    pub equipment_scac: Option<String>,
    pub equipment_number: Option<String>,
    pub weight: Option<f64>,
    pub lading_quantity: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InvoiceLine {
    pub line: String,
    pub description: Option<String>,
    pub weight: Option<f64>,
    pub quantity: Option<f64>,
    pub rate: Option<f64>,
    pub charge_cents: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "set")]
pub enum EdiContent {
    /// 214 Transportation Carrier Shipment Status.
    ShipmentStatus {
        pro: Option<String>,
        bol: Option<String>,
        scac: Option<String>,
        references: Vec<(String, String)>,
        parties: Vec<Party>,
        statuses: Vec<StatusDetail>,
    },
    /// 210 Motor Carrier Freight Details and Invoice.
    FreightInvoice {
        invoice_number: String,
        pro: Option<String>,
        bol: Option<String>,
        scac: Option<String>,
        payment_method: Option<String>,
        amount_due_cents: Option<i64>,
        references: Vec<(String, String)>,
        parties: Vec<Party>,
        lines: Vec<InvoiceLine>,
        total_weight: Option<f64>,
        total_charge_cents: Option<i64>,
    },
    /// 204 Motor Carrier Load Tender (header level).
    LoadTender {
        scac: Option<String>,
        shipment_id: String,
        payment_method: Option<String>,
        purpose: Option<String>,
        references: Vec<(String, String)>,
        parties: Vec<Party>,
        stops: usize,
        /// The first pick-up date (G62 10/37/38/69), if given.
        pickup_at: Option<DateTime<Utc>>,
        /// The delivery appointment (the last G62 53/54/68/70): a shipment
        /// delivered after it is late.
        deliver_by: Option<DateTime<Utc>>,
    },
    /// 990 Response to a Load Tender (header level).
    TenderResponse { scac: Option<String>, shipment_id: String, action: Option<String> },
    /// A transaction set this version does not model; its segment ids are kept.
    Other { segment_ids: Vec<String> },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EdiTransaction {
    pub sender_id: String,
    pub receiver_id: String,
    pub interchange_control: String,
    pub group_control: String,
    pub functional_id: String,
    pub set_id: String,
    pub set_control: String,
    pub occurred_at: DateTime<Utc>,
    pub content: EdiContent,
}

impl EdiTransaction {
    /// ISA13 + GS06 + ST02 + sender id, as the issue defines the natural key.
    pub fn natural_key(&self) -> String {
        format!("{}|{}|{}|{}", self.interchange_control, self.group_control, self.set_control, self.sender_id)
    }

    /// The shipment this transaction speaks about: PRO, else BOL, else the shipment id.
    pub fn shipment_ref(&self) -> Option<&str> {
        match &self.content {
            EdiContent::ShipmentStatus { pro, bol, .. } | EdiContent::FreightInvoice { pro, bol, .. } => {
                pro.as_deref().or(bol.as_deref())
            }
            EdiContent::LoadTender { shipment_id, .. } | EdiContent::TenderResponse { shipment_id, .. } => {
                Some(shipment_id)
            }
            EdiContent::Other { .. } => None,
        }
    }

    pub fn scac(&self) -> Option<&str> {
        match &self.content {
            EdiContent::ShipmentStatus { scac, .. }
            | EdiContent::FreightInvoice { scac, .. }
            | EdiContent::LoadTender { scac, .. }
            | EdiContent::TenderResponse { scac, .. } => scac.as_deref(),
            EdiContent::Other { .. } => None,
        }
    }

    pub fn parties(&self) -> &[Party] {
        match &self.content {
            EdiContent::ShipmentStatus { parties, .. }
            | EdiContent::FreightInvoice { parties, .. }
            | EdiContent::LoadTender { parties, .. } => parties,
            _ => &[],
        }
    }

    pub fn summary(&self) -> String {
        let head = format!("edi {} from {}", self.set_id, self.sender_id);
        let body = match &self.content {
            EdiContent::ShipmentStatus { pro, bol, statuses, .. } => {
                let last = statuses.last();
                let reason = last
                    .and_then(|s| s.reason_code.as_deref())
                    .and_then(|r| codes::reason(r).map(|words| format!(" reason {r} {words}")))
                    .unwrap_or_default();
                format!(
                    "shipment status pro {} bol {} status {}{reason} at {} {}",
                    pro.as_deref().unwrap_or("-"),
                    bol.as_deref().unwrap_or("-"),
                    last.map(|s| codes::spelled(&s.status_code, codes::status)).unwrap_or_else(|| "-".into()),
                    last.and_then(|s| s.city.as_deref()).unwrap_or(""),
                    last.and_then(|s| s.state.as_deref()).unwrap_or("")
                )
            }
            EdiContent::FreightInvoice { invoice_number, pro, amount_due_cents, .. } => format!(
                "freight invoice {invoice_number} pro {} amount due {:.2} USD",
                pro.as_deref().unwrap_or("-"),
                amount_due_cents.unwrap_or(0) as f64 / 100.0
            ),
            EdiContent::LoadTender { shipment_id, stops, .. } => {
                format!("load tender shipment {shipment_id} with {stops} stops")
            }
            EdiContent::TenderResponse { shipment_id, action, .. } => {
                let action = action.as_deref().map(|a| codes::spelled(a, codes::tender_action));
                format!("tender response shipment {shipment_id} action {}", action.as_deref().unwrap_or("-"))
            }
            EdiContent::Other { segment_ids } => format!("segments {}", segment_ids.join(" ")),
        };
        let parties: Vec<&str> = self.parties().iter().map(|p| p.name.as_str()).collect();
        format!("{head} {body} {}", parties.join(" ")).split_whitespace().collect::<Vec<_>>().join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: &str = include_str!("../../../tests/fixtures/samples/edi/214_two_shipments.x12");

    #[test]
    fn separators_come_from_isa() {
        let swapped = TWO.replace('*', "|").replace('~', "\n");
        let txs = parse_interchange(&swapped).unwrap();
        assert_eq!(txs.len(), 2);
        assert_eq!(txs[0].shipment_ref(), Some("PRO7731904"));
    }

    #[test]
    fn control_number_mismatch_is_envelope_error() {
        let bad = TWO.replace("IEA*1*000004711", "IEA*1*000004799");
        let err = parse_interchange(&bad).unwrap_err();
        assert_eq!(err.label(), "edi_envelope");
        assert!(err.to_string().contains("IEA02"), "{err}");
    }

    #[test]
    fn group_count_mismatch_is_envelope_error() {
        let bad = TWO.replace("GE*2*4711", "GE*3*4711");
        let err = parse_interchange(&bad).unwrap_err();
        assert!(err.to_string().contains("GE01 says 3"), "{err}");
    }

    #[test]
    fn missing_b10_is_transaction_error() {
        let bad = TWO.replace("B10*PRO7731905*BOL5528114*FXFE~", "").replace("SE*9*0002", "SE*8*0002");
        let err = parse_interchange(&bad).unwrap_err();
        assert_eq!(err.label(), "edi_transaction");
    }

    #[test]
    fn not_an_interchange_is_syntax_error() {
        assert_eq!(parse_interchange("hello").unwrap_err().label(), "edi_syntax");
        assert_eq!(parse_interchange("ISA*00*").unwrap_err().label(), "edi_syntax");
    }
}
