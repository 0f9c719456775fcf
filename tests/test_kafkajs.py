"""kafkajs (the Node.js client, with its own protocol code) against pinion:
admin (create with TOPIC_ALREADY_EXISTS and invalid names, metadata,
partitions, delete, describe and alter configs, cluster), the keyed workload
with every codec x acks 1/all and the offsets kafkajs was acknowledged with,
consumer groups (a group resumes at its committed offsets; two members split
six partitions), the idempotent producer, headers and null keys and values,
large messages, MESSAGE_TOO_LARGE, and ListOffsets earliest/latest/by time.

kafkajs runs in Node: each operation is one run of tests/js/kafkajs_client.js
(see its header), which prints what kafkajs answered as JSON. kafkajs only
consumes through groups, so every consume here is a group consumer
(`consumer.run`) with its own group id. Its default partitioner (murmur2, as
Java's) differs from librdkafka's, so only consistency is checked: one
partition per key, and each message where kafkajs was told it is.
Needs `node` and `(cd tests/js && npm ci)`; scripts/test.sh does both."""

import base64
import collections
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from workload import ACKS, CODECS, PARTITION_COUNT, check_consumed, make_messages

JS_DIR = Path(__file__).resolve().parent / "js"
DRIVER = JS_DIR / "kafkajs_client.js"
NODE = shutil.which("node")

if NODE is None:
    pytest.skip("node is not installed (apt-get install nodejs npm): kafkajs needs it", allow_module_level=True)
if not (JS_DIR / "node_modules" / "kafkajs").is_dir():
    pytest.skip(f"kafkajs is not installed: run (cd {JS_DIR} && npm ci)", allow_module_level=True)

# What each run of the driver may take, unless a test says otherwise; the
# driver stops itself after this long and the subprocess is killed a little later.
RUN_TIMEOUT_S = 60.0
DEFAULT_RETENTION_MS = "604800000"
DEFAULT_MAX_MESSAGE_BYTES = "1048588"
KAFKAJS_ACKS = {"1": 1, "all": -1}


def enc(data):
    return None if data is None else base64.b64encode(data).decode()


def dec(text):
    return None if text is None else base64.b64decode(text)


def run(command, bootstrap, request=None, timeout_s=RUN_TIMEOUT_S):
    """One driver run: kafkajs' answer, {"ok": True, "result": ...} or
    {"ok": False, "error": {name, type, code, ...}}, plus its "stderr"."""
    process = subprocess.run(
        [NODE, str(DRIVER), command, "--bootstrap", bootstrap, "--timeout-ms", str(int(timeout_s * 1000))],
        input=json.dumps(request or {}),
        capture_output=True,
        text=True,
        timeout=timeout_s + 15,
        cwd=str(JS_DIR),
    )
    lines = process.stdout.strip().splitlines()
    assert process.returncode == 0 and lines, (
        f"kafkajs_client.js {command} exited with {process.returncode}\n"
        f"stdout: {process.stdout[-2000:]}\nstderr: {process.stderr[-4000:]}"
    )
    answer = json.loads(lines[-1])
    answer["stderr"] = process.stderr
    return answer


def ok(command, bootstrap, request=None, timeout_s=RUN_TIMEOUT_S):
    """The result of a run that must succeed."""
    answer = run(command, bootstrap, request, timeout_s)
    assert answer["ok"], f"kafkajs {command} failed: {answer['error']}\nstderr: {answer['stderr'][-4000:]}"
    return answer["result"]


def failed(command, bootstrap, request=None, timeout_s=RUN_TIMEOUT_S):
    """The error of a run that must fail."""
    answer = run(command, bootstrap, request, timeout_s)
    assert not answer["ok"], f"kafkajs {command} succeeded where it should fail: {answer['result']}"
    return answer["error"]


def create_topic(bootstrap, topic, partitions, configs=None):
    request = {"topics": [{"topic": topic, "numPartitions": partitions, "configs": configs or {}}]}
    created = ok("create-topics", bootstrap, request)
    assert created is True, f"createTopics({topic}) answered {created}"


def partitions_of(bootstrap, topic):
    """{partition: metadata} of the topic, from admin.fetchTopicMetadata."""
    (entry,) = ok("metadata", bootstrap, {"topics": [topic]})["topics"]
    assert entry["name"] == topic
    return {p["partitionId"]: p for p in entry["partitions"]}


def listed_topics(bootstrap):
    return set(ok("list-topics", bootstrap))


def topic_configs(bootstrap, topic):
    return ok("describe-configs", bootstrap, {"topic": topic})


def message(key, value, partition=None, timestamp=None, headers=None):
    row = {"key": enc(key), "value": enc(value)}
    if partition is not None:
        row["partition"] = partition
    if timestamp is not None:
        row["timestamp"] = timestamp
    if headers is not None:
        row["headers"] = [[name, enc(data)] for name, data in headers]
    return row


def produce_all(bootstrap, topic, messages, partition=None, compression="none", acks="all", **options):
    """Sends [(key, value)] with producer.send, `chunk` messages a call
    (500 unless said), one call after the other; returns {value: (partition,
    offset)} from kafkajs' acknowledgements."""
    rows = [message(key, value, partition) for key, value in messages]
    request = {"topic": topic, "messages": rows, "compression": compression, "acks": KAFKAJS_ACKS[acks], **options}
    delivered = ok("produce", bootstrap, request)["delivered"]
    assert len(delivered) == len(messages)
    return {value: tuple(where) for (_, value), where in zip(messages, delivered)}


def consume_records(bootstrap, topic, group, expected, timeout_s=40.0, **options):
    """A consumer of `group` reads from the beginning (or its committed
    offsets) until `expected` records came, then 500 ms more to see extras,
    and commits on disconnect; returns the records as kafkajs gave them."""
    request = {"topic": topic, "groupId": group, "expected": expected, "timeoutMs": int(timeout_s * 1000), **options}
    result = ok("consume", bootstrap, request, timeout_s=timeout_s + 20)
    assert not result["crashes"], f"the consumer crashed: {result['crashes']}"
    return result["records"]


def consume(bootstrap, topic, group, expected, **options):
    """[(partition, offset, key, value)] in the order consumed."""
    return [
        (r["partition"], r["offset"], dec(r["key"]), dec(r["value"]))
        for r in consume_records(bootstrap, topic, group, expected, **options)
    ]


def end_offsets(bootstrap, topic):
    """{partition: (low, high)} from admin.fetchTopicOffsets."""
    offsets = ok("topic-offsets", bootstrap, {"topic": topic})["offsets"]
    return {o["partition"]: (int(o["low"]), int(o["high"])) for o in offsets}


def committed_offsets(bootstrap, group, topic):
    """{partition: offset} the group committed, from admin.fetchOffsets."""
    (entry,) = ok("group-offsets", bootstrap, {"groupId": group, "topics": [topic]})
    assert entry["topic"] == topic
    return {p["partition"]: int(p["offset"]) for p in entry["partitions"]}


def error_types(error):
    """Every Kafka error name in a kafkajs error and the errors it wraps."""
    if error is None:
        return []
    found = [error["type"]] if error.get("type") else []
    for inner in [error.get("cause"), error.get("originalError"), *(error.get("errors") or [])]:
        found += error_types(inner)
    return found


# --- admin ---------------------------------------------------------------


def test_create_topic_with_6_partitions_and_an_existing_one(shared_broker):
    bootstrap = shared_broker.bootstrap
    create_topic(bootstrap, "kjs-created", PARTITION_COUNT)
    assert "kjs-created" in listed_topics(bootstrap)
    partitions = partitions_of(bootstrap, "kjs-created")
    assert sorted(partitions) == list(range(PARTITION_COUNT))
    for partition in partitions.values():
        assert (partition["partitionErrorCode"], partition["leader"], partition["replicas"]) == (0, 0, [0]), partition
    # kafkajs answers `false` when every topic got TOPIC_ALREADY_EXISTS...
    again = ok("create-topics", bootstrap, {"topics": [{"topic": "kjs-created", "numPartitions": 2}]})
    assert again is False, f"creating an existing topic answered {again}, kafkajs' answer to TOPIC_ALREADY_EXISTS is false"
    # ...and lists each topic's error when another error comes with it.
    error = failed(
        "create-topics",
        bootstrap,
        {"topics": [{"topic": "kjs-created", "numPartitions": 2}, {"topic": "kjs bad name", "numPartitions": 1}]},
    )
    assert error["name"] == "KafkaJSAggregateError", error
    assert sorted((e["topic"], e["type"]) for e in error["errors"]) == [
        ("kjs bad name", "INVALID_TOPIC_EXCEPTION"),
        ("kjs-created", "TOPIC_ALREADY_EXISTS"),
    ], error
    assert sorted(partitions_of(bootstrap, "kjs-created")) == list(range(PARTITION_COUNT)), "the existing topic changed"


@pytest.mark.parametrize("name", ["has space", "..", "x" * 250])
def test_invalid_topic_names_are_refused(shared_broker, name):
    error = failed("create-topics", shared_broker.bootstrap, {"topics": [{"topic": name, "numPartitions": 1}]})
    assert error_types(error) == ["INVALID_TOPIC_EXCEPTION"], error
    assert name not in listed_topics(shared_broker.bootstrap)


def test_create_partitions(shared_broker):
    bootstrap = shared_broker.bootstrap
    create_topic(bootstrap, "kjs-grow", 2)
    ok("create-partitions", bootstrap, {"topicPartitions": [{"topic": "kjs-grow", "count": 4}]})
    assert sorted(partitions_of(bootstrap, "kjs-grow")) == [0, 1, 2, 3]
    delivered = produce_all(bootstrap, "kjs-grow", [(b"k", b"in the new partition")], partition=3)
    assert list(delivered.values()) == [(3, 0)]
    records = consume(bootstrap, "kjs-grow", "kjs-grow-reader", 1)
    assert [(p, o, v) for p, o, _, v in records] == [(3, 0, b"in the new partition")]
    # Fewer partitions than now is refused and changes nothing.
    error = failed("create-partitions", bootstrap, {"topicPartitions": [{"topic": "kjs-grow", "count": 1}]})
    assert (error["name"], error["type"]) == ("KafkaJSProtocolError", "INVALID_PARTITIONS"), error
    assert sorted(partitions_of(bootstrap, "kjs-grow")) == [0, 1, 2, 3]


def test_delete_topic(shared_broker):
    bootstrap = shared_broker.bootstrap
    create_topic(bootstrap, "kjs-doomed", 3)
    produce_all(bootstrap, "kjs-doomed", make_messages("kjs-doomed", count=100))
    assert "kjs-doomed" in listed_topics(bootstrap)
    ok("delete-topics", bootstrap, {"topics": ["kjs-doomed"]})
    assert "kjs-doomed" not in listed_topics(bootstrap)
    # Deleting it again: kafkajs retries UNKNOWN_TOPIC_OR_PARTITION, then gives up with it.
    error = failed("delete-topics", bootstrap, {"topics": ["kjs-doomed"]})
    assert error["name"] == "KafkaJSNumberOfRetriesExceeded", error
    assert "UNKNOWN_TOPIC_OR_PARTITION" in error_types(error), error
    assert "kjs-doomed" not in listed_topics(bootstrap)


def test_describe_and_alter_topic_configs(shared_broker):
    bootstrap = shared_broker.bootstrap
    create_topic(bootstrap, "kjs-plain", 1)
    plain = topic_configs(bootstrap, "kjs-plain")
    assert (plain["retention.ms"], plain["max.message.bytes"], plain["cleanup.policy"]) == (
        DEFAULT_RETENTION_MS,
        DEFAULT_MAX_MESSAGE_BYTES,
        "delete",
    ), plain

    topic = "kjs-configs"
    create_topic(bootstrap, topic, 1, configs={"retention.ms": "123456", "max.message.bytes": "2048"})
    configs = topic_configs(bootstrap, topic)
    assert (configs["retention.ms"], configs["max.message.bytes"]) == ("123456", "2048"), configs
    only = ok("describe-configs", bootstrap, {"topic": topic, "configNames": ["retention.ms"]})
    assert only == {"retention.ms": "123456"}

    # admin.alterConfigs is AlterConfigs (not incremental): the topic's
    # overrides become exactly the ones named, the others go back to the default.
    result = ok("alter-configs", bootstrap, {"topic": topic, "entries": {"retention.ms": "7200000"}})
    assert [(r["resourceName"], r["errorCode"]) for r in result["resources"]] == [(topic, 0)], result
    configs = topic_configs(bootstrap, topic)
    assert (configs["retention.ms"], configs["max.message.bytes"]) == ("7200000", DEFAULT_MAX_MESSAGE_BYTES), configs

    # Bad values and names are refused and change nothing; an unknown topic is unknown.
    for entries in [{"retention.ms": "soon"}, {"no.such.config": "1"}]:
        error = failed("alter-configs", bootstrap, {"topic": topic, "entries": entries})
        assert (error["name"], error["type"]) == ("KafkaJSProtocolError", "INVALID_CONFIG"), (entries, error)
    assert topic_configs(bootstrap, topic)["retention.ms"] == "7200000"
    error = failed("alter-configs", bootstrap, {"topic": "kjs-no-such-topic", "entries": {"retention.ms": "1000"}})
    assert error["type"] == "UNKNOWN_TOPIC_OR_PARTITION", error
    error = failed("describe-configs", bootstrap, {"topic": "kjs-no-such-topic"})
    assert error["type"] == "UNKNOWN_TOPIC_OR_PARTITION", error
    assert "kjs-no-such-topic" not in listed_topics(bootstrap)


def test_describe_cluster(shared_broker):
    cluster = ok("describe-cluster", shared_broker.bootstrap)
    assert cluster["clusterId"]
    assert cluster["brokers"] == [{"nodeId": 0, "host": "127.0.0.1", "port": shared_broker.port}]
    assert cluster["controller"] == 0


# --- produce and consume ---------------------------------------------------


@pytest.mark.parametrize("acks", ACKS)
@pytest.mark.parametrize("codec", CODECS)
def test_produce_and_consume_every_codec(shared_broker, codec, acks):
    bootstrap = shared_broker.bootstrap
    topic = f"kjs-{codec}-acks{acks}"
    create_topic(bootstrap, topic, PARTITION_COUNT)
    messages = make_messages(topic)
    delivered = produce_all(bootstrap, topic, messages, compression=codec, acks=acks)
    per_partition = collections.Counter(partition for partition, _ in delivered.values())
    assert end_offsets(bootstrap, topic) == {p: (0, per_partition[p]) for p in range(PARTITION_COUNT)}
    records = consume(bootstrap, topic, f"{topic}-reader", len(messages))
    check_consumed(records, messages, delivered=delivered)


def test_idempotent_producer_stores_every_message_once_in_order(shared_broker):
    bootstrap = shared_broker.bootstrap
    topic = "kjs-idempotent"
    create_topic(bootstrap, topic, PARTITION_COUNT)
    messages = make_messages(topic, count=10_000)
    # 200 messages a send: 50 requests, each partition's sequence numbers carried across them.
    delivered = produce_all(bootstrap, topic, messages, idempotent=True, maxInFlightRequests=1, chunk=200)
    records = consume(bootstrap, topic, f"{topic}-reader", len(messages))
    check_consumed(records, messages, delivered=delivered)


def test_headers_null_keys_and_values(shared_broker):
    bootstrap = shared_broker.bootstrap
    topic = "kjs-headers"
    sent = [
        # kafkajs hands headers over as an object: repeated names come back together, in order.
        message(None, None, partition=0, headers=[("h1", b"one"), ("h1", b"again"), ("h2", b"")]),
        message(b"", b"", partition=0),
        message(b"k", b"v" * 10, partition=0, headers=[("only", bytes(range(256)))]),
    ]
    delivered = ok("produce", bootstrap, {"topic": topic, "messages": sent, "acks": -1})["delivered"]
    assert delivered == [[0, 0], [0, 1], [0, 2]]
    records = consume_records(bootstrap, topic, f"{topic}-reader", 3)
    got = [(r["partition"], r["offset"], r["key"], r["value"], r["headers"]) for r in records]
    assert got == [(0, i, row["key"], row["value"], row.get("headers", [])) for i, row in enumerate(sent)]


def test_large_messages(shared_broker):
    bootstrap = shared_broker.bootstrap
    topic = "kjs-large"
    create_topic(bootstrap, topic, 1)
    values = [os.urandom(900 * 1024) for _ in range(3)]
    # One send each: three in one batch would pass max.message.bytes, as in Kafka.
    delivered = produce_all(bootstrap, topic, [(b"k", v) for v in values], partition=0, chunk=1)
    assert [delivered[v] for v in values] == [(0, 0), (0, 1), (0, 2)]
    records = consume(bootstrap, topic, f"{topic}-reader", 3)
    assert [(p, o) for p, o, _, _ in records] == [(0, 0), (0, 1), (0, 2)]
    assert [v for _, _, _, v in records] == values


def test_message_over_max_message_bytes_gets_message_too_large(shared_broker):
    bootstrap = shared_broker.bootstrap
    topic = "kjs-small"
    create_topic(bootstrap, topic, 1, configs={"max.message.bytes": "1024"})
    request = {"topic": topic, "messages": [message(b"big", os.urandom(4096))], "acks": 1, "retries": 0}
    error = failed("produce", bootstrap, request)
    assert (error["name"], error["type"], error["code"]) == ("KafkaJSProtocolError", "MESSAGE_TOO_LARGE", 10), error
    # Small messages still go in, at offset 0: the refused batch took none.
    assert list(produce_all(bootstrap, topic, [(b"small", b"x" * 100)], acks="1").values()) == [(0, 0)]


def test_list_offsets_earliest_latest_and_by_time(shared_broker):
    bootstrap = shared_broker.bootstrap
    topic = "kjs-offsets"
    create_topic(bootstrap, topic, 3)
    base = int(time.time() * 1000) - 60_000
    stamps = [base + i * 1000 for i in range(10)]
    # Partition 0: one batch per message; partition 1: the ten in one batch,
    # so the broker must look inside it; partition 2: in one lz4 batch, which
    # it must decompress.
    for partition, chunk, codec in [(0, 1, "none"), (1, 10, "none"), (2, 10, "lz4")]:
        rows = [message(b"k", b"p%d-%d" % (partition, i), partition, stamp) for i, stamp in enumerate(stamps)]
        request = {"topic": topic, "messages": rows, "acks": -1, "chunk": chunk, "compression": codec}
        assert ok("produce", bootstrap, request)["delivered"] == [[partition, i] for i in range(10)]
    queries = [
        (base - 5000, 0),  # before everything: the first offset
        (base, 0),  # exact
        (base + 3500, 4),  # between: the next one
        (base + 9000, 9),  # the last
        (base + 60_000, 10),  # after everything: none, which kafkajs turns into the latest offset
    ]
    result = ok("topic-offsets", bootstrap, {"topic": topic, "timestamps": [stamp for stamp, _ in queries]})
    assert sorted((o["partition"], o["low"], o["high"]) for o in result["offsets"]) == [(p, "0", "10") for p in range(3)]
    for (stamp, offset), found in zip(queries, result["byTimestamp"]):
        assert found["timestamp"] == stamp
        got = sorted((p["partition"], int(p["offset"])) for p in found["partitions"])
        assert got == [(p, offset) for p in range(3)], f"at {stamp - base} ms: {got}"
    # The consumer sees the timestamps it was given.
    records = consume_records(bootstrap, topic, f"{topic}-reader", 30)
    assert sorted((r["partition"], r["offset"], r["timestamp"]) for r in records) == [
        (p, i, stamp) for p in range(3) for i, stamp in enumerate(stamps)
    ]


# --- consumer groups -------------------------------------------------------


def test_a_group_resumes_at_its_committed_offsets(shared_broker):
    bootstrap = shared_broker.bootstrap
    topic, group = "kjs-resume", "kjs-resume-group"
    create_topic(bootstrap, topic, PARTITION_COUNT)
    first = make_messages(f"{topic}-first", count=3000)
    delivered = produce_all(bootstrap, topic, first)
    records = consume(bootstrap, topic, group, len(first), fromBeginning=True)
    check_consumed(records, first, delivered=delivered)
    ends = {p: high for p, (_, high) in end_offsets(bootstrap, topic).items()}
    assert committed_offsets(bootstrap, group, topic) == ends, "the consumer did not commit what it read"

    second = make_messages(f"{topic}-second", count=500)
    delivered_second = produce_all(bootstrap, topic, second)
    # fromBeginning only applies without a committed offset: the group's own come first.
    records = consume(bootstrap, topic, group, len(second), fromBeginning=True, lingerMs=1500)
    values = [v for _, _, _, v in records]
    assert len(values) == len(second) and set(values) == {v for _, v in second}, (
        f"the second consumer read {len(values)} records, {len(set(values) - {v for _, v in second})} "
        f"of them from before the commit: it did not start at the committed offsets"
    )
    assert all(delivered_second[v] == (p, o) for p, o, _, v in records)
    assert all(o >= ends[p] for p, o, _, _ in records)
    ends = {p: high for p, (_, high) in end_offsets(bootstrap, topic).items()}
    assert committed_offsets(bootstrap, group, topic) == ends


def test_two_members_split_six_partitions(shared_broker):
    bootstrap = shared_broker.bootstrap
    topic = "kjs-split"
    create_topic(bootstrap, topic, PARTITION_COUNT)
    messages = make_messages(topic, count=3000)
    request = {
        "topic": topic,
        "groupId": "kjs-split-group",
        "members": 2,
        "partitions": PARTITION_COUNT,
        "messages": [message(key, value) for key, value in messages],
        "timeoutMs": 40_000,
    }
    result = ok("group", bootstrap, request, timeout_s=60)
    members = result["members"]
    assert result["stable"], f"the two members never held the {PARTITION_COUNT} partitions between them: {members}"
    assignments = [m["assignment"] for m in members]
    assert all(assignments), f"a member got no partition: {assignments}"
    assert sorted(p for a in assignments for p in a) == list(range(PARTITION_COUNT)), assignments
    assert members[0]["memberId"] != members[1]["memberId"]
    assert members[0]["generation"] == members[1]["generation"]
    assert [m["rebalancesAfterSplit"] for m in members] == [0, 0], members
    assert not any(m["crashes"] for m in members), members
    # Each member read its own partitions, and together every message.
    wrong = [(r["member"], r["partition"]) for r in result["records"] if r["partition"] not in assignments[r["member"]]]
    assert not wrong, f"records read by a member that was not assigned their partition: {wrong[:5]}"
    readers = {r["member"] for r in result["records"]}
    assert readers == {0, 1}, f"only members {readers} read anything"
    delivered = {value: tuple(where) for (_, value), where in zip(messages, result["delivered"])}
    records = [(r["partition"], r["offset"], dec(r["key"]), dec(r["value"])) for r in result["records"]]
    check_consumed(records, messages, delivered=delivered)
