//! Topic `compression.type` acts as Kafka's log validator: batches whose codec differs
//! from the topic's are recompressed on append, keeping offsets, timestamps, headers
//! and producer fields. librdkafka producers of one codec write into topics of another;
//! the batches on disk are read back from the segment files, and librdkafka consumers
//! must see exactly what was sent. Raw requests shape idempotent retries, corrupt
//! batches and decompression bombs.

mod common;

use std::path::Path;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use common::idempotent::{batch_compressed, init_producer_id, produce};
use common::*;
use indexmap::IndexMap;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use rdkafka::admin::{NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;

const T: Duration = Duration::from_secs(30);

/// One stored batch, from a segment file.
#[derive(Debug, Clone, Copy)]
struct Stored {
    codec: i16,
    attributes: i16,
    base_offset: i64,
    records: i32,
    size: usize,
    producer_id: i64,
    base_sequence: i32,
}

/// Every batch of a partition, read from its `.log` files in offset order, and the
/// bytes those files hold.
fn stored(log_dir: &Path, topic: &str, partition: i32) -> (Vec<Stored>, u64) {
    let dir = log_dir.join(format!("{topic}-{partition}"));
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    let mut bytes = 0;
    for f in files {
        let data = std::fs::read(&f).unwrap();
        bytes += data.len() as u64;
        let mut pos = 0;
        while pos + 61 <= data.len() {
            let be = |at: usize, n: usize| &data[pos + at..pos + at + n];
            let len = i32::from_be_bytes(be(8, 4).try_into().unwrap()) as usize;
            let attributes = i16::from_be_bytes(be(21, 2).try_into().unwrap());
            out.push(Stored {
                codec: attributes & 7,
                attributes,
                base_offset: i64::from_be_bytes(be(0, 8).try_into().unwrap()),
                records: i32::from_be_bytes(be(57, 4).try_into().unwrap()),
                size: 12 + len,
                producer_id: i64::from_be_bytes(be(43, 8).try_into().unwrap()),
                base_sequence: i32::from_be_bytes(be(53, 4).try_into().unwrap()),
            });
            pos += 12 + len;
        }
    }
    (out, bytes)
}

fn codec_id(name: &str) -> i16 {
    match name {
        "none" | "uncompressed" => 0,
        "gzip" => 1,
        "snappy" => 2,
        "lz4" => 3,
        "zstd" => 4,
        _ => panic!("{name}"),
    }
}

/// What a record carries: key, value, timestamp, headers.
type Sent = (
    Option<Vec<u8>>,
    Vec<u8>,
    i64,
    Vec<(String, Option<Vec<u8>>)>,
);

/// What record `i` of a test run carries.
fn expected(i: usize, ts0: i64) -> Sent {
    let key = (i % 5 != 0).then(|| format!("key-{i}").into_bytes());
    let value = if i == 7 {
        Vec::new()
    } else {
        format!(
            "{{\"n\":{i},\"text\":\"{}\"}}",
            "lorem ipsum ".repeat(i % 13 + 1)
        )
        .into_bytes()
    };
    let mut headers = vec![("seq".to_string(), Some(format!("{i}").into_bytes()))];
    if i % 4 == 0 {
        headers.push(("empty".to_string(), None));
    }
    (key, value, ts0 + (i as i64 * 37) % 1000, headers)
}

/// Sends `n` records with keys, headers and explicit out-of-order timestamps.
async fn send_records(bootstrap: &str, topic: &str, producer_codec: &str, n: usize, ts0: i64) {
    let p = producer(
        bootstrap,
        &[
            ("compression.codec", producer_codec),
            ("linger.ms", "30"),
            ("batch.num.messages", "100"),
        ],
    );
    let mut futures = Vec::new();
    for i in 0..n {
        let (key, value, ts, headers) = expected(i, ts0);
        let mut h = OwnedHeaders::new();
        for (k, v) in &headers {
            h = h.insert(Header {
                key: k.as_str(),
                value: v.as_deref(),
            });
        }
        let mut record = FutureRecord::<[u8], [u8]>::to(topic)
            .payload(&value[..])
            .timestamp(ts)
            .headers(h);
        if let Some(k) = &key {
            record = record.key(&k[..]);
        }
        futures.push(p.send_result(record).expect("enqueue"));
    }
    for f in futures {
        f.await.expect("delivery future").expect("delivered");
    }
}

fn check_consumed(bootstrap: &str, topic: &str, n: usize, ts0: i64) {
    let got = consume_all(bootstrap, topic, 1, T);
    assert_eq!(got.len(), n, "{topic}: every record read back once");
    for (i, g) in got.iter().enumerate() {
        let (key, value, ts, headers) = expected(i, ts0);
        assert_eq!(g.offset, i as i64, "{topic}");
        assert_eq!(g.key, key, "{topic} key {i}");
        // librdkafka hands an empty value out as a null payload.
        assert_eq!(
            g.value.clone().unwrap_or_default(),
            value,
            "{topic} value {i}"
        );
        assert_eq!(g.timestamp, Some(ts), "{topic} timestamp {i}");
        assert_eq!(g.headers, headers, "{topic} headers {i}");
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_topic_codec_recompresses_batches_of_another_codec() {
    let b = TestBroker::start().await;
    let n = 400;
    let ts0 = now_ms() - 60_000;
    // (topic codec, producer codec): every topic codec, and every producer codec read.
    let cases = [
        ("uncompressed", "zstd"),
        ("gzip", "lz4"),
        ("snappy", "gzip"),
        ("lz4", "snappy"),
        ("zstd", "none"),
    ];
    for (topic_codec, producer_codec) in cases {
        let topic = format!("to-{topic_codec}-from-{producer_codec}");
        create_topic(
            &b.bootstrap,
            &topic,
            1,
            &[("compression.type", topic_codec)],
        )
        .await;
        send_records(&b.bootstrap, &topic, producer_codec, n, ts0).await;
        let (batches, _) = stored(&b.log_dir(), &topic, 0);
        assert!(
            batches.len() > 1,
            "{topic}: several batches ({})",
            batches.len()
        );
        assert!(
            batches.iter().all(|s| s.codec == codec_id(topic_codec)),
            "{topic}: every stored batch has the topic's codec: {batches:?}"
        );
        assert_eq!(batches.iter().map(|s| s.records).sum::<i32>(), n as i32);
        let mut next = 0;
        for s in &batches {
            assert_eq!(s.base_offset, next, "{topic}: offsets dense");
            next += s.records as i64;
        }
        check_consumed(&b.bootstrap, &topic, n, ts0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_topics_keep_the_producers_codec_and_broker_defaults_apply() {
    // The broker default: every topic without its own compression.type is gzip.
    let b = TestBroker::start_with(&["compression.type=gzip", "compression.gzip.level=9"]).await;
    let ts0 = now_ms() - 1000;
    create_topic(&b.bootstrap, "keep", 1, &[("compression.type", "producer")]).await;
    send_records(&b.bootstrap, "keep", "lz4", 200, ts0).await;
    let (batches, _) = stored(&b.log_dir(), "keep", 0);
    // Stored as the producer sent them: lz4, except that librdkafka sends a batch
    // uncompressed when lz4 would not make it smaller (e.g. a lone first record).
    assert!(
        batches.iter().all(|s| s.codec == 3 || s.codec == 0),
        "{batches:?}"
    );
    assert!(batches.iter().any(|s| s.codec == 3), "{batches:?}");
    check_consumed(&b.bootstrap, "keep", 200, ts0);

    create_topic(&b.bootstrap, "inherit", 1, &[]).await;
    send_records(&b.bootstrap, "inherit", "zstd", 200, ts0).await;
    let (batches, _) = stored(&b.log_dir(), "inherit", 0);
    assert!(batches.iter().all(|s| s.codec == 1), "{batches:?}");
    check_consumed(&b.bootstrap, "inherit", 200, ts0);

    // DescribeConfigs shows the level keys with their broker synonyms.
    let admin = admin(&b.bootstrap);
    let described = admin
        .describe_configs(&[ResourceSpecifier::Topic("inherit")], &admin_opts())
        .await
        .unwrap();
    let entries = described[0].as_ref().unwrap().entry_map();
    assert_eq!(entries["compression.type"].value.as_deref(), Some("gzip"));
    assert_eq!(
        entries["compression.gzip.level"].value.as_deref(),
        Some("9")
    );
    assert_eq!(entries["compression.lz4.level"].value.as_deref(), Some("9"));
    assert_eq!(
        entries["compression.zstd.level"].value.as_deref(),
        Some("3")
    );
    assert!(entries["compression.zstd.level"].is_default);

    // Levels are validated as Kafka validates them.
    for (key, value) in [
        ("compression.gzip.level", "0"),
        ("compression.gzip.level", "10"),
        ("compression.lz4.level", "18"),
        ("compression.zstd.level", "23"),
        ("compression.type", "brotli"),
    ] {
        let t = NewTopic::new("bad-level", 1, TopicReplication::Fixed(1)).set(key, value);
        let res = admin.create_topics(&[t], &admin_opts()).await.unwrap();
        assert!(res[0].is_err(), "{key}={value} must be refused");
    }
    let t = NewTopic::new("ok-level", 1, TopicReplication::Fixed(1))
        .set("compression.gzip.level", "-1")
        .set("compression.zstd.level", "-7");
    let res = admin.create_topics(&[t], &admin_opts()).await.unwrap();
    assert!(res[0].is_ok(), "{res:?}");
}

/// One uncompressed batch of `count` JSON-ish records, the same bytes every call.
fn text_batch(count: usize) -> Bytes {
    let now = now_ms();
    let records: Vec<Record> = (0..count)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // kafka-protocol batches records whose offset - sequence is constant; this
            // keeps the base sequence at -1 (no producer id).
            sequence: i as i32 - 1,
            timestamp: now,
            key: Some(Bytes::from(format!("user-{}", i % 97))),
            value: Some(Bytes::from(format!(
                "{{\"id\":{i},\"user\":\"user-{}\",\"event\":\"{}\",\"amount\":{},\"note\":\"{}\"}}",
                i % 97,
                ["click", "view", "purchase", "refund"][i % 4],
                (i * 7919) % 10007,
                "the quick brown fox jumps over the lazy dog ".repeat(i % 5 + 1)
            ))),
            headers: IndexMap::new(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .unwrap();
    buf.freeze()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_higher_zstd_level_stores_fewer_bytes() {
    let b = TestBroker::start().await;
    create_topic(
        &b.bootstrap,
        "zstd-1",
        1,
        &[
            ("compression.type", "zstd"),
            ("compression.zstd.level", "1"),
        ],
    )
    .await;
    create_topic(
        &b.bootstrap,
        "zstd-19",
        1,
        &[
            ("compression.type", "zstd"),
            ("compression.zstd.level", "19"),
        ],
    )
    .await;
    let mut raw = RawClient::connect(&b.bootstrap);
    for _ in 0..3 {
        let batch = text_batch(3000);
        assert_eq!(produce(&mut raw, "zstd-1", batch.clone()).0, 0);
        assert_eq!(produce(&mut raw, "zstd-19", batch).0, 0);
    }
    let (low, low_bytes) = stored(&b.log_dir(), "zstd-1", 0);
    let (high, high_bytes) = stored(&b.log_dir(), "zstd-19", 0);
    assert_eq!(
        (low.len(), high.len()),
        (3, 3),
        "one stored batch per request"
    );
    assert!(low
        .iter()
        .chain(&high)
        .all(|s| s.codec == 4 && s.records == 3000));
    let sent = text_batch(3000).len() as u64 * 3;
    assert!(
        high_bytes < low_bytes && low_bytes < sent / 3,
        "level 19 stores {high_bytes} bytes, level 1 {low_bytes}, sent {sent}"
    );
    assert_eq!(consume_all(&b.bootstrap, "zstd-19", 1, T).len(), 9000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_retries_into_a_recompressing_topic_are_deduplicated() {
    let b = TestBroker::start().await;
    create_topic(
        &b.bootstrap,
        "idem-zstd",
        1,
        &[("compression.type", "zstd")],
    )
    .await;
    create_topic(
        &b.bootstrap,
        "idem-plain",
        1,
        &[("compression.type", "uncompressed")],
    )
    .await;
    let mut raw = RawClient::connect(&b.bootstrap);
    let pid = init_producer_id(&mut raw);
    for (topic, sent_as) in [
        ("idem-zstd", Compression::None),
        ("idem-plain", Compression::Gzip),
    ] {
        let first = batch_compressed(pid, 0, 0, 3, sent_as);
        let second = batch_compressed(pid, 0, 3, 2, sent_as);
        assert_eq!(produce(&mut raw, topic, first.clone()), (0, 0), "{topic}");
        assert_eq!(produce(&mut raw, topic, second.clone()), (0, 3), "{topic}");
        // The same requests again: acknowledged with the original offsets, not written.
        assert_eq!(produce(&mut raw, topic, first), (0, 0), "{topic} retry");
        assert_eq!(produce(&mut raw, topic, second), (0, 3), "{topic} retry");
        // The sequence carries on from the recompressed batches.
        assert_eq!(
            produce(&mut raw, topic, batch_compressed(pid, 0, 5, 1, sent_as)),
            (0, 5)
        );
        assert_eq!(
            produce(&mut raw, topic, batch_compressed(pid, 0, 9, 1, sent_as)).0,
            45,
            "OUT_OF_ORDER_SEQUENCE_NUMBER"
        );
        let (batches, _) = stored(&b.log_dir(), topic, 0);
        let want = if topic == "idem-zstd" { 4 } else { 0 };
        assert_eq!(batches.len(), 3, "{topic}: {batches:?}");
        for (s, (base, seq)) in batches.iter().zip([(0, 0), (3, 3), (5, 5)]) {
            assert_eq!(s.codec, want, "{topic}");
            assert_eq!(
                (s.base_offset, s.producer_id, s.base_sequence),
                (base, pid, seq)
            );
            assert_eq!(s.attributes & !7, 0, "{topic}: no other attribute bits");
        }
        let values: Vec<String> = consume_all(&b.bootstrap, topic, 1, T)
            .iter()
            .map(|g| String::from_utf8(g.value.clone().unwrap()).unwrap())
            .collect();
        assert_eq!(
            values,
            ["seq-0", "seq-1", "seq-2", "seq-3", "seq-4", "seq-5"],
            "{topic}"
        );
    }
    // The state survives a restart: the retry is still a duplicate.
    let b = b.restart(&[]).await;
    let mut raw = RawClient::connect(&b.bootstrap);
    assert_eq!(
        produce(
            &mut raw,
            "idem-zstd",
            batch_compressed(pid, 0, 5, 1, Compression::None)
        ),
        (0, 5)
    );
}

/// A single-record batch whose value is `size` zero bytes, compressed with `c`.
fn zeros_batch(size: usize, c: Compression) -> Bytes {
    let record = Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: now_ms(),
        key: None,
        value: Some(Bytes::from(vec![0u8; size])),
        headers: IndexMap::new(),
    };
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        [&record],
        &RecordEncodeOptions {
            version: 2,
            compression: c,
        },
    )
    .unwrap();
    buf.freeze()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_batches_and_decompression_bombs_are_refused() {
    let b = TestBroker::start().await;
    create_topic(&b.bootstrap, "strict", 1, &[("compression.type", "lz4")]).await;
    create_topic(
        &b.bootstrap,
        "plain",
        1,
        &[("compression.type", "uncompressed")],
    )
    .await;
    let mut raw = RawClient::connect(&b.bootstrap);

    // A zstd batch whose records are garbage, with a valid CRC: CORRUPT_MESSAGE.
    let mut bad = zeros_batch(10_000, Compression::Zstd).to_vec();
    for x in &mut bad[61 + 8..] {
        *x ^= 0x5a;
    }
    let crc = crc32c::crc32c(&bad[21..]);
    bad[17..21].copy_from_slice(&crc.to_be_bytes());
    assert_eq!(produce(&mut raw, "strict", Bytes::from(bad)).0, 2);

    // 80 MiB of zeros in a few KiB: refused before it is all decompressed.
    let bomb = zeros_batch(80 << 20, Compression::Zstd);
    assert!(bomb.len() < 1 << 20, "{}", bomb.len());
    assert_eq!(produce(&mut raw, "strict", bomb).0, 10, "MESSAGE_TOO_LARGE");

    // max.message.bytes applies to the batch as stored: 2 MB of zeros fit in a small
    // gzip batch but not uncompressed.
    let big = zeros_batch(2 << 20, Compression::Gzip);
    assert!(big.len() < 1 << 20);
    assert_eq!(produce(&mut raw, "plain", big).0, 10, "MESSAGE_TOO_LARGE");

    // The broker is fine and the partitions are empty and usable.
    let ok = zeros_batch(1000, Compression::Snappy);
    assert_eq!(produce(&mut raw, "strict", ok.clone()), (0, 0));
    assert_eq!(produce(&mut raw, "plain", ok), (0, 0));
    let got = consume_all(&b.bootstrap, "strict", 1, T);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].value.as_deref(), Some(&[0u8; 1000][..]));
    let (batches, _) = stored(&b.log_dir(), "strict", 0);
    assert_eq!(batches.len(), 1);
    assert_eq!(batches[0].codec, 3);
    assert!(batches[0].size < 200, "{batches:?}");
}
