//! The broker's own log: `logs.format=json` writes one JSON object per line, and
//! `logs.delivery.url` ships the log as gzip'd JSON lines to an S3 server (s3s, in this
//! process) under `<prefix>/<cluster id>/<node id>/<yyyy>/<mm>/<dd>/<hh>/`, keeps it
//! through a store outage without holding up produce, and flushes at shutdown.

mod common;

use std::io::Read;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::s3::{S3Server, BUCKET};
use common::{free_port, BrokerProcess};
use rdkafka::producer::FutureRecord;
use serde_json::Value;

/// Every delivered log object under `prefix`, with its lines parsed.
fn delivered(s3: &S3Server, prefix: &str) -> Vec<(PathBuf, Vec<Value>)> {
    let root = s3.root.join(BUCKET).join(prefix);
    s3.objects()
        .into_iter()
        .filter(|p| p.starts_with(&root) && p.to_string_lossy().ends_with(".jsonl.gz"))
        .map(|p| {
            let mut text = String::new();
            flate2::read::GzDecoder::new(std::fs::File::open(&p).unwrap())
                .read_to_string(&mut text)
                .unwrap_or_else(|e| panic!("{} is not gzip: {e}", p.display()));
            let lines = text
                .lines()
                .map(|l| {
                    serde_json::from_str(l)
                        .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {l}", p.display()))
                })
                .collect();
            (p, lines)
        })
        .collect()
}

fn has_message(objects: &[(PathBuf, Vec<Value>)], needle: &str) -> bool {
    objects
        .iter()
        .flat_map(|(_, lines)| lines)
        .any(|l| l["message"].as_str().is_some_and(|m| m.contains(needle)))
}

async fn wait_for(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ready() {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Checks one JSON log line has the promised fields.
fn check_line(line: &Value, raw: &str) {
    for key in ["timestamp", "level", "target", "message"] {
        assert!(line[key].is_string(), "no {key} in {raw}");
    }
    assert_eq!(line["node_id"], 1, "{raw}");
    let ts = line["timestamp"].as_str().unwrap();
    assert!(ts.ends_with('Z') && ts.len() == 24, "timestamp {ts}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_delivered_through_a_store_outage_and_at_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let mut s3 = S3Server::start(&dir.path().join("s3"), 0).await;
    let data = dir.path().join("data");
    let port = free_port();
    let mut overrides: Vec<String> = s3.broker_config("tier");
    overrides.extend([
        "logs.format=json".to_string(),
        format!("logs.delivery.url=s3://{BUCKET}/broker-logs"),
        "logs.delivery.interval.ms=1000".to_string(),
    ]);
    let refs: Vec<&str> = overrides.iter().map(String::as_str).collect();
    let broker = BrokerProcess::start(&data, port, &refs);

    // stderr: every line is one JSON object with the promised fields.
    wait_for("the ready line on stderr", Duration::from_secs(30), || {
        broker.log().contains("broker ready")
    })
    .await;
    let log = broker.log();
    for raw in log.lines().filter(|l| !l.trim().is_empty()) {
        let line: Value =
            serde_json::from_str(raw).unwrap_or_else(|e| panic!("not JSON ({e}): {raw}"));
        check_line(&line, raw);
    }

    // Delivered: objects named by cluster, node and hour, holding the same lines.
    wait_for(
        "a delivered object with the ready line",
        Duration::from_secs(30),
        || has_message(&delivered(&s3, "broker-logs"), "broker ready"),
    )
    .await;
    let objects = delivered(&s3, "broker-logs");
    let (path, lines) = &objects[0];
    let rel: Vec<String> = path
        .strip_prefix(s3.root.join(BUCKET).join("broker-logs"))
        .unwrap()
        .iter()
        .map(|c| c.to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        rel.len(),
        7,
        "<cluster>/<node>/<yyyy>/<mm>/<dd>/<hh>/<file>: {rel:?}"
    );
    assert_eq!(rel[1], "1", "node id in {rel:?}");
    assert_eq!(rel[2].len(), 4);
    assert!(rel[3..6].iter().all(|p| p.len() == 2), "{rel:?}");
    let first_ms: i64 = rel[6].split('-').next().unwrap().parse().unwrap();
    assert!(first_ms > 1_700_000_000_000, "{rel:?}");
    for line in lines {
        check_line(line, &line.to_string());
    }

    // An outage: produce goes on, the log waits, then arrives.
    s3.stop().await;
    let producer = common::producer(&broker.bootstrap(), &[("acks", "1")]);
    common::create_topic(&broker.bootstrap(), "during-outage", 1, &[]).await;
    let started = Instant::now();
    for i in 0..200 {
        producer
            .send(
                FutureRecord::<(), str>::to("during-outage").payload(&format!("v{i}")),
                Duration::from_secs(10),
            )
            .await
            .expect("produce while the log store is down");
    }
    let took = started.elapsed();
    wait_for(
        "a failed delivery to be logged",
        Duration::from_secs(60),
        || broker.log().contains("log delivery failed"),
    )
    .await;
    s3.restart().await;
    wait_for(
        "the outage's lines to be delivered",
        Duration::from_secs(90),
        || {
            let objects = delivered(&s3, "broker-logs");
            // The warning about the outage, and the topic created during it.
            has_message(&objects, "log delivery failed")
                && objects
                    .iter()
                    .flat_map(|(_, lines)| lines)
                    .any(|l| l.to_string().contains("during-outage"))
        },
    )
    .await;
    eprintln!("200 produces during the outage took {took:?}");

    // Shutdown flushes the last lines.
    broker.terminate();
    let objects = delivered(&s3, "broker-logs");
    assert!(
        has_message(&objects, "stopped"),
        "the shutdown's lines were not delivered"
    );
    drop(dir);
}

#[test]
fn a_bad_delivery_url_stops_start_up_naming_the_key() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .args([
            "--override",
            "logs.delivery.url=ftp://nowhere/x",
            "--check-config",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("logs.delivery.url"), "{err}");
}

#[test]
fn a_failed_start_up_with_json_logs_writes_only_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    // The listener's port is taken: start-up fails binding it.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .args([
            "--override",
            &format!("listeners=PLAINTEXT://127.0.0.1:{port}"),
        ])
        .args(["--override", &format!("log.dirs={}", dir.path().display())])
        .args(["--override", "logs.format=json"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<Value> = err
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        lines.iter().any(|l| l["level"] == "ERROR"
            && l["message"]
                .as_str()
                .is_some_and(|m| m.contains("start-up failed"))),
        "{err}"
    );
}
