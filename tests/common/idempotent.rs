//! Raw idempotent-producer requests: batches with exact producer ids, epochs and
//! sequences, to shape retries and gaps no client library would send on purpose.

use bytes::{Bytes, BytesMut};
use indexmap::IndexMap;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, InitProducerIdRequest, ProduceRequest, RequestKind, ResponseKind, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use super::RawClient;

/// One batch of `count` records from producer `pid`, sequences from `first_seq`;
/// values are `seq-<n>`.
pub fn batch(pid: i64, epoch: i16, first_seq: i32, count: i32) -> Bytes {
    batch_compressed(pid, epoch, first_seq, count, Compression::None)
}

/// [`batch`] compressed with `compression`.
pub fn batch_compressed(
    pid: i64,
    epoch: i16,
    first_seq: i32,
    count: i32,
    compression: Compression,
) -> Bytes {
    // Stamped now, so that time retention treats them like any fresh record.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let records: Vec<Record> = (0..count)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: pid,
            producer_epoch: epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: first_seq + i,
            timestamp: now,
            key: None,
            value: Some(Bytes::from(format!("seq-{}", first_seq + i))),
            headers: IndexMap::new(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .unwrap();
    buf.freeze()
}

/// Sends one batch to partition 0 with acks=all; returns (error code, base offset).
pub fn produce(raw: &mut RawClient, topic: &str, records: Bytes) -> (i16, i64) {
    let (code, base, _) = produce_to(raw, topic, 0, records);
    (code, base)
}

/// Sends one batch to `partition` with acks=all; returns (error code, base offset,
/// error message).
pub fn produce_to(
    raw: &mut RawClient,
    topic: &str,
    partition: i32,
    records: Bytes,
) -> (i16, i64, Option<String>) {
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(records))])]);
    let ResponseKind::Produce(resp) = raw.call(ApiKey::Produce, 9, RequestKind::Produce(req))
    else {
        panic!()
    };
    let p = &resp.responses[0].partition_responses[0];
    (
        p.error_code,
        p.base_offset,
        p.error_message.as_ref().map(|m| m.to_string()),
    )
}

/// A fresh idempotent producer id (epoch 0).
pub fn init_producer_id(raw: &mut RawClient) -> i64 {
    let ResponseKind::InitProducerId(r) = raw.call(
        ApiKey::InitProducerId,
        4,
        RequestKind::InitProducerId(
            InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(60000)
                .with_producer_id((-1).into())
                .with_producer_epoch(-1),
        ),
    ) else {
        panic!()
    };
    assert_eq!(r.error_code, 0);
    assert_eq!(r.producer_epoch, 0);
    r.producer_id.0
}
