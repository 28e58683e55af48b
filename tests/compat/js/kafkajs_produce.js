// kafkajs: admin createTopics, a producer sending to two partitions, and the
// offsets it got back checked against admin.fetchTopicOffsets.
'use strict';

const { expect, step, topic, client, run } = require('./common');

const PER_PARTITION = 150;

async function main(bootstrap) {
  const name = topic('kafkajs-produce');
  const kafka = client(bootstrap, 'weir-compat-kafkajs');
  step(`admin.createTopics ${name}`);
  const admin = kafka.admin();
  await admin.connect();
  const created = await admin.createTopics({
    topics: [{ topic: name, numPartitions: 2, replicationFactor: 1 }],
    waitForLeaders: true,
  });
  expect(created === true, `createTopics returned ${created}`);

  step('produce');
  const producer = kafka.producer({ allowAutoTopicCreation: false });
  await producer.connect();
  for (let batch = 0; batch < 3; batch++) {
    const messages = [];
    for (let i = 0; i < PER_PARTITION / 3; i++) {
      for (const partition of [0, 1]) {
        messages.push({ partition, key: `k${i}`, value: `kafkajs-${partition}-${batch}-${i}` });
      }
    }
    const res = await producer.send({ topic: name, acks: -1, messages });
    for (const r of res) {
      expect(r.errorCode === 0, `produce answered error ${r.errorCode} for partition ${r.partition}`);
      expect(Number(r.baseOffset) === batch * (PER_PARTITION / 3),
        `batch ${batch} partition ${r.partition}: baseOffset ${r.baseOffset}, expected ${batch * (PER_PARTITION / 3)}`);
    }
  }
  await producer.disconnect();

  step('admin.fetchTopicOffsets');
  const offsets = await admin.fetchTopicOffsets(name);
  expect(offsets.length === 2, `fetchTopicOffsets returned ${offsets.length} partitions`);
  for (const o of offsets) {
    expect(Number(o.low) === 0 && Number(o.high) === PER_PARTITION && Number(o.offset) === PER_PARTITION,
      `partition ${o.partition}: low ${o.low} high ${o.high} offset ${o.offset}, expected 0/${PER_PARTITION}`);
  }
  await admin.disconnect();
}

run(main);
