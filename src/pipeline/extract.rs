//! Extract stage: entities and relations for the graph.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::bank::BankTransaction;
use crate::model::crm::{CrmObject, CrmType};
use crate::model::edi::EdiTransaction;
use crate::model::financial::FinancialObject;
use crate::model::samsara::{SamsaraData, SamsaraEvent};
use crate::model::webhook::{WebhookEvent, WebhookSubject};
use crate::model::{Entity, EntityKey, Label, Record, RecordBody, RelType, Relation};

/// Geohash precision for Location cells: 5 characters is roughly 5 km x 5 km.
const LOCATION_PRECISION: usize = 5;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Extraction {
    pub entities: Vec<Entity>,
    pub relations: Vec<Relation>,
}

impl Extraction {
    fn node(&mut self, label: Label, key: &str, props: &[(&str, Option<&str>)]) -> EntityKey {
        let key = EntityKey::new(label, key);
        let props: BTreeMap<String, String> =
            props.iter().filter_map(|(k, v)| v.map(|v| ((*k).to_owned(), v.to_owned()))).collect();
        self.entities.push(Entity { key: key.clone(), props });
        key
    }

    fn edge(&mut self, from: &EntityKey, rel: RelType, to: &EntityKey) {
        self.relations.push(Relation { from: from.clone(), rel, to: to.clone() });
    }

    /// The shipment a PRO number names, mentioned by `event` (a payment, an
    /// invoice or a deal is about it).
    fn shipment_mentioned(&mut self, event: &EntityKey, pro_number: Option<&String>) {
        if let Some(pro) = pro_number {
            let k = self.node(Label::Shipment, pro, &[]);
            self.edge(event, RelType::Mentions, &k);
        }
    }
}

/// Extracts the Event node for the record and the entities it mentions.
pub fn extract(record: &Record, summary: &str) -> Extraction {
    let mut x = Extraction::default();
    let occurred = record.occurred_at.to_rfc3339();
    let event = x.node(
        Label::Event,
        record.id.as_str(),
        &[
            ("format", Some(record.format.as_str())),
            ("kind", Some(&record.kind)),
            ("occurred_at", Some(&occurred)),
            ("summary", Some(summary)),
        ],
    );
    match &record.body {
        RecordBody::Samsara(e) => extract_samsara(&mut x, &event, e),
        RecordBody::Edi(t) => extract_edi(&mut x, &event, t),
        RecordBody::Webhook(w) => extract_webhook(&mut x, &event, w),
        RecordBody::Bank(t) => extract_bank(&mut x, &event, t),
        RecordBody::Crm(o) => extract_crm(&mut x, &event, o),
        RecordBody::Financial(o) => extract_financial(&mut x, &event, o),
        RecordBody::Market(p) => {
            let k = x.node(Label::Market, &p.qualifier, &[]);
            x.edge(&event, RelType::At, &k);
        }
    }
    x
}

/// The account the transaction is on, and the shipment a PRO number in its description names.
fn extract_bank(x: &mut Extraction, event: &EntityKey, t: &BankTransaction) {
    if let Some(account) = &t.account_id {
        let k = x.node(Label::Account, account, &[]);
        x.edge(&k, RelType::Reported, event);
    }
    x.shipment_mentioned(event, t.pro_number.as_ref());
}

/// A contact by email (the same node as a Front contact), a company by domain,
/// a deal's shipment by the PRO number in its name.
fn extract_crm(x: &mut Extraction, event: &EntityKey, o: &CrmObject) {
    let fallback = format!("hubspot:{}:{}", o.object, o.id);
    let mentioned = match o.object_type {
        CrmType::Contact => {
            let name =
                [o.prop("firstname"), o.prop("lastname")].into_iter().flatten().collect::<Vec<_>>().join(" ");
            let name = (!name.is_empty()).then_some(name);
            let key = o.email().unwrap_or(fallback);
            x.node(Label::Contact, &key, &[("name", name.as_deref()), ("hubspot_id", Some(&o.id))])
        }
        CrmType::Company => {
            let key = o.prop("domain").map(str::to_ascii_lowercase).unwrap_or(fallback);
            x.node(Label::Company, &key, &[("name", o.prop("name")), ("hubspot_id", Some(&o.id))])
        }
        CrmType::Deal => return x.shipment_mentioned(event, o.pro_number.as_ref()),
        CrmType::Other => return,
    };
    x.edge(event, RelType::Mentions, &mentioned);
}

/// The customer or vendor (a `Company` under its QuickBooks id; a Customer or
/// Vendor object is that node itself) and the shipment a PRO number names.
fn extract_financial(x: &mut Extraction, event: &EntityKey, o: &FinancialObject) {
    if o.deleted {
        return;
    }
    let company = match (&o.party, o.entity.as_str()) {
        (Some((kind, id, name)), _) => Some((format!("quickbooks:{kind}:{id}"), name.as_deref())),
        (None, "Customer" | "Vendor") => {
            Some((format!("quickbooks:{}:{}", o.entity, o.id), o.name.as_deref()))
        }
        _ => None,
    };
    if let Some((key, name)) = company {
        let k = x.node(Label::Company, &key, &[("name", name)]);
        x.edge(event, RelType::Mentions, &k);
    }
    x.shipment_mentioned(event, o.pro_number.as_ref());
}

fn extract_samsara(x: &mut Extraction, event: &EntityKey, e: &SamsaraEvent) {
    let vehicle = e.data.vehicle().map(|v| {
        let k = x.node(Label::Vehicle, &v.id, &[("name", v.name.as_deref())]);
        x.edge(&k, RelType::Reported, event);
        k
    });
    if let Some(d) = e.data.driver() {
        let k = x.node(Label::Driver, &d.id, &[("name", d.name.as_deref())]);
        x.edge(&k, RelType::Reported, event);
        if let Some(v) = &vehicle {
            x.edge(&k, RelType::Drove, v);
        }
    }
    if let Some(p) = e.data.position() {
        let coord = geohash::Coord { x: p.longitude, y: p.latitude };
        if let Ok(cell) = geohash::encode(coord, LOCATION_PRECISION) {
            let k = x.node(Label::Location, &cell, &[("kind", Some("geohash5"))]);
            x.edge(event, RelType::At, &k);
        }
    }
    if let SamsaraData::Geofence { facility_id, facility_name, address, .. } = &e.data {
        let k = x.node(
            Label::Facility,
            facility_id,
            &[("name", facility_name.as_deref()), ("address", address.as_deref())],
        );
        x.edge(event, RelType::At, &k);
    }
}

fn extract_edi(x: &mut Extraction, event: &EntityKey, t: &EdiTransaction) {
    let shipment = t.shipment_ref().map(|s| {
        let k = x.node(Label::Shipment, s, &[]);
        x.edge(&k, RelType::HasStatus, event);
        k
    });
    if let (Some(scac), Some(s)) = (t.scac(), &shipment) {
        let k = x.node(Label::Carrier, scac, &[("scac", Some(scac))]);
        x.edge(&k, RelType::Carries, s);
    }
    for p in t.parties() {
        let rel = match p.role.as_str() {
            "SH" => RelType::PickupAt,
            "CN" => RelType::DeliverTo,
            _ => continue,
        };
        let key = p.id.as_deref().unwrap_or(&p.name);
        let k = x.node(
            Label::Facility,
            key,
            &[("name", Some(&p.name)), ("city", p.city.as_deref()), ("state", p.state.as_deref())],
        );
        if let Some(s) = &shipment {
            x.edge(s, rel, &k);
        }
    }
    if let crate::model::edi::EdiContent::ShipmentStatus { statuses, .. } = &t.content
        && let Some(s) = statuses.last()
        && let (Some(city), Some(state)) = (&s.city, &s.state)
    {
        let k = x.node(Label::Location, &format!("city:{city},{state}"), &[("kind", Some("city"))]);
        x.edge(event, RelType::At, &k);
    }
}

/// A Turvo shipment is the EDI shipment with the same reference (one node);
/// a Front conversation links to the carrier (SCAC) and the contact it names.
fn extract_webhook(x: &mut Extraction, event: &EntityKey, w: &WebhookEvent) {
    match &w.subject {
        WebhookSubject::TurvoShipment { turvo_id, reference, .. } => {
            let k = x.node(
                Label::Shipment,
                reference.as_deref().unwrap_or(turvo_id),
                &[("turvo_id", Some(turvo_id))],
            );
            x.edge(&k, RelType::HasStatus, event);
        }
        WebhookSubject::FrontConversation { conversation_id, subject, carrier_scac, contact, .. } => {
            let c = x.node(Label::Conversation, conversation_id, &[("subject", subject.as_deref())]);
            x.edge(&c, RelType::HasStatus, event);
            if let Some(scac) = carrier_scac {
                let k = x.node(Label::Carrier, scac, &[("scac", Some(scac))]);
                x.edge(&c, RelType::Mentions, &k);
            }
            if let Some(handle) = contact {
                let k = x.node(Label::Contact, handle, &[]);
                x.edge(&c, RelType::Mentions, &k);
            }
        }
        WebhookSubject::Other => {}
    }
}
