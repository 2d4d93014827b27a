// kafkajs 2.2.4 with SASL on a SASL_PLAINTEXT listener: the user comes from
// `strata storage format --add-scram` (kafkajs has no SCRAM admin API), then
// SCRAM-SHA-512 and PLAIN producers authenticate and send; a wrong password is refused.
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const path = require('node:path');
const { Kafka, logLevel } = require('kafkajs');
const { Broker, freePort, binary } = require('./broker');

test('kafkajs authenticates with SCRAM-SHA-512 and PLAIN; a wrong password is refused', async () => {
  const broker = new Broker();
  broker.port = await freePort();
  broker.overrides = {
    listeners: `SASL_PLAINTEXT://127.0.0.1:${broker.port}`,
    'sasl.enabled.mechanisms': 'SCRAM-SHA-512,PLAIN',
  };
  execFileSync(binary(), ['storage', 'format',
    '--override', `log.dirs=${path.join(broker.dir, 'data')}`,
    '--add-scram', 'SCRAM-SHA-512=[name=dana,password=dana-secret]'], { stdio: 'ignore' });
  await broker.start();
  try {
    for (const mechanism of ['scram-sha-512', 'plain']) {
      const kafka = new Kafka({
        clientId: `strata-node-${mechanism}`,
        brokers: [broker.bootstrap],
        sasl: { mechanism, username: 'dana', password: 'dana-secret' },
        logLevel: logLevel.NOTHING,
      });
      const producer = kafka.producer({ allowAutoTopicCreation: true });
      await producer.connect();
      await producer.send({ topic: 'sasl', messages: [{ value: mechanism }] });
      await producer.disconnect();
    }
    const stranger = new Kafka({
      clientId: 'strata-node-wrong',
      brokers: [broker.bootstrap],
      sasl: { mechanism: 'scram-sha-512', username: 'dana', password: 'guess' },
      logLevel: logLevel.NOTHING,
      retry: { retries: 0 },
    });
    const admin = stranger.admin();
    await assert.rejects(admin.connect(), /SASL|[Aa]uthentication/);
    await admin.disconnect().catch(() => {});
  } finally {
    await broker.destroy();
  }
});
