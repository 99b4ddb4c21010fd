//! The deploy artefacts checked offline with the real validators that
//! `scripts/deploy-tools` installs: the Helm chart (`helm lint`, `helm template`
//! into `kubeconform -strict` against the Kubernetes, KEDA, Prometheus Operator
//! and Strimzi schemas, install-time refusals of broken values), the alert rules
//! (`promtool check rules`, `promtool test rules`), the Strimzi topics rendered
//! from `topics/` and the dashboard. That every metric the dashboard and the
//! rules use is served by a running member is checked in `tests/kafka_group/metrics.rs`.
//! Here the chart; the alerts, topics and dashboard in `monitoring`.

#[path = "../support/mod.rs"]
mod support;

mod monitoring;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use apex_ingest::config::Config;

/// The Kubernetes version the chart is rendered and validated for (scripts/deploy-tools' K8S).
const KUBE_VERSION: &str = "1.31.0";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn chart() -> PathBuf {
    repo().join("helm/apex-ingest")
}

/// Where scripts/deploy-tools put the validators; fails the test, saying how to install them.
fn tools() -> PathBuf {
    let dir = std::env::var_os("DEPLOY_TOOLS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".state/deploy-tools"));
    for tool in ["helm", "kubeconform", "promtool"] {
        assert!(
            dir.join("bin").join(tool).is_file(),
            "{tool} is not installed in {}: run `scripts/deploy-tools` (scripts/test runs it), \
             or set DEPLOY_TOOLS_DIR to where it installed them",
            dir.display()
        );
    }
    dir
}

fn tool(name: &str) -> Command {
    let mut c = Command::new(tools().join("bin").join(name));
    // A stray remote schema reference must fail at once, not wait on the network.
    c.env("HTTPS_PROXY", "http://127.0.0.1:9").env("HTTP_PROXY", "http://127.0.0.1:9");
    c
}

fn run(mut c: Command) -> Output {
    c.output().unwrap_or_else(|e| panic!("cannot run {c:?}: {e}"))
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// `helm template` of the chart with these extra arguments (values files, --set).
fn helm_template(args: &[&str]) -> Output {
    helm_template_as("apex", args)
}

/// As [`helm_template`], for the release name `release`.
fn helm_template_as(release: &str, args: &[&str]) -> Output {
    let mut c = tool("helm");
    c.args(["template", release, "--kube-version", KUBE_VERSION]).arg(chart()).args(args);
    run(c)
}

fn rendered(args: &[&str]) -> String {
    rendered_as("apex", args)
}

fn rendered_as(release: &str, args: &[&str]) -> String {
    let out = helm_template_as(release, args);
    assert!(out.status.success(), "helm template {release} {args:?} failed:\n{}", text(&out));
    String::from_utf8(out.stdout).unwrap()
}

/// `kubeconform -strict` of `manifests` against the installed schemas, never
/// ignoring a kind it has no schema for.
fn kubeconform_output(manifests: &str) -> Output {
    let schemas = tools().join("schemas");
    let mut c = tool("kubeconform");
    c.args([
        "-strict",
        "-summary",
        "-output",
        "text",
        "-kubernetes-version",
        KUBE_VERSION,
        "-schema-location",
    ])
    .arg(format!(
        "{}/kubernetes/v{KUBE_VERSION}-local-strict/{{{{.ResourceKind}}}}{{{{.KindSuffix}}}}.json",
        schemas.display()
    ))
    .arg("-schema-location")
    .arg(format!(
        "{}/crds/{{{{.Group}}}}/{{{{.ResourceKind}}}}_{{{{.ResourceAPIVersion}}}}.json",
        schemas.display()
    ))
    .arg("-")
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), manifests.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

/// As [`kubeconform_output`]; panics unless every resource is valid, else returns the report.
fn kubeconform(manifests: &str) -> String {
    let out = kubeconform_output(manifests);
    let report = text(&out);
    assert!(out.status.success(), "kubeconform refused the manifests:\n{report}");
    report
}

/// `kind/name` of every resource in a multi-document YAML stream.
fn resources(manifests: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for doc in manifests.split("\n---") {
        let field = |key: &str, indent: &str| {
            doc.lines()
                .find_map(|l| l.strip_prefix(indent)?.strip_prefix(key))
                .map(|v| v.trim().trim_matches('"'))
        };
        if let (Some(kind), Some(name)) = (field("kind:", ""), field("name:", "  ")) {
            out.insert(format!("{kind}/{name}"));
        }
    }
    out
}

/// The chart's example for a real cluster, with every optional feature on.
const PRODUCTION: &str = "examples/production.yaml";

fn production() -> String {
    rendered(&["-f", chart().join(PRODUCTION).to_str().unwrap()])
}

#[test]
fn the_chart_lints_and_renders_valid_kubernetes_with_defaults_and_with_every_feature_on() {
    for values in [None, Some(PRODUCTION)] {
        let mut c = tool("helm");
        c.args(["lint", "--strict", "--kube-version", KUBE_VERSION]).arg(chart());
        if let Some(v) = values {
            c.arg("-f").arg(chart().join(v));
        }
        let out = run(c);
        assert!(out.status.success(), "helm lint with {values:?}:\n{}", text(&out));
    }

    let defaults = rendered(&[]);
    let report = kubeconform(&defaults);
    assert!(report.contains("Invalid: 0, Errors: 0, Skipped: 0"), "{report}");
    let kinds = resources(&defaults);
    let want_defaults: BTreeSet<String> = [
        "ConfigMap/apex-apex-ingest",
        "Deployment/apex-apex-ingest-run",
        "PodDisruptionBudget/apex-apex-ingest-run",
        "Service/apex-apex-ingest-run-metrics",
        "ServiceAccount/apex-apex-ingest",
    ]
    .map(String::from)
    .into();
    assert_eq!(kinds, want_defaults, "the defaults run members only (no worker at rollout 0, no edge)");

    let full = production();
    let report = kubeconform(&full);
    assert!(report.contains("Valid: 23, Invalid: 0, Errors: 0, Skipped: 0"), "{report}");
    let kinds = resources(&full);
    for want in [
        "Deployment/apex-apex-ingest-worker",
        "Deployment/apex-apex-ingest-edge",
        "Service/apex-apex-ingest-edge",
        "Ingress/apex-apex-ingest-edge",
        "PodDisruptionBudget/apex-apex-ingest-edge",
        "Deployment/apex-apex-ingest-serve",
        "Service/apex-apex-ingest-serve",
        "Ingress/apex-apex-ingest-serve",
        "PodDisruptionBudget/apex-apex-ingest-serve",
        "ScaledObject/apex-apex-ingest-run",
        "TriggerAuthentication/apex-apex-ingest-kafka",
        "ServiceMonitor/apex-apex-ingest",
        "PrometheusRule/apex-apex-ingest",
        "ConfigMap/apex-apex-ingest-dashboard",
    ] {
        assert!(kinds.contains(want), "{want} missing from {kinds:?}");
    }
    // KEDA owns the member count: the Deployment leaves replicas to it.
    let run = full
        .split("\n---")
        .find(|d| d.contains("name: apex-apex-ingest-run\n") && d.contains("kind: Deployment"))
        .unwrap();
    assert!(!run.contains("replicas:"), "{run}");
    assert!(full.contains("maxReplicaCount: 12"), "{full}");
    // KEDA's trigger metadata is a free string map no schema checks: every key
    // the chart sets must be one KEDA's kafka scaler reads from trigger metadata.
    let scaler = std::fs::read_to_string(tools().join("keda/kafka_scaler.go")).unwrap();
    let scaled = full.split("\n---").find(|d| d.contains("kind: ScaledObject")).unwrap();
    let metadata = &scaled[scaled.find("      metadata:\n").unwrap()..];
    let keys: Vec<&str> = metadata
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with("        "))
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.trim().split_once(':').map(|(k, _)| k))
        .collect();
    assert!(keys.len() >= 5, "{metadata}");
    for key in keys {
        assert!(
            scaler.contains(&format!("keda:\"name={key},order=triggerMetadata")),
            "KEDA's kafka trigger reads no metadata key {key}"
        );
    }
    // The SASL_SSL Kafka's lag is read as the members read it: the same user
    // (from the ConfigMap), its password and the cluster CA from Secret keys.
    assert!(scaled.contains("sasl: \"scram_sha512\"") && scaled.contains("tls: \"enable\""), "{scaled}");
    assert!(scaled.contains("authenticationRef:\n        name: apex-apex-ingest-kafka"), "{scaled}");
    let auth = full.split("\n---").find(|d| d.contains("kind: TriggerAuthentication")).unwrap();
    for want in [
        "{parameter: username, name: apex-apex-ingest, key: kafka-sasl-username}",
        "{parameter: password, name: apex-ingest, key: \"password\"}",
        "{parameter: ca, name: apex-kafka-cluster-ca-cert, key: \"ca.crt\"}",
    ] {
        assert!(auth.contains(want), "{want} in\n{auth}");
    }
    assert!(full.contains("kafka-sasl-username: \"apex-ingest\""), "{full}");
    // The query API: its own command, only /v1/query behind the Ingress.
    let serve = full
        .split("\n---")
        .find(|d| d.contains("name: apex-apex-ingest-serve\n") && d.contains("kind: Deployment"))
        .unwrap();
    assert!(serve.contains("args: [\"serve\", \"--config\""), "{serve}");
    let ingress =
        full.split("\n---").find(|d| d.contains("kind: Ingress") && d.contains("-serve\n")).unwrap();
    assert!(
        ingress.contains("path: /v1/query") && ingress.contains("host: \"memory.fleet.example.com\""),
        "{ingress}"
    );
    // A worker's version is its image's tag; a member reports none.
    let worker = full
        .split("\n---")
        .find(|d| d.contains("name: apex-apex-ingest-worker\n") && d.contains("kind: Deployment"))
        .unwrap();
    let tag = worker.split("image: \"").nth(1).and_then(|i| i.split('"').next()).unwrap();
    let build_id = format!(
        "- name: APEX_TEMPORAL_BUILD_ID\n              value: \"{}\"",
        tag.rsplit(':').next().unwrap()
    );
    assert!(worker.contains(&build_id), "{build_id} in\n{worker}");
    assert!(!run.contains("APEX_TEMPORAL_BUILD_ID"), "{run}");
    for probe in ["path: /readyz", "path: /healthz", "readOnlyRootFilesystem: true", "runAsNonRoot: true"] {
        assert!(run.contains(probe), "{probe} in\n{run}");
    }
    // Secrets only by reference: the Secret's keys, never a value; files
    // (certificates, passwords read with file:) from Secrets mounted read-only.
    assert!(
        run.contains(
            "secretKeyRef:\n                  name: apex-ingest-secrets\n                  key: samsara-webhook-secret"
        ),
        "{run}"
    );
    for (name, secret) in [("kafka-user", "apex-ingest"), ("kafka-ca", "apex-kafka-cluster-ca-cert")] {
        let mount = format!("- {{name: secret-{name}, mountPath: /etc/apex-secrets/{name}, readOnly: true}}");
        assert!(run.contains(&mount), "{mount} in\n{run}");
        assert!(run.contains(&format!("secret: {{secretName: {secret}, defaultMode: 0440}}")), "{run}");
    }
}

#[test]
// figment's Jail API returns its large error type; that is its signature, not ours.
#[allow(clippy::result_large_err)]
fn the_rendered_configuration_is_one_apex_ingest_loads_with_integers_kept_integers() {
    let full = production();
    let toml = configuration_of(&full);
    // Read as the program reads its file, in a pod's environment: not the
    // test services' APEX_* variables (a plain redis:// URL beside the file's CA is refused).
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &toml).unwrap();
    let mut loaded = None;
    figment::Jail::expect_with(|jail| {
        jail.clear_env();
        loaded = Some(Config::load(Some(file.path())));
        Ok(())
    });
    let config = loaded
        .unwrap()
        .unwrap_or_else(|e| panic!("apex-ingest refuses the chart's configuration: {e:#}\n{toml}"));
    assert_eq!(config.temporal.rollout_percent, 10);
    assert_eq!(config.temporal.namespace, "apex.a1b2c");
    assert_eq!(config.stores.graph, apex_ingest::config::GraphKind::Neo4j);
    assert_eq!(config.edge.samsara.secret_env, ["SAMSARA_WEBHOOK_SECRET"]);
    assert_eq!(
        (config.kafka.security_protocol.as_str(), config.postgres.ssl_mode.as_str()),
        ("sasl_ssl", "verify-full")
    );
    assert_eq!(config.edge.samsara.rate_limit, 500);
    assert_eq!(config.metrics.listen, "0.0.0.0:9464");
    // Passwords and keys are named (env:, file:), never written.
    for line in toml.lines().filter(|l| l.contains("password") || l.contains("api_key")) {
        let value = line.split_once('=').map(|(_, v)| v.trim()).unwrap_or_default();
        assert!(
            value.starts_with("\"file:") || value.starts_with("\"env:"),
            "a password in the file: {line}"
        );
    }
    assert!(config.neo4j.uses_tls() && config.temporal.uses_tls(), "{toml}");

    // As a pod starts: with the plain APEX_* variables the chart sets, and
    // none of the test services' (a pod has the Secret's instead).
    let lines: Vec<&str> = full.lines().map(str::trim).collect();
    let plain_env: BTreeSet<(String, String)> = lines
        .windows(2)
        .filter_map(|w| {
            let name = w[0].strip_prefix("- name: ").filter(|n| n.starts_with("APEX_"))?;
            let value: String = serde_json::from_str(w[1].strip_prefix("value: ")?).ok()?;
            Some((name.to_owned(), value))
        })
        .collect();
    assert!(plain_env.contains(&("APEX_LOG_FORMAT".into(), "json".into())), "{plain_env:?}");
    figment::Jail::expect_with(|jail| {
        jail.clear_env();
        for (name, value) in &plain_env {
            jail.set_env(name, value);
        }
        Config::load(Some(file.path()))
            .map_err(|e| format!("a pod would not start: {e:#} ({plain_env:?})"))?;
        Ok(())
    });

    // The config checksum on the pods changes with the configuration (pods roll).
    let checksum = |s: &str| s.lines().find(|l| l.contains("checksum/config:")).unwrap().to_owned();
    let other =
        rendered(&["-f", chart().join(PRODUCTION).to_str().unwrap(), "--set", "config.batch.max_events=50"]);
    assert_ne!(checksum(&full), checksum(&other));
}

/// The `apex-ingest.toml` of the rendered ConfigMap, as the pods read it.
fn configuration_of(manifests: &str) -> String {
    let start =
        manifests.find("apex-ingest.toml: |\n").expect("the config map") + "apex-ingest.toml: |\n".len();
    manifests[start..]
        .lines()
        .take_while(|l| l.is_empty() || l.starts_with("    "))
        .map(|l| format!("{}\n", l.strip_prefix("    ").unwrap_or(l)))
        .collect()
}

/// The variables kubelet gives every pod for each Service with a cluster IP
/// (pkg/kubelet/envvars): `<NAME>_SERVICE_HOST`, `_SERVICE_PORT`,
/// `_SERVICE_PORT_<PORTNAME>`, `_PORT` and `_PORT_<n>_<PROTO>[_PROTO|_PORT|_ADDR]`,
/// the name upper-cased with `-` as `_`. Computed for every Service rendered
/// (headless ones too, though kubelet skips them: a superset is the safe side).
fn service_link_variables(manifests: &str) -> Vec<(String, String)> {
    let ip = "10.0.0.7";
    let mut out = Vec::new();
    for doc in manifests.split("\n---").filter(|d| d.contains("\nkind: Service\n")) {
        let name = doc.lines().find_map(|l| l.strip_prefix("  name: ")).expect("a Service's name");
        let prefix = name.trim_matches('"').to_ascii_uppercase().replace('-', "_");
        let ports_at = doc.find("\n  ports:\n").expect("a Service's ports");
        let mut ports: Vec<(Option<String>, String, String)> = Vec::new();
        for line in doc[ports_at..].lines().skip(2).map(str::trim) {
            if let Some(n) = line.strip_prefix("- name: ") {
                ports.push((Some(n.to_owned()), String::new(), "TCP".into()));
            } else if let (Some(p), Some(last)) = (line.strip_prefix("port: "), ports.last_mut()) {
                last.1 = p.to_owned();
            } else if let (Some(p), Some(last)) = (line.strip_prefix("protocol: "), ports.last_mut()) {
                last.2 = p.to_owned();
            }
        }
        let (_, first, _) = ports.first().expect("a Service port").clone();
        out.push((format!("{prefix}_SERVICE_HOST"), ip.to_owned()));
        out.push((format!("{prefix}_SERVICE_PORT"), first.clone()));
        out.push((format!("{prefix}_PORT"), format!("tcp://{ip}:{first}")));
        for (port_name, port, proto) in &ports {
            if let Some(n) = port_name {
                out.push((
                    format!("{prefix}_SERVICE_PORT_{}", n.to_ascii_uppercase().replace('-', "_")),
                    port.clone(),
                ));
            }
            let base = format!("{prefix}_PORT_{port}_{proto}");
            out.push((base.clone(), format!("{}://{ip}:{port}", proto.to_ascii_lowercase())));
            out.push((format!("{base}_PROTO"), proto.to_ascii_lowercase()));
            out.push((format!("{base}_PORT"), port.clone()));
            out.push((format!("{base}_ADDR"), ip.to_owned()));
        }
    }
    out
}

#[test]
// figment's Jail API returns its large error type; that is its signature, not ours.
#[allow(clippy::result_large_err)]
fn pods_start_beside_the_service_links_kubernetes_would_give_them_and_ask_for_none() {
    let values = chart().join(PRODUCTION);
    // `apex` and `apex-ingest` as the README names them; `edge-prod` with the
    // chart's name overridden to `apex`, whose Services make APEX_EDGE_PORT.
    let releases: [(&str, &[&str]); 3] =
        [("apex", &[]), ("apex-ingest", &[]), ("edge-prod", &["--set", "fullnameOverride=apex"])];
    for (release, extra) in releases {
        let mut args = vec!["-f", values.to_str().unwrap()];
        args.extend_from_slice(extra);
        let full = rendered_as(release, &args);
        let links = service_link_variables(&full);
        // Four Services of one named port each: eight variables apiece.
        assert!(links.len() >= 4 * 8, "{release}: {links:?}");
        let ours: Vec<&(String, String)> = links.iter().filter(|(n, _)| n.starts_with("APEX_")).collect();
        assert!(!ours.is_empty(), "{release}: no Service makes an APEX_* variable; the test proves nothing");

        // Every pod spec asks Kubernetes for no service links.
        let pods: Vec<&str> = full.split("\n---").filter(|d| d.contains("\nkind: Deployment\n")).collect();
        assert!(pods.len() >= 3, "{release}: {} Deployments", pods.len());
        for pod in &pods {
            assert!(pod.contains("\n      enableServiceLinks: false\n"), "{release}:\n{pod}");
        }

        // And where a cluster sets them anyway, the configuration loads beside them.
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), configuration_of(&full)).unwrap();
        figment::Jail::expect_with(|jail| {
            // A pod's environment: not the test services' APEX_* variables.
            jail.clear_env();
            jail.set_env("APEX_LOG_FORMAT", "json");
            for (name, value) in &links {
                jail.set_env(name, value);
            }
            Config::load(Some(file.path()))
                .map_err(|e| format!("{release}: a pod would not start: {e:#} ({ours:?})"))?;
            Ok(())
        });
    }
}

#[test]
fn values_the_chart_refuses_fail_at_install_with_a_message() {
    let cases: [(&[&str], &str); 12] = [
        (&["--set", "config.batch.max_event=50"], "additional properties 'max_event' not allowed"),
        (&["--set", "runn.replicas=2"], "additional properties 'runn' not allowed"),
        (&["--set", "run.replicas=13"], "run.replicas (13) is above kafkaPartitions (12)"),
        (
            &["--set", "autoscaling.enabled=true", "--set", "autoscaling.maxReplicas=24"],
            "autoscaling.maxReplicas (24) is above kafkaPartitions (12)",
        ),
        (&["--set", "config.neo4j.password=hunter2"], "config.neo4j.password is not a value"),
        (&["--set", "config.temporal.api_key=hunter2"], "config.temporal.api_key is not a value"),
        (&["--set", "config.serve.tokens[0]=hunter2"], "config.serve.tokens[0] is not a value"),
        (&["--set", "serve.enabled=true"], "serve.enabled needs config.serve.tokens"),
        (
            &["--set", "autoscaling.enabled=true", "--set", "config.kafka.security_protocol=sasl_ssl"],
            "autoscaling.kafkaSecrets must name the Secret key of the password",
        ),
        (
            &["--set", "config.postgres.url=postgres://apex:hunter2@db:5432/apex"],
            "config.postgres.url holds a password",
        ),
        (&["--set", "extraEnv.OPENAI_API_KEY=sk-live"], "extraEnv.OPENAI_API_KEY looks like a secret"),
        (
            &["--set", "run.terminationGracePeriodSeconds=45"],
            "must exceed batch.drain_deadline + kafka.revoke_deadline (45 s)",
        ),
    ];
    for (args, message) in cases {
        let out = helm_template(args);
        let said = text(&out);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(said.contains(message), "{args:?}: want {message:?} in\n{said}");
        assert!(!said.contains("hunter2"), "{args:?} echoed a secret:\n{said}");
    }
    // A longer drain deadline raises the bar; the grace period check reads the config.
    let out = helm_template(&["--set", "config.batch.drain_deadline=2m"]);
    assert!(
        text(&out).contains("must exceed batch.drain_deadline + kafka.revoke_deadline (140 s)"),
        "{}",
        text(&out)
    );
    // Secrets by reference need the Secret's name.
    let out = helm_template(&["--set", "secrets.env.APEX_POSTGRES_URL=postgres-url"]);
    assert!(text(&out).contains("name that Secret"), "{}", text(&out));
}

/// `section.key` of every leaf of the chart schema's `config` object.
fn schema_keys(schema: &serde_json::Value, prefix: &str, out: &mut BTreeSet<String>) {
    for (key, value) in schema["properties"].as_object().into_iter().flatten() {
        let name = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
        if value.get("properties").is_some() {
            schema_keys(value, &name, out);
        } else {
            out.insert(name);
        }
    }
}

#[test]
fn the_chart_schema_knows_every_configuration_key_but_secrets() {
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(chart().join("values.schema.json")).unwrap()).unwrap();
    let mut in_schema = BTreeSet::new();
    schema_keys(&schema["properties"]["config"], "", &mut in_schema);
    let mut in_config = BTreeSet::new();
    support::leaf_keys(&serde_json::to_value(Config::default()).unwrap(), "", &mut in_config);
    let missing: Vec<_> = in_config.difference(&in_schema).collect();
    let unknown: Vec<_> = in_schema.difference(&in_config).collect();
    assert!(
        missing.is_empty() && unknown.is_empty(),
        "helm/apex-ingest/values.schema.json is out of step with Config: missing {missing:?}, unknown {unknown:?}"
    );
}
