"""One group consumer (confluent-kafka or kafka-python) in its own process,
so a test can SIGKILL it (no LeaveGroup) or SIGTERM it (close: LeaveGroup).

    python group_member.py CLIENT BOOTSTRAP GROUP TOPIC EVENTS_FILE [SESSION_TIMEOUT_MS [INSTANCE_ID]]

CLIENT is `confluent` or `kafka-python`; INSTANCE_ID (confluent only)
makes it a static member (group.instance.id).

Appends one JSON object per line to EVENTS_FILE, flushed at once, with
`t` the wall-clock time (time.time(), shared by every process here):
- {"event": "assign"|"revoke", "partitions": [...], "generation": g}
- {"event": "records", "records": [[partition, offset, generation, value], ...]}
- {"event": "closed"} after a clean close on SIGTERM.

At least once: a record's offset is committed only after the line naming
it is written (confluent-kafka: enable.auto.offset.store=false and
auto-commit; kafka-python: a synchronous commit after each poll). The
generation comes from the consumer group metadata: librdkafka's serialized
form ("CGMDv2:" then the generation id, int32 in host byte order), or
kafka-python's `group_metadata()`.
"""

import json
import logging
import signal
import struct
import sys
import time

from confluent_kafka import Consumer

# A member that is never told to stop still ends: bounded for a test.
LIFETIME_MAX_S = 120.0
CGMD_MAGIC = b"CGMDv2:"


def generation(consumer) -> int:
    metadata = bytes(consumer.consumer_group_metadata())
    if not metadata.startswith(CGMD_MAGIC) or len(metadata) < len(CGMD_MAGIC) + 4:
        return -2
    return struct.unpack_from("=i", metadata, len(CGMD_MAGIC))[0]


def run_confluent(bootstrap, group, topic, session_timeout_ms, emit, stop, instance_id=None):
    static = {"group.instance.id": instance_id} if instance_id else {}
    consumer = Consumer(
        {
            **static,
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": True,
            "auto.commit.interval.ms": 200,
            "enable.auto.offset.store": False,
            "session.timeout.ms": session_timeout_ms,
            "heartbeat.interval.ms": 300,
            "partition.assignment.strategy": "range",
        }
    )

    def on_assign(c, partitions):
        emit("assign", partitions=sorted(tp.partition for tp in partitions), generation=generation(c))

    def on_revoke(c, partitions):
        emit("revoke", partitions=sorted(tp.partition for tp in partitions), generation=generation(c))

    consumer.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke)
    deadline = time.monotonic() + LIFETIME_MAX_S
    while not stop and time.monotonic() < deadline:
        messages = consumer.consume(num_messages=500, timeout=0.1)
        records = []
        for message in messages:
            if message.error() is None:
                records.append([message.partition(), message.offset(), generation(consumer), message.value().decode()])
        if records:
            emit("records", records=records)
            for message in messages:
                if message.error() is None:
                    consumer.store_offsets(message)
    consumer.close()


def run_kafka_python(bootstrap, group, topic, session_timeout_ms, emit, stop, instance_id=None):
    assert instance_id is None, "static members only with confluent-kafka here"
    from kafka import ConsumerRebalanceListener, KafkaConsumer
    from kafka.coordinator.assignors.range import RangePartitionAssignor
    from kafka.errors import CommitFailedError, RebalanceInProgressError

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=session_timeout_ms,
        heartbeat_interval_ms=300,
        partition_assignment_strategy=[RangePartitionAssignor],
    )

    def generation_id():
        return consumer.group_metadata().generation_id

    class Listener(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked):
            emit("revoke", partitions=sorted(tp.partition for tp in revoked), generation=generation_id())

        def on_partitions_assigned(self, assigned):
            emit("assign", partitions=sorted(tp.partition for tp in assigned), generation=generation_id())

    consumer.subscribe([topic], listener=Listener())
    deadline = time.monotonic() + LIFETIME_MAX_S
    while not stop and time.monotonic() < deadline:
        # Not shorter: kafka-python 3.0.12 can lose a rebalance that its
        # leader starts by itself (the first generation is assigned before
        # the topic's metadata arrives, and the metadata change makes the
        # leader rejoin). If poll() times out while that JoinGroup/SyncGroup
        # is in flight, the join finishes in the background but is never
        # applied: no assignment, heartbeats stay off, and the session
        # expires. A join phase waits for every member to rejoin (they learn
        # of it from a heartbeat, every 300 ms), so a 100 ms poll lost it
        # about 1 run in 20 under load; poll() returns as soon as records
        # arrive, so a longer timeout costs nothing while consuming.
        batches = consumer.poll(timeout_ms=1000, max_records=500)
        generation = generation_id()
        records = [[tp.partition, r.offset, generation, r.value.decode()] for tp, rs in batches.items() for r in rs]
        if records:
            emit("records", records=records)
            try:
                consumer.commit()
            except (CommitFailedError, RebalanceInProgressError):
                pass  # a rebalance: the next owner reads these again (at least once)
    consumer.close(autocommit=False)


def main():
    client, bootstrap, group, topic, events_path = sys.argv[1:6]
    session_timeout_ms = int(sys.argv[6]) if len(sys.argv) > 6 else 6000
    instance_id = sys.argv[7] if len(sys.argv) > 7 else None
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    events = open(events_path, "a", buffering=1)

    def emit(event, **fields):
        events.write(json.dumps({"event": event, "t": time.time(), **fields}) + "\n")
        events.flush()

    # kafka-python's own account of the group protocol (JoinGroup, SyncGroup,
    # heartbeats), next to the events file: what to read when a member never
    # gets an assignment.
    logging.basicConfig(
        filename=f"{events_path}.log", level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    logging.getLogger("kafka.coordinator").setLevel(logging.DEBUG)
    run = {"confluent": run_confluent, "kafka-python": run_kafka_python}[client]
    run(bootstrap, group, topic, session_timeout_ms, emit, stop, instance_id)
    emit("closed")
    events.close()


if __name__ == "__main__":
    main()
