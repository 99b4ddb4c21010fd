//! The graph policy (`[graph] state_kinds`) on both graph stores, the
//! embedded one and the real Neo4j: pings become their vehicle's newest state
//! and visits to location cells, not Event nodes; a late or re-delivered ping
//! never moves the state back nor adds to a visit's count; other records stay
//! nodes; and `verify` proves the state against the relational store's pings.

mod support;

use apex_ingest::config::{Config, GRAPH_STATE_KINDS, GraphConfig};
use apex_ingest::metrics::Metrics;
use apex_ingest::model::samsara::{LatLon, SamsaraData, SamsaraEvent, VehicleRef};
use apex_ingest::model::{Format, Origin, Record, RecordBody, RecordId};
use apex_ingest::pipeline::ProcessedRecord;
use apex_ingest::pipeline::extract::extract;
use apex_ingest::saga::SagaWriter;
use apex_ingest::saga::writer::SagaSettings;
use apex_ingest::store::graph_policy::{GraphPolicy, HeldState};
use apex_ingest::store::neo4j::Neo4jStore;
use apex_ingest::store::sqlite_graph::SqliteGraphStore;
use apex_ingest::store::{BatchStore, GraphReads};
use apex_ingest::verify::{Expectations, check_ids};
use chrono::{DateTime, TimeZone, Utc};
use support::unique;

/// Minute `m` of a fixed day.
fn at(m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 4, 10, m, 0).unwrap()
}

fn record(vehicle: &str, kind: &str, minute: u32, data: SamsaraData) -> ProcessedRecord {
    let occurred_at = at(minute);
    let natural_key = format!("{vehicle}/{kind}/{minute}");
    let record = Record {
        id: RecordId::derive(Format::Samsara, &natural_key),
        format: Format::Samsara,
        kind: kind.to_owned(),
        natural_key,
        occurred_at,
        origin: Origin { topic: "samsara.telemetry.v1".into(), partition: 0, offset: minute as i64 },
        body: RecordBody::Samsara(SamsaraEvent {
            event_id: None,
            event_time: occurred_at,
            event_type: kind.to_owned(),
            org_id: None,
            data,
        }),
    };
    let summary = record.summary();
    ProcessedRecord { extraction: extract(&record, &summary), record, summary, embedding: vec![0.5; 384] }
}

fn vehicle_ref(vehicle: &str) -> VehicleRef {
    VehicleRef { id: vehicle.to_owned(), name: Some(format!("Truck {vehicle}")) }
}

/// A location ping; Dallas (`9vg4…`) below minute 30, Houston (`9vk1…`) after.
fn ping(vehicle: &str, minute: u32) -> ProcessedRecord {
    let (latitude, longitude) = if minute < 30 { (32.7767, -96.797) } else { (29.7604, -95.3698) };
    let position = LatLon { latitude: latitude + f64::from(minute) * 1e-5, longitude };
    let data = SamsaraData::VehicleLocation {
        vehicle: vehicle_ref(vehicle),
        time: at(minute),
        position,
        heading_degrees: Some(90.0),
        speed_mph: Some(f64::from(minute)),
        place: None,
    };
    record(vehicle, "VehicleLocation", minute, data)
}

fn stats(vehicle: &str, minute: u32) -> ProcessedRecord {
    let data = SamsaraData::VehicleStats {
        vehicle: vehicle_ref(vehicle),
        engine_state: Some("On".into()),
        fuel_percent: Some(100.0 - f64::from(minute)),
        odometer_meters: Some(1000.0 * f64::from(minute)),
        coolant_celsius: None,
    };
    record(vehicle, "VehicleStats", minute, data)
}

fn harsh_brake(vehicle: &str, minute: u32) -> ProcessedRecord {
    let data = SamsaraData::SafetyEvent {
        vehicle: vehicle_ref(vehicle),
        driver: None,
        behavior: "HarshBrake".into(),
        severity: Some("high".into()),
        max_acceleration_g: Some(0.6),
        position: Some(LatLon { latitude: 32.7767, longitude: -96.797 }),
    };
    record(vehicle, "SafetyEvent", minute, data)
}

fn cell(r: &ProcessedRecord) -> String {
    r.extraction
        .entities
        .iter()
        .find(|e| e.key.label == apex_ingest::model::Label::Location)
        .unwrap()
        .key
        .key
        .clone()
}

fn refs(rows: &[ProcessedRecord]) -> Vec<&ProcessedRecord> {
    rows.iter().collect()
}

fn ids(rows: &[&ProcessedRecord]) -> Vec<RecordId> {
    rows.iter().map(|r| r.record.id.clone()).collect()
}

/// The whole story on one graph store: two batches with pings out of order, a
/// re-delivery and a late ping.
/// A location ping that reports no speed.
fn without_speed(vehicle: &str, minute: u32) -> ProcessedRecord {
    let mut r = ping(vehicle, minute);
    if let RecordBody::Samsara(SamsaraEvent {
        data: SamsaraData::VehicleLocation { speed_mph, .. }, ..
    }) = &mut r.record.body
    {
        *speed_mph = None;
    }
    r
}

async fn pings_become_state<G: BatchStore + GraphReads>(graph: &G) {
    let v = unique("truck");
    let first = vec![ping(&v, 12), ping(&v, 10), ping(&v, 40), stats(&v, 11), harsh_brake(&v, 13)];
    graph.upsert_batch(&refs(&first)).await.unwrap();
    // Minute 20 comes late (older than the newest, 40) and minute 40 again; minute 41 is new.
    let second = vec![ping(&v, 20), ping(&v, 40), ping(&v, 41), stats(&v, 5), stats(&v, 15)];
    graph.upsert_batch(&refs(&second)).await.unwrap();
    graph.upsert_batch(&refs(&second)).await.unwrap();

    // Only the safety event is an Event node.
    let all: Vec<&ProcessedRecord> = first.iter().chain(&second).collect();
    let held = graph.present(&ids(&all)).await.unwrap();
    assert_eq!(held.into_iter().collect::<Vec<_>>(), [first[4].record.id.clone()]);

    // The state is the newest of each kind, whatever order the pings came in.
    let kinds = ["VehicleLocation".to_owned(), "VehicleStats".to_owned()];
    let mut states: Vec<HeldState> =
        graph.vehicle_states(&kinds).await.unwrap().into_iter().filter(|s| s.vehicle == v).collect();
    states.sort();
    assert_eq!(
        states,
        [
            HeldState { vehicle: v.clone(), kind: kinds[0].clone(), record: second[2].record.id.clone() },
            HeldState { vehicle: v.clone(), kind: kinds[1].clone(), record: second[4].record.id.clone() },
        ]
    );

    // Dallas: minutes 10 and 12 in the first batch; 20 came after 12 and is
    // counted; Houston: 40, then 41 (40 again adds nothing, nor does the
    // second delivery of the batch).
    let (dallas, houston) = (cell(&first[0]), cell(&first[2]));
    let visits = graph.visits(&v).await.unwrap();
    assert_eq!(visits.len(), 2, "{visits:?}");
    let houston_visit = &visits[0];
    assert_eq!((houston_visit.cell.as_str(), houston_visit.count), (houston.as_str(), 2), "{visits:?}");
    assert!(houston_visit.first_seen.starts_with("2026-03-04T10:40:00"), "{visits:?}");
    assert!(houston_visit.last_seen.starts_with("2026-03-04T10:41:00"), "{visits:?}");
    let dallas_visit = &visits[1];
    assert_eq!((dallas_visit.cell.as_str(), dallas_visit.count), (dallas.as_str(), 3), "{visits:?}");
    assert!(dallas_visit.first_seen.starts_with("2026-03-04T10:10:00"), "{visits:?}");
    assert!(dallas_visit.last_seen.starts_with("2026-03-04T10:20:00"), "{visits:?}");

    // A ping older than its cell's last seen, delivered now, is not counted.
    graph.upsert_batch(&[&ping(&v, 11)]).await.unwrap();
    assert_eq!(graph.visits(&v).await.unwrap()[1].count, 3);
}

#[tokio::test]
async fn the_embedded_graph_keeps_pings_as_vehicle_state() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("graph.db");
    let graph = SqliteGraphStore::open(&file).await.unwrap();
    pings_become_state(&graph).await;
    // A newer ping without a speed takes the older speed away.
    let v = unique("truck");
    graph.upsert_batch(&[&ping(&v, 35)]).await.unwrap();
    graph.upsert_batch(&[&without_speed(&v, 36)]).await.unwrap();
    let db = sqlx::SqlitePool::connect(&format!("sqlite://{}", file.display())).await.unwrap();
    let (speed, heading): (Option<String>, Option<String>) = sqlx::query_as(
        "SELECT json_extract(props, '$.speed_mph'), json_extract(props, '$.heading_degrees') \
         FROM nodes WHERE label = 'Vehicle' AND key = ?",
    )
    .bind(&v)
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!((speed, heading.as_deref()), (None, Some("90")), "the older speed stays on the vehicle");
}

#[tokio::test]
async fn neo4j_keeps_pings_as_vehicle_state() {
    let neo = Neo4jStore::connect(&support::neo4j()).await.unwrap();
    pings_become_state(&neo).await;
    // The vehicle's node carries the newest position's properties.
    let v = unique("truck");
    neo.upsert_batch(&[&ping(&v, 35), &ping(&v, 31)]).await.unwrap();
    let newest = neo
        .count(
            "MATCH (v:Vehicle {key: $k}) WHERE v.speed_mph = '35' AND v.name = $name RETURN count(v) AS n",
            vec![("k", v.clone().into()), ("name", format!("Truck {v}").into())],
        )
        .await
        .unwrap();
    assert_eq!(newest, 1);
    // A newer ping without a speed takes the older speed away.
    neo.upsert_batch(&[&without_speed(&v, 36)]).await.unwrap();
    let speeds = neo
        .count(
            "MATCH (v:Vehicle {key: $k}) WHERE v.speed_mph IS NULL AND v.heading_degrees = '90' RETURN count(v) AS n",
            vec![("k", v.clone().into())],
        )
        .await
        .unwrap();
    assert_eq!(speeds, 1, "the older speed stays on the vehicle");
}

#[tokio::test]
async fn with_no_state_kinds_every_ping_is_a_node() {
    let dir = tempfile::tempdir().unwrap();
    let graph = SqliteGraphStore::open(&dir.path().join("graph.db")).await.unwrap().with_policy(no_policy());
    let v = unique("truck");
    let rows = vec![ping(&v, 1), stats(&v, 2)];
    graph.upsert_batch(&refs(&rows)).await.unwrap();
    assert_eq!(graph.present(&ids(&refs(&rows))).await.unwrap().len(), 2);
    assert!(graph.visits(&v).await.unwrap().is_empty());
}

fn no_policy() -> GraphPolicy {
    GraphPolicy::of(&GraphConfig { state_kinds: Vec::new() })
}

/// `verify` over the real stores (PostgreSQL, Neo4j, Redis) and the embedded
/// ones: clean after a write; a newer ping the graph never got is reported as
/// missing from the graph; a state kind the expectations do not name is
/// reported as Event nodes missing.
async fn verify_proves_the_state(config: Config) {
    assert_eq!(config.graph.state_kinds, GRAPH_STATE_KINDS.map(String::from), "pings are state by default");
    let stores = &apex_ingest::app::open_stores(&config).await.unwrap();
    let state = Expectations::of(&config);
    let v = unique("truck");
    let rows = vec![ping(&v, 3), ping(&v, 1), stats(&v, 2), harsh_brake(&v, 4)];
    let writer = SagaWriter::new(stores, Metrics::new(), SagaSettings::from(&Config::default().saga));
    writer.write(&unique("batch"), &rows, &[]).await.unwrap();
    let all = ids(&refs(&rows));
    let diff = check_ids(stores, &all, &state).await.unwrap();
    assert!(diff.is_clean(), "{:?}", diff.missing);
    assert!(diff.states_checked >= 2);

    let no_state = Expectations { graph_state: Vec::new(), ..Expectations::of(&config) };
    let diff = check_ids(stores, &all, &no_state).await.unwrap();
    assert_eq!(diff.missing["graph"].len(), 3, "the pings, as nodes: {:?}", diff.missing);

    let lost = ping(&v, 9);
    stores.relational.upsert_batch(&[&lost]).await.unwrap();
    let diff = check_ids(stores, &all, &state).await.unwrap();
    assert_eq!(diff.missing["graph"], std::slice::from_ref(&lost.record.id));
    assert!(diff.missing["relational"].is_empty());
}

#[tokio::test]
async fn verify_proves_the_embedded_graph_state() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.stores.data_dir = dir.path().to_path_buf();
    verify_proves_the_state(config).await;
}

#[tokio::test]
async fn verify_proves_the_neo4j_state_against_postgres() {
    verify_proves_the_state(support::real_stores_config(&unique("apex-test"))).await;
}
