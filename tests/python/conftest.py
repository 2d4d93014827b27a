"""Shared fixtures and helpers for the Python client suite.

Every test gets its own `strata` process (start-up takes a few milliseconds) on a
free 127.0.0.1 port with its data under the test's tmp_path. Processes and client
objects are cleaned up in fixture teardown, also when the test fails; on failure the
tail of the broker's stderr log is printed so that the report shows what the broker
said.

The broker binary comes from $STRATA_TEST_BINARY (set by test.sh), else
target/debug/strata under the repository root.
"""

import collections
import os
import re
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
KCAT = os.environ.get("KCAT", "kcat")

START_TIMEOUT_S = 30
STOP_TIMEOUT_S = 20
# A deadline for polling loops: generous for a loaded 2-core machine, but every
# loop ends early as soon as its condition holds.
POLL_TIMEOUT_S = 30
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def strata_binary():
    path = os.environ.get("STRATA_TEST_BINARY")
    p = Path(path) if path else REPO_ROOT / "target" / "debug" / "strata"
    if not p.is_absolute():
        p = (REPO_ROOT / p) if not p.exists() else p.resolve()
    return p


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unique_topic(prefix="t"):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def wait_until(predicate, timeout=POLL_TIMEOUT_S, interval=0.05, message="condition"):
    """Polls `predicate` until it returns a truthy value, which is returned."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as e:  # noqa: BLE001 - remembered for the failure message
            last_exc = e
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {message}"
                + (f" (last error: {last_exc!r})" if last_exc else "")
            )
        time.sleep(interval)


class Broker:
    """One `strata` process. `start()` may be called again after `stop()`/`kill()`
    to restart on the same data directory and port."""

    def __init__(self, data_dir, log_dir, port=None, overrides=None):
        self.binary = strata_binary()
        self.data_dir = Path(data_dir)
        self.log_dir = Path(log_dir)
        self.port = port or free_port()
        self.overrides = dict(overrides or {})
        self.proc = None
        self.stopped_on_purpose = False  # set by stop()/kill(): exits are expected
        self.starts = 0
        self.log_paths = []

    @property
    def bootstrap(self):
        return f"127.0.0.1:{self.port}"

    def _env(self):
        # The test's own settings come from --override only: an unrelated STRATA_*
        # variable would merely be warned about, but a key from the caller's
        # environment must not change what a test runs against.
        env = {k: v for k, v in os.environ.items() if not k.startswith("STRATA_")}
        env.setdefault("RUST_LOG", "info")
        return env

    def start(self):
        assert self.proc is None or self.proc.poll() is not None, "broker already running"
        assert self.binary.exists(), (
            f"strata binary not found at {self.binary}; run `cargo build --bin strata` "
            "or set STRATA_TEST_BINARY"
        )
        self.starts += 1
        self.stopped_on_purpose = False
        log_path = self.log_dir / f"strata-{self.port}-{self.starts}.log"
        self.log_paths.append(log_path)
        args = [
            str(self.binary),
            "--override", f"listeners=PLAINTEXT://127.0.0.1:{self.port}",
            "--override", f"log.dirs={self.data_dir}",
        ]
        for k, v in self.overrides.items():
            args += ["--override", f"{k}={v}"]
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                env=self._env(),
                cwd=str(self.log_dir),
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            code = self.proc.poll()
            if code is not None:
                raise AssertionError(
                    f"strata exited with {code} during start-up:\n{self.log_tail()}"
                )
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                break
            except OSError:
                pass
            if time.monotonic() >= deadline:
                self.kill()
                raise AssertionError(
                    f"strata did not listen on {self.port} within {START_TIMEOUT_S}s:\n"
                    f"{self.log_tail()}"
                )
            time.sleep(0.02)
        return self

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=STOP_TIMEOUT_S):
        """SIGTERM and wait; returns the exit code. Fails if it does not stop."""
        if self.proc is None:
            return None
        self.stopped_on_purpose = True
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(
                    f"strata did not stop within {timeout}s of SIGTERM:\n{self.log_tail()}"
                )
        return self.proc.returncode

    def kill(self):
        """SIGKILL and wait."""
        self.stopped_on_purpose = True
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def log_tail(self, lines=25):
        out = []
        for p in self.log_paths[-2:]:
            try:
                text = ANSI.sub("", p.read_text(errors="replace")).splitlines()
            except OSError:
                continue
            out.append(f"--- {p.name} (last {lines} lines) ---")
            out.extend(text[-lines:])
        return "\n".join(out)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def _failed(request):
    rep = getattr(request.node, "rep_call", None)
    return rep is not None and rep.failed


@pytest.fixture
def broker_factory(tmp_path, request):
    """Makes brokers with extra `--override`s; all are stopped at teardown."""
    brokers = []

    def make(overrides=None, start=True):
        n = len(brokers)
        data = tmp_path / f"data{n}"
        data.mkdir()
        b = Broker(data, tmp_path, overrides=overrides)
        brokers.append(b)
        if start:
            b.start()
        return b

    yield make
    # Stop every broker; a broker that died by itself during the test, or that does
    # not exit 0 on SIGTERM, fails the test here (with its log) even if the test's
    # own assertions passed.
    problems = []
    for b in brokers:
        try:
            if b.proc is None:
                continue
            code = b.proc.poll()
            if code is not None and not b.stopped_on_purpose:
                problems.append(f"strata on port {b.port} exited by itself with {code}")
            elif code is None:
                code = b.stop()
                if code != 0:
                    problems.append(f"strata on port {b.port} exited {code} on SIGTERM")
        except AssertionError as e:
            problems.append(str(e))
        finally:
            b.kill()
    if _failed(request) or problems:
        for b in brokers:
            print(b.log_tail())
    assert not problems, "; ".join(problems) + "\n" + "\n".join(b.log_tail() for b in brokers)


@pytest.fixture
def broker(broker_factory):
    return broker_factory()


@pytest.fixture
def clients():
    """Collects kafka-python clients and closes them at teardown (bounded)."""
    made = []

    class Clients:
        def add(self, c):
            made.append(c)
            return c

        def admin(self, broker, **kw):
            from kafka.admin import KafkaAdminClient

            kw.setdefault("request_timeout_ms", 15000)
            return self.add(KafkaAdminClient(bootstrap_servers=broker.bootstrap, **kw))

        def producer(self, broker, **kw):
            from kafka import KafkaProducer

            kw.setdefault("request_timeout_ms", 15000)
            kw.setdefault("max_block_ms", 15000)
            kw.setdefault("delivery_timeout_ms", 30000)
            return self.add(KafkaProducer(bootstrap_servers=broker.bootstrap, **kw))

        def consumer(self, broker, **kw):
            from kafka import KafkaConsumer

            kw.setdefault("group_id", None)
            kw.setdefault("enable_auto_commit", False)
            kw.setdefault("auto_offset_reset", "earliest")
            kw.setdefault("request_timeout_ms", 15000)
            kw.setdefault("consumer_timeout_ms", 1000)
            return self.add(KafkaConsumer(bootstrap_servers=broker.bootstrap, **kw))

    yield Clients()
    for c in reversed(made):
        try:
            try:
                c.close(timeout=5)
            except TypeError:
                c.close()
        except Exception:  # noqa: BLE001 - teardown must go on
            pass


def create_topic(admin, topic, partitions=1, configs=None):
    admin.create_topics(
        {topic: {"num_partitions": partitions, "replication_factor": 1,
                 "configs": dict(configs or {})}},
        wait_for_metadata=True,
    )


def consume_all(consumer, partitions, timeout=POLL_TIMEOUT_S):
    """Assigns `partitions` (TopicPartitions) from the beginning and reads until
    every partition's position reaches its end offset, taken once up front.
    Returns {TopicPartition: [ConsumerRecord, ...]} in offset order."""
    partitions = list(partitions)
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    ends = consumer.end_offsets(partitions)
    out = {tp: [] for tp in partitions}
    deadline = time.monotonic() + timeout

    def done():
        return all(consumer.position(tp) >= ends[tp] for tp in partitions)

    while not done():
        assert time.monotonic() < deadline, (
            f"timed out reading to end offsets {ends}; positions "
            f"{ {tp: consumer.position(tp) for tp in partitions} }"
        )
        for tp, records in consumer.poll(timeout_ms=200).items():
            out[tp].extend(records)
    return out


def consume_n(consumer, partitions, n, timeout=POLL_TIMEOUT_S):
    """Assigns `partitions` from the beginning and polls until `n` records arrived."""
    partitions = list(partitions)
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < n:
        assert time.monotonic() < deadline, f"only {len(got)} of {n} records arrived"
        for records in consumer.poll(timeout_ms=200).values():
            got.extend(records)
    return got


def run_kcat(args, input=None, timeout=60, check=True):
    """Runs kcat with `args` (bytes in, CompletedProcess out)."""
    try:
        proc = subprocess.run(
            [KCAT, *args],
            input=input,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as e:  # run() has killed kcat already
        raise AssertionError(
            f"kcat {' '.join(args)} did not finish within {timeout}s\n"
            f"stderr: {(e.stderr or b'').decode(errors='replace')[-3000:]}"
        ) from None
    if check:
        assert proc.returncode == 0, (
            f"kcat {' '.join(args)} exited {proc.returncode}\n"
            f"stderr: {proc.stderr.decode(errors='replace')[-3000:]}"
        )
    return proc


def raw_fetch_batches(admin, topic, partition, offset=0, max_bytes=50_000_000):
    """Fetches `topic`/`partition` from `offset` with a plain FetchRequest (v12, by
    name) sent through a KafkaAdminClient's connection and returns the decoded
    record batches as dicts, so tests can look at batch-level fields (compression
    codec, producer id, sequence) that the consumer API hides."""
    from kafka.protocol.consumer import FetchRequest
    from kafka.record import MemoryRecords

    T = FetchRequest.FetchTopic
    P = T.FetchPartition
    request = FetchRequest(
        replica_id=-1, max_wait_ms=100, min_bytes=1, max_bytes=max_bytes,
        isolation_level=0, session_id=0, session_epoch=-1,
        topics=[T(topic=topic, partitions=[P(
            partition=partition, current_leader_epoch=-1, fetch_offset=offset,
            last_fetched_epoch=-1, log_start_offset=-1, partition_max_bytes=max_bytes)])],
        forgotten_topics_data=[], rack_id="", max_version=12,
    )
    response = admin._manager.run(admin._manager.send, request, 1)
    (t,) = response.responses
    (p,) = t.partitions
    assert p.error_code == 0, f"fetch {topic}/{partition}@{offset}: error {p.error_code}"
    records = MemoryRecords(p.records or b"")
    batches = []
    while True:
        b = records.next_batch()
        if b is None:
            return batches
        batches.append({
            "base_offset": b.base_offset,
            "compression": b.compression_type,  # 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd
            "producer_id": b.producer_id,
            "producer_epoch": b.producer_epoch,
            "base_sequence": b.base_sequence,
            "records": [(r.offset, r.key, r.value) for r in b],
        })


# Every kcat call gets a bounded request timeout so that a request the broker never
# answers fails the test in seconds, not after librdkafka's 60 s default.
KCAT_COMMON = ["-X", "socket.timeout.ms=10000", "-m", "10"]
# Length-prefixed output: partition, offset, key length, value length, timestamp,
# then the raw key and value bytes. -1 lengths mean NULL. Byte-exact to parse.
KCAT_RAW_FORMAT = "%p:%o:%K:%S:%T:%k%s\\n"

KcatRecord = collections.namedtuple(
    "KcatRecord", ["partition", "offset", "key", "value", "timestamp"])


def parse_kcat_raw(out):
    records = []
    i = 0
    while i < len(out):
        fields = []
        for _ in range(5):
            j = out.index(b":", i)
            fields.append(int(out[i:j]))
            i = j + 1
        p, o, klen, vlen, ts = fields
        key = None if klen < 0 else out[i:i + klen]
        i += max(klen, 0)
        value = None if vlen < 0 else out[i:i + vlen]
        i += max(vlen, 0)
        assert out[i:i + 1] == b"\n", f"kcat output misparsed at byte {i}"
        i += 1
        records.append(KcatRecord(p, o, key, value, ts))
    return records


def kcat_consume(broker, topic, offset="0", partition=None, extra=(), timeout=60):
    """Consumes `topic` to its end with kcat (no group) and returns KcatRecords
    sorted by (partition, offset). offset="0" starts at the absolute offset 0;
    "beginning" makes librdkafka ask for it with ListOffsets first."""
    args = ["-C", "-b", broker.bootstrap, "-t", topic, "-o", str(offset), "-e",
            "-f", KCAT_RAW_FORMAT, *KCAT_COMMON]
    if partition is not None:
        args += ["-p", str(partition)]
    proc = run_kcat([*args, *extra], timeout=timeout)
    return sorted(parse_kcat_raw(proc.stdout), key=lambda r: (r.partition, r.offset))


def kcat_produce(broker, topic, data, extra=(), timeout=60, check=True):
    """Produces stdin `data` with kcat -P (librdkafka default acks=all)."""
    args = ["-P", "-b", broker.bootstrap, "-t", topic, *KCAT_COMMON, *extra]
    return run_kcat(args, input=data, timeout=timeout, check=check)
