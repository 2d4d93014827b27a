//! Fetch semantics (long poll, byte limits, out-of-range, topic ids) and the log's
//! time- and size-based retention and rolling, observed through real clients.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{
    ApiKey, FetchRequest, FetchResponse, RequestKind, ResponseKind, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::RecordBatchDecoder;
use rdkafka::consumer::Consumer;
use rdkafka::producer::FutureRecord;

const T: Duration = Duration::from_secs(20);

#[allow(clippy::too_many_arguments)]
fn fetch(
    raw: &mut RawClient,
    version: i16,
    topic: &str,
    topic_id: uuid::Uuid,
    offset: i64,
    max_wait: i32,
    min_bytes: i32,
    max_bytes: i32,
    partition_max: i32,
) -> FetchResponse {
    let t = FetchTopic::default()
        .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
        .with_topic_id(topic_id)
        .with_partitions(vec![FetchPartition::default()
            .with_partition(0)
            .with_fetch_offset(offset)
            .with_partition_max_bytes(partition_max)]);
    let req = FetchRequest::default()
        .with_replica_id((-1).into())
        .with_max_wait_ms(max_wait)
        .with_min_bytes(min_bytes)
        .with_max_bytes(max_bytes)
        .with_session_epoch(-1)
        .with_topics(vec![t]);
    let ResponseKind::Fetch(r) = raw.call(ApiKey::Fetch, version, RequestKind::Fetch(req)) else {
        panic!()
    };
    r
}

fn record_count(records: &Bytes) -> usize {
    let mut b = records.clone();
    let mut n = 0;
    while !b.is_empty() {
        n += RecordBatchDecoder::decode(&mut b).unwrap().records.len();
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_long_polls_limits_bytes_and_reports_out_of_range() {
    let b = TestBroker::start().await;
    create_topic(&b.bootstrap, "fetchy", 1, &[]).await;
    let p = producer(&b.bootstrap, &[("linger.ms", "0")]);
    for i in 0..20 {
        p.send(
            FutureRecord::<(), _>::to("fetchy").payload(&format!("{i:0>500}")),
            T,
        )
        .await
        .unwrap();
    }
    let mut raw = RawClient::connect(&b.bootstrap);
    // Byte limits: a tiny limit still returns one whole batch (KIP-74), never a torn one.
    let r = fetch(&mut raw, 12, "fetchy", uuid::Uuid::nil(), 0, 0, 1, 10, 10);
    let part = &r.responses[0].partitions[0];
    assert_eq!(part.error_code, 0);
    assert_eq!(part.high_watermark, 20);
    assert_eq!(
        record_count(part.records.as_ref().unwrap()),
        1,
        "exactly one whole batch"
    );
    let r = fetch(
        &mut raw,
        12,
        "fetchy",
        uuid::Uuid::nil(),
        0,
        0,
        1,
        1 << 20,
        3000,
    );
    let n = record_count(r.responses[0].partitions[0].records.as_ref().unwrap());
    assert!(
        (1..=5).contains(&n),
        "partition_max_bytes bounds the answer ({n} records)"
    );
    // Out of range.
    let r = fetch(
        &mut raw,
        12,
        "fetchy",
        uuid::Uuid::nil(),
        21,
        0,
        1,
        1 << 20,
        1 << 20,
    );
    assert_eq!(
        r.responses[0].partitions[0].error_code, 1,
        "OFFSET_OUT_OF_RANGE"
    );
    // At the end: waits max_wait for data that does not come...
    let start = Instant::now();
    let r = fetch(
        &mut raw,
        12,
        "fetchy",
        uuid::Uuid::nil(),
        20,
        700,
        1,
        1 << 20,
        1 << 20,
    );
    assert!(
        start.elapsed() >= Duration::from_millis(650),
        "waited for max_wait_ms"
    );
    assert_eq!(
        r.responses[0].partitions[0].records.as_ref().unwrap().len(),
        0
    );
    // ...and returns as soon as data arrives.
    let bootstrap = b.bootstrap.clone();
    let writer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let p = producer(&bootstrap, &[("linger.ms", "0")]);
        p.send(FutureRecord::<(), _>::to("fetchy").payload("late"), T)
            .await
            .unwrap();
    });
    let r = tokio::task::spawn_blocking(move || {
        fetch(
            &mut raw,
            12,
            "fetchy",
            uuid::Uuid::nil(),
            20,
            15_000,
            1,
            1 << 20,
            1 << 20,
        )
    })
    .await
    .unwrap();
    writer.await.unwrap();
    assert_eq!(
        record_count(r.responses[0].partitions[0].records.as_ref().unwrap()),
        1,
        "the late record wakes the long poll"
    );

    // Fetch v13+ names topics by id.
    let admin = admin(&b.bootstrap);
    let _ = admin;
    let mut raw = RawClient::connect(&b.bootstrap);
    let ResponseKind::Metadata(md) = raw.call(
        ApiKey::Metadata,
        12,
        RequestKind::Metadata(
            kafka_protocol::messages::MetadataRequest::default().with_topics(None),
        ),
    ) else {
        panic!()
    };
    let id = md
        .topics
        .iter()
        .find(|t| t.name.as_ref().unwrap().0.as_str() == "fetchy")
        .unwrap()
        .topic_id;
    let r = fetch(&mut raw, 16, "", id, 0, 0, 1, 1 << 20, 1 << 20);
    assert_eq!(r.responses[0].topic_id, id);
    assert_eq!(
        record_count(r.responses[0].partitions[0].records.as_ref().unwrap()),
        21
    );
    let r = fetch(
        &mut raw,
        16,
        "",
        uuid::Uuid::new_v4(),
        0,
        0,
        1,
        1 << 20,
        1 << 20,
    );
    assert_eq!(
        r.responses[0].partitions[0].error_code, 100,
        "UNKNOWN_TOPIC_ID"
    );
}

fn segment_bases(dir: &std::path::Path) -> Vec<i64> {
    let mut v: Vec<i64> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            e.unwrap()
                .file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".log"))
                .and_then(|n| n.parse().ok())
        })
        .collect();
    v.sort();
    v
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_by_bytes_and_by_time_deletes_whole_old_segments() {
    let b = TestBroker::start_with(&["log.retention.check.interval.ms=200"]).await;
    create_topic(
        &b.bootstrap,
        "by-bytes",
        1,
        &[("segment.bytes", "2000"), ("retention.bytes", "5000")],
    )
    .await;
    create_topic(
        &b.bootstrap,
        "by-time",
        1,
        &[("segment.bytes", "2000"), ("retention.ms", "60000")],
    )
    .await;
    let p = producer(&b.bootstrap, &[("linger.ms", "0")]);
    let old = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        - 3_600_000;
    for i in 0..60 {
        let v = format!("{i:0>200}");
        p.send(FutureRecord::<(), _>::to("by-bytes").payload(&v), T)
            .await
            .unwrap();
        // An hour old: past retention.ms once its segment is sealed.
        p.send(
            FutureRecord::<(), _>::to("by-time")
                .payload(&v)
                .timestamp(old),
            T,
        )
        .await
        .unwrap();
    }
    let c = consumer(&b.bootstrap, &[]);
    wait_for("size retention", || {
        c.fetch_watermarks("by-bytes", 0, T).unwrap().0 > 0
    })
    .await;
    let bytes_dir = b.log_dir().join("by-bytes-0");
    let total: u64 = std::fs::read_dir(&bytes_dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
        .map(|e| e.metadata().unwrap().len())
        .sum();
    assert!(
        total <= 5000 + 2000,
        "retention.bytes bounds the partition ({total} bytes)"
    );
    let (low, high) = c.fetch_watermarks("by-bytes", 0, T).unwrap();
    assert_eq!(high, 60);
    assert_eq!(
        low,
        segment_bases(&bytes_dir)[0],
        "log start is the first remaining segment"
    );
    let got = consume_all(&b.bootstrap, "by-bytes", 1, T);
    assert_eq!(got.len() as i64, 60 - low);
    assert_eq!(got[0].offset, low);

    wait_for("time retention", || {
        let bases = segment_bases(&b.log_dir().join("by-time-0"));
        bases.len() == 1
    })
    .await;
    let (low, high) = c.fetch_watermarks("by-time", 0, T).unwrap();
    assert_eq!(high, 60);
    assert!(
        low > 0,
        "expired sealed segments deleted; the active one stays"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_roll_on_segment_ms() {
    let b = TestBroker::start().await;
    create_topic(&b.bootstrap, "rolling", 1, &[("segment.ms", "300")]).await;
    let p = producer(&b.bootstrap, &[("linger.ms", "0")]);
    for _ in 0..3 {
        p.send(FutureRecord::<(), _>::to("rolling").payload("x"), T)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(450)).await;
    }
    let bases = segment_bases(&b.log_dir().join("rolling-0"));
    assert_eq!(
        bases,
        vec![0, 1, 2],
        "each append after segment.ms starts a new segment"
    );
    for base in [0, 1] {
        for ext in ["index", "timeindex"] {
            assert!(b
                .log_dir()
                .join("rolling-0")
                .join(format!("{base:020}.{ext}"))
                .exists());
        }
    }
    assert!(b
        .log_dir()
        .join("rolling-0")
        .join("leader-epoch-checkpoint")
        .exists());
    let got = consume_all(&b.bootstrap, "rolling", 1, T);
    assert_eq!(got.len(), 3);
}
