// Shared helpers for the kafkajs checks: same contract as python/common.py
// (exit 0 PASS, 1 FAIL, 77 SKIP; last line `REASON: ...`).
'use strict';

process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1';
const { Kafka, logLevel } = require('kafkajs');

class CheckFailed extends Error {}

function expect(cond, msg) {
  if (!cond) throw new CheckFailed(msg);
}

let current = '';

// Names what the check does next; a failure's reason starts with it.
function step(what) {
  current = what;
  console.error(`== ${what}`);
}

function topic(name) {
  const suffix = process.env.COMPAT_SUFFIX || `${Date.now()}-${process.pid}`;
  return `compat-${name}-${suffix}`;
}

function client(bootstrap, clientId) {
  return new Kafka({
    clientId,
    brokers: [bootstrap],
    logLevel: logLevel.WARN,
    retry: { retries: 5 },
  });
}

function run(main) {
  const bootstrap = process.argv[2];
  if (!bootstrap) {
    console.error('usage: node check.js BOOTSTRAP');
    process.exit(2);
  }
  main(bootstrap).then(
    () => process.exit(0),
    (err) => {
      if (!(err instanceof CheckFailed)) console.error(err);
      const why = err instanceof CheckFailed ? err.message : `${err.name}: ${err.message}`;
      console.log(`REASON: ${current ? `${current}: ` : ''}${why}`);
      process.exit(1);
    },
  );
}

module.exports = { expect, step, topic, client, run };
