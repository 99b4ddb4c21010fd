//! The Temporal remote codec endpoint (`apex-ingest codec`): the Web UI and
//! `temporal --codec-endpoint` send the payloads they show to `POST /decode`
//! and get them back as this codec decodes them, so a person reads a batch's
//! JSON instead of zstd bytes. The protocol is Temporal's: a JSON `Payloads`
//! message (`{"payloads": [{"metadata": {k: base64}, "data": base64}]}`) in,
//! the same shape out; `POST /encode` is the reverse. The UI calls it from
//! the browser, so the UI's origin is allowed by CORS.

use std::collections::HashMap;

use axum::Router;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use temporalio_common::protos::temporal::api::common::v1::Payload;
use tower_http::cors::CorsLayer;

use super::codec::{decompress, encode_one};

/// A `Payloads` message in protobuf's JSON mapping (bytes as base64).
#[derive(Debug, Serialize, Deserialize)]
pub struct WirePayloads {
    pub payloads: Vec<WirePayload>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct WirePayload {
    #[serde(default)]
    pub metadata: HashMap<String, String>,
    #[serde(default)]
    pub data: String,
}

impl WirePayload {
    fn decoded(&self) -> Result<Payload, String> {
        let bytes =
            |what: &str, text: &str| STANDARD.decode(text).map_err(|e| format!("{what} is not base64: {e}"));
        let metadata = self
            .metadata
            .iter()
            .map(|(k, v)| Ok((k.clone(), bytes(&format!("metadata.{k}"), v)?)))
            .collect::<Result<_, String>>()?;
        Ok(Payload { metadata, data: bytes("data", &self.data)?, ..Default::default() })
    }

    fn of(p: &Payload) -> Self {
        WirePayload {
            metadata: p.metadata.iter().map(|(k, v)| (k.clone(), STANDARD.encode(v))).collect(),
            data: STANDARD.encode(&p.data),
        }
    }
}

/// `/decode` and `/encode`, answering browsers from `ui_origins`.
pub fn router(ui_origins: &[String], compress: bool) -> anyhow::Result<Router> {
    let origins = ui_origins
        .iter()
        .map(|o| HeaderValue::from_str(o).map_err(|e| anyhow::anyhow!("--ui-origin {o:?}: {e}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let cors = CorsLayer::new()
        .allow_origin(origins)
        .allow_methods([Method::POST])
        .allow_headers([
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            header::HeaderName::from_static("x-namespace"),
        ])
        .allow_credentials(true);
    Ok(Router::new()
        .route(
            "/decode",
            post(|body: String| async move { convert(&body, |p| decompress(p).map_err(|e| e.to_string())) }),
        )
        .route(
            "/encode",
            post(move |body: String| async move {
                convert(&body, |p| encode_one(p, compress).map_err(|e| e.to_string()))
            }),
        )
        .layer(cors))
}

/// Every payload of the body through `step`; a body or payload it cannot
/// read is a 400 that says which.
fn convert(body: &str, step: impl Fn(Payload) -> Result<Payload, String>) -> Response {
    let wire: WirePayloads = match serde_json::from_str(body) {
        Ok(w) => w,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("not a Payloads message: {e}")).into_response(),
    };
    let mut out = Vec::with_capacity(wire.payloads.len());
    for (i, p) in wire.payloads.iter().enumerate() {
        match p.decoded().and_then(&step) {
            Ok(p) => out.push(WirePayload::of(&p)),
            Err(e) => return (StatusCode::BAD_REQUEST, format!("payload {i}: {e}")).into_response(),
        }
    }
    axum::Json(WirePayloads { payloads: out }).into_response()
}
