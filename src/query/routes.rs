//! Each intent's route through the stores: typed filters pushed into the
//! store (kind, entity, time window, a box around a radius), the exact cut
//! made here (the radius, lateness), and rank fusion where two retrievers
//! answer the same question.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use serde_json::Value;

use super::answer::{Hit, Route};
use super::filters::{self, Filters, position};
use super::intent::{Entity, Intent, Near, Reading};
use super::{QueryError, QueryStores, Question, Retrieval};
use crate::model::{Label, RecordId};
use crate::pipeline::embed::Embedder;
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
/// The constant of reciprocal-rank fusion (Cormack et al.).
const RRF_K: f64 = 60.0;
/// How much the lexical list's ranks count in a question by meaning's
/// fusion, the vector list's counting 1: a little beside a semantic
/// embedder's vectors, which find what the words do not; more beside the
/// hashing embedder's, which are the question's words again, less precisely
/// (load/query_eval compares weights; load/RESULTS.md has its figures).
pub fn lexical_weight(embedder: &dyn Embedder) -> f64 {
    if embedder.of_words() { 2.0 } else { 0.25 }
}

type Routed = (Vec<Hit>, Vec<Route>);

pub async fn answer(
    stores: &QueryStores,
    question: &Question,
    reading: &Reading,
) -> Result<Routed, QueryError> {
    let end = question.as_of.map(|t| t + Duration::milliseconds(1));
    let base = RecordFilter {
        from: reading.window.map(|w| w.0),
        to: earliest(reading.window.map(|w| w.1), end),
        written_before: question.ingested_before,
        current: true,
        newest_first: true,
        limit: question.k,
        ..RecordFilter::default()
    };
    let k = question.k;
    let filters = &question.filters;
    match &reading.intent {
        Intent::Position { vehicle, at } => {
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
            Ok((hits, vec![route]))
        }
        Intent::LateShipments { scac } => late_shipments(stores, scac.clone(), base, filters).await,
        Intent::Events { kinds, behavior, near } => {
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
            Ok((hits, vec![route]))
        }
        Intent::About { entity } => {
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
            let graph = async {
                match &stores.graph {
                    Some(graph) => related(stores, graph, label, named, &base, filters).await,
                    None => Ok((Vec::new(), Vec::new())),
                }
            };
            let ((exact, r1), (text, r2), (related, mut r3)) = tokio::try_join!(
                read(stores, "exact", &exact, Some(filters)),
                read(stores, "text", &text, Some(filters)),
                graph
            )?;
            let store = stores.records_store;
            let ranked = |rows: Vec<StoredRecord>| rows.into_iter().map(|r| Hit::of(r, store)).collect();
            let mut hits = fuse(
                vec![("exact", 1.0, ranked(exact)), ("text", 1.0, ranked(text)), ("graph", 1.0, related)],
                k,
            );
            // An entity's records read as its history.
            hits.sort_by_key(|h| h.citation.event_time);
            let mut routes = vec![r1, r2];
            routes.append(&mut r3);
            Ok((hits, routes))
        }
        Intent::Semantic { text } => semantic(stores, text, base, filters, question.retrieval).await,
    }
}

fn earliest(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// One store call, timed, with the statement it sent; narrowed by the
/// client's structured filters where given (a read of the answer's records,
/// not a lookup beside them).
async fn read(
    stores: &QueryStores,
    retriever: &'static str,
    filter: &RecordFilter,
    filters: Option<&Filters>,
) -> Result<(Vec<StoredRecord>, Route), QueryError> {
    let started = Instant::now();
    let narrowed = match filters {
        Some(filters) => filters.narrow(filter.clone()),
        None => Some(filter.clone()),
    };
    let Some(filter) = narrowed else {
        let statement = "none: the filters and the question exclude each other".to_string();
        return Ok((
            Vec::new(),
            Route { retriever, store: stores.records_store, statement, rows: 0, millis: 0.0 },
        ));
    };
    let mut rows = stores.records.find_records(&filter).await?;
    if let Some(filters) = filters {
        rows.retain(|r| filters.keeps(&r.body));
    }
    let route = Route {
        retriever,
        store: stores.records_store,
        statement: stores.records.statement(&filter),
        rows: rows.len(),
        millis: started.elapsed().as_secs_f64() * 1e3,
    };
    stores.report(&route, || rows.iter().map(|r| Hit::of(r.clone(), stores.records_store)).collect());
    Ok((rows, route))
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

/// Records by meaning: the nearest vectors and the full-text index's best
/// matches, asked at once, each with the kind and event-time window inside
/// its search, fused by weighted reciprocal rank.
async fn semantic(
    stores: &QueryStores,
    text: &str,
    base: RecordFilter,
    filters: &Filters,
    retrieval: Retrieval,
) -> Result<Routed, QueryError> {
    let vectors = match (&stores.vectors, retrieval) {
        (None, Retrieval::Vector) => {
            return Err(QueryError::BadQuestion(
                "this deployment has no vector store ([stores] vector = \"none\"): ask with retrieval \"lexical\" or \"hybrid\"".into(),
            ));
        }
        (_, Retrieval::Lexical) | (None, _) => None,
        (Some(vectors), _) => Some(vectors),
    };
    let words = words_of(text);
    if words.is_empty() && vectors.is_none() {
        return Err(QueryError::BadQuestion(format!(
            "{text:?} has no structured form (a position, late shipments, events near a place, a PRO or vehicle) \
             and no word a full-text search can look for"
        )));
    }
    let k = base.limit;
    // Each retriever reads deeper than k: the fusion ranks what either found.
    let depth = (k * 4).max(40);
    let nearest = async {
        match vectors {
            Some(vectors) => nearest(stores, vectors, text, &base, filters, depth).await.map(Some),
            None => Ok(None),
        }
    };
    let lexical = async {
        if retrieval == Retrieval::Vector || words.is_empty() {
            return Ok(None);
        }
        let f = RecordFilter { words: words.clone(), limit: depth, ..base.clone() };
        read(stores, "lexical", &f, Some(filters)).await.map(Some)
    };
    let (nearest, lexical) = tokio::try_join!(nearest, lexical)?;
    let mut lists = Vec::new();
    let mut routes = Vec::new();
    if let Some((hits, mut read)) = nearest {
        lists.push(("vector", 1.0, hits));
        routes.append(&mut read);
    }
    if let Some((rows, route)) = lexical {
        let store = stores.records_store;
        lists.push((
            "lexical",
            lexical_weight(stores.embedder.as_ref()),
            rows.into_iter().map(|r| Hit::of(r, store)).collect(),
        ));
        routes.push(route);
    }
    Ok((fuse(lists, k), routes))
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
        retriever: "graph",
        // The graph role's name, as the saga's writes report it.
        store: "graph",
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
        retriever: "vector",
        store: vectors.name(),
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

/// Weighted reciprocal-rank fusion of ranked lists: a record's `fused` score
/// is the sum of weight / (60 + rank) over the lists that found it. Each
/// list's own score is kept where its retriever gave one (a similarity),
/// else its term of the sum; a record found twice is one hit.
pub fn fuse(lists: Vec<(&str, f64, Vec<Hit>)>, k: usize) -> Vec<Hit> {
    let mut merged: BTreeMap<String, Hit> = BTreeMap::new();
    for (retriever, weight, hits) in lists {
        for (rank, hit) in hits.into_iter().enumerate() {
            let score = weight / (RRF_K + rank as f64 + 1.0);
            let own = hit.scores.get(retriever).copied();
            let entry = merged.entry(hit.citation.record_id.clone()).or_insert_with(|| {
                // A hit from an earlier fusion starts this one afresh.
                let mut hit = hit;
                hit.scores.remove("fused");
                hit
            });
            entry.scores.insert(retriever.to_string(), own.unwrap_or(score));
            *entry.scores.entry("fused".into()).or_default() += score;
        }
    }
    let mut hits: Vec<Hit> = merged.into_values().collect();
    hits.sort_by(|a, b| b.scores["fused"].total_cmp(&a.scores["fused"]));
    hits.truncate(k);
    hits
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Origin, RecordId};

    fn hit(id: &str) -> Hit {
        let record = StoredRecord {
            id: RecordId::from_stored(id.into()),
            format: "edi".into(),
            kind: "214".into(),
            natural_key: id.into(),
            occurred_at: Utc::now(),
            written_at: Utc::now(),
            summary: id.into(),
            body: Value::Null,
            origin: Origin { topic: "t".into(), partition: 0, offset: 0 },
        };
        Hit::of(record, "relational")
    }

    #[test]
    fn fusion_ranks_what_both_retrievers_found_first() {
        let fused =
            fuse(vec![("exact", 1.0, vec![hit("a"), hit("b")]), ("text", 1.0, vec![hit("c"), hit("b")])], 2);
        let ids: Vec<&str> = fused.iter().map(|h| h.citation.record_id.as_str()).collect();
        assert_eq!(ids, ["b", "a"]);
        assert!((fused[0].scores["fused"] - 2.0 / 62.0).abs() < 1e-12);
        assert_eq!(fused[0].scores.len(), 3);
    }

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
