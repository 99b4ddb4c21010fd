//! The sample files (tests/fixtures/samples, copied from shared/samples plus our
//! own) through parse and extract, checking typed fields, identity and edges.

use std::path::Path;

use apex_ingest::model::edi::EdiContent;
use apex_ingest::model::samsara::SamsaraData;
use apex_ingest::model::{EntityKey, Format, Label, Origin, RawEvent, Record, RecordBody, RecordId, RelType};
use apex_ingest::pipeline::extract::extract;
use apex_ingest::pipeline::parse::parse;

fn raw(format: Format, name: &str) -> RawEvent {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/samples").join(name);
    let payload = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    RawEvent::new(format, Origin { topic: "test".into(), partition: 0, offset: 0 }, None, payload)
}

fn one(format: Format, name: &str) -> Record {
    let mut records = parse(&raw(format, name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(records.len(), 1, "{name}");
    records.remove(0)
}

fn has_edge(r: &Record, from: (Label, &str), rel: RelType, to: (Label, &str)) -> bool {
    let x = extract(r, &r.summary());
    x.relations.iter().any(|e| {
        e.from == EntityKey::new(from.0, from.1) && e.rel == rel && e.to == EntityKey::new(to.0, to.1)
    })
}

#[test]
fn vehicle_location_is_typed_and_located() {
    let r = one(Format::Samsara, "samsara/vehicle_location.json");
    assert_eq!(r.kind, "VehicleLocation");
    assert_eq!(r.id, RecordId::derive(Format::Samsara, "7f3c2b9e-5d1a-4c8e-9b2f-1a6d0e4c3b21"));
    let RecordBody::Samsara(e) = &r.body else { panic!("not samsara") };
    let SamsaraData::VehicleLocation { position, speed_mph, place, .. } = &e.data else {
        panic!("{:?}", e.data)
    };
    assert_eq!((position.latitude, position.longitude), (35.1495, -90.049));
    assert_eq!(*speed_mph, Some(61.3));
    assert_eq!(place.as_deref(), Some("I-40 E, Memphis, TN"));
    let event = r.id.as_str();
    assert!(has_edge(&r, (Label::Vehicle, "281474977075841"), RelType::Reported, (Label::Event, event)));
    // geohash-5 cell of 35.1495, -90.049 (Memphis), computed independently of the crate
    assert!(
        has_edge(&r, (Label::Event, event), RelType::At, (Label::Location, "9ypzy")),
        "{:?}",
        extract(&r, "").relations
    );
}

#[test]
fn vehicle_stats_converts_units() {
    let r = one(Format::Samsara, "samsara/vehicle_stats.json");
    let RecordBody::Samsara(e) = &r.body else { panic!() };
    let SamsaraData::VehicleStats { engine_state, fuel_percent, odometer_meters, coolant_celsius, .. } =
        &e.data
    else {
        panic!("{:?}", e.data)
    };
    assert_eq!(engine_state.as_deref(), Some("On"));
    assert_eq!(
        (*fuel_percent, *odometer_meters, *coolant_celsius),
        (Some(54.0), Some(14074387.0), Some(88.0))
    );
}

#[test]
fn hos_change_links_driver_and_vehicle() {
    let r = one(Format::Samsara, "samsara/hos_status_change.json");
    let RecordBody::Samsara(e) = &r.body else { panic!() };
    assert!(
        matches!(&e.data, SamsaraData::HosStatusChange { current_status, .. } if current_status == "driving")
    );
    assert!(has_edge(&r, (Label::Driver, "45646"), RelType::Drove, (Label::Vehicle, "281474977075841")));
    assert!(has_edge(&r, (Label::Driver, "45646"), RelType::Reported, (Label::Event, r.id.as_str())));
}

#[test]
fn safety_event_and_geofence_exit() {
    let s = one(Format::Samsara, "samsara/safety_alert.json");
    let RecordBody::Samsara(e) = &s.body else { panic!() };
    assert!(matches!(&e.data, SamsaraData::SafetyEvent { behavior, max_acceleration_g: Some(g), .. }
        if behavior == "HarshBrake" && (*g - 0.52).abs() < 1e-9));

    let g = one(Format::Samsara, "samsara/geofence_exit.json");
    assert_eq!(g.kind, "GeofenceExit");
    assert!(has_edge(&g, (Label::Event, g.id.as_str()), RelType::At, (Label::Facility, "8821")));
    assert_eq!(g.subject().as_deref(), Some("vehicle:281474977075841"));
}

#[test]
fn edi_214_with_two_shipments_is_two_records() {
    let records = parse(&raw(Format::Edi, "edi/214_two_shipments.x12")).unwrap();
    assert_eq!(records.len(), 2);
    let first = &records[0];
    assert_eq!(first.natural_key, "000004711|4711|0001|FXFE");
    assert_eq!(first.id, RecordId::derive(Format::Edi, "000004711|4711|0001|FXFE"));
    assert_eq!(first.occurred_at.to_rfc3339(), "2026-11-20T13:45:00+00:00");
    let RecordBody::Edi(t) = &first.body else { panic!() };
    let EdiContent::ShipmentStatus { pro, bol, statuses, parties, references, .. } = &t.content else {
        panic!()
    };
    assert_eq!((pro.as_deref(), bol.as_deref()), (Some("PRO7731904"), Some("BOL5528113")));
    assert_eq!(references, &vec![("PO".to_string(), "PO-884213".to_string())]);
    assert_eq!(parties.len(), 2);
    assert_eq!(
        (parties[1].city.as_deref(), parties[1].postal_code.as_deref()),
        (Some("MEMPHIS"), Some("38118"))
    );
    let s = &statuses[0];
    assert_eq!(
        (s.status_code.as_str(), s.city.as_deref(), s.equipment_number.as_deref()),
        ("X6", Some("LITTLE ROCK"), Some("TRL55810"))
    );
    assert_eq!((s.weight, s.lading_quantity), (Some(18250.0), Some(22)));
    assert!(has_edge(first, (Label::Carrier, "FXFE"), RelType::Carries, (Label::Shipment, "PRO7731904")));
    assert!(has_edge(
        first,
        (Label::Shipment, "PRO7731904"),
        RelType::HasStatus,
        (Label::Event, first.id.as_str())
    ));
    assert!(has_edge(
        first,
        (Label::Shipment, "PRO7731904"),
        RelType::DeliverTo,
        (Label::Facility, "CN4471")
    ));
    assert_ne!(records[0].id, records[1].id);
}

#[test]
fn edi_210_invoice_amounts() {
    let r = one(Format::Edi, "edi/210_invoice.x12");
    let RecordBody::Edi(t) = &r.body else { panic!() };
    let EdiContent::FreightInvoice {
        invoice_number,
        pro,
        bol,
        amount_due_cents,
        lines,
        total_charge_cents,
        ..
    } = &t.content
    else {
        panic!("{:?}", t.content)
    };
    assert_eq!(invoice_number, "INV90331");
    assert_eq!((pro.as_deref(), bol.as_deref()), (Some("PRO7731904"), Some("BOL5528113")));
    assert_eq!((*amount_due_cents, *total_charge_cents), (Some(48250), Some(48250)));
    assert_eq!(lines.len(), 1);
    assert_eq!(
        (lines[0].description.as_deref(), lines[0].charge_cents),
        (Some("PAPER PRODUCTS"), Some(42887))
    );
}

#[test]
fn edi_204_and_990_headers() {
    let r = one(Format::Edi, "edi/204_load_tender.x12");
    let RecordBody::Edi(t) = &r.body else { panic!() };
    assert!(matches!(&t.content, EdiContent::LoadTender { shipment_id, stops: 2, scac: Some(s), .. }
        if shipment_id == "SHP4410021" && s == "ODFL"));

    // Pipe-separated, newline-terminated, two functional groups.
    let records = parse(&raw(Format::Edi, "edi/990_two_groups.x12")).unwrap();
    assert_eq!(records.len(), 2);
    let actions: Vec<_> = records
        .iter()
        .map(|r| match &r.body {
            RecordBody::Edi(t) => match &t.content {
                EdiContent::TenderResponse { action, .. } => action.clone().unwrap_or_default(),
                other => panic!("{other:?}"),
            },
            _ => panic!(),
        })
        .collect();
    assert_eq!(actions, ["A", "D"]);
    // Same ST02 in two groups: the group control number keeps the ids apart.
    assert_ne!(records[0].id, records[1].id);
}

#[test]
fn bad_segment_count_is_an_envelope_error() {
    let err = parse(&raw(Format::Edi, "edi/214_bad_segment_count.x12")).unwrap_err();
    assert_eq!(err.label(), "edi_envelope");
    assert_eq!(err.to_string(), "EDI envelope error: SE01 says 7 segments, transaction 0001 has 5");
}

#[test]
fn jsonl_lines_parse_or_are_poison_with_reason() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/samples/samsara/mixed.jsonl"),
    )
    .unwrap();
    let results: Vec<_> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let origin = Origin { topic: "t".into(), partition: 0, offset: 0 };
            parse(&RawEvent::new(Format::Samsara, origin, None, l.as_bytes().to_vec()))
        })
        .collect();
    assert_eq!(results.len(), 5);
    assert!(results[0].is_ok() && results[1].is_ok() && results[2].is_ok());
    // No eventId: identity from vehicle + time + kind.
    assert_eq!(
        results[2].as_ref().unwrap()[0].natural_key,
        "281474977075842|2026-11-20T16:01:00+00:00|VehicleLocation"
    );
    assert_eq!(results[3].as_ref().unwrap_err().label(), "invalid_samsara");
    assert_eq!(results[4].as_ref().unwrap_err().label(), "invalid_json");
}

/// The edge's Turvo and Front messages as a member reads them (keyed by the event id or digest).
#[test]
fn a_turvo_shipment_is_the_edi_shipment_of_the_same_reference() {
    let tender = parse(&raw(Format::Edi, "edi/204_load_tender.x12")).unwrap().remove(0);
    let turvo = one(Format::Turvo, "turvo/shipment_status.json");
    assert_eq!(turvo.kind, "SHIPMENT_STATUS_UPDATE");
    assert_eq!(turvo.subject(), tender.subject(), "one cache subject for both");
    let event = (Label::Event, turvo.id.as_str());
    assert!(has_edge(&turvo, (Label::Shipment, "SHP4410021"), RelType::HasStatus, event));
    assert!(has_edge(&tender, (Label::Carrier, "ODFL"), RelType::Carries, (Label::Shipment, "SHP4410021")));
    assert!(turvo.summary().contains("En route to pickup"), "{}", turvo.summary());
}

#[test]
fn a_front_conversation_names_its_carrier_and_contact() {
    let mut message = raw(Format::Front, "front/inbound_message.json");
    message.key = Some("evt_55a1".into());
    let r = parse(&message).unwrap().remove(0);
    assert_eq!((r.kind.as_str(), r.natural_key.as_str()), ("inbound", "evt_55a1"));
    assert_eq!(r.id, RecordId::derive(Format::Front, "evt_55a1"));
    let RecordBody::Webhook(w) = &r.body else { panic!("a webhook record") };
    assert_eq!(w.occurred_at.timestamp(), 1_763_725_200);
    let conversation = (Label::Conversation, "cnv_7yh");
    assert!(has_edge(&r, conversation, RelType::HasStatus, (Label::Event, r.id.as_str())));
    assert!(has_edge(&r, conversation, RelType::Mentions, (Label::Carrier, "ODFL")));
    assert!(has_edge(&r, conversation, RelType::Mentions, (Label::Contact, "dispatch@odfl.example")));
}
