//! Tiered storage against a real S3 protocol server (s3s-fs in process): uploads,
//! local trimming by local retention, byte-exact reads of history from the object
//! store, with librdkafka and raw Fetch requests.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::idempotent::{batch as idempotent_batch, init_producer_id, produce as produce_raw};
use common::s3::S3Server;
use common::*;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use rdkafka::admin::{AlterConfig, ResourceSpecifier};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use strata::tiered::store::ObjectKind;
use strata::tiered::RemoteStore;

const T: Duration = Duration::from_secs(60);

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// An S3 server in a temporary directory and a broker tiering to it under `prefix`
/// (the directory handle keeps the data alive; `cfg` restarts the broker the same way).
async fn start_tiered(
    prefix: &str,
    extra: &[&str],
) -> (tempfile::TempDir, S3Server, Vec<String>, TestBroker) {
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(dir.path(), 0).await;
    let cfg = tiering_config(&s3, prefix, extra);
    let b = TestBroker::start_with(&refs(&cfg)).await;
    (dir, s3, cfg, b)
}

/// One raw Fetch v12 of `topic` at (partition, offset) pairs.
fn raw_fetch(
    raw: &mut RawClient,
    topic: &str,
    at: &[(i32, i64)],
    partition_max: i32,
    max_bytes: i32,
    max_wait_ms: i32,
) -> FetchResponse {
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(max_bytes)
        .with_topics(vec![fetch_request::FetchTopic::default()
            .with_topic(TopicName(s(topic)))
            .with_partitions(
                at.iter()
                    .map(|&(p, offset)| {
                        fetch_request::FetchPartition::default()
                            .with_partition(p)
                            .with_fetch_offset(offset)
                            .with_partition_max_bytes(partition_max)
                    })
                    .collect(),
            )]);
    let ResponseKind::Fetch(resp) = raw.call(ApiKey::Fetch, 12, RequestKind::Fetch(req)) else {
        panic!("not a Fetch response")
    };
    resp
}

/// Broker overrides for fast tiering against `s3`.
fn tiering_config(s3: &S3Server, prefix: &str, extra: &[&str]) -> Vec<String> {
    let mut cfg = s3.broker_config(prefix);
    cfg.push("remote.log.manager.task.interval.ms=100".into());
    cfg.push("log.retention.check.interval.ms=100".into());
    cfg.extend(extra.iter().map(|e| e.to_string()));
    cfg
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Produces `count` keyed records with a header to each partition.
/// Record `i` of every partition is stamped `base_ts + i` ms.
async fn produce(bootstrap: &str, topic: &str, partitions: i32, count: usize, base_ts: i64) {
    let p = producer(bootstrap, &[("linger.ms", "20"), ("batch.size", "16384")]);
    let mut pending = Vec::new();
    for part in 0..partitions {
        for i in 0..count {
            let key = format!("k{part}-{i}");
            let value = format!("{part}:{i}:{}", "v".repeat(200 + i % 57));
            let headers = OwnedHeaders::new().insert(Header {
                key: "seq",
                value: Some(&i.to_string()),
            });
            pending.push(
                p.send_result(
                    FutureRecord::to(topic)
                        .key(&key)
                        .payload(&value)
                        .partition(part)
                        .timestamp(base_ts + i as i64)
                        .headers(headers),
                )
                .unwrap(),
            );
        }
    }
    for f in pending {
        f.await.unwrap().unwrap();
    }
}

/// Every Fetch answer (records bytes) reading a partition from 0 to its high
/// watermark with a fixed partition limit.
fn fetch_all_raw(bootstrap: &str, topic: &str, partition: i32) -> Vec<Bytes> {
    let mut raw = RawClient::connect(bootstrap);
    let mut offset = 0i64;
    let mut out = Vec::new();
    let deadline = Instant::now() + T;
    loop {
        assert!(Instant::now() < deadline, "raw fetch did not reach the end");
        let resp = raw_fetch(
            &mut raw,
            topic,
            &[(partition, offset)],
            20_000,
            1 << 20,
            500,
        );
        let p = &resp.responses[0].partitions[0];
        assert_eq!(p.error_code, 0, "fetch at {offset}");
        let records = p.records.clone().unwrap_or_default();
        if records.is_empty() {
            if offset >= p.high_watermark {
                return out;
            }
            continue; // a remote read still loading: ask again
        }
        offset = next_offset_after(&records);
        out.push(records);
        if offset >= p.high_watermark {
            return out;
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// ListOffsets v9 for one partition: (offset, timestamp).
fn list_offset(raw: &mut RawClient, topic: &str, partition: i32, timestamp: i64) -> (i64, i64) {
    let req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
            .with_name(TopicName(s(topic)))
            .with_partitions(vec![
                list_offsets_request::ListOffsetsPartition::default()
                    .with_partition_index(partition)
                    .with_timestamp(timestamp),
            ])]);
    let ResponseKind::ListOffsets(resp) =
        raw.call(ApiKey::ListOffsets, 9, RequestKind::ListOffsets(req))
    else {
        panic!("not a ListOffsets response")
    };
    let p = &resp.topics[0].partitions[0];
    assert_eq!(p.error_code, 0, "ListOffsets {timestamp}");
    (p.offset, p.timestamp)
}

/// The offset after the last whole batch in `records`.
fn next_offset_after(records: &[u8]) -> i64 {
    let mut pos = 0;
    let mut next = -1;
    while pos + 61 <= records.len() {
        let base = i64::from_be_bytes(records[pos..pos + 8].try_into().unwrap());
        let len = i32::from_be_bytes(records[pos + 8..pos + 12].try_into().unwrap()) as usize;
        let last_delta = i32::from_be_bytes(records[pos + 23..pos + 27].try_into().unwrap());
        if pos + 12 + len > records.len() {
            break;
        }
        next = base + last_delta as i64 + 1;
        pos += 12 + len;
    }
    assert!(next >= 0, "no whole batch in a fetch answer");
    next
}

fn local_segments(log_dir: &Path, topic: &str, partition: i32) -> usize {
    std::fs::read_dir(log_dir.join(format!("{topic}-{partition}")))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
        .count()
}

fn uploaded_segments(s3: &S3Server, topic: &str) -> usize {
    s3.objects()
        .iter()
        .filter(|p| {
            let s = p.to_string_lossy();
            s.contains(&format!("/{topic}-")) && s.ends_with(".log")
        })
        .count()
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + T;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A topic config's value as DescribeConfigs reports it.
async fn topic_config(
    client: &rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext>,
    topic: &str,
    key: &str,
) -> String {
    let described = client
        .describe_configs(&[ResourceSpecifier::Topic(topic)], &admin_opts())
        .await
        .unwrap();
    let resource = described[0].as_ref().unwrap();
    resource
        .get(key)
        .and_then(|e| e.value.clone())
        .unwrap_or_default()
}

/// AlterConfigs (which replaces the topic's whole set, as in Kafka).
async fn alter_topic(bootstrap: &str, topic: &str, configs: &[(&str, &str)]) {
    let admin = admin(bootstrap);
    let mut alter = AlterConfig::new(ResourceSpecifier::Topic(topic));
    for (k, v) in configs {
        alter = alter.set(k, v);
    }
    let res = admin
        .alter_configs(&[alter], &admin_opts())
        .await
        .expect("alter_configs");
    for r in res {
        r.expect("config altered");
    }
}

/// Compares two reads record by record (in partition, offset order) without dumping
/// thousands of records on failure.
fn assert_same_records(mut expected: Vec<Got>, mut got: Vec<Got>) {
    expected.sort_by_key(|g| (g.partition, g.offset));
    got.sort_by_key(|g| (g.partition, g.offset));
    assert_eq!(got.len(), expected.len(), "record count");
    for (e, g) in expected.iter().zip(&got) {
        assert!(e == g, "record {}@{} differs", e.partition, e.offset);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn history_is_uploaded_trimmed_locally_and_read_back_byte_exact() {
    let (_s3_dir, s3, _cfg, b) = start_tiered("cluster-a", &[]).await;
    create_topic(
        &b.bootstrap,
        "tiered",
        2,
        &[
            ("remote.storage.enable", "true"),
            ("segment.bytes", "65536"),
        ],
    )
    .await;
    let base_ts = now_ms() - 600_000;
    produce(&b.bootstrap, "tiered", 2, 800, base_ts).await;
    // Reference answers while everything is still local.
    let before: Vec<Vec<Bytes>> = (0..2)
        .map(|p| fetch_all_raw(&b.bootstrap, "tiered", p))
        .collect();
    let records_before = consume_all(&b.bootstrap, "tiered", 2, T);
    assert_eq!(records_before.len(), 1600);
    let sealed: usize = (0..2)
        .map(|p| local_segments(&b.log_dir(), "tiered", p) - 1)
        .sum();
    assert!(
        sealed >= 4,
        "expected several sealed segments, got {sealed}"
    );
    wait_for("every sealed segment uploaded", || {
        uploaded_segments(&s3, "tiered") >= sealed
    })
    .await;
    // Nothing is trimmed while local retention is the total (7 days).
    assert_eq!(
        (0..2)
            .map(|p| local_segments(&b.log_dir(), "tiered", p) - 1)
            .sum::<usize>(),
        sealed
    );
    alter_topic(
        &b.bootstrap,
        "tiered",
        &[
            ("remote.storage.enable", "true"),
            ("segment.bytes", "65536"),
            ("local.retention.bytes", "0"),
        ],
    )
    .await;
    wait_for("local copies trimmed to the active segment", || {
        (0..2).all(|p| local_segments(&b.log_dir(), "tiered", p) == 1)
    })
    .await;
    // History now comes from the object store: the same bytes, the same records.
    for p in 0..2 {
        let after = fetch_all_raw(&b.bootstrap, "tiered", p);
        assert_eq!(after.len(), before[p as usize].len(), "partition {p}");
        assert!(
            after == before[p as usize],
            "partition {p}: remote reads differ from the local ones"
        );
    }
    let records_after = consume_all(&b.bootstrap, "tiered", 2, T);
    assert_same_records(records_before, records_after);
    // One Fetch reads both partitions from the object store at once, and its byte
    // limit holds across them.
    let mut raw = RawClient::connect(&b.bootstrap);
    let resp = raw_fetch(&mut raw, "tiered", &[(0, 0), (1, 0)], 30_000, 50_000, 2000);
    let sizes: Vec<usize> = resp.responses[0]
        .partitions
        .iter()
        .map(|p| p.records.as_ref().map_or(0, |r| r.len()))
        .collect();
    assert!(
        sizes.iter().all(|&n| n > 0),
        "both remote partitions served: {sizes:?}"
    );
    assert!(
        sizes.iter().sum::<usize>() <= 50_000,
        "fetch.max.bytes holds: {sizes:?}"
    );
    // ListOffsets over the tiered range (v9: -4 and -5 from KIP-1005).
    let local_start = list_offset(&mut raw, "tiered", 0, -4).0;
    assert!(local_start > 100, "local start {local_start}");
    assert_eq!(
        list_offset(&mut raw, "tiered", 0, -2).0,
        0,
        "earliest is the remote start"
    );
    assert_eq!(
        list_offset(&mut raw, "tiered", 0, -5).0,
        local_start - 1,
        "latest tiered"
    );
    assert_eq!(list_offset(&mut raw, "tiered", 0, -1).0, 800);
    assert_eq!(
        list_offset(&mut raw, "tiered", 0, base_ts + 100),
        (100, base_ts + 100),
        "a timestamp in the remote range"
    );
    assert_eq!(
        list_offset(&mut raw, "tiered", 1, base_ts + 799),
        (799, base_ts + 799),
        "a timestamp in the local range"
    );
    // The objects are where the layout says.
    let objects = s3.objects();
    assert!(objects.iter().any(|p| {
        let s = p.to_string_lossy();
        s.contains("/cluster-a/tiered-") && s.ends_with(".index")
    }));
    assert!(objects
        .iter()
        .any(|p| p.to_string_lossy().ends_with(".timeindex")));
    assert!(objects
        .iter()
        .any(|p| p.to_string_lossy().ends_with(".epochs")));
}

/// Creates a tiered topic with small segments whose local copies go as soon as they
/// are uploaded.
async fn tiered_topic(bootstrap: &str, topic: &str, partitions: i32, extra: &[(&str, &str)]) {
    let mut configs = vec![
        ("remote.storage.enable", "true"),
        ("segment.bytes", "65536"),
        ("local.retention.bytes", "0"),
    ];
    configs.extend_from_slice(extra);
    create_topic(bootstrap, topic, partitions, &configs).await;
}

fn delete_records(raw: &mut RawClient, topic: &str, partition: i32, offset: i64) -> (i16, i64) {
    let req = DeleteRecordsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(vec![delete_records_request::DeleteRecordsTopic::default()
            .with_name(TopicName(s(topic)))
            .with_partitions(vec![
                delete_records_request::DeleteRecordsPartition::default()
                    .with_partition_index(partition)
                    .with_offset(offset),
            ])]);
    let ResponseKind::DeleteRecords(resp) =
        raw.call(ApiKey::DeleteRecords, 2, RequestKind::DeleteRecords(req))
    else {
        panic!("not a DeleteRecords response")
    };
    let p = &resp.topics[0].partitions[0];
    (p.error_code, p.low_watermark)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_local_disk_loses_nothing_that_was_uploaded() {
    let (_s3_dir, _s3, cfg, b) = start_tiered("wipe", &[]).await;
    tiered_topic(&b.bootstrap, "wiped", 1, &[]).await;
    // An idempotent producer writes first; its state must outlive the disk.
    let mut raw = RawClient::connect(&b.bootstrap);
    let pid = init_producer_id(&mut raw);
    assert_eq!(
        produce_raw(&mut raw, "wiped", idempotent_batch(pid, 0, 0, 3)),
        (0, 0)
    );
    assert_eq!(
        produce_raw(&mut raw, "wiped", idempotent_batch(pid, 0, 3, 2)),
        (0, 3)
    );
    produce(&b.bootstrap, "wiped", 1, 900, now_ms() - 60_000).await;
    wait_for("sealed segments uploaded and trimmed", || {
        local_segments(&b.log_dir(), "wiped", 0) == 1 && list_offset(&mut raw, "wiped", 0, -4).0 > 0
    })
    .await;
    let tiered_end = list_offset(&mut raw, "wiped", 0, -5).0 + 1;
    assert_eq!(tiered_end, list_offset(&mut raw, "wiped", 0, -4).0);
    let snapshots = std::fs::read_dir(b.log_dir().join("wiped-0"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".snapshot"))
        })
        .count();
    assert_eq!(
        snapshots, 0,
        "segment-end producer snapshots go with their segments"
    );
    let before = consume_all(&b.bootstrap, "wiped", 1, T);
    // Lose the partition directory (the metadata log is kept).
    let log_dir = b.log_dir();
    let dir = b.stop().await;
    std::fs::remove_dir_all(log_dir.join("wiped-0")).unwrap();
    let b = TestBroker::start_in(dir, &refs(&cfg)).await;
    let mut raw = RawClient::connect(&b.bootstrap);
    assert_eq!(list_offset(&mut raw, "wiped", 0, -2).0, 0);
    assert_eq!(
        list_offset(&mut raw, "wiped", 0, -1).0,
        tiered_end,
        "the log restarts after the last tiered offset"
    );
    let after = consume_all(&b.bootstrap, "wiped", 1, T);
    let uploaded: Vec<Got> = before
        .into_iter()
        .filter(|g| g.offset < tiered_end)
        .collect();
    assert_same_records(uploaded, after);
    // The producer state came back with the last tiered segment: a retry of a batch
    // from before the loss is acknowledged with its original offset, not rewritten,
    // and the producer's next sequence is written after the last tiered offset.
    assert_eq!(
        produce_raw(&mut raw, "wiped", idempotent_batch(pid, 0, 3, 2)),
        (0, 3),
        "retry from before the loss is a duplicate"
    );
    assert_eq!(
        produce_raw(&mut raw, "wiped", idempotent_batch(pid, 0, 9, 1)).0,
        45,
        "a gap is still refused: the producer is known"
    );
    assert_eq!(
        produce_raw(&mut raw, "wiped", idempotent_batch(pid, 0, 5, 1)),
        (0, tiered_end)
    );
    // Producing continues after that.
    let p = producer(&b.bootstrap, &[]);
    let delivered = p
        .send(
            FutureRecord::to("wiped")
                .key("k")
                .payload("after the wipe")
                .partition(0),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(delivered.offset, tiered_end + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delete_records_retention_and_topic_deletion_remove_remote_objects() {
    let (_s3_dir, s3, _cfg, b) = start_tiered("deletes", &[]).await;
    tiered_topic(&b.bootstrap, "shrinking", 1, &[]).await;
    produce(&b.bootstrap, "shrinking", 1, 1200, now_ms() - 60_000).await;
    let mut raw = RawClient::connect(&b.bootstrap);
    wait_for("segments uploaded and trimmed", || {
        local_segments(&b.log_dir(), "shrinking", 0) == 1
    })
    .await;
    let uploaded = uploaded_segments(&s3, "shrinking");
    assert!(uploaded >= 3, "{uploaded} segments uploaded");
    let local_start = list_offset(&mut raw, "shrinking", 0, -4).0;
    // DeleteRecords into the middle of the remote range.
    let target = local_start / 2;
    assert_eq!(
        delete_records(&mut raw, "shrinking", 0, target),
        (0, target)
    );
    assert_eq!(list_offset(&mut raw, "shrinking", 0, -2).0, target);
    wait_for("remote segments below the new start deleted", || {
        uploaded_segments(&s3, "shrinking") < uploaded
    })
    .await;
    let rest = consume_all(&b.bootstrap, "shrinking", 1, T);
    assert_eq!(rest.first().map(|g| g.offset), Some(target));
    assert_eq!(rest.len() as i64, 1200 - target);
    // Total retention by size keeps only about one segment in the object store.
    alter_topic(
        &b.bootstrap,
        "shrinking",
        &[
            ("remote.storage.enable", "true"),
            ("segment.bytes", "65536"),
            ("local.retention.bytes", "0"),
            ("retention.bytes", "70000"),
        ],
    )
    .await;
    wait_for("total retention applied to the object store", || {
        uploaded_segments(&s3, "shrinking") <= 1
    })
    .await;
    let earliest = list_offset(&mut raw, "shrinking", 0, -2).0;
    assert!(earliest > target, "earliest {earliest} moved past {target}");
    let rest = consume_all(&b.bootstrap, "shrinking", 1, T);
    assert_eq!(rest.first().map(|g| g.offset), Some(earliest));
    // Deleting the topic deletes every object it had.
    let admin = admin(&b.bootstrap);
    admin
        .delete_topics(&["shrinking"], &admin_opts())
        .await
        .unwrap();
    wait_for("the deleted topic's objects removed", || {
        !s3.objects()
            .iter()
            .any(|p| p.to_string_lossy().contains("/shrinking-"))
    })
    .await;
}

/// One scrape of the broker's `/metrics` endpoint.
fn scrape(b: &TestBroker) -> String {
    use std::io::{Read, Write};
    let addr = b
        .running
        .as_ref()
        .and_then(|r| r.metrics_addr)
        .expect("metrics.listener is set");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: strata\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).unwrap();
    assert!(
        out.starts_with("HTTP/1.1 200"),
        "{}",
        &out[..out.len().min(200)]
    );
    out
}

/// The value of a metric line (`name{labels} value` or `name value`), or 0.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split([' ', '{']).next() == Some(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The value of one series, `name{labels} value` (labels as the exposition writes them).
fn series(text: &str, name: &str, labels: &str) -> Option<f64> {
    let prefix = format!("{name}{{{labels}}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_object_store_outage_never_blocks_produce_and_uploads_resume() {
    let (_s3_dir, mut s3, _, b) = start_tiered(
        "outage",
        &[
            "metrics.listener=127.0.0.1:0",
            "remote.log.manager.task.retry.backoff.max.ms=2000",
        ],
    )
    .await;
    tiered_topic(&b.bootstrap, "steady", 1, &[]).await;
    produce(&b.bootstrap, "steady", 1, 300, now_ms() - 60_000).await;
    wait_for("first uploads", || uploaded_segments(&s3, "steady") >= 1).await;
    s3.stop().await;
    // Produce for 60 seconds with the object store down; every send must succeed.
    let bootstrap = b.bootstrap.clone();
    let producing = tokio::spawn(async move {
        let p = producer(&bootstrap, &[("acks", "all")]);
        let started = Instant::now();
        let mut sent = 0usize;
        let mut slowest = Duration::ZERO;
        while started.elapsed() < Duration::from_secs(60) {
            let value = format!("during-outage-{sent}-{}", "x".repeat(500));
            let t = Instant::now();
            p.send(
                FutureRecord::to("steady")
                    .key("k")
                    .payload(&value)
                    .partition(0),
                Duration::from_secs(10),
            )
            .await
            .expect("produce during the outage");
            slowest = slowest.max(t.elapsed());
            sent += 1;
            if sent % 20 == 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        (sent, slowest)
    });
    let (sent, slowest) = producing.await.unwrap();
    assert!(sent > 1000, "only {sent} records produced in 60 s");
    assert!(
        slowest < Duration::from_secs(5),
        "a produce took {slowest:?} during the outage"
    );
    let text = scrape(&b);
    assert!(
        metric(&text, "strata_remote_upload_failures_total") > 0.0,
        "upload failures are counted"
    );
    assert!(metric(&text, "strata_remote_upload_lag_segments") > 0.0);
    // KIP-405's per-topic names say the same.
    let topic = "topic=\"steady\"";
    let kip405 = |text: &str, name: &str| {
        series(
            text,
            &format!("kafka_server_brokertopicmetrics_{name}"),
            topic,
        )
        .unwrap_or_else(|| panic!("{name} of steady missing:\n{text}"))
    };
    assert!(kip405(&text, "failedremotecopyrequests_total") > 0.0);
    assert!(kip405(&text, "remotecopylagbytes") > 0.0);
    // The store returns: uploads resume and catch up.
    s3.restart().await;
    wait_for("uploads caught up", || {
        metric(&scrape(&b), "strata_remote_upload_lag_segments") == 0.0
    })
    .await;
    wait_for("local copies trimmed", || {
        local_segments(&b.log_dir(), "steady", 0) == 1
    })
    .await;
    let all = consume_all(&b.bootstrap, "steady", 1, T);
    assert_eq!(all.len(), 300 + sent, "nothing lost");
    let text = scrape(&b);
    assert!(metric(&text, "strata_remote_segments_uploaded_total") >= 2.0);
    assert!(metric(&text, "strata_remote_fetch_requests_total") > 0.0);
    assert!(metric(&text, "strata_remote_cache_lookups_total") > 0.0);
    // One tiered topic: its KIP-405 counters equal the broker-wide ones.
    assert_eq!(
        kip405(&text, "remotecopybytes_total"),
        metric(&text, "strata_remote_bytes_uploaded_total")
    );
    assert_eq!(
        kip405(&text, "remotecopyrequests_total"),
        metric(&text, "strata_remote_segments_uploaded_total")
    );
    assert!(kip405(&text, "remotefetchbytes_total") > 0.0);
    assert!(kip405(&text, "remotefetchrequests_total") > 0.0);
    assert_eq!(kip405(&text, "remotecopylagbytes"), 0.0);
    assert!(kip405(&text, "remotelogsizebytes") > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_missing_or_corrupt_object_is_a_clean_error() {
    let (_s3_dir, s3, _cfg, b) = start_tiered("faults", &[]).await;
    tiered_topic(&b.bootstrap, "broken", 2, &[]).await;
    produce(&b.bootstrap, "broken", 2, 600, now_ms() - 60_000).await;
    wait_for("uploads and trims", || {
        (0..2).all(|p| local_segments(&b.log_dir(), "broken", p) == 1)
    })
    .await;
    // Partition 0 loses its first segment; partition 1's first is overwritten.
    let first_log = |p: i32| {
        s3.objects()
            .into_iter()
            .find(|o| {
                let s = o.to_string_lossy();
                s.contains("/broken-")
                    && s.contains(&format!("/{p}/00000000000000000000-"))
                    && s.ends_with(".log")
            })
            .expect("first segment object")
    };
    std::fs::remove_file(first_log(0)).unwrap();
    let garbage = vec![0xA5u8; std::fs::metadata(first_log(1)).unwrap().len() as usize];
    std::fs::write(first_log(1), garbage).unwrap();
    let mut raw = RawClient::connect(&b.bootstrap);
    for p in 0..2 {
        let started = Instant::now();
        let resp = raw_fetch(&mut raw, "broken", &[(p, 0)], 1 << 20, 1 << 20, 2000);
        assert_eq!(
            resp.responses[0].partitions[0].error_code, -1,
            "partition {p}: UNKNOWN_SERVER_ERROR"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "answered promptly"
        );
    }
    // librdkafka reports the error to the application instead of hanging.
    let c = consumer(&b.bootstrap, &[]);
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset("broken", 0, rdkafka::Offset::Beginning)
        .unwrap();
    rdkafka::consumer::Consumer::assign(&c, &tpl).unwrap();
    let deadline = Instant::now() + T;
    loop {
        assert!(Instant::now() < deadline, "no error reached the consumer");
        match c.poll(Duration::from_millis(200)) {
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) | None => {}
            Some(Err(e)) => {
                assert!(e.to_string().contains("nknown"), "{e}");
                break;
            }
            Some(Ok(m)) => panic!(
                "read offset {} from a missing segment",
                rdkafka::message::Message::offset(&m)
            ),
        }
    }
    // The broker still serves: the local tail of the same topic reads fine.
    let tail = consumer(&b.bootstrap, &[]);
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset("broken", 1, rdkafka::Offset::Offset(599))
        .unwrap();
    rdkafka::consumer::Consumer::assign(&tail, &tpl).unwrap();
    let got = loop {
        assert!(Instant::now() < deadline, "tail read failed");
        if let Some(Ok(m)) = tail.poll(Duration::from_millis(200)) {
            break rdkafka::message::Message::offset(&m);
        }
    };
    assert_eq!(got, 599);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tiering_configs_follow_kafka_rules() {
    let b = TestBroker::start_with(&["remote.log.storage.system.enable=false"]).await;
    let client = admin(&b.bootstrap);
    let make = |name: &'static str, configs: Vec<(&'static str, &'static str)>| {
        let mut t =
            rdkafka::admin::NewTopic::new(name, 1, rdkafka::admin::TopicReplication::Fixed(1));
        for (k, v) in configs {
            t = t.set(k, v);
        }
        t
    };
    let refused = |res: Vec<rdkafka::admin::TopicResult>| match &res[0] {
        Err((_, code)) => *code,
        Ok(t) => panic!("{t} was created"),
    };
    let res = client
        .create_topics(
            &[make("off", vec![("remote.storage.enable", "true")])],
            &admin_opts(),
        )
        .await
        .unwrap();
    assert_eq!(
        refused(res),
        rdkafka::types::RDKafkaErrorCode::InvalidConfig,
        "tiering disabled on the broker"
    );
    drop((client, b));
    // With the system on (the default): the local/total rule and compaction are checked.
    let b = TestBroker::start().await;
    let client = admin(&b.bootstrap);
    let res = client
        .create_topics(
            &[make(
                "toolong",
                vec![
                    ("remote.storage.enable", "true"),
                    ("retention.ms", "1000"),
                    ("local.retention.ms", "2000"),
                ],
            )],
            &admin_opts(),
        )
        .await
        .unwrap();
    assert_eq!(
        refused(res),
        rdkafka::types::RDKafkaErrorCode::InvalidConfig
    );
    let res = client
        .create_topics(
            &[make(
                "compacted",
                vec![
                    ("remote.storage.enable", "true"),
                    ("cleanup.policy", "compact"),
                ],
            )],
            &admin_opts(),
        )
        .await
        .unwrap();
    assert_eq!(
        refused(res),
        rdkafka::types::RDKafkaErrorCode::InvalidConfig
    );
    // A valid tiered topic shows its configs; the local retention changes live.
    create_topic(
        &b.bootstrap,
        "shown",
        1,
        &[
            ("remote.storage.enable", "true"),
            ("local.retention.ms", "60000"),
        ],
    )
    .await;
    let value = |k: &'static str| topic_config(&client, "shown", k);
    assert_eq!(value("remote.storage.enable").await, "true");
    assert_eq!(value("local.retention.ms").await, "60000");
    assert_eq!(value("local.retention.bytes").await, "-2");
    alter_topic(
        &b.bootstrap,
        "shown",
        &[
            ("remote.storage.enable", "true"),
            ("local.retention.ms", "1000"),
        ],
    )
    .await;
    assert_eq!(value("local.retention.ms").await, "1000");
    drop((client, b));
    // log.remote.storage.enable tiers every new topic by default, but compacted ones
    // (__consumer_offsets among them, created at start) are left alone.
    let b = TestBroker::start_with(&["log.remote.storage.enable=true"]).await;
    let client = admin(&b.bootstrap);
    create_topic(&b.bootstrap, "defaulted", 1, &[]).await;
    create_topic(&b.bootstrap, "keyed", 1, &[("cleanup.policy", "compact")]).await;
    assert_eq!(
        topic_config(&client, "defaulted", "remote.storage.enable").await,
        "true"
    );
    let broker = b.running.as_ref().unwrap().broker.clone().unwrap();
    let tiers = |topic: &str| {
        broker
            .replicas
            .get(topic, 0)
            .map(|p| p.config().remote_storage_enable)
    };
    assert_eq!(tiers("defaulted"), Some(true));
    assert_eq!(tiers("keyed"), Some(false), "a compacted topic never tiers");
    assert_eq!(tiers("__consumer_offsets"), Some(false));
}

/// The COPY_STARTED record a crash mid-upload leaves: a 1000-offset segment at
/// `base`, with the multipart upload it had started, if any.
fn copy_started(
    topic_id: uuid::Uuid,
    id: uuid::Uuid,
    base: i64,
    multipart_upload_id: Option<String>,
) -> strata::metadata::MetadataRecord {
    use strata::metadata::{MetadataRecord, RemoteSegment, RemoteSegmentState};
    MetadataRecord::RemoteSegmentCopyStarted {
        topic_id,
        partition: 0,
        segment: RemoteSegment {
            id,
            base_offset: base,
            end_offset: base + 999,
            max_timestamp: 0,
            size_bytes: 20 << 20,
            index_bytes: 0,
            time_index_bytes: 0,
            leader_epoch: 0,
            epochs: vec![],
            producer_snapshot_bytes: 0,
            multipart_upload_id,
            broker: 1,
            state: RemoteSegmentState::CopyStarted,
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_upload_left_half_done_is_removed() {
    let (_s3_dir, s3, _cfg, b) = start_tiered("orphans", &[]).await;
    tiered_topic(&b.bootstrap, "orphaned", 1, &[]).await;
    let broker = b.running.as_ref().unwrap().broker.clone().unwrap();
    let topic_id = broker.admin.image().topic_by_name("orphaned").unwrap().id;
    // What a crash between COPY_STARTED and COPY_FINISHED leaves: the record and a
    // partial object.
    let id = uuid::Uuid::new_v4();
    let object = s3
        .root
        .join(common::s3::BUCKET)
        .join("orphans")
        .join(format!("orphaned-{}", topic_id.simple()))
        .join("0")
        .join(format!("00000000000000001000-{}.log", id.simple()));
    std::fs::create_dir_all(object.parent().unwrap()).unwrap();
    std::fs::write(&object, b"partial upload").unwrap();
    broker
        .admin
        .quorum
        .propose(copy_started(topic_id, id, 1000, None))
        .await
        .unwrap();
    wait_for("the orphaned upload removed", || {
        let image = broker.admin.image();
        let gone = image
            .remote_log(&topic_id, 0)
            .is_none_or(|l| l.segments.is_empty());
        gone && !object.exists()
    })
    .await;

    // A multipart upload a crash cut short, with a part already in the bucket: its
    // COPY_STARTED record names the upload, and the cleanup aborts it.
    let store = RemoteStore::from_config(&broker.config).unwrap();
    let multipart = store.multipart.clone().expect("S3 has multipart calls");
    let id = uuid::Uuid::new_v4();
    let log = store.segment_object("orphaned", &topic_id, 0, 2000, &id, ObjectKind::Log);
    let upload_id = multipart.0.create_multipart(&log).await.unwrap();
    multipart
        .0
        .put_part(&log, &upload_id, 0, vec![1u8; 5 << 20].into())
        .await
        .unwrap();
    let parts_held = || {
        std::fs::read_dir(&s3.root)
            .unwrap()
            .filter(|e| {
                e.as_ref().is_ok_and(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with(&format!(".upload_id-{upload_id}"))
                })
            })
            .count()
    };
    assert_eq!(parts_held(), 1, "the server holds the uploaded part");
    broker
        .admin
        .quorum
        .propose(copy_started(topic_id, id, 2000, Some(upload_id.clone())))
        .await
        .unwrap();
    wait_for("the cut-short multipart upload aborted", || {
        let image = broker.admin.image();
        let gone = image
            .remote_log(&topic_id, 0)
            .is_none_or(|l| l.segments.is_empty());
        gone && parts_held() == 0
    })
    .await;
    assert!(
        multipart
            .0
            .complete_multipart(&log, &upload_id, vec![])
            .await
            .is_err(),
        "the upload no longer exists"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn large_segments_upload_in_parts_and_read_back() {
    let (_s3_dir, s3, _cfg, b) = start_tiered("multipart", &[]).await;
    // 20 MiB segments go up in 8 MiB parts (the last one smaller).
    create_topic(
        &b.bootstrap,
        "big",
        1,
        &[
            ("remote.storage.enable", "true"),
            ("segment.bytes", "20971520"),
            ("local.retention.bytes", "0"),
        ],
    )
    .await;
    let p = producer(
        &b.bootstrap,
        &[("linger.ms", "20"), ("batch.size", "262144")],
    );
    let payload = vec![7u8; 1000];
    let mut pending = Vec::new();
    for i in 0..25_000u32 {
        let key = i.to_be_bytes();
        pending.push(
            p.send_result(
                FutureRecord::to("big")
                    .key(&key[..])
                    .payload(&payload[..])
                    .partition(0),
            )
            .unwrap(),
        );
    }
    for f in pending {
        f.await.unwrap().unwrap();
    }
    wait_for("the 20 MiB segment uploaded and trimmed", || {
        uploaded_segments(&s3, "big") >= 1 && local_segments(&b.log_dir(), "big", 0) == 1
    })
    .await;
    let object = s3
        .objects()
        .into_iter()
        .find(|o| o.to_string_lossy().contains("/big-") && o.to_string_lossy().ends_with(".log"))
        .unwrap();
    assert!(std::fs::metadata(&object).unwrap().len() > 16 << 20);
    let all = consume_all(&b.bootstrap, "big", 1, T);
    assert_eq!(all.len(), 25_000);
    for (i, g) in all.iter().enumerate() {
        assert_eq!(g.offset, i as i64);
        assert_eq!(g.key.as_deref(), Some(&(i as u32).to_be_bytes()[..]));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_remote_read_slower_than_max_wait_returns_what_is_ready() {
    let (_s3_dir, s3, cfg, b) = start_tiered("slow", &[]).await;
    tiered_topic(&b.bootstrap, "slowly", 1, &[]).await;
    produce(&b.bootstrap, "slowly", 1, 600, now_ms() - 60_000).await;
    wait_for("uploads and trims", || {
        local_segments(&b.log_dir(), "slowly", 0) == 1
    })
    .await;
    // A fresh process: nothing of the history is cached.
    let b = b.restart(&refs(&cfg)).await;
    s3.delay_ms
        .store(1500, std::sync::atomic::Ordering::Relaxed);
    let mut raw = RawClient::connect(&b.bootstrap);
    let started = Instant::now();
    let resp = raw_fetch(&mut raw, "slowly", &[(0, 0)], 1 << 20, 1 << 20, 300);
    let p = &resp.responses[0].partitions[0];
    assert_eq!(p.error_code, 0, "a slow store is not an error");
    assert!(
        p.records.as_ref().is_none_or(|r| r.is_empty()),
        "nothing was ready yet"
    );
    assert!(
        started.elapsed() < Duration::from_millis(1400),
        "answered at the consumer's max wait, not the store's pace: {:?}",
        started.elapsed()
    );
    // The read went on in the background: a retry finds the data.
    let deadline = Instant::now() + T;
    loop {
        assert!(
            Instant::now() < deadline,
            "the background read never landed"
        );
        let resp = raw_fetch(&mut raw, "slowly", &[(0, 0)], 1 << 20, 1 << 20, 300);
        let p = &resp.responses[0].partitions[0];
        assert_eq!(p.error_code, 0);
        if p.records.as_ref().is_some_and(|r| !r.is_empty()) {
            assert!(next_offset_after(p.records.as_ref().unwrap()) > 0);
            break;
        }
    }
    s3.delay_ms.store(0, std::sync::atomic::Ordering::Relaxed);
}

/// Encryption at rest: with `object_store.sse=aws:kms`, a KMS key and the bucket key,
/// every object write (the start-up check, segment and index uploads, multipart
/// starts) asks S3 for SSE-KMS with that key; parts carry no such headers, as S3
/// wants. With `AES256`, writes ask for SSE-S3 and name no key.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn uploads_ask_for_server_side_encryption_as_configured() {
    let key = "arn:aws:kms:us-east-1:111122223333:key/Strata-Test-Key";
    let kms_key = format!("object_store.sse.kms.key.id={key}");
    let (_s3_dir, s3, _cfg, b) = start_tiered(
        "sse-kms",
        &[
            "object_store.sse=aws:kms",
            &kms_key,
            "object_store.sse.bucket.key.enabled=true",
        ],
    )
    .await;
    create_topic(
        &b.bootstrap,
        "encrypted",
        1,
        &[
            ("remote.storage.enable", "true"),
            ("segment.bytes", "65536"),
        ],
    )
    .await;
    produce(&b.bootstrap, "encrypted", 1, 900, now_ms()).await;
    wait_for("segments uploaded", || {
        uploaded_segments(&s3, "encrypted") >= 2
    })
    .await;
    // Object writes: PutObject and CreateMultipartUpload (not parts, completions or
    // bulk deletes, which carry no encryption headers in S3's API).
    let object_writes = |s3: &S3Server| -> Vec<common::s3::WriteSeen> {
        s3.writes
            .lock()
            .unwrap()
            .iter()
            .filter(|w| {
                (w.method == "PUT" && !w.uri.contains("partNumber="))
                    || (w.method == "POST" && w.uri.contains("?uploads"))
            })
            .cloned()
            .collect()
    };
    let objects = object_writes(&s3);
    assert!(
        objects
            .iter()
            .filter(|w| w.uri.contains("encrypted"))
            .count()
            >= 2,
        "no uploads seen: {objects:?}"
    );
    for w in &objects {
        assert_eq!(w.sse.as_deref(), Some("aws:kms"), "{w:?}");
        assert_eq!(w.kms_key_id.as_deref(), Some(key), "{w:?}");
        assert_eq!(w.bucket_key.as_deref(), Some("true"), "{w:?}");
    }
    b.stop().await;

    let (_s3_dir, s3, _cfg, b) = start_tiered("sse-s3", &["object_store.sse=AES256"]).await;
    let writes = object_writes(&s3);
    assert!(!writes.is_empty(), "the start-up check writes an object");
    for w in &writes {
        assert_eq!(w.sse.as_deref(), Some("AES256"), "{w:?}");
        assert_eq!(w.kms_key_id, None, "{w:?}");
    }
    b.stop().await;

    // A KMS key without aws:kms stops start-up naming the key.
    let err = strata::config::BrokerConfig::load(
        None,
        std::iter::empty(),
        &[format!("object_store.sse.kms.key.id={key}")],
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("object_store.sse.kms.key.id"), "{err}");
}
