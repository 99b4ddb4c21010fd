//! Shared by the integration tests that need a real service: its settings come
//! from the same configuration the binary reads (defaults, overridden by the
//! `APEX_*` variables `scripts/services env` prints), and a test fails loudly,
//! naming the service and how to start it, when nothing listens there.

#![allow(dead_code)] // each test crate uses the part it needs

use std::time::Duration;

use apex_ingest::config::Config;

pub fn config() -> Config {
    Config::load(None).expect("configuration from defaults and APEX_* variables")
}

/// `host:port` of a URL or of a plain `host:port[,host:port...]` list.
fn host_port(value: &str) -> String {
    let rest = value.split("://").nth(1).unwrap_or(value);
    let rest = rest.rsplit('@').next().unwrap_or(rest);
    let rest = rest.split(['/', '?']).next().unwrap_or(rest);
    rest.split(',').next().unwrap_or(rest).to_string()
}

/// Fails the test unless something accepts connections where `service` should be.
pub fn require(service: &str, env: &str, value: &str) {
    let addr = host_port(value);
    let reachable = std::net::ToSocketAddrs::to_socket_addrs(addr.as_str())
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok());
    assert!(
        reachable,
        "{service} is not reachable at {addr} ({env}={value}). Start it with `scripts/services up {service}` \
         (or run the whole suite with `scripts/test`, which starts every service)."
    );
}

pub fn postgres_url() -> String {
    let url = config().postgres.url;
    require("postgres", "APEX_POSTGRES_URL", &url);
    url
}

pub fn redis_url() -> String {
    let url = config().redis.url;
    require("redis", "APEX_REDIS_URL", &url);
    url
}

pub fn kafka_brokers() -> String {
    let brokers = config().kafka.brokers;
    require("kafka", "APEX_KAFKA_BROKERS", &brokers);
    brokers
}

pub fn neo4j() -> apex_ingest::config::Neo4jConfig {
    let c = config().neo4j;
    require("neo4j", "APEX_NEO4J_URI", &c.uri);
    c
}

pub fn temporal_url() -> String {
    let url = config().temporal.url;
    require("temporal", "APEX_TEMPORAL_URL", &url);
    url
}

/// A name no other test run uses, for topics, keys and groups.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}-{:08x}", std::process::id(), rand::random::<u32>())
}
