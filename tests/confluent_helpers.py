"""confluent-kafka (librdkafka) produce and consume loops shared by the
suites. Consumers here use manual assignment (group consumers are in
test_groups.py): `group.id` is set (librdkafka requires one) but never joined.
"""

import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from workload import CONSUME_TIMEOUT_S

PRODUCE_TIMEOUT_S = 60.0


def admin(bootstrap):
    return AdminClient({"bootstrap.servers": bootstrap})


def create_topic(bootstrap, topic, partitions, config=None, timeout=15.0):
    client = admin(bootstrap)
    futures = client.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=1, config=config or {})],
        operation_timeout=timeout,
        request_timeout=timeout,
    )
    futures[topic].result(timeout=timeout)


def producer(bootstrap, **config):
    settings = {
        "bootstrap.servers": bootstrap,
        "linger.ms": 5,
        "enable.idempotence": False,
        "message.timeout.ms": 30_000,
    }
    settings.update({key.replace("_", "."): value for key, value in config.items()})
    return Producer(settings)


def produce(bootstrap, topic, messages, partition=None, timestamps=None, **config):
    """Produces [(key, value)] and waits for every delivery report.
    Returns ({value: (partition, offset)}, [(value, error)])."""
    client = producer(bootstrap, **config)
    delivered, errors = {}, []

    def on_delivery(error, message):
        if error is not None:
            errors.append((message.value(), error))
        else:
            delivered[message.value()] = (message.partition(), message.offset())

    deadline = time.monotonic() + PRODUCE_TIMEOUT_S
    for index, (key, value) in enumerate(messages):
        extra = {}
        if partition is not None:
            extra["partition"] = partition
        if timestamps is not None:
            extra["timestamp"] = timestamps[index]
        while True:
            try:
                client.produce(topic, key=key, value=value, on_delivery=on_delivery, **extra)
                break
            except BufferError:  # the local queue is full: serve delivery reports
                assert time.monotonic() < deadline, "the producer queue stayed full"
                client.poll(0.05)
        client.poll(0)
    remaining = client.flush(max(1.0, deadline - time.monotonic()))
    assert remaining == 0, f"{remaining} messages still unacknowledged after {PRODUCE_TIMEOUT_S} s"
    return delivered, errors


def produce_all(bootstrap, topic, messages, **config):
    delivered, errors = produce(bootstrap, topic, messages, **config)
    assert not errors, f"{len(errors)} delivery errors, e.g. {errors[:3]}"
    assert len(delivered) == len(messages)
    return delivered


def consumer(bootstrap, **config):
    settings = {
        "bootstrap.servers": bootstrap,
        "group.id": "pinion-tests-unjoined",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": True,
    }
    settings.update({key.replace("_", "."): value for key, value in config.items()})
    return Consumer(settings)


def consume(bootstrap, topic, partitions, expected, timeout=CONSUME_TIMEOUT_S):
    """Reads partitions 0..partitions-1 of `topic` from offset 0 until
    `expected` records arrived and every partition reached its end, then
    returns [(partition, offset, key, value)] in consume order."""
    client = consumer(bootstrap)
    try:
        client.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        records, at_end = [], set()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in client.consume(num_messages=1000, timeout=0.5):
                error = message.error()
                if error is None:
                    records.append((message.partition(), message.offset(), message.key(), message.value()))
                    at_end.discard(message.partition())
                elif error.code() == error._PARTITION_EOF:
                    at_end.add(message.partition())
                else:
                    raise KafkaException(error)
            if len(records) >= expected and len(at_end) == partitions:
                break
        return records
    finally:
        client.close()
