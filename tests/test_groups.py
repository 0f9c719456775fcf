"""Consumer groups and idempotent producers with real clients: a group of
consumers splits a topic's partitions and rebalances when one leaves,
committed offsets survive broker restarts, groups read independently, and
an idempotent producer's messages are stored exactly once and in order."""

import signal
import time

import pytest
from confluent_kafka import Consumer, TopicPartition

from confluent_helpers import create_topic, produce_all

TIMEOUT_S = 40.0
GROUP_ARGS = ("--num-partitions", "6", "--group-min-session-timeout-ms", "1000")


def group_consumer(bootstrap, group, **config):
    settings = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 500,
    }
    settings.update(config)
    return Consumer(settings)


def wait_for_assignments(consumers, sizes, timeout=TIMEOUT_S):
    """Polls every consumer until each holds the given number of partitions."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for c in consumers:
            c.poll(0.05)
        assigned = [sorted(tp.partition for tp in c.assignment()) for c in consumers]
        if [len(a) for a in assigned] == sizes:
            return assigned
    raise AssertionError(f"assignments never reached {sizes}: {assigned}")


def test_three_consumers_split_six_partitions_and_rebalance_on_leave(shared_broker):
    bootstrap = shared_broker.bootstrap
    create_topic(bootstrap, "groups-split", 6)
    consumers = [group_consumer(bootstrap, "split") for _ in range(3)]
    try:
        for c in consumers:
            c.subscribe(["groups-split"])
        started = time.monotonic()
        assigned = wait_for_assignments(consumers, [2, 2, 2])
        first = time.monotonic() - started
        assert sorted(p for a in assigned for p in a) == list(range(6)), "no partition owned twice or missed"
        consumers[0].close()
        started = time.monotonic()
        assigned = wait_for_assignments(consumers[1:], [3, 3])
        rebalance = time.monotonic() - started
        assert sorted(p for a in assigned for p in a) == list(range(6))
        print(f"group formed in {first:.2f} s; rebalance after a leave took {rebalance:.2f} s")
    finally:
        for c in consumers[1:]:
            c.close()


def consume_group(bootstrap, group, topic, expected, commit=True, timeout=TIMEOUT_S):
    """Consumes `expected` messages as a member of `group`; commits them."""
    c = group_consumer(bootstrap, group)
    c.subscribe([topic])
    values = []
    deadline = time.monotonic() + timeout
    try:
        while len(values) < expected and time.monotonic() < deadline:
            message = c.poll(0.2)
            if message is None or message.error():
                continue
            values.append(message.value())
        if commit and values:
            c.commit(asynchronous=False)
    finally:
        c.close()
    return values


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_committed_offsets_survive_a_restart_and_the_group_resumes(start_broker, sig):
    broker = start_broker(*GROUP_ARGS)
    create_topic(broker.bootstrap, "groups-resume", 6)
    first = [(f"k{i}".encode(), f"first-{i}".encode()) for i in range(600)]
    produce_all(broker.bootstrap, "groups-resume", first, acks="all")
    got = consume_group(broker.bootstrap, "resume", "groups-resume", len(first))
    assert sorted(got) == sorted(v for _, v in first)

    broker.stop(sig)
    broker.start()

    second = [(f"k{i}".encode(), f"second-{i}".encode()) for i in range(300)]
    produce_all(broker.bootstrap, "groups-resume", second, acks="all")
    got = consume_group(broker.bootstrap, "resume", "groups-resume", len(second), timeout=20.0)
    assert sorted(got) == sorted(v for _, v in second), "the group resumes at its committed offsets, not earlier"
    check = group_consumer(broker.bootstrap, "resume")
    try:
        committed = check.committed([TopicPartition("groups-resume", p) for p in range(6)], timeout=15)
        assert sum(tp.offset for tp in committed) == len(first) + len(second)
    finally:
        check.close()


def test_two_groups_read_the_same_topic_independently(shared_broker):
    bootstrap = shared_broker.bootstrap
    create_topic(bootstrap, "groups-two", 6)
    messages = [(f"k{i}".encode(), f"v{i}".encode()) for i in range(1200)]
    produce_all(bootstrap, "groups-two", messages)
    a = consume_group(bootstrap, "reader-a", "groups-two", len(messages))
    b = consume_group(bootstrap, "reader-b", "groups-two", len(messages))
    assert sorted(a) == sorted(b) == sorted(v for _, v in messages)


def test_kafka_python_group_consumer_reads_everything(shared_broker):
    from kafka import KafkaConsumer

    bootstrap = shared_broker.bootstrap
    create_topic(bootstrap, "groups-kafka-python", 6)
    messages = [(f"k{i}".encode(), f"v{i}".encode()) for i in range(900)]
    produce_all(bootstrap, "groups-kafka-python", messages)
    consumer = KafkaConsumer(
        "groups-kafka-python",
        bootstrap_servers=bootstrap,
        group_id="kafka-python-group",
        auto_offset_reset="earliest",
        consumer_timeout_ms=8000,
    )
    try:
        values = [m.value for m in consumer]
        consumer.commit()
    finally:
        consumer.close()
    assert sorted(values) == sorted(v for _, v in messages)


def test_idempotent_producer_stores_every_message_once_in_order(shared_broker):
    bootstrap = shared_broker.bootstrap
    create_topic(bootstrap, "groups-idempotent", 6)
    messages = [(f"k{i % 30}".encode(), f"v{i}".encode()) for i in range(6000)]
    delivered = produce_all(bootstrap, "groups-idempotent", messages, enable_idempotence=True, acks="all")
    offsets = sorted(delivered.values())
    assert len(set(offsets)) == len(messages), "every message has its own offset"
    values = consume_group(bootstrap, "idempotent-check", "groups-idempotent", len(messages), commit=False)
    assert len(values) == len(messages) and sorted(values) == sorted(v for _, v in messages)


def test_kafka_python_idempotent_producer(shared_broker):
    from kafka import KafkaProducer

    bootstrap = shared_broker.bootstrap
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")  # idempotence on by default
    futures = [producer.send("groups-kp-idempotent", key=b"k", value=f"v{i}".encode()) for i in range(500)]
    producer.flush()
    offsets = [f.get(timeout=15).offset for f in futures]
    producer.close()
    assert offsets == sorted(offsets) and len(set(offsets)) == 500
