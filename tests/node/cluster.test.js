// A three-broker cluster (three `strata` processes, each a broker and a metadata
// voter) driven by kafkajs 2.2.4: a replication-factor-3 topic, acks=all producing
// through a kill -9 of the partition leader, and a consumer group reading it all back.
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const net = require('node:net');
const { Kafka, logLevel } = require('kafkajs');
const { Broker, waitUntil } = require('./broker');

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function startCluster() {
  const ports = [];
  for (let i = 0; i < 3; i++) ports.push([await freePort(), await freePort()]);
  const voters = ports.map(([, c], i) => `${i + 1}@127.0.0.1:${c}`).join(',');
  const nodes = ports.map(([port, cport], i) => {
    const b = new Broker({
      'node.id': String(i + 1),
      listeners: `PLAINTEXT://127.0.0.1:${port},CONTROLLER://127.0.0.1:${cport}`,
      'controller.listener.names': 'CONTROLLER',
      'controller.quorum.voters': voters,
      'broker.rack': `az-${i + 1}`,
      'broker.heartbeat.interval.ms': '300',
      'broker.session.timeout.ms': '3000',
    });
    b.port = port;
    return b;
  });
  // Each voter waits for a majority, so they start together.
  await Promise.all(nodes.map((n) => n.start()));
  return nodes;
}

test('kafkajs produces through a leader kill and a group reads everything', { timeout: 120000 }, async () => {
  const nodes = await startCluster();
  const kafka = new Kafka({
    clientId: 'strata-node-cluster',
    brokers: nodes.map((n) => n.bootstrap),
    logLevel: logLevel.NOTHING,
    retry: { retries: 20, initialRetryTime: 200 },
  });
  try {
    const topic = `cluster-${Date.now()}`;
    const admin = kafka.admin();
    await admin.connect();
    assert.equal(
      await admin.createTopics({
        topics: [{ topic, numPartitions: 1, replicationFactor: 3, configEntries: [{ name: 'min.insync.replicas', value: '2' }] }],
        waitForLeaders: true,
      }),
      true,
    );
    const leaderOf = async () => {
      const md = await admin.fetchTopicMetadata({ topics: [topic] });
      return md.topics[0].partitions[0].leader;
    };
    const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
    await producer.connect();
    const send = async (from, to) => {
      for (let i = from; i < to; i += 50) {
        const messages = [];
        for (let j = i; j < Math.min(to, i + 50); j++) messages.push({ value: String(j), partition: 0 });
        await producer.send({ topic, acks: -1, messages });
      }
    };
    await send(0, 300);
    const leader = await leaderOf();
    nodes[leader - 1].proc.kill('SIGKILL');
    await waitUntil(async () => {
      try {
        const l = await leaderOf();
        return l !== leader && l >= 0;
      } catch {
        return false;
      }
    }, 'a new leader');
    await send(300, 600);
    await producer.disconnect();
    await admin.disconnect();
    // The killed broker comes back (and catches up); __consumer_offsets needs
    // offsets.topic.replication.factor (3) live brokers to be created, as in Kafka.
    await nodes[leader - 1].start();

    const consumer = kafka.consumer({ groupId: `g-${topic}` });
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    const got = [];
    await consumer.run({ eachMessage: async ({ message }) => { got.push(Number(message.value.toString())); } });
    await waitUntil(() => got.length >= 600, 'every record', 60000);
    await consumer.disconnect();
    assert.deepEqual(got, Array.from({ length: 600 }, (_, i) => i), 'every acknowledged record once, in order');
  } catch (e) {
    e.message += nodes.map((n, i) => `\n--- node ${i + 1} ---\n${n.logTail()}`).join('');
    throw e;
  } finally {
    await Promise.all(nodes.map((n) => n.destroy().catch(() => {})));
  }
});
