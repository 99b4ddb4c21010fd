//! Temporal over TLS, as Temporal Cloud takes it: mTLS (a client certificate
//! from the namespace's CA) or an API key (a bearer token), the server's
//! certificate checked against a CA. Temporal Cloud cannot exist here, so its
//! edge is a TLS front (tests/support/tls_front.rs) before the real dev server
//! `scripts/services up temporal` starts, with the test CA of `scripts/tls-ca`.
//! A member and a worker run batches end to end through it; each way a
//! connection can be wrong fails within the connect timeout, naming Temporal,
//! the URL and the cause, and never the key.

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use apex_ingest::config::{Config, SecretSource, TemporalConfig};
use apex_ingest::orchestrate::temporal::connect;
use support::tls_front::{FrontOptions, TlsFront};
use temporalio_client::WorkflowCountOptions;

struct Secured {
    tls: PathBuf,
    /// The plaintext dev server the fronts forward to.
    server: SocketAddr,
}

fn secured() -> Secured {
    let tls = support::services_var("SERVICES_TLS_DIR", "temporal").into();
    let url = support::temporal_url();
    let server = url.trim_start_matches("http://").trim_end_matches('/').parse().unwrap();
    Secured { tls, server }
}

impl Secured {
    fn file(&self, name: &str) -> PathBuf {
        self.tls.join(name)
    }

    /// A front presenting the CA's server certificate (or `cert`), before the dev server.
    async fn front(&self, cert: &str, client_ca: bool, api_key: Option<&str>) -> TlsFront {
        support::tls_front::start(FrontOptions {
            cert: self.file(&format!("{cert}.crt")),
            key: self.file(&format!("{cert}.key")),
            client_ca: client_ca.then(|| self.file("ca.crt")),
            api_key: api_key.map(str::to_owned),
            upstream: Some(self.server),
            postgres: false,
        })
        .await
    }

    /// `[temporal]` at a front: https, the test CA, a short connect timeout.
    fn at(&self, front: &TlsFront) -> TemporalConfig {
        TemporalConfig {
            url: format!("https://localhost:{}", front.addr.port()),
            ca_file: self.file("ca.crt"),
            connect_timeout: Duration::from_secs(5),
            ..TemporalConfig::default()
        }
    }

    fn with_client_certificate(&self, config: TemporalConfig) -> TemporalConfig {
        TemporalConfig {
            client_cert_file: self.file("client.crt"),
            client_key_file: self.file("client.key"),
            ..config
        }
    }
}

/// An API key in a file, as a mounted Secret holds it.
fn key_file(dir: &tempfile::TempDir, name: &str, key: &str) -> SecretSource {
    let path = dir.path().join(name);
    std::fs::write(&path, format!("{key}\n")).unwrap();
    SecretSource::File(path)
}

/// Connecting with `config` fails within its connect timeout, naming Temporal
/// and its URL and one of `causes`, and not the key; the error.
async fn fails(config: &TemporalConfig, causes: &[&str], key: &str) -> String {
    let started = Instant::now();
    let e = tokio::time::timeout(Duration::from_secs(15), connect(config))
        .await
        .expect("a failing Temporal connection hangs instead of failing")
        .expect_err("the connection should have failed");
    let e = format!("{e:#}");
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}: {e}", started.elapsed());
    assert!(e.contains(&format!("connecting to Temporal at {}", config.url)), "no service and URL in: {e}");
    let lower = e.to_lowercase();
    assert!(causes.iter().any(|c| lower.contains(&c.to_lowercase())), "none of {causes:?} in: {e}");
    assert!(!e.contains(key), "the API key in: {e}");
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporal_over_mtls_or_an_api_key_and_each_wrong_setting_fails_by_name() {
    let s = secured();
    let dir = tempfile::tempdir().unwrap();
    let key = format!("apex-test-key-{}", rand::random::<u64>());

    let mtls = s.front("server", true, None).await;
    let client = connect(&s.with_client_certificate(s.at(&mtls))).await.expect("mTLS to the front");
    // A real call through the front to the server behind it.
    client.count_workflows("WorkflowType = 'none'", WorkflowCountOptions::default()).await.unwrap();

    let keyed = s.front("server", false, Some(&key)).await;
    let with_key = TemporalConfig { api_key: key_file(&dir, "key", &key), ..s.at(&keyed) };
    let client = connect(&with_key).await.expect("an API key to the front");
    client.count_workflows("WorkflowType = 'none'", WorkflowCountOptions::default()).await.unwrap();

    fails(
        &TemporalConfig { ca_file: s.file("other-ca.crt"), ..s.with_client_certificate(s.at(&mtls)) },
        &["UnknownIssuer"],
        &key,
    )
    .await;
    // TLS 1.3: the server refuses the missing certificate after the client's
    // handshake is done, so the client reads the alert, or a stream or
    // connection already closed, whichever comes first.
    let refused = [
        "CertificateRequired",
        "certificate required",
        "broken pipe",
        "connection reset",
        "connection closed",
    ];
    fails(&s.at(&mtls), &refused, &key).await;
    let wrong_key = TemporalConfig { api_key: key_file(&dir, "wrong", "not-the-key"), ..s.at(&keyed) };
    let e = fails(&wrong_key, &["Unauthenticated", "API key"], &key).await;
    assert!(!e.contains("not-the-key"), "{e}");
    let expired = s.front("expired", false, None).await;
    fails(&s.at(&expired), &["expired"], &key).await;
    // Plaintext at the TLS front, TLS at the plaintext server.
    let plaintext = TemporalConfig {
        url: format!("http://localhost:{}", mtls.addr.port()),
        ca_file: PathBuf::new(),
        ..s.at(&mtls)
    };
    fails(&plaintext, &["needs an https:// URL"], &key).await;
    let tls_to_plain =
        TemporalConfig { url: format!("https://localhost:{}", s.server.port()), ..s.at(&mtls) };
    fails(&tls_to_plain, &["InvalidContentType", "corrupt", "tls", "transport"], &key).await;
    // The key rotated: the file first, then the provider; the next refresh
    // of the file puts the new key on the connection, no restart.
    let rotating = TemporalConfig { secret_refresh: Duration::from_secs(1), ..with_key.clone() };
    let client = connect(&rotating).await.unwrap();
    let SecretSource::File(path) = &rotating.api_key else { unreachable!() };
    let next = format!("{key}-next");
    std::fs::write(path, &next).unwrap();
    keyed.set_api_key(&next);
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    client
        .count_workflows("WorkflowType = 'none'", WorkflowCountOptions::default())
        .await
        .expect("the rotated key is used without a restart");

    let unset = TemporalConfig { api_key: SecretSource::Env("APEX_TLS_TEST_UNSET".into()), ..s.at(&keyed) };
    let e = format!("{:#}", connect(&unset).await.expect_err("an unset key variable was accepted"));
    assert!(e.contains("temporal.api_key") && e.contains("$APEX_TLS_TEST_UNSET"), "{e}");
}

/// A worker through the mTLS front and a member through the API-key front:
/// every batch of the member's run goes through Temporal (rollout 100 %),
/// so the run finishes only if both reached the server through their fronts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_and_a_worker_run_their_batches_through_mtls_and_an_api_key() {
    let s = secured();
    let dir = tempfile::tempdir().unwrap();
    let key = format!("apex-test-key-{}", rand::random::<u64>());
    let (mtls, keyed) = (s.front("server", true, None).await, s.front("server", false, Some(&key)).await);
    let queue = support::unique("apex-tls");
    let redis_prefix = support::unique("apex-tls");
    let mut worker_config = Config {
        temporal: TemporalConfig { task_queue: queue.clone(), ..s.with_client_certificate(s.at(&mtls)) },
        ..Config::default()
    };
    worker_config.stores.data_dir = dir.path().join("data");
    worker_config.stores.redis_prefix = redis_prefix.clone();
    worker_config.redis.url = support::redis_url();
    let mut worker = support::WorkerProcess::start(&worker_config, "mtls");

    let member_key = key_file(&dir, "member-key", &key);
    let file = dir.path().join("apex.toml");
    std::fs::write(&file, "").unwrap();
    let log = dir.path().join("member.log");
    let mut member = support::spawn_run(
        &file,
        &[
            ("RUST_LOG", "debug".into()),
            ("APEX_METRICS_LISTEN", String::new()),
            ("APEX_SOURCE_EVENTS", "300".into()),
            ("APEX_SOURCE_SEED", std::process::id().to_string()),
            ("APEX_STORES_DATA_DIR", worker_config.stores.data_dir.display().to_string()),
            ("APEX_STORES_CACHE", "redis".into()),
            ("APEX_STORES_REDIS_PREFIX", redis_prefix.clone()),
            ("APEX_TEMPORAL_ROLLOUT_PERCENT", "100".into()),
            ("APEX_TEMPORAL_TASK_QUEUE", queue.clone()),
            ("APEX_TEMPORAL_URL", format!("https://localhost:{}", keyed.addr.port())),
            ("APEX_TEMPORAL_CA_FILE", s.file("ca.crt").display().to_string()),
            ("APEX_TEMPORAL_API_KEY", member_key.to_string()),
        ],
        &log,
    );
    // The member finishes once every batch has run on the worker; a worker
    // that died, or a member past the deadline, fails the test instead of hanging it.
    let started = Instant::now();
    let status = loop {
        if let Some(status) = member.try_wait().unwrap() {
            break status;
        }
        let member_log = || std::fs::read_to_string(&log).unwrap_or_default();
        if worker.child.try_wait().unwrap().is_some() {
            let _ = member.kill();
            panic!("the worker exited: {}\nmember: {}", worker.logs(), member_log());
        }
        if started.elapsed() > Duration::from_secs(180) {
            let _ = member.kill();
            panic!("the member did not finish in 180 s: {}\nworker: {}", member_log(), worker.logs());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "the member failed: {text}\nworker: {}", worker.logs());
    assert!(!text.contains(&key) && !worker.logs().contains(&key), "the API key in a log");

    let plain = support::config().temporal;
    let client = connect(&plain).await.unwrap();
    let query = format!(
        "TaskQueue = '{queue}' AND WorkflowType = 'BatchIngestWorkflow' AND ExecutionStatus = 'Completed'"
    );
    let started = Instant::now();
    let completed = loop {
        let n = client.count_workflows(&query, WorkflowCountOptions::default()).await.unwrap().count();
        if n >= 3 || started.elapsed() > Duration::from_secs(20) {
            break n;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert!(
        completed >= 3,
        "{completed} batch workflows completed on {queue}, expected the run's 3 (300 events)"
    );
}
