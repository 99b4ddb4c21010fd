//! Each intent's route through the stores, part by part (`parts`): typed
//! filters pushed into the store (kind, entity, time window, a box around a
//! radius) and the exact cut made here (the radius, lateness).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use serde_json::Value;

use super::answer::{Hit, Route};
use super::dwell::{self, DwellTally};
use super::filters::{self, Filters, position};
use super::intent::{Entity, Intent, Near, Reading};
use super::parts::{Part, PartAnswer, Ranked, Routed, lexical_weight, merge, parts};
use super::store_call::{earliest, event_window, read};
use super::{QueryError, QueryStores, Question};
use crate::model::{Label, RecordId};
use crate::places::km_between;
use crate::store::{
    EventWindow, GeoBox, GraphReads, RecordFilter, StoredRecord, VectorFilter, VectorStore, words_of,
};

/// Rows a route reads before its exact cut (radius, lateness); `--explain`
/// shows when a route read this many, i.e. when the answer may be partial.
const SCAN_CAP: usize = 5_000;
/// References per statement when a route looks up many shipments at once.
const REFS_PER_STATEMENT: usize = 1_000;
/// Shipments per statement when their 214s and 990s are read (several
/// documents each, under the scan cap).
const SETTLING_REFS_PER_STATEMENT: usize = 200;
/// Every part of the question, asked at once, merged.
pub async fn answer(
    stores: &QueryStores,
    question: &Question,
    reading: &Reading,
) -> Result<Routed, QueryError> {
    let parts = parts(stores, question, reading)?;
    let found = futures::future::try_join_all(
        parts.into_iter().map(|part| answer_part(stores, question, reading, part)),
    )
    .await?;
    Ok(merge(reading, question.k, found))
}

/// One part of the question's answer.
pub async fn answer_part(
    stores: &QueryStores,
    question: &Question,
    reading: &Reading,
    part: Part,
) -> Result<PartAnswer, QueryError> {
    let end = question.as_of.map(|t| t + Duration::milliseconds(1));
    let (from, to) = event_window(question, reading);
    let base = RecordFilter {
        from,
        to,
        written_before: question.ingested_before,
        current: true,
        newest_first: true,
        limit: question.k,
        ..RecordFilter::default()
    };
    let k = question.k;
    let filters = &question.filters;
    match (&reading.intent, part) {
        (Intent::Position { vehicle, at }, Part::Records) => {
            let f = RecordFilter {
                kinds: vec!["VehicleLocation".into()],
                vehicle: Some(vehicle.clone()),
                to: earliest(Some(*at + Duration::milliseconds(1)), end),
                ..base
            };
            let (rows, route) = read(stores, "position", &f, Some(filters)).await?;
            let hits = rows
                .into_iter()
                .map(|r| {
                    let before = (*at - r.occurred_at).num_seconds();
                    Hit::of(r, stores.records_store)
                        .noted(format!("{before} s before {}", at.format("%H:%M:%S")))
                })
                .collect();
            Ok(PartAnswer::one("position", (hits, vec![route])))
        }
        (Intent::LateShipments { scac }, Part::Records) => {
            Ok(PartAnswer::one("late", late_shipments(stores, scac.clone(), base, filters).await?))
        }
        (Intent::Events { kinds, behavior, near }, Part::Records) => {
            let f = RecordFilter {
                kinds: kinds.clone(),
                behavior: behavior.clone(),
                within: near.as_ref().map(geo_box),
                limit: if near.is_some() { SCAN_CAP } else { k },
                ..base
            };
            let (rows, route) = read(stores, "events", &f, Some(filters)).await?;
            let hits = rows
                .into_iter()
                .filter_map(|r| match near {
                    None => Some(Hit::of(r, stores.records_store)),
                    Some(n) => {
                        let km = km_between(position(&r.body)?, (n.latitude, n.longitude));
                        (km <= n.radius_km).then(|| {
                            Hit::of(r, stores.records_store).noted(format!("{km:.1} km from {}", n.place))
                        })
                    }
                })
                .take(k)
                .collect();
            Ok(PartAnswer::one("events", (hits, vec![route])))
        }
        (Intent::About { entity }, part) => {
            let (label, named, exact, text) = match entity {
                Entity::Shipment { reference } => (
                    Label::Shipment,
                    reference,
                    RecordFilter { shipments: vec![reference.clone()], ..base.clone() },
                    RecordFilter { mentions: Some(reference.clone()), ..base.clone() },
                ),
                Entity::Vehicle { vehicle } => (
                    Label::Vehicle,
                    vehicle,
                    RecordFilter { vehicle: Some(vehicle.clone()), ..base.clone() },
                    RecordFilter { mentions: Some(vehicle.clone()), ..base.clone() },
                ),
            };
            match (part, &stores.graph) {
                (Part::Records, _) => {
                    let ((exact, r1), (text, r2)) = tokio::try_join!(
                        read(stores, "exact", &exact, Some(filters)),
                        read(stores, "text", &text, Some(filters)),
                    )?;
                    let store = stores.records_store;
                    let ranked = |retriever: &str, rows: Vec<StoredRecord>| Ranked {
                        retriever: retriever.into(),
                        weight: 1.0,
                        hits: rows.into_iter().map(|r| Hit::of(r, store)).collect(),
                    };
                    Ok(PartAnswer {
                        lists: vec![ranked("exact", exact), ranked("text", text)],
                        routes: vec![r1, r2],
                    })
                }
                (Part::Graph, Some(graph)) => {
                    Ok(PartAnswer::one("graph", related(stores, graph, label, named, &base, filters).await?))
                }
                (part, _) => Err(unasked(part, reading)),
            }
        }
        (Intent::Dwell { scac }, Part::Records) => {
            let mut tally = DwellTally::default();
            let mut routes = Vec::new();
            for slice in dwell::slices_of(question, reading)? {
                routes
                    .extend(dwell::tally_slice(stores, question, scac.as_deref(), slice, &mut tally).await?);
            }
            Ok(PartAnswer::one("dwell", (tally.hits(k), routes)))
        }
        (Intent::Semantic { text }, Part::Vectors) => match &stores.vectors {
            Some(vectors) => {
                Ok(PartAnswer::one("vector", nearest(stores, vectors, text, &base, filters, depth(k)).await?))
            }
            None => Err(unasked(part, reading)),
        },
        (Intent::Semantic { text }, Part::Records) => {
            let f = RecordFilter { words: words_of(text), limit: depth(k), ..base };
            let (rows, route) = read(stores, "lexical", &f, Some(filters)).await?;
            let store = stores.records_store;
            Ok(PartAnswer {
                lists: vec![Ranked {
                    retriever: "lexical".into(),
                    weight: lexical_weight(stores.embedder.as_ref()),
                    hits: rows.into_iter().map(|r| Hit::of(r, store)).collect(),
                }],
                routes: vec![route],
            })
        }
        (_, part) => Err(unasked(part, reading)),
    }
}

/// A part the question's reading does not ask, or this deployment lacks (a
/// worker configured unlike the member that planned the question).
fn unasked(part: Part, reading: &Reading) -> QueryError {
    QueryError::BadQuestion(format!(
        "a {} question has no {part:?} part here (is this worker configured with the same stores as the planner?)",
        reading.intent.name()
    ))
}

/// Each retriever of a question by meaning reads deeper than k: the fusion
/// ranks what either found.
fn depth(k: usize) -> usize {
    (k * 4).max(40)
}

fn geo_box(n: &Near) -> GeoBox {
    filters::geo_box(n.latitude, n.longitude, n.radius_km)
}

fn time_at(body: &Value, pointer: &str) -> Option<DateTime<Utc>> {
    body.pointer(pointer)?.as_str()?.parse().ok()
}

/// Late shipments: deliveries after their appointment, then shipments
/// overdue (the appointment passed, not delivered); at most k.
async fn late_shipments(
    stores: &QueryStores,
    scac: Option<String>,
    base: RecordFilter,
    filters: &Filters,
) -> Result<Routed, QueryError> {
    let k = base.limit;
    let (mut hits, mut routes) = late_deliveries(stores, scac.clone(), base.clone(), filters).await?;
    let (overdue, more) = overdue(stores, scac, base, filters).await?;
    hits.extend(overdue);
    hits.truncate(k);
    routes.extend(more);
    Ok((hits, routes))
}

/// Deliveries (214 D1) after the appointment of their tender (204 G62).
async fn late_deliveries(
    stores: &QueryStores,
    scac: Option<String>,
    base: RecordFilter,
    filters: &Filters,
) -> Result<Routed, QueryError> {
    let k = base.limit;
    let deliveries = RecordFilter {
        kinds: vec!["214".into()],
        scac: scac.clone(),
        status: Some("D1".into()),
        limit: SCAN_CAP,
        ..base.clone()
    };
    let (delivered, mut routes) =
        read(stores, "deliveries", &deliveries, Some(filters)).await.map(|(d, r)| (d, vec![r]))?;
    let pro = |r: &StoredRecord| r.body.pointer("/content/pro").and_then(Value::as_str).map(str::to_string);
    let refs: Vec<String> = delivered.iter().filter_map(pro).collect();
    let mut appointments: BTreeMap<String, DateTime<Utc>> = BTreeMap::new();
    for chunk in refs.chunks(REFS_PER_STATEMENT) {
        // The tender may come before the window: only the as-of bounds hold.
        let tenders = RecordFilter {
            kinds: vec!["204".into()],
            scac: scac.clone(),
            shipments: chunk.to_vec(),
            from: None,
            limit: SCAN_CAP,
            ..base.clone()
        };
        let (rows, route) = read(stores, "tenders", &tenders, None).await?;
        routes.push(route);
        for t in rows {
            let id = t.body.pointer("/content/shipment_id").and_then(Value::as_str).map(str::to_string);
            if let (Some(id), Some(by)) = (id, time_at(&t.body, "/content/deliver_by")) {
                appointments.insert(id, by);
            }
        }
    }
    let hits = delivered
        .into_iter()
        .filter_map(|d| {
            let by = *appointments.get(&pro(&d)?)?;
            let statuses = d.body.pointer("/content/statuses")?.as_array()?;
            let at = statuses
                .iter()
                .rev()
                .find(|s| s["status_code"] == "D1")?
                .get("at")?
                .as_str()?
                .parse::<DateTime<Utc>>()
                .ok()?;
            let late = (at - by).num_minutes();
            (at > by).then(|| {
                let note = format!("late by {late} min (appointment {})", by.format("%Y-%m-%d %H:%M"));
                Hit::of(d, stores.records_store).noted(note)
            })
        })
        .take(k)
        .collect();
    Ok((hits, routes))
}

/// Tenders (204) whose appointment passed inside the window with no delivery
/// (a 214 D1) by its end — or by `as_of`, or now — and no refusal (a 990
/// declining it): shipments overdue, not yet delivered.
async fn overdue(
    stores: &QueryStores,
    scac: Option<String>,
    base: RecordFilter,
    filters: &Filters,
) -> Result<Routed, QueryError> {
    let at = base.to.unwrap_or_else(Utc::now);
    let tenders = RecordFilter {
        kinds: vec!["204".into()],
        scac: scac.clone(),
        // Tendered at any time before the end: the appointment is what the window holds.
        from: None,
        limit: SCAN_CAP,
        ..base.clone()
    };
    let (tenders, route) = read(stores, "tenders due", &tenders, Some(filters)).await?;
    let mut routes = vec![route];
    let due: Vec<(String, DateTime<Utc>, StoredRecord)> = tenders
        .into_iter()
        .filter_map(|t| {
            let pro = t.body.pointer("/content/shipment_id")?.as_str()?.to_string();
            let by = time_at(&t.body, "/content/deliver_by")?;
            (by < at && base.from.is_none_or(|from| by >= from)).then_some((pro, by, t))
        })
        .collect();
    let mut settled = std::collections::BTreeSet::new();
    for chunk in due.chunks(SETTLING_REFS_PER_STATEMENT) {
        let closing = RecordFilter {
            kinds: vec!["214".into(), "990".into()],
            scac: scac.clone(),
            shipments: chunk.iter().map(|(pro, ..)| pro.clone()).collect(),
            from: None,
            limit: SCAN_CAP,
            ..base.clone()
        };
        let (rows, route) = read(stores, "deliveries or refusals", &closing, None).await?;
        routes.push(route);
        for r in rows {
            let content = |key: &str| r.body.pointer(&format!("/content/{key}")).and_then(Value::as_str);
            let statuses = r.body.pointer("/content/statuses").and_then(Value::as_array);
            let closes = match r.kind.as_str() {
                "990" => content("action") == Some("D"),
                _ => statuses.is_some_and(|s| s.iter().any(|s| s["status_code"] == "D1")),
            };
            if let (true, Some(pro)) = (closes, content("pro").or(content("shipment_id"))) {
                settled.insert(pro.to_string());
            }
        }
    }
    let hits = due
        .into_iter()
        .filter(|(pro, ..)| !settled.contains(pro))
        .map(|(_, by, t)| {
            let past = (at - by).num_minutes();
            let note =
                format!("not delivered, {past} min past its appointment ({})", by.format("%Y-%m-%d %H:%M"));
            Hit::of(t, stores.records_store).noted(note)
        })
        .collect();
    Ok((hits, routes))
}

/// The graph's neighbourhood of an entity in the question's window: the
/// events one hop from its node, then two hops through a node that is not
/// an event (a shipment's facilities' arrivals, a vehicle's drivers' other
/// events), read back as records under the question's filters, nearest
/// first, then newest.
async fn related(
    stores: &QueryStores,
    graph: &Arc<dyn GraphReads>,
    label: Label,
    named: &str,
    base: &RecordFilter,
    filters: &Filters,
) -> Result<Routed, QueryError> {
    let started = Instant::now();
    let window = EventWindow { from: base.from, to: base.to };
    let near = graph.events_near(label, named, window, SCAN_CAP).await?;
    let graph_route = Route {
        retriever: "graph".into(),
        // The graph role's name, as the saga's writes report it.
        store: "graph".into(),
        statement: graph.events_near_statement(label),
        rows: near.len(),
        millis: started.elapsed().as_secs_f64() * 1e3,
    };
    stores.report(&graph_route, Vec::new);
    let (mut by_id, route) = records_of(stores, near.iter().map(|(id, _)| id), base, filters).await?;
    let what = label.as_str().to_lowercase();
    let hits = near
        .into_iter()
        .filter_map(|(id, hops)| {
            let via = if hops == 1 { "" } else { " through a neighbour" };
            let note = format!(
                "{hops} hop{} from {what} {named} in the graph{via}",
                if hops == 1 { "" } else { "s" }
            );
            Some(Hit::of(by_id.remove(id.as_str())?, stores.records_store).noted(note))
        })
        .collect();
    Ok((hits, vec![graph_route, route]))
}

/// The `depth` nearest records to the question's vector, then read whole
/// under the question's filters; each hit scored by its similarity.
async fn nearest(
    stores: &QueryStores,
    vectors: &Arc<dyn VectorStore>,
    text: &str,
    base: &RecordFilter,
    filters: &Filters,
    depth: usize,
) -> Result<Routed, QueryError> {
    let started = Instant::now();
    let query = stores.embedder.embed(&[text.to_string()]).await?.pop().unwrap_or_default();
    // Kind and event time are filtered inside the search; more neighbours
    // than asked, as the records' other filters (ingest time) may drop some.
    let Some(narrowed) = filters.narrow(base.clone()) else {
        return Ok((Vec::new(), Vec::new()));
    };
    let inside = VectorFilter { kinds: narrowed.kinds, from: narrowed.from, to: narrowed.to };
    let neighbours = vectors.search(&query, depth, &inside).await?;
    let vector_route = Route {
        retriever: "vector".into(),
        store: vectors.name().into(),
        statement: format!(
            "{depth} nearest of a {}-dimension query vector, kinds {:?}, event time in [{}, {})",
            query.len(),
            inside.kinds,
            inside.from.map_or("-".into(), |t| t.to_rfc3339()),
            inside.to.map_or("-".into(), |t| t.to_rfc3339())
        ),
        rows: neighbours.len(),
        millis: started.elapsed().as_secs_f64() * 1e3,
    };
    stores.report(&vector_route, Vec::new);
    let (mut by_id, route) = records_of(stores, neighbours.iter().map(|(id, _)| id), base, filters).await?;
    let hits = neighbours
        .into_iter()
        .filter_map(|(id, score)| {
            Some(Hit::of(by_id.remove(id.as_str())?, vectors.name()).scored("vector", f64::from(score)))
        })
        .collect();
    Ok((hits, vec![vector_route, route]))
}

/// The records of ids another store found (the graph, the vectors), under
/// the question's filters, by id: those the filters drop are absent.
async fn records_of<'a>(
    stores: &QueryStores,
    ids: impl ExactSizeIterator<Item = &'a RecordId>,
    base: &RecordFilter,
    filters: &Filters,
) -> Result<(BTreeMap<String, StoredRecord>, Route), QueryError> {
    let f = RecordFilter { limit: ids.len(), ids: ids.cloned().collect(), ..base.clone() };
    let (rows, route) = read(stores, "records", &f, Some(filters)).await?;
    Ok((rows.into_iter().map(|r| (r.id.to_string(), r)).collect(), route))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_box_holds_the_whole_radius() {
        let n = Near { place: "DALLAS, TX".into(), latitude: 32.7767, longitude: -96.797, radius_km: 50.0 };
        let b = geo_box(&n);
        for bearing in (0..360).step_by(15) {
            let (dy, dx) = (f64::from(bearing).to_radians().cos(), f64::from(bearing).to_radians().sin());
            let p = (
                n.latitude + dy * 49.0 / 111.2,
                n.longitude + dx * 49.0 / (111.2 * n.latitude.to_radians().cos()),
            );
            assert!(km_between(p, (n.latitude, n.longitude)) < 50.0);
            assert!(
                (b.lat.0..=b.lat.1).contains(&p.0) && (b.lon.0..=b.lon.1).contains(&p.1),
                "{p:?} outside {b:?}"
            );
        }
    }
}
