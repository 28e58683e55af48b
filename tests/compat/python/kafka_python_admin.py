"""kafka-python KafkaAdminClient: create_topics, then delete_topics, with
the topic list checked after each."""

import time

from kafka.admin import KafkaAdminClient, NewTopic

from common import expect, log, run, step, topic


def wait_for(cond, what, timeout=15):
    deadline = time.time() + timeout
    while not cond():
        expect(time.time() < deadline, "timed out waiting for %s" % what)
        time.sleep(0.2)


def main(bootstrap):
    name = topic("kafka-python-admin")
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="weir-compat")
    step("create_topics %s" % name)
    admin.create_topics([NewTopic(name=name, num_partitions=2, replication_factor=1)], timeout_ms=30000)
    wait_for(lambda: name in admin.list_topics(), "%s in list_topics after create" % name)
    step("describe_topics")
    described = admin.describe_topics([name])
    expect(len(described) == 1 and described[0]["error_code"] == 0, "describe_topics: %r" % described)
    parts = described[0]["partitions"]
    expect(len(parts) == 2, "describe_topics shows %d partitions, created 2" % len(parts))
    log("created %s with partitions %s" % (name, [p["partition_index"] for p in parts]))

    step("delete_topics")
    admin.delete_topics([name], timeout_ms=30000)
    wait_for(lambda: name not in admin.list_topics(), "%s gone from list_topics after delete" % name)
    admin.close()


if __name__ == "__main__":
    run(main)
