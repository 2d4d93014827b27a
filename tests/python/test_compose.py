"""The docker-compose files under localstack/ and what they mount, checked without
docker: each file parses (PyYAML, anchors and merge keys included) into top-level
`services`, every service has an image (with a pinned tag) or a build whose context
and Dockerfile exist, depends_on names services that exist (service_healthy ones with
a healthcheck), host ports do not clash, and every file or directory mounted from the
repository exists. For the cluster file: Prometheus scrapes all three brokers on the
port of their metrics.listener and loads docs/prometheus/alerts.yml as its rule file;
Grafana's data source points at that Prometheus and its dashboard provider loads the
mounted docs/grafana/strata.json; MinIO has the built-in KMS key SSE-S3 needs and the
brokers ask for SSE-S3. Where `docker compose` works, `docker compose config -q` also
validates each file against compose's own schema.
"""

import base64
import os
import posixpath
import shutil
import subprocess

import pytest
import yaml

from conftest import REPO_ROOT

LOCALSTACK = REPO_ROOT / "localstack"
COMPOSE_FILES = ["docker-compose.yml", "docker-compose.cluster.yml"]
CLUSTER = LOCALSTACK / "docker-compose.cluster.yml"
BROKERS = ["strata-1", "strata-2", "strata-3"]
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}


def load(path):
    with open(path) as f:
        return yaml.safe_load(f)


def mounts(service):
    """[(host source or None, container target)] of a service's volumes, short and
    long syntax; the source is None for a named volume."""
    out = []
    for v in service.get("volumes") or []:
        if isinstance(v, dict):
            src, dst = v.get("source"), v["target"]
            out.append((src if v.get("type", "volume") == "bind" else None, dst))
            continue
        parts = v.split(":")
        if len(parts) == 1:
            out.append((None, parts[0]))
        else:
            src = parts[0]
            bind = src.startswith((".", "/", "~"))
            out.append((src if bind else None, parts[1]))
    return out


def host_path(compose_file, source):
    return (compose_file.parent / source).resolve()


def container_file(compose_file, service, container_path):
    """The repository file a service sees at `container_path`, through a mount of
    the file itself or of a directory above it; None if nothing is mounted there."""
    container_path = posixpath.normpath(container_path)
    best = None
    for src, dst in mounts(service):
        if src is None:
            continue
        dst = posixpath.normpath(dst)
        if container_path == dst:
            return host_path(compose_file, src)
        if container_path.startswith(dst.rstrip("/") + "/"):
            rel = posixpath.relpath(container_path, dst)
            if best is None or len(dst) > len(best[0]):
                best = (dst, host_path(compose_file, src) / rel)
    return best[1] if best else None


def command_overrides(service):
    cmd = service.get("command") or []
    if isinstance(cmd, str):
        cmd = cmd.split()
    out = {}
    for flag, value in zip(cmd, cmd[1:]):
        if flag == "--override":
            k, _, v = value.partition("=")
            out[k] = v
    return out


def depends_on(service):
    d = service.get("depends_on") or {}
    if isinstance(d, list):
        return {name: "service_started" for name in d}
    return {name: (spec or {}).get("condition", "service_started") for name, spec in d.items()}


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_compose_schema(name):
    path = LOCALSTACK / name
    doc = load(path)
    assert isinstance(doc, dict) and isinstance(doc.get("services"), dict), name
    assert set(doc) <= {"name", "services", "volumes", "networks", "configs", "secrets"} | {
        k for k in doc if k.startswith("x-")}, sorted(doc)
    services = doc["services"]
    host_ports = {}
    for sname, svc in services.items():
        where = f"{name}: service {sname}"
        assert isinstance(svc, dict), where
        assert "image" in svc or "build" in svc, f"{where}: neither image nor build"
        if "image" in svc:
            image = svc["image"]
            tag = image.rsplit("/", 1)[-1].partition(":")[2]
            assert tag and tag != "latest", f"{where}: image {image} is not pinned"
        if "build" in svc:
            build = svc["build"]
            context = build if isinstance(build, str) else build.get("context", ".")
            ctx = host_path(path, context)
            assert ctx.is_dir(), f"{where}: build context {ctx} missing"
            dockerfile = "Dockerfile" if isinstance(build, str) else build.get(
                "dockerfile", "Dockerfile")
            assert (ctx / dockerfile).is_file(), f"{where}: {dockerfile} missing in {ctx}"
        for dep, condition in depends_on(svc).items():
            assert dep in services, f"{where}: depends_on unknown service {dep}"
            assert dep != sname, f"{where}: depends on itself"
            assert condition in CONDITIONS, f"{where}: condition {condition}"
            if condition == "service_healthy":
                assert "healthcheck" in services[dep], f"{where}: {dep} has no healthcheck"
        for src, dst in mounts(svc):
            assert dst.startswith("/"), f"{where}: mount target {dst} not absolute"
            if src is not None and src.startswith((".", "..")):
                assert host_path(path, src).exists(), f"{where}: mounts missing {src}"
        for port in svc.get("ports") or []:
            if isinstance(port, dict):
                host = str(port.get("published", ""))
            else:  # [ip:]host:container[/proto]; a lone container port gets a random one
                parts = str(port).split("/")[0].split(":")
                host = parts[-2] if len(parts) > 1 else ""
            if not host:
                continue
            assert host not in host_ports, (
                f"{where}: host port {host} also published by {host_ports[host]}")
            host_ports[host] = sname
    # No dependency cycles (compose refuses them).
    state = {}

    def visit(s, trail):
        assert state.get(s) != "open", f"{name}: depends_on cycle {' -> '.join(trail + [s])}"
        if state.get(s) == "done":
            return
        state[s] = "open"
        for dep in depends_on(services[s]):
            visit(dep, trail + [s])
        state[s] = "done"

    for s in services:
        visit(s, [])


def test_cluster_brokers_and_sse():
    services = load(CLUSTER)["services"]
    for b in BROKERS:
        o = command_overrides(services[b])
        assert o.get("object_store.sse") == "AES256", f"{b}: {o}"
        assert o.get("metrics.listener", "").endswith(":9644"), f"{b}: {o}"
        assert o.get("object_store.endpoint") == "http://minio:9000"
    key = services["minio"]["environment"]["MINIO_KMS_SECRET_KEY"]
    key_name, _, material = key.partition(":")
    assert key_name and len(base64.b64decode(material, validate=True)) == 32, key


def prometheus_config():
    services = load(CLUSTER)["services"]
    prom = services["prometheus"]
    cmd = prom.get("command") or []
    flags = dict(a.split("=", 1) for a in cmd if a.startswith("--") and "=" in a)
    config_path = flags.get("--config.file", "/etc/prometheus/prometheus.yml")
    host = container_file(CLUSTER, prom, config_path)
    assert host is not None and host.is_file(), f"prometheus config {config_path} not mounted"
    return prom, config_path, host


def test_prometheus_scrapes_the_brokers_and_loads_the_alerts():
    services = load(CLUSTER)["services"]
    prom, config_path, host = prometheus_config()
    assert host == LOCALSTACK / "prometheus.yml"
    assert "9090:9090" in [str(p) for p in prom.get("ports") or []]
    config = load(host)

    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    assert "strata" in jobs, "the alerts and the dashboard use up{job=\"strata\"}"
    targets = [t for sc in jobs["strata"]["static_configs"] for t in sc["targets"]]
    expected = []
    for b in BROKERS:
        port = command_overrides(services[b])["metrics.listener"].rsplit(":", 1)[1]
        expected.append(f"{b}:{port}")
    assert sorted(targets) == sorted(expected)
    assert jobs["strata"].get("metrics_path", "/metrics") == "/metrics"

    rule_hosts = []
    for rule in config["rule_files"]:
        in_container = posixpath.join(posixpath.dirname(config_path), rule)
        rule_host = container_file(CLUSTER, prom, in_container)
        assert rule_host is not None, f"rule file {rule} is not mounted"
        rule_hosts.append(rule_host)
    assert rule_hosts == [REPO_ROOT / "docs" / "prometheus" / "alerts.yml"]


def test_grafana_provisioning():
    services = load(CLUSTER)["services"]
    graf = services["grafana"]
    assert "3000:3000" in [str(p) for p in graf.get("ports") or []]
    env = graf.get("environment") or {}
    assert env.get("GF_AUTH_ANONYMOUS_ENABLED") == "true" or (
        env.get("GF_SECURITY_ADMIN_PASSWORD")), "no documented way in"

    ds_dir = container_file(CLUSTER, graf, "/etc/grafana/provisioning/datasources")
    assert ds_dir is not None and ds_dir.is_dir(), "no datasource provisioning mounted"
    datasources = [d for f in sorted(ds_dir.glob("*.y*ml")) for d in load(f)["datasources"]]
    prom = [d for d in datasources if d["type"] == "prometheus"]
    assert len(prom) == 1 and prom[0].get("isDefault"), datasources
    url = prom[0]["url"]
    assert url.startswith("http://prometheus:"), url
    assert "prometheus" in services and url.endswith(":9090")
    assert "prometheus" in depends_on(graf)

    dash_dir = container_file(CLUSTER, graf, "/etc/grafana/provisioning/dashboards")
    assert dash_dir is not None and dash_dir.is_dir(), "no dashboard provisioning mounted"
    providers = [p for f in sorted(dash_dir.glob("*.y*ml")) for p in load(f)["providers"]]
    assert providers, "no dashboard provider"
    found = []
    for p in providers:
        assert p.get("type", "file") == "file"
        path = p["options"]["path"]
        json_file = container_file(CLUSTER, graf, posixpath.join(path, "strata.json"))
        if json_file is None and path.endswith(".json"):
            json_file = container_file(CLUSTER, graf, path)
        if json_file is not None:
            found.append(json_file)
    assert found == [REPO_ROOT / "docs" / "grafana" / "strata.json"], (
        f"no dashboard provider's path holds the mounted strata.json: {providers}")
    # Mounted read-only.
    assert any(str(v).endswith("/etc/grafana/dashboards/strata.json:ro")
               for v in graf["volumes"]), graf["volumes"]
    home = env.get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    if home:
        assert container_file(CLUSTER, graf, home) == REPO_ROOT / "docs" / "grafana" / "strata.json"


def test_promtool_check_config(tmp_path):
    """promtool validates the Prometheus config, with the rule file paths mapped from
    the container to the repository (when promtool is on PATH or in $PROMTOOL)."""
    tool = os.environ.get("PROMTOOL") or shutil.which("promtool")
    if not tool:
        pytest.skip("promtool not found (set PROMTOOL or put it on PATH)")
    prom, config_path, host = prometheus_config()
    config = load(host)
    config["rule_files"] = [
        str(container_file(CLUSTER, prom, posixpath.join(posixpath.dirname(config_path), r)))
        for r in config["rule_files"]]
    local = tmp_path / "prometheus.yml"
    local.write_text(yaml.safe_dump(config))
    proc = subprocess.run([tool, "check", "config", str(local)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_compose_header_mentions_the_services():
    """The comment block at the top of the cluster file describes what runs."""
    header = []
    for line in CLUSTER.read_text().splitlines():
        if not line.startswith("#"):
            break
        header.append(line)
    text = "\n".join(header)
    for needle in ("localhost:9090", "localhost:3000", "docs/prometheus/alerts.yml",
                   "docs/grafana/strata.json", "object_store.sse=AES256",
                   "MINIO_KMS_SECRET_KEY", "admin/admin"):
        assert needle in text, f"header of {CLUSTER.name} does not mention {needle}"


def docker_compose_works():
    if not shutil.which("docker"):
        return False
    try:
        proc = subprocess.run(["docker", "compose", "version"], capture_output=True,
                              timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_docker_compose_config(name):
    if not docker_compose_works():
        pytest.skip("docker compose is not available here")
    proc = subprocess.run(["docker", "compose", "-f", str(LOCALSTACK / name), "config", "-q"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
