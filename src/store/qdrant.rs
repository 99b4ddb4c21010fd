//! Qdrant store (vector role) with qdrant-client: a cosine collection created
//! if missing, one point per record upserted in one call per batch. Point ids
//! are UUIDs made from the record id (Qdrant takes integers or UUIDs only); the
//! full record id and the record's key fields are the payload, with payload
//! indexes on the fields queries filter on (kind, format, subject, time).
//! Only embedded records become points (`[embed] skip_kinds`).
//!
//! Upserts use `wait = true` on purpose: the saga records a batch as written
//! (idempotency record, offset commit) only after every store applied it, and
//! `wait = false` would acknowledge a write Qdrant may still lose.
//!
//! No Qdrant server exists in any registry this machine reaches, so this store
//! is tested only when `APEX_QDRANT_URL` names one (tests/qdrant_store.rs).

use std::collections::HashSet;

use async_trait::async_trait;
use qdrant_client::qdrant::value::Kind;
use qdrant_client::qdrant::{
    Condition, CountPointsBuilder, CreateCollectionBuilder, CreateFieldIndexCollectionBuilder, DatetimeRange,
    DeletePointsBuilder, Distance, FieldType, Filter, GetPointsBuilder, PointId, PointStruct, PointsIdsList,
    ScrollPointsBuilder, SearchPointsBuilder, Timestamp, UpdateCollectionBuilder, UpsertPointsBuilder, Value,
    VectorParamsBuilder,
};
use qdrant_client::{Payload, Qdrant, QdrantError};
use secrecy::ExposeSecret;

use super::{BatchStore, StoreError, VectorFilter, VectorStore};
use crate::config::QdrantConfig;
use crate::model::RecordId;
use crate::pipeline::ProcessedRecord;

const NAME: &str = "vector";
/// The collection metadata key naming what made its vectors.
const EMBEDDER_KEY: &str = "embedder";

/// Payload fields queries filter on, indexed when the collection is created.
const PAYLOAD_INDEXES: [(&str, FieldType); 4] = [
    ("kind", FieldType::Keyword),
    ("format", FieldType::Keyword),
    ("subject", FieldType::Keyword),
    ("occurred_at", FieldType::Datetime),
];

pub struct QdrantStore {
    client: Qdrant,
    collection: String,
}

fn err(e: QdrantError) -> StoreError {
    // Permanent only when the server answered that the request itself is wrong.
    let transient = !matches!(&e, QdrantError::ResponseError { status }
        if matches!(status.code(), tonic::Code::InvalidArgument | tonic::Code::NotFound | tonic::Code::FailedPrecondition));
    StoreError { store: NAME, message: e.to_string(), transient }
}

/// The UUID form of a record id (its first 128 bits).
fn point_id(id: &RecordId) -> PointId {
    let h = id.as_str();
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32]).into()
}

fn record_id_of(payload: &std::collections::HashMap<String, Value>) -> Option<RecordId> {
    match payload.get("record_id").and_then(|v| v.kind.as_ref()) {
        Some(Kind::StringValue(s)) => Some(RecordId::from_stored(s.clone())),
        _ => None,
    }
}

impl QdrantStore {
    /// Connects as `[qdrant]` says (an `https://` URL is TLS, checked against
    /// the system's roots; the API key is sent with every request) and makes
    /// the collection if missing. A failure names the server and the cause.
    pub async fn connect(config: &QdrantConfig, dims: usize) -> Result<Self, StoreError> {
        let collection = config.collection.as_str();
        let api_key = StoreError::secret(NAME, &config.api_key, "qdrant.api_key")?;
        let client = Qdrant::from_url(&config.url)
            .api_key(api_key.as_ref().map(|k| k.expose_secret().to_owned()))
            .connect_timeout(config.connect_timeout)
            .build()
            .map_err(err)?;
        let exists = client.collection_exists(collection).await.map_err(|e| {
            let mut e = err(e);
            e.message = format!("connecting to Qdrant at {}: {}", config.url, e.message);
            e
        })?;
        if !exists {
            client
                .create_collection(
                    CreateCollectionBuilder::new(collection)
                        .vectors_config(VectorParamsBuilder::new(dims as u64, Distance::Cosine)),
                )
                .await
                .map_err(err)?;
            for (field, kind) in PAYLOAD_INDEXES {
                client
                    .create_field_index(
                        CreateFieldIndexCollectionBuilder::new(collection, field, kind).wait(true),
                    )
                    .await
                    .map_err(err)?;
            }
        }
        Ok(QdrantStore { client, collection: collection.to_owned() })
    }
}

#[async_trait]
impl BatchStore for QdrantStore {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn upsert_batch(&self, rows: &[&ProcessedRecord]) -> Result<(), StoreError> {
        let points: Vec<PointStruct> = rows
            .iter()
            .filter(|r| r.is_embedded())
            .map(|r| {
                let payload = Payload::try_from(serde_json::json!({
                    "record_id": r.record.id,
                    "kind": r.record.kind,
                    "format": r.record.format.as_str(),
                    "occurred_at": r.record.occurred_at,
                    "subject": r.record.subject(),
                }))
                .unwrap_or_default();
                PointStruct::new(point_id(&r.record.id), r.embedding.clone(), payload)
            })
            .collect();
        if points.is_empty() {
            return Ok(());
        }
        self.client
            .upsert_points(UpsertPointsBuilder::new(&self.collection, points).wait(true))
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn remove_records(&self, ids: &[RecordId]) -> Result<(), StoreError> {
        let ids: Vec<PointId> = ids.iter().map(point_id).collect();
        self.client
            .delete_points(
                DeletePointsBuilder::new(&self.collection).points(PointsIdsList { ids }).wait(true),
            )
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn count_records(&self) -> Result<u64, StoreError> {
        let r =
            self.client.count(CountPointsBuilder::new(&self.collection).exact(true)).await.map_err(err)?;
        Ok(r.result.map(|c| c.count).unwrap_or(0))
    }

    async fn present(&self, ids: &[RecordId]) -> Result<HashSet<RecordId>, StoreError> {
        let points: Vec<PointId> = ids.iter().map(point_id).collect();
        let r = self
            .client
            .get_points(GetPointsBuilder::new(&self.collection, points).with_payload(true))
            .await
            .map_err(err)?;
        Ok(r.result.iter().filter_map(|p| record_id_of(&p.payload)).collect())
    }

    async fn record_ids(&self) -> Result<Vec<RecordId>, StoreError> {
        let mut out = Vec::new();
        let mut offset: Option<PointId> = None;
        loop {
            let mut req = ScrollPointsBuilder::new(&self.collection).limit(1_000).with_payload(true);
            if let Some(o) = offset.take() {
                req = req.offset(o);
            }
            let page = self.client.scroll(req).await.map_err(err)?;
            out.extend(page.result.iter().filter_map(|p| record_id_of(&p.payload)));
            match page.next_page_offset {
                Some(next) => offset = Some(next),
                None => return Ok(out),
            }
        }
    }
}

#[async_trait]
impl VectorStore for QdrantStore {
    /// The filter on the indexed `kind` and `occurred_at` payload fields.
    async fn search(
        &self,
        query: &[f32],
        k: usize,
        filter: &VectorFilter,
    ) -> Result<Vec<(RecordId, f32)>, StoreError> {
        let mut conditions = Vec::new();
        if !filter.kinds.is_empty() {
            conditions.push(Condition::matches("kind", filter.kinds.clone()));
        }
        if filter.from.is_some() || filter.to.is_some() {
            let at = |t: chrono::DateTime<chrono::Utc>| Timestamp {
                seconds: t.timestamp(),
                nanos: t.timestamp_subsec_nanos() as i32,
            };
            let range =
                DatetimeRange { gte: filter.from.map(at), lt: filter.to.map(at), ..Default::default() };
            conditions.push(Condition::datetime_range("occurred_at", range));
        }
        let r = self
            .client
            .search_points(
                SearchPointsBuilder::new(&self.collection, query.to_vec(), k as u64)
                    .filter(Filter::must(conditions))
                    .with_payload(true),
            )
            .await
            .map_err(err)?;
        Ok(r.result.iter().filter_map(|p| record_id_of(&p.payload).map(|id| (id, p.score))).collect())
    }

    /// Kept in the collection's metadata (`embedder`).
    async fn claim_embedder(&self, embedder: &str) -> Result<(), StoreError> {
        let held = || async {
            let info = self.client.collection_info(&self.collection).await.map_err(err)?;
            let metadata = info.result.and_then(|i| i.config).map(|c| c.metadata).unwrap_or_default();
            Ok::<_, StoreError>(match metadata.get(EMBEDDER_KEY).and_then(|v| v.kind.clone()) {
                Some(Kind::StringValue(name)) => Some(name),
                _ => None,
            })
        };
        let held = match held().await? {
            Some(name) => name,
            None => {
                let metadata = std::collections::HashMap::from([(
                    EMBEDDER_KEY.to_owned(),
                    serde_json::Value::from(embedder),
                )]);
                self.client
                    .update_collection(UpdateCollectionBuilder::new(&self.collection).metadata(metadata))
                    .await
                    .map_err(err)?;
                embedder.to_owned()
            }
        };
        super::same_embedder(NAME, &format!("Qdrant collection {}", self.collection), &held, embedder)
    }
}
