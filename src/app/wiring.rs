//! From configuration to parts: the embedder, the source, the stores each
//! role names, the saga writer and the orchestrator over them.

use std::sync::Arc;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::config::{CacheKind, Config, EmbedKind, GraphKind, RelationalKind, SourceKind, VectorKind};
use crate::kafka::dead_letter_topic::DeadLetterTopic;
use crate::metrics::Metrics;
use crate::orchestrate::Orchestrator;
use crate::orchestrate::direct::DirectOrchestrator;
use crate::orchestrate::rollout::RolloutOrchestrator;
use crate::orchestrate::temporal::{self, TemporalOrchestrator};
use crate::pipeline::embed::{
    EmbedPolicy, Embedder, HashingEmbedder, MiniLmEmbedder, OpenAiEmbedder, OpenAiSettings,
};
use crate::query::cache::{AnswerCache, MemoryAnswers};
use crate::saga::SagaWriter;
use crate::saga::writer::SagaSettings;
use crate::source::Source;
use crate::source::file::FileSource;
use crate::source::generator::{GeneratorSettings, GeneratorSource};
use crate::source::kafka::KafkaSource;
use crate::store::graph_policy::GraphPolicy;
use crate::store::{
    BatchStore, Coordinator, GraphReads, RelationalStore, StoreError, Stores, VectorStore, embedded_graph,
    embedded_records, embedded_vectors, memory_cache, neo4j, postgres, qdrant, redis,
};

pub fn build_embedder(config: &Config) -> anyhow::Result<Arc<dyn Embedder>> {
    let e = &config.embed;
    Ok(match e.kind {
        EmbedKind::Hashing => Arc::new(HashingEmbedder::new(e.dims)),
        EmbedKind::Minilm => Arc::new(MiniLmEmbedder::load(&e.model_dir)?),
        EmbedKind::Openai => Arc::new(OpenAiEmbedder::new(OpenAiSettings {
            base_url: e.url.clone(),
            model: e.model.clone(),
            api_key: crate::config::named_value(&e.api_key_env),
            dims: e.dims,
            max_inputs_per_request: e.max_inputs_per_request,
            requests_per_second: std::num::NonZeroU32::new(e.requests_per_second)
                .context("embed.requests_per_second must be at least 1")?,
            max_attempts: e.max_attempts,
            first_backoff: e.first_backoff,
            timeout: e.timeout,
        })?),
    })
}

pub fn build_source(config: &Config, metrics: Arc<Metrics>) -> anyhow::Result<Box<dyn Source>> {
    let s = &config.source;
    Ok(match s.kind {
        SourceKind::Generator => Box::new(GeneratorSource::new(GeneratorSettings {
            events: (s.events > 0).then_some(s.events),
            rate: config.generator_rate(),
            poison_fraction: s.poison_fraction,
            only: None,
            vehicles: s.vehicles,
            partitions: s.partitions,
            seed: s.seed,
            days: s.days,
            until: config.generator_until(),
            truth: (!s.truth.as_os_str().is_empty()).then(|| s.truth.clone()),
        })),
        SourceKind::File => Box::new(FileSource::new(&s.paths)?),
        SourceKind::Kafka => Box::new(KafkaSource::connect(config, metrics)?),
    })
}

/// Where `serve` keeps answers: Redis with `stores.cache = "redis"` (shared
/// by its replicas), else this process; none with `serve.cache_ttl = 0s`.
pub async fn build_answer_cache(config: &Config) -> Result<Option<Arc<dyn AnswerCache>>, StoreError> {
    if config.serve.cache_ttl.is_zero() {
        return Ok(None);
    }
    Ok(Some(match config.stores.cache {
        CacheKind::Redis => {
            Arc::new(redis::RedisStore::connect(&config.redis, &config.stores.redis_prefix).await?)
        }
        CacheKind::Embedded | CacheKind::None => {
            let capacity = std::num::NonZeroUsize::new(config.serve.cache_capacity)
                .unwrap_or(std::num::NonZeroUsize::MIN);
            Arc::new(MemoryAnswers::new(capacity))
        }
    }))
}

/// A graph store in its two roles: written by the saga, read by the query room.
type GraphRoles = (Option<Arc<dyn BatchStore>>, Option<Arc<dyn GraphReads>>);

fn graph_roles<G: BatchStore + GraphReads + 'static>(graph: G) -> GraphRoles {
    let graph = Arc::new(graph);
    (Some(graph.clone()), Some(graph))
}

/// The stores as `[stores]` names them: each role embedded, on its real
/// service, or off (the wiring from configuration to stores).
pub async fn open_stores(config: &Config) -> Result<Stores, StoreError> {
    let s = &config.stores;
    let policy = GraphPolicy::of(&config.graph);
    let (graph, graph_reads) = match s.graph {
        GraphKind::Embedded => graph_roles(embedded_graph(&s.data_dir).await?.with_policy(policy)),
        GraphKind::Neo4j => graph_roles(neo4j::Neo4jStore::connect(&config.neo4j).await?.with_policy(policy)),
        GraphKind::None => (None, None),
    };
    let postgres = match s.relational {
        RelationalKind::Postgres => {
            let p = &config.postgres;
            let hnsw = (s.vector == VectorKind::Pgvector)
                .then_some(postgres::HnswParams { m: p.hnsw_m, ef_construction: p.hnsw_ef_construction });
            Some(Arc::new(postgres::PostgresStore::connect(p, config.embed.dims, hnsw).await?))
        }
        RelationalKind::Embedded => None,
    };
    let relational: Arc<dyn RelationalStore> = match &postgres {
        Some(pg) => pg.clone(),
        None => Arc::new(embedded_records(&s.data_dir).await?),
    };
    let vector: Option<Arc<dyn VectorStore>> = match (s.vector, postgres) {
        (VectorKind::Embedded, _) => Some(Arc::new(embedded_vectors(&s.data_dir, config.embed.dims).await?)),
        (VectorKind::Pgvector, Some(pg)) => Some(pg),
        (VectorKind::Qdrant, _) => {
            Some(Arc::new(qdrant::QdrantStore::connect(&config.qdrant, config.embed.dims).await?))
        }
        (VectorKind::Pgvector, None) => {
            return Err(StoreError {
                store: "vector",
                message: "stores.vector = \"pgvector\" needs stores.relational = \"postgres\"".into(),
                transient: false,
            });
        }
        (VectorKind::None, _) => None,
    };
    if let Some(v) = &vector {
        v.claim_embedder(&config.embed.embedder()).await?;
    }
    let (cache, coordinator): (Option<Arc<dyn BatchStore>>, Arc<dyn Coordinator>) = match s.cache {
        CacheKind::Embedded => {
            let m = Arc::new(memory_cache::MemoryCache::new());
            (Some(m.clone()), m)
        }
        CacheKind::Redis => {
            let r = Arc::new(redis::RedisStore::connect(&config.redis, &s.redis_prefix).await?);
            (Some(r.clone()), r)
        }
        // Locks and idempotency records still exist, in this process only.
        CacheKind::None => (None, Arc::new(memory_cache::MemoryCache::new())),
    };
    Ok(Stores { graph, graph_reads, relational, vector, cache, coordinator })
}

/// The configured stores and the orchestrator `run` uses over them: direct,
/// or with `temporal.rollout_percent` above 0 the rollout between direct and
/// Temporal (whose workers must run `apex-ingest worker`). `shutdown` ends
/// the waits between store retries.
pub async fn build_orchestrator(
    config: &Config,
    metrics: Arc<Metrics>,
    shutdown: &CancellationToken,
) -> anyhow::Result<(Stores, Arc<dyn Orchestrator>)> {
    let stores = open_stores(config).await?;
    let direct = direct_over(config, &stores, metrics.clone(), shutdown)?;
    let percent = config.temporal.rollout_percent;
    if percent == 0 {
        return Ok((stores, direct));
    }
    let client = temporal::connect(&config.temporal).await?;
    let on_temporal = Arc::new(TemporalOrchestrator::new(client, config.temporal.clone(), metrics.clone()));
    on_temporal.watch_stalls(shutdown.clone());
    tracing::info!(percent, task_queue = %config.temporal.task_queue, "rollout: share of batches on Temporal");
    Ok((stores, Arc::new(RolloutOrchestrator::new(direct, on_temporal, percent, metrics))))
}

/// The direct orchestrator writing to `stores`.
pub fn direct_over(
    config: &Config,
    stores: &Stores,
    metrics: Arc<Metrics>,
    shutdown: &CancellationToken,
) -> anyhow::Result<Arc<dyn Orchestrator>> {
    Ok(Arc::new(DirectOrchestrator::new(
        build_embedder(config)?,
        EmbedPolicy::for_config(config),
        saga_writer(config, stores, metrics, shutdown)?,
    )))
}

/// The saga writer over `stores`, giving up store retries once `shutdown` is
/// cancelled; a Kafka deployment also publishes dead letters to its DLQ topic.
pub fn saga_writer(
    config: &Config,
    stores: &Stores,
    metrics: Arc<Metrics>,
    shutdown: &CancellationToken,
) -> anyhow::Result<Arc<SagaWriter>> {
    let mut writer =
        SagaWriter::new(stores, metrics, SagaSettings::from(&config.saga)).with_shutdown(shutdown.clone());
    if config.source.kind == SourceKind::Kafka {
        let topic = DeadLetterTopic::new(&config.kafka, &config.kafka.dlq_topic)?;
        writer = writer.with_dead_letter_topic(Arc::new(topic));
    }
    Ok(Arc::new(writer))
}
