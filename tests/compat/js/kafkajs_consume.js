// kafkajs: producer + group consumer round trip (kafkajs consumers always
// use a group). run.sh skips this check when the node serves no groups.
'use strict';

const { expect, step, topic, client, run } = require('./common');

const TOTAL = 300;

async function main(bootstrap) {
  const name = topic('kafkajs-consume');
  const kafka = client(bootstrap, 'weir-compat-kafkajs');
  step(`admin.createTopics ${name}`);
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic: name, numPartitions: 1, replicationFactor: 1 }], waitForLeaders: true });
  await admin.disconnect();

  step('produce');
  const producer = kafka.producer();
  await producer.connect();
  const messages = [];
  for (let i = 0; i < TOTAL; i++) messages.push({ key: `k${i}`, value: `kafkajs-${i}` });
  await producer.send({ topic: name, messages });
  await producer.disconnect();

  step('group consumer: subscribe and read');
  const consumer = kafka.consumer({ groupId: `${name}-g`, sessionTimeout: 10000, heartbeatInterval: 1000 });
  await consumer.connect();
  await consumer.subscribe({ topic: name, fromBeginning: true });
  const got = [];
  let done;
  const finished = new Promise((resolve) => { done = resolve; });
  await consumer.run({
    eachMessage: async ({ partition, message }) => {
      got.push({ partition, offset: Number(message.offset), value: message.value.toString() });
      if (got.length >= TOTAL) done();
    },
  });
  const timer = setTimeout(done, 60000);
  await finished;
  clearTimeout(timer);
  await consumer.disconnect();

  expect(got.length === TOTAL, `consumer read ${got.length} of ${TOTAL} records in 60 s`);
  got.forEach((m, i) => {
    expect(m.offset === i && m.value === `kafkajs-${i}`,
      `record ${i} read back as offset ${m.offset} value ${m.value}`);
  });
}

run(main);
