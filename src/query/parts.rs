//! An answer in parts, one per store (records, vectors, graph), asked at
//! once and merged by one pure function: in process, or as a workflow's
//! activities merged in the workflow (`workflow`). The merge fuses ranked
//! lists by weighted reciprocal rank.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::answer::{Hit, Route};
use super::intent::{Intent, Reading};
use super::{QueryError, QueryStores, Question, Retrieval};
use crate::pipeline::embed::Embedder;
use crate::store::words_of;

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

/// An answer's hits and the store calls that found them.
pub type Routed = (Vec<Hit>, Vec<Route>);

/// The store a part of an answer is read from: each part is one call of
/// its own (in process, a task of the question's; on Temporal, an activity),
/// and [`merge`] makes one answer of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Part {
    /// The relational store: the structured intents, an entity's exact and
    /// full-text matches, the full-text half of a question by meaning.
    Records,
    /// The nearest vectors of a question by meaning.
    Vectors,
    /// An entity's neighbourhood in the graph.
    Graph,
}

/// One retriever's hits, best first, and its weight in the fusion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ranked {
    pub retriever: String,
    pub weight: f64,
    pub hits: Vec<Hit>,
}

/// What one part found: its ranked lists and the store calls it made.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PartAnswer {
    pub lists: Vec<Ranked>,
    pub routes: Vec<Route>,
}

impl PartAnswer {
    pub(super) fn one(retriever: &str, (hits, routes): Routed) -> Self {
        PartAnswer { lists: vec![Ranked { retriever: retriever.into(), weight: 1.0, hits }], routes }
    }
}

/// The parts a question read as `reading` asks, in the order they are
/// merged; an error where this deployment cannot answer it.
pub fn parts(stores: &QueryStores, question: &Question, reading: &Reading) -> Result<Vec<Part>, QueryError> {
    Ok(match &reading.intent {
        Intent::Position { .. }
        | Intent::LateShipments { .. }
        | Intent::Events { .. }
        | Intent::Dwell { .. } => vec![Part::Records],
        Intent::About { .. } if stores.graph.is_some() => vec![Part::Records, Part::Graph],
        Intent::About { .. } => vec![Part::Records],
        Intent::Semantic { text } => {
            let vectors = match (stores.vectors.is_some(), question.retrieval) {
                (false, Retrieval::Vector) => {
                    return Err(QueryError::BadQuestion(
                        "this deployment has no vector store ([stores] vector = \"none\"): ask with retrieval \"lexical\" or \"hybrid\"".into(),
                    ));
                }
                (_, Retrieval::Lexical) | (false, _) => false,
                (true, _) => true,
            };
            let words = !words_of(text).is_empty();
            if !words && !vectors {
                return Err(QueryError::BadQuestion(format!(
                    "{text:?} has no structured form (a position, late shipments, events near a place, a PRO or vehicle) \
                     and no word a full-text search can look for"
                )));
            }
            let lexical = words && question.retrieval != Retrieval::Vector;
            [(vectors, Part::Vectors), (lexical, Part::Records)]
                .into_iter()
                .filter_map(|(on, p)| on.then_some(p))
                .collect()
        }
    })
}

/// Summaries sharing this share of their words, of records of one kind
/// within [`SAME_MOMENT`], are one fact: by meaning, only the best ranked of
/// them is answered.
const NEAR_DUPLICATE: f64 = 0.9;
const SAME_MOMENT: chrono::Duration = chrono::Duration::minutes(1);

/// One answer of the parts' lists: an entity's and a question by meaning's
/// fused by weighted reciprocal rank (an entity's read as its history, oldest
/// first; a question by meaning's thinned of near-duplicates), a structured
/// intent's one list as it is; at most `k` hits.
pub fn merge(reading: &Reading, k: usize, found: Vec<PartAnswer>) -> Routed {
    let mut lists = Vec::new();
    let mut routes = Vec::new();
    for part in found {
        lists.extend(part.lists);
        routes.extend(part.routes);
    }
    // The lists' hits move into the fusion (called once, on one arm): no copy of them.
    let mut fused = |k| {
        fuse(
            lists.iter_mut().map(|l| (l.retriever.as_str(), l.weight, std::mem::take(&mut l.hits))).collect(),
            k,
        )
    };
    let hits = match &reading.intent {
        Intent::About { .. } => {
            let mut hits = fused(k);
            hits.sort_by_key(|h| h.citation.event_time);
            hits
        }
        Intent::Semantic { .. } => distinct(fused(usize::MAX), k),
        _ => {
            let mut hits: Vec<Hit> = lists.into_iter().flat_map(|l| l.hits).collect();
            hits.truncate(k);
            hits
        }
    };
    (hits, routes)
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

/// The first `k` hits of a ranked list that are not near-duplicates of a
/// better ranked one: of the same kind, within [`SAME_MOMENT`] of its event
/// time, its summary sharing at least [`NEAR_DUPLICATE`] of its words
/// (Jaccard). The same fact under two record ids (a webhook retried with a
/// new id, a document sent again) answers once and leaves room for another;
/// a driver's shift ending on two days, or invoices of two PROs, stay two.
pub fn distinct(hits: Vec<Hit>, k: usize) -> Vec<Hit> {
    let words = |h: &Hit| -> BTreeSet<String> {
        h.summary
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .collect()
    };
    let mut kept: Vec<(Hit, BTreeSet<String>)> = Vec::new();
    for hit in hits {
        if kept.len() == k {
            break;
        }
        let mine = words(&hit);
        let alike = |(other, theirs): &(Hit, BTreeSet<String>)| {
            let (a, b) = (&hit.citation, &other.citation);
            let shared = mine.intersection(theirs).count();
            let union = (mine.len() + theirs.len() - shared).max(1);
            a.kind == b.kind
                && (a.event_time - b.event_time).abs() <= SAME_MOMENT
                && shared as f64 / union as f64 >= NEAR_DUPLICATE
        };
        if !kept.iter().any(alike) {
            kept.push((hit, mine));
        }
    }
    kept.into_iter().map(|(hit, _)| hit).collect()
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use serde_json::Value;

    use super::*;
    use crate::model::{Origin, RecordId};
    use crate::store::StoredRecord;

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
    fn a_near_duplicate_answers_once_and_leaves_room_for_another() {
        let said = |id: &str, summary: &str| Hit { summary: summary.into(), ..hit(id) };
        let ranked = vec![
            said("a", "edi 990 from SAIA tender response shipment PRO25106295 action A accepted"),
            said("b", "edi 990 from SAIA tender response shipment PRO25106295 action A accepted"),
            said("c", "edi 990 from SAIA tender response shipment PRO25106296 action A accepted"),
            said("d", "edi 210 from SAIA freight invoice INV1 pro PRO25106295 amount due 668.40 USD"),
        ];
        let ids = |hits: &[Hit]| hits.iter().map(|h| h.citation.record_id.clone()).collect::<Vec<_>>();
        // b says what a says; c names another shipment, a fact of its own.
        assert_eq!(ids(&distinct(ranked.clone(), 3)), ["a", "c", "d"]);
        assert_eq!(ids(&distinct(ranked.clone(), 1)), ["a"]);
        // The same words a day later are another event.
        let mut later = ranked;
        later[1].citation.event_time += chrono::Duration::days(1);
        assert_eq!(ids(&distinct(later, 3)), ["a", "b", "c"]);
    }
}
