//! Shared by the integration tests that need a real service: where to find it
//! (the `APEX_*` variables `scripts/services env` prints, with the same
//! defaults) and a loud failure naming the service when it is not there.

#![allow(dead_code)] // each test crate uses the part it needs

use std::time::Duration;

pub struct Service {
    pub name: &'static str,
    pub env: &'static str,
    pub default: &'static str,
    /// host:port to probe before the test starts.
    pub probe: fn(&str) -> String,
}

fn host_port_of_url(url: &str) -> String {
    let rest = url.split("://").nth(1).unwrap_or(url);
    let rest = rest.rsplit('@').next().unwrap_or(rest);
    rest.split(['/', '?']).next().unwrap_or(rest).to_string()
}

fn as_is(addr: &str) -> String {
    addr.split(',').next().unwrap_or(addr).to_string()
}

pub const POSTGRES: Service = Service {
    name: "postgres",
    env: "APEX_POSTGRES_URL",
    default: "postgres://postgres@127.0.0.1:5432/apex",
    probe: host_port_of_url,
};
pub const REDIS: Service =
    Service { name: "redis", env: "APEX_REDIS_URL", default: "redis://127.0.0.1:6379/", probe: host_port_of_url };
pub const KAFKA: Service =
    Service { name: "kafka", env: "APEX_KAFKA_BROKERS", default: "127.0.0.1:9092", probe: as_is };
pub const NEO4J: Service = Service { name: "neo4j", env: "APEX_NEO4J_URI", default: "127.0.0.1:7687", probe: as_is };
pub const TEMPORAL: Service = Service {
    name: "temporal",
    env: "APEX_TEMPORAL_URL",
    default: "http://127.0.0.1:7233",
    probe: host_port_of_url,
};

impl Service {
    /// The configured address, after checking something listens there. Panics
    /// (fails the test) with how to start the service when nothing does.
    pub fn require(&self) -> String {
        let value = std::env::var(self.env).unwrap_or_else(|_| self.default.to_string());
        let addr = (self.probe)(&value);
        let reachable = std::net::ToSocketAddrs::to_socket_addrs(addr.as_str())
            .ok()
            .and_then(|mut a| a.next())
            .is_some_and(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok());
        assert!(
            reachable,
            "{} is not reachable at {addr} ({}={value}). Start it with `scripts/services up {}` \
             (or run the whole suite with `scripts/test`, which starts every service).",
            self.name, self.env, self.name
        );
        value
    }
}

pub fn env_or(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.to_string())
}

/// A name no other test run uses, for topics, keys, databases and groups.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}-{:08x}", std::process::id(), rand::random::<u32>())
}
