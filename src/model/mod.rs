//! The data the pipeline carries: raw events as they arrive, typed inputs
//! (Samsara, EDI), records with a stable identity, and graph entities.

pub mod edi;
pub mod entity;
pub mod record;
pub mod samsara;
pub mod wire;

pub use entity::{Entity, EntityKey, Label, RelType, Relation};
pub use record::{Format, Origin, PoisonReason, RawEvent, Record, RecordBody, RecordId};
