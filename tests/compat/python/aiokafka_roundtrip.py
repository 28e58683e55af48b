"""aiokafka: async producer + consumer round trip (assign, no group)."""

import asyncio

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from common import expect, log, run, step, topic

TOTAL = 500


async def roundtrip(bootstrap):
    name = topic("aiokafka")  # auto-created by Metadata
    step("produce %d records" % TOTAL)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        futures = [await producer.send(name, key=b"k%d" % i, value=b"async-%d" % i, partition=0)
                   for i in range(TOTAL)]
        await producer.flush()
        offsets = [(await f).offset for f in futures]
    finally:
        await producer.stop()
    expect(offsets == list(range(TOTAL)), "producer got offsets %s..., expected 0..%d" % (offsets[:5], TOTAL - 1))

    step("consume with assign()")
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        tp = TopicPartition(name, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        got = []

        async def read_all():
            while len(got) < TOTAL:
                for records in (await consumer.getmany(tp, timeout_ms=500)).values():
                    got.extend(records)

        try:
            await asyncio.wait_for(read_all(), 60)
        except asyncio.TimeoutError:
            pass
        expect(len(got) == TOTAL, "read %d of %d records in 60 s" % (len(got), TOTAL))
        for i, r in enumerate(got):
            expect((r.offset, r.key, r.value) == (i, b"k%d" % i, b"async-%d" % i),
                   "record %d read back as offset %d key %r value %r" % (i, r.offset, r.key, r.value))
        end = (await consumer.end_offsets([tp]))[tp]
        expect(end == TOTAL, "end offset %d, expected %d" % (end, TOTAL))
    finally:
        await consumer.stop()
    log("round trip of %d records ok" % TOTAL)


def main(bootstrap):
    asyncio.run(roundtrip(bootstrap))


if __name__ == "__main__":
    run(main)
