//! One smoke test per service started by `scripts/services up`, through the
//! client crates the pipeline uses. A service that is not reachable fails its
//! test with the command that starts it.

mod support;

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use support::unique;

#[tokio::test]
async fn postgres_answers_and_has_pgvector() {
    let url = support::postgres_url();
    let pool = sqlx::PgPool::connect(&url).await.expect("connect to PostgreSQL");
    let version: String = sqlx::query_scalar("SHOW server_version").fetch_one(&pool).await.unwrap();
    assert!(!version.is_empty());
    let ext: Option<String> =
        sqlx::query_scalar("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
            .fetch_optional(&pool)
            .await
            .unwrap();
    assert!(ext.is_some(), "the vector extension is not installed in the apex database");
    let distance: f64 = sqlx::query_scalar("SELECT ('[1,2,3]'::vector <-> '[1,2,5]'::vector)::float8")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(distance, 2.0);
}

#[tokio::test]
async fn redis_sets_and_gets() {
    let url = support::redis_url();
    let client = redis::Client::open(url).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.expect("connect to Redis");
    let key = unique("smoke");
    let _: () =
        redis::cmd("SET").arg(&key).arg("value").arg("PX").arg(10_000).query_async(&mut con).await.unwrap();
    let got: String = redis::cmd("GET").arg(&key).query_async(&mut con).await.unwrap();
    assert_eq!(got, "value");
}

#[tokio::test]
async fn kafka_creates_produces_and_consumes() {
    let brokers = support::kafka_brokers();
    let topic = unique("smoke");
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", &brokers).create().unwrap();
    let created = admin
        .create_topics([&NewTopic::new(&topic, 3, TopicReplication::Fixed(1))], &AdminOptions::new())
        .await
        .unwrap();
    assert!(created[0].is_ok(), "{:?}", created[0]);

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    for i in 0..30 {
        let payload = format!("message {i}");
        let key = format!("key-{}", i % 5);
        producer
            .send(FutureRecord::to(&topic).key(&key).payload(&payload), Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }

    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", unique("smoke-group"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[&topic]).unwrap();
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < 30 {
        let m = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .expect("30 messages within 30 s")
            .unwrap();
        seen.insert(String::from_utf8(m.payload().unwrap().to_vec()).unwrap());
    }
    assert_eq!(seen.len(), 30);
    admin.delete_topics(&[&topic], &AdminOptions::new()).await.unwrap();
}

#[tokio::test]
async fn neo4j_merges_and_matches() {
    let c = support::neo4j();
    let graph = neo4rs::Graph::new(c.uri, c.user, c.password).expect("connect to Neo4j");
    let id = unique("smoke");
    for _ in 0..2 {
        graph
            .run(neo4rs::query("MERGE (n:Smoke {id: $id}) SET n.seen = true").param("id", id.clone()))
            .await
            .unwrap();
    }
    let mut rows = graph
        .execute(neo4rs::query("MATCH (n:Smoke {id: $id}) RETURN count(n) AS n").param("id", id.clone()))
        .await
        .unwrap();
    let row = rows.next().await.unwrap().expect("one row");
    assert_eq!(row.get::<i64>("n").unwrap(), 1, "MERGE twice leaves one node");
    graph.run(neo4rs::query("MATCH (n:Smoke {id: $id}) DELETE n").param("id", id)).await.unwrap();
}

#[tokio::test]
async fn temporal_lists_namespaces() {
    use temporalio_client::tonic::IntoRequest;
    use temporalio_client::{Connection, ConnectionOptions};
    use temporalio_common::protos::temporal::api::workflowservice::v1::ListNamespacesRequest;

    let url = support::temporal_url();
    let options = ConnectionOptions::new(url.parse::<reqwest::Url>().unwrap())
        .identity("apex-smoke".to_string())
        .build();
    let connection = Connection::connect(options).await.expect("connect to Temporal");
    let mut service = connection.workflow_service();
    let names: Vec<String> = service
        .list_namespaces(ListNamespacesRequest::default().into_request())
        .await
        .unwrap()
        .into_inner()
        .namespaces
        .into_iter()
        .filter_map(|n| n.namespace_info.map(|i| i.name))
        .collect();
    assert!(names.iter().any(|n| n == "default"), "{names:?}");
}
