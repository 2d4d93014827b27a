#!/usr/bin/env python3
"""Regenerates the example configs in config/ from `strata --list-config`, so every
broker key appears with its current default and doc. Run after adding or changing a
key:  python3 config/generate.py [path/to/strata]

Each example sets a few keys (uncommented) and shows every other key commented out
with its default. A unit test parses each file, so a stale or broken one fails CI.
"""
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

HEADER = """# Strata broker configuration: {title}
#
# Keys are Kafka's broker config names; this file is TOML, and dotted keys are the
# broker keys themselves (object_store.url = "..."; a [object_store] table with
# url = "..." means the same). Sources, later wins: built-in defaults -> this file
# (strata --config FILE) -> STRATA_* environment variables (name in brackets below)
# -> --override key=value. An unknown key or a bad value stops start-up with a
# message naming it. Keys marked "accepted, not acted on yet" are validated and
# reported by DescribeConfigs but have no effect yet (see README).
#
# Commented lines show the built-in default; uncomment to change.
{notes}"""

EXAMPLES = {
    "single-node.toml": (
        "a single node, the embedded default made explicit.",
        "",
        {
            "node.id": "1",
            "listeners": "PLAINTEXT://127.0.0.1:9092",
            "log.dirs": "./data",
        },
    ),
    "moto.toml": (
        "a single node tiering to moto's S3 server.",
        "#\n# Started by localstack/run-local.sh, which runs moto on 127.0.0.1:4566 and\n"
        "# creates the bucket. moto accepts any credentials.\n",
        {
            "node.id": "1",
            "listeners": "PLAINTEXT://127.0.0.1:9092",
            "log.dirs": "./data-moto",
            "log.remote.storage.enable": "true",
            "object_store.url": "s3://strata/strata",
            "object_store.endpoint": "http://127.0.0.1:4566",
            "object_store.allow_http": "true",
            "object_store.region": "us-east-1",
            "object_store.access_key_id": "test",
            "object_store.secret_access_key": "test",
            "metrics.listener": "127.0.0.1:9644",
        },
    ),
    "minio.toml": (
        "a single node tiering to MinIO.",
        "#\n# Matches localstack/docker-compose.yml (service strata-minio): MinIO on\n"
        "# minio:9000 with the bucket `strata` created by the minio-init service.\n",
        {
            "node.id": "1",
            "listeners": "PLAINTEXT://0.0.0.0:9092",
            "advertised.listeners": "PLAINTEXT://localhost:9092",
            "log.dirs": "/var/lib/strata",
            "log.remote.storage.enable": "true",
            "object_store.url": "s3://strata/cluster-1",
            "object_store.endpoint": "http://minio:9000",
            "object_store.allow_http": "true",
            "object_store.region": "us-east-1",
            "object_store.access_key_id": "minioadmin",
            "object_store.secret_access_key": "minioadmin",
            "metrics.listener": "0.0.0.0:9644",
            "security.groups.file": "/etc/strata/security-groups.json",
        },
    ),
    "localstack.toml": (
        "a single node tiering to LocalStack's S3.",
        "#\n# Matches localstack/docker-compose.yml (service strata-localstack): LocalStack\n"
        "# on localstack:4566 with the bucket `strata` created by its init hook.\n",
        {
            "node.id": "1",
            "listeners": "PLAINTEXT://0.0.0.0:9093",
            "advertised.listeners": "PLAINTEXT://localhost:9093",
            "log.dirs": "/var/lib/strata",
            "log.remote.storage.enable": "true",
            "object_store.url": "s3://strata/cluster-2",
            "object_store.endpoint": "http://localstack:4566",
            "object_store.allow_http": "true",
            "object_store.region": "us-east-1",
            "object_store.access_key_id": "test",
            "object_store.secret_access_key": "test",
            "metrics.listener": "0.0.0.0:9645",
            "security.groups.file": "/etc/strata/security-groups.json",
        },
    ),
}

EXAMPLES["msk-like.toml"] = (
    "the listener layout of an Amazon MSK broker.",
    "#\n# 9092 PLAINTEXT, 9094 SSL (TLS), 9096 SASL_SSL with SCRAM-SHA-512, as MSK opens them,\n"
    "# plus REPLICATION (TLS) between brokers on 9093. Every listener binds 0.0.0.0, so\n"
    "# config/msk-like.security-groups.json (the file Terraform renders into AWS security\n"
    "# groups) says who may connect: the application subnets to the client listeners, the\n"
    "# brokers to REPLICATION. The certificate files are yours (PEM, KIP-651); the first\n"
    "# SCRAM user comes from\n"
    "#   strata --config config/msk-like.toml storage format \\\n"
    "#     --add-scram 'SCRAM-SHA-512=[name=admin,password=...]'\n"
    "# ACLs as MSK sets them up: the authorizer on, allow.everyone.if.no.acl.found=true (a\n"
    "# resource no ACL names stays open), the SCRAM admin and the brokers (their REPLICATION\n"
    "# certificates' subjects, which need CLUSTER_ACTION to replicate) as super users.\n"
    "# For a cluster add process.roles, controller.quorum.voters and a CONTROLLER listener\n"
    "# as in config/cluster-3-node/.\n",
    {
        "node.id": "1",
        "listeners": "PLAINTEXT://0.0.0.0:9092,REPLICATION://0.0.0.0:9093,SSL://0.0.0.0:9094,SASL_SSL://0.0.0.0:9096",
        "advertised.listeners": "PLAINTEXT://b-1.strata.internal:9092,REPLICATION://b-1.strata.internal:9093,SSL://b-1.strata.internal:9094,SASL_SSL://b-1.strata.internal:9096",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,REPLICATION:SSL,SSL:SSL,SASL_SSL:SASL_SSL",
        "inter.broker.listener.name": "REPLICATION",
        "ssl.keystore.location": "/etc/strata/tls/broker.pem",
        "ssl.truststore.location": "/etc/strata/tls/ca.pem",
        "sasl.enabled.mechanisms": "SCRAM-SHA-512",
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": "User:admin;User:CN=b-1.strata.internal;User:CN=b-2.strata.internal;User:CN=b-3.strata.internal",
        "allow.everyone.if.no.acl.found": "true",
        "security.groups.file": "/etc/strata/msk-like.security-groups.json",
        "log.dirs": "/var/lib/strata",
        "metrics.listener": "127.0.0.1:9644",
    },
)

# Three combined broker+controller nodes on one machine (the example ports).
VOTERS = "1@127.0.0.1:19091,2@127.0.0.1:19092,3@127.0.0.1:19093"
for n in (1, 2, 3):
    EXAMPLES[f"cluster-3-node/broker-{n}.toml"] = (
        f"node {n} of a three-node cluster on one machine (combined mode).",
        "#\n# Each node is a broker and a metadata voter (process.roles=broker,controller).\n"
        "# Start all three (any order; each waits for a majority of voters):\n"
        f"#   strata --config config/cluster-3-node/broker-{n}.toml\n"
        "# Clients bootstrap from 127.0.0.1:9092,127.0.0.1:9093,127.0.0.1:9094.\n",
        {
            "process.roles": "broker,controller",
            "node.id": str(n),
            "controller.quorum.voters": VOTERS,
            "controller.listener.names": "CONTROLLER",
            "listeners": f"PLAINTEXT://127.0.0.1:{9091 + n},CONTROLLER://127.0.0.1:{19090 + n}",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": f"./data-cluster/broker-{n}",
            "broker.rack": f"az-{n}",
            "default.replication.factor": "3",
            "min.insync.replicas": "2",
            "offsets.topic.replication.factor": "3",
        },
    )

# Kafka's dedicated-controller layout on one machine: three controller-only voters
# and three broker-only nodes (ids 4-6) that fetch the metadata as observers.
for n in (1, 2, 3):
    EXAMPLES[f"cluster-3-node/dedicated-controllers/controller-{n}.toml"] = (
        f"controller {n} of three dedicated controllers (process.roles=controller).",
        "#\n# A controller-only node is a metadata voter and nothing else: it binds only its\n"
        "# controller listener, holds no partitions and serves no clients. Start the three\n"
        "# controllers and the three brokers beside them (any order):\n"
        f"#   strata --config config/cluster-3-node/dedicated-controllers/controller-{n}.toml\n",
        {
            "process.roles": "controller",
            "node.id": str(n),
            "controller.quorum.voters": VOTERS,
            "controller.listener.names": "CONTROLLER",
            "listeners": f"CONTROLLER://127.0.0.1:{19090 + n}",
            "log.dirs": f"./data-cluster/controller-{n}",
        },
    )
for n in (4, 5, 6):
    EXAMPLES[f"cluster-3-node/dedicated-controllers/broker-{n}.toml"] = (
        f"broker {n} beside three dedicated controllers (process.roles=broker).",
        "#\n# A broker-only node holds no vote: it registers with the active controller and\n"
        "# fetches the metadata from it (a KRaft observer). Start it with:\n"
        f"#   strata --config config/cluster-3-node/dedicated-controllers/broker-{n}.toml\n"
        "# Clients bootstrap from 127.0.0.1:9092,127.0.0.1:9093,127.0.0.1:9094.\n",
        {
            "process.roles": "broker",
            "node.id": str(n),
            "controller.quorum.voters": VOTERS,
            "controller.listener.names": "CONTROLLER",
            "listeners": f"PLAINTEXT://127.0.0.1:{9088 + n}",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": f"./data-cluster/broker-{n}",
            "broker.rack": f"az-{n - 3}",
            "default.replication.factor": "3",
            "min.insync.replicas": "2",
            "offsets.topic.replication.factor": "3",
        },
    )

KEY_LINE = re.compile(r'^(\S+) = "(.*)"  \[(\w+)\]$')


def keys(binary):
    out = subprocess.run([binary, "--list-config"], check=True, capture_output=True, text=True)
    lines = out.stdout.splitlines()
    result = []
    i = 0
    while i < len(lines):
        m = KEY_LINE.match(lines[i])
        if m and i + 1 < len(lines):
            result.append((m.group(1), m.group(2), m.group(3), lines[i + 1].strip()))
            i += 2
            continue
        if lines[i].startswith("# Topic keys"):
            break
        i += 1
    return result


def toml_value(v):
    if re.fullmatch(r"-?\d+", v) or v in ("true", "false"):
        return v
    if re.fullmatch(r"-?\d+\.\d+", v):
        return v
    return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render(title, notes, settings, all_keys):
    out = [HEADER.format(title=title, notes=notes)]
    for name, default, env, doc in all_keys:
        out.append(f"# {doc} [{env}]")
        if name in settings:
            out.append(f"{name} = {toml_value(settings[name])}")
        elif default == "":
            out.append(f"# {name} =")
        else:
            out.append(f"# {name} = {toml_value(default)}")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else "target/debug/strata"
    all_keys = keys(binary)
    for file, (title, notes, settings) in EXAMPLES.items():
        unknown = set(settings) - {k[0] for k in all_keys}
        if unknown:
            sys.exit(f"{file}: unknown keys {sorted(unknown)}")
        (HERE / file).parent.mkdir(parents=True, exist_ok=True)
        (HERE / file).write_text(render(title, notes, settings, all_keys))
        print(f"wrote config/{file}")


if __name__ == "__main__":
    main()
