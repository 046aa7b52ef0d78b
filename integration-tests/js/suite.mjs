// kafkajs against a real Inlet broker: admin (create, describe and alter configs, metadata,
// offsets by timestamp, deleteTopicRecords), an idempotent producer and a consumer group. Run by
// integration-tests/python/test_kafkajs.py with the broker's bootstrap address; exits non-zero
// (with the reason) on the first check that fails.
import assert from 'node:assert/strict';
import kafkajs from 'kafkajs';

const { Kafka, ConfigResourceTypes, logLevel } = kafkajs;

const bootstrap = process.argv[2];
const kafka = new Kafka({ clientId: 'inlet-kafkajs', brokers: [bootstrap], logLevel: logLevel.WARN });
const topic = 'js-orders';
const checked = [];

async function configs(admin) {
  const { resources } = await admin.describeConfigs({
    includeSynonyms: false,
    resources: [{ type: ConfigResourceTypes.TOPIC, name: topic }],
  });
  return Object.fromEntries(resources[0].configEntries.map((e) => [e.configName, e.configValue]));
}

const admin = kafka.admin();
await admin.connect();
assert.equal(
  await admin.createTopics({
    waitForLeaders: true,
    topics: [{ topic, numPartitions: 2, configEntries: [{ name: 'retention.ms', value: '86400000' }] }],
  }),
  true,
);
assert.equal((await configs(admin))['retention.ms'], '86400000');
checked.push('createTopics, describeConfigs');

// kafkajs has only the legacy AlterConfigs: the topic's whole set of overrides.
await admin.alterConfigs({
  validateOnly: false,
  resources: [{ type: ConfigResourceTypes.TOPIC, name: topic, configEntries: [{ name: 'cleanup.policy', value: 'compact' }] }],
});
const altered = await configs(admin);
assert.equal(altered['cleanup.policy'], 'compact');
assert.equal(altered['retention.ms'], '604800000', 'an override left out of alterConfigs is removed');
checked.push('alterConfigs');

const { topics } = await admin.fetchTopicMetadata({ topics: [topic] });
assert.equal(topics[0].partitions.length, 2);
checked.push('fetchTopicMetadata');

const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
await producer.connect();
const base = Date.now() - 60_000;
await producer.send({
  topic,
  acks: -1,
  messages: Array.from({ length: 20 }, (_, i) => ({
    key: `k${i}`,
    value: `v${i}`,
    partition: 0,
    timestamp: String(base + i * 1000),
  })),
});
await producer.disconnect();
checked.push('idempotent producer');

const byTime = await admin.fetchTopicOffsetsByTimestamp(topic, base + 10_500);
assert.equal(byTime.find((p) => p.partition === 0).offset, '11', 'the first record at or after the time');
const ends = await admin.fetchTopicOffsets(topic);
assert.equal(ends.find((p) => p.partition === 0).high, '20');
checked.push('fetchTopicOffsetsByTimestamp, fetchTopicOffsets');

const consumer = kafka.consumer({ groupId: 'js-group', sessionTimeout: 10_000, rebalanceTimeout: 10_000 });
await consumer.connect();
await consumer.subscribe({ topics: [topic], fromBeginning: true });
const seen = [];
await new Promise((resolve, reject) => {
  const timer = setTimeout(() => reject(new Error(`consumed ${seen.length} of 20 in 30 s`)), 30_000);
  consumer.run({
    eachMessage: async ({ message }) => {
      seen.push(message.value.toString());
      if (seen.length === 20) {
        clearTimeout(timer);
        resolve();
      }
    },
  });
});
assert.deepEqual(seen, Array.from({ length: 20 }, (_, i) => `v${i}`));
await consumer.commitOffsets([{ topic, partition: 0, offset: '20' }]);
await consumer.disconnect();
const committed = await admin.fetchOffsets({ groupId: 'js-group', topics: [topic] });
assert.equal(committed[0].partitions.find((p) => p.partition === 0).offset, '20');
checked.push('consumer group, commitOffsets, fetchOffsets');

// DeleteRecords: the log start moves, and fetchTopicOffsets' low follows; a compact-only topic
// refuses it.
const trimmed = 'js-trimmed';
await admin.createTopics({ waitForLeaders: true, topics: [{ topic: trimmed, numPartitions: 1 }] });
const trimmer = kafka.producer();
await trimmer.connect();
await trimmer.send({ topic: trimmed, acks: -1, messages: Array.from({ length: 10 }, (_, i) => ({ value: `t${i}` })) });
await trimmer.disconnect();
// deleteTopicRecords finds leaders in kafkajs' cached metadata: load the new topic's first.
await admin.fetchTopicMetadata({ topics: [trimmed] });
await admin.deleteTopicRecords({ topic: trimmed, partitions: [{ partition: 0, offset: '4' }] });
const trimmedOffsets = await admin.fetchTopicOffsets(trimmed);
assert.equal(trimmedOffsets[0].low, '4');
assert.equal(trimmedOffsets[0].high, '10');
await assert.rejects(
  admin.deleteTopicRecords({ topic, partitions: [{ partition: 0, offset: '1' }] }),
  // kafkajs wraps the per-partition errors once more.
  (error) => (error.cause ?? error).partitions?.[0]?.error?.type === 'POLICY_VIOLATION',
);
checked.push('deleteTopicRecords');

await admin.disconnect();
console.log(JSON.stringify({ ok: true, checked }));
