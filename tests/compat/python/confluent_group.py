"""confluent-kafka group consumer: subscribe, read part of a topic, commit,
close; a second consumer in the same group resumes right after the commit.
"""

import time

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from common import expect, log, run, step, topic

TOTAL = 100
FIRST = 40


def consumer_for(bootstrap, group):
    return Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "session.timeout.ms": 10000,
    })


def read(consumer, count, timeout):
    out = []
    deadline = time.time() + timeout
    while len(out) < count and time.time() < deadline:
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        if msg.error():
            expect(msg.error().code() == KafkaError._PARTITION_EOF, "consumer error: %s" % msg.error())
            continue
        out.append(msg)
    return out


def main(bootstrap):
    name = topic("confluent-group")
    group = name + "-g"
    step("create topic")
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)])[name].result(timeout=30)

    step("produce")
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for i in range(TOTAL):
        producer.produce(name, value=b"v%d" % i, partition=0)
    expect(producer.flush(30) == 0, "produce did not complete")

    step("first consumer: subscribe and read")
    first = consumer_for(bootstrap, group)
    first.subscribe([name])
    got = read(first, FIRST, 60)
    expect(len(got) == FIRST, "first consumer read %d of %d records in 60 s" % (len(got), FIRST))
    values = [m.value() for m in got]
    expect(values == [b"v%d" % i for i in range(FIRST)], "first consumer read %r..." % values[:5])
    step("commit and committed()")
    last = got[-1]
    committed = first.commit(offsets=[TopicPartition(name, 0, last.offset() + 1)], asynchronous=False)
    expect(committed and committed[0].error is None, "commit result %s" % committed)
    back = first.committed([TopicPartition(name, 0)], timeout=10)
    expect(back[0].offset == FIRST, "committed offset reads back as %d, expected %d" % (back[0].offset, FIRST))
    first.close()
    log("first consumer read %d and committed offset %d" % (FIRST, FIRST))

    step("second consumer: resume after the commit")
    second = consumer_for(bootstrap, group)
    second.subscribe([name])
    got = read(second, TOTAL - FIRST, 60)
    expect(got, "second consumer read nothing in 60 s")
    expect(got[0].offset() == FIRST, "second consumer started at offset %d, expected %d (the commit)"
           % (got[0].offset(), FIRST))
    values = [m.value() for m in got]
    expect(values == [b"v%d" % i for i in range(FIRST, TOTAL)],
           "second consumer read %d records starting %r" % (len(values), values[:3]))
    second.close()


if __name__ == "__main__":
    run(main)
