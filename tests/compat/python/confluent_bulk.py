"""confluent-kafka (librdkafka): 200,000 idempotent acks=all records into a
3-partition topic created with AdminClient, read back by a group consumer
(subscribe) that commits; then 300 more records, and a new consumer in the
same group must resume exactly after the commit.

Record n of partition p has value `p:n`; the check wants every delivery
report to succeed with increasing offsets, and the consumer to see, per
partition, exactly values 0..N-1 in order at offsets 0..N-1.
"""

import time

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from common import expect, log, run, step, topic

PARTITIONS = 3
TOTAL = 200_000


def create_topic(bootstrap, name):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(name, num_partitions=PARTITIONS, replication_factor=1)],
                                  operation_timeout=30)
    futures[name].result(timeout=30)
    md = admin.list_topics(topic=name, timeout=10)
    t = md.topics[name]
    expect(t.error is None, "metadata for %s: %s" % (name, t.error))
    expect(len(t.partitions) == PARTITIONS,
           "metadata shows %d partitions, created %d" % (len(t.partitions), PARTITIONS))


def produce(bootstrap, name, total=TOTAL, start=0):
    producer = Producer({
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 20,
        "batch.num.messages": 5000,
        "message.timeout.ms": 60000,
    })
    errors = []
    last_offset = {p: -1 for p in range(PARTITIONS)}
    delivered = [0]

    def on_delivery(err, msg):
        if err is not None:
            errors.append("%s [%d]: %s" % (msg.value(), msg.partition(), err))
            return
        p = msg.partition()
        if msg.offset() <= last_offset[p]:
            errors.append("partition %d: offset %d after %d" % (p, msg.offset(), last_offset[p]))
        last_offset[p] = msg.offset()
        delivered[0] += 1

    for i in range(start, start + total):
        p = i % PARTITIONS
        value = b"%d:%d" % (p, i // PARTITIONS)
        while True:
            try:
                producer.produce(name, value=value, partition=p, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.05)
        if i % 1000 == 0:
            producer.poll(0)
    left = producer.flush(90)
    expect(left == 0, "%d records still undelivered after flush(90 s)" % left)
    expect(not errors, "%d delivery errors, first: %s" % (len(errors), errors[:3]))
    expect(delivered[0] == total, "delivered %d of %d" % (delivered[0], total))
    log("produced %d records, last offsets %s" % (total, last_offset))


def group_consumer(bootstrap, group):
    return Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 10000,
    })


def read_in_order(consumer, next_n, count, limit_s):
    """Reads `count` records, checking per-partition values and offsets."""
    seen = 0
    deadline = time.time() + limit_s
    while seen < count:
        expect(time.time() < deadline, "read %d of %d records in %d s (per partition %s)"
               % (seen, count, limit_s, next_n))
        for msg in consumer.consume(num_messages=10000, timeout=1.0):
            if msg.error():
                expect(msg.error().code() == KafkaError._PARTITION_EOF, "consumer error: %s" % msg.error())
                continue
            p = msg.partition()
            want = b"%d:%d" % (p, next_n[p])
            expect(msg.value() == want, "partition %d offset %d: value %r, expected %r"
                   % (p, msg.offset(), msg.value(), want))
            expect(msg.offset() == next_n[p], "partition %d: value %r at offset %d, expected offset %d"
                   % (p, msg.value(), msg.offset(), next_n[p]))
            next_n[p] += 1
            seen += 1


def consume(bootstrap, name):
    group = name + "-group"
    consumer = group_consumer(bootstrap, group)
    consumer.subscribe([name])
    per_part = TOTAL // PARTITIONS
    expected = {p: per_part + (1 if p < TOTAL % PARTITIONS else 0) for p in range(PARTITIONS)}
    next_n = {p: 0 for p in range(PARTITIONS)}
    read_in_order(consumer, next_n, TOTAL, 180)
    # Nothing beyond what was produced.
    for msg in consumer.consume(num_messages=100, timeout=1.0):
        expect(msg.error() is not None, "unexpected extra record %r at %d/%d"
               % (msg.value(), msg.partition(), msg.offset()))
    for p in range(PARTITIONS):
        lo, hi = consumer.get_watermark_offsets(TopicPartition(name, p), timeout=10)
        expect((lo, hi) == (0, expected[p]), "partition %d watermarks (%d, %d), expected (0, %d)"
               % (p, lo, hi, expected[p]))
    expect(next_n == expected, "per-partition counts %s, expected %s" % (next_n, expected))
    consumer.commit(asynchronous=False)
    committed = consumer.committed([TopicPartition(name, p) for p in range(PARTITIONS)], timeout=10)
    got = {tp.partition: tp.offset for tp in committed}
    expect(got == expected, "committed offsets %s, expected %s" % (got, expected))
    consumer.close()
    return group, next_n


def resume(bootstrap, name, group, next_n, more):
    consumer = group_consumer(bootstrap, group)
    consumer.subscribe([name])
    read_in_order(consumer, next_n, more, 60)
    for msg in consumer.consume(num_messages=100, timeout=1.0):
        expect(msg.error() is not None, "record %r at %d/%d read again after the commit"
               % (msg.value(), msg.partition(), msg.offset()))
    consumer.close()


def consume_from_middle(bootstrap, name, offset):
    """A fetch from inside a batch must start with the batch that contains
    the offset; the client skips the records before it."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": name + "-unused",
        "enable.auto.commit": False,
    })
    consumer.assign([TopicPartition(name, 1, offset)])
    got = []
    deadline = time.time() + 30
    while len(got) < 10 and time.time() < deadline:
        for msg in consumer.consume(num_messages=10, timeout=1.0):
            if not msg.error():
                got.append(msg)
    consumer.close()
    expect(len(got) >= 10, "read %d records from offset %d in 30 s" % (len(got), offset))
    for i, msg in enumerate(got[:10]):
        want = b"1:%d" % (offset + i)
        expect(msg.offset() == offset + i and msg.value() == want,
               "record %d read as offset %d value %r, expected offset %d value %r"
               % (i, msg.offset(), msg.value(), offset + i, want))


def main(bootstrap):
    name = topic("confluent-bulk")
    step("AdminClient.create_topics %s (3 partitions)" % name)
    create_topic(bootstrap, name)
    step("produce %d records (acks=all, idempotent)" % TOTAL)
    t0 = time.time()
    produce(bootstrap, name)
    log("produce took %.1f s" % (time.time() - t0))
    t0 = time.time()
    step("group consumer reads all in per-partition order, then commits")
    group, next_n = consume(bootstrap, name)
    log("group consume took %.1f s" % (time.time() - t0))
    step("300 more records; a new member of the group resumes after the commit")
    produce(bootstrap, name, total=300, start=TOTAL)
    resume(bootstrap, name, group, next_n, 300)
    step("consume partition 1 from offset 12345 (inside a batch)")
    consume_from_middle(bootstrap, name, 12345)


if __name__ == "__main__":
    run(main)
