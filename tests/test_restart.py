"""Restarts on the same data directory: whatever the broker acknowledged is
there afterwards, at the offsets it was acknowledged with, after a clean
SIGTERM and after a SIGKILL (acks=all is fdatasync'd; acks=1 is written
with O_DIRECT, so it survives the death of the process too)."""

import signal
import time

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, NewPartitions

from confluent_helpers import admin, consume, consumer, create_topic, producer, produce_all
from workload import PARTITION_COUNT, check_consumed, make_messages

TIMEOUT_S = 15.0
# Small segments, so that 20,000 messages roll several per partition and
# recovery has more than one segment to check. These tests check durability
# (every acknowledged message back at its offset, nothing duplicated), not
# per-key order: appends that meet a segment roll can be stored out of
# request order, a broker bug test_protocol.py pins down
# (test_pipelined_produce_keeps_request_order_across_segment_rolls).
SEGMENT_ARGS = ("--num-partitions", str(PARTITION_COUNT), "--log-segment-bytes", str(256 << 10))


def end_offsets(bootstrap, topic, partitions):
    client = consumer(bootstrap)
    try:
        return [client.get_watermark_offsets(TopicPartition(topic, p), timeout=TIMEOUT_S)[1] for p in range(partitions)]
    finally:
        client.close()


def restart(broker, sig):
    code = broker.stop(sig)
    if sig == signal.SIGTERM:
        assert code == 0, f"exit status {code} after SIGTERM\n{broker.log_tail()}"
    else:
        assert code == -sig, code
    broker.start()


@pytest.mark.parametrize(
    "sig, acks",
    [(signal.SIGTERM, "all"), (signal.SIGKILL, "all"), (signal.SIGKILL, "1")],
    ids=["sigterm-acks-all", "sigkill-acks-all", "sigkill-acks-1"],
)
def test_acknowledged_messages_survive_a_restart(start_broker, sig, acks):
    broker = start_broker(*SEGMENT_ARGS)
    topic = "restart"
    messages = make_messages(f"restart-{acks}")
    delivered = produce_all(broker.bootstrap, topic, messages, acks=acks, compression_type="lz4")
    ends = end_offsets(broker.bootstrap, topic, PARTITION_COUNT)
    assert sum(ends) == len(messages)

    restart(broker, sig)

    assert end_offsets(broker.bootstrap, topic, PARTITION_COUNT) == ends
    records = consume(broker.bootstrap, topic, PARTITION_COUNT, len(messages))
    check_consumed(records, messages, delivered=delivered)
    # New messages go after the old ones: no offset is handed out twice.
    more = make_messages(f"after-restart-{acks}", count=600)
    delivered_more = produce_all(broker.bootstrap, topic, more, acks=acks)
    for partition, offset in delivered_more.values():
        assert offset >= ends[partition], f"partition {partition}: offset {offset} reused (end was {ends[partition]})"
    records = consume(broker.bootstrap, topic, PARTITION_COUNT, len(messages) + len(more))
    check_consumed(records, messages + more, delivered={**delivered, **delivered_more})


@pytest.mark.parametrize(
    "sig, acks",
    [(signal.SIGKILL, "all"), (signal.SIGKILL, "1"), (signal.SIGTERM, "all")],
    ids=["sigkill-acks-all", "sigkill-acks-1", "sigterm-acks-all"],
)
def test_stop_while_producing_keeps_every_acknowledged_message(start_broker, sig, acks):
    broker = start_broker(*SEGMENT_ARGS)
    topic = "killed"
    create_topic(broker.bootstrap, topic, PARTITION_COUNT)
    messages = make_messages(f"killed-{acks}", count=30_000)
    client = producer(broker.bootstrap, acks=acks, message_timeout_ms=5000, linger_ms=2)
    delivered, failed = {}, []

    def on_delivery(error, message):
        if error is None:
            delivered[message.value()] = (message.partition(), message.offset())
        else:
            failed.append(message.value())

    chunk = 500
    for start in range(0, len(messages), chunk):
        if start == len(messages) // 2:
            deadline = time.monotonic() + 20
            while len(delivered) < 2 * chunk and time.monotonic() < deadline:
                client.poll(0.01)  # some acknowledgements first, even on a slow machine
            broker.stop(sig)  # in the middle of the stream, requests in flight
        for key, value in messages[start:start + chunk]:
            client.produce(topic, key=key, value=value, on_delivery=on_delivery)
        client.poll(0.005)
    assert client.flush(30) == 0
    assert len(delivered) + len(failed) == len(messages)
    assert len(delivered) >= chunk, "too few messages were acknowledged before the kill to test anything"
    assert failed, "no message failed: the kill came too late to test anything"

    broker.start()
    ends = end_offsets(broker.bootstrap, topic, PARTITION_COUNT)
    records = consume(broker.bootstrap, topic, PARTITION_COUNT, sum(ends))
    assert len(records) == sum(ends)
    found = {value: (partition, offset) for partition, offset, _, value in records}
    lost = {value: place for value, place in delivered.items() if found.get(value) != place}
    assert not lost, f"{len(lost)} of {len(delivered)} acknowledged messages lost or moved, e.g. {list(lost.items())[:3]}"
    # What survived beyond the acknowledged messages is a clean prefix of
    # each partition: offsets 0..end-1, no duplicates, per-key order kept.
    survived = {value for value in found}
    produced = [(key, value) for key, value in messages if value in survived]
    check_consumed(records, produced, delivered={**found, **delivered})


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_topics_configs_and_deletions_survive_a_restart(start_broker, sig):
    broker = start_broker(*SEGMENT_ARGS)
    bootstrap = broker.bootstrap
    create_topic(bootstrap, "kept", 2, config={"retention.ms": "3600000", "max.message.bytes": "4096"})
    create_topic(bootstrap, "grown", 1)
    create_topic(bootstrap, "deleted", 3)
    client = admin(bootstrap)
    client.create_partitions([NewPartitions("grown", 4)])["grown"].result(timeout=TIMEOUT_S)
    client.delete_topics(["deleted"])["deleted"].result(timeout=TIMEOUT_S)
    alter = ConfigResource(
        ConfigResource.Type.TOPIC,
        "grown",
        incremental_configs=[ConfigEntry("retention.ms", "7200000", incremental_operation=AlterConfigOpType.SET)],
    )
    client.incremental_alter_configs([alter])[alter].result(timeout=TIMEOUT_S)
    produce_all(bootstrap, "grown", [(b"k", b"in partition 3")], partition=3, acks="all")

    restart(broker, sig)

    client = admin(broker.bootstrap)
    topics = client.list_topics(timeout=TIMEOUT_S).topics
    assert "deleted" not in topics
    assert sorted(topics["kept"].partitions) == [0, 1]
    assert sorted(topics["grown"].partitions) == [0, 1, 2, 3]
    resource = ConfigResource(ConfigResource.Type.TOPIC, "kept")
    entries = client.describe_configs([resource])[resource].result(timeout=TIMEOUT_S)
    assert entries["retention.ms"].value == "3600000"
    assert entries["max.message.bytes"].value == "4096"
    resource = ConfigResource(ConfigResource.Type.TOPIC, "grown")
    assert client.describe_configs([resource])[resource].result(timeout=TIMEOUT_S)["retention.ms"].value == "7200000"
    records = consume(broker.bootstrap, "grown", 4, 1)
    assert [(p, o, v) for p, o, _, v in records] == [(3, 0, b"in partition 3")]


def test_sigterm_stops_promptly_with_clients_connected(start_broker):
    broker = start_broker(*SEGMENT_ARGS)
    produce_all(broker.bootstrap, "idle", make_messages("idle", count=100))
    reader = consumer(broker.bootstrap)
    try:
        reader.assign([TopicPartition("idle", p, 0) for p in range(PARTITION_COUNT)])
        reader.consume(num_messages=1000, timeout=2)  # now it long-polls an idle topic
        started = time.monotonic()
        assert broker.stop(signal.SIGTERM) == 0
        assert time.monotonic() - started < 10
    finally:
        reader.close()
