"""Classic consumer groups (JoinGroup/SyncGroup/Heartbeat/LeaveGroup, offsets in
__consumer_offsets) against a strata process, driven by kafka-python's KafkaConsumer /
KafkaAdminClient and by kcat's balanced consumer (-G).

Brokers run with group.initial.rebalance.delay.ms=0 and group.min.session.timeout.ms=500
so that joins and session expiry are quick; one test runs on the defaults to check
that the initial rebalance delay still lets a lone consumer in.

kafka-python 3.0.12 notes (from its source):
- the admin calls are list_groups, describe_groups, list_group_offsets and
  delete_groups (there are no *_consumer_group* names); describe_groups decodes
  member metadata and assignment (ConsumerProtocolSubscription/Assignment) and hands
  them back as dicts;
- a consumer with group_instance_id never sends LeaveGroup (maybe_leave_group_async
  only leaves for dynamic members), so a plain close() is a static member's restart
  without leaving; its JoinGroup is capped at v7 (no KIP-814 skip_assignment);
- commit() of {TopicPartition: OffsetAndMetadata(offset, metadata, leader_epoch)}.
"""

import json
import signal
import subprocess
import sys
import threading
import time

import kafka.errors as Errors
import pytest
from kafka import TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.protocol.consumer import HeartbeatRequest, JoinGroupRequest, OffsetCommitRequest
from kafka.structs import MemberState, OffsetAndMetadata

from conftest import (KCAT_COMMON, KCAT_RAW_FORMAT, POLL_TIMEOUT_S, create_topic,
                      kcat_produce, parse_kcat_raw, run_kcat, unique_topic, wait_until)

FAST_GROUPS = {
    "group.initial.rebalance.delay.ms": "0",
    "group.min.session.timeout.ms": "500",
}

# Kafka error codes checked on raw responses.
NONE = 0
OFFSET_METADATA_TOO_LARGE = 12
ILLEGAL_GENERATION = 22
UNKNOWN_MEMBER_ID = 25
MEMBER_ID_REQUIRED = 79
FENCED_INSTANCE_ID = 82


@pytest.fixture
def gbroker(broker_factory):
    return broker_factory(FAST_GROUPS)


def tps(topic, n):
    return [TopicPartition(topic, p) for p in range(n)]


def group_consumer(clients, broker, group, topic=None, listener=None, **kw):
    """A KafkaConsumer in `group` (manual commits, earliest reset, quick heartbeats);
    subscribed to `topic` if given."""
    kw.setdefault("session_timeout_ms", 6000)
    kw.setdefault("heartbeat_interval_ms", 200)
    kw.setdefault("max_poll_interval_ms", 60000)
    c = clients.consumer(broker, group_id=group, **kw)
    if topic is not None:
        c.subscribe([topic], listener=listener)
        # kafka-python 3.0.12 client race: a leader that joins before it has the
        # topic's metadata assigns nothing, then rejoins when the metadata arrives;
        # if that JoinGroup/SyncGroup completes just after a poll() timed out, the
        # result is dropped (need_rejoin() is already False) and the consumer stays
        # REBALANCING with heartbeats off until its session expires. Fetching the
        # metadata up front (topics() always asks the broker) avoids that rejoin.
        c.topics()
    return c


def produce_per_partition(clients, broker, topic, partitions, per_partition, tag):
    """Sends `per_partition` records to each partition; values are unique
    b"<tag>-p<partition>-<i>". Returns {partition: [value, ...]} in offset order."""
    producer = clients.producer(broker, acks="all", linger_ms=5)
    sent = {p: [] for p in range(partitions)}
    futures = []
    for i in range(per_partition):
        for p in range(partitions):
            v = b"%s-p%d-%d" % (tag.encode(), p, i)
            sent[p].append(v)
            futures.append(producer.send(topic, value=v, partition=p))
    producer.flush(timeout=30)
    for f in futures:
        f.get(timeout=30)
    return sent


class Member:
    """A subscribed consumer polled by its own thread, the way an application runs
    it: poll (300 ms), keep the records, commit them synchronously, poll again.

    One thread per consumer keeps every member inside poll() nearly all the time.
    kafka-python 3.0.12 drops a JoinGroup/SyncGroup result that arrives while no
    poll() is running and sends a new JoinGroup instead; for the group leader that
    starts yet another rebalance (as in Kafka, a leader's JoinGroup in Stable does),
    and two consumers polled in turn from one thread can rebalance for many seconds.
    The main thread only reads state (assignment, group metadata) and uses the
    consumer itself while the poller is stopped."""

    POLL_MS = 300

    def __init__(self, consumer, name):
        self.c = consumer
        self.name = name
        self.records = []
        self.polls = 0
        self.error = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None
        self.start()

    def start(self):
        assert self._thread is None, f"{self.name} is already polling"
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"poller-{self.name}",
                                        daemon=True)
        self._thread.start()
        return self

    def _run(self):
        try:
            while not self._stop.is_set():
                batch = self.c.poll(timeout_ms=self.POLL_MS)
                got = [r for rs in batch.values() for r in rs]
                if got:
                    with self._lock:
                        self.records.extend(got)
                    self.c.commit()
                self.polls += 1
        except Exception as e:  # noqa: BLE001 - reported by check()
            self.error = e

    def check(self):
        if self.error is not None:
            raise AssertionError(f"member {self.name}'s poll loop failed: {self.error!r}") \
                from self.error

    def stop(self):
        """Stops polling (the consumer stays in the group, heartbeating)."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=30)
            assert not self._thread.is_alive(), f"member {self.name}'s poller did not stop"
            self._thread = None
        self.check()

    def close(self):
        self.stop()
        self.c.close()

    def got(self):
        with self._lock:
            return list(self.records)

    def assigned(self):
        return set(self.c.assignment())

    def meta(self):
        return self.c.group_metadata()

    def stable(self):
        return self.meta().state == MemberState.STABLE

    def values(self):
        return [r.value for r in self.got()]


@pytest.fixture
def members(clients):
    """Makes Members; their pollers are stopped before `clients` closes consumers."""
    made = []

    def make(consumer, name):
        m = Member(consumer, name)
        made.append(m)
        return m

    yield make
    for m in made:
        m._stop.set()
    for m in made:
        if m._thread is not None:
            m._thread.join(timeout=30)


def wait_members(ms, until, timeout=POLL_TIMEOUT_S, message="condition"):
    """Waits until `until()` holds while the members poll; fails at once if a poll
    loop died, and with every member's state on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        for m in ms:
            m.check()
        if until():
            return
        if time.monotonic() >= deadline:
            state = {m.name: (sorted(p.partition for p in m.assigned()), m.meta(),
                              len(m.got())) for m in ms}
            raise AssertionError(f"timed out after {timeout}s waiting for {message}; "
                                 f"(assignment, group metadata, records) per member: {state}")
        time.sleep(0.02)


def quiesce(ms, polls=2):
    """Waits until every member completed `polls` more poll() calls (so anything
    still on its way would have arrived)."""
    marks = {m.name: m.polls for m in ms}
    wait_members(ms, lambda: all(m.polls >= marks[m.name] + polls for m in ms),
                 message=f"{polls} more polls")


def split_evenly(members, topic, partitions):
    """True when all members are STABLE in one generation and their assignments are
    non-empty, pairwise disjoint, balanced and cover every partition."""
    metas = [m.meta() for m in members]
    if not all(md.state == MemberState.STABLE for md in metas):
        return False
    if len({md.generation_id for md in metas}) != 1:
        return False
    sets = [m.assigned() for m in members]
    if any(not s for s in sets) or sum(len(s) for s in sets) != partitions:
        return False
    if set().union(*sets) != set(tps(topic, partitions)):
        return False
    return max(len(s) for s in sets) - min(len(s) for s in sets) <= 1


def described_assignment(member):
    """A describe_groups() member's decoded assignment as a set of TopicPartitions."""
    return {TopicPartition(t["topic"], p)
            for t in member["member_assignment"]["assigned_partitions"]
            for p in t["partitions"]}


def describe(admin, group):
    return admin.describe_groups([group])[group]


def committed_offsets(admin, group):
    """{TopicPartition: offset} committed for `group` (OffsetFetch via the admin)."""
    return {tp: o.offset for tp, o in admin.list_group_offsets(group).get(group, {}).items()}


def raw(admin, request, node_id=1):
    """Sends a protocol request on a KafkaAdminClient's connection to node 1 (the
    only broker, hence every group's coordinator) and returns the response."""
    return admin._manager.run(admin._manager.send, request, node_id)


def raw_commit(admin, group, generation, member_id, offsets, instance_id=None):
    """OffsetCommit v8 of {TopicPartition: (offset, metadata)}; returns
    {TopicPartition: error_code}."""
    T = OffsetCommitRequest.OffsetCommitRequestTopic
    P = T.OffsetCommitRequestPartition
    by_topic = {}
    for tp, (offset, metadata) in offsets.items():
        by_topic.setdefault(tp.topic, []).append(P(
            partition_index=tp.partition, committed_offset=offset,
            committed_leader_epoch=-1, committed_metadata=metadata))
    response = raw(admin, OffsetCommitRequest(
        group_id=group, generation_id_or_member_epoch=generation, member_id=member_id,
        group_instance_id=instance_id,
        topics=[T(name=t, partitions=ps) for t, ps in by_topic.items()],
        min_version=8, max_version=8))
    return {TopicPartition(t.name, p.partition_index): p.error_code
            for t in response.topics for p in t.partitions}


class RecordingListener(ConsumerRebalanceListener):
    def __init__(self):
        self.events = []

    def on_partitions_revoked(self, revoked):
        self.events.append(("revoked", sorted(tp.partition for tp in revoked)))

    def on_partitions_assigned(self, assigned):
        self.events.append(("assigned", sorted(tp.partition for tp in assigned)))


# --------------------------------------------------------------------------------------
# 1. Two consumers split a topic; one leaves; the other takes over from the commits.
# --------------------------------------------------------------------------------------

def test_two_consumers_split_then_survivor_takes_over_after_leave(gbroker, clients, members):
    broker = gbroker
    admin = clients.admin(broker)
    topic, group = unique_topic("split"), unique_topic("g")
    create_topic(admin, topic, 6)

    a = members(group_consumer(clients, broker, group, topic, client_id="member-a"), "a")
    b = members(group_consumer(clients, broker, group, topic, client_id="member-b"), "b")
    wait_members([a, b], lambda: split_evenly([a, b], topic, 6),
                 message="two members to split 6 partitions 3/3")
    a_parts, b_parts = a.assigned(), b.assigned()
    assert not a_parts & b_parts and len(a_parts) == len(b_parts) == 3, (a_parts, b_parts)

    # The broker's view agrees: two members, Stable, with exactly these assignments.
    desc = describe(admin, group)
    assert desc["group_state"] == "Stable", desc
    assert {m["client_id"]: described_assignment(m) for m in desc["members"]} == {
        "member-a": a_parts, "member-b": b_parts}, desc

    phase1 = produce_per_partition(clients, broker, topic, 6, 40, "one")
    wait_members([a, b], lambda: len(a.got()) + len(b.got()) >= 240,
                 message="240 phase-1 records")
    quiesce([a, b])
    assert split_evenly([a, b], topic, 6) and a.assigned() == a_parts, "a rebalance happened"
    # Each member read only its own partitions, every record once, in offset order.
    for m, parts in ((a, a_parts), (b, b_parts)):
        assert {TopicPartition(r.topic, r.partition) for r in m.got()} == parts, m.name
        for tp in parts:
            got = [(r.offset, r.value) for r in m.got() if r.partition == tp.partition]
            assert got == list(enumerate(phase1[tp.partition])), f"{m.name} read {tp} wrong"
    assert len(a.got()) + len(b.got()) == 240
    # Synchronous commits after each batch: every partition is committed at its end.
    assert committed_offsets(admin, group) == {tp: 40 for tp in tps(topic, 6)}

    # `a` stops polling, phase 2 is produced, then `a` closes (LeaveGroup): its
    # partitions' phase-2 records are left for `b`.
    a.stop()
    phase2 = produce_per_partition(clients, broker, topic, 6, 25, "two")
    a.close()
    left_at = time.monotonic()
    wait_members([b], lambda: b.assigned() == set(tps(topic, 6)) and b.stable(), timeout=15,
                 message="b to own all 6 partitions after a's LeaveGroup")
    took = time.monotonic() - left_at
    # A LeaveGroup rebalances at once; b's session timeout (6 s) is not waited out.
    assert took < 4, f"b got a's partitions {took:.1f}s after a's LeaveGroup"
    wait_members([b], lambda: len(a.got()) + len(b.got()) >= 240 + 150,
                 message="the 150 phase-2 records")
    quiesce([b])

    every = a.values() + b.values()
    dups = sorted({v for v in every if every.count(v) > 1})
    assert not dups, f"records read twice (takeover did not start at the commits): {dups[:10]}"
    expected = [v for vs in list(phase1.values()) + list(phase2.values()) for v in vs]
    assert sorted(every) == sorted(expected)
    # On a's old partitions b started exactly at a's committed offset 40.
    for tp in a_parts:
        first = min(r.offset for r in b.got() if r.partition == tp.partition)
        assert first == 40, f"b started {tp} at offset {first}; a had committed 40"
    assert committed_offsets(admin, group) == {tp: 65 for tp in tps(topic, 6)}
    desc = describe(admin, group)
    assert [m["client_id"] for m in desc["members"]] == ["member-b"], desc
    assert described_assignment(desc["members"][0]) == set(tps(topic, 6)), desc


# --------------------------------------------------------------------------------------
# 2. A member killed without leaving is expired after its session timeout.
# --------------------------------------------------------------------------------------

CHILD_CONSUMER = r'''
import json, os, sys
from kafka import KafkaConsumer

bootstrap, group, topic, state_path, session_ms, heartbeat_ms = sys.argv[1:7]
c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, client_id="doomed",
                  enable_auto_commit=False, auto_offset_reset="earliest",
                  session_timeout_ms=int(session_ms), heartbeat_interval_ms=int(heartbeat_ms),
                  max_poll_interval_ms=60000, request_timeout_ms=15000)
c.subscribe([topic])
c.topics()  # see group_consumer() in test_groups.py
consumed = {}
while True:  # consume, commit, and report; then just keep the membership alive
    batch = c.poll(timeout_ms=100)
    for tp, records in batch.items():
        consumed.setdefault(str(tp.partition), []).extend(r.offset for r in records)
    if batch:
        c.commit()
    md = c.group_metadata()
    state = {"assignment": sorted(tp.partition for tp in c.assignment()),
             "generation": md.generation_id, "member_id": md.member_id,
             "stable": md.state == "<stable>", "consumed": consumed}
    with open(state_path + ".tmp", "w") as f:
        json.dump(state, f)
    os.replace(state_path + ".tmp", state_path)
'''


def test_killed_member_expires_after_session_timeout(gbroker, clients, members, tmp_path):
    broker = gbroker
    admin = clients.admin(broker)
    topic, group = unique_topic("expire"), unique_topic("g")
    create_topic(admin, topic, 6)
    produce_per_partition(clients, broker, topic, 6, 20, "one")

    session_ms, heartbeat_ms = 1500, 250
    script = tmp_path / "child_consumer.py"
    script.write_text(CHILD_CONSUMER)
    state_path = tmp_path / "child_state.json"
    child_log = open(tmp_path / "child_consumer.log", "wb")
    child = subprocess.Popen(
        [sys.executable, str(script), broker.bootstrap, group, topic, str(state_path),
         str(session_ms), str(heartbeat_ms)],
        stdin=subprocess.DEVNULL, stdout=child_log, stderr=subprocess.STDOUT)
    try:
        def child_state():
            assert child.poll() is None, (
                f"child consumer exited {child.returncode}:\n"
                + (tmp_path / "child_consumer.log").read_text(errors="replace")[-3000:])
            try:
                return json.loads(state_path.read_text())
            except (OSError, ValueError):
                return None

        def child_owns_and_read_everything():
            st = child_state()
            return (st and st["stable"] and st["assignment"] == list(range(6))
                    and all(st["consumed"].get(str(p)) == list(range(20)) for p in range(6)))

        # The child joins alone, takes all six partitions, reads and commits everything.
        wait_until(child_owns_and_read_everything,
                   message="the child consumer to read and commit all 120 records")

        survivor = members(group_consumer(clients, broker, group, topic,
                                          client_id="survivor"), "survivor")

        def settled():
            st = child_state()
            if not st or not st["stable"] or not survivor.stable():
                return False
            mine = {tp.partition for tp in survivor.assigned()}
            theirs = set(st["assignment"])
            return (st["generation"] == survivor.meta().generation_id and mine and theirs
                    and not mine & theirs and mine | theirs == set(range(6)))

        wait_members([survivor], settled, message="child and survivor to split the partitions")
        st = child_state()
        child_parts = set(st["assignment"])
        assert len(child_parts) == 3, st
        # The survivor started at the child's commits: it read nothing.
        quiesce([survivor])
        assert survivor.got() == [], (
            f"the survivor re-read committed records: {survivor.values()[:10]}")
        assert all(st["consumed"][str(p)] == list(range(20)) for p in range(6)), st
        assert len(describe(admin, group)["members"]) == 2

        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        killed_at = time.monotonic()
        wait_members([survivor],
                     lambda: survivor.assigned() == set(tps(topic, 6)) and survivor.stable(),
                     timeout=session_ms / 1000 + 15,
                     message="survivor to get every partition after the child was SIGKILLed")
        took = time.monotonic() - killed_at
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child_log.close()

    limit = session_ms / 1000 + 6
    assert took < limit, (
        f"the killed member's partitions moved {took:.1f}s after SIGKILL; its session "
        f"timeout is {session_ms} ms (allowed up to {limit:.1f}s)")
    # Its last heartbeat was at most heartbeat_ms before the kill: the broker must
    # have waited for the session timeout, not dropped the member on disconnect.
    floor = (session_ms - heartbeat_ms) / 1000 - 0.25
    assert took >= floor, (
        f"the killed member was dropped {took:.2f}s after SIGKILL, before its "
        f"{session_ms} ms session timeout could have run out (>= {floor:.2f}s expected)")
    desc = describe(admin, group)
    assert [m["client_id"] for m in desc["members"]] == ["survivor"], desc
    assert desc["group_state"] == "Stable", desc

    # The survivor carries on from the dead member's commits: nothing old is re-read.
    before = len(survivor.got())
    phase2 = produce_per_partition(clients, broker, topic, 6, 10, "two")
    wait_members([survivor], lambda: len(survivor.got()) - before >= 60,
                 message="60 phase-2 records")
    quiesce([survivor])
    new = survivor.got()[before:]
    assert sorted(r.value for r in new) == sorted(v for vs in phase2.values() for v in vs), (
        "after the takeover the survivor must read exactly the new records; re-read: "
        f"{sorted({r.value for r in new} - {v for vs in phase2.values() for v in vs})[:10]}")
    for p in child_parts:
        assert min(r.offset for r in new if r.partition == p) == 20, p


# --------------------------------------------------------------------------------------
# 3. Static membership: a restarted static member gets its partitions back without a
#    rebalance of the other member.
# --------------------------------------------------------------------------------------

def test_static_member_restart_keeps_assignment_without_rebalance(gbroker, clients, members):
    broker = gbroker
    admin = clients.admin(broker)
    topic, group = unique_topic("static"), unique_topic("g")
    create_topic(admin, topic, 4)

    listeners = {"a": RecordingListener(), "b": RecordingListener()}

    def start(name, incarnation):
        return members(group_consumer(
            clients, broker, group, topic, listener=listeners[name],
            client_id=f"static-{name}-{incarnation}", group_instance_id=f"instance-{name}",
            session_timeout_ms=20000), name)

    group_members = {"a": start("a", 1), "b": start("b", 1)}
    both = lambda: list(group_members.values())  # noqa: E731
    wait_members(both(), lambda: split_evenly(both(), topic, 4),
                 message="two static members to split 4 partitions")
    generation = group_members["a"].meta().generation_id
    parts = {n: m.assigned() for n, m in group_members.items()}
    fenced = {}

    # Restart each member in turn (so that both the group leader and a follower are
    # restarted); the other one must not notice.
    for incarnation, (name, other) in enumerate((("a", "b"), ("b", "a")), start=2):
        old = group_members[name]
        old_member_id = old.meta().member_id
        other_events = list(listeners[other].events)

        old.close()  # static member: no LeaveGroup
        desc = describe(admin, group)
        assert desc["group_state"] == "Stable", desc
        assert {m["member_id"] for m in desc["members"]} == {
            old_member_id, group_members[other].meta().member_id}, (
            f"closing static member {name} must not remove it from the group: {desc}")

        new = group_members[name] = start(name, incarnation)
        wait_members(both(), lambda: new.stable() and new.assigned(), timeout=15,
                     message=f"restarted static member {name} to be assigned")
        assert new.assigned() == parts[name], (
            f"static member {name} came back with {new.assigned()}, had {parts[name]}")
        assert new.meta().member_id != old_member_id
        # No rebalance: same generation for both, the other keeps its partitions and
        # its rebalance listener was not called. Watch a few polls (300 ms each; with
        # 200 ms heartbeats a rebalance would have been noticed) to be sure.
        quiesce(both(), polls=4)
        for m in both():
            assert m.stable() and m.meta().generation_id == generation, (
                f"restarting static member {name} rebalanced the group: "
                f"{m.name} is at {m.meta()}, was generation {generation}")
        assert group_members[other].assigned() == parts[other]
        assert listeners[other].events == other_events, (
            f"{other} was rebalanced when {name} restarted: "
            f"{listeners[other].events[len(other_events):]}")

        desc = describe(admin, group)
        by_instance = {m["group_instance_id"]: m for m in desc["members"]}
        assert set(by_instance) == {"instance-a", "instance-b"}, desc
        assert by_instance[f"instance-{name}"]["member_id"] == new.meta().member_id
        # (client_id stays the first incarnation's: like Kafka, the coordinator keeps
        # the member's data and only swaps the member id.)
        assert described_assignment(by_instance[f"instance-{name}"]) == parts[name]

        # The replaced member id is fenced (checked after both restarts, below).
        heartbeat = raw(admin, HeartbeatRequest(
            group_id=group, generation_id=generation, member_id=old_member_id,
            group_instance_id=f"instance-{name}", max_version=4))
        commit = raw_commit(admin, group, generation, old_member_id,
                            {next(iter(parts[name])): (0, "zombie")},
                            instance_id=f"instance-{name}")
        fenced[name] = {"Heartbeat": heartbeat.error_code,
                        "OffsetCommit": next(iter(commit.values()))}

    # Kafka answers requests from a static member's replaced member id with
    # FENCED_INSTANCE_ID (the instance id now maps to another member id), so that
    # the zombie instance stops instead of rejoining and fencing its replacement.
    expected = {n: {"Heartbeat": FENCED_INSTANCE_ID, "OffsetCommit": FENCED_INSTANCE_ID}
                for n in ("a", "b")}
    assert fenced == expected, (
        "error codes for the replaced member ids (old member id + its group.instance.id); "
        f"expected FENCED_INSTANCE_ID ({FENCED_INSTANCE_ID}) everywhere, got {fenced} "
        f"({UNKNOWN_MEMBER_ID} = UNKNOWN_MEMBER_ID)")


# --------------------------------------------------------------------------------------
# 4. Committed offsets with metadata survive a broker restart; a new consumer resumes.
# --------------------------------------------------------------------------------------

def test_committed_offsets_and_metadata_survive_restart(gbroker, clients, members):
    broker = gbroker
    admin = clients.admin(broker)
    topic, group = unique_topic("durable"), unique_topic("g")
    create_topic(admin, topic, 3)
    sent = produce_per_partition(clients, broker, topic, 3, 12, "rec")

    c = members(group_consumer(clients, broker, group, topic, client_id="committer"), "c")
    wait_members([c], lambda: c.assigned() == set(tps(topic, 3)) and c.stable()
                 and len(c.got()) == 36, message="the consumer to own all partitions, read all")
    c.stop()  # from here on the main thread uses the consumer
    assert committed_offsets(admin, group) == {tp: 12 for tp in tps(topic, 3)}
    tp0, tp1, tp2 = tps(topic, 3)
    # A first commit, then a second one for two of the partitions: the last wins.
    c.c.commit({tp0: OffsetAndMetadata(2, "first", -1),
                tp1: OffsetAndMetadata(3, "first", -1),
                tp2: OffsetAndMetadata(4, "first", -1)})
    wanted = {tp0: OffsetAndMetadata(7, "meta-p0 {\"k\": 1}", -1),
              tp1: OffsetAndMetadata(0, "", -1),
              tp2: OffsetAndMetadata(12, "m\u00e9ta \u2713 " + "x" * 300, -1)}
    c.c.commit({tp0: wanted[tp0], tp2: wanted[tp2]})
    c.c.commit({tp1: wanted[tp1]})

    def check(consumer, admin_client, when):
        for tp, om in wanted.items():
            got = consumer.committed(tp, metadata=True)
            assert got is not None and (got.offset, got.metadata) == (om.offset, om.metadata), (
                f"{when}: committed({tp}) = {got}, expected {om}")
        listed = admin_client.list_group_offsets(group)[group]
        assert {tp: (o.offset, o.metadata) for tp, o in listed.items()} == {
            tp: (o.offset, o.metadata) for tp, o in wanted.items()}, f"{when}: {listed}"

    check(c.c, admin, "before the restart")
    c.c.close()
    admin.close()

    assert broker.stop() == 0
    broker.start()

    admin2 = clients.admin(broker)
    reader = clients.consumer(broker, group_id=group)  # not subscribed: just asks
    check(reader, admin2, "after the restart")
    groups = {g["group_id"]: g for g in admin2.list_groups()}
    assert group in groups and groups[group]["group_state"] == "Empty", groups

    # A new member resumes exactly at the committed offsets.
    n = members(group_consumer(clients, broker, group, topic, client_id="resumer"), "n")
    expected = {p: sent[p][wanted[tp].offset:] for p, tp in enumerate((tp0, tp1, tp2))}
    total = sum(len(v) for v in expected.values())
    wait_members([n], lambda: len(n.got()) >= total,
                 message=f"{total} records after the commits")
    quiesce([n])
    for p, tp in enumerate((tp0, tp1, tp2)):
        got = [(r.offset, r.value) for r in n.got() if r.partition == p]
        assert got == list(enumerate(sent[p]))[wanted[tp].offset:], (
            f"partition {p}: resumed with offsets {[o for o, _ in got][:5]}..., "
            f"committed {wanted[tp].offset}")


# --------------------------------------------------------------------------------------
# 5. Admin: list / describe / list offsets / delete groups.
# --------------------------------------------------------------------------------------

def test_admin_list_describe_offsets_and_delete_groups(gbroker, clients, members):
    broker = gbroker
    admin = clients.admin(broker)
    topic, group = unique_topic("admin"), unique_topic("g")
    other = unique_topic("g-other")
    create_topic(admin, topic, 4)
    produce_per_partition(clients, broker, topic, 4, 5, "rec")

    x = members(group_consumer(clients, broker, group, topic, client_id="client-x"), "x")
    y = members(group_consumer(clients, broker, group, topic, client_id="client-y"), "y")
    wait_members([x, y], lambda: split_evenly([x, y], topic, 4)
                 and committed_offsets(admin, group) == {tp: 5 for tp in tps(topic, 4)},
                 message="two members to split 4 partitions and commit all 20 records")

    listed = {g["group_id"]: g for g in admin.list_groups()}
    assert listed.get(group) == {"group_id": group, "protocol_type": "consumer",
                                 "group_state": "Stable", "group_type": "classic"}, listed
    assert group in {g["group_id"] for g in admin.list_groups(states_filter=["Stable"])}
    assert group not in {g["group_id"] for g in admin.list_groups(states_filter=["Empty"])}

    desc = describe(admin, group)
    assert desc["error"] is None, desc
    assert (desc["group_state"], desc["protocol_type"], desc["protocol_data"]) == (
        "Stable", "consumer", "range"), desc
    by_client = {m["client_id"]: m for m in desc["members"]}
    assert set(by_client) == {"client-x", "client-y"}, desc
    for m, consumer in ((by_client["client-x"], x), (by_client["client-y"], y)):
        assert m["member_id"] == consumer.meta().member_id, m
        assert m["client_id"] + "-" in m["member_id"], m  # Kafka's "<client.id>-<uuid>"
        assert m["client_host"].lstrip("/") == "127.0.0.1", m
        assert m["group_instance_id"] is None, m
        assert m["member_metadata"]["topics"] == [topic], m
        assert described_assignment(m) == consumer.assigned(), (m, consumer.assigned())

    assert committed_offsets(admin, group) == {tp: 5 for tp in tps(topic, 4)}

    # Another group that only has committed offsets (Empty, never joined).
    loner = clients.consumer(broker, group_id=other)
    loner.commit({TopicPartition(topic, 0): OffsetAndMetadata(3, "loner", -1)})
    assert {g["group_id"]: g["group_state"] for g in admin.list_groups()
            if g["group_id"] in (group, other)} == {group: "Stable", other: "Empty"}

    # Deleting a group with members fails; the group and its offsets stay.
    assert admin.delete_groups([group]) == {group: "NonEmptyGroupError"}
    assert describe(admin, group)["group_state"] == "Stable"
    assert committed_offsets(admin, group) == {tp: 5 for tp in tps(topic, 4)}
    missing = unique_topic("never")
    assert admin.delete_groups([missing]) == {missing: "GroupIdNotFoundError"}

    x.close()
    y.close()
    wait_until(lambda: describe(admin, group)["group_state"] == "Empty", timeout=10,
               message="the group to be Empty after both members left")
    assert describe(admin, group)["members"] == []
    assert admin.delete_groups([group, other]) == {group: "OK", other: "OK"}

    remaining = {g["group_id"] for g in admin.list_groups()}
    assert group not in remaining and other not in remaining, remaining
    assert admin.list_group_offsets(group) == {group: {}}
    assert admin.list_group_offsets(other) == {other: {}}
    gone = describe(admin, group)
    assert gone["group_state"] == "Dead" and gone["members"] == [], gone
    # DescribeGroups v6 (KIP-1043) reports GROUP_ID_NOT_FOUND; older versions no error.
    assert gone["error"] is None or "GroupIdNotFound" in gone["error"], gone
    assert admin.delete_groups([group]) == {group: "GroupIdNotFoundError"}


# --------------------------------------------------------------------------------------
# 6. kcat's balanced consumer (-G): reads everything once, then only what is new.
# --------------------------------------------------------------------------------------

def kcat_group_consume(broker, group, topic, extra=()):
    # -e exits once every assigned partition reached its end. No -o: kcat applies -o
    # to every assignment, overriding committed offsets, so it would re-read.
    args = ["-b", broker.bootstrap, "-G", group, "-e", "-f", KCAT_RAW_FORMAT,
            "-X", "auto.offset.reset=earliest", *KCAT_COMMON, *extra, topic]
    proc = run_kcat(args, timeout=60)
    return parse_kcat_raw(proc.stdout), proc.stderr.decode(errors="replace")


def test_kcat_balanced_consumer_commits_and_resumes(gbroker, clients):
    broker = gbroker
    admin = clients.admin(broker)
    topic, group = unique_topic("kcatg"), unique_topic("g")
    create_topic(admin, topic, 3)
    first = [b"first-%03d" % i for i in range(90)]
    kcat_produce(broker, topic, b"\n".join(first) + b"\n")
    ends = {tp.partition: o for tp, o in
            clients.consumer(broker).end_offsets(tps(topic, 3)).items()}
    assert sum(ends.values()) == 90

    got, err = kcat_group_consume(broker, group, topic)
    assert sorted(r.value for r in got) == sorted(first), err
    assert "assigned: " in err, err
    # kcat commits on close (enable.auto.commit with a final commit).
    assert committed_offsets(admin, group) == {
        TopicPartition(topic, p): o for p, o in ends.items() if o > 0}, err
    assert describe(admin, group)["group_state"] == "Empty"

    second = [b"second-%02d" % i for i in range(15)]
    kcat_produce(broker, topic, b"\n".join(second) + b"\n")
    got, err = kcat_group_consume(broker, group, topic)
    assert sorted(r.value for r in got) == sorted(second), (
        f"the second run in the group must read only the new records:\n{err}")
    for r in got:
        assert r.offset >= ends[r.partition], f"re-read {r} (committed {ends[r.partition]})"

    got, err = kcat_group_consume(broker, group, topic)
    assert got == [], f"a third run read old records: {got[:5]}\n{err}"

    # -c N exits after N messages; the commit covers exactly what was consumed.
    third = [b"third-%02d" % i for i in range(6)]
    kcat_produce(broker, topic, b"\n".join(third) + b"\n", extra=["-p", "0"])
    got, err = kcat_group_consume(broker, group, topic, extra=["-c", "4"])
    assert [r.value for r in got] == third[:4], err
    got, err = kcat_group_consume(broker, group, topic)
    assert [r.value for r in got] == third[4:], (
        f"after a -c 4 run the next one must start at the 5th new record:\n{err}")


# --------------------------------------------------------------------------------------
# 7. Error codes: stale generation, unknown member, oversized commit metadata.
# --------------------------------------------------------------------------------------

def test_offset_commit_errors(gbroker, clients, members):
    broker = gbroker
    admin = clients.admin(broker)
    topic, group = unique_topic("errs"), unique_topic("g")
    create_topic(admin, topic, 2)
    tp0, tp1 = tps(topic, 2)

    # KIP-394: a JoinGroup without member id gets MEMBER_ID_REQUIRED and an id.
    from kafka.protocol.consumer.metadata import ConsumerProtocolSubscription  # noqa: PLC0415
    sub = ConsumerProtocolSubscription(version=0, topics=[topic], user_data=b"").encode()
    P = JoinGroupRequest.JoinGroupRequestProtocol
    join = raw(admin, JoinGroupRequest(
        group_id=unique_topic("g-raw"), session_timeout_ms=6000, rebalance_timeout_ms=6000,
        member_id="", group_instance_id=None, protocol_type="consumer",
        protocols=[P(name="range", metadata=sub)], min_version=4, max_version=7))
    assert join.error_code == MEMBER_ID_REQUIRED and join.member_id, join

    a = members(group_consumer(clients, broker, group, topic, client_id="err-a"), "a")
    wait_members([a], lambda: a.stable() and a.assigned() == {tp0, tp1}, message="a to join")
    old_generation, member_id = a.meta().generation_id, a.meta().member_id

    # A consumer outside the group (manual assignment: generation -1, no member id)
    # may not commit while the group has members: UNKNOWN_MEMBER_ID -> CommitFailedError.
    outsider = clients.consumer(broker, group_id=group)
    outsider.assign([tp0])
    with pytest.raises(Errors.CommitFailedError) as info:
        outsider.commit({tp0: OffsetAndMetadata(1, "outsider", -1)})
    assert "UnknownMemberId" in repr(info.value), repr(info.value)

    # A second member forces a new generation; the old generation is now stale.
    b = members(group_consumer(clients, broker, group, topic, client_id="err-b"), "b")
    wait_members([a, b], lambda: split_evenly([a, b], topic, 2), message="a and b to split")
    new_generation = a.meta().generation_id
    assert new_generation > old_generation and a.meta().member_id == member_id
    mine = next(iter(a.assigned()))

    assert raw_commit(admin, group, old_generation, member_id, {mine: (5, "stale")}) == {
        mine: ILLEGAL_GENERATION}, "commit with a stale generation"
    assert raw_commit(admin, group, new_generation, member_id + "-nope", {mine: (5, "x")}) == {
        mine: UNKNOWN_MEMBER_ID}, "commit with an unknown member id"
    assert committed_offsets(admin, group) == {}, "a rejected commit was stored"
    assert raw_commit(admin, group, new_generation, member_id, {mine: (5, "ok")}) == {
        mine: NONE}
    assert committed_offsets(admin, group) == {mine: 5}

    # offset.metadata.max.bytes (4096): 4096 bytes are fine, one more is too large.
    a.stop()  # the main thread uses a's consumer now (a stays in the group)
    a.c.commit({mine: OffsetAndMetadata(6, "m" * 4096, -1)})
    assert a.c.committed(mine, metadata=True).metadata == "m" * 4096
    with pytest.raises(Errors.OffsetMetadataTooLargeError):
        a.c.commit({mine: OffsetAndMetadata(7, "m" * 4097, -1)})
    assert a.c.committed(mine) == 6, "an oversized commit changed the committed offset"
    # Per partition: in one request the oversized partition fails, the other commits.
    theirs = next(iter(b.assigned()))
    errors = raw_commit(admin, group, new_generation, member_id,
                        {mine: (8, "z" * 5000), theirs: (1, "fine")})
    assert errors == {mine: OFFSET_METADATA_TOO_LARGE, theirs: NONE}, errors
    assert committed_offsets(admin, group) == {mine: 6, theirs: 1}


# --------------------------------------------------------------------------------------
# 8. Broker defaults: the initial rebalance delay (3 s) still lets a lone member in.
# --------------------------------------------------------------------------------------

def test_default_initial_rebalance_delay(broker_factory, clients, members):
    broker = broker_factory()  # group.initial.rebalance.delay.ms at its default, 3000
    admin = clients.admin(broker)
    topic, group = unique_topic("delay"), unique_topic("g")
    create_topic(admin, topic, 2)
    produce_per_partition(clients, broker, topic, 2, 3, "rec")

    started = time.monotonic()
    c = members(group_consumer(clients, broker, group, topic, client_id="lonely"), "c")
    wait_members([c], lambda: c.stable() and c.assigned() == set(tps(topic, 2)), timeout=10,
                 message="a single consumer to be assigned with the default initial delay")
    took = time.monotonic() - started
    # The first rebalance of a new group waits group.initial.rebalance.delay.ms.
    assert took >= 2.5, (
        f"assigned after {took:.1f}s: the default 3000 ms initial rebalance delay was "
        "not applied")
    wait_members([c], lambda: len(c.got()) >= 6, timeout=10, message="6 records")
    assert sorted(c.values()) == sorted(
        b"rec-p%d-%d" % (p, i) for p in range(2) for i in range(3))


# --------------------------------------------------------------------------------------
# 9. group.max.size: a member beyond the limit is refused.
# --------------------------------------------------------------------------------------

def test_group_max_size(broker_factory, clients, members):
    broker = broker_factory({**FAST_GROUPS, "group.max.size": "1"})
    admin = clients.admin(broker)
    topic, group = unique_topic("max"), unique_topic("g")
    create_topic(admin, topic, 2)

    first = members(group_consumer(clients, broker, group, topic, client_id="first"), "first")
    wait_members([first], lambda: first.stable() and first.assigned(), message="first to join")
    second = group_consumer(clients, broker, group, topic, client_id="second")
    deadline = time.monotonic() + 15
    with pytest.raises(Errors.GroupMaxSizeReachedError):
        while time.monotonic() < deadline:
            second.poll(timeout_ms=100)
    first.check()
    desc = describe(admin, group)
    assert [m["client_id"] for m in desc["members"]] == ["first"], desc
    assert first.assigned() == set(tps(topic, 2))
