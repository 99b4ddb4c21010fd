//! The OpenAI-compatible embedder against a local HTTP server speaking the
//! documented `POST /v1/embeddings` shape: batching, ordering by `index`,
//! retries of transient failures, no retries of permanent ones.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use apex_ingest::pipeline::embed::{EmbedError, Embedder, OpenAiEmbedder, OpenAiSettings};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::{Value, json};

#[derive(Default)]
struct Provider {
    requests: AtomicUsize,
    /// Answer this many requests with the status below before serving.
    fail_first: usize,
    fail_status: u16,
    inputs_seen: std::sync::Mutex<Vec<usize>>,
}

async fn embeddings(
    State(p): State<Arc<Provider>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let n = p.requests.fetch_add(1, Ordering::SeqCst);
    if n < p.fail_first {
        let status = StatusCode::from_u16(p.fail_status).unwrap();
        return (status, Json(json!({"error": {"message": "try later", "type": "server_error"}})));
    }
    assert_eq!(headers.get("authorization").unwrap(), "Bearer test-key");
    assert_eq!(body["model"], "text-embedding-3-small");
    let inputs = body["input"].as_array().unwrap();
    p.inputs_seen.lock().unwrap().push(inputs.len());
    // Answer in reverse order: clients must order by `index`.
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .rev()
        .map(|(i, text)| {
            let len = text.as_str().unwrap().len() as f32;
            json!({"object": "embedding", "index": i, "embedding": [len, 1.0, 0.0, 0.0]})
        })
        .collect();
    (
        StatusCode::OK,
        Json(json!({"object": "list", "data": data, "model": "text-embedding-3-small",
        "usage": {"prompt_tokens": 1, "total_tokens": 1}})),
    )
}

async fn serve(provider: Arc<Provider>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().route("/v1/embeddings", post(embeddings)).with_state(provider);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

fn embedder(url: String, max_attempts: usize) -> OpenAiEmbedder {
    OpenAiEmbedder::new(OpenAiSettings {
        base_url: url,
        model: "text-embedding-3-small".into(),
        api_key: Some("test-key".into()),
        dims: 4,
        max_inputs_per_request: 100,
        requests_per_second: NonZeroU32::new(1000).unwrap(),
        max_attempts,
        first_backoff: Duration::from_millis(10),
        timeout: Duration::from_secs(5),
    })
    .unwrap()
}

#[tokio::test]
async fn batches_inputs_and_keeps_their_order() {
    let provider = Arc::new(Provider::default());
    let e = embedder(serve(provider.clone()).await, 5);
    let texts: Vec<String> = (0..250).map(|i| "x".repeat(i + 1)).collect();
    let vectors = e.embed(&texts).await.unwrap();
    assert_eq!(vectors.len(), 250);
    for (i, v) in vectors.iter().enumerate() {
        assert_eq!(v[0], (i + 1) as f32, "vector {i} out of order");
    }
    assert_eq!(*provider.inputs_seen.lock().unwrap(), [100, 100, 50]);
}

#[tokio::test]
async fn retries_transient_failures_then_succeeds() {
    let provider = Arc::new(Provider { fail_first: 3, fail_status: 503, ..Default::default() });
    let e = embedder(serve(provider.clone()).await, 5);
    let v = e.embed(&["hello".to_string()]).await.unwrap();
    assert_eq!(v, [vec![5.0, 1.0, 0.0, 0.0]]);
    assert_eq!(provider.requests.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn gives_up_after_five_attempts() {
    let provider = Arc::new(Provider { fail_first: 100, fail_status: 429, ..Default::default() });
    let e = embedder(serve(provider.clone()).await, 5);
    let err = e.embed(&["hello".to_string()]).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert_eq!(provider.requests.load(Ordering::SeqCst), 5);
}

#[tokio::test]
async fn does_not_retry_a_bad_request() {
    let provider = Arc::new(Provider { fail_first: 100, fail_status: 400, ..Default::default() });
    let e = embedder(serve(provider.clone()).await, 5);
    let err = e.embed(&["hello".to_string()]).await.unwrap_err();
    assert!(matches!(err, EmbedError::Permanent(ref m) if m.contains("400")), "{err}");
    assert_eq!(provider.requests.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn unreachable_provider_is_transient() {
    // Bind and drop to get a port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let e = embedder(format!("http://127.0.0.1:{port}"), 2);
    let err = e.embed(&["hello".to_string()]).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
}

#[tokio::test]
async fn wrong_dimensions_are_rejected() {
    let provider = Arc::new(Provider::default());
    let mut s = OpenAiSettings {
        base_url: serve(provider).await,
        model: "text-embedding-3-small".into(),
        api_key: Some("test-key".into()),
        dims: 384,
        max_inputs_per_request: 10,
        requests_per_second: NonZeroU32::new(100).unwrap(),
        max_attempts: 5,
        first_backoff: Duration::from_millis(10),
        timeout: Duration::from_secs(5),
    };
    let err = OpenAiEmbedder::new(s.clone()).unwrap().embed(&["a".into()]).await.unwrap_err();
    assert!(err.to_string().contains("4 dimensions, configured 384"), "{err}");
    s.dims = 4;
    assert!(OpenAiEmbedder::new(s).unwrap().embed(&["a".into()]).await.is_ok());
}
