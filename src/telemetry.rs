//! Structured logs with `tracing`. `RUST_LOG` filters (default `info`);
//! `APEX_LOG_FORMAT=json` switches to one JSON object per line for log shippers.
//!
//! Distributed traces: the same `tracing` spans (the crate's own, at info)
//! exported by OpenTelemetry over OTLP when `[traces] endpoint` is set, with
//! W3C trace context carried in HTTP and Kafka headers. Without an endpoint
//! no exporting layer is installed, so traces cost nothing then.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{BatchSpanProcessor, Sampler, SdkTracerProvider};
use temporalio_sdk::opentelemetry::{WorkflowIdGenerator, WorkflowSpanProcessor};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{EnvFilter, LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::TracesConfig;

/// Whether spans are exported: work done only for traces (reading each
/// event's context for links) is skipped when they are not.
static EXPORTING: AtomicBool = AtomicBool::new(false);

pub fn traces_on() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// Logs only.
pub fn init(default_filter: &str) {
    install(default_filter, None);
}

/// Logs, and spans exported to `traces.endpoint` when it is set (nothing
/// otherwise): sampled parent-based at `sample_ratio`, named
/// `apex-ingest-<command>` unless `service_name` says otherwise. Also
/// installs the W3C propagator and the global provider the Temporal SDK's
/// tracing reads. On an exporter that cannot be built, logs only, and says why.
pub fn init_traced(default_filter: &str, traces: &TracesConfig, command: &str) -> Option<TraceExport> {
    if traces.endpoint.is_empty() {
        install(default_filter, None);
        return None;
    }
    match provider(traces, command) {
        Ok(provider) => {
            opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
            opentelemetry::global::set_tracer_provider(provider.clone());
            install(default_filter, Some(&provider));
            EXPORTING.store(true, Ordering::Relaxed);
            Some(TraceExport(provider))
        }
        Err(e) => {
            install(default_filter, None);
            tracing::warn!(error = %format!("{e:#}"), "traces are not exported");
            None
        }
    }
}

fn provider(traces: &TracesConfig, command: &str) -> anyhow::Result<SdkTracerProvider> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(traces.endpoint.clone())
        .build()
        .with_context(|| format!("the OTLP exporter for {}", traces.endpoint))?;
    let service = if traces.service_name.is_empty() {
        format!("apex-ingest-{command}")
    } else {
        traces.service_name.clone()
    };
    // Replay-safe, as the Temporal SDK's tracing asks: workflow spans get the
    // same ids when replayed, and spans begun during a replay are not exported.
    let processor = WorkflowSpanProcessor::new(BatchSpanProcessor::builder(exporter).build());
    Ok(SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_id_generator(WorkflowIdGenerator::default())
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(traces.sample_ratio))))
        .with_resource(Resource::builder().with_service_name(service).build())
        .build())
}

fn install(default_filter: &str, traces: Option<&SdkTracerProvider>) {
    // `RUST_LOG` filters the whole stack, spans too: as a per-layer filter of
    // the log lines alone, a target directive in it (`info,librdkafka=warn`)
    // lost some of their events.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        // Colour codes only for people at a terminal, never in shipped logs.
        .with_ansi(std::io::stderr().is_terminal());
    let fmt = if std::env::var("APEX_LOG_FORMAT").is_ok_and(|f| f == "json") {
        fmt.json().boxed()
    } else {
        fmt.boxed()
    };
    // The crate's spans only: a store client's or the runtime's would drown them.
    let spans = traces.map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("apex-ingest"))
            .with_filter(Targets::new().with_target("apex_ingest", LevelFilter::INFO))
    });
    let _ = tracing_subscriber::registry().with(filter).with(spans).with(fmt).try_init();
}

/// Spans exported while it lives; dropped, it sends what is still buffered.
pub struct TraceExport(SdkTracerProvider);

impl Drop for TraceExport {
    fn drop(&mut self) {
        if let Err(e) = self.0.shutdown() {
            eprintln!("warning: the last spans could not be exported: {e}");
        }
    }
}

/// `span`'s W3C trace context as header pairs (`traceparent`, `tracestate`);
/// none when traces are off or the span is not sampled.
pub fn trace_headers(span: &tracing::Span) -> Vec<(String, String)> {
    struct Pairs(Vec<(String, String)>);
    impl Injector for Pairs {
        fn set(&mut self, key: &str, value: String) {
            self.0.push((key.to_owned(), value));
        }
    }
    let mut pairs = Pairs(Vec::new());
    if !traces_on() {
        return pairs.0;
    }
    let context = span.context();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&context, &mut pairs));
    pairs.0
}

/// The trace context carried by header pairs (`traceparent`, `tracestate`,
/// any case), or an empty one.
pub fn remote_context(headers: &[(&str, &str)]) -> opentelemetry::Context {
    struct Lookup<'a>(&'a [(&'a str, &'a str)]);
    impl Extractor for Lookup<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            self.0.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| *v)
        }
        fn keys(&self) -> Vec<&str> {
            self.0.iter().map(|(k, _)| *k).collect()
        }
    }
    opentelemetry::global::get_text_map_propagator(|p| p.extract(&Lookup(headers)))
}

/// The trace context of a message's headers (Kafka: name, bytes).
pub fn message_context(headers: &[(String, Vec<u8>)]) -> opentelemetry::Context {
    let pairs: Vec<(&str, &str)> =
        headers.iter().filter_map(|(k, v)| Some((k.as_str(), std::str::from_utf8(v).ok()?))).collect();
    remote_context(&pairs)
}

/// Links `span` to the trace each message came with (a batch joins many
/// traces: one parent would lie about the others); the same one once.
pub fn link_messages<'a>(span: &tracing::Span, messages: impl IntoIterator<Item = &'a [(String, Vec<u8>)]>) {
    use opentelemetry::trace::TraceContextExt as _;
    if !traces_on() {
        return;
    }
    let mut seen = std::collections::HashSet::new();
    for headers in messages {
        let context = message_context(headers);
        let remote = context.span().span_context().clone();
        if remote.is_valid() && seen.insert(remote.span_id()) {
            span.add_link(remote);
        }
    }
}
