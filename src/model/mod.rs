//! The data the pipeline carries: raw events as they arrive, typed inputs
//! (Samsara, EDI, webhooks), records with a stable identity, graph entities, and dead
//! letters for what cannot become records.

pub mod bank;
pub mod crm;
pub mod dead_letter;
pub mod edi;
pub mod entity;
pub mod financial;
pub mod market;
pub mod poison;
pub mod polled;
pub mod record;
pub mod samsara;
pub mod webhook;
pub mod wire;

pub use dead_letter::{COMPENSATION_FAILED, DeadLetter};
pub use entity::{Entity, EntityKey, Label, RelType, Relation};
pub use poison::PoisonReason;
pub use record::{Format, Origin, RawEvent, Record, RecordBody, RecordId};
