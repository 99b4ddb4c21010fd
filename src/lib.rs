//! apex-ingest: Samsara telemetry and carrier EDI into durable, queryable memory.
//! See ARCHITECTURE.md for the map; each stage is one module here.

pub mod app;
pub mod batch;
pub mod cli;
pub mod config;
pub mod edge;
pub mod kafka;
pub mod metrics;
pub mod model;
pub mod orchestrate;
pub mod pipeline;
pub mod places;
pub mod poll;
pub mod query;
pub mod saga;
pub mod source;
pub mod store;
pub mod telemetry;
pub mod top;
pub mod verify;
