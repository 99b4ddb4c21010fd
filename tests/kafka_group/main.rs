//! The Kafka consumer group against the real broker (`scripts/services up kafka`).
//! Members run as child processes of the real binary (so they can be killed
//! and restarted) except where a store must be made slow from the test. Each
//! test has its own topics and group; every check compares the stores and the
//! committed offsets with what was actually produced, read back from the topics.
//! One file per behaviour; `world` and `members` are what they share.

#[path = "../support/mod.rs"]
mod support;

mod members;
mod world;

mod backpressure;
mod dead_letters;
mod exactly_once;
mod metrics;
mod on_temporal;
mod readiness;
mod rebalance;
mod top;
mod topics_cli;
