"""kafka-python (a pure-Python client with its own protocol code) against
pinion. pinion has no InitProducerId or group APIs yet, so producers turn
idempotence off and consumers use `group_id=None` with manual assignment."""

import importlib
import os
import time

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import AlterConfigOp, ConfigResource, ConfigResourceType, KafkaAdminClient
from kafka.errors import (
    InvalidPartitionsError,
    InvalidTopicError,
    MessageSizeTooLargeError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
)

from workload import ACKS, CODECS, CONSUME_TIMEOUT_S, PARTITION_COUNT, check_consumed, make_messages

TIMEOUT_MS = 15_000

# Python packages each kafka-python codec needs.
CODEC_MODULES = {"gzip": [], "snappy": ["snappy"], "lz4": ["lz4.frame"], "zstd": ["zstandard"]}


def admin(bootstrap):
    return KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=TIMEOUT_MS)


@pytest.fixture
def admin_client(shared_broker):
    client = admin(shared_broker.bootstrap)
    yield client
    client.close()


def create_topic(client, topic, partitions, configs=None):
    client.create_topics({topic: {"num_partitions": partitions, "replication_factor": 1, "configs": configs or {}}})


def producer(bootstrap, **config):
    settings = dict(bootstrap_servers=bootstrap, linger_ms=5, enable_idempotence=False, request_timeout_ms=TIMEOUT_MS)
    settings.update(config)
    return KafkaProducer(**settings)


def produce_all(bootstrap, topic, messages, partition=None, **config):
    """Sends [(key, value)], returns {value: (partition, offset)}."""
    client = producer(bootstrap, **config)
    try:
        futures = [(value, client.send(topic, key=key, value=value, partition=partition)) for key, value in messages]
        client.flush(timeout=60)
        delivered = {}
        for value, future in futures:
            metadata = future.get(timeout=10)
            delivered[value] = (metadata.partition, metadata.offset)
        return delivered
    finally:
        client.close(timeout=10)


def consumer(bootstrap):
    return KafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, request_timeout_ms=TIMEOUT_MS + 5000
    )


def consume(bootstrap, topic, partitions, expected):
    client = consumer(bootstrap)
    try:
        assigned = [TopicPartition(topic, p) for p in range(partitions)]
        client.assign(assigned)
        client.seek_to_beginning()
        records = []
        deadline = time.monotonic() + CONSUME_TIMEOUT_S
        while len(records) < expected and time.monotonic() < deadline:
            for batch in client.poll(timeout_ms=500).values():
                records += [(r.partition, r.offset, r.key, r.value) for r in batch]
        # A little longer, to see duplicates or extras.
        for batch in client.poll(timeout_ms=300).values():
            records += [(r.partition, r.offset, r.key, r.value) for r in batch]
        return records
    finally:
        client.close()


def test_create_topic_with_6_partitions(shared_broker, admin_client):
    create_topic(admin_client, "kp-created", PARTITION_COUNT)
    assert "kp-created" in admin_client.list_topics()
    described = admin_client.describe_topics(["kp-created"])
    assert len(described) == 1 and described[0]["error_code"] == 0
    assert sorted(p["partition_index"] for p in described[0]["partitions"]) == list(range(PARTITION_COUNT))
    with pytest.raises(TopicAlreadyExistsError):
        create_topic(admin_client, "kp-created", PARTITION_COUNT)


def codec_available(codec):
    for module in CODEC_MODULES.get(codec, []):
        try:
            importlib.import_module(module)
        except ImportError as error:
            return f"kafka-python's {codec} codec needs the python package {module!r} ({error}); pip install -r tests/requirements.txt"
    return None


@pytest.mark.parametrize("acks", ACKS)
@pytest.mark.parametrize("codec", CODECS)
def test_produce_and_consume_every_codec(shared_broker, admin_client, codec, acks):
    missing = codec_available(codec)
    if missing:
        pytest.skip(missing)
    topic = f"kp-{codec}-acks{acks}"
    create_topic(admin_client, topic, PARTITION_COUNT)
    messages = make_messages(topic)
    delivered = produce_all(
        shared_broker.bootstrap,
        topic,
        messages,
        compression_type=None if codec == "none" else codec,
        acks=1 if acks == "1" else "all",
    )
    records = consume(shared_broker.bootstrap, topic, PARTITION_COUNT, len(messages))
    check_consumed(records, messages, delivered=delivered)


def test_offsets_beginning_end_and_by_time(shared_broker, admin_client):
    bootstrap = shared_broker.bootstrap
    topic = "kp-offsets"
    create_topic(admin_client, topic, 2)
    base = int(time.time() * 1000) - 60_000
    client = producer(bootstrap)
    try:
        for i in range(10):
            client.send(topic, key=b"k", value=b"p0-%d" % i, partition=0, timestamp_ms=base + i * 1000)
            client.flush(timeout=10)  # one batch per message
        for i in range(10):
            client.send(topic, key=b"k", value=b"p1-%d" % i, partition=1, timestamp_ms=base + i * 1000)
        client.flush(timeout=10)
    finally:
        client.close(timeout=10)

    reader = consumer(bootstrap)
    try:
        partitions = [TopicPartition(topic, 0), TopicPartition(topic, 1)]
        assert reader.beginning_offsets(partitions) == {tp: 0 for tp in partitions}
        assert reader.end_offsets(partitions) == {tp: 10 for tp in partitions}
        for stamp, offset in [(base - 5000, 0), (base, 0), (base + 3500, 4), (base + 9000, 9)]:
            found = reader.offsets_for_times({tp: stamp for tp in partitions})
            for tp in partitions:
                assert found[tp] is not None and found[tp].offset == offset, f"{tp} at {stamp - base} ms: {found[tp]}"
                assert found[tp].timestamp == base + offset * 1000
        found = reader.offsets_for_times({tp: base + 60_000 for tp in partitions})
        assert found == {tp: None for tp in partitions}
    finally:
        reader.close()


def test_delete_topic(shared_broker, admin_client):
    create_topic(admin_client, "kp-doomed", 3)
    produce_all(shared_broker.bootstrap, "kp-doomed", make_messages("kp-doomed", count=100))
    admin_client.delete_topics(["kp-doomed"])
    assert "kp-doomed" not in admin_client.list_topics()
    with pytest.raises(UnknownTopicOrPartitionError):
        admin_client.delete_topics(["kp-doomed"])


def test_produce_to_a_deleted_topic_fails_without_auto_create(start_broker):
    broker = start_broker("--auto-create-topics", "false")
    client = admin(broker.bootstrap)
    try:
        create_topic(client, "kp-gone", 2)
        produce_all(broker.bootstrap, "kp-gone", [(b"k", b"before delete")])
        client.delete_topics(["kp-gone"])
        assert "kp-gone" not in client.list_topics()
        # kafka-python waits for the topic's metadata and gives up after max_block_ms.
        sender = producer(broker.bootstrap, max_block_ms=2000)
        try:
            with pytest.raises(Exception) as raised:
                sender.send("kp-gone", key=b"k", value=b"after delete").get(timeout=10)
            assert "kp-gone" in str(raised.value) or "metadata" in str(raised.value).lower(), raised.value
        finally:
            sender.close(timeout=5)
        assert "kp-gone" not in client.list_topics()
    finally:
        client.close()


def test_create_partitions(shared_broker, admin_client):
    create_topic(admin_client, "kp-grow", 2)
    admin_client.create_partitions({"kp-grow": 4})
    described = admin_client.describe_topics(["kp-grow"])
    assert sorted(p["partition_index"] for p in described[0]["partitions"]) == [0, 1, 2, 3]
    delivered = produce_all(shared_broker.bootstrap, "kp-grow", [(b"k", b"new")], partition=3)
    assert list(delivered.values()) == [(3, 0)]
    with pytest.raises(InvalidPartitionsError):
        admin_client.create_partitions({"kp-grow": 1})


def topic_configs(client, topic):
    result = client.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)], config_filter="all")
    (entries,) = [configs for by_name in result.values() for configs in by_name.values()]
    return {name: entry["value"] if isinstance(entry, dict) else entry for name, entry in entries.items()}


def test_describe_and_alter_retention_ms(shared_broker, admin_client):
    create_topic(admin_client, "kp-configs", 1)
    assert topic_configs(admin_client, "kp-configs")["retention.ms"] == "604800000"
    admin_client.alter_configs(
        [ConfigResource(ConfigResourceType.TOPIC, "kp-configs", configs={"retention.ms": (AlterConfigOp.SET, "7200000")})],
        incremental=True,
    )
    assert topic_configs(admin_client, "kp-configs")["retention.ms"] == "7200000"


def test_alter_configs_the_non_incremental_way(shared_broker, admin_client):
    """`incremental=False` sends AlterConfigs, which replaces every override:
    kafka-python first reads the topic's overrides and sends them along."""
    create_topic(admin_client, "kp-configs-old-api", 1, configs={"max.message.bytes": "4096"})
    admin_client.alter_configs(
        [ConfigResource(ConfigResourceType.TOPIC, "kp-configs-old-api", configs={"retention.ms": "7200000"})],
        incremental=False,
    )
    configs = topic_configs(admin_client, "kp-configs-old-api")
    assert (configs["retention.ms"], configs["max.message.bytes"]) == ("7200000", "4096")


@pytest.mark.parametrize("name", ["has space", "..", "x" * 250])
def test_invalid_topic_names(admin_client, name):
    with pytest.raises(InvalidTopicError):
        create_topic(admin_client, name, 1)


def test_message_over_max_message_bytes(shared_broker, admin_client):
    create_topic(admin_client, "kp-small", 1, configs={"max.message.bytes": "1024"})
    client = producer(shared_broker.bootstrap, max_request_size=10_000_000, retries=0, acks=1)
    try:
        future = client.send("kp-small", key=b"big", value=os.urandom(4096))
        with pytest.raises(MessageSizeTooLargeError):
            future.get(timeout=20)
    finally:
        client.close(timeout=5)
    assert list(produce_all(shared_broker.bootstrap, "kp-small", [(b"k", b"small")]).values()) == [(0, 0)]


def test_describe_cluster(shared_broker, admin_client):
    cluster = admin_client.describe_cluster()
    assert cluster["cluster_id"]
    assert [(b["broker_id"], b["host"], b["port"]) for b in cluster["brokers"]] == [(0, "127.0.0.1", shared_broker.port)]
