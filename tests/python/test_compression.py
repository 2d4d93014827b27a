"""Topic compression.type: batches the broker recompressed to snappy (xerial-framed, as
Kafka's Java client writes it) and to lz4 (frames as Kafka writes them) are read by
kafka-python and by confluent-kafka (librdkafka), from producers of other codecs:
kafka-python's own producer and librdkafka's (which sends raw, unframed snappy)."""

import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition as CkTopicPartition
from kafka import TopicPartition
from kafka.codec import has_lz4, has_snappy

from conftest import POLL_TIMEOUT_S, consume_all, create_topic, raw_fetch_batches, unique_topic

CODEC_IDS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}
N = 300
# Recent CreateTimes, out of order, distinct per record.
TS0 = int(time.time() * 1000) - 60_000


def ts(i):
    return TS0 + (i * 37) % 1000


def record(i):
    key = None if i % 6 == 0 else b"key-%d" % i
    value = b"" if i == 4 else (b"%04d " % i) * (i % 40 + 1) + bytes(range(i % 256))
    headers = [("h", b"%d" % i)] if i % 3 == 0 else []
    return key, value, headers


def produce_kafka_python(clients, broker, topic, codec):
    producer = clients.producer(broker, acks="all", compression_type=codec,
                                linger_ms=20, batch_size=16 * 1024)
    for i in range(N):
        key, value, headers = record(i)
        producer.send(topic, key=key, value=value, headers=headers, partition=0,
                      timestamp_ms=ts(i))
    producer.flush(timeout=60)


def produce_librdkafka(broker, topic, codec):
    p = Producer({"bootstrap.servers": broker.bootstrap, "compression.codec": codec,
                  "linger.ms": 20, "batch.num.messages": 50, "acks": "all"})
    failures = []
    for i in range(N):
        key, value, headers = record(i)
        p.produce(topic, value=value, key=key, headers=headers, partition=0,
                  timestamp=ts(i),
                  on_delivery=lambda err, _msg: err and failures.append(err))
    assert p.flush(POLL_TIMEOUT_S) == 0, "undelivered messages"
    assert not failures, failures


def check_kafka_python(clients, broker, topic):
    consumer = clients.consumer(broker)
    got = consume_all(consumer, [TopicPartition(topic, 0)])[TopicPartition(topic, 0)]
    assert [r.offset for r in got] == list(range(N))
    assert [(r.key, r.value, list(r.headers)) for r in got] == [record(i) for i in range(N)]
    assert [r.timestamp for r in got] == [ts(i) for i in range(N)]


def check_librdkafka(broker, topic):
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "unused",
                  "enable.auto.commit": False, "enable.partition.eof": True})
    try:
        c.assign([CkTopicPartition(topic, 0, 0)])
        got = []
        deadline = time.monotonic() + POLL_TIMEOUT_S
        while True:
            assert time.monotonic() < deadline, f"only {len(got)} of {N} records arrived"
            m = c.poll(0.2)
            if m is None:
                continue
            if m.error():
                assert m.error().code() == -191, m.error()  # _PARTITION_EOF
                if len(got) >= N:
                    break
                continue
            got.append(m)
        assert [m.offset() for m in got] == list(range(N))
        for i, m in enumerate(got):
            key, value, headers = record(i)
            assert (m.key(), m.value() or b"", m.headers() or []) == (key, value, headers), i
            assert m.timestamp()[1] == ts(i), i
    finally:
        c.close()


@pytest.mark.parametrize("topic_codec,producer,producer_codec", [
    ("snappy", "kafka-python", "gzip"),
    ("snappy", "librdkafka", "zstd"),
    ("lz4", "kafka-python", "snappy"),
    ("lz4", "librdkafka", "snappy"),
])
def test_recompressed_topics_read_by_kafka_python_and_librdkafka(
        broker, clients, topic_codec, producer, producer_codec):
    assert has_snappy() and has_lz4(), (
        "kafka-python needs its codec libraries: pip install -r tests/python/requirements.txt"
    )
    admin = clients.admin(broker)
    topic = unique_topic(f"{topic_codec}-from-{producer_codec}")
    create_topic(admin, topic, 1, {"compression.type": topic_codec})
    if producer == "kafka-python":
        produce_kafka_python(clients, broker, topic, producer_codec)
    else:
        produce_librdkafka(broker, topic, producer_codec)

    batches = raw_fetch_batches(admin, topic, 0)
    assert len(batches) > 1, "several batches"
    assert {b["compression"] for b in batches} == {CODEC_IDS[topic_codec]}, batches[:2]
    assert sum(len(b["records"]) for b in batches) == N

    check_kafka_python(clients, broker, topic)
    check_librdkafka(broker, topic)
