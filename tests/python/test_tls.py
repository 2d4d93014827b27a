"""SSL listeners with each Python-side client: confluent-kafka (librdkafka),
kafka-python and kcat produce and consume over TLS against a strata process; mutual
TLS admits a client certificate from the trusted CA and refuses a client without one.
Certificates are made by the test with the openssl command."""

import subprocess
import time

import pytest
from confluent_kafka import Consumer, Producer
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from conftest import KCAT, unique_topic


def openssl(cwd, *args):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def certs(tmp_path):
    """A CA, a broker certificate for 127.0.0.1 and a client certificate."""
    d = tmp_path / "certs"
    d.mkdir()
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl(d, "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=test-ca")
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name, subject in (("broker", "/CN=broker-1"), ("client", "/CN=alice/O=Example")):
        openssl(d, "req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject)
        openssl(d, "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", "san.ext")
    (d / "broker.keystore.pem").write_text((d / "broker.key").read_text()
                                           + (d / "broker.pem").read_text())
    return d


def ssl_broker(broker_factory, certs, **extra):
    b = broker_factory(start=False)
    b.overrides.update({
        "listeners": f"SSL://127.0.0.1:{b.port}",
        "ssl.keystore.location": str(certs / "broker.keystore.pem"),
        **extra,
    })
    return b.start()


def test_confluent_kafka_over_tls(broker_factory, certs):
    b = ssl_broker(broker_factory, certs)
    topic = unique_topic("tls")
    conf = {"bootstrap.servers": b.bootstrap, "security.protocol": "SSL",
            "ssl.ca.location": str(certs / "ca.pem")}
    p = Producer(conf)
    for i in range(20):
        p.produce(topic, value=f"v{i}".encode())
    assert p.flush(30) == 0
    c = Consumer({**conf, "group.id": "tls-g", "auto.offset.reset": "earliest",
                  "enable.auto.commit": False})
    c.subscribe([topic])
    got = []
    deadline = time.monotonic() + 30
    while len(got) < 20 and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and m.error() is None:
            got.append(m.value().decode())
    c.close()
    assert got == [f"v{i}" for i in range(20)]


def test_kafka_python_over_tls(broker_factory, certs):
    b = ssl_broker(broker_factory, certs)
    topic = unique_topic("tls")
    ssl = {"security_protocol": "SSL", "ssl_cafile": str(certs / "ca.pem")}
    p = KafkaProducer(bootstrap_servers=b.bootstrap, **ssl)
    for i in range(10):
        p.send(topic, f"k{i}".encode()).get(timeout=30)
    p.close()
    c = KafkaConsumer(bootstrap_servers=b.bootstrap, consumer_timeout_ms=10000, **ssl)
    tp = TopicPartition(topic, 0)
    c.assign([tp])
    c.seek_to_beginning(tp)
    got = [m.value.decode() for m in c]
    c.close()
    assert got == [f"k{i}" for i in range(10)]


def test_kcat_over_tls(broker_factory, certs):
    b = ssl_broker(broker_factory, certs)
    topic = unique_topic("tls")
    common = ["-b", b.bootstrap, "-X", "security.protocol=ssl",
              "-X", f"ssl.ca.location={certs / 'ca.pem'}"]
    subprocess.run([KCAT, *common, "-P", "-t", topic, "-p", "0"], input=b"a\nb\nc\n",
                   check=True, timeout=60)
    out = subprocess.run([KCAT, *common, "-C", "-t", topic, "-p", "0", "-o", "beginning",
                          "-e", "-q"], check=True, capture_output=True, timeout=60)
    assert out.stdout.decode().split() == ["a", "b", "c"]


def test_mutual_tls_with_confluent_kafka(broker_factory, certs):
    b = ssl_broker(broker_factory, certs, **{
        "ssl.client.auth": "required",
        "ssl.truststore.location": str(certs / "ca.pem"),
    })
    topic = unique_topic("mtls")
    conf = {"bootstrap.servers": b.bootstrap, "security.protocol": "SSL",
            "ssl.ca.location": str(certs / "ca.pem"), "message.timeout.ms": 8000}
    with_cert = Producer({**conf, "ssl.certificate.location": str(certs / "client.pem"),
                          "ssl.key.location": str(certs / "client.key")})
    with_cert.produce(topic, value=b"signed")
    assert with_cert.flush(30) == 0
    errors = []
    without = Producer({**conf, "error_cb": errors.append})
    delivered = []
    without.produce(topic, value=b"anonymous",
                    on_delivery=lambda err, msg: delivered.append(err))
    without.flush(20)
    assert delivered and delivered[0] is not None, "refused without a client certificate"


def sasl_ssl_broker(broker_factory, certs):
    """A PLAINTEXT listener (loopback, for the admin) and a SASL_SSL one with all
    three mechanisms; users ann (both SCRAM mechanisms) created by the admin client."""
    from confluent_kafka.admin import (AdminClient, ScramCredentialInfo, ScramMechanism,
                                       UserScramCredentialUpsertion)

    from conftest import free_port
    b = broker_factory(start=False)
    b.secure_port = free_port()
    b.overrides.update({
        "listeners": f"PLAINTEXT://127.0.0.1:{b.port},SASL_SSL://127.0.0.1:{b.secure_port}",
        "ssl.keystore.location": str(certs / "broker.keystore.pem"),
        "sasl.enabled.mechanisms": "SCRAM-SHA-512,SCRAM-SHA-256,PLAIN",
    })
    b.start()
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    upserts = [UserScramCredentialUpsertion("ann", ScramCredentialInfo(m, 4096), b"ann-secret")
               for m in (ScramMechanism.SCRAM_SHA_512, ScramMechanism.SCRAM_SHA_256)]
    for fut in admin.alter_user_scram_credentials(upserts).values():
        fut.result(timeout=30)
    b.secure = f"127.0.0.1:{b.secure_port}"
    return b


MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")


def test_confluent_kafka_over_sasl_ssl(broker_factory, certs):
    b = sasl_ssl_broker(broker_factory, certs)
    topic = unique_topic("saslssl")
    for mechanism in MECHANISMS:
        conf = {"bootstrap.servers": b.secure, "security.protocol": "SASL_SSL",
                "ssl.ca.location": str(certs / "ca.pem"), "sasl.mechanism": mechanism,
                "sasl.username": "ann", "sasl.password": "ann-secret"}
        p = Producer(conf)
        p.produce(topic, value=mechanism.encode())
        assert p.flush(30) == 0, mechanism
        c = Consumer({**conf, "group.id": f"g-{mechanism}", "auto.offset.reset": "earliest",
                      "enable.auto.commit": False})
        c.subscribe([topic])
        got = set()
        deadline = time.monotonic() + 30
        while mechanism.encode() not in got and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and m.error() is None:
                got.add(m.value())
        c.close()
        assert mechanism.encode() in got, mechanism
    # A wrong password over SASL_SSL is refused.
    errors = []
    p = Producer({"bootstrap.servers": b.secure, "security.protocol": "SASL_SSL",
                  "ssl.ca.location": str(certs / "ca.pem"), "sasl.mechanism": "SCRAM-SHA-512",
                  "sasl.username": "ann", "sasl.password": "guess",
                  "message.timeout.ms": 3000})
    p.produce(topic, value=b"x", on_delivery=lambda err, msg: errors.append(err))
    p.flush(10)
    assert errors and errors[0] is not None


def test_kafka_python_and_kcat_over_sasl_ssl(broker_factory, certs):
    b = sasl_ssl_broker(broker_factory, certs)
    topic = unique_topic("saslssl")
    for mechanism in MECHANISMS:
        auth = {"security_protocol": "SASL_SSL", "ssl_cafile": str(certs / "ca.pem"),
                "sasl_mechanism": mechanism, "sasl_plain_username": "ann",
                "sasl_plain_password": "ann-secret"}
        p = KafkaProducer(bootstrap_servers=b.secure, **auth)
        p.send(topic, mechanism.encode()).get(timeout=30)
        p.close()
    c = KafkaConsumer(bootstrap_servers=b.secure, consumer_timeout_ms=10000,
                      security_protocol="SASL_SSL", ssl_cafile=str(certs / "ca.pem"),
                      sasl_mechanism="SCRAM-SHA-256", sasl_plain_username="ann",
                      sasl_plain_password="ann-secret")
    tp = TopicPartition(topic, 0)
    c.assign([tp])
    c.seek_to_beginning(tp)
    got = [m.value.decode() for m in c]
    c.close()
    assert got == list(MECHANISMS)
    out = subprocess.run(
        [KCAT, "-b", b.secure, "-X", "security.protocol=SASL_SSL",
         "-X", f"ssl.ca.location={certs / 'ca.pem'}", "-X", "sasl.mechanisms=SCRAM-SHA-256",
         "-X", "sasl.username=ann", "-X", "sasl.password=ann-secret",
         "-C", "-t", topic, "-o", "beginning", "-e", "-q"],
        capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split() == list(MECHANISMS)
