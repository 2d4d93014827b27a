"""Records written by one client library and read by the other, byte for byte:
kafka-python -> kcat (librdkafka) and kcat -> kafka-python."""

import time

import pytest
from kafka import TopicPartition

from conftest import (KCAT_COMMON, consume_all, create_topic, kcat_consume, kcat_produce,
                      run_kcat, unique_topic)

ALL_BYTES = bytes(range(256))

# (key, value) pairs that stress framing: NUL, newline, the ':' kcat uses elsewhere,
# every byte value, invalid UTF-8, empty and NULL keys and values, and a large value.
TRICKY = [
    (b"plain-key", b"plain value"),
    (None, b"null key"),
    (b"", b"empty key"),
    (b"empty-value", b""),
    (b"tombstone", None),
    (b"nl\nkey", b"line1\nline2\n"),
    (b"colon:key", b"a:b:c"),
    (b"\x00\x00", b"\x00" * 64),
    (ALL_BYTES, ALL_BYTES[::-1]),
    (b"\xff\xfe\xfd", b"\xc3\x28 invalid utf-8 \xa0\xa1"),
    (b"big", bytes(range(256)) * 800),  # 204,800 bytes
]


@pytest.mark.parametrize("codec", [None, "gzip", "snappy", "lz4", "zstd"])
def test_kafka_python_to_kcat(broker, clients, codec):
    admin = clients.admin(broker)
    topic = unique_topic("py2kcat")
    create_topic(admin, topic, 2)
    producer = clients.producer(broker, acks="all", compression_type=codec, linger_ms=20,
                                max_request_size=2_000_000)
    base = int(time.time() * 1000) - 10_000
    futures = []
    for i, (key, value) in enumerate(TRICKY * 2):
        futures.append(((key, value, base + i),
                        producer.send(topic, key=key, value=value, partition=i % 2,
                                      timestamp_ms=base + i)))
    producer.flush(timeout=60)
    expected = []
    for (key, value, ts), f in futures:
        md = f.get(timeout=30)
        expected.append((md.partition, md.offset, key, value, ts))
    expected.sort()

    got = kcat_consume(broker, topic, extra=["-X", "fetch.message.max.bytes=4000000"])
    assert [(r.partition, r.offset, r.key, r.value, r.timestamp) for r in got] == expected


def test_kafka_python_headers_to_kcat(broker, clients):
    admin = clients.admin(broker)
    topic = unique_topic("py2kcath")
    create_topic(admin, topic)
    producer = clients.producer(broker, acks="all")
    producer.send(topic, value=b"a", headers=[("x", b"1"), ("y", b"two"), ("x", b"3")])
    producer.send(topic, value=b"b", headers=[])
    producer.flush(timeout=30)
    proc = run_kcat(["-C", "-b", broker.bootstrap, "-t", topic, "-o", "0", "-e",
                     "-f", "%s[%h]\\n", *KCAT_COMMON])
    assert proc.stdout == b"a[x=1,y=two,x=3]\nb[]\n"


# kcat -P splits stdin on -D and the key on -K; these records avoid those two bytes.
KCAT_RECORDS = [
    (b"k\n1", b"v\x00al\nue:1"),
    (b"k2", ALL_BYTES.replace(b"\x1d", b"").replace(b"\x1e", b"")),
    (b"\xff\xfe", b"\x80\x81 not utf-8"),
    (b"k4", b""),
    (b"same", b"x" * 100_000),
    (b"same", b"last"),
]


@pytest.mark.parametrize("codec", [None, "zstd"])
def test_kcat_to_kafka_python(broker, clients, codec):
    admin = clients.admin(broker)
    topic = unique_topic("kcat2py")
    create_topic(admin, topic)
    data = b"".join(k + b"\x1d" + v + b"\x1e" for k, v in KCAT_RECORDS)
    extra = ["-D", "\\x1e", "-K", "\\x1d", "-p", "0"]
    if codec:
        extra += ["-z", codec]
    kcat_produce(broker, topic, data, extra=extra)

    consumer = clients.consumer(broker, max_partition_fetch_bytes=4_000_000)
    (records,) = consume_all(consumer, [TopicPartition(topic, 0)]).values()
    assert [(r.key, r.value) for r in records] == KCAT_RECORDS
    assert [r.offset for r in records] == list(range(len(KCAT_RECORDS)))


def test_kcat_files_to_kafka_python(broker, clients, tmp_path):
    """kcat -P FILE sends each file as one message: fully arbitrary bytes."""
    admin = clients.admin(broker)
    topic = unique_topic("kfiles")
    create_topic(admin, topic)
    payloads = [ALL_BYTES * 3, b"\n\n\n", b"\x00", ALL_BYTES[::-1] * 2000]
    files = []
    for i, payload in enumerate(payloads):
        f = tmp_path / f"msg{i}.bin"
        f.write_bytes(payload)
        files.append(str(f))
    run_kcat(["-P", "-b", broker.bootstrap, "-t", topic, "-p", "0", "-k", "\x01key\x7f",
              *KCAT_COMMON, *files])
    consumer = clients.consumer(broker, max_partition_fetch_bytes=4_000_000)
    (records,) = consume_all(consumer, [TopicPartition(topic, 0)]).values()
    # One message per file, in command-line order, with the fixed key.
    assert [r.value for r in records] == payloads
    assert all(r.key == b"\x01key\x7f" for r in records)


def test_both_clients_interleaved_on_one_partition(broker, clients):
    admin = clients.admin(broker)
    topic = unique_topic("mixed")
    create_topic(admin, topic)
    producer = clients.producer(broker, acks="all")
    expected = []
    for round_ in range(4):
        for i in range(25):
            v = b"py-%d-%d" % (round_, i)
            producer.send(topic, key=b"py", value=v, partition=0)
            expected.append((b"py", v))
        producer.flush(timeout=30)
        lines = [(b"kc", b"kcat-%d-%d" % (round_, i)) for i in range(25)]
        kcat_produce(broker, topic, b"".join(k + b":" + v + b"\n" for k, v in lines),
                     extra=["-K:", "-p", "0"])
        expected.extend(lines)

    via_kcat = kcat_consume(broker, topic)
    consumer = clients.consumer(broker)
    (via_py,) = consume_all(consumer, [TopicPartition(topic, 0)]).values()
    assert [(r.key, r.value) for r in via_kcat] == expected
    assert [(r.key, r.value) for r in via_py] == expected
    assert [r.offset for r in via_kcat] == [r.offset for r in via_py] == list(range(200))
