//! Neo4j store (graph role) over Bolt with neo4rs: per batch one
//! `UNWIND $rows … MERGE` per node label and one per relationship type (and
//! end-point labels), all in one transaction. Uniqueness constraints on
//! `key` per label are created at start-up, which also index the MERGEs.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use neo4rs::{BoltType, ConfigBuilder, Graph, query};
use secrecy::ExposeSecret;

use super::graph_policy::{GraphBatch, GraphPolicy, HeldState, HeldVisit, record_key, version_key};
use super::{BatchStore, EventWindow, GraphReads, StoreError};
use crate::config::Neo4jConfig;
use crate::model::{Label, RecordId, RelType};
use crate::pipeline::ProcessedRecord;

const NAME: &str = "graph";
/// The write statements keep their first plan. Their plans are unique-index
/// seeks under the key constraints whatever the counts, but a graph growing
/// from empty makes Neo4j's statistics diverge, and replanning the dozen
/// statements every few seconds took ~15 % of its CPU (load/RESULTS.md).
const KEEP_PLAN: &str = "CYPHER replan=skip";

pub struct Neo4jStore {
    graph: Graph,
    policy: GraphPolicy,
}

fn err(e: neo4rs::Error) -> StoreError {
    // Connection-level failures are outages; anything else (a bad query) is not.
    let transient = match &e {
        neo4rs::Error::IOError { .. }
        | neo4rs::Error::ConnectionError
        | neo4rs::Error::IncompleteBoltExchange => true,
        neo4rs::Error::Neo4j(n) => n.kind() == neo4rs::Neo4jErrorKind::Transient,
        _ => false,
    };
    StoreError { store: NAME, message: e.to_string(), transient }
}

impl Neo4jStore {
    /// Connects as `[neo4j]` says and makes sure of the key constraints. Any
    /// failure names the server and the cause (never the password) and
    /// comes within `connect_timeout`.
    pub async fn connect(config: &Neo4jConfig) -> Result<Self, StoreError> {
        let address = config.uri.split_once("://").map_or(config.uri.as_str(), |(_, rest)| rest);
        let failed = |message: String| StoreError {
            store: NAME,
            message: format!("connecting to Neo4j at {address}: {message}"),
            transient: true,
        };
        let password = StoreError::secret(NAME, &config.password, "neo4j.password")?;
        super::name_tls_provider();
        let mut builder = ConfigBuilder::new()
            .uri(&config.uri)
            .user(&config.user)
            .password(password.as_ref().map_or("", |p| p.expose_secret()))
            .connection_timeout(config.connect_timeout);
        if !config.client_cert_file.as_os_str().is_empty() {
            check_pem(&config.client_key_file, "PRIVATE KEY", "neo4j.client_key_file")?;
            check_pem(&config.client_cert_file, "CERTIFICATE", "neo4j.client_cert_file")?;
            let ca = (!config.ca_file.as_os_str().is_empty()).then_some(&config.ca_file);
            builder =
                builder.with_mutual_tls_validation(ca, &config.client_cert_file, &config.client_key_file);
        } else if !config.ca_file.as_os_str().is_empty() {
            check_pem(&config.ca_file, "CERTIFICATE", "neo4j.ca_file")?;
            builder = builder.with_client_certificate(&config.ca_file);
        }
        let graph = Graph::connect(builder.build().map_err(err)?).map_err(|e| failed(e.to_string()))?;
        // The first statement opens the first connection: TLS and login happen here.
        let first = async {
            for label in Label::ALL {
                let l = label.as_str();
                graph
                    .run(query(&format!(
                        "CREATE CONSTRAINT apex_{l}_key IF NOT EXISTS FOR (n:{l}) REQUIRE n.key IS UNIQUE"
                    )))
                    .await?;
            }
            Ok::<_, neo4rs::Error>(())
        };
        match tokio::time::timeout(config.connect_timeout, first).await {
            Ok(Ok(())) => Ok(Neo4jStore { graph, policy: GraphPolicy::default() }),
            Ok(Err(e @ neo4rs::Error::IOError { .. })) if !cause(&e).contains("certificate") => {
                // A server that drops the connection at once most often expects the other protocol.
                let hint = if config.uses_tls() {
                    "is the server plaintext? bolt:// or neo4j://"
                } else {
                    "does the server require TLS? bolt+s:// or neo4j+s://"
                };
                Err(failed(format!("{} ({hint})", cause(&e))))
            }
            Ok(Err(e)) => Err(failed(cause(&e))),
            Err(_) => Err(failed(format!(
                "no answer within {:?} (a plaintext bolt:// URI at a TLS-only server, or the reverse?)",
                config.connect_timeout
            ))),
        }
    }

    /// The store writing under `policy` (by default a node per record).
    pub fn with_policy(self, policy: GraphPolicy) -> Self {
        Neo4jStore { policy, ..self }
    }

    async fn keys(&self, q: neo4rs::Query) -> Result<Vec<RecordId>, StoreError> {
        let mut rows = self.graph.execute(q).await.map_err(err)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().await.map_err(err)? {
            let key: String = row.get("key").map_err(|e| StoreError {
                store: NAME,
                message: e.to_string(),
                transient: false,
            })?;
            out.push(RecordId::from_stored(key));
        }
        Ok(out)
    }

    /// Runs a read query returning one integer column `n`.
    pub async fn count(&self, cypher: &str, params: Vec<(&str, BoltType)>) -> Result<i64, StoreError> {
        let mut q = query(cypher);
        for (k, v) in params {
            q = q.param(k, v);
        }
        let mut rows = self.graph.execute(q).await.map_err(err)?;
        let row = rows.next().await.map_err(err)?.ok_or_else(|| StoreError {
            store: NAME,
            message: format!("no row from {cypher}"),
            transient: false,
        })?;
        row.get::<i64>("n").map_err(|e| StoreError { store: NAME, message: e.to_string(), transient: false })
    }
}

/// The error with its sources (the TLS or login cause sits below "connection error").
fn cause(e: &neo4rs::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        source = s.source();
    }
    text
}

/// A PEM file that can be read and holds `marker` (the driver panics on a key file without a key).
fn check_pem(path: &std::path::Path, marker: &str, key: &str) -> Result<(), StoreError> {
    let problem = match std::fs::read_to_string(path) {
        Ok(text) if text.contains(marker) => return Ok(()),
        Ok(_) => format!("holds no PEM {marker}"),
        Err(e) => format!("cannot be read: {e}"),
    };
    Err(StoreError { store: NAME, message: format!("{key} {}: {problem}", path.display()), transient: false })
}

fn map(pairs: impl IntoIterator<Item = (&'static str, BoltType)>) -> BoltType {
    pairs.into_iter().collect::<HashMap<&str, BoltType>>().into()
}

#[async_trait]
impl BatchStore for Neo4jStore {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn upsert_batch(&self, rows: &[&ProcessedRecord]) -> Result<(), StoreError> {
        let batch = GraphBatch::of(rows, &self.policy);
        let mut by_label: BTreeMap<Label, Vec<BoltType>> = BTreeMap::new();
        for (k, props) in batch.nodes {
            let props: HashMap<String, BoltType> = props.into_iter().map(|(k, v)| (k, v.into())).collect();
            by_label.entry(k.label).or_default().push(map([("key", k.key.into()), ("props", props.into())]));
        }
        let mut by_rel: BTreeMap<(Label, RelType, Label), Vec<BoltType>> = BTreeMap::new();
        for e in batch.edges {
            by_rel
                .entry((e.from.label, e.rel, e.to.label))
                .or_default()
                .push(map([("from", e.from.key.into()), ("to", e.to.key.into())]));
        }
        let mut queries = Vec::new();
        for (label, rows) in by_label {
            let l = label.as_str();
            queries.push(
                query(&format!(
                    "{KEEP_PLAN} UNWIND $rows AS row MERGE (n:{l} {{key: row.key}}) SET n += row.props"
                ))
                .param("rows", rows),
            );
        }
        for ((from, rel, to), rows) in by_rel {
            let (f, r, t) = (from.as_str(), rel.as_str(), to.as_str());
            queries.push(
                query(&format!(
                    "{KEEP_PLAN} UNWIND $rows AS row MATCH (a:{f} {{key: row.from}}) MATCH (b:{t} {{key: row.to}}) \
                     MERGE (a)-[:{r}]->(b)"
                ))
                .param("rows", rows),
            );
        }
        if !batch.states.is_empty() {
            let rows: Vec<BoltType> = batch
                .states
                .into_iter()
                .map(|s| {
                    let props: HashMap<String, BoltType> =
                        s.props.into_iter().map(|(k, v)| (k, v.into())).collect();
                    map([
                        ("vehicle", s.vehicle.into()),
                        ("version_key", version_key(&s.kind).into()),
                        ("version", s.version.into()),
                        ("props", props.into()),
                    ])
                })
                .collect();
            queries.push(query(&format!("{KEEP_PLAN} {STATE}")).param("rows", rows));
        }
        if !batch.visits.is_empty() {
            let rows: Vec<BoltType> = batch
                .visits
                .into_iter()
                .map(|((vehicle, cell), pings)| {
                    map([
                        ("vehicle", vehicle.into()),
                        ("cell", cell.into()),
                        ("first", pings.first().into()),
                        ("last", pings.last().into()),
                        ("times", pings.times.into()),
                    ])
                })
                .collect();
            queries.push(query(&format!("{KEEP_PLAN} {VISITS}")).param("rows", rows));
        }
        let mut txn = self.graph.start_txn().await.map_err(err)?;
        txn.run_queries(queries).await.map_err(err)?;
        txn.commit().await.map_err(err)?;
        Ok(())
    }

    /// Removes the records' Event nodes with their edges; shared entities stay.
    async fn remove_records(&self, ids: &[RecordId]) -> Result<(), StoreError> {
        let ids: Vec<String> = ids.iter().map(|i| i.as_str().to_owned()).collect();
        self.graph
            .run(query("UNWIND $ids AS id MATCH (e:Event {key: id}) DETACH DELETE e").param("ids", ids))
            .await
            .map_err(err)
    }

    async fn present(&self, ids: &[RecordId]) -> Result<std::collections::HashSet<RecordId>, StoreError> {
        let ids: Vec<String> = ids.iter().map(|i| i.as_str().to_owned()).collect();
        self.keys(query("UNWIND $ids AS id MATCH (e:Event {key: id}) RETURN e.key AS key").param("ids", ids))
            .await
            .map(|v| v.into_iter().collect())
    }

    async fn record_ids(&self) -> Result<Vec<RecordId>, StoreError> {
        self.keys(query("MATCH (e:Event) RETURN e.key AS key")).await
    }

    async fn count_records(&self) -> Result<u64, StoreError> {
        Ok(self.count("MATCH (e:Event) RETURN count(e) AS n", vec![]).await? as u64)
    }
}

/// A vehicle's reading of one kind, set only over an older one (its version
/// is the event time, then the record id, as text).
const STATE: &str = "UNWIND $rows AS row MATCH (v:Vehicle {key: row.vehicle}) \
     WITH v, row WHERE coalesce(v[row.version_key], '') < row.version SET v += row.props";

/// A vehicle's visits to location cells: the count grows by the pings after
/// the last seen (a re-delivery adds none), first and last seen widen.
const VISITS: &str = "UNWIND $rows AS row \
     MATCH (v:Vehicle {key: row.vehicle}) MATCH (c:Location {key: row.cell}) \
     MERGE (v)-[s:VISITED]->(c) \
     ON CREATE SET s.first_seen = row.first, s.last_seen = row.last, s.count = size(row.times) \
     ON MATCH SET s.count = s.count + size([t IN row.times WHERE t > s.last_seen]), \
         s.first_seen = CASE WHEN row.first < s.first_seen THEN row.first ELSE s.first_seen END, \
         s.last_seen = CASE WHEN row.last > s.last_seen THEN row.last ELSE s.last_seen END";

/// Events one hop from the start node, and two hops through a node that is
/// not an event (not through a vehicle's visited cells: other vehicles'
/// events), in the window by their `occurred_at` text (RFC 3339 in UTC sorts
/// as its instants); the label is one of [`Label`]'s, never a question's text.
fn events_near(label: Label) -> String {
    // Anchored on the start node by its key constraint (or its name), and
    // the two hops spelled out: a variable-length pattern over a filled
    // graph ran out of transaction memory.
    format!(
        "MATCH (n:{}) WHERE n.key = $named OR toLower(n.name) = toLower($named) \
         CALL (n) {{ MATCH (n)--(e:Event) RETURN e, 1 AS hops \
             UNION MATCH (n)-[r]-(m)--(e:Event) WHERE NOT m:Event AND type(r) <> 'VISITED' RETURN e, 2 AS hops }} \
         WITH e, min(hops) AS hops WHERE e.occurred_at >= $from AND e.occurred_at < $to \
         RETURN e.key AS key, hops ORDER BY hops, e.occurred_at DESC, key LIMIT $limit",
        label.as_str()
    )
}

#[async_trait]
impl GraphReads for Neo4jStore {
    async fn events_near(
        &self,
        label: Label,
        named: &str,
        window: EventWindow,
        limit: usize,
    ) -> Result<Vec<(RecordId, u32)>, StoreError> {
        let (from, to) = window.as_text();
        let q = query(&events_near(label))
            .param("named", named)
            .param("from", from)
            .param("to", to)
            .param("limit", limit as i64);
        let mut rows = self.graph.execute(q).await.map_err(err)?;
        let read = |e: neo4rs::DeError| StoreError { store: NAME, message: e.to_string(), transient: false };
        let mut out = Vec::new();
        while let Some(row) = rows.next().await.map_err(err)? {
            let key: String = row.get("key").map_err(read)?;
            let hops: i64 = row.get("hops").map_err(read)?;
            out.push((RecordId::from_stored(key), hops as u32));
        }
        Ok(out)
    }

    fn events_near_statement(&self, label: Label) -> String {
        events_near(label)
    }

    async fn vehicle_states(&self, kinds: &[String]) -> Result<Vec<HeldState>, StoreError> {
        let read = |e: neo4rs::DeError| StoreError { store: NAME, message: e.to_string(), transient: false };
        let mut out = Vec::new();
        for kind in kinds {
            let q = query("MATCH (v:Vehicle) WHERE v[$record] IS NOT NULL RETURN v.key AS vehicle, v[$record] AS record")
                .param("record", record_key(kind));
            let mut rows = self.graph.execute(q).await.map_err(err)?;
            while let Some(row) = rows.next().await.map_err(err)? {
                let record: String = row.get("record").map_err(read)?;
                out.push(HeldState {
                    vehicle: row.get("vehicle").map_err(read)?,
                    kind: kind.clone(),
                    record: RecordId::from_stored(record),
                });
            }
        }
        Ok(out)
    }

    async fn visits(&self, vehicle: &str) -> Result<Vec<HeldVisit>, StoreError> {
        let q = query(
            "MATCH (:Vehicle {key: $vehicle})-[s:VISITED]->(c:Location) \
             RETURN c.key AS cell, s.first_seen AS first_seen, s.last_seen AS last_seen, s.count AS count \
             ORDER BY s.last_seen DESC",
        )
        .param("vehicle", vehicle);
        let mut rows = self.graph.execute(q).await.map_err(err)?;
        let read = |e: neo4rs::DeError| StoreError { store: NAME, message: e.to_string(), transient: false };
        let mut out = Vec::new();
        while let Some(row) = rows.next().await.map_err(err)? {
            out.push(HeldVisit {
                vehicle: vehicle.to_owned(),
                cell: row.get("cell").map_err(read)?,
                first_seen: row.get("first_seen").map_err(read)?,
                last_seen: row.get("last_seen").map_err(read)?,
                count: row.get("count").map_err(read)?,
            });
        }
        Ok(out)
    }
}
