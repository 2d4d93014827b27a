//! The broker as a real process: kill -9 during acks=1 produce loses no acknowledged
//! record, a torn segment tail is cut on restart, and bad configuration stops
//! start-up with a message naming the key.

mod common;

use std::io::Write;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use rdkafka::producer::FutureRecord;

const T: Duration = Duration::from_secs(30);

/// Produces acks=1 records in the background until the broker dies; returns the
/// acknowledged (partition, offset, value) triples.
async fn produce_until_killed(
    bootstrap: String,
    topic: &'static str,
    kill_after: usize,
    proc_: BrokerProcess,
) -> Vec<(i32, i64, String)> {
    let acked = Arc::new(Mutex::new(Vec::new()));
    let p = producer(
        &bootstrap,
        &[
            ("acks", "1"),
            ("linger.ms", "2"),
            ("message.timeout.ms", "3000"),
            ("retries", "0"),
        ],
    );
    let mut killer = Some(proc_);
    let mut pending = Vec::new();
    let start = Instant::now();
    for i in 0.. {
        let value = format!("crash-{i:06}");
        match p.send_result(FutureRecord::to(topic).key(&value).payload(&value)) {
            Ok(f) => pending.push((value, f)),
            Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
        if pending.len() >= 200 {
            for (value, f) in pending.drain(..) {
                if let Ok(Ok(d)) = f.await {
                    acked.lock().unwrap().push((d.partition, d.offset, value));
                }
            }
        }
        if killer.is_some() && acked.lock().unwrap().len() >= kill_after {
            // Kill while more sends are in flight.
            for j in 0..200 {
                let value = format!("inflight-{j}");
                if let Ok(f) = p.send_result(FutureRecord::to(topic).key(&value).payload(&value)) {
                    pending.push((value, f));
                }
            }
            killer.take().unwrap().kill9();
        }
        if killer.is_none() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "produced too slowly"
        );
    }
    for (value, f) in pending.drain(..) {
        if let Ok(Ok(d)) = f.await {
            acked.lock().unwrap().push((d.partition, d.offset, value));
        }
    }
    let out = acked.lock().unwrap().clone();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_minus_nine_during_acks_1_produce_loses_no_acknowledged_record() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let broker = BrokerProcess::start(&data, port, &["log.segment.bytes=65536"]);
    create_topic(&broker.bootstrap(), "crash", 3, &[]).await;
    let acked = produce_until_killed(broker.bootstrap(), "crash", 3000, broker).await;
    assert!(acked.len() >= 3000, "only {} acknowledged", acked.len());

    let broker = BrokerProcess::start(&data, port, &["log.segment.bytes=65536"]);
    let got = consume_all(&broker.bootstrap(), "crash", 3, T);
    let stored: std::collections::HashMap<(i32, i64), String> = got
        .iter()
        .map(|g| {
            (
                (g.partition, g.offset),
                String::from_utf8(g.value.clone().unwrap()).unwrap(),
            )
        })
        .collect();
    for (partition, offset, value) in &acked {
        assert_eq!(
            stored.get(&(*partition, *offset)),
            Some(value),
            "acknowledged record {value} at {partition}/{offset} survives kill -9"
        );
    }
    // Producing continues after the recovered end.
    let p = producer(&broker.bootstrap(), &[]);
    let d = p
        .send(
            FutureRecord::to("crash")
                .key("after")
                .payload("after")
                .partition(0),
            T,
        )
        .await
        .unwrap();
    let max0 = got
        .iter()
        .filter(|g| g.partition == 0)
        .map(|g| g.offset)
        .max()
        .unwrap_or(-1);
    assert_eq!(d.offset, max0 + 1);
    broker.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_segment_tail_is_truncated_on_restart() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let broker = BrokerProcess::start(&data, port, &[]);
    create_topic(&broker.bootstrap(), "torn", 1, &[]).await;
    let p = producer(&broker.bootstrap(), &[("linger.ms", "0")]);
    for i in 0..50 {
        p.send(
            FutureRecord::<(), _>::to("torn").payload(&format!("r{i}")),
            T,
        )
        .await
        .unwrap();
    }
    drop(p);
    broker.kill9();
    // A half-written batch at the end of the active segment, as a crash mid-write leaves.
    let seg = data.join("torn-0").join("00000000000000000000.log");
    let mut f = std::fs::OpenOptions::new().append(true).open(&seg).unwrap();
    let len_before = f.metadata().unwrap().len();
    f.write_all(&[
        0, 0, 0, 0, 0, 0, 0, 50, 0, 0, 1, 0, 0xde, 0xad, 0xbe, 0xef, 2, 9, 9,
    ])
    .unwrap();
    drop(f);

    let broker = BrokerProcess::start(&data, port, &[]);
    assert_eq!(
        std::fs::metadata(&seg).unwrap().len(),
        len_before,
        "torn tail cut back to the last whole batch"
    );
    let got = consume_all(&broker.bootstrap(), "torn", 1, T);
    assert_eq!(got.len(), 50);
    assert_eq!(got[49].value.as_deref(), Some(&b"r49"[..]));
    let p = producer(&broker.bootstrap(), &[]);
    let d = p
        .send(FutureRecord::<(), _>::to("torn").payload("r50"), T)
        .await
        .unwrap();
    assert_eq!(d.offset, 50);
    // A corrupted byte inside a batch (bad CRC) cuts the log at that batch too.
    drop(p);
    broker.kill9();
    let bytes = std::fs::read(&seg).unwrap();
    let mut corrupted = bytes.clone();
    let last = corrupted.len() - 2;
    corrupted[last] ^= 0xff;
    std::fs::write(&seg, &corrupted).unwrap();
    let broker = BrokerProcess::start(&data, port, &[]);
    let got = consume_all(&broker.bootstrap(), "torn", 1, T);
    assert_eq!(
        got.len(),
        50,
        "the batch with a bad CRC is dropped, earlier ones kept"
    );
    broker.terminate();
}

fn run_strata(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn configuration_errors_name_the_key_and_stop_start_up() {
    let (code, err) = run_strata(&["--override", "log.retention.mss=5"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("log.retention.mss"), "{err}");
    let (code, err) = run_strata(&["--override", "num.partitions=many"], &[]);
    assert_eq!(code, 2);
    assert!(
        err.contains("num.partitions") && err.contains("many"),
        "{err}"
    );
    let (code, err) = run_strata(&["--override", "listeners=PLAINTEXT:/nope"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("listeners"), "{err}");
    let (code, err) = run_strata(
        &["--check-config"],
        &[("STRATA_LOG_RETENTION_HOURS", "zero")],
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("log.retention.hours") && err.contains("STRATA_LOG_RETENTION_HOURS"),
        "{err}"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "[log]\nsegment.bytez = 5\n").unwrap();
    let (code, err) = run_strata(&["--config", file.to_str().unwrap()], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("log.segment.bytez"), "{err}");
    // A good file, environment and override combine; later sources win.
    std::fs::write(&file, "num.partitions = 3\n[log]\nretention.ms = 1000\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args([
            "--config",
            file.to_str().unwrap(),
            "--override",
            "num.partitions=4",
            "--check-config",
        ])
        .env("STRATA_LOG_SEGMENT_BYTES", "2048")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("* num.partitions = 4"), "{text}");
    assert!(text.contains("* log.retention.ms = 1000"), "{text}");
    assert!(text.contains("* log.segment.bytes = 2048"), "{text}");
}

#[test]
fn an_unusable_log_dir_stops_start_up_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let (code, err) = run_strata(
        &[
            "--override",
            &format!("log.dirs={}", file.display()),
            "--override",
            "listeners=PLAINTEXT://127.0.0.1:0",
        ],
        &[],
    );
    assert_ne!(code, 0);
    assert!(err.contains("not-a-dir"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_corrupt_indexes_are_rebuilt() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let broker = BrokerProcess::start(&data, port, &["log.index.interval.bytes=100"]);
    create_topic(&broker.bootstrap(), "idx", 1, &[("segment.bytes", "4000")]).await;
    let p = producer(&broker.bootstrap(), &[("linger.ms", "0")]);
    // Recent timestamps: older ones would be deleted by the default 7-day retention.
    let base = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        - 600_000;
    for i in 0..100i64 {
        p.send(
            FutureRecord::<(), _>::to("idx")
                .payload(&format!("{i:0>50}"))
                .timestamp(base + i),
            T,
        )
        .await
        .unwrap();
    }
    drop(p);
    broker.terminate();
    let part = data.join("idx-0");
    let mut removed = 0;
    for e in std::fs::read_dir(&part).unwrap() {
        let path = e.unwrap().path();
        match path.extension().and_then(|x| x.to_str()) {
            Some("timeindex") => {
                std::fs::remove_file(&path).unwrap();
                removed += 1;
            }
            // Garbage in an offset index: entries past the end of the log.
            Some("index") => std::fs::write(&path, [0xffu8; 16]).unwrap(),
            _ => {}
        }
    }
    assert!(removed >= 3, "several segments ({removed})");
    let broker = BrokerProcess::start(&data, port, &["log.index.interval.bytes=100"]);
    let c = consumer(&broker.bootstrap(), &[]);
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset("idx", 0, rdkafka::Offset::Offset(base + 77))
        .unwrap();
    let r = rdkafka::consumer::Consumer::offsets_for_times(&c, tpl, T).unwrap();
    assert_eq!(
        r.find_partition("idx", 0).unwrap().offset(),
        rdkafka::Offset::Offset(77),
        "time index rebuilt"
    );
    let got = consume_all(&broker.bootstrap(), "idx", 1, T);
    assert_eq!(got.len(), 100);
    assert!(got.iter().enumerate().all(|(i, g)| g.offset == i as i64));
    for e in std::fs::read_dir(&part).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_some_and(|x| x == "timeindex") {
            assert!(
                std::fs::metadata(&path).unwrap().len() > 0,
                "{} rebuilt",
                path.display()
            );
        }
    }
    broker.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_offset_commits_survive_kill_minus_nine() {
    use kafka_protocol::messages::{
        offset_commit_request, offset_fetch_request, ApiKey, GroupId, OffsetCommitRequest,
        OffsetFetchRequest, RequestKind, ResponseKind, TopicName,
    };
    use kafka_protocol::protocol::StrBytes;
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let broker = BrokerProcess::start(&data, port, &[]);
    create_topic(&broker.bootstrap(), "committed", 4, &[]).await;
    let mut raw = RawClient::connect(&broker.bootstrap());
    for round in 0..50i64 {
        let req = OffsetCommitRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("durable")))
            .with_generation_id_or_member_epoch(-1)
            .with_topics(vec![
                offset_commit_request::OffsetCommitRequestTopic::default()
                    .with_name(TopicName(StrBytes::from_static_str("committed")))
                    .with_partitions(
                        (0..4)
                            .map(|p| {
                                offset_commit_request::OffsetCommitRequestPartition::default()
                                    .with_partition_index(p)
                                    .with_committed_offset(round * 10 + p as i64)
                                    .with_committed_metadata(Some(StrBytes::from_string(format!(
                                        "round-{round}"
                                    ))))
                            })
                            .collect(),
                    ),
            ]);
        let ResponseKind::OffsetCommit(r) =
            raw.call(ApiKey::OffsetCommit, 8, RequestKind::OffsetCommit(req))
        else {
            panic!()
        };
        assert!(r.topics[0].partitions.iter().all(|p| p.error_code == 0));
    }
    drop(raw);
    broker.kill9();
    let broker = BrokerProcess::start(&data, port, &[]);
    let mut raw = RawClient::connect(&broker.bootstrap());
    let ResponseKind::OffsetFetch(f) = raw.call(
        ApiKey::OffsetFetch,
        7,
        RequestKind::OffsetFetch(
            OffsetFetchRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str("durable")))
                .with_topics(Some(vec![
                    offset_fetch_request::OffsetFetchRequestTopic::default()
                        .with_name(TopicName(StrBytes::from_static_str("committed")))
                        .with_partition_indexes(vec![0, 1, 2, 3]),
                ])),
        ),
    ) else {
        panic!()
    };
    for p in &f.topics[0].partitions {
        assert_eq!(
            p.committed_offset,
            490 + p.partition_index as i64,
            "the last acknowledged commit survives kill -9"
        );
        assert_eq!(p.metadata.as_ref().unwrap().as_str(), "round-49");
    }
    broker.terminate();
}
