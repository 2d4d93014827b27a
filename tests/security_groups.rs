//! Security groups at accept (`security.groups.file`): a listener admits only the peers
//! its groups allow, refuses others before answering a byte and counts them; a
//! listener bound beyond loopback without a group, or a bad file, stops start-up.
//! (Traffic from other hosts through network namespaces comes with the reload work.)

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::{RawClient, TestBroker};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, RequestKind, ResponseKind};
use strata::config::BrokerConfig;

fn groups_file(dir: &std::path::Path, cidr: &str) -> String {
    let path = dir.join(format!("groups-{}.json", cidr.replace('/', "_")));
    std::fs::write(
        &path,
        format!(
            r#"{{"security_groups": {{"g": {{"ingress": [{{"cidr": "{cidr}", "ports": "all"}}]}}}},
                "listeners": {{"PLAINTEXT": ["g"]}}}}"#
        ),
    )
    .unwrap();
    path.display().to_string()
}

fn scrape(b: &TestBroker) -> String {
    let addr = b.running.as_ref().and_then(|r| r.metrics_addr).unwrap();
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: strata\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).unwrap();
    out
}

fn denied(b: &TestBroker) -> f64 {
    scrape(b)
        .lines()
        .find(|l| l.starts_with("strata_security_group_denied_total{listener=\"PLAINTEXT\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_no_rule_admits_is_closed_before_a_byte_and_counted() {
    let files = tempfile::tempdir().unwrap();
    // 127.0.0.1 is not in 10.99.0.0/16: refused.
    let file = groups_file(files.path(), "10.99.0.0/16");
    let b = TestBroker::start_with(&[
        &format!("security.groups.file={file}"),
        "metrics.listener=127.0.0.1:0",
    ])
    .await;
    assert_eq!(denied(&b), 0.0);
    for _ in 0..3 {
        let mut s = std::net::TcpStream::connect(&b.bootstrap).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        // An ApiVersions request gets no answer: the connection is closed at once.
        let _ = s.write_all(&[0, 0, 0, 10, 0, 18, 0, 0, 0, 0, 0, 1, 0, 0]);
        let mut buf = [0u8; 16];
        let n = s.read(&mut buf).unwrap_or(0);
        assert_eq!(n, 0, "a refused peer reads nothing");
    }
    assert_eq!(denied(&b), 3.0);
    b.stop().await;

    // The same broker with a rule for 127.0.0.1/32 serves it.
    let file = groups_file(files.path(), "127.0.0.1/32");
    let b = TestBroker::start_with(&[
        &format!("security.groups.file={file}"),
        "metrics.listener=127.0.0.1:0",
    ])
    .await;
    let mut raw = RawClient::connect(&b.bootstrap);
    match raw.call(
        ApiKey::ApiVersions,
        3,
        RequestKind::ApiVersions(ApiVersionsRequest::default()),
    ) {
        ResponseKind::ApiVersions(r) => assert_eq!(r.error_code, 0),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(denied(&b), 0.0);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unguarded_listener_beyond_loopback_or_a_bad_file_stops_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let logs = format!("log.dirs={}", dir.path().join("logs").display());
    let start = |overrides: Vec<String>| async move {
        let config = BrokerConfig::load(None, Vec::new(), &overrides).expect("config");
        match strata::server::start(config).await {
            Ok(r) => {
                r.shutdown().await;
                None
            }
            Err(e) => Some(format!("{e:#}")),
        }
    };
    let err = start(vec![logs.clone(), "listeners=PLAINTEXT://0.0.0.0:0".into()])
        .await
        .expect("refused");
    assert!(
        err.contains("PLAINTEXT") && err.contains("security.groups.file"),
        "{err}"
    );
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"security_groups": {"g": {"ingress": [{"cidr": "10.0.0.0/40", "ports": 1}]}}}"#,
    )
    .unwrap();
    let err = start(vec![
        logs.clone(),
        "listeners=PLAINTEXT://127.0.0.1:0".into(),
        format!("security.groups.file={}", bad.display()),
    ])
    .await
    .expect("refused");
    assert!(
        err.contains("10.0.0.0/40") && err.contains("bad.json"),
        "{err}"
    );
    // An explicit 0.0.0.0/0 rule opens a listener bound to every address.
    let open = groups_file(dir.path(), "0.0.0.0/0");
    assert_eq!(
        start(vec![
            logs,
            "listeners=PLAINTEXT://0.0.0.0:0".into(),
            format!("security.groups.file={open}"),
        ])
        .await,
        None
    );
}
