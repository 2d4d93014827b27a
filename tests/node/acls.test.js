// kafkajs 2.2.4 with ACLs: the broker runs Kafka's StandardAuthorizer name; an admin on
// the loopback PLAINTEXT listener (anonymous, a super user) creates, describes and
// deletes ACLs with kafkajs's admin API; a SCRAM user on the SASL_PLAINTEXT listener is
// refused WRITE until an ACL grants it, and refused again once it is deleted.
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const path = require('node:path');
const {
  Kafka, logLevel, AclResourceTypes, AclOperationTypes, AclPermissionTypes,
  ResourcePatternTypes,
} = require('kafkajs');
const { Broker, freePort, binary } = require('./broker');

async function produce(bootstrap, topic) {
  const kafka = new Kafka({
    clientId: 'strata-node-acl-user',
    brokers: [bootstrap],
    sasl: { mechanism: 'scram-sha-512', username: 'fay', password: 'fay-secret' },
    logLevel: logLevel.NOTHING,
    retry: { retries: 0 },
  });
  const producer = kafka.producer();
  await producer.connect();
  try {
    await producer.send({ topic, acks: -1, messages: [{ value: 'v' }] });
  } finally {
    await producer.disconnect();
  }
}

test('kafkajs manages ACLs and a user writes only while granted', async () => {
  const broker = new Broker();
  broker.port = await freePort();
  const saslPort = await freePort();
  broker.overrides = {
    listeners: `PLAINTEXT://127.0.0.1:${broker.port},SASL_PLAINTEXT://127.0.0.1:${saslPort}`,
    'authorizer.class.name': 'org.apache.kafka.metadata.authorizer.StandardAuthorizer',
    'super.users': 'User:ANONYMOUS',
  };
  execFileSync(binary(), ['storage', 'format',
    '--override', `log.dirs=${path.join(broker.dir, 'data')}`,
    '--add-scram', 'SCRAM-SHA-512=[name=fay,password=fay-secret]'], { stdio: 'ignore' });
  await broker.start();
  const sasl = `127.0.0.1:${saslPort}`;
  const admin = new Kafka({ clientId: 'strata-node-acl-admin', brokers: [broker.bootstrap], logLevel: logLevel.NOTHING }).admin();
  await admin.connect();
  try {
    await admin.createTopics({ topics: [{ topic: 'ledger', numPartitions: 1 }], waitForLeaders: true });
    await assert.rejects(produce(sasl, 'ledger'), (e) => e.type === 'TOPIC_AUTHORIZATION_FAILED' || /authoriz/i.test(e.message));

    const binding = {
      resourceType: AclResourceTypes.TOPIC,
      resourceName: 'ledger',
      resourcePatternType: ResourcePatternTypes.LITERAL,
      principal: 'User:fay',
      host: '*',
      operation: AclOperationTypes.WRITE,
      permissionType: AclPermissionTypes.ALLOW,
    };
    await admin.createAcls({ acl: [binding] });
    const described = await admin.describeAcls({
      resourceType: AclResourceTypes.ANY,
      resourcePatternType: ResourcePatternTypes.ANY,
      principal: 'User:fay',
      operation: AclOperationTypes.ANY,
      permissionType: AclPermissionTypes.ANY,
    });
    assert.equal(described.resources.length, 1);
    assert.equal(described.resources[0].resourceName, 'ledger');
    assert.equal(described.resources[0].acls[0].operation, AclOperationTypes.WRITE);
    await produce(sasl, 'ledger');

    const deleted = await admin.deleteAcls({ filters: [binding] });
    assert.equal(deleted.filterResponses[0].matchingAcls.length, 1);
    await assert.rejects(produce(sasl, 'ledger'), (e) => e.type === 'TOPIC_AUTHORIZATION_FAILED' || /authoriz/i.test(e.message));
  } finally {
    await admin.disconnect();
    await broker.destroy();
  }
});
