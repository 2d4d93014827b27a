//! Produce and consume through librdkafka (the rdkafka crate) against a real broker.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use rdkafka::consumer::Consumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};

const T: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_keyed_records_acks_all_keep_order_without_loss_or_duplicates() {
    let b = TestBroker::start().await;
    create_topic(&b.bootstrap, "keyed", 6, &[]).await;
    let p = producer(
        &b.bootstrap,
        &[
            ("acks", "all"),
            ("enable.idempotence", "true"),
            ("batch.num.messages", "500"),
        ],
    );
    let mut futures = Vec::new();
    for i in 0..10_000u32 {
        let key = format!("key-{}", i % 97);
        let value = format!("value-{i}");
        futures.push(
            p.send_result(FutureRecord::to("keyed").key(&key).payload(&value))
                .expect("enqueue"),
        );
    }
    let mut delivered = HashMap::new();
    for (i, f) in futures.into_iter().enumerate() {
        let d = f.await.expect("delivery future").expect("delivered");
        assert!(
            delivered.insert((d.partition, d.offset), i).is_none(),
            "two records acknowledged at one offset"
        );
    }
    let got = consume_all(&b.bootstrap, "keyed", 6, T);
    assert_eq!(
        got.len(),
        10_000,
        "every acknowledged record is read back exactly once"
    );
    let mut last_offset: HashMap<i32, i64> = HashMap::new();
    let mut last_per_key: HashMap<Vec<u8>, u32> = HashMap::new();
    let mut partitions_used = std::collections::HashSet::new();
    for g in &got {
        let i = delivered[&(g.partition, g.offset)];
        assert_eq!(g.value.as_deref(), Some(format!("value-{i}").as_bytes()));
        assert_eq!(g.key.as_deref(), Some(format!("key-{}", i % 97).as_bytes()));
        if let Some(prev) = last_offset.insert(g.partition, g.offset) {
            assert_eq!(
                g.offset,
                prev + 1,
                "offsets in a partition are dense and ordered"
            );
        }
        let n = i as u32;
        if let Some(prev) = last_per_key.insert(g.key.clone().unwrap(), n) {
            assert!(n > prev, "records of one key arrive in produce order");
        }
        partitions_used.insert(g.partition);
    }
    assert_eq!(partitions_used.len(), 6, "keys spread over all partitions");
}

/// Reads every batch header of a partition's first segment: (attributes, record count).
fn stored_batches(log_dir: &std::path::Path, topic: &str, partition: i32) -> Vec<(i16, i32)> {
    let path = log_dir
        .join(format!("{topic}-{partition}"))
        .join("00000000000000000000.log");
    let data = std::fs::read(path).unwrap();
    let mut out = Vec::new();
    let mut pos = 0;
    while pos + 61 <= data.len() {
        let len = i32::from_be_bytes(data[pos + 8..pos + 12].try_into().unwrap()) as usize;
        let attrs = i16::from_be_bytes(data[pos + 21..pos + 23].try_into().unwrap());
        let count = i32::from_be_bytes(data[pos + 57..pos + 61].try_into().unwrap());
        out.push((attrs, count));
        pos += 12 + len;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_compression_codec_round_trips_and_is_stored_as_sent() {
    let b = TestBroker::start().await;
    for (codec, id) in [("gzip", 1), ("snappy", 2), ("lz4", 3), ("zstd", 4)] {
        let topic = format!("codec-{codec}");
        create_topic(&b.bootstrap, &topic, 1, &[]).await;
        let p = producer(
            &b.bootstrap,
            &[("compression.codec", codec), ("linger.ms", "50")],
        );
        let mut futures = Vec::new();
        for i in 0..500 {
            let value = format!("{codec} payload {i} {}", "x".repeat(100));
            futures.push(
                p.send_result(FutureRecord::<(), _>::to(&topic).payload(&value))
                    .unwrap(),
            );
        }
        for f in futures {
            f.await.unwrap().unwrap();
        }
        let got = consume_all(&b.bootstrap, &topic, 1, T);
        assert_eq!(got.len(), 500, "{codec}");
        for (i, g) in got.iter().enumerate() {
            assert_eq!(g.offset, i as i64);
            assert_eq!(
                g.value.as_deref(),
                Some(format!("{codec} payload {i} {}", "x".repeat(100)).as_bytes())
            );
        }
        let batches = stored_batches(&b.log_dir(), &topic, 0);
        assert!(!batches.is_empty());
        assert!(
            batches.iter().all(|(attrs, _)| attrs & 7 == id),
            "{codec} batches kept compressed as sent: {batches:?}"
        );
        assert_eq!(batches.iter().map(|(_, c)| c).sum::<i32>(), 500);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_null_keys_and_empty_values_survive() {
    let b = TestBroker::start().await;
    create_topic(&b.bootstrap, "shapes", 1, &[]).await;
    let p = producer(&b.bootstrap, &[]);
    let headers = OwnedHeaders::new()
        .insert(Header {
            key: "trace",
            value: Some("abc"),
        })
        .insert(Header {
            key: "empty",
            value: Some(""),
        })
        .insert(Header::<&str> {
            key: "null",
            value: None,
        });
    p.send(
        FutureRecord::<str, str>::to("shapes")
            .payload("with headers")
            .headers(headers),
        T,
    )
    .await
    .unwrap();
    p.send(FutureRecord::<(), str>::to("shapes").payload("no key"), T)
        .await
        .unwrap();
    p.send(
        FutureRecord::<str, str>::to("shapes").key("k").payload(""),
        T,
    )
    .await
    .unwrap();
    p.send(FutureRecord::<str, ()>::to("shapes").key("tombstone"), T)
        .await
        .unwrap();
    let got = consume_all(&b.bootstrap, "shapes", 1, T);
    assert_eq!(got.len(), 4);
    assert_eq!(
        got[0].headers,
        vec![
            ("trace".into(), Some(b"abc".to_vec())),
            ("empty".into(), Some(vec![])),
            ("null".into(), None)
        ]
    );
    assert_eq!(got[1].key, None);
    assert_eq!(got[1].value.as_deref(), Some(&b"no key"[..]));
    assert_eq!(got[2].value.as_deref(), Some(&b""[..]));
    assert_eq!(got[3].key.as_deref(), Some(&b"tombstone"[..]));
    assert_eq!(got[3].value, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_over_max_message_bytes_is_refused_and_the_broker_keeps_serving() {
    let b = TestBroker::start().await;
    create_topic(&b.bootstrap, "small", 1, &[("max.message.bytes", "2000")]).await;
    let p = producer(&b.bootstrap, &[("compression.codec", "none")]);
    let big = "y".repeat(5000);
    let err = p
        .send(FutureRecord::<(), _>::to("small").payload(&big), T)
        .await
        .unwrap_err()
        .0;
    assert_eq!(
        err,
        KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge),
        "{err:?}"
    );
    let ok = p
        .send(FutureRecord::<(), _>::to("small").payload("fits"), T)
        .await
        .expect("small record accepted");
    assert_eq!(ok.offset, 0, "the refused batch took no offset");
    let got = consume_all(&b.bootstrap, "small", 1, T);
    assert_eq!(got.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_offsets_by_timestamp_finds_the_first_record_at_or_after() {
    let b = TestBroker::start().await;
    create_topic(&b.bootstrap, "times", 1, &[]).await;
    let p = producer(&b.bootstrap, &[("linger.ms", "0")]);
    let base = 1_700_000_000_000i64;
    for i in 0..10i64 {
        p.send(
            FutureRecord::<(), _>::to("times")
                .payload("t")
                .timestamp(base + i * 1000),
            T,
        )
        .await
        .unwrap();
    }
    let c = consumer(&b.bootstrap, &[]);
    let query = |ts: i64| {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset("times", 0, Offset::Offset(ts))
            .unwrap();
        let r = c.offsets_for_times(tpl, T).unwrap();
        r.find_partition("times", 0).unwrap().offset()
    };
    assert_eq!(query(base), Offset::Offset(0));
    assert_eq!(query(base + 2500), Offset::Offset(3));
    assert_eq!(query(base + 9000), Offset::Offset(9));
    assert_eq!(query(base + 9001), Offset::End, "no record that late");
    let (low, high) = c.fetch_watermarks("times", 0, T).unwrap();
    assert_eq!((low, high), (0, 10));
    let got = consume_all(&b.bootstrap, "times", 1, T);
    assert_eq!(
        got[4].timestamp,
        Some(base + 4000),
        "CreateTime timestamps kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_append_time_topics_stamp_the_broker_time() {
    let b = TestBroker::start().await;
    create_topic(
        &b.bootstrap,
        "lat",
        1,
        &[("message.timestamp.type", "LogAppendTime")],
    )
    .await;
    let p = producer(&b.bootstrap, &[]);
    let before = chrono_ms();
    p.send(
        FutureRecord::<(), _>::to("lat")
            .payload("x")
            .timestamp(1000),
        T,
    )
    .await
    .unwrap();
    let got = consume_all(&b.bootstrap, "lat", 1, T);
    let ts = got[0].timestamp.unwrap();
    assert!(
        ts >= before - 1000 && ts <= chrono_ms() + 1000,
        "broker time {ts} replaced the producer's 1000"
    );
}

fn chrono_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_records_moves_the_log_start_offset() {
    let b = TestBroker::start().await;
    create_topic(&b.bootstrap, "trim", 1, &[("segment.bytes", "1024")]).await;
    let p = producer(&b.bootstrap, &[("linger.ms", "0")]);
    for i in 0..100 {
        p.send(
            FutureRecord::<(), _>::to("trim").payload(&format!("record-{i:03}-{}", "z".repeat(40))),
            T,
        )
        .await
        .unwrap();
    }
    let client = admin(&b.bootstrap);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("trim", 0, Offset::Offset(60))
        .unwrap();
    let res = client.delete_records(&tpl, &admin_opts()).await.unwrap();
    assert_eq!(
        res.find_partition("trim", 0).unwrap().offset(),
        Offset::Offset(60)
    );
    let c = consumer(&b.bootstrap, &[]);
    assert_eq!(c.fetch_watermarks("trim", 0, T).unwrap(), (60, 100));
    let got = consume_all(&b.bootstrap, "trim", 1, T);
    assert_eq!(got.len(), 40);
    assert_eq!(got[0].offset, 60);
    assert_eq!(
        got[0].value.as_deref(),
        Some(format!("record-060-{}", "z".repeat(40)).as_bytes())
    );
    // Whole segments below the new start are gone from disk.
    let mut bases: Vec<i64> = std::fs::read_dir(b.log_dir().join("trim-0"))
        .unwrap()
        .filter_map(|e| {
            e.unwrap()
                .file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".log"))
                .and_then(|n| n.parse().ok())
        })
        .collect();
    bases.sort();
    assert!(
        bases[0] > 0 && bases[0] <= 60,
        "segments wholly below offset 60 were deleted: {bases:?}"
    );
    assert!(bases[1..].iter().all(|&b| b > 60), "{bases:?}");
    // The new start survives a restart.
    let b = b.restart(&[]).await;
    let c = consumer(&b.bootstrap, &[]);
    assert_eq!(c.fetch_watermarks("trim", 0, T).unwrap(), (60, 100));
    // Deleting beyond the high watermark is an error.
    let client = admin(&b.bootstrap);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("trim", 0, Offset::Offset(500))
        .unwrap();
    let res = client.delete_records(&tpl, &admin_opts()).await;
    let failed = match res {
        Err(_) => true,
        Ok(tpl) => tpl.find_partition("trim", 0).unwrap().error().is_err(),
    };
    assert!(failed, "DeleteRecords past the high watermark must fail");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_zero_gets_no_response_but_is_written_and_min_insync_is_enforced() {
    let b = TestBroker::start().await;
    create_topic(&b.bootstrap, "fire-and-forget", 1, &[]).await;
    let p = producer(&b.bootstrap, &[("acks", "0")]);
    let mut futures = Vec::new();
    for i in 0..100 {
        futures.push(
            p.send_result(FutureRecord::<(), _>::to("fire-and-forget").payload(&format!("{i}")))
                .unwrap(),
        );
    }
    for f in futures {
        f.await.unwrap().expect("acks=0 delivery reported locally");
    }
    let deadline = std::time::Instant::now() + T;
    loop {
        let c = consumer(&b.bootstrap, &[]);
        let (_, high) = c.fetch_watermarks("fire-and-forget", 0, T).unwrap();
        if high == 100 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "acks=0 records written ({high}/100)"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // min.insync.replicas=2 on a single replica: acks=all is refused, acks=1 is not.
    create_topic(
        &b.bootstrap,
        "needs-two",
        1,
        &[("min.insync.replicas", "2")],
    )
    .await;
    let p = producer(
        &b.bootstrap,
        &[
            ("acks", "all"),
            ("retries", "0"),
            ("message.timeout.ms", "5000"),
        ],
    );
    let err = p
        .send(FutureRecord::<(), _>::to("needs-two").payload("x"), T)
        .await
        .unwrap_err()
        .0;
    assert_eq!(
        err,
        KafkaError::MessageProduction(RDKafkaErrorCode::NotEnoughReplicas),
        "{err:?}"
    );
    let p = producer(&b.bootstrap, &[("acks", "1")]);
    p.send(FutureRecord::<(), _>::to("needs-two").payload("x"), T)
        .await
        .expect("acks=1 does not need the ISR");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_offsets_max_timestamp_returns_the_record_holding_it() {
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use kafka_protocol::messages::{
        ApiKey, ListOffsetsRequest, RequestKind, ResponseKind, TopicName,
    };
    let b = TestBroker::start().await;
    create_topic(&b.bootstrap, "maxts", 1, &[]).await;
    let p = producer(&b.bootstrap, &[("linger.ms", "0")]);
    let now = chrono_ms();
    for (i, ts) in [now - 5000, now - 1000, now - 3000, now - 2000]
        .into_iter()
        .enumerate()
    {
        p.send(
            FutureRecord::<(), _>::to("maxts")
                .payload(&format!("{i}"))
                .timestamp(ts),
            T,
        )
        .await
        .unwrap();
    }
    let mut raw = RawClient::connect(&b.bootstrap);
    let query = |raw: &mut RawClient, ts: i64| {
        let req = ListOffsetsRequest::default()
            .with_replica_id((-1).into())
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(TopicName(
                    kafka_protocol::protocol::StrBytes::from_static_str("maxts"),
                ))
                .with_partitions(vec![ListOffsetsPartition::default()
                    .with_partition_index(0)
                    .with_timestamp(ts)])]);
        let ResponseKind::ListOffsets(r) =
            raw.call(ApiKey::ListOffsets, 7, RequestKind::ListOffsets(req))
        else {
            panic!()
        };
        let p = &r.topics[0].partitions[0];
        (p.error_code, p.offset, p.timestamp)
    };
    assert_eq!(
        query(&mut raw, -3),
        (0, 1, now - 1000),
        "max timestamp is at offset 1"
    );
    assert_eq!(query(&mut raw, -2), (0, 0, -1));
    assert_eq!(query(&mut raw, -1), (0, 4, -1));
    assert_eq!(
        query(&mut raw, now - 2500),
        (0, 1, now - 1000),
        "first record at or after the target"
    );
    assert_eq!(query(&mut raw, now + 1000), (0, -1, -1));
}
