"""confluent-kafka (librdkafka) against pinion: admin, produce with every
codec and acks, consume back, offsets, topic and config administration."""

import os
import threading
import time

import pytest
from confluent_kafka import OFFSET_BEGINNING, TIMESTAMP_LOG_APPEND_TIME, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import (
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewPartitions,
    NewTopic,
    OffsetSpec,
)

import kafka_wire
from confluent_helpers import admin, consume, consumer, create_topic, produce, produce_all, producer
from workload import ACKS, CODECS, PARTITION_COUNT, check_consumed, make_messages

TIMEOUT_S = 15.0


def topic_partitions(bootstrap, topic):
    metadata = admin(bootstrap).list_topics(topic=topic, timeout=TIMEOUT_S)
    entry = metadata.topics[topic]
    assert entry.error is None, entry.error
    return sorted(entry.partitions)


def listed_topics(bootstrap):
    return set(admin(bootstrap).list_topics(timeout=TIMEOUT_S).topics)


def error_of(future):
    with pytest.raises(KafkaException) as raised:
        future.result(timeout=TIMEOUT_S)
    return raised.value.args[0]


def test_create_topic_with_6_partitions(shared_broker):
    create_topic(shared_broker.bootstrap, "ck-created", PARTITION_COUNT)
    assert topic_partitions(shared_broker.bootstrap, "ck-created") == list(range(PARTITION_COUNT))
    assert "ck-created" in listed_topics(shared_broker.bootstrap)
    cluster = admin(shared_broker.bootstrap).list_topics(timeout=TIMEOUT_S)
    assert [(b.host, b.port) for b in cluster.brokers.values()] == [("127.0.0.1", shared_broker.port)]
    for partition in cluster.topics["ck-created"].partitions.values():
        assert partition.leader in cluster.brokers


def test_creating_an_existing_topic_is_refused(shared_broker):
    create_topic(shared_broker.bootstrap, "ck-twice", 2)
    client = admin(shared_broker.bootstrap)
    futures = client.create_topics([NewTopic("ck-twice", num_partitions=2)])
    assert error_of(futures["ck-twice"]).code() == KafkaError.TOPIC_ALREADY_EXISTS


@pytest.mark.parametrize("acks", ACKS)
@pytest.mark.parametrize("codec", CODECS)
def test_produce_and_consume_every_codec(shared_broker, codec, acks):
    topic = f"ck-{codec}-acks{acks}"
    create_topic(shared_broker.bootstrap, topic, PARTITION_COUNT)
    messages = make_messages(topic)
    delivered = produce_all(shared_broker.bootstrap, topic, messages, compression_type=codec, acks=acks)
    records = consume(shared_broker.bootstrap, topic, PARTITION_COUNT, len(messages))
    check_consumed(records, messages, delivered=delivered)


def test_list_offsets_earliest_latest_and_by_time(shared_broker):
    bootstrap = shared_broker.bootstrap
    topic = "ck-offsets"
    create_topic(bootstrap, topic, 3)
    base = int(time.time() * 1000) - 60_000
    # Partition 0: one batch per message, a second apart. Partition 1: the
    # same timestamps in one batch, so the broker must look inside it;
    # partition 2: the same in one lz4 batch, which it must decompress.
    stamps = [base + i * 1000 for i in range(10)]
    for i, stamp in enumerate(stamps):
        produce_all(bootstrap, topic, [(b"k", b"p0-%d" % i)], partition=0, timestamps=[stamp])
    for partition, codec in [(1, "none"), (2, "lz4")]:
        delivered = produce_all(
            bootstrap,
            topic,
            [(b"k", b"p%d-%d" % (partition, i)) for i in range(10)],
            partition=partition,
            timestamps=stamps,
            linger_ms=200,
            compression_type=codec,
        )
        assert sorted(delivered.values()) == [(partition, i) for i in range(10)]

    client = consumer(bootstrap)
    try:
        for partition in (0, 1, 2):
            assert client.get_watermark_offsets(TopicPartition(topic, partition), timeout=TIMEOUT_S) == (0, 10)
        queries = [
            (base - 5000, 0),  # before everything: the first offset
            (base, 0),  # exact
            (base + 3500, 4),  # between: the next one
            (base + 9000, 9),  # the last
            (base + 60_000, -1),  # after everything: none
        ]
        for stamp, offset in queries:
            for partition in (0, 1, 2):
                found = client.offsets_for_times([TopicPartition(topic, partition, stamp)], timeout=TIMEOUT_S)
                assert found[0].error is None, found[0].error
                assert found[0].offset == offset, f"partition {partition} at {stamp - base} ms: {found[0]}"
    finally:
        client.close()


def produce_five_stamped(bootstrap, topic):
    """Five messages in partition 0, a second apart, one batch each."""
    create_topic(bootstrap, topic, 1)
    base = int(time.time() * 1000) - 60_000
    stamps = [base + i * 1000 for i in range(5)]
    for i, stamp in enumerate(stamps):
        produce_all(bootstrap, topic, [(None, b"v%d" % i)], partition=0, timestamps=[stamp])
    return stamps


def admin_list_offset(bootstrap, topic, spec):
    partition = TopicPartition(topic, 0)
    client = admin(bootstrap)
    return client.list_offsets({partition: spec}, request_timeout=TIMEOUT_S)[partition].result(timeout=TIMEOUT_S)


def test_admin_list_offsets(shared_broker):
    bootstrap = shared_broker.bootstrap
    stamps = produce_five_stamped(bootstrap, "ck-admin-offsets")
    specs = {
        "earliest": (OffsetSpec.earliest(), 0),
        "latest": (OffsetSpec.latest(), 5),
        "for_timestamp": (OffsetSpec.for_timestamp(stamps[2] + 500), 3),
    }
    for name, (spec, offset) in specs.items():
        result = admin_list_offset(bootstrap, "ck-admin-offsets", spec)
        assert result.offset == offset, f"{name}: offset {result.offset}"
    assert admin_list_offset(bootstrap, "ck-admin-offsets", OffsetSpec.for_timestamp(stamps[2])).timestamp == stamps[2]


def test_admin_list_offsets_max_timestamp(shared_broker):
    bootstrap = shared_broker.bootstrap
    stamps = produce_five_stamped(bootstrap, "ck-max-timestamp")
    result = admin_list_offset(bootstrap, "ck-max-timestamp", OffsetSpec.max_timestamp())
    assert (result.offset, result.timestamp) == (4, stamps[-1])


def test_delete_topic_removes_it_from_metadata(shared_broker):
    bootstrap = shared_broker.bootstrap
    create_topic(bootstrap, "ck-doomed", 3)
    produce_all(bootstrap, "ck-doomed", make_messages("doomed", count=100))
    assert "ck-doomed" in listed_topics(bootstrap)
    client = admin(bootstrap)
    client.delete_topics(["ck-doomed"], operation_timeout=TIMEOUT_S)["ck-doomed"].result(timeout=TIMEOUT_S)
    deadline = time.monotonic() + TIMEOUT_S
    while "ck-doomed" in listed_topics(bootstrap) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "ck-doomed" not in listed_topics(bootstrap)
    # Deleting it again: it is gone.
    client = admin(bootstrap)
    futures = client.delete_topics(["ck-doomed"], operation_timeout=TIMEOUT_S)
    assert error_of(futures["ck-doomed"]).code() == KafkaError.UNKNOWN_TOPIC_OR_PART


def test_produce_to_a_deleted_topic_fails_without_auto_create(start_broker):
    broker = start_broker("--auto-create-topics", "false", "--num-partitions", "6")
    bootstrap = broker.bootstrap
    create_topic(bootstrap, "ck-gone", 2)
    produce_all(bootstrap, "ck-gone", make_messages("gone", count=50))
    client = admin(bootstrap)
    client.delete_topics(["ck-gone"], operation_timeout=TIMEOUT_S)["ck-gone"].result(timeout=TIMEOUT_S)
    assert "ck-gone" not in listed_topics(bootstrap)
    delivered, errors = produce(
        bootstrap, "ck-gone", [(b"k", b"after delete")], message_timeout_ms=10_000, topic_metadata_propagation_max_ms=100
    )
    assert not delivered, f"produced to a deleted topic: {delivered}"
    codes = {error.code() for _, error in errors}
    assert codes <= {KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC}, errors
    # Never created behind our back either.
    assert "ck-gone" not in listed_topics(bootstrap)
    # On the wire: Metadata and Produce answer UNKNOWN_TOPIC_OR_PARTITION.
    with kafka_wire.Connection(broker.port) as conn:
        metadata = kafka_wire.parse_metadata_v4(
            conn.roundtrip(kafka_wire.API_METADATA, 4, kafka_wire.metadata_v4_body(["ck-gone"], allow_auto_create=True))
        )
        assert metadata == {"ck-gone": (kafka_wire.ERROR_UNKNOWN_TOPIC_OR_PARTITION, 0)}
        batch = kafka_wire.record_batch([(b"k", b"raw after delete")])
        produced = kafka_wire.parse_produce_v3(
            conn.roundtrip(kafka_wire.API_PRODUCE, 3, kafka_wire.produce_v3_body("ck-gone", 0, batch))
        )
        assert produced[("ck-gone", 0)][0] == kafka_wire.ERROR_UNKNOWN_TOPIC_OR_PARTITION, produced
    # A never-existing topic behaves the same.
    delivered, errors = produce(
        bootstrap, "ck-never", [(b"k", b"v")], message_timeout_ms=10_000, topic_metadata_propagation_max_ms=100
    )
    assert not delivered and errors
    assert "ck-never" not in listed_topics(bootstrap)


def test_create_partitions_increases_the_count(shared_broker):
    bootstrap = shared_broker.bootstrap
    topic = "ck-grow"
    create_topic(bootstrap, topic, 2)
    client = admin(bootstrap)
    client.create_partitions([NewPartitions(topic, 5)], operation_timeout=TIMEOUT_S)[topic].result(timeout=TIMEOUT_S)
    assert topic_partitions(bootstrap, topic) == [0, 1, 2, 3, 4]
    delivered = produce_all(bootstrap, topic, [(b"k", b"in the new partition")], partition=4)
    assert list(delivered.values()) == [(4, 0)]
    records = consume(bootstrap, topic, 5, 1)
    assert [(p, o, v) for p, o, _, v in records] == [(4, 0, b"in the new partition")]
    # Fewer partitions than now is refused and changes nothing.
    futures = client.create_partitions([NewPartitions(topic, 3)], operation_timeout=TIMEOUT_S)
    assert error_of(futures[topic]).code() == KafkaError.INVALID_PARTITIONS
    assert topic_partitions(bootstrap, topic) == [0, 1, 2, 3, 4]


def describe_topic_config(bootstrap, topic):
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    client = admin(bootstrap)
    entries = client.describe_configs([resource], request_timeout=TIMEOUT_S)[resource].result(timeout=TIMEOUT_S)
    return {name: entry.value for name, entry in entries.items()}


def test_describe_and_incrementally_alter_retention_ms(shared_broker):
    bootstrap = shared_broker.bootstrap
    topic = "ck-configs"
    create_topic(bootstrap, topic, 1)
    assert describe_topic_config(bootstrap, topic)["retention.ms"] == "604800000"
    resource = ConfigResource(
        ConfigResource.Type.TOPIC,
        topic,
        incremental_configs=[ConfigEntry("retention.ms", "3600000", incremental_operation=AlterConfigOpType.SET)],
    )
    client = admin(bootstrap)
    client.incremental_alter_configs([resource], request_timeout=TIMEOUT_S)[resource].result(timeout=TIMEOUT_S)
    assert describe_topic_config(bootstrap, topic)["retention.ms"] == "3600000"
    # DELETE goes back to the broker default.
    resource = ConfigResource(
        ConfigResource.Type.TOPIC,
        topic,
        incremental_configs=[ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE)],
    )
    client = admin(bootstrap)
    client.incremental_alter_configs([resource], request_timeout=TIMEOUT_S)[resource].result(timeout=TIMEOUT_S)
    assert describe_topic_config(bootstrap, topic)["retention.ms"] == "604800000"


def test_alter_configs_replaces_every_override(shared_broker):
    """AlterConfigs (the non-incremental API, which kafkajs', sarama's and
    older Java admin clients use) sets a topic's whole set of overrides:
    a config it does not name goes back to the broker default."""
    bootstrap = shared_broker.bootstrap
    topic = "ck-alter-replace"
    create_topic(bootstrap, topic, 1, config={"retention.ms": "123456", "max.message.bytes": "2048"})
    client = admin(bootstrap)
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic, set_config={"retention.bytes": "1048576"})
    client.alter_configs([resource], request_timeout=TIMEOUT_S)[resource].result(timeout=TIMEOUT_S)
    configs = describe_topic_config(bootstrap, topic)
    assert configs["retention.bytes"] == "1048576"
    assert configs["retention.ms"] == "604800000", "a config AlterConfigs did not name kept its override"
    assert configs["max.message.bytes"] != "2048", "a config AlterConfigs did not name kept its override"
    # validate_only changes nothing; a bad value changes nothing either.
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic, set_config={"retention.ms": "1000"})
    client.alter_configs([resource], validate_only=True)[resource].result(timeout=TIMEOUT_S)
    bad = ConfigResource(ConfigResource.Type.TOPIC, topic, set_config={"retention.ms": "soon"})
    assert error_of(client.alter_configs([bad])[bad]).code() == KafkaError.INVALID_CONFIG
    missing = ConfigResource(ConfigResource.Type.TOPIC, "ck-alter-no-such-topic", set_config={"retention.ms": "1"})
    assert error_of(client.alter_configs([missing])[missing]).code() == KafkaError.UNKNOWN_TOPIC_OR_PART
    configs = describe_topic_config(bootstrap, topic)
    assert (configs["retention.ms"], configs["retention.bytes"]) == ("604800000", "1048576")


def test_config_sources_say_where_each_value_comes_from(shared_broker):
    """A topic's override, a default the broker was given (the test brokers
    run with --log-segment-bytes) and a built-in default, as Kafka tells them."""
    bootstrap = shared_broker.bootstrap
    create_topic(bootstrap, "ck-config-sources", 1, config={"retention.ms": "123456"})
    resource = ConfigResource(ConfigResource.Type.TOPIC, "ck-config-sources")
    client = admin(bootstrap)
    entries = client.describe_configs([resource])[resource].result(timeout=TIMEOUT_S)
    sources = {name: ConfigSource(entries[name].source) for name in ("retention.ms", "segment.bytes", "cleanup.policy")}
    assert sources == {
        "retention.ms": ConfigSource.DYNAMIC_TOPIC_CONFIG,
        "segment.bytes": ConfigSource.STATIC_BROKER_CONFIG,
        "cleanup.policy": ConfigSource.DEFAULT_CONFIG,
    }
    assert entries["segment.bytes"].value == str(4 << 20)


def test_topic_created_with_configs_describes_them(shared_broker):
    bootstrap = shared_broker.bootstrap
    create_topic(bootstrap, "ck-with-config", 1, config={"retention.ms": "123456", "max.message.bytes": "2048"})
    configs = describe_topic_config(bootstrap, "ck-with-config")
    assert configs["retention.ms"] == "123456"
    assert configs["max.message.bytes"] == "2048"


@pytest.mark.parametrize("name", ["has space", "slash/name", "..", ".", "x" * 250, "star*"])
def test_invalid_topic_names_are_refused(shared_broker, name):
    client = admin(shared_broker.bootstrap)
    futures = client.create_topics([NewTopic(name, num_partitions=1)])
    assert error_of(futures[name]).code() == KafkaError.TOPIC_EXCEPTION
    assert name not in listed_topics(shared_broker.bootstrap)


def test_batch_over_max_message_bytes_is_refused(shared_broker):
    bootstrap = shared_broker.bootstrap
    topic = "ck-small"
    create_topic(bootstrap, topic, 1, config={"max.message.bytes": "1024"})
    # The client's own limit is high so that the broker is the one to refuse.
    delivered, errors = produce(
        bootstrap, topic, [(b"big", os.urandom(4096))], message_max_bytes=10_000_000, acks="1", retries=0
    )
    assert not delivered
    assert [error.code() for _, error in errors] == [KafkaError.MSG_SIZE_TOO_LARGE], errors
    # Small messages still go in, at offset 0: the refused batch took none.
    delivered = produce_all(bootstrap, topic, [(b"small", b"x" * 100)], acks="1")
    assert list(delivered.values()) == [(0, 0)]


def test_describe_cluster(shared_broker):
    client = admin(shared_broker.bootstrap)
    cluster = client.describe_cluster(request_timeout=TIMEOUT_S).result(timeout=TIMEOUT_S)
    assert cluster.cluster_id
    assert [(node.id, node.host, node.port) for node in cluster.nodes] == [(0, "127.0.0.1", shared_broker.port)]
    assert cluster.controller is not None and cluster.controller.id == 0


def test_acks_0(shared_broker):
    topic = "ck-acks0"
    create_topic(shared_broker.bootstrap, topic, PARTITION_COUNT)
    messages = make_messages(topic, count=5000)
    delivered, errors = produce(shared_broker.bootstrap, topic, messages, acks="0", compression_type="zstd")
    assert not errors and len(delivered) == len(messages)
    # Nothing is acknowledged, so wait for the data to show up.
    records = consume(shared_broker.bootstrap, topic, PARTITION_COUNT, len(messages))
    check_consumed(records, messages)


def test_headers_null_keys_and_values(shared_broker):
    topic = "ck-headers"
    client = producer(shared_broker.bootstrap)
    client.produce(topic, key=None, value=None, headers=[("h1", b"one"), ("h2", None), ("h1", b"again")], partition=0)
    client.produce(topic, key=b"", value=b"", partition=0)
    client.produce(topic, key=b"k", value=b"v" * 10, headers={"only": b"x"}, partition=0)
    assert client.flush(TIMEOUT_S) == 0
    reader = consumer(shared_broker.bootstrap)
    try:
        reader.assign([TopicPartition(topic, 0, 0)])
        messages = []
        deadline = time.monotonic() + TIMEOUT_S
        while len(messages) < 3 and time.monotonic() < deadline:
            messages += [m for m in reader.consume(10, 0.5) if m.error() is None]
        got = [(m.key(), m.value(), m.headers()) for m in messages]
        assert got == [
            (None, None, [("h1", b"one"), ("h2", None), ("h1", b"again")]),
            (b"", b"", None),
            (b"k", b"v" * 10, [("only", b"x")]),
        ]
    finally:
        reader.close()


def test_large_messages(shared_broker):
    topic = "ck-large"
    create_topic(shared_broker.bootstrap, topic, 1)
    values = [os.urandom(900_000) for _ in range(3)]
    delivered = produce_all(shared_broker.bootstrap, topic, [(b"k", v) for v in values], partition=0)
    assert sorted(delivered.values()) == [(0, 0), (0, 1), (0, 2)]
    records = consume(shared_broker.bootstrap, topic, 1, 3)
    assert [v for _, _, _, v in records] == values


def test_small_fetch_sizes_still_make_progress(shared_broker):
    topic = "ck-small-fetch"
    create_topic(shared_broker.bootstrap, topic, 1)
    messages = [(b"k", b"%05d" % i + b"x" * 200) for i in range(3000)]
    produce_all(shared_broker.bootstrap, topic, messages, partition=0, linger_ms=50)
    reader = consumer(shared_broker.bootstrap, fetch_max_bytes=2000, message_max_bytes=1000, max_partition_fetch_bytes=512)
    try:
        reader.assign([TopicPartition(topic, 0, 0)])
        values = []
        deadline = time.monotonic() + 30
        while len(values) < len(messages) and time.monotonic() < deadline:
            values += [m.value() for m in reader.consume(500, 0.5) if m.error() is None]
        assert values == [v for _, v in messages]
    finally:
        reader.close()


def test_concurrent_producers(shared_broker):
    topic = "ck-concurrent"
    create_topic(shared_broker.bootstrap, topic, PARTITION_COUNT)
    workloads = [make_messages(f"{topic}-{i}", count=5000, keys=7) for i in range(4)]
    delivered = {}
    failures = []

    def run(messages):
        try:
            delivered.update(produce_all(shared_broker.bootstrap, topic, messages, acks="all"))
        except Exception as error:  # reported below, in the test's thread
            failures.append(error)

    threads = [threading.Thread(target=run, args=(messages,)) for messages in workloads]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    assert not failures, failures
    everything = [message for messages in workloads for message in messages]
    records = consume(shared_broker.bootstrap, topic, PARTITION_COUNT, len(everything))
    check_consumed(records, everything, delivered=delivered)


def test_long_poll_wakes_up_on_produce(shared_broker):
    topic = "ck-long-poll"
    create_topic(shared_broker.bootstrap, topic, 1)
    reader = consumer(shared_broker.bootstrap, fetch_wait_max_ms=10_000, enable_partition_eof=False)
    try:
        reader.assign([TopicPartition(topic, 0, 0)])
        reader.consume(10, 1.0)  # a fetch is now parked on the empty partition
        started = time.monotonic()
        produce_all(shared_broker.bootstrap, topic, [(b"k", b"wake up")], partition=0)
        got = []
        while not got and time.monotonic() - started < 8:
            got = [m.value() for m in reader.consume(1, 0.1) if m.error() is None]
        waited = time.monotonic() - started
        assert got == [b"wake up"]
        assert waited < 3, f"the message took {waited:.1f} s: the parked fetch did not wake up on produce"
    finally:
        reader.close()


def test_offset_out_of_range(shared_broker):
    topic = "ck-out-of-range"
    create_topic(shared_broker.bootstrap, topic, 1)
    produce_all(shared_broker.bootstrap, topic, [(b"k", b"v%d" % i) for i in range(5)], partition=0)
    strict = consumer(shared_broker.bootstrap, auto_offset_reset="error")
    try:
        strict.assign([TopicPartition(topic, 0, 1_000_000)])
        errors = []
        deadline = time.monotonic() + TIMEOUT_S
        while not errors and time.monotonic() < deadline:
            errors = [m.error() for m in strict.consume(10, 0.5) if m.error() is not None]
        assert errors and errors[0].code() == KafkaError._AUTO_OFFSET_RESET, errors
        assert "out of range" in errors[0].str().lower(), errors[0]
    finally:
        strict.close()
    resetting = consumer(shared_broker.bootstrap, auto_offset_reset="earliest")
    try:
        resetting.assign([TopicPartition(topic, 0, 1_000_000)])
        values = []
        deadline = time.monotonic() + TIMEOUT_S
        while len(values) < 5 and time.monotonic() < deadline:
            values += [m.value() for m in resetting.consume(10, 0.5) if m.error() is None]
        assert values == [b"v%d" % i for i in range(5)]
    finally:
        resetting.close()


def test_delete_and_recreate_starts_empty(shared_broker):
    bootstrap, topic = shared_broker.bootstrap, "ck-reborn"
    create_topic(bootstrap, topic, 2)
    produce_all(bootstrap, topic, [(b"k%d" % i, b"old-%d" % i) for i in range(100)])
    client = admin(bootstrap)
    client.delete_topics([topic], operation_timeout=TIMEOUT_S)[topic].result(timeout=TIMEOUT_S)
    create_topic(bootstrap, topic, 3)
    assert topic_partitions(bootstrap, topic) == [0, 1, 2]
    reader = consumer(bootstrap)
    try:
        for partition in range(3):
            assert reader.get_watermark_offsets(TopicPartition(topic, partition), timeout=TIMEOUT_S) == (0, 0)
    finally:
        reader.close()
    delivered = produce_all(bootstrap, topic, [(b"k", b"new")], partition=1)
    assert list(delivered.values()) == [(1, 0)]
    assert [v for _, _, _, v in consume(bootstrap, topic, 3, 1)] == [b"new"]


def test_log_append_time_topic(shared_broker):
    topic = "ck-log-append-time"
    create_topic(shared_broker.bootstrap, topic, 1, config={"message.timestamp.type": "LogAppendTime"})
    before = int(time.time() * 1000)
    produce_all(
        shared_broker.bootstrap, topic, [(b"k", b"v%d" % i) for i in range(5)], partition=0, timestamps=[1000] * 5, compression_type="gzip"
    )
    after = int(time.time() * 1000)
    reader = consumer(shared_broker.bootstrap, check_crcs=True)
    try:
        reader.assign([TopicPartition(topic, 0, 0)])
        messages = []
        deadline = time.monotonic() + TIMEOUT_S
        while len(messages) < 5 and time.monotonic() < deadline:
            for message in reader.consume(10, 0.5):
                assert message.error() is None, message.error()  # check.crcs: the restamped CRC is right
                messages.append(message)
        assert [m.value() for m in messages] == [b"v%d" % i for i in range(5)]
        for message in messages:
            kind, stamp = message.timestamp()
            assert kind == TIMESTAMP_LOG_APPEND_TIME, message.timestamp()
            assert before - 1000 <= stamp <= after + 1000, (before, stamp, after)
    finally:
        reader.close()


def test_create_topics_errors(shared_broker):
    client = admin(shared_broker.bootstrap)
    cases = [
        (NewTopic("ck-rf3", num_partitions=1, replication_factor=3), KafkaError.INVALID_REPLICATION_FACTOR),
        (NewTopic("ck-zero", num_partitions=0), KafkaError.INVALID_PARTITIONS),
        (NewTopic("ck-bad-value", num_partitions=1, config={"retention.ms": "soon"}), KafkaError.INVALID_CONFIG),
        (NewTopic("ck-bad-key", num_partitions=1, config={"no.such.config": "1"}), KafkaError.INVALID_CONFIG),
    ]
    for new_topic, code in cases:
        futures = client.create_topics([new_topic], operation_timeout=TIMEOUT_S)
        assert error_of(futures[new_topic.topic]).code() == code, new_topic.topic
    assert not {t.topic for t, _ in cases} & listed_topics(shared_broker.bootstrap)
    # validate_only creates nothing; -1 partitions means the broker default.
    futures = client.create_topics([NewTopic("ck-validated", num_partitions=3)], validate_only=True)
    futures["ck-validated"].result(timeout=TIMEOUT_S)
    assert "ck-validated" not in listed_topics(shared_broker.bootstrap)
    client.create_topics([NewTopic("ck-default", num_partitions=-1)])["ck-default"].result(timeout=TIMEOUT_S)
    assert topic_partitions(shared_broker.bootstrap, "ck-default") == list(range(PARTITION_COUNT))
    longest = "y" * 249
    client.create_topics([NewTopic(longest, num_partitions=1)])[longest].result(timeout=TIMEOUT_S)


def test_alter_configs_errors(shared_broker):
    create_topic(shared_broker.bootstrap, "ck-alter-errors", 1)
    client = admin(shared_broker.bootstrap)
    cases = [
        ("ck-alter-errors", "retention.ms", "soon", KafkaError.INVALID_CONFIG),
        ("ck-alter-errors", "no.such.config", "1", KafkaError.INVALID_CONFIG),
        ("ck-no-such-topic", "retention.ms", "1000", KafkaError.UNKNOWN_TOPIC_OR_PART),
    ]
    for topic, name, value, code in cases:
        entry = ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SET)
        resource = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[entry])
        assert error_of(client.incremental_alter_configs([resource])[resource]).code() == code, (topic, name)
    assert describe_topic_config(shared_broker.bootstrap, "ck-alter-errors")["retention.ms"] == "604800000"


def test_retention_deletes_old_segments(start_broker):
    broker = start_broker("--log-retention-check-interval-ms", "200")
    topic = "ck-retention"
    create_topic(broker.bootstrap, topic, 1, config={"segment.bytes": "65536", "retention.ms": "600000"})
    old = int(time.time() * 1000) - 3_600_000
    for round_index in range(4):  # one flush per round: at least one segment each
        batch = [(b"k", b"old-%d-%03d" % (round_index, i) + b"x" * 400) for i in range(200)]
        produce_all(broker.bootstrap, topic, batch, partition=0, timestamps=[old] * len(batch))
    produce_all(broker.bootstrap, topic, [(b"k", b"fresh")], partition=0)
    reader = consumer(broker.bootstrap, auto_offset_reset="earliest")
    try:
        deadline = time.monotonic() + 20
        low, high = 0, 0
        while time.monotonic() < deadline:
            low, high = reader.get_watermark_offsets(TopicPartition(topic, 0), timeout=TIMEOUT_S)
            if low >= 800:
                break
            time.sleep(0.2)
        assert (low, high) == (800, 801), "segments older than retention.ms were not deleted"
        reader.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        got = []
        while not got and time.monotonic() < deadline:
            got = [(m.offset(), m.value()) for m in reader.consume(10, 0.5) if m.error() is None]
        assert got == [(800, b"fresh")]
    finally:
        reader.close()
