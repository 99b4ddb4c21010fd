//! The records read back for the query room: a typed filter turned into one
//! parameterised statement for SQLite or PostgreSQL. No value of a question is
//! ever pasted into the SQL text; only the column expressions below are.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{Database, Encode, QueryBuilder, Type};

use crate::model::{Origin, RecordId};

/// One record as the relational store holds it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredRecord {
    pub id: RecordId,
    pub format: String,
    pub kind: String,
    pub natural_key: String,
    pub occurred_at: DateTime<Utc>,
    pub written_at: DateTime<Utc>,
    pub summary: String,
    pub body: serde_json::Value,
    pub origin: Origin,
}

/// A latitude/longitude box (the store's coarse cut of a radius).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GeoBox {
    pub lat: (f64, f64),
    pub lon: (f64, f64),
}

/// What to read: every field set narrows the result.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecordFilter {
    /// Only these records (the vector route's hits); empty means any.
    pub ids: Vec<RecordId>,
    /// Record kinds (`VehicleLocation`, `214`, ...); empty means all.
    pub kinds: Vec<String>,
    /// A vehicle by its id or its name (any case).
    pub vehicle: Option<String>,
    /// A driver by their id or name (any case): Samsara records naming them.
    pub driver: Option<String>,
    /// A facility: a geofence's id or name, or the name of a party of an EDI
    /// document (any case).
    pub facility: Option<String>,
    /// Shipments by their PRO, BOL or shipment id (EDI); empty means any.
    pub shipments: Vec<String>,
    /// A carrier's SCAC (EDI).
    pub scac: Option<String>,
    /// The last status code of a 214 (`D1` delivered).
    pub status: Option<String>,
    /// A Samsara safety behaviour label (`HarshBrake`).
    pub behavior: Option<String>,
    /// Text the record's summary contains as whole words (any case): "Truck 1"
    /// is not in "Truck 10", nor PRO4685909 in PRO46859098.
    pub mentions: Option<String>,
    /// Any of these words (lower-case letters and digits, stemmed by the
    /// store) in the summary or the body's text: the lexical retriever.
    /// Set, the records come best match first (the summary's words weigh
    /// more), not in time order.
    pub words: Vec<String>,
    /// Event time in `[from, to)`.
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// Leave out the marks of what a source took back (a Plaid removal
    /// `BankTransactionRemoved`, a QuickBooks deletion `Qb<Entity>Deleted`,
    /// which replace the record they take back): the current state.
    pub current: bool,
    /// Only what was written before this instant (`as_of` on ingest time).
    pub written_before: Option<DateTime<Utc>>,
    /// Only records whose position falls in this box.
    pub within: Option<GeoBox>,
    /// Newest event time first (else oldest first).
    pub newest_first: bool,
    pub limit: usize,
}

/// The columns read, in this order: id, format, kind, natural_key,
/// occurred_at, written_at, summary, body, topic, partition, offset.
pub(super) type RecordRow<T> = (String, String, String, String, T, T, String, String, String, i32, i64);

impl StoredRecord {
    pub(super) fn from_row<T>(row: RecordRow<T>, time: impl Fn(T) -> DateTime<Utc>) -> Self {
        let (id, format, kind, natural_key, occurred_at, written_at, summary, body, topic, partition, offset) =
            row;
        StoredRecord {
            id: RecordId::from_stored(id),
            format,
            kind,
            natural_key,
            occurred_at: time(occurred_at),
            written_at: time(written_at),
            summary,
            body: serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body)),
            origin: Origin { topic, partition, offset },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// The JSON text at `path` in the record's body.
    fn text(self, path: &[&str]) -> String {
        match self {
            Dialect::Sqlite => format!("json_extract(body, '$.{}')", path.join(".")),
            Dialect::Postgres => format!("(body #>> '{{{}}}')", path.join(",")),
        }
    }

    fn number(self, path: &[&str]) -> String {
        match self {
            Dialect::Sqlite => self.text(path),
            Dialect::Postgres => format!("{}::float8", self.text(path)),
        }
    }

    /// The status code of a 214's last status detail.
    fn last_status(self) -> &'static str {
        match self {
            Dialect::Sqlite => "json_extract(body, '$.content.statuses[#-1].status_code')",
            Dialect::Postgres => "(body #>> '{content,statuses,-1,status_code}')",
        }
    }

    /// Whether a party of the EDI document has a name, lower-cased, equal to
    /// the lower-cased bound value that follows (closed by the caller's `))`).
    fn party_named(self) -> &'static str {
        match self {
            Dialect::Sqlite => {
                "EXISTS (SELECT 1 FROM json_each(body, '$.content.parties') \
                 WHERE lower(json_extract(value, '$.name')) = lower("
            }
            Dialect::Postgres => {
                "EXISTS (SELECT 1 FROM jsonb_array_elements(CASE WHEN jsonb_typeof(body #> '{content,parties}') = 'array' \
                 THEN body #> '{content,parties}' ELSE '[]'::jsonb END) AS party WHERE lower(party ->> 'name') = lower("
            }
        }
    }

    /// A bound RFC 3339 text as a time: SQLite keeps times as RFC 3339 text
    /// in UTC, which orders as time does.
    fn bound_time(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => "::timestamptz",
        }
    }
}

/// `SELECT <columns> FROM records WHERE <filter> ORDER BY ... LIMIT ...`.
pub(super) fn select_records<DB>(columns: &str, f: &RecordFilter, d: Dialect) -> QueryBuilder<DB>
where
    DB: Database,
    <DB as Database>::Arguments: Default,
    for<'t> String: Encode<'t, DB> + Type<DB>,
    for<'t> f64: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
{
    let mut q = QueryBuilder::<DB>::new(format!("SELECT {columns} FROM records"));
    let ranked = !f.words.is_empty();
    if ranked {
        // The words are bound as one query string of the store's full-text
        // syntax (see `any_word`).
        match d {
            Dialect::Sqlite => q
                .push(" JOIN (SELECT rowid AS hit, bm25(records_words, 2.0, 1.0) AS rank FROM records_words WHERE records_words MATCH ")
                .push_bind(any_word(&f.words, d))
                .push(") m ON m.hit = records.rowid"),
            Dialect::Postgres => q
                .push(", to_tsquery('english', ")
                .push_bind(any_word(&f.words, d))
                .push(") AS query WHERE words @@ query"),
        };
    }
    q.push(if ranked && d == Dialect::Postgres { "" } else { " WHERE TRUE" });
    for (column, values) in [
        ("id", f.ids.iter().map(RecordId::as_str).collect::<Vec<_>>()),
        ("kind", f.kinds.iter().map(String::as_str).collect()),
    ] {
        if !values.is_empty() {
            q.push(format!(" AND {column} IN ("));
            let mut list = q.separated(", ");
            for v in values {
                list.push_bind(v.to_string());
            }
            q.push(")");
        }
    }
    for (named, v) in [("vehicle", &f.vehicle), ("driver", &f.driver)] {
        if let Some(v) = v {
            q.push(format!(" AND ({} = ", d.text(&["data", named, "id"]))).push_bind(v.clone());
            q.push(format!(" OR lower({}) = lower(", d.text(&["data", named, "name"])));
            q.push_bind(v.clone()).push("))");
        }
    }
    if let Some(v) = &f.facility {
        q.push(format!(" AND ({} = ", d.text(&["data", "facility_id"]))).push_bind(v.clone());
        q.push(format!(" OR lower({}) = lower(", d.text(&["data", "facility_name"])));
        q.push_bind(v.clone()).push(format!(") OR {}", d.party_named()));
        q.push_bind(v.clone()).push(")))");
    }
    if !f.shipments.is_empty() {
        let mut any = " AND (";
        for field in ["pro", "bol", "shipment_id"] {
            q.push(format!("{any}{} IN (", d.text(&["content", field])));
            let mut list = q.separated(", ");
            for s in &f.shipments {
                list.push_bind(s.clone());
            }
            q.push(")");
            any = " OR ";
        }
        q.push(")");
    }
    if let Some(status) = &f.status {
        q.push(format!(" AND {} = ", d.last_status())).push_bind(status.clone());
    }
    if let Some(scac) = &f.scac {
        q.push(format!(" AND {} = ", d.text(&["content", "scac"]))).push_bind(scac.clone());
    }
    if let Some(b) = &f.behavior {
        q.push(format!(" AND {} = ", d.text(&["data", "behavior"]))).push_bind(b.clone());
    }
    if let Some(text) = &f.mentions {
        // The pattern is built here from the text, escaped, and bound: SQLite's
        // GLOB has character classes but no regular expressions.
        match d {
            Dialect::Sqlite => {
                q.push(" AND (' ' || lower(summary) || ' ') GLOB ").push_bind(glob_words(text))
            }
            Dialect::Postgres => {
                // A reference (it has a digit, never a stop word) is looked up in
                // the full-text index first; the pattern then keeps whole words.
                if text.chars().any(|c| c.is_ascii_digit()) {
                    q.push(" AND words @@ phraseto_tsquery('english', ").push_bind(text.clone()).push(")");
                }
                q.push(" AND lower(summary) ~ ").push_bind(regex_words(text))
            }
        };
    }
    if f.current {
        q.push(" AND kind NOT LIKE '%Removed' AND kind NOT LIKE '%Deleted'");
    }
    let bounds =
        [(f.from, "occurred_at", ">="), (f.to, "occurred_at", "<"), (f.written_before, "written_at", "<")];
    for (at, column, op) in bounds {
        if let Some(at) = at {
            q.push(format!(" AND {column} {op} ")).push_bind(at.to_rfc3339()).push(d.bound_time());
        }
    }
    if let Some(b) = f.within {
        let (lat, lon) =
            (d.number(&["data", "position", "latitude"]), d.number(&["data", "position", "longitude"]));
        q.push(format!(" AND {lat} BETWEEN ")).push_bind(b.lat.0).push(" AND ").push_bind(b.lat.1);
        q.push(format!(" AND {lon} BETWEEN ")).push_bind(b.lon.0).push(" AND ").push_bind(b.lon.1);
    }
    let order = match (ranked, d, f.newest_first) {
        (true, Dialect::Sqlite, _) => "m.rank, id",
        (true, Dialect::Postgres, _) => "ts_rank(words, query) DESC, id",
        (false, _, true) => "occurred_at DESC, id",
        (false, _, false) => "occurred_at ASC, id",
    };
    q.push(format!(" ORDER BY {order} LIMIT ")).push_bind(f.limit as i64);
    q
}

/// Each vehicle's (of `vehicles`, or every vehicle's) newest record of each
/// of `kinds` (event time, then id): rows of kind, vehicle id and record id,
/// what the graph keeps as a vehicle's state under its policy (`verify`
/// compares the two).
pub(super) fn newest_readings<DB>(
    kinds: &[String],
    vehicles: Option<&[String]>,
    d: Dialect,
) -> QueryBuilder<DB>
where
    DB: Database,
    <DB as Database>::Arguments: Default,
    for<'t> String: Encode<'t, DB> + Type<DB>,
{
    let vehicle = d.text(&["data", "vehicle", "id"]);
    let mut q = QueryBuilder::<DB>::new(format!(
        "SELECT kind, vehicle, id FROM (SELECT kind, {vehicle} AS vehicle, id, row_number() OVER \
         (PARTITION BY kind, {vehicle} ORDER BY occurred_at DESC, id DESC) AS newest FROM records WHERE "
    ));
    readings_of(&mut q, kinds, &vehicle);
    if let Some(vehicles) = vehicles {
        in_list(&mut q, &format!(" AND {vehicle}"), vehicles);
    }
    q.push(") readings WHERE newest = 1");
    q
}

/// The ids of the records of `kinds` (of those `among`, when given).
pub(super) fn ids_of_kinds<DB>(kinds: &[String], among: Option<&[RecordId]>) -> QueryBuilder<DB>
where
    DB: Database,
    <DB as Database>::Arguments: Default,
    for<'t> String: Encode<'t, DB> + Type<DB>,
{
    let mut q = QueryBuilder::<DB>::new("SELECT id FROM records WHERE TRUE");
    in_list(&mut q, " AND kind", kinds);
    if let Some(among) = among {
        let ids: Vec<String> = among.iter().map(|i| i.as_str().to_owned()).collect();
        in_list(&mut q, " AND id", &ids);
    }
    q
}

/// The vehicles of the records `ids` of `kinds`.
pub(super) fn vehicles_of<DB>(ids: &[RecordId], kinds: &[String], d: Dialect) -> QueryBuilder<DB>
where
    DB: Database,
    <DB as Database>::Arguments: Default,
    for<'t> String: Encode<'t, DB> + Type<DB>,
{
    let vehicle = d.text(&["data", "vehicle", "id"]);
    let mut q = QueryBuilder::<DB>::new(format!("SELECT DISTINCT {vehicle} FROM records WHERE "));
    readings_of(&mut q, kinds, &vehicle);
    let ids: Vec<String> = ids.iter().map(|i| i.as_str().to_owned()).collect();
    in_list(&mut q, " AND id", &ids);
    q
}

fn readings_of<DB>(q: &mut QueryBuilder<DB>, kinds: &[String], vehicle: &str)
where
    DB: Database,
    for<'t> String: Encode<'t, DB> + Type<DB>,
{
    q.push(format!("{vehicle} IS NOT NULL"));
    in_list(q, " AND kind", kinds);
}

/// `<column> IN (<values bound>)`; no values select nothing.
fn in_list<DB>(q: &mut QueryBuilder<DB>, column: &str, values: &[String])
where
    DB: Database,
    for<'t> String: Encode<'t, DB> + Type<DB>,
{
    if values.is_empty() {
        q.push(" AND FALSE");
        return;
    }
    q.push(format!("{column} IN ("));
    let mut list = q.separated(", ");
    for v in values {
        list.push_bind(v.clone());
    }
    q.push(")");
}

/// `words` as one query of the store's full-text syntax matching any of
/// them, each quoted whole (its quotes, and PostgreSQL's backslashes,
/// doubled): whatever a word holds, it is one term, never an operator.
fn any_word(words: &[String], d: Dialect) -> String {
    let quoted = |w: &String| match d {
        Dialect::Sqlite => format!("\"{}\"", w.replace('"', "\"\"")),
        Dialect::Postgres => format!("'{}'", w.replace('\\', "\\\\").replace('\'', "''")),
    };
    let or = if d == Dialect::Sqlite { " OR " } else { " | " };
    words.iter().map(quoted).collect::<Vec<_>>().join(or)
}

/// Common English words a full-text search gives no weight (PostgreSQL's
/// `english` configuration drops these and more; FTS5 has no stop list).
const STOP_WORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "by", "did", "do", "for", "from", "had", "has", "have", "in",
    "is", "it", "its", "of", "on", "or", "that", "the", "their", "there", "this", "to", "was", "were",
    "what", "when", "where", "which", "who", "with",
];

/// The words of a question as the lexical retriever reads them: lower-case
/// runs of letters and digits, the common ones dropped, each once.
pub fn words_of(text: &str) -> Vec<String> {
    let mut words: Vec<String> = Vec::new();
    for word in text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
        let word = word.to_lowercase();
        if !STOP_WORDS.contains(&word.as_str()) && !words.contains(&word) {
            words.push(word);
        }
    }
    words
}

/// A GLOB pattern matching `text` as whole words in a lower-cased summary
/// padded with a space at each end (GLOB's own `*`, `?` and `[` escaped).
fn glob_words(text: &str) -> String {
    let escaped: String = text
        .to_lowercase()
        .chars()
        .map(|c| match c {
            '*' | '?' | '[' => format!("[{c}]"),
            c => c.to_string(),
        })
        .collect();
    format!("*[^a-z0-9]{escaped}[^a-z0-9]*")
}

/// A PostgreSQL regular expression matching `text` as whole words in a
/// lower-cased summary (its metacharacters escaped).
fn regex_words(text: &str) -> String {
    let mut escaped = String::new();
    for c in text.to_lowercase().chars() {
        if "\\^$.|?*+()[]{}".contains(c) {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    format!("(^|[^[:alnum:]]){escaped}([^[:alnum:]]|$)")
}
