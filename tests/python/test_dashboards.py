"""The Grafana dashboard (docs/grafana/strata.json) and the Prometheus alert rules
(docs/prometheus/alerts.yml) against what a live broker serves on /metrics.

A broker with a metrics listener and a SASL listener (so the failed-authentication
family has its per-listener series) gets a two-partition topic, records produced and
consumed by a consumer group that commits and then lags, so per-topic and per-group
series exist. Every metric name a dashboard target, a dashboard variable or an alert
expression uses must then be one the broker exposes: a `# TYPE` family expanded the
way Prometheus stores it (a counter as name_total, a histogram as _bucket, _sum and
_count) or a series seen in the scrape. Names are taken from the PromQL text by
dropping strings, label matchers, grouping lists, ranges, numbers, keywords and
function names, and (when promql_parser is installed) cross-checked against a real
PromQL parse, which also checks label names: matchers and by() lists must use labels
the metric carries, and legends and alert annotations may only name labels the
query's result keeps.

Static checks: the dashboard is importable JSON (uid, title, unique panel ids,
gridPos inside the 24-column grid without overlaps, targets with expr, refId and
legendFormat, every $variable defined) and the alert file has groups of rules that
each have alert, expr, a valid `for`, labels.severity and annotations.summary and
description. With promtool (on PATH or $PROMTOOL) the rules are also checked and
their unit tests in docs/prometheus/alerts.test.yml run.
"""

import json
import os
import re
import shutil
import subprocess
import time
import urllib.request

import pytest
import yaml
from kafka import KafkaConsumer

from conftest import (POLL_TIMEOUT_S, REPO_ROOT, create_topic, free_port, unique_topic,
                      wait_until)

try:
    import promql_parser
except ImportError:  # the name check below does not need it
    promql_parser = None

DASHBOARD = REPO_ROOT / "docs" / "grafana" / "strata.json"
ALERTS = REPO_ROOT / "docs" / "prometheus" / "alerts.yml"
ALERT_TESTS = REPO_ROOT / "docs" / "prometheus" / "alerts.test.yml"

# Series Prometheus makes itself for every target, not scraped from the broker.
PROMETHEUS_OWN = {"up"}
# Labels Prometheus attaches to every scraped series (the target's labels).
TARGET_LABELS = {"instance", "job"}
# Grafana's own variables.
GRAFANA_BUILTINS = {"__interval", "__interval_ms", "__rate_interval", "__range",
                    "__range_s", "__range_ms", "__dashboard", "__org", "__user",
                    "__from", "__to", "timeFilter", "__timeFilter"}

# What the dashboard and the alerts must cover, whatever else they hold.
DASHBOARD_MUST_USE = {
    "kafka_server_brokertopicmetrics_bytesin_total",
    "kafka_server_brokertopicmetrics_bytesout_total",
    "kafka_server_brokertopicmetrics_messagesin_total",
    "kafka_network_requestmetrics_requests_total",
    "kafka_network_requestmetrics_totaltimems_bucket",
    "kafka_server_kafkarequesthandlerpool_requesthandleravgidlepercent",
    "kafka_server_replicamanager_underreplicatedpartitions",
    "kafka_server_replicamanager_underminisrpartitioncount",
    "kafka_controller_kafkacontroller_offlinepartitionscount",
    "kafka_controller_kafkacontroller_activecontrollercount",
    "kafka_brokers",
    "kafka_controller_kafkacontroller_globalpartitioncount",
    "kafka_consumergroup_lag_sum",
    "kafka_consumergroup_max_offset_lag",
    "kafka_consumergroup_max_time_lag_seconds",
    "kafka_server_brokertopicmetrics_remotecopybytes_total",
    "kafka_server_brokertopicmetrics_remotefetchbytes_total",
    "kafka_server_brokertopicmetrics_remotecopylagbytes",
    "kafka_server_brokertopicmetrics_remotelogsizebytes",
    "strata_remote_upload_lag_segments",
    "strata_remote_upload_failures_total",
    "strata_security_group_denied_total",
    "kafka_server_socket_server_metrics_failed_authentication_total",
}
ALERTS_MUST_USE = {
    "up",
    "kafka_server_replicamanager_underreplicatedpartitions",
    "kafka_server_replicamanager_underminisrpartitioncount",
    "kafka_controller_kafkacontroller_offlinepartitionscount",
    "kafka_controller_kafkacontroller_activecontrollercount",
    "kafka_consumergroup_lag_sum",
    "kafka_server_brokertopicmetrics_remotecopylagbytes",
    "kafka_server_brokertopicmetrics_failedremotecopyrequests_total",
    "strata_security_group_denied_total",
    "kafka_server_socket_server_metrics_failed_authentication_total",
    "kafka_server_kafkarequesthandlerpool_requesthandleravgidlepercent",
}

# --- the exposition -----------------------------------------------------------------

SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+\S")
LABEL_PAIR = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
# How Prometheus stores each OpenMetrics family type (family name + suffix).
TYPE_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    "summary": ("", "_sum", "_count"),
    "info": ("_info",),
    "gauge": ("",),
    "stateset": ("",),
    "unknown": ("",),
}


def parse_exposition(text):
    """Returns ({family: type} from the # TYPE lines, {series name: {label names}})."""
    families, series = {}, {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split(None, 3)
            families[name] = typ.strip()
        elif line and not line.startswith("#"):
            m = SAMPLE.match(line)
            assert m, f"unparsable sample line in /metrics: {line!r}"
            labels = {k for k, _ in LABEL_PAIR.findall(m.group(2) or "")}
            series.setdefault(m.group(1), set()).update(labels)
    return families, series


def exposed_names(families, series):
    names = set(series)
    for family, typ in families.items():
        if typ == "counter" and family.endswith("_total"):  # text format 0.0.4 style
            names.add(family)
            continue
        for suffix in TYPE_SUFFIXES.get(typ, ("",)):
            names.add(family + suffix)
    return names


def scrape(addr):
    with urllib.request.urlopen(f"http://{addr}/metrics", timeout=10) as r:
        assert r.status == 200
        return r.read().decode()


# --- PromQL -------------------------------------------------------------------------

STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
IDENT = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
NUMBER = re.compile(
    r"(?<![\w:.])(?:0[xX][0-9a-fA-F]+|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?)"
    r"(?![\w:])")
GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool",
            "offset", "and", "or", "unless", "inf", "nan", "start", "end", "atan2"}
TEMPLATE_VAR = re.compile(r"\$\{([a-zA-Z0-9_]+)(?::[^}]*)?\}|\$([a-zA-Z0-9_]+)|\[\[([a-zA-Z0-9_]+)\]\]")


def metric_names(expr):
    """Metric names a PromQL expression selects, from its text: every identifier that
    is not a function or aggregation (followed by '('), a keyword, a label name inside
    {...} or a grouping list, a duration, or a number."""
    names = set(re.findall(r'__name__\s*=\s*"([^"]+)"', expr))
    s = STRING.sub('""', expr)
    s = re.sub(r"#[^\n]*", " ", s)                 # comments
    s = re.sub(r"\{[^}]*\}", " ", s)               # label matchers
    s = GROUPING.sub(" ", s)                       # by (...), on (...), group_left (...)
    s = re.sub(r"\[[^\]]*\]", " ", s)              # [5m], subqueries [1h:1m]
    s = re.sub(r"\boffset\s+-?[0-9a-zA-Z_$]+", " ", s)
    s = re.sub(r"@\s*[0-9.]+", " ", s)
    s = TEMPLATE_VAR.sub(" ", s)
    s = NUMBER.sub(" ", s)
    for m in IDENT.finditer(s):
        word = m.group(0)
        if s[m.end():].lstrip().startswith("("):
            continue  # a function or an aggregation operator
        if word.lower() in KEYWORDS:
            continue
        names.add(word)
    return names


LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?:(.*),\s*)?([a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*$",
                          re.S)
QUERY_RESULT = re.compile(r"^\s*query_result\((.*)\)\s*$", re.S)


def variable_query(var):
    q = var.get("query")
    if isinstance(q, dict):
        q = q.get("query")
    return q or var.get("definition") or ""


def walk_panels(panels):
    for p in panels:
        yield p
        yield from walk_panels(p.get("panels") or [])


def load_dashboard():
    with open(DASHBOARD) as f:
        return json.load(f)


def load_alerts():
    with open(ALERTS) as f:
        return yaml.safe_load(f)


def dashboard_queries(dash):
    """[(where, expr, legendFormat or None, label the query must have or None)]:
    every target of every panel (rows and nested panels included) and every
    Prometheus query variable (label_values(selector, label) or query_result)."""
    out = []
    panels = list(dash.get("panels") or [])
    for r in dash.get("rows") or []:  # the pre-5.0 layout
        panels.extend(r.get("panels") or [])
    for p in walk_panels(panels):
        for t in p.get("targets") or []:
            if t.get("expr"):
                out.append((f"panel {p.get('id')} {p.get('title')!r} target {t.get('refId')}",
                            t["expr"], t.get("legendFormat"), None))
    for v in (dash.get("templating") or {}).get("list") or []:
        if v.get("type") != "query":
            continue
        q = variable_query(v)
        m = LABEL_VALUES.match(q)
        if m:
            if m.group(1):
                out.append((f"variable {v['name']}", m.group(1), None, m.group(2)))
            continue
        m = QUERY_RESULT.match(q)
        assert m, f"variable {v['name']}: unsupported query {q!r}"
        out.append((f"variable {v['name']}", m.group(1), None, None))
    return out


def alert_queries(alerts):
    out = []
    for g in alerts["groups"]:
        for r in g["rules"]:
            out.append((f"alert {r.get('alert') or r.get('record')}", r["expr"], None, None))
    return out


def all_queries():
    return dashboard_queries(load_dashboard()) + alert_queries(load_alerts())


# --- label checks over a parsed expression (promql_parser) ---------------------------

class LabelChecker:
    """Walks a promql_parser AST: checks matcher and grouping labels against the
    labels each metric's series carry and works out which labels the result keeps."""

    def __init__(self, series_labels):
        self.series_labels = series_labels
        self.problems = []

    def labels_of(self, name):
        if name in PROMETHEUS_OWN:
            return set(TARGET_LABELS)
        return set(self.series_labels.get(name, set())) | TARGET_LABELS

    def selectors(self, node):
        found = []

        def visit(n):
            if type(n).__name__ == "VectorSelector":
                found.append(n)

        promql_parser.walk(node, visit)
        return found

    def result_labels(self, node):
        """(labels of the result, is it a scalar)."""
        kind = type(node).__name__
        if kind == "VectorSelector":
            have = self.labels_of(node.name)
            for m in node.matchers.matchers:
                absent_ok = str(m.op) == "MatchOp.Equal" and m.value == ""  # label absent
                if m.name != "__name__" and m.name not in have and not absent_ok:
                    self.problems.append(
                        f"{node.name} has no label {m.name!r} (it has {sorted(have)})")
            return have, False
        if kind == "MatrixSelector":
            return self.result_labels(node.vector_selector)
        if kind in ("ParenExpr", "UnaryExpr", "SubqueryExpr"):
            return self.result_labels(node.expr)
        if kind in ("NumberLiteral", "StringLiteral"):
            return set(), True
        if kind == "AggregateExpr":
            inner, _ = self.result_labels(node.expr)
            mod = node.modifier
            if str(node.op) in ("topk", "bottomk", "limitk", "limit_ratio"):
                return inner, False  # they pick series and keep their labels
            if mod is None:
                return set(), False
            labels = set(mod.labels)
            if str(mod.type).endswith("Without"):
                return inner - labels, False
            for label in labels - inner:
                self.problems.append(
                    f"{node.op} by ({', '.join(mod.labels)}): no metric under it has "
                    f"label {label!r}")
            return labels, False
        if kind == "Call":
            name = node.func.name
            args = list(node.args)
            vectors = [self.result_labels(a) for a in args]
            if name == "histogram_quantile":
                return vectors[1][0] - {"le"}, False
            if name == "absent" or name == "absent_over_time":
                sel = self.selectors(args[0])
                return {m.name for s in sel for m in s.matchers.matchers
                        if str(m.op).endswith("Equal") and not str(m.op).endswith("NotEqual")}, False
            if name in ("scalar", "time", "pi"):
                return set(), True
            if name in ("vector",):
                return set(), False
            if name == "label_replace":
                return vectors[0][0] | {str(args[1].val).strip('"')}, False
            for labels, scalar in vectors:
                if not scalar:
                    return labels, False
            return set(), True
        if kind == "BinaryExpr":
            left, lscalar = self.result_labels(node.lhs)
            right, rscalar = self.result_labels(node.rhs)
            if lscalar:
                return right, rscalar
            if rscalar:
                return left, False
            op = str(node.op)
            if op == "or":
                return left | right, False
            if op in ("and", "unless"):
                return left, False
            mod = node.modifier
            card = str(mod.card) if mod is not None else ""
            if card.endswith("ManyToOne"):  # group_left: the many side plus the extras
                return left | set(mod.group_labels or ()), False
            if card.endswith("OneToMany"):
                return right | set(mod.group_labels or ()), False
            matching = mod.matching if mod is not None else None
            if matching is not None and matching.labels:
                labels = set(matching.labels)
                if str(matching.type).endswith("Include"):  # on (...)
                    return left & labels, False
                return left - labels, False  # ignoring (...)
            return left, False
        raise AssertionError(f"unexpected PromQL node {kind}")


def check_labels(where, expr, legend, want_label, series_labels):
    checker = LabelChecker(series_labels)
    try:
        ast = promql_parser.parse(expr)
    except Exception as e:  # noqa: BLE001 - test_promql_parses reports it too
        return [f"{where}: {e}: {expr}"]
    result, _ = checker.result_labels(ast)
    problems = [f"{where}: {p}" for p in checker.problems]
    for label in re.findall(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}", legend or ""):
        if label not in result:
            problems.append(f"{where}: legend names {{{{{label}}}}} but the result has "
                            f"only {sorted(result)}")
    if want_label and want_label not in result:
        problems.append(f"{where}: label_values of {want_label!r}, which {expr} lacks")
    return problems


def ast_metric_names(expr):
    names = set()

    def visit(n):
        if type(n).__name__ == "VectorSelector" and n.name:
            names.add(n.name)

    promql_parser.walk(promql_parser.parse(expr), visit)
    return names


# --- tests -------------------------------------------------------------------------

def test_metric_name_extraction():
    """The text-based extraction the live test relies on."""
    assert metric_names(
        'histogram_quantile(0.99, sum by (le, request) '
        '(rate(kafka_network_requestmetrics_totaltimems_bucket{instance=~"$instance"}[5m])))'
    ) == {"kafka_network_requestmetrics_totaltimems_bucket"}
    assert metric_names(
        "(max by (consumergroup, topic) (kafka_consumergroup_lag_sum) > 1e3)\nand on (topic) "
        "group_left (x) deriv(kafka_consumergroup_lag_sum[15m] offset 1h) > bool 0 "
        'or absent(up{job="strata"}) unless sum without (a) (foo:bar_total) / 2.5'
    ) == {"kafka_consumergroup_lag_sum", "up", "foo:bar_total"}
    assert metric_names('{__name__="x_total", topic="a"} - y[5m:1m]') == {"x_total", "y"}


def test_dashboard_is_importable():
    dash = load_dashboard()
    assert dash["title"] == "Strata"
    assert re.fullmatch(r"[a-zA-Z0-9_-]{1,40}", dash["uid"]), dash.get("uid")
    assert isinstance(dash["schemaVersion"], int) and dash["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    ds = variables.get("DS_PROMETHEUS")
    assert ds and ds["type"] == "datasource" and ds["query"] == "prometheus", ds
    for name in ("instance", "topic"):
        assert name in variables, f"no {name} variable"
        assert variable_query(variables[name]).startswith("label_values("), variables[name]

    panels = list(walk_panels(dash["panels"]))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), f"duplicate panel ids: {sorted(ids)}"
    assert any(p["type"] == "row" for p in panels)
    boxes = []
    for p in panels:
        where = f"panel {p['id']} {p.get('title')!r}"
        assert p.get("title"), where
        g = p["gridPos"]
        assert all(isinstance(g[k], int) for k in ("h", "w", "x", "y")), where
        assert g["w"] > 0 and g["h"] > 0 and 0 <= g["x"] and g["x"] + g["w"] <= 24, where
        for other, og in boxes:
            overlap = (g["x"] < og["x"] + og["w"] and og["x"] < g["x"] + g["w"]
                       and g["y"] < og["y"] + og["h"] and og["y"] < g["y"] + g["h"])
            assert not overlap, f"{where} overlaps {other}"
        boxes.append((where, g))
        if p["type"] == "row":
            continue
        assert p["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}, where
        targets = p.get("targets") or []
        assert targets, f"{where} has no targets"
        ref_ids = [t["refId"] for t in targets]
        assert len(ref_ids) == len(set(ref_ids)), f"{where}: duplicate refIds {ref_ids}"
        for t in targets:
            assert t.get("expr", "").strip(), f"{where} target {t.get('refId')}: no expr"
            assert "legendFormat" in t, f"{where} target {t['refId']}: no legendFormat"

    # Every variable an expression or a data source names is defined.
    text = json.dumps(dash["panels"])
    for v in variables.values():
        text += json.dumps(v.get("query")) + json.dumps(v.get("datasource"))
    for m in TEMPLATE_VAR.finditer(text):
        name = next(g for g in m.groups() if g)
        assert name in variables or name in GRAFANA_BUILTINS, f"undefined variable ${name}"

    used = set().union(*(metric_names(e) for _, e, _, _ in dashboard_queries(dash)))
    assert DASHBOARD_MUST_USE <= used, f"dashboard lacks {sorted(DASHBOARD_MUST_USE - used)}"
    quantile = ("histogram_quantile(0.99, sum by (le, request) "
                "(rate(kafka_network_requestmetrics_totaltimems_bucket")
    assert any(e.startswith(quantile) for _, e, _, _ in dashboard_queries(dash))


DURATION = re.compile(r"^(?:[0-9]+(?:ms|s|m|h|d|w|y))+$")


def test_alert_rules_structure():
    alerts = load_alerts()
    assert set(alerts) == {"groups"}, sorted(alerts)
    groups = alerts["groups"]
    assert groups and len({g["name"] for g in groups}) == len(groups)
    names = []
    for g in groups:
        assert g["rules"], f"group {g['name']} has no rules"
        for r in g["rules"]:
            where = f"group {g['name']} rule {r.get('alert')!r}"
            assert isinstance(r.get("alert"), str) and r["alert"], where
            assert isinstance(r.get("expr"), str) and r["expr"].strip(), where
            assert set(r) <= {"alert", "expr", "for", "keep_firing_for", "labels",
                              "annotations"}, f"{where}: unknown keys {sorted(r)}"
            if "for" in r:
                assert DURATION.match(str(r["for"])), f"{where}: for {r['for']!r}"
            assert r["labels"]["severity"] in ("critical", "warning", "info"), where
            assert r["annotations"]["summary"].strip(), where
            assert r["annotations"]["description"].strip(), where
            names.append(r["alert"])
    assert len(names) == len(set(names)), f"duplicate alert names: {sorted(names)}"
    used = set().union(*(metric_names(e) for _, e, _, _ in alert_queries(alerts)))
    assert ALERTS_MUST_USE <= used, f"alerts lack {sorted(ALERTS_MUST_USE - used)}"


def test_promql_parses():
    """Every query is valid PromQL, and the text-based name extraction finds the same
    names as a real parse."""
    pytest.importorskip("promql_parser")
    problems = []
    for where, expr, _, _ in all_queries():
        try:
            names = ast_metric_names(expr)
        except Exception as e:  # noqa: BLE001 - reported with the query
            problems.append(f"{where}: {e}: {expr}")
            continue
        if names != metric_names(expr):
            problems.append(f"{where}: parser finds {sorted(names)}, text scan finds "
                            f"{sorted(metric_names(expr))}")
    assert not problems, "\n".join(problems)


def promtool():
    path = os.environ.get("PROMTOOL") or shutil.which("promtool")
    if not path:
        pytest.skip("promtool not found (set PROMTOOL or put it on PATH)")
    return path


def test_promtool_check_and_unit_tests():
    tool = promtool()
    for args in (["check", "rules", str(ALERTS)], ["test", "rules", str(ALERT_TESTS)]):
        proc = subprocess.run([tool, *args], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, f"promtool {' '.join(args)}:\n{proc.stdout}{proc.stderr}"


def test_every_metric_used_is_served(broker_factory, clients):
    metrics_addr = f"127.0.0.1:{free_port()}"
    b = broker_factory(start=False)
    b.overrides.update({
        "metrics.listener": metrics_addr,
        # A SASL listener, so kafka_server_socket_server_metrics_failed_authentication
        # has its (per-listener) series.
        "listeners": f"PLAINTEXT://127.0.0.1:{b.port},SASL_PLAINTEXT://127.0.0.1:{free_port()}",
        "group.initial.rebalance.delay.ms": "0",
    })
    b.start()

    topic = unique_topic("dash")
    group = unique_topic("dash-group")
    # Tiered (to the default file:// store), so the per-topic remote series exist.
    create_topic(clients.admin(b), topic, partitions=2,
                 configs={"remote.storage.enable": "true"})
    producer = clients.producer(b)
    for i in range(10):
        producer.send(topic, f"v{i}".encode(), partition=i % 2)
    producer.flush(timeout=30)

    consumer = clients.add(KafkaConsumer(
        topic, bootstrap_servers=b.bootstrap, group_id=group, enable_auto_commit=False,
        auto_offset_reset="earliest", request_timeout_ms=15000))
    got = []

    def consumed_all():
        for records in consumer.poll(timeout_ms=200).values():
            got.extend(records)
        return len(got) >= 10

    wait_until(consumed_all, message="the group to consume the 10 records")
    consumer.commit()
    # More records after the commit: the group lags, so the lag series are non-zero.
    for i in range(5):
        producer.send(topic, f"late{i}".encode(), partition=i % 2)
    producer.flush(timeout=30)

    queries = all_queries()
    used = {}
    for where, expr, _, _ in queries:
        for name in metric_names(expr):
            used.setdefault(name, []).append(where)
    to_check = sorted(n for n in used if n not in PROMETHEUS_OWN)

    # The families are there from the start; labelled series appear once they have a
    # value, so poll until every name the queries use has at least one series.
    deadline = time.monotonic() + POLL_TIMEOUT_S
    while True:
        families, series = parse_exposition(scrape(metrics_addr))
        exposed = exposed_names(families, series)
        missing = [n for n in to_check if n not in exposed]
        no_series = [n for n in to_check if n in exposed and n not in series]
        lagging = not any(k == "consumergroup" for k in series.get(
            "kafka_consumergroup_max_time_lag_seconds", ()))
        if missing or (not no_series and not lagging) or time.monotonic() >= deadline:
            break
        time.sleep(0.2)

    assert not missing, "metrics used but not served by the broker:\n" + "\n".join(
        f"  {n} (in {', '.join(used[n])})" for n in missing)
    assert not no_series, f"no series after {POLL_TIMEOUT_S}s for {no_series}"
    assert series["kafka_consumergroup_lag_sum"] >= {"consumergroup", "topic"}

    if promql_parser is not None:
        problems = []
        for where, expr, legend, label in queries:
            problems += check_labels(where, expr, legend, label, series)
        for g in load_alerts()["groups"]:
            for r in g["rules"]:
                result, _ = LabelChecker(series).result_labels(promql_parser.parse(r["expr"]))
                for text in r["annotations"].values():
                    for label in re.findall(r"\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)", text):
                        if label not in result:
                            problems.append(f"alert {r['alert']}: annotation uses "
                                            f"$labels.{label}, result has {sorted(result)}")
        assert not problems, "\n".join(problems)
