"""sarama (Shopify's pure-Go Kafka client, Debian's 1.22.1) against pinion:
admin, the keyed workload with every codec x acks 1/all, acks 0, consumer
groups (commits, a new member resuming, two members splitting six
partitions), headers, MESSAGE_TOO_LARGE, offsets, and how the broker answers
the requests sarama 1.22 sends at versions Kafka 4 removed.

The project is asked to work with franz-go, which cannot be fetched on this
machine (no Go module proxy, no GitHub, not packaged by Debian). sarama is the
pure-Go client Debian does package, so it stands in: another independent
implementation of the protocol, in Go. `tests/go/sarama_client/main.go` is a
small command-line driver that this module builds once per session (GOPATH
mode, offline, into pytest's temporary directory) and runs once per step; it
prints what happened as JSON.

sarama chooses request versions from `config.Version`, not from ApiVersions;
the driver says Kafka 2.1.0 (see its comment), which makes sarama send
Produce v3, Fetch v4, ListOffsets v1, Metadata v5, CreateTopics v2,
DeleteTopics v1, CreatePartitions v0, JoinGroup v1, SyncGroup/Heartbeat/
LeaveGroup v0, OffsetFetch v1 and, with a retention set, OffsetCommit v2.
"""

import base64
import collections
import json
import os
import queue
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from workload import ACKS, CODECS, PARTITION_COUNT, check_consumed, make_messages

DRIVER_SOURCE = Path(__file__).resolve().parent / "go" / "sarama_client"
SARAMA_SOURCE = Path("/usr/share/gocode/src/github.com/Shopify/sarama")
GOPATH_SYSTEM = "/usr/share/gocode"
BUILD_TIMEOUT_S = 100
# What each driver run may take (it bounds its own waits by this), and the
# margin after which the test kills it.
RUN_TIMEOUT_S = 60
KILL_MARGIN_S = 30

ACKS_FLAG = {"1": "1", "all": "-1"}
DEFAULT_RETENTION_MS = "604800000"
DEFAULT_MAX_MESSAGE_BYTES = "1048588"
# sarama's ConfigSource for a topic's own override (Kafka's DYNAMIC_TOPIC_CONFIG).
SOURCE_TOPIC_OVERRIDE = 1


@pytest.fixture(scope="session")
def sarama_client(tmp_path_factory):
    """Builds the driver once per session: the path of the binary."""
    missing = []
    if shutil.which("go") is None:
        missing.append("`go` is not on PATH")
    if not SARAMA_SOURCE.is_dir():
        missing.append(f"no sarama sources at {SARAMA_SOURCE}")
    if missing:
        pytest.skip(
            f"{' and '.join(missing)}: apt-get install golang-go golang-github-shopify-sarama-dev"
            " (scripts/test.sh does)"
        )
    build_dir = tmp_path_factory.mktemp("sarama-client")
    binary = build_dir / "sarama_client"
    env = dict(
        os.environ,
        GO111MODULE="off",  # GOPATH mode: Debian's packaged sources, no modules
        GOPATH=f"{GOPATH_SYSTEM}:{build_dir / 'gopath'}",
        GOPROXY="off",  # never download anything (GOPATH mode would not anyway)
        GOTOOLCHAIN="local",  # nor a newer toolchain (Go >= 1.21)
        CGO_ENABLED="1",  # sarama 1.22's zstd is DataDog/zstd, which is cgo
    )
    if not env.get("GOCACHE") and not env.get("HOME"):
        env["GOCACHE"] = str(build_dir / "gocache")
    started = time.monotonic()
    try:
        built = subprocess.run(
            ["go", "build", "-o", str(binary), "."],
            cwd=DRIVER_SOURCE,
            env=env,
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"go build of {DRIVER_SOURCE} took over {BUILD_TIMEOUT_S} s", pytrace=False)
    assert built.returncode == 0, f"go build failed:\n{built.stdout}\n{built.stderr}"
    print(f"\nbuilt {binary} in {time.monotonic() - started:.1f} s")
    return binary


def b64(data):
    return None if data is None else base64.b64encode(data).decode()


def unb64(text):
    return None if text is None else base64.b64decode(text)


class Sarama:
    """Runs the driver against one broker."""

    def __init__(self, binary, broker):
        self.binary = binary
        self.broker = broker

    def command(self, command, *args, timeout_s=RUN_TIMEOUT_S):
        return [str(self.binary), command, "-bootstrap", self.broker.bootstrap, "-timeout", f"{timeout_s}s", *args]

    def run(self, command, *args, stdin=None, timeout_s=RUN_TIMEOUT_S):
        """The JSON document the command printed; its stderr (sarama's log)
        tail is under "stderr" for assertion messages."""
        started = time.monotonic()
        finished = subprocess.run(
            self.command(command, *args, timeout_s=timeout_s),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout_s + KILL_MARGIN_S,
        )
        lines = finished.stdout.strip().splitlines()
        assert lines, f"sarama_client {command} printed nothing ({finished.returncode}):\n{finished.stderr[-3000:]}"
        document = json.loads(lines[-1])
        document["stderr"] = finished.stderr[-3000:]
        document["seconds"] = time.monotonic() - started
        return document

    def ok(self, command, *args, **kwargs):
        """Runs a command that must succeed."""
        document = self.run(command, *args, **kwargs)
        assert document["error"] is None, f"{command} {args}: {document['error']}\n{document['stderr']}"
        return document

    def create_topic(self, topic, partitions, configs=None):
        args = ["-topic", topic, "-partitions", str(partitions)]
        for name, value in (configs or {}).items():
            args += ["-config", f"{name}={value}"]
        return self.run("create-topic", *args)

    def topic_configs(self, topic):
        """{name: entry} from DescribeConfigs v1 (see test_describe_configs_v0)."""
        return self.ok("describe-config", "-topic", topic, "-request-version", "1")["configs"]

    def partitions_of(self, topic):
        (described,) = self.ok("describe-topics", "-topic", topic)["topics"]
        assert described["error"] is None, described
        return [p["partition"] for p in described["partitions"]]

    def produce(self, topic, messages, codec="none", acks="1", partitions=None, timestamps=None, headers=None, flags=()):
        """Sends [(key, value)] (to `partitions`, with `timestamps` and
        `headers` [(key, value)] per message if given; `flags` for the
        driver); returns (delivered {value: (partition, offset)}, failed
        [(value, error)], the whole document)."""
        wire = []
        for index, (key, value) in enumerate(messages):
            message = {"key": b64(key), "value": b64(value)}
            if partitions is not None:
                message["partition"] = partitions[index]
            if timestamps is not None:
                message["timestamp_ms"] = timestamps[index]
            if headers is not None:
                message["headers"] = [{"key": b64(k), "value": b64(v)} for k, v in headers[index]]
            wire.append(message)
        partitioner = "manual" if partitions is not None else "hash"
        document = self.run(
            "produce",
            "-topic",
            topic,
            "-codec",
            codec,
            "-acks",
            ACKS_FLAG.get(acks, acks),
            "-partitioner",
            partitioner,
            *flags,
            stdin=json.dumps(wire),
        )
        assert "delivered" in document and not document["timed_out"], f"{document['error']}\n{document['stderr']}"
        values = [value for _, value in messages]
        delivered = {values[d["index"]]: (d["partition"], d["offset"]) for d in document["delivered"]}
        failed = [(values[f["index"]], f["error"]) for f in document["failed"]]
        return delivered, failed, document

    def produce_all(self, topic, messages, **kwargs):
        delivered, failed, document = self.produce(topic, messages, **kwargs)
        assert not failed, f"{len(failed)} messages failed, e.g. {failed[:3]}\n{document['stderr']}"
        assert len(delivered) == len(messages), f"{len(delivered)} of {len(messages)} delivered"
        return delivered

    def consume(self, topic, partitions, expected, linger_ms=300):
        """Every record from the oldest offsets: [(partition, offset, key,
        value)], and the records as the driver printed them."""
        args = ["-topic", topic, "-partitions", str(partitions), "-expect", str(expected), "-linger", f"{linger_ms}ms"]
        document = self.run("consume", *args)
        records = document["records"]
        assert document["error"] is None, f"{document['error']}; consumer errors {document['consumer_errors'][:3]}"
        return [(r["partition"], r["offset"], unb64(r["key"]), unb64(r["value"])) for r in records], records


def is_disconnect(error):
    """sarama's error when the broker closed the connection on a request."""
    message = error["message"]
    return error["code"] is None and ("EOF" in message or "connection reset" in message or "broken pipe" in message)


@pytest.fixture
def sarama(sarama_client, shared_broker):
    return Sarama(sarama_client, shared_broker)


def test_create_topic_with_6_partitions(sarama, shared_broker):
    created = sarama.create_topic("sa-created", PARTITION_COUNT)
    assert created["error"] is None, created
    (described,) = sarama.ok("describe-topics", "-topic", "sa-created")["topics"]
    assert described["name"] == "sa-created" and described["error"] is None, described
    assert [p["partition"] for p in described["partitions"]] == list(range(PARTITION_COUNT))
    for partition in described["partitions"]:
        assert (partition["leader"], partition["replicas"], partition["isr"]) == (0, [0], [0]), partition
    assert "sa-created" in sarama.ok("topics")["topics"]
    again = sarama.create_topic("sa-created", PARTITION_COUNT)
    assert again["error"] and again["error"]["name"] == "TOPIC_ALREADY_EXISTS", again["error"]


def test_describe_cluster(sarama, shared_broker):
    cluster = sarama.ok("describe-cluster")
    assert cluster["brokers"] == [{"id": 0, "addr": shared_broker.bootstrap}]
    assert cluster["controller"] == 0


def test_create_partitions(sarama):
    assert sarama.create_topic("sa-grow", 2)["error"] is None
    sarama.ok("create-partitions", "-topic", "sa-grow", "-partitions", "4")
    assert sarama.partitions_of("sa-grow") == [0, 1, 2, 3]
    delivered = sarama.produce_all("sa-grow", [(b"k", b"new")], partitions=[3])
    assert delivered == {b"new": (3, 0)}
    shrink = sarama.run("create-partitions", "-topic", "sa-grow", "-partitions", "1")
    assert shrink["error"] and shrink["error"]["name"] == "INVALID_PARTITIONS", shrink["error"]


def test_delete_topic(sarama):
    assert sarama.create_topic("sa-doomed", 3)["error"] is None
    sarama.produce_all("sa-doomed", make_messages("sa-doomed", count=100))
    sarama.ok("delete-topic", "-topic", "sa-doomed")
    assert "sa-doomed" not in sarama.ok("topics")["topics"]
    (described,) = sarama.ok("describe-topics", "-topic", "sa-doomed")["topics"]
    assert described["error"] and described["error"]["name"] == "UNKNOWN_TOPIC_OR_PARTITION", described
    again = sarama.run("delete-topic", "-topic", "sa-doomed")
    assert again["error"] and again["error"]["name"] == "UNKNOWN_TOPIC_OR_PARTITION", again["error"]


@pytest.mark.parametrize("name", ["has space", "..", "x" * 250])
def test_invalid_topic_names(sarama, name):
    created = sarama.create_topic(name, 1)
    assert created["error"] and created["error"]["name"] == "INVALID_TOPIC_EXCEPTION", created["error"]


def test_describe_and_alter_configs(sarama):
    """ClusterAdmin.AlterConfig is AlterConfigs (key 33) v0: the topic's
    overrides become exactly the configs it names, as in Kafka."""
    topic = "sa-configs"
    assert sarama.create_topic(topic, 1, configs={"max.message.bytes": "2048"})["error"] is None
    configs = sarama.topic_configs(topic)
    assert configs["max.message.bytes"]["value"] == "2048", configs["max.message.bytes"]
    assert configs["max.message.bytes"]["source"] == SOURCE_TOPIC_OVERRIDE
    assert configs["retention.ms"]["value"] == DEFAULT_RETENTION_MS
    assert configs["retention.ms"]["source"] != SOURCE_TOPIC_OVERRIDE

    sarama.ok("alter-config", "-topic", topic, "-config", "retention.ms=7200000")
    configs = sarama.topic_configs(topic)
    assert configs["retention.ms"]["value"] == "7200000"
    assert configs["retention.ms"]["source"] == SOURCE_TOPIC_OVERRIDE
    assert configs["max.message.bytes"]["value"] == DEFAULT_MAX_MESSAGE_BYTES, "AlterConfigs kept an override"

    # sarama 1.22's AlterConfig keeps only the error message, not the code.
    bad = sarama.run("alter-config", "-topic", topic, "-config", "retention.ms=not-a-number")
    assert bad["error"] is not None and "retention.ms" in bad["error"]["message"], bad["error"]
    assert sarama.topic_configs(topic)["retention.ms"]["value"] == "7200000"


def test_describe_configs_v0_is_refused_like_kafka_4(sarama, shared_broker):
    """sarama 1.22's ClusterAdmin.DescribeConfig and ListTopics send
    DescribeConfigs v0 whatever config.Version says. Kafka 4 removed v0
    (KIP-896) and pinion serves v1-v4: the broker closes the connection at
    once, as Kafka 4 does, so sarama fails fast instead of hanging. (Kafka
    3.x would answer; with sarama 1.22 use the request struct at v1, as
    `topic_configs` does.)"""
    assert sarama.create_topic("sa-configs-v0", 1)["error"] is None
    for command, args in [("describe-config", ["-topic", "sa-configs-v0"]), ("list-topics", [])]:
        refused = sarama.run(command, *args, timeout_s=20)
        assert refused["error"] is not None, f"{command} worked: {refused}"
        assert is_disconnect(refused["error"]), refused["error"]
        assert refused["seconds"] < 10, f"{command} took {refused['seconds']:.1f} s to fail"
    assert "DescribeConfigs v0 is not supported" in shared_broker.log_text()
    assert sarama.topic_configs("sa-configs-v0")["retention.ms"]["value"] == DEFAULT_RETENTION_MS


@pytest.mark.parametrize("acks", ACKS)
@pytest.mark.parametrize("codec", CODECS)
def test_produce_and_consume_every_codec(sarama, codec, acks):
    """The keyed workload through sarama's AsyncProducer (hash partitioner)
    and back through its partition consumers. sarama 1.22 sends zstd in
    Produce v3 and reads it from Fetch v4; Kafka accepts zstd only from
    Produce v7 (KIP-110), pinion accepts it at any version."""
    topic = f"sa-{codec}-acks{acks}"
    assert sarama.create_topic(topic, PARTITION_COUNT)["error"] is None
    messages = make_messages(topic)
    delivered = sarama.produce_all(topic, messages, codec=codec, acks=acks)
    records, _ = sarama.consume(topic, PARTITION_COUNT, len(messages))
    check_consumed(records, messages, delivered=delivered)


def test_acks_0(sarama):
    topic = "sa-acks0"
    assert sarama.create_topic(topic, PARTITION_COUNT)["error"] is None
    messages = make_messages(topic, count=5000)
    _, failed, _ = sarama.produce(topic, messages, codec="lz4", acks="0")
    assert not failed
    # Nothing is acknowledged: the consumer waits for all of it to show up.
    records, _ = sarama.consume(topic, PARTITION_COUNT, len(messages))
    check_consumed(records, messages)


def test_headers_null_keys_and_values(sarama):
    topic = "sa-headers"
    assert sarama.create_topic(topic, 1)["error"] is None
    messages = [(None, None), (b"", b""), (b"k", b"v" * 10)]
    headers = [[(b"h1", b"one"), (b"h2", None), (b"h1", b"again")], [], [(b"only", b"\x00\xff binary")]]
    delivered = sarama.produce_all(topic, messages, partitions=[0, 0, 0], headers=headers)
    assert sorted(delivered.values()) == [(0, 0), (0, 1), (0, 2)]
    _, records = sarama.consume(topic, 1, len(messages))
    got = [
        (r["offset"], unb64(r["key"]), unb64(r["value"]), [(unb64(h["key"]), unb64(h["value"])) for h in r["headers"]])
        for r in records
    ]
    assert got == [(i, key, value, headers[i]) for i, (key, value) in enumerate(messages)]


def test_message_over_max_message_bytes(sarama):
    topic = "sa-small"
    assert sarama.create_topic(topic, 1, configs={"max.message.bytes": "1024"})["error"] is None
    # sarama's own limit (Producer.MaxMessageBytes, 1 MB) lets it through:
    # the broker is the one to refuse.
    delivered, failed, _ = sarama.produce(topic, [(b"big", os.urandom(4096))], flags=["-retries", "0"])
    assert not delivered
    assert [error["name"] for _, error in failed] == ["MESSAGE_TOO_LARGE"], failed
    assert sarama.produce_all(topic, [(b"k", b"small")]) == {b"small": (0, 0)}


def produce_stamped(sarama, topic, base):
    """Ten messages a second apart into partitions 0 and 1 (one batch each)."""
    messages = [(b"k", b"p%d-%d" % (p, i)) for p in (0, 1) for i in range(10)]
    stamps = [base + i * 1000 for _ in (0, 1) for i in range(10)]
    partitions = [p for p in (0, 1) for _ in range(10)]
    delivered = sarama.produce_all(topic, messages, partitions=partitions, timestamps=stamps)
    assert sorted(delivered.values()) == [(p, i) for p in (0, 1) for i in range(10)]
    return messages, stamps


def test_get_offset_oldest_and_newest(sarama):
    topic = "sa-offsets"
    assert sarama.create_topic(topic, 3)["error"] is None
    produce_stamped(sarama, topic, int(time.time() * 1000) - 60_000)
    found = sarama.ok("offsets", "-topic", topic, "-partitions", "3")["partitions"]
    assert [(p["partition"], p["oldest"], p["newest"]) for p in found] == [(0, 0, 10), (1, 0, 10), (2, 0, 0)]


def test_get_offset_by_time(sarama):
    """sarama 1.22 sends batches whose header says maxTimestamp -1; the
    broker stores its records' real maximum, as Kafka does, so ListOffsets
    v1 by time finds them (before, every lookup answered -1)."""
    topic = "sa-offsets-by-time"
    assert sarama.create_topic(topic, 2)["error"] is None
    base = int(time.time() * 1000) - 60_000
    messages, stamps = produce_stamped(sarama, topic, base)
    _, records = sarama.consume(topic, 2, len(messages))
    assert sorted((r["partition"], r["offset"], r["timestamp_ms"]) for r in records) == sorted(
        (p, i, base + i * 1000) for p in (0, 1) for i in range(10)
    ), "the records do not carry the timestamps they were produced with"
    lookups = {base - 5000: 0, base: 0, base + 3500: 4, base + 9000: 9, base + 60_000: -1}
    found = sarama.ok("offsets", "-topic", topic, "-partitions", "2", "-times", ",".join(map(str, lookups)))
    for partition in found["partitions"]:
        got = {stamp: offset for stamp, offset in partition["by_time"]}
        assert got == lookups, f"partition {partition['partition']}: offsets by time (ms after base) " + str(
            {stamp - base: offset for stamp, offset in got.items()}
        )


def test_time_retention_deletes_old_sarama_batches(sarama_client, start_broker):
    """Retention by time goes by the stored max timestamps: sarama's -1 used
    to keep its segments forever."""
    broker = start_broker("--log-retention-check-interval-ms", "200")
    client = Sarama(sarama_client, broker)
    topic = "sa-retention"
    assert client.create_topic(topic, 1, configs={"segment.bytes": "65536", "retention.ms": "600000"})["error"] is None
    old = int(time.time() * 1000) - 3_600_000
    # Each old message is a batch larger than segment.bytes: a segment of its own.
    for index in range(4):
        client.produce_all(topic, [(b"k", b"old-%d-" % index + b"x" * 70_000)], partitions=[0], timestamps=[old])
    client.produce_all(topic, [(b"k", b"fresh")], partitions=[0])
    deadline = time.monotonic() + 10
    while True:
        (partition,) = client.ok("offsets", "-topic", topic, "-partitions", "1")["partitions"]
        if partition["oldest"] >= 4 or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert (partition["oldest"], partition["newest"]) == (4, 5), "segments an hour older than retention.ms were kept"
    records, _ = client.consume(topic, 1, 1)
    assert records == [(0, 4, b"k", b"fresh")]


class GroupMember:
    """One `sarama_client group` process: a ConsumerGroup member whose
    events (assigned, revoked, record, error, closed) are read as they come."""

    def __init__(self, sarama, log_dir, name, group, topic, *args):
        self.name = name
        self.events = []  # every event but the records
        self._records = []
        self._lines = queue.Queue()
        self._log = open(log_dir / f"{name}.log", "w")
        self.process = subprocess.Popen(
            sarama.command("group", "-group", group, "-topic", topic, *args),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.process.stdout:
            self._lines.put(json.loads(line))
        self._lines.put(None)

    def drain(self, timeout):
        """Takes the events that came, waiting up to `timeout` for the first;
        False if none came."""
        try:
            event = self._lines.get(timeout=timeout)
        except queue.Empty:
            return False
        taken = 0
        while event is not None:
            taken += 1
            if event["event"] == "record":
                r = event["record"]
                record = (r["partition"], r["offset"], unb64(r["key"]), unb64(r["value"]), r["generation"])
                self._records.append(record)
            else:
                self.events.append(event)
            try:
                event = self._lines.get_nowait()
            except queue.Empty:
                break
        return taken > 0

    def wait_for(self, predicate, timeout, what):
        deadline = time.monotonic() + timeout
        while not predicate():
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"{self.name}: no {what} within {timeout} s; events {self.summary()}"
            self.drain(min(remaining, 0.2))

    def assignments(self):
        """[(generation, partitions)] in the order they came."""
        return [(e["generation"], e["partitions"]) for e in self.events if e["event"] == "assigned"]

    def records(self):
        """[(partition, offset, key, value, generation)] in consume order."""
        return list(self._records)

    def record_count(self):
        return len(self._records)

    def errors(self):
        return [e["error"] for e in self.events if e["event"] == "error"]

    def closed(self):
        return next((e for e in self.events if e["event"] == "closed"), None)

    def summary(self):
        counts = collections.Counter(e["event"] for e in self.events)
        return {
            "records": self.record_count(),
            "events": dict(counts),
            "assignments": self.assignments(),
            "errors": self.errors()[:3],
            "closed": self.closed(),
        }

    def stop(self, timeout=40):
        """Closes stdin (the member leaves the group and commits), waits for
        its last event and exit."""
        if self.process.stdin and not self.process.stdin.closed:
            self.process.stdin.close()
        return self.finish(timeout)

    def finish(self, timeout=40):
        try:
            self.wait_for(lambda: self.closed() is not None, timeout, "closed event")
            self.process.wait(timeout=10)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait(timeout=10)
            while self.drain(0):
                pass
            self._log.close()
        return self.closed()


def wait_for_members(members, predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"no {what} within {timeout} s: {[m.summary() for m in members]}"
        for member in members:
            member.drain(0.05)


@pytest.fixture
def group_members(sarama, tmp_path):
    """Starts GroupMembers; kills any still running at teardown."""
    started = []

    def start(name, group, topic, *args):
        member = GroupMember(sarama, tmp_path, name, group, topic, *args)
        started.append(member)
        return member

    yield start
    for member in started:
        if member.process.poll() is None:
            member.process.kill()
            member.process.wait(timeout=10)


def newest_offsets(sarama, topic, partitions):
    found = sarama.ok("offsets", "-topic", topic, "-partitions", str(partitions))["partitions"]
    return {str(p["partition"]): p["newest"] for p in found}


def test_group_commits_and_a_new_member_resumes(sarama, group_members):
    """One member reads everything and commits (MarkMessage, then the commit
    on close); a new member of the group starts at the committed offsets."""
    topic, group = "sa-group-commit", "sa-group-commit"
    assert sarama.create_topic(topic, PARTITION_COUNT)["error"] is None
    first = make_messages(f"{topic}-first", count=3000)
    delivered = sarama.produce_all(topic, first)

    reader = group_members("first", group, topic, "-stop-after", str(len(first)))
    closed = reader.finish(timeout=RUN_TIMEOUT_S)
    assert closed["error"] is None and closed["reason"] == "stop-after", reader.summary()
    assert [partitions for _, partitions in reader.assignments()] == [list(range(PARTITION_COUNT))]
    assert not reader.errors(), reader.errors()[:3]
    check_consumed([r[:4] for r in reader.records()], first, delivered=delivered)

    ends = newest_offsets(sarama, topic, PARTITION_COUNT)
    committed = sarama.ok("group-offsets", "-group", group, "-topic", topic, "-partitions", str(PARTITION_COUNT))
    assert committed["offsets"] == ends, "the committed offsets are not the end of what was read"

    second = make_messages(f"{topic}-second", count=1000)
    sarama.produce_all(topic, second)
    resumed = group_members("second", group, topic, "-stop-after", str(len(second)))
    closed = resumed.finish(timeout=RUN_TIMEOUT_S)
    assert closed["error"] is None and closed["reason"] == "stop-after", resumed.summary()
    records = resumed.records()
    got = collections.Counter((key, value) for _, _, key, value, _ in records)
    assert got == collections.Counter(second), f"the new member read {len(records)} records, not just the 1000 new ones"
    first_offsets = {}
    for partition, offset, *_ in records:
        first_offsets.setdefault(str(partition), offset)
    assert first_offsets == ends, "the new member did not start at the committed offsets"


def test_two_members_split_six_partitions(sarama, shared_broker, group_members):
    topic, group = "sa-group-split", "sa-group-split"
    assert sarama.create_topic(topic, PARTITION_COUNT)["error"] is None
    first = group_members("split-a", group, topic, "-stop-on-stdin-eof")
    first.wait_for(lambda: first.assignments(), 30, "assignment")
    second = group_members("split-b", group, topic, "-stop-on-stdin-eof")

    def split():
        mine, theirs = first.assignments(), second.assignments()
        return mine and theirs and mine[-1][0] == theirs[-1][0] and mine[-1][1] and theirs[-1][1]

    wait_for_members([first, second], split, 40, "generation with both members")
    generation = first.assignments()[-1][0]
    owned = {"split-a": set(first.assignments()[-1][1]), "split-b": set(second.assignments()[-1][1])}
    assert owned["split-a"].isdisjoint(owned["split-b"]), owned
    assert owned["split-a"] | owned["split-b"] == set(range(PARTITION_COUNT)), owned
    assert sorted(len(p) for p in owned.values()) == [3, 3], owned

    (described,) = sarama.ok("describe-groups", "-group", group)["groups"]
    assert described["state"] == "Stable" and described["protocol_type"] == "consumer", described
    assert sorted(sorted(m["assignment"][topic]) for m in described["members"]) == sorted(
        sorted(p) for p in owned.values()
    ), described
    assert sarama.ok("list-groups")["groups"].get(group) == "consumer"

    messages = make_messages(topic, count=3000)
    delivered = sarama.produce_all(topic, messages)
    wait_for_members(
        [first, second], lambda: first.record_count() + second.record_count() >= len(messages), 30, "records"
    )
    for member in (first, second):
        closed = member.stop()
        assert closed["error"] is None, member.summary()
    for member in (first, second):
        stray = [r for r in member.records() if r[0] not in owned[member.name] or r[4] != generation]
        assert not stray, f"{member.name} read partitions it did not own in generation {generation}: {stray[:3]}"
    check_consumed([r[:4] for r in first.records() + second.records()], messages, delivered=delivered)


def test_default_offset_commit_v1_is_refused_like_kafka_4(sarama, shared_broker, group_members):
    """With sarama's default Consumer.Offsets.Retention (0), 1.22 commits with
    OffsetCommit v1, which Kafka 4 removed (KIP-896) and pinion does not
    serve: the broker closes the connection, the member reports errors, keeps
    consuming and closes in time, and nothing is committed."""
    topic, group = "sa-group-v1", "sa-group-v1"
    assert sarama.create_topic(topic, 2)["error"] is None
    messages = make_messages(topic, count=200, keys=10)
    sarama.produce_all(topic, messages)
    member = group_members("commit-v1", group, topic, "-stop-after", str(len(messages)), "-offsets-retention", "0")
    started = time.monotonic()
    closed = member.finish(timeout=RUN_TIMEOUT_S)
    assert closed["reason"] == "stop-after" and time.monotonic() - started < 30, member.summary()
    assert len(member.records()) == len(messages)
    assert any(is_disconnect(error) for error in member.errors()), member.errors()[:3]
    assert "OffsetCommit v1 is not supported" in shared_broker.log_text()
    committed = sarama.ok("group-offsets", "-group", group, "-topic", topic, "-partitions", "2")
    assert committed["offsets"] == {"0": -1, "1": -1}


def test_too_old_kafka_version_is_refused_promptly(sarama, shared_broker):
    """config.Version 0.10.2 makes sarama send Produce v2 (message set v1),
    which pinion, like Kafka 4, does not serve: a prompt disconnect, not a
    hang, and the broker goes on serving."""
    topic = "sa-old-version"
    assert sarama.create_topic(topic, 1)["error"] is None
    delivered, failed, document = sarama.produce(
        topic, [(b"k", b"old")], flags=["-kafka-version", "0.10.2.0", "-retries", "0"]
    )
    assert not delivered and len(failed) == 1, document
    assert is_disconnect(failed[0][1]), failed
    assert document["seconds"] < 15, f"the refused produce took {document['seconds']:.1f} s"
    assert "Produce v2 is not supported" in shared_broker.log_text()
    assert sarama.produce_all(topic, [(b"k", b"new")]) == {b"new": (0, 0)}
