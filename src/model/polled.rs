//! What a poller's messages carry besides the provider's JSON: the headers
//! the poller writes and the parse stage reads.

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
