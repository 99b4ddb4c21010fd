//! The query room's quality over a generated fleet whose ground truth the
//! generator writes (its truth file, not computed by the code under test):
//!
//!     scripts/model && cargo run --release --example query_eval -- [--vehicles 8] [--days 2] [--misses]
//!
//! Builds the world twice into embedded stores (pings given no vector, as a
//! deployment on MiniLM would run): once embedded by the hashing embedder,
//! once by MiniLM. Asks every question of the set on both and prints
//! recall@10, MRR and nDCG@10 per intent (binary relevance), the "about"
//! intent also per single retriever (exact, text) against their fusion, the
//! questions by meaning per single retriever (vector, lexical: the
//! full-text index, the same on both worlds) against their hybrid fusion.
//!
//! Relevance is judged on each hit by what the truth says (a shipment's PRO
//! and lateness, a safety event's id and distance to a hub, a facility's
//! visits and mean dwell for a carrier, a record kind
//! and its words for questions by meaning), never by the route's statement.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::Context;
use apex_ingest::app;
use apex_ingest::config::{Config, EmbedKind, SourceKind};
use apex_ingest::metrics::Metrics;
use apex_ingest::query::{self, Answer, Hit, QueryStores, Question, Retrieval};
use apex_ingest::store::{RecordFilter, StoredRecord};
use chrono::{DateTime, Duration, Utc};
use clap::Parser;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

const UNTIL: &str = "2026-11-20T06:00:00Z";
const K: usize = 10;
/// The lexical list's weights tried in the fusion beside the route's own.
const LEXICAL_WEIGHTS: [f64; 4] = [0.25, 0.5, 1.0, 2.0];

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 8)]
    vehicles: usize,
    #[arg(long, default_value_t = 2.0)]
    days: f64,
    /// Print each question whose top 10 misses something or starts with a miss.
    #[arg(long)]
    misses: bool,
    /// The MiniLM model directory (`scripts/model` prints it).
    #[arg(long, default_value = ".state/models/all-MiniLM-L6-v2")]
    model_dir: std::path::PathBuf,
}

/// What makes a hit an answer to a question.
type Judge = Box<dyn Fn(&Hit) -> bool>;
/// What makes a stored record an answer to a question by meaning.
type RecordJudge = Box<dyn Fn(&StoredRecord) -> bool>;

struct Case {
    intent: &'static str,
    /// What the scores are reported under: the intent, or for a question by
    /// meaning whether it is paraphrased or in the records' own words.
    group: &'static str,
    text: String,
    judge: Judge,
    /// How many records in the stores answer it (the recall denominator).
    relevant: usize,
}

/// A world's stores and its truth.
struct World {
    stores: QueryStores,
    truth: Value,
    /// Every record, for counting what answers a question by meaning.
    records: Vec<StoredRecord>,
}

async fn world(args: &Args, dir: &Path, embed: EmbedKind) -> anyhow::Result<World> {
    let mut config = Config::default();
    config.source.kind = SourceKind::Generator;
    config.source.events = 0;
    config.source.vehicles = args.vehicles;
    config.source.days = args.days;
    config.source.until = UNTIL.into();
    config.source.seed = 29;
    config.source.poison_fraction = 0.0;
    config.source.truth = dir.join("truth.json");
    config.stores.data_dir = dir.to_path_buf();
    config.embed.kind = embed;
    config.embed.model_dir = args.model_dir.clone();
    config.embed.skip_kinds = vec!["VehicleLocation".into(), "VehicleStats".into()];
    config.metrics.listen = String::new();
    let metrics = Metrics::new();
    let stores = app::open_stores(&config).await?;
    let shutdown = CancellationToken::new();
    let orchestrator = app::direct_over(&config, &stores, metrics.clone(), &shutdown)?;
    let source = app::build_source(&config, metrics.clone())?;
    app::run_pipeline(&config, source, orchestrator, metrics, shutdown, |_| {}).await?;
    let truth: Value = serde_json::from_slice(&std::fs::read(dir.join("truth.json"))?)?;
    let records =
        stores.relational.find_records(&RecordFilter { limit: 10_000_000, ..Default::default() }).await?;
    let stores = QueryStores::over(&stores, app::build_embedder(&config)?);
    Ok(World { stores, truth, records })
}

fn time(v: &Value) -> DateTime<Utc> {
    v.as_str().and_then(|s| s.parse().ok()).unwrap_or_default()
}

fn text<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// The questions, each with its judge, from the truth and the records.
fn cases(w: &World) -> Vec<Case> {
    let until: DateTime<Utc> = UNTIL.parse().expect("a time");
    let mut cases = Vec::new();
    let count = |judge: &dyn Fn(&StoredRecord) -> bool| w.records.iter().filter(|r| judge(r)).count();

    // Position: pings of the truck in the minute before the instant.
    for trip in w.truth["trips"].as_array().into_iter().flatten().take(20) {
        let (id, name) = (text(trip, "/truck_id").to_owned(), text(trip, "/truck_name").to_owned());
        let Some(s) = trip["stretches"].as_array().and_then(|s| s.iter().find(|s| s["duty"] == "driving"))
        else {
            continue;
        };
        let at = time(&s["start"]) + (time(&s["end"]) - time(&s["start"])) / 2;
        let (from, id2) = (at - Duration::seconds(60), id.clone());
        let judge = move |r: &StoredRecord| {
            r.kind == "VehicleLocation"
                && text(&r.body, "/data/vehicle/id") == id2
                && r.occurred_at > from
                && r.occurred_at <= at
        };
        let relevant = count(&judge);
        cases.push(Case {
            intent: "position",
            group: "position",
            text: format!("where was {name} at {}", at.to_rfc3339()),
            judge: Box::new(move |h| judge_record(h, &judge)),
            relevant,
        });
    }

    // Late shipments: the truth's late deliveries and the shipments overdue
    // (appointment past, not delivered) at the end, per carrier and in all.
    let shipments: Vec<&Value> = w.truth["shipments"].as_array().into_iter().flatten().collect();
    let late = |scac: Option<&str>| -> Vec<String> {
        let delivered = |s: &Value| !s["delivered_at"].is_null() && time(&s["delivered_at"]) <= until;
        shipments
            .iter()
            .filter(|s| scac.is_none_or(|c| s["scac"] == c))
            .filter(|s| {
                let late = delivered(s) && !s["late_by_minutes"].is_null();
                late || (!delivered(s) && time(&s["appointment"]) < until)
            })
            // Tendered before the world began: its 204, and so its
            // appointment, was never sent; the memory cannot know it late.
            .filter(|s| time(&s["tendered_at"]) >= time(&w.truth["from"]))
            .map(|s| text(s, "/pro").to_owned())
            .collect()
    };
    let mut scacs: Vec<&str> = shipments.iter().map(|s| text(s, "/scac")).collect();
    scacs.sort_unstable();
    scacs.dedup();
    for scac in scacs.into_iter().map(Some).chain([None]) {
        let pros = late(scac);
        let relevant = pros.len();
        let question = match scac {
            Some(c) => format!("which of carrier {c}'s shipments are late"),
            None => "which shipments are late".into(),
        };
        // A late delivery's 214, or an overdue shipment's 204.
        let judge = move |h: &Hit| match h.citation.kind.as_str() {
            "214" => pros.iter().any(|p| text(&h.body, "/content/pro") == p),
            "204" => pros.iter().any(|p| text(&h.body, "/content/shipment_id") == p),
            _ => false,
        };
        cases.push(Case {
            intent: "late_shipments",
            group: "late_shipments",
            text: question,
            judge: Box::new(judge),
            relevant,
        });
    }

    // Events of a behaviour within 150 km of a hub: every such event the
    // truth has within that distance of the hub (not only those it is nearest).
    let events: Vec<&Value> = w.truth["safety_events"].as_array().into_iter().flatten().collect();
    let hubs: BTreeMap<String, (f64, f64)> = w.truth["hubs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|h| {
            (
                format!("{}, {}", text(h, "/city"), text(h, "/state")),
                (h["latitude"].as_f64().unwrap_or(0.0), h["longitude"].as_f64().unwrap_or(0.0)),
            )
        })
        .collect();
    let mut asked: Vec<(String, String)> = events
        .iter()
        .filter(|e| e["nearest_hub_km"].as_f64().unwrap_or(f64::MAX) <= 150.0)
        .map(|e| (text(e, "/behavior").to_owned(), text(e, "/nearest_hub").to_owned()))
        .collect();
    asked.sort();
    asked.dedup();
    for (behavior, hub) in asked.into_iter().take(20) {
        let Some(&at) = hubs.get(&hub) else { continue };
        let ids: Vec<String> = events
            .iter()
            .filter(|e| text(e, "/behavior") == behavior)
            .filter(|e| {
                km(at, (e["latitude"].as_f64().unwrap_or(0.0), e["longitude"].as_f64().unwrap_or(0.0)))
                    <= 150.0
            })
            .map(|e| text(e, "/event_id").to_owned())
            .collect();
        // Other words than the tests use for the same behaviours.
        let words = match behavior.as_str() {
            "HarshBrake" => "hard braking",
            "HarshAcceleration" => "harsh accelerations",
            "HarshTurn" => "harsh cornering",
            "Speeding" => "trucks speeding",
            _ => "tailgating",
        };
        let city = hub.split(',').next().unwrap_or(&hub).to_lowercase();
        let relevant = ids.len();
        let judge =
            move |h: &Hit| h.citation.source_ids.get("samsara_event_id").is_some_and(|id| ids.contains(id));
        cases.push(Case {
            intent: "events",
            group: "events",
            text: format!("{words} within 150 km of {city} in the last 30 days"),
            judge: Box::new(judge),
            relevant,
        });
    }

    // About a PRO: every EDI document naming it.
    for s in shipments.iter().filter(|s| time(&s["tendered_at"]) >= time(&w.truth["from"])).take(20) {
        let pro = text(s, "/pro").to_owned();
        let names = move |r: &StoredRecord| {
            ["/content/pro", "/content/shipment_id", "/content/bol"].iter().any(|p| text(&r.body, p) == pro)
        };
        let relevant = count(&names);
        cases.push(Case {
            intent: "about",
            group: "about",
            text: format!("everything about {}", text(s, "/pro")),
            judge: Box::new(move |h| judge_record(h, &names)),
            relevant,
        });
    }

    // Dwell per facility, a carrier at a time: a facility is an answer when
    // its visits and mean minutes are the truth's (the 214s say minutes).
    let scacs: BTreeSet<&str> = shipments.iter().map(|s| text(s, "/scac")).collect();
    for scac in scacs {
        let mut visits: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for s in shipments.iter().filter(|s| text(s, "/scac") == scac) {
            for (party, stop) in [("/shipper", "pickup"), ("/consignee", "delivery")] {
                if let Some(minutes) = s[format!("{stop}_dwell_minutes")].as_f64() {
                    visits.entry(format!("{} ({stop})", text(s, party))).or_default().push(minutes);
                }
            }
        }
        let relevant = visits.len();
        let judge = move |h: &Hit| {
            let Some(m) = &h.measured else { return false };
            visits.get(&m.group).is_some_and(|minutes| {
                let mean = minutes.iter().sum::<f64>() / minutes.len() as f64;
                m.values["visits"] == minutes.len() as f64 && (m.values["mean_minutes"] - mean).abs() < 1.0
            })
        };
        cases.push(Case {
            intent: "dwell",
            group: "dwell",
            text: format!("dwell time per facility for carrier {scac} in the last 30 days"),
            judge: Box::new(judge),
            relevant,
        });
    }

    // By meaning: paraphrases sharing few or no words with the summaries.
    // Judged on the records' own fields, not on the summaries' wording.
    let kind_is = |kind: &'static str| move |r: &StoredRecord| r.kind == kind;
    let data_is = |kind: &'static str, field: &'static str, value: &'static str| {
        move |r: &StoredRecord| r.kind == kind && text(&r.body, &format!("/data/{field}")) == value
    };
    let last_status = |code: &'static str| {
        move |r: &StoredRecord| {
            let statuses = r.body.pointer("/content/statuses").and_then(Value::as_array);
            r.kind == "214" && statuses.and_then(|s| s.last()).is_some_and(|s| s["status_code"] == code)
        }
    };
    let tender_action = |code: &'static str| {
        move |r: &StoredRecord| r.kind == "990" && text(&r.body, "/content/action") == code
    };
    let meaning: Vec<(&str, RecordJudge)> = vec![
        ("carrier accepted the load", Box::new(tender_action("A"))),
        ("the carrier said yes to the tender", Box::new(tender_action("A"))),
        ("bill for transportation charges", Box::new(kind_is("210"))),
        ("how much do we owe for freight", Box::new(kind_is("210"))),
        ("new load offered to a carrier", Box::new(kind_is("204"))),
        ("shipment handed to a trucking company", Box::new(kind_is("204"))),
        ("driver went off duty", Box::new(data_is("HosStatusChange", "current_status", "offDuty"))),
        ("driver ended the shift", Box::new(data_is("HosStatusChange", "current_status", "offDuty"))),
        ("driver started driving", Box::new(data_is("HosStatusChange", "current_status", "driving"))),
        (
            "driver began hours of service on duty",
            Box::new(data_is("HosStatusChange", "current_status", "onDuty")),
        ),
        ("truck stopped suddenly", Box::new(data_is("SafetyEvent", "behavior", "HarshBrake"))),
        ("hard stop on the highway", Box::new(data_is("SafetyEvent", "behavior", "HarshBrake"))),
        ("truck sped off too quickly", Box::new(data_is("SafetyEvent", "behavior", "HarshAcceleration"))),
        ("sharp cornering by a driver", Box::new(data_is("SafetyEvent", "behavior", "HarshTurn"))),
        ("too close to the vehicle ahead", Box::new(data_is("SafetyEvent", "behavior", "FollowingDistance"))),
        ("freight was delivered to the consignee", Box::new(last_status("D1"))),
        ("the load has been picked up", Box::new(last_status("AF"))),
        ("truck is on its way", Box::new(last_status("X6"))),
        ("truck left the distribution center", Box::new(kind_is("GeofenceExit"))),
        ("vehicle drove out of the yard", Box::new(kind_is("GeofenceExit"))),
    ];
    for (question, judge) in meaning {
        let relevant = count(&judge);
        cases.push(Case {
            intent: "semantic",
            group: "semantic, paraphrased",
            text: question.into(),
            judge: Box::new(move |h| judge_record(h, &judge)),
            relevant,
        });
    }

    // By meaning, in the records' own words: names, numbers, places and
    // status phrases an operator copies from a document (some picked from
    // the stored records), judged on the records' fields.
    let first = |kind: &str, pointer: &str| {
        w.records
            .iter()
            .find(|r| r.kind == kind)
            .map(|r| text(&r.body, pointer).to_owned())
            .unwrap_or_default()
    };
    let party = |kind: &'static str, role: &'static str, name: &'static str| {
        move |r: &StoredRecord| {
            let parties = r.body.pointer("/content/parties").and_then(Value::as_array);
            r.kind == kind
                && parties.is_some_and(|ps| ps.iter().any(|p| p["role"] == role && p["name"] == name))
        }
    };
    let field_is = |kind: &'static str, pointer: &'static str, value: String| {
        move |r: &StoredRecord| r.kind == kind && text(&r.body, pointer) == value
    };
    let driver = first("HosStatusChange", "/data/driver/name");
    let invoice = first("210", "/content/invoice_number");
    let trailer = first("214", "/content/statuses/0/equipment_number");
    let trailer_judge = {
        let trailer = trailer.clone();
        move |r: &StoredRecord| {
            let statuses = r.body.pointer("/content/statuses").and_then(Value::as_array);
            r.kind == "214"
                && statuses.is_some_and(|s| s.iter().any(|s| s["equipment_number"] == trailer.as_str()))
        }
    };
    let status_at = |code: &'static str, city: &'static str| {
        move |r: &StoredRecord| {
            let last = r.body.pointer("/content/statuses").and_then(Value::as_array).and_then(|s| s.last());
            r.kind == "214" && last.is_some_and(|s| s["status_code"] == code && s["city"] == city)
        }
    };
    let delayed = |r: &StoredRecord| {
        let last = r.body.pointer("/content/statuses").and_then(Value::as_array).and_then(|s| s.last());
        r.kind == "214" && last.is_some_and(|s| s["status_code"] == "SD" && s["reason_code"] == "AJ")
    };
    let words: Vec<(String, RecordJudge)> = vec![
        ("freight invoices for PIEDMONT RETAIL".into(), Box::new(party("210", "CN", "PIEDMONT RETAIL"))),
        ("OZARK FOODS load tenders".into(), Box::new(party("204", "SH", "OZARK FOODS"))),
        (driver.clone(), Box::new(field_is("HosStatusChange", "/data/driver/name", driver.clone()))),
        (format!("invoice {invoice}"), Box::new(field_is("210", "/content/invoice_number", invoice.clone()))),
        (format!("trailer {trailer}"), Box::new(trailer_judge)),
        ("X3 pick-up location ST LOUIS MO".into(), Box::new(status_at("X3", "ST LOUIS"))),
        ("shipment delayed other carrier related".into(), Box::new(delayed)),
        (
            "exit LOUISVILLE DC".into(),
            Box::new(field_is("GeofenceExit", "/data/facility_name", "LOUISVILLE DC".into())),
        ),
        (
            "tender response action A accepted by EXLA".into(),
            Box::new(move |r: &StoredRecord| {
                tender_action("A")(r) && text(&r.body, "/content/scac") == "EXLA"
            }),
        ),
        (
            "GENERAL FREIGHT charges from SAIA".into(),
            Box::new(field_is("210", "/content/scac", "SAIA".into())),
        ),
    ];
    for (question, judge) in words {
        let relevant = count(&judge);
        cases.push(Case {
            intent: "semantic",
            group: "semantic, records' words",
            text: question,
            judge: Box::new(move |h| judge_record(h, &judge)),
            relevant,
        });
    }
    cases
}

/// Great-circle kilometres (haversine), written here so the judge does not
/// borrow the distance of the code it judges.
fn km(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (la1, la2) = (a.0.to_radians(), b.0.to_radians());
    let (dla, dlo) = ((b.0 - a.0).to_radians(), (b.1 - a.1).to_radians());
    let h = (dla / 2.0).sin().powi(2) + la1.cos() * la2.cos() * (dlo / 2.0).sin().powi(2);
    2.0 * 6371.0 * h.sqrt().asin()
}

/// A hit judged as the stored record it cites.
fn judge_record(h: &Hit, judge: &dyn Fn(&StoredRecord) -> bool) -> bool {
    let record = StoredRecord {
        id: apex_ingest::model::RecordId::from_stored(h.citation.record_id.clone()),
        format: String::new(),
        kind: h.citation.kind.clone(),
        natural_key: String::new(),
        occurred_at: h.citation.event_time,
        written_at: h.citation.ingest_time,
        summary: h.summary.clone(),
        body: h.body.clone(),
        origin: h.citation.origin.clone(),
    };
    judge(&record)
}

#[derive(Default, Clone, Copy)]
struct Scores {
    questions: usize,
    recall: f64,
    mrr: f64,
    ndcg: f64,
}

impl Scores {
    fn add(&mut self, judged: &[bool], relevant: usize) {
        let top: Vec<bool> = judged.iter().copied().take(K).collect();
        let found = top.iter().filter(|r| **r).count();
        let ideal = relevant.min(K);
        self.questions += 1;
        if ideal == 0 {
            // Nothing answers it: an empty answer is perfect.
            let clean = if found == 0 { 1.0 } else { 0.0 };
            self.recall += clean;
            self.mrr += clean;
            self.ndcg += clean;
            return;
        }
        self.recall += found as f64 / ideal as f64;
        self.mrr += top.iter().position(|r| *r).map_or(0.0, |p| 1.0 / (p as f64 + 1.0));
        let dcg: f64 =
            top.iter().enumerate().filter(|(_, r)| **r).map(|(i, _)| 1.0 / (i as f64 + 2.0).log2()).sum();
        let idcg: f64 = (0..ideal).map(|i| 1.0 / (i as f64 + 2.0).log2()).sum();
        self.ndcg += dcg / idcg;
    }

    fn line(&self) -> String {
        let n = self.questions.max(1) as f64;
        format!(
            "{:>3} questions  recall@10 {:.3}  MRR {:.3}  nDCG@10 {:.3}",
            self.questions,
            self.recall / n,
            self.mrr / n,
            self.ndcg / n
        )
    }
}

async fn ask(w: &World, text: &str, k: usize, retrieval: Retrieval) -> anyhow::Result<Answer> {
    let q = Question {
        text: text.into(),
        as_of: Some(UNTIL.parse()?),
        ingested_before: None,
        k,
        filters: Default::default(),
        retrieval,
    };
    query::ask(&w.stores, &q).await.with_context(|| format!("{text:?}"))
}

/// The hits one retriever ranked, by its own score (the about route's lists).
fn by_retriever(answer: &Answer, retriever: &str) -> Vec<Hit> {
    let mut hits: Vec<Hit> =
        answer.hits.iter().filter(|h| h.scores.contains_key(retriever)).cloned().collect();
    hits.sort_by(|a, b| b.scores[retriever].total_cmp(&a.scores[retriever]));
    hits
}

async fn evaluate(name: &str, w: &World, misses: bool) -> anyhow::Result<BTreeMap<String, Scores>> {
    let mut scores: BTreeMap<String, Scores> = BTreeMap::new();
    for case in cases(w) {
        // The about route's fusion is reordered into time order; its
        // retrievers' own lists come from all of its hits.
        let k = if case.intent == "about" { 1000 } else { K };
        let answer = ask(w, &case.text, k, Retrieval::Hybrid).await?;
        let read = answer.reading.intent.name();
        let judge = |hits: &[Hit]| hits.iter().map(|h| (case.judge)(h)).collect::<Vec<bool>>();
        if case.intent == "about" {
            for retriever in ["exact", "text", "graph", "fused"] {
                let hits = by_retriever(&answer, retriever);
                scores.entry(format!("about ({retriever})")).or_default().add(&judge(&hits), case.relevant);
            }
        } else {
            let judged = judge(&answer.hits);
            let found = judged.iter().take(K).filter(|j| **j).count();
            if misses && (found < case.relevant.min(K) || judged.first() == Some(&false)) {
                println!(
                    "  [{name}] {:?}: {found} of {} found, top 10 judged {judged:?}",
                    case.text, case.relevant
                );
            }
            let group = if case.intent == "semantic" {
                format!("{} (hybrid)", case.group)
            } else {
                case.group.into()
            };
            scores.entry(group).or_default().add(&judged, case.relevant);
        }
        if case.intent == "semantic" {
            // Each retriever alone, as deep as the fusion reads it; then the
            // two fused by other weights of the lexical list than the route's.
            let depth = 4 * K;
            let vector = ask(w, &case.text, depth, Retrieval::Vector).await?.hits;
            let lexical = ask(w, &case.text, depth, Retrieval::Lexical).await?.hits;
            let ids = |hits: &[Hit]| hits.iter().map(|h| h.citation.record_id.clone()).collect::<Vec<_>>();
            // The route's merge: fused, then thinned of near-duplicates.
            let merged = |weight| {
                let lists = vec![("vector", 1.0, vector.clone()), ("lexical", weight, lexical.clone())];
                query::distinct(query::fuse(lists, usize::MAX), K)
            };
            let route = merged(query::lexical_weight(w.stores.embedder.as_ref()));
            // (A question read as another intent is answered by that route.)
            anyhow::ensure!(
                read != "semantic" || ids(&route) == ids(&answer.hits),
                "{:?}: the fusion here is not the route's",
                case.text
            );
            for (list, name) in [(&vector, "vector"), (&lexical, "lexical")] {
                scores
                    .entry(format!("{} ({name})", case.group))
                    .or_default()
                    .add(&judge(&list[..K.min(list.len())]), case.relevant);
            }
            for weight in LEXICAL_WEIGHTS {
                let fused = merged(weight);
                scores
                    .entry(format!("{} (lexical x{weight})", case.group))
                    .or_default()
                    .add(&judge(&fused), case.relevant);
            }
        }
        if read != case.intent {
            println!("  [{name}] {:?} was read as {read}", case.text);
        }
    }
    Ok(scores)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut results = Vec::new();
    for (name, kind) in [("hashing", EmbedKind::Hashing), ("minilm", EmbedKind::Minilm)] {
        let dir = tempfile::tempdir()?;
        let started = std::time::Instant::now();
        let w = world(&args, dir.path(), kind).await?;
        println!(
            "{name}: world of {} records built in {:.1} s",
            w.records.len(),
            started.elapsed().as_secs_f64()
        );
        results.push((name, evaluate(name, &w, args.misses).await?));
    }
    println!("\n{:<22} {:<9} scores", "intent", "embedder");
    let intents: Vec<String> = results[0].1.keys().cloned().collect();
    for intent in intents {
        for (name, scores) in &results {
            println!("{intent:<22} {name:<9} {}", scores[&intent].line());
        }
    }
    Ok(())
}
