"""Tiered storage against moto's S3 server, started by localstack/run-local.sh (the
no-docker script users run): kafka-python and kcat read history that lives only in
the object store, byte for byte what was produced."""

import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from kafka import TopicPartition

from conftest import (KCAT, REPO_ROOT, consume_all, create_topic, free_port,
                      unique_topic, wait_until)


@pytest.fixture(scope="module")
def moto_endpoint(tmp_path_factory):
    """moto on a free port with the bucket `strata`, via the users' script."""
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "run-local.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(REPO_ROOT / "localstack" / "run-local.sh"), "--s3-only", "--port", str(port)],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    endpoint = f"http://127.0.0.1:{port}"

    def ready():
        assert proc.poll() is None, log.read_text()
        return b"ready" in log.read_bytes()

    wait_until(ready, timeout=120, interval=0.2, message="moto via run-local.sh")
    yield endpoint
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=20)


def tiered_broker(broker_factory, endpoint, prefix):
    return broker_factory({
        "object_store.url": f"s3://strata/{prefix}",
        "object_store.endpoint": endpoint,
        "object_store.allow_http": "true",
        "object_store.region": "us-east-1",
        "object_store.access_key_id": "test",
        "object_store.secret_access_key": "test",
        "remote.log.manager.task.interval.ms": "200",
        "log.retention.check.interval.ms": "200",
        "metrics.listener": f"127.0.0.1:{free_port()}",
    })


def local_segments(broker, topic, partition=0):
    d = Path(broker.data_dir) / f"{topic}-{partition}"
    return sorted(p.name for p in d.glob("*.log"))


def bucket_keys(endpoint, prefix):
    with urllib.request.urlopen(f"{endpoint}/strata?list-type=2&prefix={prefix}/") as r:
        body = r.read().decode()
    return [part.split("</Key>")[0] for part in body.split("<Key>")[1:]]


def test_history_from_moto_with_kafka_python_and_kcat(broker_factory, clients, moto_endpoint):
    prefix = unique_topic("py")
    broker = tiered_broker(broker_factory, moto_endpoint, prefix)
    admin = clients.admin(broker)
    topic = unique_topic("tiered")
    create_topic(admin, topic, 1, {
        "remote.storage.enable": "true",
        "segment.bytes": "65536",
        "local.retention.bytes": "0",
    })
    producer = clients.producer(broker, acks="all", linger_ms=10)
    base_ts = int(time.time() * 1000) - 600_000
    sent = []
    for i in range(1500):
        key = b"k-%d" % i
        value = (b"value-%05d-" % i) + bytes([65 + i % 26]) * (150 + i % 97)
        sent.append((key, value, base_ts + i))
        producer.send(topic, key=key, value=value, partition=0, timestamp_ms=base_ts + i)
    producer.flush(timeout=60)

    # Sealed segments go to moto, and the local copies go once uploaded.
    wait_until(lambda: len(local_segments(broker, topic)) == 1,
               message="local copies trimmed to the active segment")
    keys = bucket_keys(moto_endpoint, prefix)
    assert any(k.endswith(".log") for k in keys), keys
    assert any(k.endswith(".index") for k in keys), keys
    first_local = int(local_segments(broker, topic)[0].split(".")[0])
    assert first_local > 0

    # kafka-python reads everything from offset 0, most of it from the object store.
    consumer = clients.consumer(broker, fetch_max_bytes=1 << 20)
    tp = TopicPartition(topic, 0)
    got = consume_all(consumer, [tp])[tp]
    assert [(r.offset, r.key, r.value, r.timestamp) for r in got] == [
        (i, k, v, ts) for i, (k, v, ts) in enumerate(sent)
    ]
    # ListOffsets by time into the tiered range.
    found = consumer.offsets_for_times({tp: base_ts + 10})[tp]
    assert (found.offset, found.timestamp) == (10, base_ts + 10)
    assert consumer.beginning_offsets([tp])[tp] == 0

    # kcat (librdkafka 2.0) reads the same values from the beginning.
    out = subprocess.run(
        [KCAT, "-b", broker.bootstrap, "-C", "-t", topic, "-p", "0", "-o", "beginning",
         "-e", "-q", "-f", "%o %k\n"],
        capture_output=True, timeout=120, check=True,
    ).stdout.decode().split("\n")
    lines = [l for l in out if l]
    assert len(lines) == len(sent)
    assert lines[0] == "0 k-0" and lines[-1] == f"{len(sent) - 1} k-{len(sent) - 1}"

    # The metrics endpoint counts the remote reads.
    port = broker.overrides["metrics.listener"].split(":")[1]
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
    uploaded = [l for l in text.splitlines() if l.startswith("strata_remote_segments_uploaded_total")]
    assert uploaded and float(uploaded[0].split()[-1]) >= 1
    assert "strata_remote_fetch_bytes_total" in text


@pytest.mark.parametrize("case", ["missing bucket", "wrong endpoint"])
def test_bad_object_store_stops_startup_with_a_clear_error(broker_factory, moto_endpoint, case):
    if case == "missing bucket":
        url, endpoint = "s3://no-such-bucket/x", moto_endpoint
    else:
        url, endpoint = "s3://strata/x", f"http://127.0.0.1:{free_port()}"
    broker = broker_factory({
        "object_store.url": url,
        "object_store.endpoint": endpoint,
        "object_store.allow_http": "true",
        "object_store.access_key_id": "test",
        "object_store.secret_access_key": "test",
    }, start=False)
    # The listener is bound before the store is checked, so start() may return; the
    # process must then exit by itself, naming the store.
    try:
        broker.start()
    except AssertionError:
        pass
    broker.stopped_on_purpose = True
    wait_until(lambda: broker.proc.poll() is not None, timeout=60,
               message="strata to exit on a bad object store")
    assert broker.proc.returncode != 0
    log = broker.log_tail(lines=10)
    assert url in log and "did not answer" in log, log
