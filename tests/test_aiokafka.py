"""aiokafka (the asyncio Python client, with its own protocol code, which
picks each API's version from the broker's ApiVersions) against pinion:
admin (create with TOPIC_ALREADY_EXISTS, metadata, partitions, delete, a
deleted topic unknown without auto-create, topic and broker configs,
AlterConfigs replacing a topic's overrides and refusing bad ones, cluster,
consumer groups described and listed, their committed offsets), the keyed
workload with every codec x acks 1/all and the offsets aiokafka was
acknowledged with, consumer groups (a group resumes at its committed
offsets; two members split six partitions), the idempotent producer,
headers and null keys and values, MESSAGE_TOO_LARGE from the broker, and
beginning/end offsets and offsets by time.

Each test runs its coroutine with `asyncio.run`, bounded as a whole; every
await that could hang has its own bound too. The workload consumer assigns
partitions by hand (`group_id=None`). aiokafka's default partitioner is
murmur2 (as Java's), so only consistency is checked: one partition per key,
and each message where aiokafka was told it is. aiokafka has no
IncrementalAlterConfigs (its alter_configs is AlterConfigs), so that API is
left to the other suites."""

import asyncio
import collections
import contextlib
import importlib
import os
import time

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
from aiokafka.errors import (
    InvalidConfigurationError,
    InvalidPartitionsError,
    MessageSizeTooLargeError,
    NoError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
    for_code,
)

from workload import ACKS, CODECS, CONSUME_TIMEOUT_S, PARTITION_COUNT, check_consumed, make_messages

TIMEOUT_MS = 15_000
# Bounds on single awaits: starting or stopping a client, one admin call.
STEP_TIMEOUT_S = 20.0
# The whole coroutine of one test (pytest's own timeout is 120 s).
TEST_TIMEOUT_S = 100.0
DEFAULT_RETENTION_MS = "604800000"
DEFAULT_MAX_MESSAGE_BYTES = "1048588"
# Broker 0's defaults under their broker names; the fixtures run every broker
# with 4 MiB segments (conftest.DEFAULT_ARGS).
BROKER_DEFAULTS = {
    "log.retention.ms": DEFAULT_RETENTION_MS,
    "log.retention.bytes": "-1",
    "log.segment.bytes": str(4 << 20),
    "log.cleanup.policy": "delete",
    "message.max.bytes": DEFAULT_MAX_MESSAGE_BYTES,
}
# DescribeConfigs' config_source: an override of the topic, or the default.
DYNAMIC_TOPIC_CONFIG, DEFAULT_CONFIG = 1, 5

# aiokafka 0.14's snappy, lz4 and zstd all come from cramjam.
CODEC_MODULES = {"gzip": [], "snappy": ["cramjam"], "lz4": ["cramjam"], "zstd": ["cramjam"]}


def run(coroutine, timeout_s=TEST_TIMEOUT_S):
    """Runs a test's coroutine in a new event loop, bounded as a whole."""
    return asyncio.run(asyncio.wait_for(coroutine, timeout_s))


async def step(awaitable, timeout_s=STEP_TIMEOUT_S):
    return await asyncio.wait_for(awaitable, timeout_s)


# --- clients -----------------------------------------------------------------


async def admin(bootstrap):
    client = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=TIMEOUT_MS)
    await step(client.start())
    return client


@contextlib.asynccontextmanager
async def admin_session(bootstrap):
    """A started admin client, closed (bounded) on the way out."""
    client = await admin(bootstrap)
    try:
        yield client
    finally:
        await close(client)


async def started_producer(bootstrap, **config):
    settings = dict(bootstrap_servers=bootstrap, linger_ms=5, request_timeout_ms=TIMEOUT_MS)
    settings.update(config)
    client = AIOKafkaProducer(**settings)
    await step(client.start())
    return client


async def started_consumer(bootstrap, *topics, **config):
    settings = dict(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, request_timeout_ms=TIMEOUT_MS + 5000
    )
    settings.update(config)
    client = AIOKafkaConsumer(*topics, **settings)
    await step(client.start())
    return client


async def close(*clients):
    """Stops (or closes, for the admin client) every client, each bounded."""
    for client in clients:
        stop = client.close() if isinstance(client, AIOKafkaAdminClient) else client.stop()
        await step(stop)


def topic_errors(response):
    """{topic: error class} of a CreateTopics or DeleteTopics response."""
    rows = getattr(response, "topic_errors", None) or getattr(response, "topic_error_codes")
    return {row[0]: for_code(row[1]) for row in rows}


async def create_topic(client, topic, partitions, configs=None):
    response = await step(client.create_topics([NewTopic(topic, partitions, 1, topic_configs=configs or {})]))
    assert topic_errors(response) == {topic: NoError}, response


async def partitions_of(client, topic):
    """{partition: metadata} of the topic, from describe_topics (Metadata)."""
    (entry,) = await step(client.describe_topics([topic]))
    assert (entry["topic"], entry["error_code"]) == (topic, 0), entry
    return {p["partition"]: p for p in entry["partitions"]}


async def topic_configs(client, topic, names=None):
    """{name: (value, config_source)} from describe_configs (DescribeConfigs)."""
    configs = None if names is None else {name: None for name in names}
    (response,) = await step(client.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs)]))
    (resource,) = response.resources
    error_code, _, _, name = resource[:4]
    assert (error_code, name) == (0, topic), resource
    return {entry[0]: (entry[1], entry[3]) for entry in resource[4]}


async def produce_all(bootstrap, topic, messages, partition=None, **config):
    """Sends [(key, value)], returns {value: (partition, offset)} from
    aiokafka's acknowledgements."""
    client = await started_producer(bootstrap, **config)
    try:
        futures = [
            (value, await step(client.send(topic, key=key, value=value, partition=partition)))
            for key, value in messages
        ]
        await step(client.flush(), timeout_s=60)
        delivered = {}
        for value, future in futures:
            metadata = await step(future)
            delivered[value] = (metadata.partition, metadata.offset)
        return delivered
    finally:
        await close(client)


def as_rows(records):
    return [(r.partition, r.offset, r.key, r.value) for r in records]


async def read_until(consumer, expected, timeout_s=CONSUME_TIMEOUT_S, linger_s=0.3):
    """Records from `consumer.getmany` until `expected` came (or the time is
    up), then `linger_s` more to see duplicates or extras; in consume order."""
    records = []
    deadline = time.monotonic() + timeout_s
    while len(records) < expected and time.monotonic() < deadline:
        for batch in (await step(consumer.getmany(timeout_ms=500))).values():
            records += batch
    linger_end = time.monotonic() + linger_s
    while time.monotonic() < linger_end:
        for batch in (await step(consumer.getmany(timeout_ms=100))).values():
            records += batch
    return records


async def consume(bootstrap, topic, partitions, expected):
    """[(partition, offset, key, value)] from the beginning of every
    partition, assigned by hand, in the order consumed."""
    client = await started_consumer(bootstrap)
    try:
        client.assign([TopicPartition(topic, p) for p in range(partitions)])
        await step(client.seek_to_beginning())
        return as_rows(await read_until(client, expected))
    finally:
        await close(client)


# --- admin -------------------------------------------------------------------


def test_create_topic_with_6_partitions_and_an_existing_one(shared_broker):
    async def body():
        async with admin_session(shared_broker.bootstrap) as client:
            await create_topic(client, "aio-created", PARTITION_COUNT)
            assert "aio-created" in await step(client.list_topics())
            partitions = await partitions_of(client, "aio-created")
            assert sorted(partitions) == list(range(PARTITION_COUNT))
            for partition in partitions.values():
                assert (partition["error_code"], partition["leader"], partition["replicas"]) == (0, 0, [0]), partition
            # A second create answers TOPIC_ALREADY_EXISTS (aiokafka hands the
            # response back rather than raising) and changes nothing.
            again = await step(client.create_topics([NewTopic("aio-created", 2, 1)]))
            assert topic_errors(again) == {"aio-created": TopicAlreadyExistsError}, again
            assert sorted(await partitions_of(client, "aio-created")) == list(range(PARTITION_COUNT))

    run(body())


def test_create_partitions(shared_broker):
    async def body():
        async with admin_session(shared_broker.bootstrap) as client:
            await create_topic(client, "aio-grow", 2)
            await step(client.create_partitions({"aio-grow": NewPartitions(4)}))
            assert sorted(await partitions_of(client, "aio-grow")) == [0, 1, 2, 3]
            sent = [(b"k", b"in the new partition")]
            delivered = await produce_all(shared_broker.bootstrap, "aio-grow", sent, partition=3)
            assert list(delivered.values()) == [(3, 0)]
            records = await consume(shared_broker.bootstrap, "aio-grow", 4, 1)
            assert [(p, o, v) for p, o, _, v in records] == [(3, 0, b"in the new partition")]
            # Fewer partitions than now is refused and changes nothing.
            with pytest.raises(InvalidPartitionsError):
                await step(client.create_partitions({"aio-grow": NewPartitions(1)}))
            assert sorted(await partitions_of(client, "aio-grow")) == [0, 1, 2, 3]

    run(body())


def test_delete_topic(shared_broker):
    async def body():
        async with admin_session(shared_broker.bootstrap) as client:
            await create_topic(client, "aio-doomed", 3)
            await produce_all(shared_broker.bootstrap, "aio-doomed", make_messages("aio-doomed", count=100))
            assert "aio-doomed" in await step(client.list_topics())
            response = await step(client.delete_topics(["aio-doomed"]))
            assert topic_errors(response) == {"aio-doomed": NoError}, response
            assert "aio-doomed" not in await step(client.list_topics())
            # Deleting it again: UNKNOWN_TOPIC_OR_PARTITION.
            response = await step(client.delete_topics(["aio-doomed"]))
            assert topic_errors(response) == {"aio-doomed": UnknownTopicOrPartitionError}, response
            assert "aio-doomed" not in await step(client.list_topics())

    run(body())


def test_a_deleted_topic_is_unknown_without_auto_create(start_broker):
    """aiokafka's describe_topics asks Metadata to create missing topics, as
    Kafka clients do, so the shared broker (auto-create on) would bring a
    deleted topic back: this one runs with auto-create off."""
    broker = start_broker("--auto-create-topics", "false")

    async def body():
        async with admin_session(broker.bootstrap) as client:
            await create_topic(client, "aio-gone", 2)
            delivered = await produce_all(broker.bootstrap, "aio-gone", [(b"k", b"before delete")], partition=1)
            assert list(delivered.values()) == [(1, 0)]
            response = await step(client.delete_topics(["aio-gone"]))
            assert topic_errors(response) == {"aio-gone": NoError}, response
            (entry,) = await step(client.describe_topics(["aio-gone"]))
            assert (entry["topic"], for_code(entry["error_code"]), entry["partitions"]) == (
                "aio-gone",
                UnknownTopicOrPartitionError,
                [],
            ), entry
            # The producer waits for the topic's metadata, then gives up.
            sender = await started_producer(broker.bootstrap, request_timeout_ms=2000)
            try:
                with pytest.raises(UnknownTopicOrPartitionError):
                    await step(sender.send("aio-gone", key=b"k", value=b"after delete"))
            finally:
                await close(sender)
            assert "aio-gone" not in await step(client.list_topics())

    run(body())


def test_describe_and_alter_topic_configs(shared_broker):
    async def body():
        async with admin_session(shared_broker.bootstrap) as client:
            await create_topic(client, "aio-plain", 1)
            plain = await topic_configs(client, "aio-plain")
            assert (plain["retention.ms"], plain["max.message.bytes"], plain["cleanup.policy"]) == (
                (DEFAULT_RETENTION_MS, DEFAULT_CONFIG),
                (DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_CONFIG),
                ("delete", DEFAULT_CONFIG),
            ), plain

            topic = "aio-configs"
            await create_topic(client, topic, 1, configs={"retention.ms": "123456", "max.message.bytes": "2048"})
            configs = await topic_configs(client, topic)
            assert (configs["retention.ms"], configs["max.message.bytes"]) == (
                ("123456", DYNAMIC_TOPIC_CONFIG),
                ("2048", DYNAMIC_TOPIC_CONFIG),
            ), configs
            assert await topic_configs(client, topic, names=["retention.ms"]) == {
                "retention.ms": ("123456", DYNAMIC_TOPIC_CONFIG)
            }

            # alter_configs is AlterConfigs (not incremental): the topic's
            # overrides become exactly the ones named, the others go back to the default.
            (response,) = await step(
                client.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, {"retention.ms": "7200000"})])
            )
            assert [(r[0], r[3]) for r in response.resources] == [(0, topic)], response
            configs = await topic_configs(client, topic)
            assert (configs["retention.ms"], configs["max.message.bytes"]) == (
                ("7200000", DYNAMIC_TOPIC_CONFIG),
                (DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_CONFIG),
            ), configs

            # A bad value or an unknown name is refused (INVALID_CONFIG) and changes nothing.
            for entries in [{"retention.ms": "soon"}, {"no.such.config": "1"}]:
                resource = ConfigResource(ConfigResourceType.TOPIC, topic, entries)
                (response,) = await step(client.alter_configs([resource]))
                assert [(for_code(r[0]), r[3]) for r in response.resources] == [(InvalidConfigurationError, topic)], (
                    entries,
                    response,
                )
            assert (await topic_configs(client, topic))["retention.ms"] == ("7200000", DYNAMIC_TOPIC_CONFIG)

            # An unknown topic is unknown to both, and is not created.
            unknown = "aio-no-such-topic"
            resource = ConfigResource(ConfigResourceType.TOPIC, unknown, {"retention.ms": "1"})
            (response,) = await step(client.alter_configs([resource]))
            assert [for_code(r[0]) for r in response.resources] == [UnknownTopicOrPartitionError], response
            (response,) = await step(client.describe_configs([ConfigResource(ConfigResourceType.TOPIC, unknown)]))
            assert [(for_code(r[0]), r[4]) for r in response.resources] == [(UnknownTopicOrPartitionError, [])]
            assert unknown not in await step(client.list_topics())

    run(body())


async def broker_configs(bootstrap):
    """[(name, value)] of broker 0, from describe_configs (DescribeConfigs, BROKER resource)."""
    async with admin_session(bootstrap) as client:
        (response,) = await step(client.describe_configs([ConfigResource(ConfigResourceType.BROKER, "0")]))
    (resource,) = response.resources
    assert (resource[0], resource[2], resource[3]) == (0, ConfigResourceType.BROKER, "0"), resource
    return [(entry[0], entry[1]) for entry in resource[4]]


def test_describe_broker_configs(shared_broker):
    """The broker's defaults under their broker names, with the values the
    broker runs with (the fixture's --log-segment-bytes, 4 MiB)."""

    async def body():
        configs = dict(await broker_configs(shared_broker.bootstrap))
        assert {name: configs.get(name) for name in BROKER_DEFAULTS} == BROKER_DEFAULTS, configs

    run(body())


def test_describe_broker_configs_names_every_entry(shared_broker):
    async def body():
        configs = await broker_configs(shared_broker.bootstrap)
        names = [name for name, _ in configs]
        assert len(names) == len(set(names)) and "unknown" not in names, configs
        assert {name: value for name, value in configs if name.startswith("log.cleaner.")} == {
            "log.cleaner.delete.retention.ms": "86400000",
            "log.cleaner.min.cleanable.ratio": "0.5",
            "log.cleaner.min.compaction.lag.ms": "0",
        }, configs

    run(body())


def test_describe_configs_with_synonyms(shared_broker):
    async def body():
        async with admin_session(shared_broker.bootstrap) as client:
            await create_topic(client, "aio-synonyms", 1, configs={"retention.ms": "123456"})
            resource = ConfigResource(ConfigResourceType.TOPIC, "aio-synonyms", {"retention.ms": None})
            (response,) = await step(client.describe_configs([resource], include_synonyms=True))
        (result,) = response.resources
        (entry,) = result[4]
        name, value, _, source, _, synonyms = entry
        assert (name, value, source) == ("retention.ms", "123456", DYNAMIC_TOPIC_CONFIG), entry
        # As Kafka lists them: the topic's override, then the broker default it overrides.
        assert [tuple(synonym) for synonym in synonyms] == [
            ("retention.ms", "123456", DYNAMIC_TOPIC_CONFIG),
            ("log.retention.ms", "604800000", DEFAULT_CONFIG),
        ], entry

    run(body())


def test_describe_cluster(shared_broker):
    async def body():
        async with admin_session(shared_broker.bootstrap) as client:
            cluster = await step(client.describe_cluster())
        assert cluster["cluster_id"]
        brokers = [(b["node_id"], b["host"], b["port"]) for b in cluster["brokers"]]
        assert brokers == [(0, "127.0.0.1", shared_broker.port)]
        assert cluster["controller_id"] == 0

    run(body())


# --- produce and consume -------------------------------------------------------


def codec_available(codec):
    for module in CODEC_MODULES.get(codec, []):
        try:
            importlib.import_module(module)
        except ImportError as error:
            return (
                f"aiokafka's {codec} codec needs the python package {module!r} ({error}); "
                "pip install -r tests/requirements.txt"
            )
    return None


@pytest.mark.parametrize("acks", ACKS)
@pytest.mark.parametrize("codec", CODECS)
def test_produce_and_consume_every_codec(shared_broker, codec, acks):
    missing = codec_available(codec)
    if missing:
        pytest.skip(missing)
    bootstrap = shared_broker.bootstrap
    topic = f"aio-{codec}-acks{acks}"
    messages = make_messages(topic)

    async def body():
        async with admin_session(bootstrap) as client:
            await create_topic(client, topic, PARTITION_COUNT)
        delivered = await produce_all(
            bootstrap,
            topic,
            messages,
            compression_type=None if codec == "none" else codec,
            acks=1 if acks == "1" else "all",
        )
        # The end offsets agree with what was acknowledged.
        per_partition = collections.Counter(partition for partition, _ in delivered.values())
        reader = await started_consumer(bootstrap)
        try:
            partitions = [TopicPartition(topic, p) for p in range(PARTITION_COUNT)]
            assert await step(reader.end_offsets(partitions)) == {tp: per_partition[tp.partition] for tp in partitions}
        finally:
            await close(reader)
        records = await consume(bootstrap, topic, PARTITION_COUNT, len(messages))
        check_consumed(records, messages, delivered=delivered)

    run(body())


def test_idempotent_producer_stores_every_message_once_in_order(shared_broker):
    bootstrap = shared_broker.bootstrap
    topic = "aio-idempotent"
    messages = make_messages(topic, count=10_000)

    async def body():
        async with admin_session(bootstrap) as client:
            await create_topic(client, topic, PARTITION_COUNT)
        # Small batches: many requests, each partition's sequence numbers carried across them.
        delivered = await produce_all(
            bootstrap, topic, messages, enable_idempotence=True, acks="all", max_batch_size=4096
        )
        records = await consume(bootstrap, topic, PARTITION_COUNT, len(messages))
        check_consumed(records, messages, delivered=delivered)

    run(body())


def test_headers_null_keys_and_values(shared_broker):
    bootstrap = shared_broker.bootstrap
    topic = "aio-headers"
    sent = [
        # (key, value, headers): repeated names, an empty value, every byte.
        (b"k0", None, [("h1", b"one"), ("h1", b"again"), ("h2", b"")]),
        (None, b"v1", []),
        (b"", b"", []),
        (b"k3", b"v" * 10, [("only", bytes(range(256)))]),
    ]

    async def body():
        async with admin_session(bootstrap) as client:
            await create_topic(client, topic, 1)
        sender = await started_producer(bootstrap, acks="all")
        try:
            delivered = []
            for key, value, headers in sent:
                metadata = await step(sender.send_and_wait(topic, key=key, value=value, partition=0, headers=headers))
                delivered.append((metadata.partition, metadata.offset))
        finally:
            await close(sender)
        assert delivered == [(0, i) for i in range(len(sent))]
        reader = await started_consumer(bootstrap)
        try:
            reader.assign([TopicPartition(topic, 0)])
            await step(reader.seek_to_beginning())
            records = await read_until(reader, len(sent))
        finally:
            await close(reader)
        got = [(r.offset, r.key, r.value, [(name, data) for name, data in r.headers]) for r in records]
        assert got == [(i, key, value, headers) for i, (key, value, headers) in enumerate(sent)]

    run(body())


def test_message_over_max_message_bytes_gets_message_too_large(shared_broker):
    bootstrap = shared_broker.bootstrap
    topic = "aio-small"

    async def body():
        async with admin_session(bootstrap) as client:
            await create_topic(client, topic, 1, configs={"max.message.bytes": "1024"})
        # max_request_size far above the message: aiokafka itself lets it go, the broker refuses it.
        sender = await started_producer(bootstrap, acks=1, max_request_size=10_000_000)
        try:
            future = await step(sender.send(topic, key=b"big", value=os.urandom(4096)))
            with pytest.raises(MessageSizeTooLargeError) as raised:
                await step(future)
        finally:
            await close(sender)
        # aiokafka's own check raises with a message; the broker's error code comes bare.
        assert raised.value.args == (), f"aiokafka refused the message itself, not the broker: {raised.value}"
        # Small messages still go in, at offset 0: the refused batch took none.
        assert list((await produce_all(bootstrap, topic, [(b"small", b"x" * 100)], acks=1)).values()) == [(0, 0)]

    run(body())


def test_beginning_end_offsets_and_offsets_by_time(shared_broker):
    bootstrap = shared_broker.bootstrap
    topic = "aio-offsets"
    base = int(time.time() * 1000) - 60_000
    stamps = [base + i * 1000 for i in range(10)]

    async def body():
        async with admin_session(bootstrap) as client:
            await create_topic(client, topic, 3)
        # Partition 0: one batch per message; partition 1: the ten in one
        # batch, so the broker must look inside it; partition 2: in one lz4
        # batch, which it must decompress.
        plain = await started_producer(bootstrap, acks="all")
        packed = await started_producer(bootstrap, acks="all", compression_type="lz4")
        try:
            for i, stamp in enumerate(stamps):
                sent = plain.send_and_wait(topic, key=b"k", value=b"p0-%d" % i, partition=0, timestamp_ms=stamp)
                metadata = await step(sent)
                assert (metadata.partition, metadata.offset) == (0, i)
            for partition, sender in [(1, plain), (2, packed)]:
                batch = sender.create_batch()
                for i, stamp in enumerate(stamps):
                    assert batch.append(key=b"k", value=b"p%d-%d" % (partition, i), timestamp=stamp) is not None
                batch.close()
                metadata = await step(await step(sender.send_batch(batch, topic, partition=partition)))
                assert (metadata.partition, metadata.offset) == (partition, 0)
        finally:
            await close(plain, packed)

        reader = await started_consumer(bootstrap)
        try:
            partitions = [TopicPartition(topic, p) for p in range(3)]
            assert await step(reader.beginning_offsets(partitions)) == {tp: 0 for tp in partitions}
            assert await step(reader.end_offsets(partitions)) == {tp: 10 for tp in partitions}
            queries = [
                (base - 5000, 0),  # before everything: the first offset
                (base, 0),  # exact
                (base + 3500, 4),  # between: the next one
                (base + 9000, 9),  # the last
            ]
            for stamp, offset in queries:
                found = await step(reader.offsets_for_times({tp: stamp for tp in partitions}))
                for tp in partitions:
                    assert found[tp] is not None, f"{tp} at {stamp - base} ms: nothing found"
                    where = (found[tp].offset, found[tp].timestamp)
                    assert where == (offset, stamps[offset]), f"{tp} at {stamp - base} ms: {found[tp]}"
            # After everything: none.
            found = await step(reader.offsets_for_times({tp: base + 60_000 for tp in partitions}))
            assert found == {tp: None for tp in partitions}
            # The consumer sees the timestamps it was given.
            reader.assign(partitions)
            await step(reader.seek_to_beginning())
            records = await read_until(reader, 30)
        finally:
            await close(reader)
        assert sorted((r.partition, r.offset, r.timestamp, r.value) for r in records) == [
            (p, i, stamp, b"p%d-%d" % (p, i)) for p in range(3) for i, stamp in enumerate(stamps)
        ]

    run(body())


# --- consumer groups -------------------------------------------------------------


def test_a_group_resumes_at_its_committed_offsets(shared_broker):
    bootstrap = shared_broker.bootstrap
    topic, group = "aio-resume", "aio-resume-group"
    first = make_messages(f"{topic}-first", count=3000)
    second = make_messages(f"{topic}-second", count=500)
    partitions = [TopicPartition(topic, p) for p in range(PARTITION_COUNT)]

    async def group_consumer():
        return await started_consumer(
            bootstrap, topic, group_id=group, auto_offset_reset="earliest", heartbeat_interval_ms=500
        )

    async def body():
        async with admin_session(bootstrap) as client:
            await create_topic(client, topic, PARTITION_COUNT)
        delivered = await produce_all(bootstrap, topic, first)
        ends = collections.Counter(partition for partition, _ in delivered.values())

        member = await group_consumer()
        try:
            records = await read_until(member, len(first))
            check_consumed(as_rows(records), first, delivered=delivered)
            await step(member.commit())
            committed = {tp.partition: await step(member.committed(tp)) for tp in partitions}
        finally:
            await close(member)
        assert committed == {p: ends[p] for p in range(PARTITION_COUNT)}, "the consumer did not commit what it read"

        delivered_second = await produce_all(bootstrap, topic, second)
        # auto_offset_reset only applies without a committed offset: the group's own come first.
        member = await group_consumer()
        try:
            records = await read_until(member, len(second), linger_s=1.5)
            await step(member.commit())
            committed = {tp.partition: await step(member.committed(tp)) for tp in partitions}
        finally:
            await close(member)
        values = [r.value for r in records]
        assert len(values) == len(second) and set(values) == {v for _, v in second}, (
            f"the second consumer read {len(values)} records, {len(set(values) - {v for _, v in second})} "
            f"of them from before the commit: it did not start at the committed offsets"
        )
        assert all(delivered_second[r.value] == (r.partition, r.offset) for r in records)
        assert all(r.offset >= ends[r.partition] for r in records)
        ends.update(partition for partition, _ in delivered_second.values())
        assert committed == {p: ends[p] for p in range(PARTITION_COUNT)}
        # The admin client reads the same commits (OffsetFetch for every partition of the group).
        async with admin_session(bootstrap) as client:
            offsets = await step(client.list_consumer_group_offsets(group))
        assert {tp: meta.offset for tp, meta in offsets.items()} == {tp: ends[tp.partition] for tp in partitions}

    run(body())


class Assignments(ConsumerRebalanceListener):
    """Every assignment a member was given, in order."""

    def __init__(self):
        self.history = []

    async def on_partitions_revoked(self, revoked):
        pass

    async def on_partitions_assigned(self, assigned):
        self.history.append(sorted(tp.partition for tp in assigned))


def test_two_members_split_six_partitions(shared_broker):
    bootstrap = shared_broker.bootstrap
    topic, group = "aio-split", "aio-split-group"
    messages = make_messages(topic, count=3000)

    async def body():
        async with admin_session(bootstrap) as client:
            await create_topic(client, topic, PARTITION_COUNT)
        listeners = [Assignments(), Assignments()]
        members = []
        try:
            for listener in listeners:
                member = AIOKafkaConsumer(
                    bootstrap_servers=bootstrap,
                    group_id=group,
                    auto_offset_reset="earliest",
                    enable_auto_commit=False,
                    heartbeat_interval_ms=300,
                    request_timeout_ms=TIMEOUT_MS + 5000,
                )
                member.subscribe([topic], listener=listener)
                await step(member.start())
                members.append(member)

            # Both members keep fetching (getmany drives nothing the group
            # needs, but is what a user's loop does) until they hold the six
            # partitions between them and their listeners were told so.
            def split():
                assigned = [sorted(tp.partition for tp in m.assignment()) for m in members]
                together = sorted(p for a in assigned for p in a)
                told = [listener.history[-1] if listener.history else None for listener in listeners]
                whole = all(assigned) and together == list(range(PARTITION_COUNT))
                return assigned if whole and told == assigned else None

            deadline = time.monotonic() + 30
            while split() is None and time.monotonic() < deadline:
                await asyncio.gather(*(step(m.getmany(timeout_ms=200)) for m in members))
            assigned = split()
            histories = [listener.history for listener in listeners]
            assert assigned, f"the two members never held the {PARTITION_COUNT} partitions between them: {histories}"
            assignments_at_split = [len(listener.history) for listener in listeners]

            # The broker describes the group as the members see it.
            async with admin_session(bootstrap) as client:
                (described,) = await step(client.describe_consumer_groups([group]))
                listed = await step(client.list_consumer_groups())
            (entry,) = described.groups
            error_code, name, state, protocol_type, protocol, described_members = entry[:6]
            described_group = (error_code, name, state, protocol_type, protocol)
            assert described_group == (0, group, "Stable", "consumer", "roundrobin"), entry
            by_member = {
                member_id: sorted(tp.partition for tp in ConsumerProtocolMemberAssignment.decode(raw).partitions())
                for member_id, _, _, _, raw in described_members
            }
            assert len(by_member) == 2 and sorted(by_member.values()) == sorted(assigned), by_member
            assert (group, "consumer") in [tuple(row) for row in listed], listed

            delivered = await produce_all(bootstrap, topic, messages)
            # Each member reads until, together, they have every message.
            per_member = [[], []]
            deadline = time.monotonic() + CONSUME_TIMEOUT_S
            while sum(map(len, per_member)) < len(messages) and time.monotonic() < deadline:
                batches = await asyncio.gather(*(step(m.getmany(timeout_ms=300)) for m in members))
                for index, batch in enumerate(batches):
                    for records in batch.values():
                        per_member[index] += records
            for _ in range(2):  # a little longer, to see duplicates or extras
                batches = await asyncio.gather(*(step(m.getmany(timeout_ms=150)) for m in members))
                for index, batch in enumerate(batches):
                    for records in batch.values():
                        per_member[index] += records
            assert [len(listener.history) for listener in listeners] == assignments_at_split, (
                f"the group rebalanced after the split: {[listener.history for listener in listeners]}"
            )
        finally:
            for member in members:
                await close(member)

        wrong = [
            (index, r.partition)
            for index, records in enumerate(per_member)
            for r in records
            if r.partition not in assigned[index]
        ]
        assert not wrong, f"records read by a member that was not assigned their partition: {wrong[:5]}"
        assert all(per_member), f"records per member: {list(map(len, per_member))}"
        check_consumed(as_rows(per_member[0] + per_member[1]), messages, delivered=delivered)

    run(body())
