"""Consumer groups and idempotent producers with real clients: a group of
consumers splits a topic's partitions and rebalances when one leaves or is
killed (members in their own processes, see group_member.py), static
members come back without a rebalance, committed offsets survive broker
restarts and expire once a group stays empty, groups read independently,
and an idempotent producer's messages are stored exactly once and in order,
also when its connections are cut mid-stream (see tcp_proxy.py)."""

import json
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from confluent_helpers import consume, create_topic, produce_all, producer
from tcp_proxy import TcpProxy

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


# --- members in their own processes: kills, closes, restarts ---------------

MEMBER_SCRIPT = Path(__file__).resolve().parent / "group_member.py"
MEMBER_SESSION_TIMEOUT_MS = 6000


class Member:
    """A `group_member.py` process and the events it appended so far."""

    def __init__(self, client, bootstrap, group, topic, events_path, session_timeout_ms=None, instance_id=None):
        self.events_path = events_path
        command = [sys.executable, str(MEMBER_SCRIPT), client, bootstrap, group, topic, str(events_path)]
        command.append(str(session_timeout_ms or MEMBER_SESSION_TIMEOUT_MS))
        if instance_id is not None:
            command.append(instance_id)
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL)

    def events(self):
        try:
            lines = self.events_path.read_text().splitlines()
        except FileNotFoundError:
            return []
        # The last line may be half written by a process killed mid-write.
        return [json.loads(line) for line in lines if line.endswith("}")]

    def assignment(self):
        """(partitions, time) of the last assign not revoked since; ([], None) if none."""
        held, since = [], None
        for event in self.events():
            if event["event"] == "assign":
                held, since = event["partitions"], event["t"]
            elif event["event"] == "revoke":
                held, since = [], None
        return held, since

    def stop(self, sig):
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(timeout=10)


def wait_for_member_assignments(members, sizes, timeout=TIMEOUT_S):
    """Waits until each member holds `sizes[i]` partitions, all distinct and
    together every partition; returns the time the last one was assigned."""
    deadline = time.monotonic() + timeout
    held = []
    while time.monotonic() < deadline:
        held = [m.assignment() for m in members]
        partitions = [p for ps, _ in held for p in ps]
        if [len(ps) for ps, _ in held] == sizes and sorted(partitions) == list(range(sum(sizes))):
            return max(t for _, t in held)
        time.sleep(0.05)
    logs = ", ".join(f"{m.events_path}.log" for m in members)
    raise AssertionError(f"assignments never reached {sizes}: {held} (kafka-python members log to {logs})")


def consumed_values(members):
    """Every value the members consumed, as often as they consumed it."""
    return [r[3] for m in members for e in m.events() if e["event"] == "records" for r in e["records"]]


def wait_until_consumed(members, expected, timeout=TIMEOUT_S):
    deadline = time.monotonic() + timeout
    missing = expected
    while time.monotonic() < deadline:
        missing = expected - set(consumed_values(members))
        if not missing:
            return
        time.sleep(0.1)
    raise AssertionError(f"{len(missing)} of {len(expected)} messages never consumed, e.g. {sorted(missing)[:5]}")


def committed_offsets(bootstrap, group, topic, partitions):
    """The group's committed offsets (OffsetFetch), -1 where it has none."""
    check = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        committed = check.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=15)
    finally:
        check.close()
    return [tp.offset if tp.offset >= 0 else -1 for tp in committed]


def wait_until_committed(bootstrap, group, topic, total, timeout=15.0):
    """Waits until the group's committed offsets of `topic` add up to `total`."""
    deadline = time.monotonic() + timeout
    offsets = []
    while time.monotonic() < deadline:
        offsets = committed_offsets(bootstrap, group, topic, 6)
        if sum(max(o, 0) for o in offsets) == total:
            return
        time.sleep(0.1)
    raise AssertionError(f"committed offsets {offsets} never added up to {total}")


@pytest.mark.parametrize("client", ["confluent", "kafka-python"])
def test_killed_and_closed_members_are_replaced_and_every_message_is_consumed(start_broker, tmp_path, client):
    """Three members in their own processes split six partitions; one is
    SIGKILLed (no LeaveGroup: its session expires), then one closes
    (LeaveGroup). The survivors take over its partitions, every message is
    consumed at least once, and no partition is consumed by two members of
    one generation. Prints how long each rebalance took."""
    broker = start_broker(*GROUP_ARGS)
    topic = "groups-kill"
    create_topic(broker.bootstrap, topic, 6)
    produced = set()

    def produce_phase(name, count=300):
        values = [f"{name}-{i}" for i in range(count)]
        produce_all(broker.bootstrap, topic, [(v.encode(), v.encode()) for v in values], acks="all")
        produced.update(values)

    produce_phase("before")
    members = [Member(client, broker.bootstrap, "kill", topic, tmp_path / f"member-{i}.jsonl") for i in range(3)]
    try:
        started = time.time()
        formed_at = wait_for_member_assignments(members, [2, 2, 2])
        produce_phase("stable")
        wait_until_consumed(members, produced)
        assert any(e["event"] == "records" for e in members[0].events()), "the member to kill consumed its share"
        committed_before_kill = set(produced)
        wait_until_committed(broker.bootstrap, "kill", topic, len(committed_before_kill))

        # A kill: no LeaveGroup; the coordinator notices when the session expires.
        killed_at = time.time()
        members[0].stop(signal.SIGKILL)
        produce_phase("after-kill")
        after_kill = wait_for_member_assignments(members[1:], [3, 3], timeout=MEMBER_SESSION_TIMEOUT_MS / 1000 + 20)
        wait_until_consumed(members, produced)

        # A close: LeaveGroup, the survivor rebalances at its next heartbeat.
        closed_at = time.time()
        assert members[1].stop(signal.SIGTERM) == 0
        assert members[1].events()[-1]["event"] == "closed"
        produce_phase("after-close")
        after_close = wait_for_member_assignments(members[2:], [6])
        wait_until_consumed(members, produced)
    finally:
        for m in members:
            m.stop(signal.SIGKILL)

    kill_rebalance, close_rebalance = after_kill - killed_at, after_close - closed_at
    print(
        f"{client}: group of 3 formed in {formed_at - started:.2f} s; rebalance after a kill (session.timeout.ms "
        f"{MEMBER_SESSION_TIMEOUT_MS}) took {kill_rebalance:.2f} s, after a close (LeaveGroup) {close_rebalance:.2f} s"
    )
    session_timeout_s = MEMBER_SESSION_TIMEOUT_MS / 1000
    assert session_timeout_s - 1 <= kill_rebalance, "a killed member is not dropped before its session expires"
    # No partition is consumed by two members of one generation.
    owners = {}
    for index, member in enumerate(members):
        for event in member.events():
            if event["event"] == "records":
                for partition, _offset, generation, _value in event["records"]:
                    assert generation > 0, f"a record consumed outside a generation: {event}"
                    owners.setdefault((generation, partition), set()).add(index)
    shared = {key: who for key, who in owners.items() if len(who) > 1}
    assert not shared, f"partitions consumed by two members of the same generation: {shared}"
    # What the group had committed before the kill is never read again: the
    # survivors resume at the killed member's committed offsets.
    again = [v for v, n in Counter(consumed_values(members)).items() if n > 1 and v in committed_before_kill]
    assert not again, f"{len(again)} committed messages consumed again, e.g. {again[:5]}"


def test_a_static_member_restarted_within_its_session_takes_its_place_without_a_rebalance(start_broker, tmp_path):
    """KIP-345: three members with group.instance.id; one is SIGKILLed and
    restarted with the same instance id before its session expires. It gets
    its partitions back and the others are not rebalanced (no revoke)."""
    broker = start_broker(*GROUP_ARGS)
    topic = "groups-static"
    create_topic(broker.bootstrap, topic, 6)
    session_timeout_ms = 20_000

    def member(index, name):
        path = tmp_path / f"{name}.jsonl"
        return Member("confluent", broker.bootstrap, "static", topic, path, session_timeout_ms, f"instance-{index}")

    members = [member(i, f"member-{i}") for i in range(3)]
    try:
        wait_for_member_assignments(members, [2, 2, 2])
        before = [m.assignment()[0] for m in members]
        killed_at = time.time()
        members[0].stop(signal.SIGKILL)
        members[0] = member(0, "member-0-restarted")
        wait_for_member_assignments(members, [2, 2, 2], timeout=15)
        assert [m.assignment()[0] for m in members] == before, "every instance keeps its partitions"
        messages = [(f"k{i}".encode(), f"static-{i}".encode()) for i in range(300)]
        produce_all(broker.bootstrap, topic, messages)
        wait_until_consumed(members, {v.decode() for _, v in messages})
        for m in members[1:]:
            revokes = [e for e in m.events() if e["event"] == "revoke" and e["t"] > killed_at]
            assert not revokes, f"no rebalance: {revokes}"
    finally:
        for m in members:
            m.stop(signal.SIGKILL)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_a_live_group_carries_on_across_a_broker_restart(start_broker, tmp_path, sig):
    """Three members keep running while the broker restarts (on another
    port, behind a proxy at the advertised address): the group comes back
    from __consumer_offsets, the members carry on, every message produced
    after the restart is consumed, and nothing committed before the restart
    is consumed again."""
    topic = "groups-restart-live"
    with TcpProxy() as proxy:
        broker = start_broker(*GROUP_ARGS, "--advertised", proxy.address)
        proxy.upstream_port = broker.port
        create_topic(broker.bootstrap, topic, 6)
        produced = set()

        def produce_phase(name, count=300):
            values = [f"{name}-{i}" for i in range(count)]
            produce_all(broker.bootstrap, topic, [(v.encode(), v.encode()) for v in values], acks="all")
            produced.update(values)

        members = [Member("confluent", proxy.address, "live", topic, tmp_path / f"member-{i}.jsonl") for i in range(3)]
        try:
            wait_for_member_assignments(members, [2, 2, 2])
            produce_phase("before")
            wait_until_consumed(members, produced)
            committed_before = set(produced)
            wait_until_committed(broker.bootstrap, "live", topic, len(committed_before))

            broker.stop(sig)
            restarted_at = time.time()
            broker.start()
            proxy.upstream_port = broker.port
            proxy.drop_all()  # connections to the old broker are gone anyway
            produce_phase("after")
            wait_until_consumed(members, produced)
            resumed = time.time() - restarted_at
            for m in members:
                assert m.process.poll() is None, "every member is still running"
        finally:
            for m in members:
                m.stop(signal.SIGKILL)
    again = [v for v, n in Counter(consumed_values(members)).items() if n > 1 and v in committed_before]
    assert not again, f"{len(again)} messages committed before the restart consumed again, e.g. {again[:5]}"
    print(f"after a {sig.name} restart the group consumed again within {resumed:.2f} s")


# --- an idempotent producer whose connections drop mid-stream ---------------


class ConfluentIdempotentProducer:
    """librdkafka's idempotent producer, with its delivery reports."""

    def __init__(self, bootstrap):
        self.client = producer(
            bootstrap,
            enable_idempotence=True,
            acks="all",
            linger_ms=2,
            batch_num_messages=50,
            retry_backoff_ms=50,
            message_timeout_ms=60_000,
        )
        self.delivered, self.errors = {}, []

    def _on_delivery(self, error, message):
        if error is not None:
            self.errors.append((message.value(), error))
        else:
            self.delivered[message.value()] = (message.partition(), message.offset())

    def send(self, topic, value, partition, deadline):
        while True:
            try:
                self.client.produce(topic, key=b"k", value=value, partition=partition, on_delivery=self._on_delivery)
                return
            except BufferError:
                assert time.monotonic() < deadline, "the producer queue stayed full"
                self.client.poll(0.05)

    def pause(self, seconds):
        self.client.poll(seconds)

    def flush(self, timeout):
        assert self.client.flush(timeout) == 0, "messages still unacknowledged"


class KafkaPythonIdempotentProducer:
    """kafka-python's idempotent producer (its default), with futures."""

    def __init__(self, bootstrap):
        from kafka import KafkaProducer

        self.client = KafkaProducer(
            bootstrap_servers=bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=2,
            batch_size=2048,
            retry_backoff_ms=50,
            delivery_timeout_ms=60_000,
        )
        self.delivered, self.errors = {}, []

    def send(self, topic, value, partition, deadline):
        future = self.client.send(topic, key=b"k", value=value, partition=partition)
        future.add_callback(lambda m: self.delivered.__setitem__(value, (m.partition, m.offset)))
        future.add_errback(lambda e: self.errors.append((value, e)))

    def pause(self, seconds):
        time.sleep(seconds)

    def flush(self, timeout):
        self.client.flush(timeout=timeout)
        self.client.close(timeout=5)


@pytest.mark.parametrize("client", ["confluent", "kafka-python"])
@pytest.mark.parametrize("cut_delay_s", [0.15, 0.0], ids=["response-lost", "request-racing"])
def test_idempotent_producer_retries_after_dropped_connections_store_each_message_once(
    start_broker, cut_delay_s, client
):
    """Every connection is cut a few times right after a Produce request
    reached the broker and before its response got back: the client retries
    batches the broker already stored, and the broker must answer those as
    duplicates (original offsets) instead of storing them twice. With no
    delay, the retry may also race the original request's handling."""
    partitions, count, cuts = 6, 6000, 4
    topic = "groups-idempotent-cut"
    with TcpProxy(cut_delay_s=cut_delay_s) as proxy:
        broker = start_broker(*GROUP_ARGS, "--advertised", proxy.address)
        proxy.upstream_port = broker.port
        create_topic(broker.bootstrap, topic, partitions)
        sender = {"confluent": ConfluentIdempotentProducer, "kafka-python": KafkaPythonIdempotentProducer}[client](
            proxy.address
        )
        # Rounds of messages with pauses, so requests are in flight when the
        # cuts come; a cut is armed before every few rounds.
        rounds = 20
        per_round = count // rounds
        deadline = time.monotonic() + 60.0
        for round_index in range(rounds):
            if round_index % (rounds // cuts) == 3 and proxy.cuts_armed == 0:
                proxy.cut_after_produce(1)
            for i in range(round_index * per_round, (round_index + 1) * per_round):
                sender.send(topic, f"v{i}".encode(), i % partitions, deadline)
            sender.pause(0.15)
        sender.flush(max(1.0, deadline - time.monotonic()))
        delivered, errors = sender.delivered, sender.errors
        assert not errors, f"{len(errors)} delivery errors, e.g. {errors[:3]}"
        assert proxy.cuts_done >= cuts - 1, f"only {proxy.cuts_done} cuts happened"
        assert proxy.connections_accepted > proxy.cuts_done, "the client reconnected after each cut"
        if cut_delay_s > 0:
            assert proxy.response_bytes_dropped > 0, "the broker answered requests whose answers the client never got"
        # Through the proxy too: it is the address the broker advertises.
        stored = consume(proxy.address, topic, partitions, count)

    by_partition = {p: [value.decode() for part, _, _, value in stored if part == p] for p in range(partitions)}
    for p in range(partitions):
        expected = [f"v{i}" for i in range(p, count, partitions)]
        got = by_partition[p]
        duplicates = len(got) - len(set(got))
        assert duplicates == 0, f"partition {p}: {duplicates} messages stored twice"
        assert got == expected, f"partition {p}: stored {len(got)} of {len(expected)} messages, or out of order"
    assert len(stored) == count and len(delivered) == count
    offsets = {(partition, offset) for partition, offset in delivered.values()}
    assert len(offsets) == count, "each message was acknowledged at its own offset"
    print(
        f"{client}: {proxy.cuts_done} cuts, {proxy.connections_accepted} connections through the proxy, "
        f"{proxy.response_bytes_dropped} response bytes dropped"
    )


# --- offset retention ---------------------------------------------------------


def test_offsets_of_an_empty_group_expire_and_an_active_group_keeps_its_own(start_broker):
    retention_ms = 2000
    broker = start_broker(
        *GROUP_ARGS, "--offsets-retention-ms", str(retention_ms), "--offsets-retention-check-interval-ms", "200"
    )
    topic = "groups-retention"
    create_topic(broker.bootstrap, topic, 6)
    messages = [(f"k{i}".encode(), f"v{i}".encode()) for i in range(300)]
    produce_all(broker.bootstrap, topic, messages, acks="all")

    # "gone" commits everything and closes: the group is Empty from then on.
    gone = group_consumer(broker.bootstrap, "gone")
    try:
        gone.subscribe([topic])
        consumed, deadline = 0, time.monotonic() + TIMEOUT_S
        while consumed < len(messages) and time.monotonic() < deadline:
            message = gone.poll(0.1)
            consumed += message is not None and message.error() is None
        gone.commit(asynchronous=False)
        committed = gone.committed([TopicPartition(topic, p) for p in range(6)], timeout=15)
        assert sum(tp.offset for tp in committed) == len(messages)
    finally:
        gone.close()
    emptied_at = time.monotonic()

    # "active" commits and stays a member, polling, past the retention.
    active = group_consumer(broker.bootstrap, "active")
    try:
        active.subscribe([topic])
        values = []
        deadline = time.monotonic() + TIMEOUT_S
        while len(values) < len(messages) and time.monotonic() < deadline:
            message = active.poll(0.1)
            if message is not None and message.error() is None:
                values.append(message.value())
        assert len(values) == len(messages)
        active.commit(asynchronous=False)
        # Past the retention of "gone" (plus check intervals), polling all along.
        expired = None
        deadline = time.monotonic() + retention_ms / 1000 + 15
        while time.monotonic() < deadline:
            active.poll(0.2)
            if time.monotonic() - emptied_at > retention_ms / 1000:
                if committed_offsets(broker.bootstrap, "gone", topic, 6) == [-1] * 6:
                    expired = time.monotonic() - emptied_at
                    break
        assert expired is not None, "the offsets of the empty group never expired"
        active.poll(0.2)
        time.sleep(retention_ms / 1000 + 0.5)  # "active" is past the retention too
        active.poll(0.2)
        kept = active.committed([TopicPartition(topic, p) for p in range(6)], timeout=15)
        assert sum(tp.offset for tp in kept) == len(messages), "an active group keeps its offsets"
        assert len(active.assignment()) == 6
    finally:
        active.close()
    print(f"offsets of an empty group expired {expired:.2f} s after it emptied (retention {retention_ms} ms)")

    # The expiry was written to __consumer_offsets: a restart does not bring them back.
    broker.stop()
    broker.start()
    assert committed_offsets(broker.bootstrap, "gone", topic, 6) == [-1] * 6
