"""Offline checks of terraform/ (no AWS account, no provider download):

- `terraform fmt -check` and checkov (no failed check; a skip only with a written reason);
- the security-groups rendering: the provider-free module terraform/modules/
  security-group-rules is applied on the repository's security-groups files (and an
  awkward one written here), and every rendered AWS rule is compared with the
  broker's own decision (`strata security-groups check`) on every listener, both
  ways: an address the AWS rules admit on a port is admitted by the broker on the
  listener of that port, and one they do not admit is denied;
- the broker configs: terraform/modules/broker-config renders each broker's
  strata.toml, which the broker validates (`strata --check-config`), and its
  cloud-init user data, which must carry the security-groups file byte for byte.

Terraform comes from $TERRAFORM or PATH, checkov from $STRATA_CHECKOV (test.sh installs
it in its own venv) or PATH. With $CI set a missing tool fails the test; elsewhere it
skips. The broker binary is found as in conftest.py ($STRATA_TEST_BINARY).
"""

import base64
import concurrent.futures
import ipaddress
import json
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from conftest import REPO_ROOT, strata_binary

TERRAFORM_DIR = REPO_ROOT / "terraform"
MODULES = TERRAFORM_DIR / "modules"
EXAMPLE_GROUPS = TERRAFORM_DIR / "examples" / "three-az" / "security-groups.json"
MSK_LIKE_TOML = REPO_ROOT / "config" / "msk-like.toml"
MSK_LIKE_GROUPS = REPO_ROOT / "config" / "msk-like.security-groups.json"
LOCALSTACK_COMPOSE = REPO_ROOT / "localstack" / "docker-compose.cluster.yml"
LOCALSTACK_GROUPS = REPO_ROOT / "localstack" / "security-groups.cluster.json"

# The listeners of the cluster module (modules/strata-cluster: listener_ports).
MODULE_LISTENERS = {"PLAINTEXT": 9092, "REPLICATION": 9093, "SSL": 9094, "CONTROLLER": 9095,
                    "SASL_SSL": 9096}

# A file that exercises the corners of the format: a non-canonical CIDR, IPv6, bare
# addresses, "All" and numeric ports, a range that misses every listener (dropped), a
# range over two adjacent listener ports (merged), lower-case listener names, a group
# attached to no listener whose members a source_group rule uses, a group on several
# listeners, 0.0.0.0/0 and ::/0.
EDGE_GROUPS = {
    "security_groups": {
        "clients": {
            "ingress": [
                {"cidr": "10.0.1.7/24", "ports": 9092},
                {"cidr": "2001:DB8:1::/48", "ports": "All"},
                {"cidr": "192.168.5.5", "ports": " 9092 - 9093 "},
                {"cidr": "10.9.0.0/16", "ports": "1-1000", "description": "no listener there"},
                {"source_group": "apps", "ports": "9000-9999",
                 "description": "apps' tier <not AWS-safe characters>"},
            ]
        },
        "apps": {"members": ["172.16.0.0/12", "fd00::1", "203.0.113.9/32"], "ingress": []},
        "brokers": {
            "members": ["10.0.0.0/24"],
            "ingress": [
                {"source_group": "brokers", "ports": "all"},
                {"cidr": "0.0.0.0/0", "ports": "9095"},
                {"cidr": "::/0", "ports": "9094-9094"},
            ],
        },
        "unused": {"ingress": [{"cidr": "10.200.0.0/16", "ports": "all"}]},
    },
    "listeners": {"plaintext": ["clients"], "tls": ["clients", "brokers"],
                  "replication": ["brokers"], "CONTROLLER": ["brokers"]},
}
EDGE_LISTENERS = {"PLAINTEXT": 9092, "TLS": 9093, "REPLICATION": 9094, "CONTROLLER": 9095,
                  "OTHER": 9096}

# Addresses no file here admits: TEST-NET-1 and the IPv6 documentation range.
OUTSIDERS = ["192.0.2.1", "2001:db8:ffff::1"]


# ---- tools --------------------------------------------------------------------------

def require(path, what):
    """The tool's path, or a skip (a failure under CI, where every tool must be there)."""
    found = shutil.which(str(path)) if path else None
    if found:
        return found
    message = f"{what} not found ({path})"
    if os.environ.get("CI"):
        pytest.fail(message + "; CI must run this test")
    pytest.skip(message)


def terraform_bin():
    return require(os.environ.get("TERRAFORM", "terraform"), "terraform")


def checkov_bin():
    return require(os.environ.get("STRATA_CHECKOV", "checkov"),
                   "checkov (test.sh installs it and sets STRATA_CHECKOV)")


def broker_bin():
    binary = strata_binary()
    if not binary.exists():
        require(None, f"strata binary {binary} (run `cargo build --bin strata` or set "
                      "STRATA_TEST_BINARY)")
    return binary


def tf_env(workdir):
    """The caller's environment without TF_* settings (workspaces, variables, a CLI
    config pointing anywhere): these runs must not depend on who runs them."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_")}
    rc = workdir / "terraformrc"
    rc.write_text("")
    env.update(TF_CLI_CONFIG_FILE=str(rc), TF_IN_AUTOMATION="1", TF_INPUT="0",
               CHECKPOINT_DISABLE="1", NO_COLOR="1")
    return env


def run(args, cwd, env=None, check=True):
    p = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True,
                       text=True, timeout=300)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} exited {p.returncode}\n"
                             f"stdout:\n{p.stdout}\nstderr:\n{p.stderr}")
    return p


def init_and_apply(workdir, check=True):
    env = tf_env(workdir)
    tf = terraform_bin()
    run([tf, "init", "-backend=false", "-no-color"], workdir, env)
    return env, run([tf, "apply", "-auto-approve", "-no-color"], workdir, env, check=check)


def copy_modules(workdir):
    """The provider-free modules, copied so that init and state stay out of the clone."""
    for name in ("security-group-rules", "broker-config"):
        shutil.copytree(MODULES / name, workdir / "modules" / name,
                        ignore=shutil.ignore_patterns(".terraform*", "*.tfstate*"))


def hcl(value):
    """A Python value as an HCL expression (JSON is valid HCL for these)."""
    return json.dumps(value)


# ---- formatting and checkov ---------------------------------------------------------

def test_terraform_fmt():
    p = run([terraform_bin(), "fmt", "-check", "-recursive", "-diff", "-no-color",
             TERRAFORM_DIR], REPO_ROOT, check=False)
    assert p.returncode == 0, f"terraform fmt would change:\n{p.stdout}{p.stderr}"


def test_checkov_passes():
    p = run([checkov_bin(), "-d", TERRAFORM_DIR, "--framework", "terraform", "--quiet",
             "--compact", "--skip-download", "-o", "json"], REPO_ROOT, check=False)
    try:
        report = json.loads(p.stdout)
    except json.JSONDecodeError:
        raise AssertionError(f"checkov printed no JSON report (exit {p.returncode}):\n"
                             f"{p.stdout[-4000:]}\n{p.stderr[-4000:]}")
    reports = report if isinstance(report, list) else [report]
    failed = [(c["check_id"], c["resource"], c["file_path"])
              for r in reports for c in r.get("results", {}).get("failed_checks", [])]
    summary = [r.get("summary", {}) for r in reports]
    assert not failed, f"checkov failed checks: {failed}"
    assert all(s.get("parsing_errors", 0) == 0 for s in summary), summary
    assert sum(s.get("resource_count", 0) for s in summary) > 20, summary
    assert p.returncode == 0, p.stderr[-4000:]


def test_checkov_skips_carry_a_reason():
    """A skip is an inline `#checkov:skip=CKV_...:reason` on the resource it concerns,
    and the reason says why in words."""
    skip = re.compile(r"#\s*checkov:skip=([A-Z0-9_]+)(?::(.*))?$")
    found = 0
    for tf in TERRAFORM_DIR.rglob("*.tf"):
        if ".terraform" in tf.parts:
            continue
        for n, line in enumerate(tf.read_text().splitlines(), 1):
            m = skip.search(line)
            if m:
                found += 1
                reason = (m.group(2) or "").strip()
                assert len(reason.split()) >= 5, f"{tf}:{n}: skip of {m.group(1)} without a reason"
    assert found > 0


# ---- security groups: rendering vs the broker ----------------------------------------

def listeners_of(spec):
    """name -> port from a broker `listeners` value (NAME://host:port,...)."""
    out = {}
    for item in spec.split(","):
        name, rest = item.strip().split("://", 1)
        out[name.upper()] = int(rest.rsplit(":", 1)[1])
    return out


def cases(tmp):
    msk_listeners = listeners_of(tomllib.loads(MSK_LIKE_TOML.read_text())["listeners"])
    compose = LOCALSTACK_COMPOSE.read_text()
    localstack_listeners = listeners_of(re.search(r"\blisteners=(\S+)", compose).group(1))
    edge = tmp / "edge.security-groups.json"
    edge.write_text(json.dumps(EDGE_GROUPS, indent=2))
    return {
        "example": (EXAMPLE_GROUPS, MODULE_LISTENERS, False),
        "example_members": (EXAMPLE_GROUPS, MODULE_LISTENERS, True),
        "msk_like": (MSK_LIKE_GROUPS, msk_listeners, False),
        "localstack_cluster": (LOCALSTACK_GROUPS, localstack_listeners, False),
        "edge": (edge, EDGE_LISTENERS, False),
        "edge_members": (edge, EDGE_LISTENERS, True),
    }


BROKER_CONFIG_INPUTS = {
    "tls": {
        "cluster_name": "demo",
        "brokers": {
            "1": {"private_ip": "10.0.0.10", "host": "b-1.strata.internal", "rack": "use1-az1"},
            "2": {"private_ip": "10.0.1.11", "host": "b-2.strata.internal", "rack": "use1-az2",
                  "data_volume_id": "vol-0123456789abcdef0"},
            "3": {"private_ip": "10.0.2.12", "host": "b-3.strata.internal", "rack": "use1-az4"},
        },
        "listeners": {"PLAINTEXT": {"port": 9092, "protocol": "PLAINTEXT"},
                      "REPLICATION": {"port": 9093, "protocol": "SSL"},
                      "SSL": {"port": 9094, "protocol": "SSL"},
                      "CONTROLLER": {"port": 9095, "protocol": "SSL"},
                      "SASL_SSL": {"port": 9096, "protocol": "SASL_SSL"}},
        "tls_keystore_secret_arn": "arn:aws:secretsmanager:us-east-1:111122223333:secret:demo/tls-AbCdEf",
        "tls_truststore_pem": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        "tls_client_authentication": True,
        "scram_admin_secret_arn": "arn:aws:secretsmanager:us-east-1:111122223333:secret:demo/admin-AbCdEf",
        "extra_broker_config": {
            "log.retention.hours": "72",
            "auto.create.topics.enable": "false",
            # What the cluster module adds with log_delivery_prefix.
            "logs.delivery.url": "s3://strata-tier-example/broker-logs",
        },
    },
    "plaintext": {
        "cluster_name": "plain",
        "brokers": {str(i): {"private_ip": f"10.0.{(i - 1) % 3}.{9 + i}",
                             "host": f"10.0.{(i - 1) % 3}.{9 + i}", "rack": f"use1-az{i % 3 + 1}"}
                    for i in range(1, 6)},
        "listeners": {"PLAINTEXT": {"port": 9092, "protocol": "PLAINTEXT"},
                      "REPLICATION": {"port": 9093, "protocol": "PLAINTEXT"},
                      "CONTROLLER": {"port": 9095, "protocol": "PLAINTEXT"}},
        "metrics_listener": "0.0.0.0:9644",
    },
}
BROKER_CONFIG_COMMON = {
    "object_store_url": "s3://demo-tier-123/strata",
    "region": "us-east-1",
    "kms_key_arn": "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    "strata_binary_url": "s3://artifacts/strata/strata-x86_64",
    "strata_binary_sha256": "0" * 64,
    "cluster_id": "abcdefghijklmnopqrstuv",
}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """One `terraform apply` of the provider-free modules for every case above; returns
    the cases and `terraform output -json`."""
    terraform_bin()
    work = tmp_path_factory.mktemp("terraform")
    copy_modules(work)
    all_cases = cases(work)
    blocks = []
    for name, (path, listeners, expand) in all_cases.items():
        blocks.append(f'''
module "{name}" {{
  source               = "./modules/security-group-rules"
  security_groups_file = {hcl(str(path))}
  listeners            = {hcl(listeners)}
  expand_source_groups = {hcl(expand)}
}}
output "{name}_rules" {{ value = module.{name}.rules }}
output "{name}_groups" {{ value = module.{name}.groups }}
output "{name}_attached" {{ value = module.{name}.attached_groups }}
''')
    for name, inputs in BROKER_CONFIG_INPUTS.items():
        args = "\n".join(f"  {k} = {hcl(v)}" for k, v in {**BROKER_CONFIG_COMMON, **inputs}.items())
        blocks.append(f'''
module "config_{name}" {{
  source               = "./modules/broker-config"
  security_groups_file = {hcl(str(EXAMPLE_GROUPS))}
{args}
}}
output "config_{name}_toml" {{ value = module.config_{name}.toml }}
output "config_{name}_user_data" {{ value = module.config_{name}.user_data }}
output "config_{name}_config" {{ value = module.config_{name}.config }}
''')
    (work / "main.tf").write_text("".join(blocks))
    env, _ = init_and_apply(work)
    out = run([terraform_bin(), "output", "-json"], work, env).stdout
    values = {k: v["value"] for k, v in json.loads(out).items()}
    return {"work": work, "cases": all_cases, "outputs": values}


def host_samples(net):
    """First, middle and last address of a network, and the ones just outside it."""
    first, last = int(net.network_address), int(net.broadcast_address)
    make = ipaddress.ip_address if net.version == 4 else ipaddress.IPv6Address
    top = (1 << net.max_prefixlen) - 1
    samples = {first, (first + last) // 2, last}
    samples |= {x for x in (first - 1, last + 1) if 0 <= x <= top}
    return {str(make(x)) for x in samples}


def rule_networks(rule):
    """The networks a rendered rule admits from, in the broker's reading (a source_group
    rule: its group's members; AWS's reading is the interfaces carrying that group,
    which the members describe)."""
    nets = [rule["cidr_ipv4"], rule["cidr_ipv6"]] if rule["source_group"] is None else rule["members"]
    return [ipaddress.ip_network(n) for n in nets if n]


def aws_admits(rules, port, address):
    ip = ipaddress.ip_address(address)
    return any(r["from_port"] <= port <= r["to_port"]
               and any(ip.version == n.version and ip in n for n in rule_networks(r))
               for r in rules)


def broker_verdicts(toml_path, checks):
    """(listener, address) -> admitted, from `strata security-groups check`."""
    binary = broker_bin()

    def one(check):
        listener, address = check
        p = subprocess.run([str(binary), "--config", str(toml_path), "security-groups", "check",
                            "--listener", listener, "--from", address],
                           capture_output=True, text=True, timeout=60,
                           env={k: v for k, v in os.environ.items() if not k.startswith("STRATA_")})
        assert p.returncode in (0, 1), (
            f"strata security-groups check --listener {listener} --from {address} exited "
            f"{p.returncode}: {p.stdout}{p.stderr}")
        return check, p.returncode == 0, p.stdout.strip()

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        return {c: (admitted, said) for c, admitted, said in pool.map(one, checks)}


@pytest.mark.parametrize("case", ["example", "example_members", "msk_like", "localstack_cluster",
                                  "edge", "edge_members"])
def test_rendered_rules_agree_with_the_broker(rendered, case):
    path, listeners, expand = rendered["cases"][case]
    rules = rendered["outputs"][f"{case}_rules"]
    doc = json.loads(Path(path).read_text())
    attached = {l.upper(): gs for l, gs in doc.get("listeners", {}).items()}

    # The AWS side, rule by rule: a rule opens only ports of listeners its group is
    # attached to (the intersection), names them, and has AWS-safe descriptions.
    assert rules, "no rule rendered"
    for r in rules:
        group_ports = {listeners[l] for l, gs in attached.items() if r["group"] in gs}
        opened = set(range(r["from_port"], r["to_port"] + 1))
        assert opened <= group_ports, (
            f"{r['key']} opens ports {sorted(opened - group_ports)[:20]} (of "
            f"{len(opened - group_ports)}) where group {r['group']} guards no listener")
        assert sorted(r["listeners"]) == sorted(l for l, p in listeners.items() if p in opened
                                                and r["group"] in attached.get(l, []))
        assert re.fullmatch(r"[A-Za-z0-9. _:/()#,@\[\]+=&;{}!$*-]{1,255}", r["aws_description"])
        if expand:
            assert (r["cidr_ipv4"] or r["cidr_ipv6"]), f"{r['key']}: members mode renders CIDRs"
        else:
            assert (r["cidr_ipv4"] or r["cidr_ipv6"]) != (r["source_group"] is not None)
    keys = [r["key"] for r in rules]
    assert len(keys) == len(set(keys)), "rule keys must be unique (for_each)"

    # A broker config with these listeners (on loopback: `check` reads config only).
    toml = rendered["work"] / f"{case}.toml"
    names = sorted(listeners, key=listeners.get)
    toml.write_text(
        f'listeners = "{",".join(f"{n}://127.0.0.1:{listeners[n]}" for n in names)}"\n'
        f'"listener.security.protocol.map" = "{",".join(f"{n}:PLAINTEXT" for n in names)}"\n'
        f'"security.groups.file" = {json.dumps(str(path))}\n')

    # A listener no group guards can only be a loopback one for the broker (it refuses
    # one bound beyond loopback, and the cluster module binds all on 0.0.0.0): AWS
    # must open nothing on its port.
    guarded = [n for n in names if attached.get(n)]
    for n in set(names) - set(guarded):
        assert not [r["key"] for r in rules if r["from_port"] <= listeners[n] <= r["to_port"]]

    # Both ways, on every guarded listener: addresses inside, at the edges of and just
    # outside every network the file names, and addresses it never names.
    candidates = set(OUTSIDERS)
    for group in doc["security_groups"].values():
        for text in group.get("members", []) + [r["cidr"] for r in group.get("ingress", [])
                                                if "cidr" in r]:
            candidates |= host_samples(ipaddress.ip_network(text.strip(), strict=False))
    checks = [(l, a) for l in guarded for a in sorted(candidates)]
    verdicts = broker_verdicts(toml, checks)

    disagreements = []
    admitted_somewhere = 0
    for (listener, address), (broker, said) in verdicts.items():
        aws = aws_admits(rules, listeners[listener], address)
        admitted_somewhere += aws
        if aws != broker:
            disagreements.append(f"{listener} (port {listeners[listener]}) from {address}: "
                                 f"AWS rules {'admit' if aws else 'deny'}, broker says {said!r}")
    assert not disagreements, (f"{len(disagreements)} of {len(checks)} checks disagree:\n"
                               + "\n".join(disagreements[:40]))
    assert admitted_somewhere > 0 and admitted_somewhere < len(checks)

    # Every rendered rule admits its own sample addresses on each of its ports (a
    # rule the equivalence above could not tell apart from its neighbours).
    for r in rules:
        for net in rule_networks(r):
            inside = [a for a in host_samples(net) if ipaddress.ip_address(a) in net]
            for listener in r["listeners"]:
                for a in inside:
                    assert verdicts[(listener, a)][0], (
                        f"{r['key']}: broker denies {a} on {listener}: {verdicts[(listener, a)][1]}")


def test_security_group_rule_counts(rendered):
    """The intersection at work on the example file: the clients' 9092-9096 becomes one
    rule per client listener (9093 and 9095 belong to the brokers' group), and the
    brokers' "all" becomes REPLICATION and CONTROLLER only (9093 and 9095 are not
    adjacent, so two rules)."""
    rules = rendered["outputs"]["example_rules"]
    spans = sorted((r["group"], r["from_port"], r["to_port"]) for r in rules)
    client = [(p, p) for p in (9092, 9094, 9096)]
    assert spans == sorted([("brokers", 9093, 9093), ("brokers", 9095, 9095)]
                           + [("clients", a, b) for a, b in client] * 3)
    assert rendered["outputs"]["example_attached"] == ["brokers", "clients"]
    # Adjacent listener ports merge into one range; an unused group renders no rule
    # but is still a group (its members may be a source).
    edge = rendered["outputs"]["edge_rules"]
    assert any(r["from_port"] == 9092 and r["to_port"] == 9093 for r in edge)
    assert not any(r["group"] == "unused" for r in edge)
    assert "unused" in rendered["outputs"]["edge_groups"]
    assert not any("10.9.0.0/16" in (r["cidr_ipv4"] or "") for r in edge)
    assert {r["cidr_ipv4"] for r in edge if r["cidr_ipv4"]} >= {"10.0.1.0/24", "192.168.5.5/32"}


def test_a_file_the_broker_refuses_fails_the_plan(tmp_path):
    """What the broker would refuse at start-up stops `terraform apply` with a message
    naming the problem, before anything reaches AWS."""
    copy_modules(tmp_path)
    bad = {
        "unknown_listener": ({"security_groups": {"g": {"ingress": [{"cidr": "10.0.0.0/8", "ports": "all"}]}},
                              "listeners": {"NOPE": ["g"]}}, "not listeners of the broker"),
        "bad_ports": ({"security_groups": {"g": {"ingress": [{"cidr": "10.0.0.0/8", "ports": "9093-9092"}]}},
                       "listeners": {"PLAINTEXT": ["g"]}}, 'bad "ports"'),
        "bad_cidr": ({"security_groups": {"g": {"ingress": [{"cidr": "10.0.0.300/8", "ports": 1}]}},
                      "listeners": {"PLAINTEXT": ["g"]}}, "are not CIDRs"),
        "unknown_source": ({"security_groups": {"g": {"ingress": [{"source_group": "h", "ports": 1}]}},
                            "listeners": {"PLAINTEXT": ["g"]}}, "source_group names a group"),
        "unknown_field": ({"security_groups": {"g": {"ingress": [{"cidr": "10.0.0.0/8", "port": 1}]}},
                           "listeners": {"PLAINTEXT": ["g"]}}, "unknown fields"),
    }
    blocks = []
    for name, (doc, _) in bad.items():
        f = tmp_path / f"{name}.json"
        f.write_text(json.dumps(doc))
        blocks.append(f'module "{name}" {{\n  source = "./modules/security-group-rules"\n'
                      f'  security_groups_file = {hcl(str(f))}\n  listeners = {{ PLAINTEXT = 9092 }}\n}}\n'
                      f'output "{name}" {{ value = module.{name}.rules }}\n')
    (tmp_path / "main.tf").write_text("".join(blocks))
    _, p = init_and_apply(tmp_path, check=False)
    assert p.returncode != 0
    said = re.sub(r"\s+", " ", p.stderr)
    for name, (_, message) in bad.items():
        assert f"{name}.json" in said and message in said, f"{name}: {message!r} not in:\n{p.stderr}"
    # Each file is also refused by the broker itself.
    for name in bad:
        q = subprocess.run([str(broker_bin()), "--override", "listeners=PLAINTEXT://127.0.0.1:9092",
                            "--override", f"security.groups.file={tmp_path / f'{name}.json'}",
                            "security-groups", "check", "--listener", "PLAINTEXT", "--from", "10.0.0.1"],
                           capture_output=True, text=True, timeout=60)
        assert q.returncode == 2, f"{name}: the broker accepted it: {q.stdout}{q.stderr}"


# ---- broker configs and user data ------------------------------------------------------

def user_data_files(text):
    """path -> bytes of the write_files entries of a rendered cloud-config."""
    assert text.startswith("#cloud-config\n")
    files = dict(re.findall(r"^  - path: (\S+)\n(?:    .*\n)*?    content: (\S+)$", text, re.M))
    return {p: base64.b64decode(c) for p, c in files.items()}


@pytest.mark.parametrize("variant", list(BROKER_CONFIG_INPUTS))
def test_broker_configs_are_valid_and_complete(rendered, variant):
    inputs = BROKER_CONFIG_INPUTS[variant]
    tomls = rendered["outputs"][f"config_{variant}_toml"]
    configs = rendered["outputs"][f"config_{variant}_config"]
    user_data = rendered["outputs"][f"config_{variant}_user_data"]
    brokers = inputs["brokers"]
    listeners = inputs["listeners"]
    assert sorted(tomls) == sorted(brokers)

    voters = ",".join(f"{k}@{brokers[k]['private_ip']}:{listeners['CONTROLLER']['port']}"
                      for k in sorted(brokers, key=int))
    for node, toml_text in tomls.items():
        # The broker itself validates every key and value.
        f = rendered["work"] / f"{variant}-broker-{node}.toml"
        f.write_text(toml_text)
        p = run([broker_bin(), "--config", f, "--check-config"], REPO_ROOT, check=False,
                env={k: v for k, v in os.environ.items() if not k.startswith("STRATA_")})
        assert p.returncode == 0, f"broker {node}: {p.stdout[-2000:]}{p.stderr}"

        parsed = tomllib.loads(toml_text)
        assert parsed == configs[node]
        assert parsed["node.id"] == node
        assert parsed["broker.rack"] == brokers[node]["rack"]
        assert parsed["controller.quorum.voters"] == voters
        assert parsed["process.roles"] == "broker,controller"
        assert parsed["security.groups.file"] == "/etc/strata/security-groups.json"
        assert parsed["log.dirs"] == "/var/lib/strata"
        assert parsed["object_store.url"] == BROKER_CONFIG_COMMON["object_store_url"]
        assert parsed["object_store.sse"] == "aws:kms"
        assert parsed["object_store.sse.kms.key.id"] == BROKER_CONFIG_COMMON["kms_key_arn"]
        assert parsed["object_store.sse.bucket.key.enabled"] == "true"
        assert parsed["remote.log.storage.system.enable"] == "true"
        assert listeners_of(parsed["listeners"]) == {l: v["port"] for l, v in listeners.items()}
        advertised = listeners_of(parsed["advertised.listeners"])
        assert "CONTROLLER" not in advertised and len(advertised) == len(listeners) - 1
        assert all(f"//{brokers[node]['host']}:" in a for a in parsed["advertised.listeners"].split(","))
        for k, v in inputs.get("extra_broker_config", {}).items():
            assert parsed[k] == v
        tls = any(v["protocol"] != "PLAINTEXT" for v in listeners.values())
        assert ("ssl.keystore.location" in parsed) == tls

        # The user data carries the very same files.
        files = user_data_files(user_data[node])
        assert files["/etc/strata/security-groups.json"] == EXAMPLE_GROUPS.read_bytes()
        assert files["/etc/strata/strata.toml"].decode() == toml_text
        templates = MODULES / "broker-config" / "templates"
        for path, template in (("/usr/local/sbin/strata-bootstrap", "strata-bootstrap.sh"),
                               ("/usr/local/sbin/strata-prepare-data", "strata-prepare-data.sh"),
                               ("/etc/systemd/system/strata.service", "strata.service")):
            assert files[path] == (templates / template).read_bytes()
        assert ("/usr/local/sbin/strata-fetch-secrets" in files) == ("tls_keystore_secret_arn" in inputs)
        # bootstrap.env is sourced by the scripts' bash.
        env_file = f.with_suffix(".env")
        env_file.write_bytes(files["/etc/strata/bootstrap.env"])
        sourced = run(["bash", "-c", 'set -eu; . "$0"; printf "%s\\n" "$STRATA_CLUSTER_ID" '
                       '"$STRATA_DATA_VOLUME_ID" "$STRATA_BINARY_URL"', env_file], REPO_ROOT)
        assert sourced.stdout.splitlines() == [BROKER_CONFIG_COMMON["cluster_id"],
                                               brokers[node].get("data_volume_id", ""),
                                               BROKER_CONFIG_COMMON["strata_binary_url"]]


def test_bootstrap_scripts_parse():
    for script in (MODULES / "broker-config" / "templates").glob("*.sh"):
        run(["bash", "-n", script], REPO_ROOT)
