//! Graph entities and relations extracted from records.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Label {
    Vehicle,
    Driver,
    Location,
    Shipment,
    Carrier,
    Facility,
    Event,
    /// A Front conversation.
    Conversation,
    /// A person or mailbox a Front conversation is with.
    Contact,
    /// A bank account (Plaid's `account_id`).
    Account,
    /// A company: in the CRM (HubSpot) by its domain or else its HubSpot id; a
    /// QuickBooks customer or vendor by its QuickBooks id.
    Company,
    /// A freight market, lane or level a SONAR index is measured for.
    Market,
}

impl Label {
    pub const ALL: [Label; 12] = [
        Label::Vehicle,
        Label::Driver,
        Label::Location,
        Label::Shipment,
        Label::Carrier,
        Label::Facility,
        Label::Event,
        Label::Conversation,
        Label::Contact,
        Label::Account,
        Label::Company,
        Label::Market,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Label::Vehicle => "Vehicle",
            Label::Driver => "Driver",
            Label::Location => "Location",
            Label::Shipment => "Shipment",
            Label::Carrier => "Carrier",
            Label::Facility => "Facility",
            Label::Event => "Event",
            Label::Conversation => "Conversation",
            Label::Contact => "Contact",
            Label::Account => "Account",
            Label::Company => "Company",
            Label::Market => "Market",
        }
    }
}

/// A node's identity: its label and its natural key within that label.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EntityKey {
    pub label: Label,
    pub key: String,
}

impl EntityKey {
    pub fn new(label: Label, key: impl Into<String>) -> Self {
        EntityKey { label, key: key.into() }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entity {
    pub key: EntityKey,
    pub props: BTreeMap<String, String>,
}

/// Relationship types; a bounded set because Cypher cannot take a type as a parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum RelType {
    /// (Vehicle|Driver|Account)-[:REPORTED]->(Event)
    Reported,
    /// (Driver)-[:DROVE]->(Vehicle)
    Drove,
    /// (Shipment|Conversation)-[:HAS_STATUS]->(Event)
    HasStatus,
    /// (Carrier)-[:CARRIES]->(Shipment)
    Carries,
    /// (Event)-[:AT]->(Location|Facility|Market)
    At,
    /// (Shipment)-[:PICKUP_AT|DELIVER_TO]->(Facility)
    PickupAt,
    DeliverTo,
    /// (Conversation)-[:MENTIONS]->(Carrier|Contact), (Event)-[:MENTIONS]->(Shipment|Contact|Company)
    Mentions,
    /// (Vehicle)-[:VISITED {first_seen, last_seen, count}]->(Location): pings kept as state.
    Visited,
}

impl RelType {
    pub const ALL: [RelType; 9] = [
        RelType::Reported,
        RelType::Drove,
        RelType::HasStatus,
        RelType::Carries,
        RelType::At,
        RelType::PickupAt,
        RelType::DeliverTo,
        RelType::Mentions,
        RelType::Visited,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RelType::Reported => "REPORTED",
            RelType::Drove => "DROVE",
            RelType::HasStatus => "HAS_STATUS",
            RelType::Carries => "CARRIES",
            RelType::At => "AT",
            RelType::PickupAt => "PICKUP_AT",
            RelType::DeliverTo => "DELIVER_TO",
            RelType::Mentions => "MENTIONS",
            RelType::Visited => "VISITED",
        }
    }
}

/// A directed edge, e.g. `(:Vehicle)-[:REPORTED]->(:Event)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Relation {
    pub from: EntityKey,
    pub rel: RelType,
    pub to: EntityKey,
}
