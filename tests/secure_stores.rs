//! The stores over TLS with authentication, against the secured servers
//! `scripts/services up postgres-tls redis-tls neo4j-tls` starts from a
//! throw-away CA (`scripts/tls-ca`): PostgreSQL accepting only `hostssl` with
//! SCRAM, Redis on its TLS port with an ACL user, Neo4j with Bolt over TLS
//! only and authentication on. The pipeline writes end to end through them;
//! each way a connection can be wrong (wrong CA, expired certificate, wrong
//! password, plaintext to TLS, TLS to plaintext) fails fast, naming the
//! service, the address and the cause; no password appears in any output.

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use apex_ingest::config::{Neo4jConfig, PostgresConfig, RedisConfig, SecretSource};
use apex_ingest::store::BatchStore;
use apex_ingest::store::neo4j::Neo4jStore;
use apex_ingest::store::postgres::PostgresStore;
use apex_ingest::store::redis::RedisStore;

/// The secured services' addresses and the directory of their CA, certificates
/// and passwords, as `scripts/services env` prints them; fails saying how to start them.
struct Secured {
    tls: PathBuf,
    postgres: String,
    redis: String,
    neo4j: String,
}

fn secured() -> Secured {
    let var = |name: &str| support::services_var(name, "postgres-tls redis-tls neo4j-tls");
    let s = Secured {
        tls: var("SERVICES_TLS_DIR").into(),
        postgres: var("SERVICES_POSTGRES_TLS"),
        redis: var("SERVICES_REDIS_TLS"),
        neo4j: var("SERVICES_NEO4J_TLS"),
    };
    support::require("postgres-tls", "SERVICES_POSTGRES_TLS", &s.postgres);
    support::require("redis-tls", "SERVICES_REDIS_TLS", &s.redis);
    support::require("neo4j-tls", "SERVICES_NEO4J_TLS", &s.neo4j);
    s
}

impl Secured {
    fn file(&self, name: &str) -> PathBuf {
        self.tls.join(name)
    }

    fn password(&self, service: &str) -> String {
        std::fs::read_to_string(self.file(&format!("{service}.password"))).unwrap().trim().to_owned()
    }

    /// verify-full against the test CA, user apex with its password from the CA directory's file.
    fn postgres(&self) -> PostgresConfig {
        PostgresConfig {
            url: format!("postgres://apex@{}/apex", self.postgres.replace("127.0.0.1", "localhost")),
            password: SecretSource::File(self.file("postgres.password")),
            ssl_mode: "verify-full".into(),
            ca_file: self.file("ca.crt"),
            ..PostgresConfig::default()
        }
    }

    /// bolt+s verified against the test CA, user neo4j with its password from the CA directory's file.
    fn neo4j(&self) -> Neo4jConfig {
        Neo4jConfig {
            uri: format!("bolt+s://{}", self.neo4j),
            user: "neo4j".into(),
            password: SecretSource::File(self.file("neo4j.password")),
            ca_file: self.file("ca.crt"),
            connect_timeout: Duration::from_secs(5),
            ..Neo4jConfig::default()
        }
    }

    fn secrets(&self) -> [String; 3] {
        [self.password("postgres"), self.password("redis"), self.password("neo4j")]
    }

    /// A server presenting a certificate from the test CA that expired in 2020
    /// (`postgres`: after answering PostgreSQL's SSLRequest).
    async fn expired_server(&self, postgres: bool) -> support::tls_front::TlsFront {
        support::tls_front::expired(&self.tls, postgres).await
    }

    fn redis(&self) -> RedisConfig {
        RedisConfig {
            url: format!("rediss://{}/", self.redis.replace("127.0.0.1", "localhost")),
            user: "apex".into(),
            password: SecretSource::File(self.file("redis.password")),
            ca_file: self.file("ca.crt"),
            ..RedisConfig::default()
        }
    }
}

/// A connection that fails within the connect timeout (and does not hang); its error.
async fn connect_fails<T, E: std::fmt::Display>(
    service: &str,
    connect: impl std::future::Future<Output = Result<T, E>>,
) -> String {
    let started = Instant::now();
    let e = match tokio::time::timeout(Duration::from_secs(15), connect).await {
        Err(_) => panic!("a failing {service} connection hangs instead of failing"),
        Ok(Ok(_)) => panic!("the {service} connection should have failed"),
        Ok(Err(e)) => e.to_string(),
    };
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}: {e}", started.elapsed());
    e
}

async fn postgres_fails(config: &PostgresConfig) -> String {
    connect_fails("PostgreSQL", PostgresStore::connect(config, 384, None)).await
}

async fn redis_fails(config: &RedisConfig) -> String {
    connect_fails("Redis", RedisStore::connect(config, "apex-tls-test")).await
}

async fn neo4j_fails(config: &Neo4jConfig) -> String {
    connect_fails("Neo4j", Neo4jStore::connect(config)).await
}

fn assert_names(e: &str, service: &str, address: &str, causes: &[&str], secrets: &[String]) {
    assert!(e.contains(&format!("connecting to {service} at {address}")), "no service and address in: {e}");
    let lower = e.to_lowercase();
    assert!(causes.iter().any(|c| lower.contains(&c.to_lowercase())), "none of {causes:?} in: {e}");
    for secret in secrets {
        assert!(!e.contains(secret.as_str()), "a password in: {e}");
    }
}

#[tokio::test]
async fn postgres_over_verified_tls_with_scram_and_each_wrong_setting_fails_by_name() {
    let s = secured();
    let secrets = s.secrets();
    let good = s.postgres();
    let options = PostgresStore::connect_options(&good).unwrap();
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect_with(options).await.unwrap();
    let (ssl, version): (bool, String) =
        sqlx::query_as("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(ssl && version.starts_with("TLS"), "{ssl} {version}");

    // mTLS: the server checks a client certificate that is sent.
    let mtls = PostgresConfig {
        client_cert_file: s.file("client.crt"),
        client_key_file: s.file("client.key"),
        ..good.clone()
    };
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect_with(PostgresStore::connect_options(&mtls).unwrap())
        .await
        .unwrap();
    let (dn,): (Option<String>,) =
        sqlx::query_as("SELECT client_dn FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(dn.as_deref(), Some("/CN=apex"));

    let address = s.postgres.replace("127.0.0.1", "localhost");
    let wrong_ca = PostgresConfig { ca_file: s.file("other-ca.crt"), ..good.clone() };
    assert_names(&postgres_fails(&wrong_ca).await, "PostgreSQL", &address, &["UnknownIssuer"], &secrets);

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("wrong"), "not-the-password\n").unwrap();
    let wrong_password =
        PostgresConfig { password: SecretSource::File(dir.path().join("wrong")), ..good.clone() };
    let e = postgres_fails(&wrong_password).await;
    assert_names(&e, "PostgreSQL", &address, &["password authentication failed"], &secrets);
    assert!(!e.contains("not-the-password"), "{e}");

    let plaintext = PostgresConfig { ssl_mode: "disable".into(), ..good.clone() };
    assert_names(&postgres_fails(&plaintext).await, "PostgreSQL", &address, &["no encryption"], &secrets);

    // TLS demanded of the plaintext PostgreSQL of the other tests.
    let plain = support::config().postgres.url;
    support::require("postgres", "APEX_POSTGRES_URL", &plain);
    let tls_to_plain = PostgresConfig { url: plain.clone(), ssl_mode: "require".into(), ..good.clone() };
    let plain_address = plain.split('@').nth(1).unwrap().split('/').next().unwrap().to_owned();
    assert_names(
        &postgres_fails(&tls_to_plain).await,
        "PostgreSQL",
        &plain_address,
        &["TLS", "SSL"],
        &secrets,
    );

    let expired = s.expired_server(true).await;
    let at_expired = PostgresConfig {
        url: format!("postgres://apex@localhost:{}/apex", expired.addr.port()),
        ..good.clone()
    };
    let e = postgres_fails(&at_expired).await;
    assert_names(&e, "PostgreSQL", &format!("localhost:{}", expired.addr.port()), &["expired"], &secrets);

    let missing = PostgresConfig { password: SecretSource::Env("APEX_TLS_TEST_UNSET".into()), ..good };
    let e = postgres_fails(&missing).await;
    assert!(e.contains("postgres.password") && e.contains("$APEX_TLS_TEST_UNSET"), "{e}");
}

#[tokio::test]
async fn redis_over_tls_with_an_acl_user_and_each_wrong_setting_fails_by_name() {
    let s = secured();
    let secrets = s.secrets();
    let good = s.redis();
    let mut con =
        apex_ingest::store::redis::connect(&good, Duration::from_secs(5), Default::default()).await.unwrap();
    let who: String = redis::cmd("ACL").arg("WHOAMI").query_async(&mut con).await.unwrap();
    assert_eq!(who, "apex");
    let mtls = RedisConfig {
        client_cert_file: s.file("client.crt"),
        client_key_file: s.file("client.key"),
        ..good.clone()
    };
    RedisStore::connect(&mtls, "apex-tls-test").await.unwrap();

    let address = s.redis.replace("127.0.0.1", "localhost");
    let wrong_ca = RedisConfig { ca_file: s.file("other-ca.crt"), ..good.clone() };
    assert_names(&redis_fails(&wrong_ca).await, "Redis", &address, &["UnknownIssuer"], &secrets);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("wrong"), "not-the-password").unwrap();
    let wrong_password =
        RedisConfig { password: SecretSource::File(dir.path().join("wrong")), ..good.clone() };
    let e = redis_fails(&wrong_password).await;
    assert_names(&e, "Redis", &address, &["authentication failed"], &secrets);
    assert!(!e.contains("not-the-password"), "{e}");
    let plaintext =
        RedisConfig { url: format!("redis://{address}/"), ca_file: PathBuf::new(), ..good.clone() };
    assert_names(
        &redis_fails(&plaintext).await,
        "Redis",
        &address,
        &["reset", "closed", "broken", "eof"],
        &secrets,
    );
    let plain = support::redis_url();
    let plain_address = plain.trim_start_matches("redis://").trim_end_matches('/').to_owned();
    let tls_to_plain = RedisConfig { url: plain.replacen("redis://", "rediss://", 1), ..good.clone() };
    let e = redis_fails(&tls_to_plain).await;
    assert_names(&e, "Redis", &plain_address, &["no answer within"], &secrets);
    let expired = s.expired_server(false).await;
    let at_expired = RedisConfig { url: format!("rediss://localhost:{}/", expired.addr.port()), ..good };
    let e = redis_fails(&at_expired).await;
    assert_names(&e, "Redis", &format!("localhost:{}", expired.addr.port()), &["expired"], &secrets);
}

#[tokio::test]
async fn neo4j_over_verified_tls_with_a_password_and_each_wrong_setting_fails_by_name() {
    let s = secured();
    let secrets = s.secrets();
    let good = s.neo4j();
    // A batch written and read back through bolt+s, and removed again.
    let store = Neo4jStore::connect(&good).await.unwrap();
    let batch = support::mixed_batch(55, 5, rand::random(), 0.0);
    let (rows, _) = support::processed(&batch).await;
    let ids: Vec<_> = rows.iter().map(|r| r.record.id.clone()).collect();
    store.upsert_batch(&rows.iter().collect::<Vec<_>>()).await.unwrap();
    let nodes = support::held_by("graph", rows.iter().map(|r| &r.record));
    assert!(!nodes.is_empty());
    assert_eq!(
        store.present(&ids).await.unwrap(),
        nodes.into_iter().collect(),
        "records written over TLS are not in Neo4j"
    );
    store.remove_records(&ids).await.unwrap();
    // Routing (neo4j+s) and a client certificate (mTLS) on the same server.
    let routed = Neo4jConfig { uri: format!("neo4j+s://{}", s.neo4j), ..good.clone() };
    Neo4jStore::connect(&routed).await.unwrap();
    let mtls = Neo4jConfig {
        client_cert_file: s.file("client.crt"),
        client_key_file: s.file("client.key"),
        ..good.clone()
    };
    Neo4jStore::connect(&mtls).await.unwrap();

    let address = s.neo4j.clone();
    let wrong_ca = Neo4jConfig { ca_file: s.file("other-ca.crt"), ..good.clone() };
    assert_names(&neo4j_fails(&wrong_ca).await, "Neo4j", &address, &["UnknownIssuer"], &secrets);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("wrong"), "not-the-password").unwrap();
    let wrong_password =
        Neo4jConfig { password: SecretSource::File(dir.path().join("wrong")), ..good.clone() };
    let e = neo4j_fails(&wrong_password).await;
    assert_names(&e, "Neo4j", &address, &["unauthorized", "authentication"], &secrets);
    assert!(!e.contains("not-the-password"), "{e}");
    let plaintext = Neo4jConfig { uri: format!("bolt://{address}"), ca_file: PathBuf::new(), ..good.clone() };
    assert_names(&neo4j_fails(&plaintext).await, "Neo4j", &address, &["require TLS"], &secrets);
    let plain = support::neo4j().uri;
    let plain_address = plain.split_once("://").map_or(plain.as_str(), |(_, a)| a).to_owned();
    let tls_to_plain = Neo4jConfig { uri: format!("bolt+s://{plain_address}"), ..good.clone() };
    assert_names(
        &neo4j_fails(&tls_to_plain).await,
        "Neo4j",
        &plain_address,
        &["tls", "corrupt", "InvalidContentType", "no answer within"],
        &secrets,
    );
    let expired = s.expired_server(false).await;
    let expired_address = format!("localhost:{}", expired.addr.port());
    let at_expired = Neo4jConfig { uri: format!("bolt+s://{expired_address}"), ..good.clone() };
    assert_names(&neo4j_fails(&at_expired).await, "Neo4j", &expired_address, &["expired"], &secrets);
    let missing = Neo4jConfig { password: SecretSource::Env("APEX_TLS_TEST_UNSET".into()), ..good };
    let e = neo4j_fails(&missing).await;
    assert!(e.contains("neo4j.password") && e.contains("$APEX_TLS_TEST_UNSET"), "{e}");
}

/// `apex-ingest run` on the generator writes its records through the three
/// secured stores, passwords from files and from a variable, and prints none
/// (its log at debug level, and `--help`).
#[test]
fn the_pipeline_writes_through_the_secured_stores_and_prints_no_secret() {
    let s = secured();
    let secrets = s.secrets();
    let prefix = format!("apex-tls-{}", std::process::id());
    let dir = tempfile::tempdir().unwrap();
    let pg = s.postgres();
    let rd = s.redis();
    let neo = s.neo4j();
    let apex = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_apex-ingest"));
        c.env("APEX_METRICS_LISTEN", "").env("RUST_LOG", "debug");
        c
    };
    let file = dir.path().join("apex.toml");
    std::fs::write(&file, "").unwrap();
    let out = apex()
        .args(["run", "--config"])
        .arg(&file)
        .env("APEX_STORES_DATA_DIR", dir.path().join("data"))
        .env("APEX_SOURCE_EVENTS", "300")
        .env("APEX_SOURCE_SEED", std::process::id().to_string())
        .env("APEX_STORES_GRAPH", "neo4j")
        .env("APEX_NEO4J_URI", &neo.uri)
        .env("APEX_NEO4J_PASSWORD", neo.password.to_string())
        .env("APEX_NEO4J_CA_FILE", &neo.ca_file)
        .env("APEX_STORES_RELATIONAL", "postgres")
        .env("APEX_STORES_VECTOR", "pgvector")
        .env("APEX_STORES_CACHE", "redis")
        .env("APEX_STORES_REDIS_PREFIX", &prefix)
        .env("APEX_POSTGRES_URL", &pg.url)
        .env("APEX_POSTGRES_SSL_MODE", "verify-full")
        .env("APEX_POSTGRES_CA_FILE", &pg.ca_file)
        .env("APEX_POSTGRES_PASSWORD", pg.password.to_string())
        .env("APEX_REDIS_URL", &rd.url)
        .env("APEX_REDIS_USER", "apex")
        .env("APEX_REDIS_CA_FILE", &rd.ca_file)
        .env("APEX_REDIS_PASSWORD", "env:TLS_TEST_REDIS_PASSWORD")
        .env("TLS_TEST_REDIS_PASSWORD", &secrets[1])
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    for secret in &secrets {
        assert!(!text.contains(secret.as_str()), "a password in the output of run");
    }
    let help = apex().args(["run", "--help"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&help.stdout).contains(secrets[0].as_str()));

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut con = apex_ingest::store::redis::connect(&rd, Duration::from_secs(5), Default::default())
            .await
            .unwrap();
        let cached: usize =
            redis::cmd("SCARD").arg(format!("{prefix}:records")).query_async(&mut con).await.unwrap();
        assert!(cached > 0, "no record in the secured Redis under {prefix}");
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect_with(PostgresStore::connect_options(&pg).unwrap())
            .await
            .unwrap();
        let ids: Vec<String> = redis::cmd("SRANDMEMBER")
            .arg(format!("{prefix}:records"))
            .arg(20)
            .query_async(&mut con)
            .await
            .unwrap();
        let (found,): (i64,) = sqlx::query_as("SELECT count(*) FROM records WHERE id = ANY($1)")
            .bind(&ids)
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(
            found as usize,
            ids.len(),
            "records in the secured Redis but not in the secured PostgreSQL"
        );
        // The graph holds those that are not pings (its policy keeps pings as vehicle state).
        let state_kinds = apex_ingest::config::Config::default().graph.state_kinds;
        let nodes: Vec<String> =
            sqlx::query_scalar("SELECT id FROM records WHERE id = ANY($1) AND kind <> ALL($2)")
                .bind(&ids)
                .bind(&state_kinds)
                .fetch_all(&pool)
                .await
                .unwrap();
        let ids: Vec<_> = ids.into_iter().map(apex_ingest::model::RecordId::from_stored).collect();
        let graph = Neo4jStore::connect(&neo).await.unwrap();
        assert_eq!(graph.present(&ids).await.unwrap().len(), nodes.len(), "records not in the secured Neo4j");
    });
}

/// A `file:` password rotated while the store runs: once the Secret's file
/// and the server both hold the new one, the pool's new connections log in
/// with it, no restart.
#[tokio::test]
async fn a_rotated_postgres_password_file_is_used_for_new_connections() {
    use apex_ingest::store::PollCursors;
    use sqlx::AssertSqlSafe;
    let s = secured();
    let port = s.postgres.rsplit(':').next().unwrap();
    // The superuser has the Unix socket alone (scripts/services).
    let socket = sqlx::postgres::PgConnectOptions::new()
        .socket("/tmp")
        .port(port.parse().unwrap())
        .username("postgres")
        .database("apex");
    let admin = sqlx::PgPool::connect_with(socket).await.unwrap();
    let role = "apex_rotate_test";
    sqlx::query(AssertSqlSafe(format!(
        "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') THEN \
         CREATE ROLE {role} LOGIN IN ROLE apex; END IF; END $$"
    )))
    .execute(&admin)
    .await
    .unwrap();
    // Its sessions act as apex: tables it might create (migrations, on a new
    // database) belong to apex, as those of the other tests do.
    sqlx::query(AssertSqlSafe(format!("ALTER ROLE {role} SET role = 'apex'"))).execute(&admin).await.unwrap();
    let set_password = |p: &'static str| format!("ALTER ROLE {role} PASSWORD '{p}'");
    sqlx::query(AssertSqlSafe(set_password("first-password"))).execute(&admin).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("password");
    std::fs::write(&file, "first-password\n").unwrap();
    let config = PostgresConfig {
        url: format!("postgres://{role}@{}/apex", s.postgres.replace("127.0.0.1", "localhost")),
        password: SecretSource::File(file.clone()),
        secret_refresh: Duration::from_secs(1),
        max_connections: 1,
        ..s.postgres()
    };
    let store = PostgresStore::connect(&config, 384, None).await.unwrap();
    store.poll_cursor("rotation-test").await.unwrap();

    std::fs::write(&file, "second-password").unwrap();
    sqlx::query(AssertSqlSafe(set_password("second-password"))).execute(&admin).await.unwrap();
    sqlx::query(AssertSqlSafe(format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'"
    )))
    .execute(&admin)
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    // The terminated connection fails once; its replacement logs in with the new password.
    let mut answered = false;
    for _ in 0..3 {
        answered |= store.poll_cursor("rotation-test").await.is_ok();
    }
    assert!(answered, "no new connection with the rotated password");
}
