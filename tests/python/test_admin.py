"""kafka-python KafkaAdminClient against a strata process: topics, partitions,
configs, record deletion."""

import pytest
import kafka.errors as Errors
from kafka import TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType

from conftest import consume_all, create_topic, unique_topic, wait_until


def topic_configs(admin, topic, keys=None, config_filter="all"):
    res = admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, topic, keys)], config_filter=config_filter
    )
    return res["topic"][topic]


def partition_count(admin, topic):
    (t,) = admin.describe_topics([topic])
    assert t["error_code"] == 0, t
    return len(t["partitions"])


def test_create_topic_with_configs(broker, clients):
    admin = clients.admin(broker)
    topic = unique_topic("cfg")
    res = admin.create_topics(
        {topic: {"num_partitions": 4, "replication_factor": 1,
                 "configs": {"retention.ms": "3600000", "cleanup.policy": "compact"}}},
        wait_for_metadata=True,
    )
    (t,) = res["topics"]
    assert t["name"] == topic and t["error_code"] == 0, t
    assert t["num_partitions"] == 4
    # CreateTopics v5+ returns the resulting configs.
    assert t["configs"]["retention.ms"]["value"] == "3600000"
    assert t["configs"]["cleanup.policy"]["value"] == "compact"

    assert topic in admin.list_topics()
    assert partition_count(admin, topic) == 4
    (desc,) = admin.describe_topics([topic])
    assert sorted(p["partition_index"] for p in desc["partitions"]) == [0, 1, 2, 3]
    assert all(p["leader_id"] == 1 for p in desc["partitions"]), desc

    # The explicitly set configs are reported as set on the topic ...
    modified = topic_configs(admin, topic, config_filter="modified")
    assert modified["retention.ms"]["value"] == "3600000"
    assert modified["retention.ms"]["config_source"] == "DYNAMIC_TOPIC_CONFIG"
    assert modified["cleanup.policy"]["value"] == "compact"
    assert modified["cleanup.policy"]["config_source"] == "DYNAMIC_TOPIC_CONFIG"
    # ... and nothing else is.
    assert set(modified) == {"retention.ms", "cleanup.policy"}, sorted(modified)
    # An unset key shows the broker default.
    every = topic_configs(admin, topic)
    assert every["max.message.bytes"]["value"] == "1048588"
    assert every["max.message.bytes"]["config_source"] == "DEFAULT_CONFIG"


def test_create_topic_default_partitions_follow_broker_config(broker_factory, clients):
    broker = broker_factory({"num.partitions": "3"})
    admin = clients.admin(broker)
    topic = unique_topic("dflt")
    admin.create_topics([topic], wait_for_metadata=True)  # -1 partitions, -1 replicas
    assert partition_count(admin, topic) == 3


def test_create_duplicate_topic_fails(broker, clients):
    admin = clients.admin(broker)
    topic = unique_topic("dup")
    create_topic(admin, topic, 2)
    with pytest.raises(Errors.TopicAlreadyExistsError):
        admin.create_topics({topic: {"num_partitions": 5, "replication_factor": 1}})
    # The failed attempt changed nothing.
    assert partition_count(admin, topic) == 2


@pytest.mark.parametrize("name", ["bad name", "slash/name", "x" * 250, ".", ".."])
def test_create_invalid_topic_name_fails(broker, clients, name):
    admin = clients.admin(broker)
    with pytest.raises(Errors.InvalidTopicError):
        admin.create_topics({name: {"num_partitions": 1, "replication_factor": 1}})
    assert name not in admin.list_topics()


@pytest.mark.parametrize(
    "configs",
    [
        {"retention.ms": "not-a-number"},
        {"cleanup.policy": "shred"},
        {"no.such.topic.config": "1"},
    ],
    ids=["non-integer", "bad-enum", "unknown-key"],
)
def test_create_topic_invalid_config_fails(broker, clients, configs):
    admin = clients.admin(broker)
    topic = unique_topic("badcfg")
    with pytest.raises(Errors.InvalidConfigurationError):
        admin.create_topics(
            {topic: {"num_partitions": 1, "replication_factor": 1, "configs": configs}}
        )
    assert topic not in admin.list_topics()


def test_create_topic_invalid_partition_and_replication_counts(broker, clients):
    admin = clients.admin(broker)
    topic = unique_topic("counts")
    with pytest.raises(Errors.InvalidPartitionsError):
        admin.create_topics({topic: {"num_partitions": 0, "replication_factor": 1}})
    # A single broker cannot hold 3 replicas.
    with pytest.raises(Errors.InvalidReplicationFactorError):
        admin.create_topics({topic: {"num_partitions": 1, "replication_factor": 3}})
    assert topic not in admin.list_topics()


def test_create_topics_validate_only_creates_nothing(broker, clients):
    admin = clients.admin(broker)
    topic = unique_topic("vonly")
    res = admin.create_topics(
        {topic: {"num_partitions": 2, "replication_factor": 1}}, validate_only=True
    )
    assert res["topics"][0]["error_code"] == 0, res
    assert topic not in admin.list_topics()


def test_create_partitions_increase_and_decrease(broker, clients):
    admin = clients.admin(broker)
    producer = clients.producer(broker, acks="all")
    consumer = clients.consumer(broker)
    topic = unique_topic("parts")
    create_topic(admin, topic, 2)

    admin.create_partitions({topic: 5})
    wait_until(lambda: partition_count(admin, topic) == 5, message="5 partitions in metadata")

    # The new partitions take records.
    for p in range(5):
        md = producer.send(topic, value=f"p{p}".encode(), partition=p).get(timeout=30)
        assert (md.partition, md.offset) == (p, 0)
    got = consume_all(consumer, [TopicPartition(topic, p) for p in range(5)])
    assert {tp.partition: [r.value for r in rs] for tp, rs in got.items()} == {
        p: [f"p{p}".encode()] for p in range(5)
    }

    with pytest.raises(Errors.InvalidPartitionsError):
        admin.create_partitions({topic: 3})
    with pytest.raises(Errors.InvalidPartitionsError):
        admin.create_partitions({topic: 5})  # same count is not an increase
    assert partition_count(admin, topic) == 5

    with pytest.raises(Errors.UnknownTopicOrPartitionError):
        admin.create_partitions({unique_topic("missing"): 4})


def test_describe_configs_broker(broker_factory, clients):
    broker = broker_factory({"message.max.bytes": "2000000", "num.partitions": "2"})
    admin = clients.admin(broker)
    every = admin.describe_configs(
        [ConfigResource(ConfigResourceType.BROKER, "1")], config_filter="all"
    )["broker"]["1"]
    assert every["message.max.bytes"]["value"] == "2000000"
    assert every["num.partitions"]["value"] == "2"
    assert every["log.retention.hours"]["value"] == "168"
    # Keys set on the command line are static broker config; defaults are defaults.
    assert every["message.max.bytes"]["config_source"] == "STATIC_BROKER_CONFIG"
    assert every["log.retention.hours"]["config_source"] == "DEFAULT_CONFIG"

    # Asking for named keys returns exactly those.
    some = admin.describe_configs(
        [ConfigResource(ConfigResourceType.BROKER, "1", ["num.partitions"])],
        config_filter="all",
    )["broker"]["1"]
    assert list(some) == ["num.partitions"]

    # A topic created now takes the broker's message.max.bytes as its default.
    topic = unique_topic("bdflt")
    create_topic(admin, topic)
    assert topic_configs(admin, topic, ["max.message.bytes"])["max.message.bytes"]["value"] == "2000000"


def test_describe_configs_unknown_topic_fails(broker, clients):
    admin = clients.admin(broker)
    from kafka.protocol.admin import DescribeConfigsRequest

    request = DescribeConfigsRequest(
        resources=[(ConfigResourceType.TOPIC, unique_topic("nosuch"), None)],
        include_synonyms=False,
    )
    response = admin._manager.run(admin._manager.send, request)
    (result,) = response.results
    assert result.error_code == Errors.UnknownTopicOrPartitionError.errno, result


def test_alter_configs_then_describe(broker, clients):
    admin = clients.admin(broker)
    topic = unique_topic("alter")
    create_topic(admin, topic, configs={"cleanup.policy": "compact"})

    # IncrementalAlterConfigs (kafka-python's default when the broker has it).
    res = admin.alter_configs(
        [ConfigResource(ConfigResourceType.TOPIC, topic, {"retention.ms": "7200000"})]
    )
    assert res == {"topic": {topic: "OK"}}
    cfg = topic_configs(admin, topic, config_filter="modified")
    assert cfg["retention.ms"]["value"] == "7200000"
    assert cfg["retention.ms"]["config_source"] == "DYNAMIC_TOPIC_CONFIG"
    assert cfg["cleanup.policy"]["value"] == "compact", "incremental alter must keep other keys"

    # Legacy AlterConfigs (whole set; kafka-python re-sends the modified keys).
    res = admin.alter_configs(
        [ConfigResource(ConfigResourceType.TOPIC, topic, {"max.message.bytes": "50000"})],
        incremental=False,
    )
    assert res == {"topic": {topic: "OK"}}
    cfg = topic_configs(admin, topic, config_filter="modified")
    assert {k: v["value"] for k, v in cfg.items()} == {
        "retention.ms": "7200000",
        "cleanup.policy": "compact",
        "max.message.bytes": "50000",
    }

    # Reset (IncrementalAlterConfigs DELETE) brings back the default.
    res = admin.reset_configs([ConfigResource(ConfigResourceType.TOPIC, topic, ["retention.ms"])])
    assert res == {"topic": {topic: "OK"}}
    every = topic_configs(admin, topic)
    assert every["retention.ms"]["config_source"] == "DEFAULT_CONFIG"
    assert every["retention.ms"]["value"] == "604800000"  # log.retention.hours=168
    assert every["max.message.bytes"]["value"] == "50000"


def test_alter_configs_invalid_value_is_rejected(broker, clients):
    admin = clients.admin(broker)
    topic = unique_topic("alterbad")
    create_topic(admin, topic, configs={"retention.ms": "1000000"})
    for incremental in (True, False):
        res = admin.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic, {"retention.ms": "soon"})],
            incremental=incremental,
        )
        assert "InvalidConfigurationError" in res["topic"][topic], (incremental, res)
    assert topic_configs(admin, topic, ["retention.ms"])["retention.ms"]["value"] == "1000000"


def test_alter_configs_validate_only_changes_nothing(broker, clients):
    admin = clients.admin(broker)
    topic = unique_topic("altervo")
    create_topic(admin, topic)
    res = admin.alter_configs(
        [ConfigResource(ConfigResourceType.TOPIC, topic, {"retention.ms": "123456"})],
        validate_only=True,
    )
    assert res == {"topic": {topic: "OK"}}
    cfg = topic_configs(admin, topic, ["retention.ms"])
    assert cfg["retention.ms"]["value"] == "604800000"
    assert cfg["retention.ms"]["config_source"] == "DEFAULT_CONFIG"


def test_altered_max_message_bytes_is_enforced(broker, clients):
    admin = clients.admin(broker)
    topic = unique_topic("altermax")
    create_topic(admin, topic)
    producer = clients.producer(broker, acks="all", max_request_size=10_000_000, retries=0)
    producer.send(topic, value=b"a" * 20_000).get(timeout=30)

    admin.alter_configs(
        [ConfigResource(ConfigResourceType.TOPIC, topic, {"max.message.bytes": "10000"})]
    )
    with pytest.raises(Errors.MessageSizeTooLargeError):
        producer.send(topic, value=b"b" * 20_000).get(timeout=30)
    md = producer.send(topic, value=b"small").get(timeout=30)
    assert md.offset == 1


def test_delete_topics(broker, clients):
    admin = clients.admin(broker)
    keep, gone = unique_topic("keep"), unique_topic("gone")
    create_topic(admin, keep)
    create_topic(admin, gone, 3)
    producer = clients.producer(broker, acks="all")
    producer.send(gone, value=b"x", partition=0).get(timeout=30)

    res = admin.delete_topics([gone])
    assert [(t["name"], t["error_code"]) for t in res["topics"]] == [(gone, 0)]
    wait_until(lambda: gone not in admin.list_topics(), message=f"{gone} to leave the topic list")
    assert keep in admin.list_topics()

    with pytest.raises(Errors.UnknownTopicOrPartitionError):
        admin.delete_topics([unique_topic("never")])

    # The name can be used again, as a new empty topic.
    create_topic(admin, gone, 1)
    assert partition_count(admin, gone) == 1
    consumer = clients.consumer(broker)
    tp = TopicPartition(gone, 0)
    assert consumer.end_offsets([tp]) == {tp: 0}


def test_delete_topics_disabled(broker_factory, clients):
    broker = broker_factory({"delete.topic.enable": "false"})
    admin = clients.admin(broker)
    topic = unique_topic("nodel")
    create_topic(admin, topic)
    with pytest.raises(Errors.TopicDeletionDisabledError):
        admin.delete_topics([topic])
    assert topic in admin.list_topics()


def test_delete_records(broker, clients):
    admin = clients.admin(broker)
    topic = unique_topic("delrec")
    create_topic(admin, topic, 2)
    producer = clients.producer(broker, acks="all")
    for i in range(10):
        producer.send(topic, value=b"v%d" % i, partition=0)
    producer.send(topic, value=b"other", partition=1)
    producer.flush(timeout=30)
    tp0, tp1 = TopicPartition(topic, 0), TopicPartition(topic, 1)

    res = admin.delete_records({tp0: 4})
    assert res[tp0]["error_code"] == 0 and res[tp0]["low_watermark"] == 4, res

    consumer = clients.consumer(broker)
    assert consumer.beginning_offsets([tp0, tp1]) == {tp0: 4, tp1: 0}
    assert consumer.end_offsets([tp0, tp1]) == {tp0: 10, tp1: 1}
    got = consume_all(consumer, [tp0])
    assert [(r.offset, r.value) for r in got[tp0]] == [(i, b"v%d" % i) for i in range(4, 10)]

    # -1 means "up to the high watermark".
    res = admin.delete_records({tp0: -1})
    assert res[tp0]["low_watermark"] == 10, res
    assert consumer.beginning_offsets([tp0]) == {tp0: 10}

    # Beyond the high watermark is an error.
    with pytest.raises(Errors.OffsetOutOfRangeError):
        admin.delete_records({tp1: 5})
    assert consumer.beginning_offsets([tp1]) == {tp1: 0}


def test_describe_cluster(broker, clients):
    admin = clients.admin(broker)
    c = admin.describe_cluster()
    assert c["controller_id"] == 1
    assert [(b["broker_id"], b["host"], b["port"]) for b in c["brokers"]] == [
        (1, "127.0.0.1", broker.port)
    ]
    assert c["cluster_id"]
