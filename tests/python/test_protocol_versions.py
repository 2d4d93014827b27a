"""Every advertised version of the APIs clients use for data answers.

Clients pick the version from ApiVersions: kafka-python takes the newest, librdkafka
2.0.2 (kcat) older ones (Produce v7, Fetch v11, ListOffsets v2, Metadata v4). Each
request is sent at one pinned version through kafka-python's connection with a short
timeout, so a version whose response the broker cannot encode (and so never sends)
shows up as a timeout naming that version.
"""

import pytest
from kafka.protocol.admin import DescribeClusterRequest, DescribeConfigsRequest
from kafka.protocol.api_key import ApiKey
from kafka.protocol.consumer import FetchRequest, ListOffsetsRequest
from kafka.protocol.metadata import FindCoordinatorRequest, MetadataRequest
from kafka.protocol.producer import InitProducerIdRequest, ProduceRequest
from kafka.record.memory_records import MemoryRecordsBuilder

from conftest import create_topic, unique_topic

TIMEOUT_MS = 3000


def send(admin, request):
    return admin._manager.run(admin._manager.send, request, 1, TIMEOUT_MS)


def advertised(admin, api_key):
    return admin._manager.broker_version_data.api_versions[api_key]


@pytest.fixture
def setup(broker, clients):
    admin = clients.admin(broker)
    topic = unique_topic("ver")
    create_topic(admin, topic)
    producer = clients.producer(broker, acks="all")
    for i in range(3):
        producer.send(topic, value=b"%d" % i, timestamp_ms=1_700_000_000_000 + i)
    producer.flush(timeout=30)
    return admin, topic


def answered(fn, versions):
    """Runs fn(v) for each version; returns {version: error text} for the failures."""
    failures = {}
    for v in versions:
        try:
            fn(v)
        except Exception as e:  # noqa: BLE001 - collected for the assertion message
            failures[v] = f"{type(e).__name__}: {e}"[:200]
    return failures


def test_list_offsets_every_version(setup):
    admin, topic = setup
    lo, hi = advertised(admin, ApiKey.ListOffsets)
    assert (lo, hi) == (1, 10)
    T = ListOffsetsRequest.ListOffsetsTopic
    P = T.ListOffsetsPartition

    def check(v):
        for ts, expected in ((-2, 0), (-1, 3), (1_700_000_000_001, 1)):
            req = ListOffsetsRequest(
                replica_id=-1, isolation_level=0,
                topics=[T(name=topic, partitions=[P(partition_index=0, current_leader_epoch=-1,
                                                   timestamp=ts)])],
                min_version=v, max_version=v)
            r = send(admin, req)
            (p,) = r.topics[0].partitions
            assert (p.error_code, p.offset) == (0, expected), (v, ts, p)

    failures = answered(check, range(lo, hi + 1))
    assert not failures, (
        "ListOffsets versions not answered (the broker logs 'cannot encode response' and "
        f"sends nothing; librdkafka/kcat uses v2): {failures}"
    )


def test_fetch_every_version_by_name(setup):
    admin, topic = setup
    lo, hi = advertised(admin, ApiKey.Fetch)
    T = FetchRequest.FetchTopic
    P = T.FetchPartition

    def check(v):
        req = FetchRequest(
            replica_id=-1, max_wait_ms=10, min_bytes=1, max_bytes=1_000_000, isolation_level=0,
            session_id=0, session_epoch=-1,
            topics=[T(topic=topic, partitions=[P(
                partition=0, current_leader_epoch=-1, fetch_offset=1, last_fetched_epoch=-1,
                log_start_offset=-1, partition_max_bytes=1_000_000)])],
            forgotten_topics_data=[], rack_id="", min_version=v, max_version=v)
        r = send(admin, req)
        (p,) = r.responses[0].partitions
        assert p.error_code == 0 and p.high_watermark == 3, (v, p)
        assert p.records, v

    # v13+ name topics by id only; kafka-python's consumer covers those.
    failures = answered(check, range(lo, min(hi, 12) + 1))
    assert not failures, f"Fetch versions failing: {failures}"


def test_produce_every_version(setup):
    admin, topic = setup
    lo, hi = advertised(admin, ApiKey.Produce)
    assert lo == 3
    T = ProduceRequest.TopicProduceData
    P = T.PartitionProduceData
    offsets = []

    def check(v):
        builder = MemoryRecordsBuilder(magic=2, compression_type=0, batch_size=1 << 20)
        builder.append(timestamp=None, key=b"v", value=b"produce-v%d" % v, headers=[])
        builder.close()
        req = ProduceRequest(transactional_id=None, acks=1, timeout_ms=5000,
                             topic_data=[T(name=topic, partition_data=[P(
                                 index=0, records=builder.buffer())])],
                             min_version=v, max_version=v)
        r = send(admin, req)
        (p,) = r.responses[0].partition_responses
        assert p.error_code == 0, (v, p)
        offsets.append(p.base_offset)

    failures = answered(check, range(lo, hi + 1))
    assert not failures, f"Produce versions failing: {failures}"
    assert offsets == list(range(3, 3 + hi - lo + 1))


def test_metadata_and_admin_reads_every_version(setup):
    admin, topic = setup
    checks = {
        ApiKey.Metadata: lambda v: send(admin, MetadataRequest(
            topics=[MetadataRequest.MetadataRequestTopic(name=topic)],
            allow_auto_topic_creation=False, min_version=v, max_version=v)),
        ApiKey.FindCoordinator: lambda v: send(admin, FindCoordinatorRequest(
            key="g", key_type=0, coordinator_keys=["g"], min_version=v, max_version=v)),
        ApiKey.DescribeConfigs: lambda v: send(admin, DescribeConfigsRequest(
            resources=[(2, topic, None)], include_synonyms=True, include_documentation=True,
            min_version=v, max_version=v)),
        ApiKey.DescribeCluster: lambda v: send(admin, DescribeClusterRequest(
            include_cluster_authorized_operations=False, min_version=v, max_version=v)),
        ApiKey.InitProducerId: lambda v: send(admin, InitProducerIdRequest(
            transactional_id=None, transaction_timeout_ms=60000, producer_id=-1,
            producer_epoch=-1, min_version=v, max_version=v)),
    }
    failures = {}
    for key, fn in checks.items():
        lo, hi = advertised(admin, key)
        for v, err in answered(fn, range(lo, hi + 1)).items():
            failures[f"{key.name} v{v}"] = err
    assert not failures, f"versions failing: {failures}"
