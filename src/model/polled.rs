//! What a poller's messages carry besides the provider's JSON (the headers
//! the poller writes and the parse stage reads), and what the poll formats'
//! parsers share.

use serde_json::Value;

/// Headers of every message a poller produces.
pub mod headers {
    /// The source (`bank`).
    pub const SOURCE: &str = "apex-source";
    /// `upsert` or `removed` ([`super::Change`]).
    pub const CHANGE: &str = "apex-change";
}

/// What a change does to the record with this id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Upsert,
    Removed,
}

impl Change {
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Upsert => "upsert",
            Change::Removed => "removed",
        }
    }
}

/// The object type and id of a `<type>:<id>` message key (HubSpot and
/// QuickBooks ids are unique per type only).
pub fn typed_key(key: Option<&str>) -> Option<(&str, &str)> {
    key?.split_once(':').filter(|(kind, id)| !kind.is_empty() && !id.is_empty())
}

/// A string field of a provider's JSON, trimmed; `None` when absent or blank.
pub fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key)?.as_str().map(str::trim).filter(|s| !s.is_empty()).map(String::from)
}

/// `PRO 1234567`, `PRO# 1234567`, `pro:1234567` (6 to 12 digits) anywhere in
/// `text`: the shipment a payment, an invoice or a deal is about.
pub fn pro_in(text: &str) -> Option<String> {
    let lower = text.to_ascii_lowercase();
    lower.match_indices("pro").find_map(|(at, _)| {
        let before_ok = at == 0 || !lower.as_bytes()[at - 1].is_ascii_alphanumeric();
        let rest = lower[at + 3..].trim_start_matches([' ', '#', ':', '-']);
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        (before_ok && (6..=12).contains(&digits.len()) && rest.len() >= digits.len()).then_some(digits)
    })
}
