// Classic consumer groups driven by kafkajs 2.2.4 (its own protocol implementation,
// not librdkafka): split, leave and take-over, commits that survive a broker restart,
// and the admin views (describeGroups, fetchOffsets, lag, deleteGroups).
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { Kafka, logLevel, AssignerProtocol } = require('kafkajs');
const { Broker, sleep, waitUntil } = require('./broker');

// Joins settle quickly: no initial delay, short sessions allowed.
const FAST_GROUPS = {
  'group.initial.rebalance.delay.ms': '0',
  'group.min.session.timeout.ms': '500',
};

function client(broker) {
  return new Kafka({ clientId: 'strata-node', brokers: [broker.bootstrap], logLevel: logLevel.NOTHING });
}

async function withBroker(overrides, body) {
  const broker = await new Broker(overrides).start();
  try {
    await body(broker);
  } catch (e) {
    e.message += `\n--- broker log ---\n${broker.logTail()}`;
    throw e;
  } finally {
    await broker.destroy();
  }
}

/** Creates `topic` and sends `perPartition` records to each partition; returns the values. */
async function produce(kafka, topic, partitions, perPartition, tag, create = true) {
  const admin = kafka.admin();
  await admin.connect();
  if (create) {
    assert.equal(await admin.createTopics({ topics: [{ topic, numPartitions: partitions }], waitForLeaders: true }), true);
  }
  await admin.disconnect();
  const producer = kafka.producer({ allowAutoTopicCreation: false });
  await producer.connect();
  const values = [];
  for (let p = 0; p < partitions; p++) {
    const messages = [];
    for (let i = 0; i < perPartition; i++) {
      const value = `${tag}-${p}-${i}`;
      values.push(value);
      messages.push({ value, partition: p });
    }
    await producer.send({ topic, messages, acks: -1 });
  }
  await producer.disconnect();
  return values;
}

/** A group member that records what it reads and the partitions of its last join. */
async function member(kafka, groupId, topic, seen) {
  const consumer = kafka.consumer({ groupId, sessionTimeout: 6000, heartbeatInterval: 300, rebalanceTimeout: 10000 });
  const state = { consumer, partitions: [] };
  consumer.on(consumer.events.GROUP_JOIN, (e) => {
    state.partitions = (e.payload.memberAssignment[topic] || []).slice().sort((a, b) => a - b);
  });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await consumer.run({ eachMessage: async ({ message }) => { seen.push(message.value.toString()); } });
  return state;
}

async function committed(admin, groupId, topic) {
  const [t] = await admin.fetchOffsets({ groupId, topics: [topic] });
  return t.partitions.sort((a, b) => a.partition - b.partition).map((p) => Number(p.offset));
}

/** Waits until every partition's committed offset is `offset` (kafkajs commits after each batch). */
async function commitsReach(admin, groupId, topic, offset) {
  await waitUntil(async () => (await committed(admin, groupId, topic)).every((o) => o === offset), `commits at ${offset}`);
}

const sorted = (xs) => xs.slice().sort();

test('two kafkajs members split six partitions, then one leaves and the other takes all', async () => {
  await withBroker(FAST_GROUPS, async (broker) => {
    const kafka = client(broker);
    const topic = `split-${Date.now()}`;
    const groupId = `g-${topic}`;
    const first = await produce(kafka, topic, 6, 20, 'first');
    const seen = [];
    const a = await member(kafka, groupId, topic, seen);
    const b = await member(kafka, groupId, topic, seen);
    await waitUntil(() => a.partitions.length === 3 && b.partitions.length === 3, 'three partitions each');
    assert.equal(new Set([...a.partitions, ...b.partitions]).size, 6, 'no partition owned twice');
    await waitUntil(() => new Set(seen).size === first.length, 'every first record');
    assert.deepEqual(sorted([...new Set(seen)]), sorted(first));

    const admin = kafka.admin();
    await admin.connect();
    await commitsReach(admin, groupId, topic, 20);

    // One member leaves (LeaveGroup): the other takes every partition, and reads
    // exactly what is produced after the committed offsets.
    await a.consumer.disconnect();
    await waitUntil(() => b.partitions.length === 6, 'the survivor to own all six');
    seen.length = 0;
    const second = await produce(kafka, topic, 6, 10, 'second', false);
    await waitUntil(() => seen.length >= second.length, 'the second records');
    await sleep(500); // anything read twice would arrive now
    assert.deepEqual(sorted(seen), sorted(second), 'nothing lost, nothing read twice');
    await b.consumer.disconnect();
    await admin.disconnect();
  });
});

test('kafkajs commits survive a broker restart and the group resumes exactly there', async () => {
  await withBroker(FAST_GROUPS, async (broker) => {
    const topic = `restart-${Date.now()}`;
    const groupId = `g-${topic}`;
    let kafka = client(broker);
    const first = await produce(kafka, topic, 3, 10, 'first');
    const seen = [];
    let m = await member(kafka, groupId, topic, seen);
    await waitUntil(() => seen.length >= first.length, 'the first records');
    let admin = kafka.admin();
    await admin.connect();
    await commitsReach(admin, groupId, topic, 10);
    await admin.disconnect();
    await m.consumer.disconnect();

    assert.equal(await broker.stop(), 0, 'clean exit on SIGTERM');
    await broker.start();
    kafka = client(broker);
    admin = kafka.admin();
    await admin.connect();
    assert.deepEqual(await committed(admin, groupId, topic), [10, 10, 10], 'commits reloaded');
    await admin.disconnect();
    const second = await produce(kafka, topic, 3, 5, 'second', false);
    seen.length = 0;
    m = await member(kafka, groupId, topic, seen);
    await waitUntil(() => seen.length >= second.length, 'the records after the commits');
    await sleep(500);
    assert.deepEqual(sorted(seen), sorted(second), 'resumed exactly at the committed offsets');
    await m.consumer.disconnect();
  });
});

test('kafkajs admin describes members, shows lag and deletes only empty groups', async () => {
  await withBroker(FAST_GROUPS, async (broker) => {
    const kafka = client(broker);
    const topic = `admin-${Date.now()}`;
    const groupId = `g-${topic}`;
    const values = await produce(kafka, topic, 2, 10, 'v');
    const seen = [];
    const m = await member(kafka, groupId, topic, seen);
    await waitUntil(() => seen.length >= values.length, 'every record');
    const admin = kafka.admin();
    await admin.connect();
    await commitsReach(admin, groupId, topic, 10);

    const { groups } = await admin.describeGroups([groupId]);
    assert.equal(groups.length, 1);
    const g = groups[0];
    assert.equal(g.errorCode, 0);
    assert.equal(g.state, 'Stable');
    assert.equal(g.protocolType, 'consumer');
    assert.equal(g.members.length, 1);
    assert.equal(g.members[0].clientId, 'strata-node');
    assert.match(g.members[0].clientHost, /127\.0\.0\.1/);
    const assignment = AssignerProtocol.MemberAssignment.decode(g.members[0].memberAssignment);
    assert.deepEqual(assignment.assignment[topic].slice().sort(), [0, 1]);
    const listed = await admin.listGroups();
    assert.ok(listed.groups.some((x) => x.groupId === groupId && x.protocolType === 'consumer'));

    // A group with a member is not deleted.
    await assert.rejects(admin.deleteGroups([groupId]), (e) => {
      assert.equal(e.groups[0].error.type, 'NON_EMPTY_GROUP');
      return true;
    });

    // Lag: the high watermark minus the committed offset, per partition.
    await m.consumer.disconnect();
    await waitUntil(async () => (await admin.describeGroups([groupId])).groups[0].state === 'Empty', 'an empty group');
    await produce(kafka, topic, 2, 4, 'more', false);
    const high = (await admin.fetchTopicOffsets(topic)).sort((x, y) => x.partition - y.partition).map((p) => Number(p.high));
    const lag = (await committed(admin, groupId, topic)).map((c, i) => high[i] - c);
    assert.deepEqual(lag, [4, 4]);

    // An empty group is deleted, offsets and all.
    const deleted = await admin.deleteGroups([groupId]);
    assert.equal(deleted[0].errorCode, 0);
    assert.deepEqual(await committed(admin, groupId, topic), [-1, -1], 'offsets gone with the group');
    await admin.disconnect();
  });
});
