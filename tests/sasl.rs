//! SASL listeners: SCRAM-SHA-512, SCRAM-SHA-256 and PLAIN with librdkafka, users
//! managed with AlterUserScramCredentials / DescribeUserScramCredentials and kept in
//! the metadata quorum, a wrong password refused (counted, the broker keeps serving),
//! nothing but ApiVersions and SASL before authentication, and KIP-368 sessions.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::{RawClient, TestBroker};
use kafka_protocol::messages::alter_user_scram_credentials_request::{
    ScramCredentialDeletion, ScramCredentialUpsertion,
};
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, ApiKey, DescribeUserScramCredentialsRequest, RequestKind,
    ResponseKind, SaslAuthenticateRequest, SaslHandshakeRequest,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::producer::FutureRecord;
use strata::scram::Mechanism;

const SALT: &[u8] = b"0123456789abcdef";

/// Upserts `user` with `password` for `mechanism` (the client salts, as admin clients do).
fn upsert(raw: &mut RawClient, user: &str, password: &str, mechanism: Mechanism) -> i16 {
    let salted = mechanism.salted_password(password.as_bytes(), SALT, 4096);
    let req = AlterUserScramCredentialsRequest::default().with_upsertions(vec![
        ScramCredentialUpsertion::default()
            .with_name(StrBytes::from_string(user.into()))
            .with_mechanism(mechanism.code())
            .with_iterations(4096)
            .with_salt(SALT.to_vec().into())
            .with_salted_password(salted.into()),
    ]);
    match raw.call(
        ApiKey::AlterUserScramCredentials,
        0,
        RequestKind::AlterUserScramCredentials(req),
    ) {
        ResponseKind::AlterUserScramCredentials(r) => r.results[0].error_code,
        other => panic!("unexpected {other:?}"),
    }
}

fn delete(raw: &mut RawClient, user: &str, mechanism: Mechanism) -> i16 {
    let req = AlterUserScramCredentialsRequest::default().with_deletions(vec![
        ScramCredentialDeletion::default()
            .with_name(StrBytes::from_string(user.into()))
            .with_mechanism(mechanism.code()),
    ]);
    match raw.call(
        ApiKey::AlterUserScramCredentials,
        0,
        RequestKind::AlterUserScramCredentials(req),
    ) {
        ResponseKind::AlterUserScramCredentials(r) => r.results[0].error_code,
        other => panic!("unexpected {other:?}"),
    }
}

fn sasl_client(
    bootstrap: &str,
    mechanism: &str,
    user: &str,
    password: &str,
) -> rdkafka::ClientConfig {
    let mut c = common::client_config(bootstrap);
    c.set("security.protocol", "sasl_plaintext")
        .set("sasl.mechanism", mechanism)
        .set("sasl.username", user)
        .set("sasl.password", password)
        .set("message.timeout.ms", "8000");
    c
}

async fn produce(config: &rdkafka::ClientConfig, topic: &str) -> Result<(), String> {
    produce_within(config, topic, 8).await
}

/// For expected refusals: fails within 3 s.
async fn refused(config: &rdkafka::ClientConfig, topic: &str) -> bool {
    produce_within(config, topic, 3).await.is_err()
}

async fn produce_within(
    config: &rdkafka::ClientConfig,
    topic: &str,
    seconds: u64,
) -> Result<(), String> {
    let mut config = config.clone();
    config.set("message.timeout.ms", (seconds * 1000).to_string());
    let producer: rdkafka::producer::FutureProducer = config.create().unwrap();
    producer
        .send(
            FutureRecord::<(), str>::to(topic).payload("v"),
            Duration::from_secs(seconds),
        )
        .await
        .map(|_| ())
        .map_err(|(e, _)| e.to_string())
}

fn failed_auth_count(b: &TestBroker) -> f64 {
    let addr = b.running.as_ref().and_then(|r| r.metrics_addr).unwrap();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.lines()
        .find(|l| {
            l.starts_with("kafka_server_socket_server_metrics_failed_authentication_total{listener=\"SASL_PLAINTEXT\"}")
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

async fn start(extra: &[&str]) -> (TestBroker, String) {
    let mut overrides = vec![
        "listeners=PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0",
        "sasl.enabled.mechanisms=SCRAM-SHA-512,SCRAM-SHA-256,PLAIN",
        "metrics.listener=127.0.0.1:0",
    ];
    overrides.extend_from_slice(extra);
    let b = TestBroker::start_with(&overrides).await;
    let sasl = b.running.as_ref().unwrap().addrs[1].to_string();
    (b, sasl)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_and_plain_users_produce_and_a_wrong_password_is_refused() {
    let (b, sasl) = start(&[]).await;
    let mut admin = RawClient::connect(&b.bootstrap);
    assert_eq!(
        upsert(&mut admin, "alice", "alice-secret", Mechanism::Sha512),
        0
    );
    assert_eq!(
        upsert(&mut admin, "alice", "alice-secret", Mechanism::Sha256),
        0
    );
    // Described with mechanisms and iterations, never a secret.
    match admin.call(
        ApiKey::DescribeUserScramCredentials,
        0,
        RequestKind::DescribeUserScramCredentials(DescribeUserScramCredentialsRequest::default()),
    ) {
        ResponseKind::DescribeUserScramCredentials(r) => {
            assert_eq!(r.results.len(), 1);
            assert_eq!(r.results[0].user.as_str(), "alice");
            let mut infos: Vec<(i8, i32)> = r.results[0]
                .credential_infos
                .iter()
                .map(|c| (c.mechanism, c.iterations))
                .collect();
            infos.sort();
            assert_eq!(infos, vec![(1, 4096), (2, 4096)]);
        }
        other => panic!("unexpected {other:?}"),
    }
    for mechanism in ["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] {
        produce(
            &sasl_client(&sasl, mechanism, "alice", "alice-secret"),
            "sasl",
        )
        .await
        .unwrap_or_else(|e| panic!("{mechanism}: {e}"));
    }
    let before = failed_auth_count(&b);
    assert!(
        refused(
            &sasl_client(&sasl, "SCRAM-SHA-512", "alice", "guess"),
            "sasl"
        )
        .await,
        "a wrong password is refused"
    );
    assert!(
        refused(&sasl_client(&sasl, "PLAIN", "mallory", "x"), "sasl").await,
        "an unknown user is refused"
    );
    assert!(failed_auth_count(&b) >= before + 2.0);
    // The broker keeps serving everyone else.
    produce(
        &sasl_client(&sasl, "SCRAM-SHA-512", "alice", "alice-secret"),
        "sasl",
    )
    .await
    .expect("still serving");

    // A deleted credential no longer logs in.
    assert_eq!(delete(&mut admin, "alice", Mechanism::Sha512), 0);
    assert_eq!(
        delete(&mut admin, "alice", Mechanism::Sha512),
        91,
        "RESOURCE_NOT_FOUND"
    );
    assert!(
        refused(
            &sasl_client(&sasl, "SCRAM-SHA-512", "alice", "alice-secret"),
            "sasl"
        )
        .await
    );
    // Bad upserts are refused with Kafka's codes.
    let req = AlterUserScramCredentialsRequest::default().with_upsertions(vec![
        ScramCredentialUpsertion::default()
            .with_name(StrBytes::from_static_str("bob"))
            .with_mechanism(2)
            .with_iterations(10)
            .with_salt(SALT.to_vec().into())
            .with_salted_password(vec![1; 64].into()),
    ]);
    match admin.call(
        ApiKey::AlterUserScramCredentials,
        0,
        RequestKind::AlterUserScramCredentials(req),
    ) {
        ResponseKind::AlterUserScramCredentials(r) => {
            assert_eq!(r.results[0].error_code, 93, "UNACCEPTABLE_CREDENTIAL")
        }
        other => panic!("unexpected {other:?}"),
    }
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_api_versions_and_sasl_before_authentication() {
    let (b, sasl) = start(&["connections.max.reauth.ms=60000"]).await;
    // Metadata first: the connection is closed unanswered.
    let mut raw = RawClient::connect(&sasl);
    raw.send(
        ApiKey::Metadata,
        12,
        &RequestKind::Metadata(kafka_protocol::messages::MetadataRequest::default()),
    );
    assert!(raw.read_frame().is_err(), "closed before authentication");
    // The handshake names the mechanisms; an unknown one is refused.
    let mut raw = RawClient::connect(&sasl);
    match raw.call(
        ApiKey::SaslHandshake,
        1,
        RequestKind::SaslHandshake(
            SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("GSSAPI")),
        ),
    ) {
        ResponseKind::SaslHandshake(r) => {
            assert_eq!(r.error_code, 33, "UNSUPPORTED_SASL_MECHANISM");
            let names: Vec<&str> = r.mechanisms.iter().map(|m| m.as_str()).collect();
            assert_eq!(names, ["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"]);
        }
        other => panic!("unexpected {other:?}"),
    }
    // PLAIN by hand: the session lifetime is returned (KIP-368).
    let mut admin = RawClient::connect(&b.bootstrap);
    assert_eq!(upsert(&mut admin, "carol", "pw", Mechanism::Sha512), 0);
    let mut raw = RawClient::connect(&sasl);
    match raw.call(
        ApiKey::SaslHandshake,
        1,
        RequestKind::SaslHandshake(
            SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN")),
        ),
    ) {
        ResponseKind::SaslHandshake(r) => assert_eq!(r.error_code, 0),
        other => panic!("unexpected {other:?}"),
    }
    match raw.call(
        ApiKey::SaslAuthenticate,
        1,
        RequestKind::SaslAuthenticate(
            SaslAuthenticateRequest::default().with_auth_bytes(b"\0carol\0pw".to_vec().into()),
        ),
    ) {
        ResponseKind::SaslAuthenticate(r) => {
            assert_eq!(r.error_code, 0);
            assert_eq!(r.session_lifetime_ms, 60000);
        }
        other => panic!("unexpected {other:?}"),
    }
    // Authenticated: Metadata is served.
    match raw.call(
        ApiKey::Metadata,
        12,
        RequestKind::Metadata(kafka_protocol::messages::MetadataRequest::default()),
    ) {
        ResponseKind::Metadata(r) => assert!(!r.brokers.is_empty()),
        other => panic!("unexpected {other:?}"),
    }
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_re_authenticates_before_its_session_ends() {
    let (b, sasl) = start(&["connections.max.reauth.ms=1500"]).await;
    let mut admin = RawClient::connect(&b.bootstrap);
    assert_eq!(upsert(&mut admin, "dave", "pw", Mechanism::Sha512), 0);
    let config = sasl_client(&sasl, "SCRAM-SHA-512", "dave", "pw");
    let producer: rdkafka::producer::FutureProducer = config.create().unwrap();
    // Produce across several session lifetimes on the same connection.
    let until = std::time::Instant::now() + Duration::from_secs(5);
    let mut sent = 0;
    while std::time::Instant::now() < until {
        producer
            .send(
                FutureRecord::<(), str>::to("reauth").payload("v"),
                Duration::from_secs(8),
            )
            .await
            .expect("acknowledged while re-authenticating");
        sent += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(sent > 10);
    drop(producer);

    // A connection that does not re-authenticate is closed once its session is over.
    let mut raw = RawClient::connect(&sasl);
    let _ = raw.call(
        ApiKey::SaslHandshake,
        1,
        RequestKind::SaslHandshake(
            SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN")),
        ),
    );
    match raw.call(
        ApiKey::SaslAuthenticate,
        1,
        RequestKind::SaslAuthenticate(
            SaslAuthenticateRequest::default().with_auth_bytes(b"\0dave\0pw".to_vec().into()),
        ),
    ) {
        ResponseKind::SaslAuthenticate(r) => {
            assert_eq!((r.error_code, r.session_lifetime_ms), (0, 1500))
        }
        other => panic!("unexpected {other:?}"),
    }
    // Past the 1.5 s lifetime (a fixed wait is safe: the session cannot outlive it).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    raw.send(
        ApiKey::Metadata,
        12,
        &RequestKind::Metadata(kafka_protocol::messages::MetadataRequest::default()),
    );
    assert!(raw.read_frame().is_err(), "closed after the session ended");
    b.stop().await;
}

/// `strata storage format --add-scram` creates the first user before the first start
/// (as `kafka-storage format --add-scram`), never printing the password, and refuses to
/// format a directory twice unless `--ignore-formatted`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_format_adds_the_first_scram_user() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let format = |extra: &[&str]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_strata"));
        cmd.args(["storage", "format"])
            .arg("--override")
            .arg(format!("log.dirs={}", data.display()))
            .args(extra);
        cmd.output().unwrap()
    };
    let out = format(&[
        "--add-scram",
        "SCRAM-SHA-512=[name=admin,password=admin-secret]",
        "--cluster-id",
        "MkU3OEVBNTcwNTJENDM2Qk",
    ]);
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("admin") && !text.contains("admin-secret"),
        "{text}"
    );
    let again = format(&["--add-scram", "SCRAM-SHA-512=[name=admin,password=x]"]);
    assert_eq!(again.status.code(), Some(1), "already formatted");
    assert!(String::from_utf8_lossy(&again.stderr).contains("--ignore-formatted"));

    let port = common::free_port();
    let broker = common::BrokerProcess::start(
        &data,
        port,
        &[
            &format!("listeners=SASL_PLAINTEXT://127.0.0.1:{port}"),
            "sasl.enabled.mechanisms=SCRAM-SHA-512",
        ],
    );
    let addr = format!("127.0.0.1:{port}");
    produce(
        &sasl_client(&addr, "SCRAM-SHA-512", "admin", "admin-secret"),
        "first",
    )
    .await
    .expect("the formatted user logs in");
    assert!(
        refused(
            &sasl_client(&addr, "SCRAM-SHA-512", "admin", "wrong"),
            "first"
        )
        .await
    );
    let log = std::fs::read_to_string(data.with_extension(format!("{port}.log"))).unwrap();
    assert!(!log.contains("admin-secret"), "no password in the log");
    let props = std::fs::read_to_string(data.join("meta.properties")).unwrap();
    assert!(
        props.contains("cluster.id=MkU3OEVBNTcwNTJENDM2Qk"),
        "{props}"
    );
    drop(broker);
}

/// Resident memory of process `pid` in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Hostile input on a SASL listener, from strangers that never authenticate: frames
/// claiming 2 GB, frames over `sasl.server.max.receive.size` (closed before the broker
/// reads or allocates them), garbage frames just under it, requests before
/// authentication. Thousands of them close only their own connections, the broker's
/// memory does not grow with them, and a real user still logs in and produces.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_hostile_frames_neither_crash_nor_grow_the_broker() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["storage", "format", "--override"])
        .arg(format!("log.dirs={}", data.display()))
        .args([
            "--add-scram",
            "SCRAM-SHA-512=[name=ann,password=ann-secret]",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let port = common::free_port();
    let broker = common::BrokerProcess::start(
        &data,
        port,
        &[&format!("listeners=SASL_PLAINTEXT://127.0.0.1:{port}")],
    );
    let addr = format!("127.0.0.1:{port}");
    produce(
        &sasl_client(&addr, "SCRAM-SHA-512", "ann", "ann-secret"),
        "warm",
    )
    .await
    .expect("ann logs in");
    let pid = broker.child.id();
    let before = rss_kib(pid);

    // The broker closes the connection: reading ends (EOF or reset) within 10 s.
    let closed = |s: &mut std::net::TcpStream| {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 64];
        loop {
            match s.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) => {
                    return !matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    )
                }
            }
        }
    };
    let garbage = vec![0xA5u8; 500 * 1024];
    for round in 0..400 {
        // A frame claiming 2 GB; then one of 1 MiB (over the 512 KiB unauthenticated
        // limit), announced but never sent.
        for claim in [i32::MAX, 1 << 20] {
            let mut s = std::net::TcpStream::connect(&addr).unwrap();
            s.write_all(&claim.to_be_bytes()).unwrap();
            assert!(closed(&mut s), "round {round}: claim {claim} not refused");
        }
        // 500 KiB of garbage, under the limit: read, undecodable, closed.
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        let _ = s.write_all(&(garbage.len() as i32).to_be_bytes());
        let _ = s.write_all(&garbage);
        assert!(closed(&mut s), "round {round}: garbage not refused");
        // A Metadata request before authenticating.
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        // Metadata v1: null client id, null topic list (all topics).
        let metadata = [
            0u8, 0, 0, 14, 0, 3, 0, 1, 0, 0, 0, 7, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        ];
        let _ = s.write_all(&metadata);
        assert!(
            closed(&mut s),
            "round {round}: request before SASL not refused"
        );
    }
    let after = rss_kib(pid);
    // 400 rounds moved 200 MB of garbage and claimed 800 GB; a leak of either shows.
    assert!(
        after < before + 64 * 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );
    produce(
        &sasl_client(&addr, "SCRAM-SHA-512", "ann", "ann-secret"),
        "after",
    )
    .await
    .expect("ann still produces");
    let log = std::fs::read_to_string(data.with_extension(format!("{port}.log"))).unwrap();
    assert!(!log.contains("ann-secret"), "no password in the log");
    drop(broker);
}
