//! Which `APEX_*` variables are configuration keys. A process gets variables it
//! did not ask for: Kubernetes gives every pod `<SERVICE>_SERVICE_HOST`,
//! `<SERVICE>_PORT`, … for each Service in its namespace, so a release named
//! `apex` sees `APEX_EDGE_PORT=tcp://…`. Only a variable whose first word names a
//! section of the configuration, and whose shape is not a service link's, is
//! read; the rest are left alone and named in one warning.

use figment::providers::Env;
#[cfg(test)]
use figment::value::{Dict, Value};

pub(super) const PREFIX: &str = "APEX_";

/// `APEX_*` variables of other parts, read elsewhere (the log format, before the
/// configuration) or by `scripts/services` and the tests: not keys, not warned of.
const OTHER_PARTS: [&str; 5] =
    ["LOG_FORMAT", "STATE_DIR", "SERVICES_TIMEOUT", "SERVICES_DURABLE", "FUZZ_CASES"];

/// What one `APEX_*` variable is to the configuration.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Variable {
    /// A key, by its dotted path: `APEX_POLL_PLAID__COUNT` → `poll.plaid.count`.
    Key(String),
    /// Another part's own variable.
    OtherPart,
    /// Shaped like a Kubernetes service link.
    ServiceLink,
    /// Its first word names no section: read by nothing.
    NoSection,
}

/// Classifies the variable `name` (with its prefix) against the `sections`.
pub(super) fn classify(name: &str, sections: &[String]) -> Variable {
    let Some(rest) = name.strip_prefix(PREFIX) else { return Variable::NoSection };
    if OTHER_PARTS.contains(&rest) {
        return Variable::OtherPart;
    }
    if is_service_link(rest) {
        return Variable::ServiceLink;
    }
    let lower = rest.to_ascii_lowercase();
    let mut levels = lower.split("__");
    let first = levels.next().unwrap_or_default();
    let Some((section, key)) = first.split_once('_') else { return Variable::NoSection };
    if !sections.iter().any(|s| s == section) {
        return Variable::NoSection;
    }
    let path = std::iter::once(format!("{section}.{key}")).chain(levels.map(str::to_owned));
    Variable::Key(path.collect::<Vec<_>>().join("."))
}

/// Kubernetes' service-link names (kubelet's envvars): `X_SERVICE_HOST`,
/// `X_SERVICE_PORT`, `X_SERVICE_PORT_<PORTNAME>`, `X_PORT` and
/// `X_PORT_<n>_<PROTOCOL>[_PROTO|_PORT|_ADDR]`.
fn is_service_link(name: &str) -> bool {
    if name.ends_with("_SERVICE_HOST") || name.ends_with("_SERVICE_PORT") || name.contains("_SERVICE_PORT_") {
        return true;
    }
    if name.ends_with("_PORT") {
        return true;
    }
    let words: Vec<&str> = name.split('_').collect();
    words.windows(3).enumerate().any(|(i, w)| {
        let numbered = w[0] == "PORT"
            && !w[1].is_empty()
            && w[1].bytes().all(|b| b.is_ascii_digit())
            && ["TCP", "UDP", "SCTP"].contains(&w[2]);
        let tail = &words[i + 3..];
        numbered && (tail.is_empty() || (tail.len() == 1 && ["PROTO", "PORT", "ADDR"].contains(&tail[0])))
    })
}

/// Every `APEX_*` variable of this process with what it is, sorted by name.
pub(super) fn variables(sections: &[String]) -> Vec<(String, Variable)> {
    let mut out: Vec<(String, Variable)> = std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .filter(|k| k.starts_with(PREFIX))
        .map(|k| {
            let class = classify(&k, sections);
            (k, class)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The provider of the variables that are keys.
pub(super) fn provider(sections: Vec<String>) -> Env {
    Env::raw().filter_map(move |k| match classify(k.as_str(), &sections) {
        Variable::Key(path) => Some(path.into()),
        _ => None,
    })
}

/// Every key path of the defaults, dotted (`poll.plaid.count`).
#[cfg(test)]
fn key_paths(dict: &Dict, prefix: &str, out: &mut Vec<String>) {
    for (k, v) in dict {
        let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        match v {
            Value::Dict(_, inner) => key_paths(inner, &path, out),
            _ => out.push(path),
        }
    }
}

/// The variable that set `key`, if a variable did.
pub(super) fn variable_of<'a>(key: &str, variables: &'a [(String, Variable)]) -> Option<&'a str> {
    variables.iter().find(|(_, v)| matches!(v, Variable::Key(p) if p == key)).map(|(n, _)| n.as_str())
}

/// The variable name that reaches `path` (the inverse of [`classify`]).
#[cfg(test)]
fn name_of(path: &str) -> String {
    let mut levels = path.split('.');
    let section = levels.next().unwrap_or_default();
    let key = levels.next().unwrap_or_default();
    let deeper: Vec<&str> = levels.collect();
    let mut name = format!("{PREFIX}{section}_{key}");
    for level in deeper {
        name = format!("{name}__{level}");
    }
    name.to_ascii_uppercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn defaults() -> Dict {
        Value::serialize(Config::default()).unwrap().into_dict().unwrap()
    }

    fn sections(defaults: &Dict) -> Vec<String> {
        defaults.keys().cloned().collect()
    }

    #[test]
    fn service_links_and_other_prefixes_are_not_keys() {
        let sections = sections(&defaults());
        let key = |n: &str| classify(n, &sections);
        assert_eq!(key("APEX_BATCH_MAX_EVENTS"), Variable::Key("batch.max_events".into()));
        assert_eq!(key("APEX_POLL_PLAID__COUNT"), Variable::Key("poll.plaid.count".into()));
        // A misspelt key of a real section is still a key (and refused by name).
        assert_eq!(key("APEX_BATCH_MAX_EVENT"), Variable::Key("batch.max_event".into()));
        for link in [
            "APEX_EDGE_SERVICE_HOST",
            "APEX_EDGE_SERVICE_PORT",
            "APEX_EDGE_SERVICE_PORT_HTTP",
            "APEX_EDGE_PORT",
            "APEX_EDGE_PORT_8088_TCP",
            "APEX_EDGE_PORT_8088_TCP_ADDR",
            "APEX_EDGE_PORT_8088_TCP_PORT",
            "APEX_EDGE_PORT_8088_TCP_PROTO",
            "APEX_EDGE_METRICS_PORT_9464_UDP",
        ] {
            assert_eq!(key(link), Variable::ServiceLink, "{link}");
        }
        assert_eq!(key("APEX_INGEST_EDGE_SERVICE_HOST"), Variable::ServiceLink);
        assert_eq!(key("APEX_INGEST_SOMETHING"), Variable::NoSection);
        assert_eq!(key("APEX_RUN"), Variable::NoSection);
        assert_eq!(key("APEX_LOG_FORMAT"), Variable::OtherPart);
    }

    /// A key whose variable looked like a service link could never be set.
    #[test]
    fn every_configuration_key_is_reachable_by_its_variable() {
        let defaults = defaults();
        let sections = sections(&defaults);
        let mut paths = Vec::new();
        key_paths(&defaults, "", &mut paths);
        assert!(paths.len() > 100, "{paths:?}");
        for path in paths {
            let name = name_of(&path);
            assert_eq!(classify(&name, &sections), Variable::Key(path.clone()), "{name}");
        }
    }
}
