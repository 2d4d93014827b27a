"""SASL with each Python-side client against a strata process: users created with
confluent-kafka's AdminClient (AlterUserScramCredentials) over a loopback PLAINTEXT
listener, then SCRAM-SHA-512, SCRAM-SHA-256 and PLAIN with confluent-kafka,
kafka-python and kcat on a SASL_PLAINTEXT listener; a wrong password is refused and
the broker keeps serving; a deleted user no longer logs in."""

import subprocess
import time

from confluent_kafka import Producer
from confluent_kafka.admin import (AdminClient, ScramCredentialInfo, ScramMechanism,
                                   UserScramCredentialDeletion,
                                   UserScramCredentialUpsertion)
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from conftest import KCAT, free_port, unique_topic


def sasl_broker(broker_factory):
    b = broker_factory(start=False)
    b.sasl_port = free_port()
    b.overrides.update({
        "listeners": f"PLAINTEXT://127.0.0.1:{b.port},SASL_PLAINTEXT://127.0.0.1:{b.sasl_port}",
        "sasl.enabled.mechanisms": "SCRAM-SHA-512,SCRAM-SHA-256,PLAIN",
    })
    return b.start()


def create_user(bootstrap, user, password):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    upserts = [
        UserScramCredentialUpsertion(user, ScramCredentialInfo(m, 4096), password.encode())
        for m in (ScramMechanism.SCRAM_SHA_512, ScramMechanism.SCRAM_SHA_256)
    ]
    for fut in admin.alter_user_scram_credentials(upserts).values():
        fut.result(timeout=30)
    described = admin.describe_user_scram_credentials([user])[user].result(timeout=30)
    assert sorted(i.mechanism for i in described.scram_credential_infos) == sorted(
        [ScramMechanism.SCRAM_SHA_512, ScramMechanism.SCRAM_SHA_256])
    return admin


def confluent_produce(bootstrap, mechanism, user, password, topic, timeout_ms=8000):
    errors = []
    p = Producer({"bootstrap.servers": bootstrap, "security.protocol": "SASL_PLAINTEXT",
                  "sasl.mechanism": mechanism, "sasl.username": user,
                  "sasl.password": password, "message.timeout.ms": timeout_ms})
    p.produce(topic, value=b"v", on_delivery=lambda err, msg: errors.append(err))
    p.flush(timeout_ms / 1000 + 5)
    return errors and errors[0] is None


def test_confluent_kafka_users_and_mechanisms(broker_factory):
    b = sasl_broker(broker_factory)
    sasl = f"127.0.0.1:{b.sasl_port}"
    admin = create_user(b.bootstrap, "alice", "alice-secret")
    topic = unique_topic("sasl")
    for mechanism in ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"):
        assert confluent_produce(sasl, mechanism, "alice", "alice-secret", topic), mechanism
    assert not confluent_produce(sasl, "SCRAM-SHA-512", "alice", "guess", topic, 3000)
    assert confluent_produce(sasl, "SCRAM-SHA-512", "alice", "alice-secret", topic)
    deletions = [UserScramCredentialDeletion("alice", m)
                 for m in (ScramMechanism.SCRAM_SHA_512, ScramMechanism.SCRAM_SHA_256)]
    for fut in admin.alter_user_scram_credentials(deletions).values():
        fut.result(timeout=30)
    assert not confluent_produce(sasl, "SCRAM-SHA-512", "alice", "alice-secret", topic, 3000)


def test_kafka_python_scram(broker_factory):
    b = sasl_broker(broker_factory)
    sasl = f"127.0.0.1:{b.sasl_port}"
    create_user(b.bootstrap, "bob", "bob-secret")
    topic = unique_topic("sasl")
    auth = {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_plain_username": "bob", "sasl_plain_password": "bob-secret"}
    p = KafkaProducer(bootstrap_servers=sasl, **auth)
    for i in range(5):
        p.send(topic, f"m{i}".encode()).get(timeout=30)
    p.close()
    c = KafkaConsumer(bootstrap_servers=sasl, consumer_timeout_ms=10000, **auth)
    tp = TopicPartition(topic, 0)
    c.assign([tp])
    c.seek_to_beginning(tp)
    assert [m.value.decode() for m in c] == [f"m{i}" for i in range(5)]
    c.close()


def test_kcat_scram(broker_factory):
    b = sasl_broker(broker_factory)
    sasl = f"127.0.0.1:{b.sasl_port}"
    create_user(b.bootstrap, "carol", "carol-secret")
    topic = unique_topic("sasl")
    common = ["-b", sasl, "-X", "security.protocol=SASL_PLAINTEXT",
              "-X", "sasl.mechanism=SCRAM-SHA-256", "-X", "sasl.username=carol",
              "-X", "sasl.password=carol-secret"]
    subprocess.run([KCAT, *common, "-P", "-t", topic, "-p", "0"], input=b"x\ny\n",
                   check=True, timeout=60)
    out = subprocess.run([KCAT, *common, "-C", "-t", topic, "-p", "0", "-o", "beginning",
                          "-e", "-q"], check=True, capture_output=True, timeout=60)
    assert out.stdout.decode().split() == ["x", "y"]
