//! The pollers against local HTTP servers that speak the providers' documented
//! shapes (../shared/FINDINGS.md, "Sources"), producing to the real broker
//! (`scripts/services up kafka`) with cursors in the embedded relational store.
//! Each check reads the source's topic back and compares the latest message per
//! key with the provider's final state; the last one has a member read the
//! topic into its stores. One file per provider (and for what every poller
//! does); `world` and `fake_plaid` are what they share.

#[path = "../support/mod.rs"]
mod support;

mod fake_plaid;
mod world;

mod hubspot;
mod on_temporal;
mod plaid;
mod poller;
mod quickbooks;
mod quickbooks_oauth;
mod run_process;
mod samsara_feed;
mod sonar;
