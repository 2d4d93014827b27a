"""A three-broker cluster (three `strata` processes, each a broker and a metadata
voter) driven by kafka-python and confluent-kafka: topics with replication factor 3,
acks=all producing through a kill -9 of the partition leader, and a consumer group
whose committed offsets survive the death of its coordinator.
"""

import threading
import time

import pytest

from conftest import Broker, free_port, unique_topic, wait_until


@pytest.fixture
def cluster(tmp_path, request):
    """Three voters started together (each waits for a majority of the quorum)."""
    ports = [(free_port(), free_port()) for _ in range(3)]
    voters = ",".join(f"{i + 1}@127.0.0.1:{c}" for i, (_, c) in enumerate(ports))
    nodes = []
    for i, (port, cport) in enumerate(ports):
        data = tmp_path / f"node{i + 1}"
        data.mkdir()
        nodes.append(
            Broker(
                data,
                tmp_path,
                port=port,
                overrides={
                    "node.id": str(i + 1),
                    "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}",
                    "controller.listener.names": "CONTROLLER",
                    "controller.quorum.voters": voters,
                    "broker.rack": f"az-{i + 1}",
                    "broker.heartbeat.interval.ms": "300",
                    "broker.session.timeout.ms": "3000",
                },
            )
        )
    starters = [threading.Thread(target=n.start) for n in nodes]
    for t in starters:
        t.start()
    for t in starters:
        t.join()
    assert all(n.running() for n in nodes), "\n".join(n.log_tail() for n in nodes)
    yield nodes
    for n in nodes:
        n.kill()
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        for n in nodes:
            print(n.log_tail(60))


def bootstrap(nodes):
    return ",".join(n.bootstrap for n in nodes if n.running())


def leader_of(nodes, topic, partition=0):
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap(nodes), request_timeout_ms=10000)
    try:
        meta = admin.describe_topics([topic])[0]
        for p in meta["partitions"]:
            if p["partition_index"] == partition:
                return p["leader_id"], p["isr_nodes"]
    finally:
        admin.close()
    return None, []


def test_kafka_python_produces_through_a_leader_failover(cluster):
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import KafkaAdminClient, NewTopic

    topic = unique_topic("failover")
    admin = KafkaAdminClient(bootstrap_servers=bootstrap(cluster), request_timeout_ms=15000)
    admin.create_topics(
        [NewTopic(topic, 1, 3, topic_configs={"min.insync.replicas": "2"})]
    )
    admin.close()
    wait_until(lambda: leader_of(cluster, topic)[0] not in (None, -1), message="a leader")

    producer = KafkaProducer(
        bootstrap_servers=bootstrap(cluster),
        acks="all",
        retries=100,
        retry_backoff_ms=200,
        request_timeout_ms=10000,
        max_block_ms=30000,
        delivery_timeout_ms=60000,
        max_in_flight_requests_per_connection=1,
    )
    for i in range(500):
        producer.send(topic, str(i).encode())
    producer.flush(timeout=30)

    leader, _ = leader_of(cluster, topic)
    cluster[leader - 1].kill()
    wait_until(
        lambda: leader_of(cluster, topic)[0] not in (None, -1, leader),
        message="a new leader from the ISR",
    )
    futures = [producer.send(topic, str(i).encode()) for i in range(500, 1000)]
    producer.flush(timeout=60)
    for f in futures:
        f.get(timeout=30)  # raises if a record was not acknowledged
    producer.close()

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap(cluster),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=2000,
    )
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    values = []
    deadline = time.monotonic() + 30
    while len(values) < 1000 and time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=500).values():
            values.extend(int(r.value) for r in batch)
    consumer.close()
    assert values == list(range(1000)), "every acknowledged record once, in order"


def test_confluent_kafka_group_offsets_survive_the_coordinators_death(cluster):
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    topic = unique_topic("group")
    admin = AdminClient({"bootstrap.servers": bootstrap(cluster)})
    for f in admin.create_topics([NewTopic(topic, 3, 3)]).values():
        f.result(timeout=30)
    producer = Producer(
        {"bootstrap.servers": bootstrap(cluster), "acks": "all", "enable.idempotence": True}
    )
    for i in range(300):
        producer.produce(topic, str(i).encode(), partition=i % 3)
    assert producer.flush(30) == 0

    group = unique_topic("g")
    conf = {
        "bootstrap.servers": bootstrap(cluster),
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    }
    consumer = Consumer(conf)
    consumer.subscribe([topic])
    got = 0
    deadline = time.monotonic() + 60
    while got < 300 and time.monotonic() < deadline:
        m = consumer.poll(0.5)
        if m is not None and m.error() is None:
            got += 1
    assert got == 300
    consumer.commit(asynchronous=False)
    committed = consumer.committed([TopicPartition(topic, p) for p in range(3)], timeout=10)
    assert sum(tp.offset for tp in committed) == 300
    consumer.close()

    # Kill the group's coordinator (the leader of its __consumer_offsets partition).
    described = admin.describe_consumer_groups([group])[group].result(timeout=30)
    coordinator = described.coordinator.id
    cluster[coordinator - 1].kill()

    def offsets_back():
        c = Consumer(dict(conf, **{"bootstrap.servers": bootstrap(cluster)}))
        try:
            parts = c.committed([TopicPartition(topic, p) for p in range(3)], timeout=10)
            return sum(tp.offset for tp in parts) == 300
        finally:
            c.close()

    wait_until(offsets_back, timeout=60, interval=0.5, message="the commits at the new coordinator")
