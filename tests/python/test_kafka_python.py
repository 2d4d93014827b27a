"""kafka-python KafkaProducer / KafkaConsumer (manual assignment, no group) against
a strata process."""

import collections
import time

import pytest
import kafka.errors as Errors
from kafka import TopicPartition
from kafka.codec import has_lz4, has_snappy, has_zstd

from conftest import (consume_all, create_topic, raw_fetch_batches, unique_topic,
                      wait_until)

CODEC_IDS = {"gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}


def tps(topic, n):
    return [TopicPartition(topic, p) for p in range(n)]


def test_thousand_keyed_records_three_partitions(broker, clients):
    admin = clients.admin(broker)
    topic = unique_topic("keyed")
    create_topic(admin, topic, 3)
    producer = clients.producer(broker, acks="all", linger_ms=5)

    n = 1000
    sent = []  # (key, value)
    futures = []
    for i in range(n):
        key = b"key-%02d" % (i % 40)
        value = b"value-%04d" % i
        sent.append((key, value))
        futures.append(producer.send(topic, key=key, value=value))
    producer.flush(timeout=60)
    metas = [f.get(timeout=30) for f in futures]

    # Every key went to one partition, and all three partitions were used.
    key_partition = {}
    for (key, _), md in zip(sent, metas):
        assert key_partition.setdefault(key, md.partition) == md.partition
    assert set(key_partition.values()) == {0, 1, 2}

    # Acknowledged offsets are dense per partition and in send order.
    by_partition = collections.defaultdict(list)
    for (key, value), md in zip(sent, metas):
        by_partition[md.partition].append((md.offset, key, value))
    for p, entries in by_partition.items():
        assert [o for o, _, _ in entries] == list(range(len(entries))), f"partition {p}"

    consumer = clients.consumer(broker)
    got = consume_all(consumer, tps(topic, 3))
    assert sum(len(v) for v in got.values()) == n
    for tp, records in got.items():
        # Exactly what was acknowledged at exactly those offsets: no loss, no
        # duplicates, per-partition order kept.
        assert [(r.offset, r.key, r.value) for r in records] == by_partition[tp.partition], tp
    all_values = [r.value for rs in got.values() for r in rs]
    assert len(set(all_values)) == n
    assert consumer.end_offsets(tps(topic, 3)) == {
        TopicPartition(topic, p): len(by_partition[p]) for p in range(3)
    }


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_compression_round_trip(broker, clients, codec):
    available = {"gzip": True, "snappy": has_snappy(), "lz4": has_lz4(), "zstd": has_zstd()}
    assert available[codec], (
        f"kafka-python has no {codec} codec library: pip install -r tests/python/requirements.txt"
    )
    admin = clients.admin(broker)
    topic = unique_topic(codec)
    create_topic(admin, topic, 2)
    producer = clients.producer(broker, acks="all", compression_type=codec,
                                linger_ms=50, batch_size=64 * 1024)
    expected = {0: [], 1: []}
    for i in range(300):
        p = i % 2
        key = None if i % 7 == 0 else b"k%d" % i
        # Compressible and less compressible values, one empty.
        value = b"" if i == 5 else (b"%05d" % i) * (i % 50 + 1) + bytes(range(i % 256))
        headers = [("h", b"%d" % i)] if i % 3 == 0 else []
        producer.send(topic, key=key, value=value, headers=headers, partition=p)
        expected[p].append((key, value, headers))
    producer.flush(timeout=60)

    consumer = clients.consumer(broker)
    got = consume_all(consumer, tps(topic, 2))
    for p in (0, 1):
        records = got[TopicPartition(topic, p)]
        assert [(r.key, r.value, list(r.headers)) for r in records] == expected[p]
        assert [r.offset for r in records] == list(range(150))

    # The broker kept the producer's compression (compression.type=producer) and
    # batched records really were compressed with this codec.
    batches = raw_fetch_batches(admin, topic, 0)
    assert batches, "no batches fetched"
    assert {b["compression"] for b in batches} == {CODEC_IDS[codec]}, batches[:2]
    assert sum(len(b["records"]) for b in batches) == 150
    assert any(len(b["records"]) > 1 for b in batches), "expected at least one multi-record batch"


def test_headers_round_trip(broker, clients):
    admin = clients.admin(broker)
    topic = unique_topic("hdr")
    create_topic(admin, topic)
    producer = clients.producer(broker, acks="all")
    cases = [
        [],
        [("a", b"1")],
        [("dup", b"first"), ("dup", b"second"), ("dup", b"")],  # repeated keys, order kept
        [("ünïcødé-ключ", "значение".encode()), ("bin", bytes(range(256)))],
        [("big", b"x" * 10_000)],
    ]
    for i, headers in enumerate(cases):
        producer.send(topic, value=b"v%d" % i, headers=headers).get(timeout=30)
    consumer = clients.consumer(broker)
    (records,) = consume_all(consumer, tps(topic, 1)).values()
    assert [list(r.headers) for r in records] == cases
    assert [r.value for r in records] == [b"v%d" % i for i in range(len(cases))]


def test_null_key_empty_value_and_tombstone(broker, clients):
    admin = clients.admin(broker)
    topic = unique_topic("nulls")
    create_topic(admin, topic)
    producer = clients.producer(broker, acks="all")
    sends = [
        (None, b"null key"),
        (b"k-empty-value", b""),
        (b"k-tombstone", None),
        (b"", b"empty key"),
        (None, b""),
    ]
    for key, value in sends:
        producer.send(topic, key=key, value=value, partition=0).get(timeout=30)
    consumer = clients.consumer(broker)
    (records,) = consume_all(consumer, tps(topic, 1)).values()
    assert [(r.key, r.value) for r in records] == sends
    # None and b"" stay distinct on the wire.
    assert records[0].key is None and records[3].key == b""
    assert records[2].value is None and records[1].value == b""


def test_binary_and_large_values(broker, clients):
    admin = clients.admin(broker)
    topic = unique_topic("bin")
    create_topic(admin, topic)
    producer = clients.producer(broker, acks="all", max_request_size=4_000_000)
    values = [bytes(range(256)) * 4, b"\x00" * 1000, bytes(reversed(range(256))) * 3000]
    for v in values:
        producer.send(topic, key=b"\x00\xff", value=v).get(timeout=30)
    consumer = clients.consumer(broker, max_partition_fetch_bytes=8_000_000)
    (records,) = consume_all(consumer, tps(topic, 1)).values()
    assert [r.value for r in records] == values
    assert all(r.key == b"\x00\xff" for r in records)


def test_value_over_topic_max_message_bytes_rejected(broker, clients):
    admin = clients.admin(broker)
    topic = unique_topic("big")
    create_topic(admin, topic, configs={"max.message.bytes": "20000"})
    # Client-side limits well above the topic's, so the broker is what refuses it.
    producer = clients.producer(broker, acks="all", max_request_size=10_000_000,
                                batch_size=1_000_000, retries=0)
    producer.send(topic, value=b"ok-before").get(timeout=30)
    with pytest.raises(Errors.MessageSizeTooLargeError):
        producer.send(topic, value=b"x" * 50_000).get(timeout=30)

    # The broker keeps serving: the same producer and a new one both work, and the
    # refused record took no offset.
    assert producer.send(topic, value=b"ok-after").get(timeout=30).offset == 1
    other = clients.producer(broker, acks="all")
    assert other.send(topic, value=b"x" * 15_000).get(timeout=30).offset == 2
    consumer = clients.consumer(broker)
    (records,) = consume_all(consumer, tps(topic, 1)).values()
    assert [r.value for r in records] == [b"ok-before", b"ok-after", b"x" * 15_000]


def test_value_over_broker_message_max_bytes_rejected(broker_factory, clients):
    broker = broker_factory({"message.max.bytes": "30000"})
    admin = clients.admin(broker)
    topic = unique_topic("bbig")
    create_topic(admin, topic)  # inherits max.message.bytes=30000
    producer = clients.producer(broker, acks="all", max_request_size=10_000_000, retries=0)
    with pytest.raises(Errors.MessageSizeTooLargeError):
        producer.send(topic, value=b"y" * 100_000).get(timeout=30)
    assert producer.send(topic, value=b"y" * 10_000).get(timeout=30).offset == 0


def test_offsets_for_times_with_explicit_timestamps(broker, clients):
    admin = clients.admin(broker)
    topic = unique_topic("ts")
    create_topic(admin, topic, 2)
    producer = clients.producer(broker, acks="all")
    base = int(time.time() * 1000) - 3_600_000  # an hour ago: within the allowed skew
    for i in range(10):
        producer.send(topic, value=b"a%d" % i, partition=0, timestamp_ms=base + i * 1000)
    producer.flush(timeout=30)
    tp0, tp1 = tps(topic, 2)

    consumer = clients.consumer(broker)
    (records,) = consume_all(consumer, [tp0]).values()
    assert [r.timestamp for r in records] == [base + i * 1000 for i in range(10)]
    assert all(r.timestamp_type == 0 for r in records)  # CreateTime

    res = consumer.offsets_for_times({tp0: base + 2500})
    assert (res[tp0].offset, res[tp0].timestamp) == (3, base + 3000)
    res = consumer.offsets_for_times({tp0: base + 4000})
    assert (res[tp0].offset, res[tp0].timestamp) == (4, base + 4000)
    res = consumer.offsets_for_times({tp0: 0})
    assert (res[tp0].offset, res[tp0].timestamp) == (0, base)
    res = consumer.offsets_for_times({tp0: base + 9000})
    assert res[tp0].offset == 9
    # After the newest record and on an empty partition: no offset.
    res = consumer.offsets_for_times({tp0: base + 9001, tp1: base})
    assert res[tp0] is None and res[tp1] is None


def test_offsets_for_times_out_of_order_timestamps(broker, clients):
    admin = clients.admin(broker)
    topic = unique_topic("tsooo")
    create_topic(admin, topic)
    producer = clients.producer(broker, acks="all")
    base = int(time.time() * 1000) - 600_000
    # Separate batches whose timestamps go back and forth.
    offsets_ts = [base + 5000, base + 1000, base + 7000, base + 3000]
    for i, ts in enumerate(offsets_ts):
        producer.send(topic, value=b"%d" % i, timestamp_ms=ts).get(timeout=30)
    (tp,) = tps(topic, 1)
    consumer = clients.consumer(broker)
    # The earliest offset whose timestamp is >= target.
    assert consumer.offsets_for_times({tp: base + 2000})[tp].offset == 0
    assert consumer.offsets_for_times({tp: base + 6000})[tp].offset == 2
    assert consumer.offsets_for_times({tp: base + 7000})[tp].offset == 2
    assert consumer.offsets_for_times({tp: base + 7001})[tp] is None


def test_beginning_and_end_offsets(broker, clients):
    admin = clients.admin(broker)
    topic = unique_topic("offs")
    create_topic(admin, topic, 3)
    consumer = clients.consumer(broker)
    parts = tps(topic, 3)
    assert consumer.beginning_offsets(parts) == {tp: 0 for tp in parts}
    assert consumer.end_offsets(parts) == {tp: 0 for tp in parts}

    producer = clients.producer(broker, acks="all")
    counts = {0: 5, 1: 0, 2: 17}
    for p, c in counts.items():
        for i in range(c):
            producer.send(topic, value=b"%d" % i, partition=p)
    producer.flush(timeout=30)
    assert consumer.beginning_offsets(parts) == {tp: 0 for tp in parts}
    assert consumer.end_offsets(parts) == {tp: counts[tp.partition] for tp in parts}

    # Seeking to the end and polling gives nothing; seeking back gives the tail.
    consumer.assign(parts)
    consumer.seek_to_end(*parts)
    assert {tp: consumer.position(tp) for tp in parts} == {tp: counts[tp.partition] for tp in parts}
    assert consumer.poll(timeout_ms=300) == {}
    consumer.seek(parts[2], 15)
    got = []
    wait_until(lambda: got.extend(consumer.poll(timeout_ms=100).get(parts[2], [])) or len(got) >= 2,
               message="2 records after seek")
    assert [(r.offset, r.value) for r in got] == [(15, b"15"), (16, b"16")]


def test_fetch_out_of_range_offset_resets(broker, clients):
    admin = clients.admin(broker)
    topic = unique_topic("oor")
    create_topic(admin, topic)
    producer = clients.producer(broker, acks="all")
    for i in range(3):
        producer.send(topic, value=b"%d" % i)
    producer.flush(timeout=30)
    (tp,) = tps(topic, 1)
    consumer = clients.consumer(broker, auto_offset_reset="earliest")
    consumer.assign([tp])
    consumer.seek(tp, 1000)  # past the end: OFFSET_OUT_OF_RANGE, reset to earliest
    got = []
    wait_until(lambda: got.extend(consumer.poll(timeout_ms=100).get(tp, [])) or len(got) >= 3,
               message="records after the out-of-range reset")
    assert [r.offset for r in got] == [0, 1, 2]


def test_idempotent_producer(broker, clients):
    admin = clients.admin(broker)
    topic = unique_topic("idem")
    create_topic(admin, topic, 2)
    producer = clients.producer(broker, acks="all", enable_idempotence=True,
                                max_in_flight_requests_per_connection=5, linger_ms=2)
    n = 500
    futures = [producer.send(topic, key=b"k%d" % (i % 10), value=b"%d" % i) for i in range(n)]
    producer.flush(timeout=60)
    metas = [f.get(timeout=30) for f in futures]
    pid_epoch = producer._transaction_manager.producer_id_and_epoch
    assert pid_epoch.producer_id >= 0, "InitProducerId gave no producer id"

    consumer = clients.consumer(broker)
    got = consume_all(consumer, tps(topic, 2))
    values = [r.value for rs in got.values() for r in rs]
    assert sorted(values) == sorted(b"%d" % i for i in range(n)), "loss or duplicates"
    for tp, records in got.items():
        assert [r.offset for r in records] == list(range(len(records)))
        mine = [md.offset for md in metas if md.partition == tp.partition]
        assert mine == list(range(len(records)))

    # The batches carry the producer id, and sequences run on without gaps.
    for p in (0, 1):
        batches = raw_fetch_batches(admin, topic, p)
        assert {b["producer_id"] for b in batches} == {pid_epoch.producer_id}
        assert {b["producer_epoch"] for b in batches} == {pid_epoch.epoch}
        seq = 0
        for b in batches:
            assert b["base_sequence"] == seq, (p, b["base_offset"], b["base_sequence"], seq)
            seq += len(b["records"])

    # A second idempotent producer gets a different id.
    other = clients.producer(broker, acks="all", enable_idempotence=True)
    other.send(topic, value=b"other", partition=0).get(timeout=30)
    other_pid = other._transaction_manager.producer_id_and_epoch.producer_id
    assert other_pid >= 0 and other_pid != pid_epoch.producer_id


def test_non_idempotent_acks_variants(broker, clients):
    admin = clients.admin(broker)
    topic = unique_topic("acks")
    create_topic(admin, topic)
    for acks in (0, 1, "all"):
        producer = clients.producer(broker, acks=acks, enable_idempotence=False)
        for i in range(20):
            producer.send(topic, value=b"%s-%d" % (str(acks).encode(), i))
        producer.flush(timeout=30)
    consumer = clients.consumer(broker)
    (tp,) = tps(topic, 1)
    wait_until(lambda: consumer.end_offsets([tp])[tp] == 60, message="60 records (acks=0 included)")
    (records,) = consume_all(consumer, [tp]).values()
    assert [r.value for r in records] == [
        b"%s-%d" % (a, i) for a in (b"0", b"1", b"all") for i in range(20)
    ]
    # Non-idempotent batches carry no producer id.
    assert {b["producer_id"] for b in raw_fetch_batches(admin, topic, 0)} == {-1}


def test_transactional_producer_times_out_without_an_authorization_error(broker, clients):
    # Transactions are not implemented yet: the broker answers COORDINATOR_NOT_AVAILABLE
    # for transactional ids, as Kafka does while it cannot place its transaction
    # coordinator, so the client retries until max_block_ms and reports a timeout, not
    # an ACL problem that does not exist.
    producer = clients.producer(broker, transactional_id=unique_topic("txn"), max_block_ms=3_000)
    with pytest.raises(Errors.KafkaTimeoutError):
        producer.init_transactions()
    # The same broker still serves an idempotent producer.
    topic = unique_topic("after-txn")
    md = clients.producer(broker, enable_idempotence=True).send(topic, value=b"x").get(timeout=30)
    assert md.offset == 0


def test_auto_create_topic_on_produce(broker_factory, clients):
    broker = broker_factory({"num.partitions": "2"})
    topic = unique_topic("auto")
    producer = clients.producer(broker, acks="all")
    md = producer.send(topic, value=b"hello").get(timeout=30)
    assert md.topic == topic and md.offset == 0
    admin = clients.admin(broker)
    assert topic in admin.list_topics()
    (t,) = admin.describe_topics([topic])
    assert len(t["partitions"]) == 2


def test_auto_create_disabled(broker_factory, clients):
    broker = broker_factory({"auto.create.topics.enable": "false"})
    topic = unique_topic("noauto")
    producer = clients.producer(broker, acks="all", max_block_ms=2000)
    with pytest.raises(Errors.KafkaTimeoutError):
        producer.send(topic, value=b"x").get(timeout=10)
    admin = clients.admin(broker)
    assert topic not in admin.list_topics()


def test_produce_to_deleted_topic_fails_and_recreated_topic_works(broker_factory, clients):
    broker = broker_factory({"auto.create.topics.enable": "false"})
    admin = clients.admin(broker)
    topic = unique_topic("del")
    create_topic(admin, topic)
    producer = clients.producer(broker, acks="all")
    assert producer.send(topic, value=b"before").get(timeout=30).offset == 0
    admin.delete_topics([topic])
    wait_until(lambda: topic not in admin.list_topics(), message="topic deleted")
    create_topic(admin, topic)
    consumer = clients.consumer(broker)
    (tp,) = tps(topic, 1)
    assert consumer.end_offsets([tp]) == {tp: 0}, "a re-created topic must start empty"
    fresh = clients.producer(broker, acks="all")
    assert fresh.send(topic, value=b"after").get(timeout=30).offset == 0
    (records,) = consume_all(consumer, [tp]).values()
    assert [r.value for r in records] == [b"after"]
