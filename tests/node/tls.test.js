// kafkajs 2.2.4 over an SSL listener: produce and consume over TLS with the test's own
// CA, and a client that trusts another CA refused. Certificates come from openssl.
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { Kafka, logLevel } = require('kafkajs');
const { Broker, freePort } = require('./broker');

function makeCerts() {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-tls-'));
  const ssl = (...args) => execFileSync('openssl', args, { cwd: d, stdio: 'ignore' });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  for (const ca of ['ca', 'other']) {
    ssl('req', '-x509', ...ec, '-keyout', `${ca}.key`, '-out', `${ca}.pem`, '-days', '2', '-subj', `/CN=${ca}`);
  }
  fs.writeFileSync(path.join(d, 'san.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  ssl('req', ...ec, '-keyout', 'broker.key', '-out', 'broker.csr', '-subj', '/CN=broker-1');
  ssl('x509', '-req', '-in', 'broker.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial',
    '-out', 'broker.pem', '-days', '2', '-extfile', 'san.ext');
  fs.writeFileSync(path.join(d, 'keystore.pem'),
    fs.readFileSync(path.join(d, 'broker.key'), 'utf8') + fs.readFileSync(path.join(d, 'broker.pem'), 'utf8'));
  return d;
}

test('kafkajs produces and consumes over TLS; another CA is refused', async () => {
  const certs = makeCerts();
  const broker = new Broker();
  broker.port = await freePort();
  broker.overrides = {
    listeners: `SSL://127.0.0.1:${broker.port}`,
    'ssl.keystore.location': path.join(certs, 'keystore.pem'),
  };
  await broker.start();
  try {
    const kafka = new Kafka({
      clientId: 'strata-node-tls',
      brokers: [broker.bootstrap],
      ssl: { ca: [fs.readFileSync(path.join(certs, 'ca.pem'), 'utf8')] },
      logLevel: logLevel.NOTHING,
    });
    const admin = kafka.admin();
    await admin.connect();
    await admin.createTopics({ topics: [{ topic: 'tls', numPartitions: 1 }], waitForLeaders: true });
    await admin.disconnect();
    const producer = kafka.producer();
    await producer.connect();
    await producer.send({ topic: 'tls', messages: [1, 2, 3].map((i) => ({ value: `v${i}` })) });
    await producer.disconnect();
    const consumer = kafka.consumer({ groupId: 'tls-group' });
    await consumer.connect();
    await consumer.subscribe({ topic: 'tls', fromBeginning: true });
    const got = [];
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`only ${got}`)), 30000);
      consumer.run({
        eachMessage: async ({ message }) => {
          got.push(message.value.toString());
          if (got.length === 3) { clearTimeout(timer); resolve(); }
        },
      });
    });
    await consumer.disconnect();
    assert.deepEqual(got, ['v1', 'v2', 'v3']);

    const stranger = new Kafka({
      clientId: 'strata-node-tls-other',
      brokers: [broker.bootstrap],
      ssl: { ca: [fs.readFileSync(path.join(certs, 'other.pem'), 'utf8')] },
      logLevel: logLevel.NOTHING,
      retry: { retries: 0 },
      connectionTimeout: 3000,
    });
    const refused = stranger.admin();
    await assert.rejects(refused.connect());
    await refused.disconnect().catch(() => {});
  } finally {
    await broker.destroy();
  }
});

test('kafkajs over SASL_SSL with SCRAM-SHA-512, SCRAM-SHA-256 and PLAIN', async () => {
  const certs = makeCerts();
  const broker = new Broker();
  broker.port = await freePort();
  broker.overrides = {
    listeners: `SASL_SSL://127.0.0.1:${broker.port}`,
    'ssl.keystore.location': path.join(certs, 'keystore.pem'),
    'sasl.enabled.mechanisms': 'SCRAM-SHA-512,SCRAM-SHA-256,PLAIN',
  };
  execFileSync(require('./broker').binary(), ['storage', 'format',
    '--override', `log.dirs=${path.join(broker.dir, 'data')}`,
    '--add-scram', 'SCRAM-SHA-512=[name=gus,password=gus-secret]',
    '--add-scram', 'SCRAM-SHA-256=[name=gus,password=gus-secret]'], { stdio: 'ignore' });
  await broker.start();
  try {
    const ca = [fs.readFileSync(path.join(certs, 'ca.pem'), 'utf8')];
    for (const mechanism of ['scram-sha-512', 'scram-sha-256', 'plain']) {
      const kafka = new Kafka({
        clientId: `strata-node-sasl-ssl-${mechanism}`,
        brokers: [broker.bootstrap],
        ssl: { ca },
        sasl: { mechanism, username: 'gus', password: 'gus-secret' },
        logLevel: logLevel.NOTHING,
      });
      const producer = kafka.producer({ allowAutoTopicCreation: true });
      await producer.connect();
      await producer.send({ topic: 'sasl-ssl', acks: -1, messages: [{ value: mechanism }] });
      await producer.disconnect();
    }
    const kafka = new Kafka({
      clientId: 'strata-node-sasl-ssl-read',
      brokers: [broker.bootstrap],
      ssl: { ca },
      sasl: { mechanism: 'scram-sha-512', username: 'gus', password: 'gus-secret' },
      logLevel: logLevel.NOTHING,
    });
    const admin = kafka.admin();
    await admin.connect();
    const offsets = await admin.fetchTopicOffsets('sasl-ssl');
    await admin.disconnect();
    assert.equal(offsets[0].high, '3');
  } finally {
    await broker.destroy();
  }
});
