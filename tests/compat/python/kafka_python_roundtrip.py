"""kafka-python: producer + consumer round trip (assign, no group)."""

import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from common import expect, log, run, step, topic

TOTAL = 500


def main(bootstrap):
    name = topic("kafka-python")  # auto-created by Metadata
    step("produce %d records" % TOTAL)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    futures = [producer.send(name, key=b"k%d" % i, value=b"value-%d" % i, partition=0) for i in range(TOTAL)]
    producer.flush(timeout=30)
    offsets = [f.get(timeout=30).offset for f in futures]
    expect(offsets == list(range(TOTAL)), "producer got offsets %s..., expected 0..%d" % (offsets[:5], TOTAL - 1))
    producer.close(timeout=10)

    step("consume with assign()")
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             auto_offset_reset="earliest", consumer_timeout_ms=1000)
    tp = TopicPartition(name, 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    got = []
    deadline = time.time() + 60
    while len(got) < TOTAL and time.time() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            got.extend(records)
    expect(len(got) == TOTAL, "read %d of %d records in 60 s" % (len(got), TOTAL))
    for i, r in enumerate(got):
        expect((r.offset, r.key, r.value) == (i, b"k%d" % i, b"value-%d" % i),
               "record %d read back as offset %d key %r value %r" % (i, r.offset, r.key, r.value))
    end = consumer.end_offsets([tp])[tp]
    expect(end == TOTAL, "end offset %d, expected %d" % (end, TOTAL))
    consumer.close()
    log("round trip of %d records ok" % TOTAL)


if __name__ == "__main__":
    run(main)
