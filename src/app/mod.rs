//! Assembles the stages from configuration (`wiring`) and drives them (`run`):
//! source → bounded queue → batcher → up to `max_in_flight` batches in the
//! orchestrator at once. Used by `demo` and `run` alike.

mod run;
mod wiring;

pub use run::{RunTotals, cancel_on_signal, run_pipeline};
pub use wiring::{
    build_answer_cache, build_embedder, build_orchestrator, build_source, direct_over, open_stores,
    saga_writer,
};
