"""KIP-848 consumer groups driven by confluent-kafka-python, which bundles the newest
librdkafka (2.16 at the pinned version): the client a data engineer most often runs
with `group.protocol=consumer`. The Rust suite covers the same group through rdkafka
0.39 (librdkafka 2.12); this suite checks that a current librdkafka joins, splits,
takes over on close, closes promptly and resumes from committed offsets after a broker
restart.
"""

import threading
import time

import pytest
from confluent_kafka import (Consumer, ConsumerGroupState, ConsumerGroupType, Producer,
                             TopicPartition)
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import POLL_TIMEOUT_S, unique_topic, wait_until

# A consumer's close (leave heartbeat, revoke, final commit) must finish well within
# this on a loaded machine; librdkafka itself waits for the broker's answer.
CLOSE_TIMEOUT_S = 15


@pytest.fixture
def kbroker(broker_factory):
    # Quick heartbeats so that reassignments reach the members in well under a second.
    return broker_factory({"group.consumer.heartbeat.interval.ms": "300"})


def admin(broker):
    return AdminClient({"bootstrap.servers": broker.bootstrap})


def describe_group(broker, group):
    a = admin(broker)  # kept alive until the future resolves
    return a.describe_consumer_groups([group])[group].result(timeout=POLL_TIMEOUT_S)


def create(broker, topic, partitions):
    a = admin(broker)  # kept alive until the futures resolve
    for f in a.create_topics([NewTopic(topic, partitions, 1)]).values():
        f.result(timeout=POLL_TIMEOUT_S)


def produce(broker, topic, partitions, per_partition, tag):
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5})
    values = []
    for part in range(partitions):
        for i in range(per_partition):
            v = f"{tag}-{part}-{i}"
            values.append(v)
            p.produce(topic, value=v.encode(), partition=part)
    assert p.flush(POLL_TIMEOUT_S) == 0, "every record delivered"
    return values


def kip848_consumer(broker, group, **extra):
    conf = {
        "bootstrap.servers": broker.bootstrap,
        "group.id": group,
        "group.protocol": "consumer",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    }
    conf.update(extra)
    return Consumer(conf)


def assigned(c):
    return {tp.partition for tp in c.assignment()}


def poll_each(consumers, seen, timeout=0.05):
    for c in consumers:
        m = c.poll(timeout)
        if m is not None and m.error() is None:
            seen.append(m.value().decode())


def read_exactly(consumer, expected, what):
    """Polls `consumer` until it has read as many records as `expected`, then a moment
    more (anything extra, such as records below a committed offset, would arrive then),
    and checks it read exactly those."""
    seen = []
    wait_until(lambda: poll_each([consumer], seen) or len(seen) >= len(expected), message=what)
    for _ in range(10):
        poll_each([consumer], seen)
    assert sorted(seen) == sorted(expected), what


def close_within(consumer, others, seen):
    """Closes `consumer` on a thread while the `others` keep polling (as their own
    application threads would); returns how long the close took."""
    t0 = time.monotonic()
    closer = threading.Thread(target=consumer.close, daemon=True)
    closer.start()
    while closer.is_alive() and time.monotonic() - t0 < CLOSE_TIMEOUT_S:
        poll_each(others, seen)
    assert not closer.is_alive(), f"close did not return within {CLOSE_TIMEOUT_S}s"
    return time.monotonic() - t0


def test_kip848_three_members_split_take_over_on_close_and_close_promptly(kbroker):
    topic = unique_topic("k848")
    group = unique_topic("g848")
    create(kbroker, topic, 6)
    sent = produce(kbroker, topic, 6, 20, "a")
    consumers = [kip848_consumer(kbroker, group) for _ in range(3)]
    try:
        for c in consumers:
            c.subscribe([topic])
        seen = []

        def settled():
            poll_each(consumers, seen)
            sets = [assigned(c) for c in consumers]
            return all(len(s) == 2 for s in sets) and len(set().union(*sets)) == 6

        wait_until(settled, message="three members with two partitions each")
        wait_until(lambda: poll_each(consumers, seen) or set(seen) == set(sent),
                   message="every record consumed")
        # Nothing is committed yet, so a partition that moved during the first joins is
        # read again from the start by its new owner (at-least-once, as in Kafka).
        assert set(seen) == set(sent), "every record read"

        # The group as the admin API shows it (ConsumerGroupDescribe for this type).
        desc = describe_group(kbroker, group)
        assert desc.state == ConsumerGroupState.STABLE
        assert desc.type == ConsumerGroupType.CONSUMER
        assert desc.partition_assignor == "uniform"
        assert desc.coordinator.port == kbroker.port
        assert len(desc.members) == 3
        owned = sorted(tp.partition for m in desc.members
                       for tp in m.assignment.topic_partitions)
        assert owned == list(range(6))

        # Commit what was read, then close the members one by one: each close returns
        # promptly and the survivors take over every partition.
        for c in consumers:
            c.commit(asynchronous=False)
        seen = []
        while consumers:
            gone = consumers.pop(0)
            close_within(gone, consumers, seen)
            if consumers:
                wait_until(
                    lambda: poll_each(consumers, seen)
                    or sorted(p for c in consumers for p in assigned(c)) == list(range(6)),
                    message=f"{len(consumers)} survivors own all six partitions")
        assert seen == [], "nothing re-read past the committed offsets"

        def empty():
            d = describe_group(kbroker, group)
            return d.state == ConsumerGroupState.EMPTY and not d.members

        wait_until(empty, message="the group to be empty after the last close")
    finally:
        for c in consumers:
            c.close()


def test_kip848_commits_survive_a_broker_restart(kbroker):
    topic = unique_topic("k848r")
    group = unique_topic("g848r")
    create(kbroker, topic, 3)
    first = produce(kbroker, topic, 3, 10, "first")
    c = kip848_consumer(kbroker, group)
    try:
        c.subscribe([topic])
        read_exactly(c, first, "every first record once")
        c.commit(asynchronous=False)
        committed = c.committed([TopicPartition(topic, p) for p in range(3)],
                                timeout=POLL_TIMEOUT_S)
        assert sorted(tp.offset for tp in committed) == [10, 10, 10]
    finally:
        c.close()

    kbroker.stop()
    kbroker.start()
    second = produce(kbroker, topic, 3, 5, "second")
    c = kip848_consumer(kbroker, group)
    try:
        c.subscribe([topic])
        read_exactly(c, second, "resumed exactly at the committed offsets")
    finally:
        c.close()
