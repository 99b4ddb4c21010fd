//! Bank transactions as the Plaid poller produced them: Plaid's transaction
//! JSON unchanged, keyed by `transaction_id`, with the header `apex-change:
//! removed` on a removal (`{transaction_id, account_id}` only). A removal keeps
//! the transaction's record id, so it replaces the transaction in every store,
//! marked removed.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::poison::PoisonReason;
use super::polled::{pro_in, text};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BankTransaction {
    pub transaction_id: String,
    pub account_id: Option<String>,
    /// Positive is money out of the account (Plaid's convention).
    pub amount: Option<f64>,
    pub currency: Option<String>,
    /// The posting date (Plaid's `date`).
    pub date: Option<NaiveDate>,
    pub name: Option<String>,
    pub merchant_name: Option<String>,
    pub pending: bool,
    /// Plaid removed it: the record stays, marked removed.
    pub removed: bool,
    /// A PRO number in the description (`PRO 12345678`): the shipment it pays for.
    pub pro_number: Option<String>,
}

impl BankTransaction {
    /// A transaction (`removed` false) or a removal; the time is the posting
    /// date, else `fallback_time` (the message's), as a removal carries none.
    pub fn parse(
        json: &str,
        removed: bool,
        fallback_time: Option<DateTime<Utc>>,
    ) -> Result<(Self, DateTime<Utc>), PoisonReason> {
        let v: Value = serde_json::from_str(json).map_err(|e| PoisonReason::InvalidJson(e.to_string()))?;
        let transaction_id = text(&v, "transaction_id")
            .ok_or_else(|| PoisonReason::InvalidTransaction("no transaction_id".into()))?;
        let date = match text(&v, "date") {
            Some(d) => Some(NaiveDate::parse_from_str(&d, "%Y-%m-%d").map_err(|e| {
                PoisonReason::InvalidTransaction(format!("{transaction_id}: date {d:?}: {e}"))
            })?),
            None => None,
        };
        let occurred_at = date
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|t| t.and_utc())
            .or(fallback_time)
            .ok_or_else(|| PoisonReason::InvalidTransaction(format!("{transaction_id}: no date")))?;
        let name = text(&v, "name");
        let tx = BankTransaction {
            account_id: text(&v, "account_id"),
            amount: v.get("amount").and_then(Value::as_f64),
            currency: text(&v, "iso_currency_code").or_else(|| text(&v, "unofficial_currency_code")),
            date,
            pro_number: name.as_deref().and_then(pro_in),
            merchant_name: text(&v, "merchant_name"),
            name,
            pending: v.get("pending").and_then(Value::as_bool).unwrap_or(false),
            removed,
            transaction_id,
        };
        Ok((tx, occurred_at))
    }

    pub fn natural_key(&self) -> String {
        format!("plaid:{}", self.transaction_id)
    }

    pub fn kind(&self) -> &'static str {
        if self.removed { "BankTransactionRemoved" } else { "BankTransaction" }
    }

    pub fn summary(&self) -> String {
        if self.removed {
            return format!("bank transaction {} removed", self.transaction_id);
        }
        let amount = self.amount.map(|a| format!("{a:.2}")).unwrap_or_else(|| "?".into());
        let mut s = format!(
            "bank transaction {} {} {}",
            self.name.as_deref().unwrap_or("(no description)"),
            amount,
            self.currency.as_deref().unwrap_or("")
        );
        if let Some(d) = self.date {
            s.push_str(&format!(" on {d}"));
        }
        if self.pending {
            s.push_str(" pending");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plaid_transaction_parses_with_its_date_and_pro_number() {
        let json = r#"{"transaction_id":"tx-1","account_id":"acc-1","amount":482.5,"iso_currency_code":"USD",
            "date":"2026-11-20","name":"ACH XPO LOGISTICS PRO# 12345678","pending":false}"#;
        let (tx, at) = BankTransaction::parse(json, false, None).unwrap();
        assert_eq!(tx.pro_number.as_deref(), Some("12345678"));
        assert_eq!(at.to_rfc3339(), "2026-11-20T00:00:00+00:00");
        assert_eq!(tx.kind(), "BankTransaction");
        assert!(tx.summary().contains("482.50 USD on 2026-11-20"), "{}", tx.summary());
    }

    #[test]
    fn a_removal_keeps_the_id_and_takes_the_message_time() {
        let now = Utc::now();
        let (tx, at) =
            BankTransaction::parse(r#"{"transaction_id":"tx-1","account_id":"acc-1"}"#, true, Some(now))
                .unwrap();
        assert_eq!((tx.removed, at, tx.natural_key()), (true, now, "plaid:tx-1".to_owned()));
        assert_eq!(tx.kind(), "BankTransactionRemoved");
    }

    #[test]
    fn bad_transactions_are_poison_with_a_reason() {
        for bad in [
            r#"{"amount": 1}"#,
            r#"{"transaction_id":"t","date":"20-11-2026"}"#,
            r#"{"transaction_id":"t"}"#,
            "[1",
        ] {
            assert!(BankTransaction::parse(bad, false, None).is_err(), "{bad}");
        }
        assert_eq!(pro_in("improve 1234567"), None, "only the word PRO");
        assert_eq!(pro_in("PRO 123"), None, "too short");
    }
}
