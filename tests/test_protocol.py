"""Wire-level behaviour that well-behaved clients rely on without testing it
themselves: pipelined requests answered in order (acks=0 produces answered
not at all), per-partition errors inside one Produce request, and requests
beyond the per-connection in-flight limit."""

import struct
import threading
import time

import pytest
from kafka.protocol.consumer.fetch import FetchRequest, FetchResponse

import kafka_wire as wire
from confluent_helpers import consume, create_topic
from kafka_messages import call

ERROR_OFFSET_OUT_OF_RANGE = 1
ERROR_INVALID_TOPIC = 17

TOPIC = "wire"


def test_pipelined_requests_are_answered_in_order(shared_broker):
    create_topic(shared_broker.bootstrap, TOPIC, 2)
    expected = []  # (correlation id, api) of every request that gets an answer
    with wire.Connection(shared_broker.port) as conn:
        frames = []
        for index in range(120):
            kind = index % 4
            correlation_id = 1000 + index
            if kind == 0:
                frames.append(wire.request_frame(wire.API_API_VERSIONS, 0, correlation_id, b""))
                expected.append((correlation_id, "versions"))
            elif kind == 1:
                body = wire.metadata_v4_body([TOPIC])
                frames.append(wire.request_frame(wire.API_METADATA, 4, correlation_id, body))
                expected.append((correlation_id, "metadata"))
            else:
                acks = 0 if kind == 2 else 1
                batch = wire.record_batch([(b"k", b"pipelined-%03d" % index)])
                frames.append(wire.request_frame(wire.API_PRODUCE, 3, correlation_id, wire.produce_v3_body(TOPIC, 0, batch, acks=acks)))
                if acks:
                    expected.append((correlation_id, "produce"))
        conn.send(b"".join(frames))  # all at once: well past the in-flight limit of 64
        for correlation_id, kind in expected:
            body = conn.read_response(correlation_id)
            if kind == "versions":
                assert wire.parse_api_versions_v0(body)[0] == wire.ERROR_NONE
            elif kind == "metadata":
                assert wire.parse_metadata_v4(body) == {TOPIC: (wire.ERROR_NONE, 2)}
            else:
                assert wire.parse_produce_v3(body)[(TOPIC, 0)][0] == wire.ERROR_NONE
        # Nothing else comes: the acks=0 produces had no response.
        conn.sock.settimeout(0.5)
        try:
            extra = conn.sock.recv(1)
        except TimeoutError:
            extra = b""
        assert extra == b"", "a response nobody asked for"
    records = consume(shared_broker.bootstrap, TOPIC, 2, 60)
    values = [value for partition, _, _, value in records if partition == 0]
    assert values == [b"pipelined-%03d" % i for i in range(120) if i % 4 in (2, 3)]


def test_one_produce_request_gets_an_answer_per_partition(shared_broker):
    create_topic(shared_broker.bootstrap, "wire-mixed", 3)
    good = wire.record_batch([(b"k", b"good")])
    request = {
        "wire-mixed": {
            0: good,
            1: wire.record_batch([(b"k", b"bad crc")], corrupt_crc=True),
            2: good,
            7: good,  # no such partition
        },
        "wire-mixed-2": {0: good},  # auto-created
    }
    with wire.Connection(shared_broker.port) as conn:
        body = conn.roundtrip(wire.API_PRODUCE, 3, wire.produce_v3_body_many(request))
        answers = wire.parse_produce_v3(body)
    assert answers == {
        ("wire-mixed", 0): (wire.ERROR_NONE, 0),
        ("wire-mixed", 1): (wire.ERROR_CORRUPT_MESSAGE, -1),
        ("wire-mixed", 2): (wire.ERROR_NONE, 0),
        ("wire-mixed", 7): (wire.ERROR_UNKNOWN_TOPIC_OR_PARTITION, -1),
        ("wire-mixed-2", 0): (wire.ERROR_NONE, 0),
    }
    records = consume(shared_broker.bootstrap, "wire-mixed", 3, 2)
    assert sorted((p, o, v) for p, o, _, v in records) == [(0, 0, b"good"), (2, 0, b"good")]


def test_produce_to_a_negative_partition(shared_broker):
    create_topic(shared_broker.bootstrap, "wire-negative", 1)
    with wire.Connection(shared_broker.port) as conn:
        body = conn.roundtrip(wire.API_PRODUCE, 3, wire.produce_v3_body("wire-negative", -1, wire.record_batch([(b"k", b"v")])))
        error_code, _ = wire.parse_produce_v3(body)[("wire-negative", -1)]
    assert error_code == wire.ERROR_UNKNOWN_TOPIC_OR_PARTITION


def test_empty_produce_request(shared_broker):
    with wire.Connection(shared_broker.port) as conn:
        body = conn.roundtrip(wire.API_PRODUCE, 3, wire.string(None) + struct.pack(">hii", -1, 1000, 0))
        assert wire.parse_produce_v3(body) == {}


def test_auto_create_refuses_invalid_names(shared_broker):
    names = ["../escape-metadata", "bad name", "", "x" * 250]
    with wire.Connection(shared_broker.port) as conn:
        metadata = wire.parse_metadata_v4(conn.roundtrip(wire.API_METADATA, 4, wire.metadata_v4_body(names + ["wire-fine"], True)))
        for name in ["../escape-produce", "..", "a/b"]:
            batch = wire.record_batch([(b"k", b"v")])
            answer = wire.parse_produce_v3(conn.roundtrip(wire.API_PRODUCE, 3, wire.produce_v3_body(name, 0, batch)))
            assert answer == {(name, 0): (ERROR_INVALID_TOPIC, -1)}, answer
    assert metadata == {**{name: (ERROR_INVALID_TOPIC, 0) for name in names}, "wire-fine": (wire.ERROR_NONE, 6)}
    outside = shared_broker.data_dir.parent
    assert not [p for p in outside.iterdir() if p.name.startswith("escape-")], "a topic name escaped the data directory"
    assert not [p for p in shared_broker.data_dir.iterdir() if p.name.startswith(("bad name", "a"))]


def fetch_v12(conn, topic, partition, offset, max_wait_ms=100, min_bytes=1):
    request = {
        "replica_id": -1,
        "max_wait_ms": max_wait_ms,
        "min_bytes": min_bytes,
        "max_bytes": 1 << 20,
        "isolation_level": 0,
        "session_id": 0,
        "session_epoch": -1,
        "topics": [{"topic": topic, "partitions": [{"partition": partition, "fetch_offset": offset, "log_start_offset": -1, "partition_max_bytes": 1 << 20}]}],
        "forgotten_topics_data": [],
        "rack_id": "",
    }
    response = call(conn, FetchRequest, FetchResponse, 12, request)
    return response["responses"][0]["partitions"][0]


def test_fetch_errors_and_max_wait(shared_broker):
    create_topic(shared_broker.bootstrap, "wire-fetch", 1)
    with wire.Connection(shared_broker.port) as conn:
        assert fetch_v12(conn, "wire-fetch-missing", 0, 0)["error_code"] == wire.ERROR_UNKNOWN_TOPIC_OR_PARTITION
        assert fetch_v12(conn, "wire-fetch", 3, 0)["error_code"] == wire.ERROR_UNKNOWN_TOPIC_OR_PARTITION
        assert fetch_v12(conn, "wire-fetch", 0, 100)["error_code"] == ERROR_OFFSET_OUT_OF_RANGE
        # Nothing to read and min_bytes unreachable: the answer comes after max_wait_ms, empty.
        started = time.monotonic()
        partition = fetch_v12(conn, "wire-fetch", 0, 0, max_wait_ms=700, min_bytes=1 << 20)
        waited = time.monotonic() - started
        assert partition["error_code"] == wire.ERROR_NONE and not partition["records"]
        assert 0.5 <= waited <= 5, f"a 700 ms long poll took {waited:.2f} s"


def test_pipelined_produce_keeps_request_order_across_segment_rolls(start_broker):
    # 64 KiB segments: a roll every ~60 requests per partition.
    broker = start_broker("--num-partitions", "6", "--log-segment-bytes", str(64 << 10))
    partitions = range(6)
    requests = 1000
    for attempt in range(5):  # the race is likely, not certain, in one round
        topic = f"wire-order-{attempt}"
        offsets = {p: [] for p in partitions}
        with wire.Connection(broker.port, timeout=30) as conn:
            assert wire.parse_metadata_v4(conn.roundtrip(wire.API_METADATA, 4, wire.metadata_v4_body([topic], True)))[topic][0] == 0
            frames = []
            for index in range(requests):
                batches = {p: wire.record_batch([(b"k", b"%06d" % index + b"x" * 300)] * 3) for p in partitions}
                frames.append(wire.request_frame(wire.API_PRODUCE, 3, 10_000 + index, wire.produce_v3_body_many({topic: batches}, acks=1)))
            sender = threading.Thread(target=conn.send, args=(b"".join(frames),))
            sender.start()
            try:
                for index in range(requests):
                    answers = wire.parse_produce_v3(conn.read_response(10_000 + index))
                    for p in partitions:
                        error_code, base_offset = answers[(topic, p)]
                        assert error_code == wire.ERROR_NONE, (index, p, error_code)
                        offsets[p].append(base_offset)
            finally:
                sender.join(30)
        for p in partitions:
            # Each request put 3 records in each partition: request i must be at 3*i.
            misplaced = [(index, offset) for index, offset in enumerate(offsets[p]) if offset != 3 * index]
            assert not misplaced, (
                f"round {attempt}, partition {p}: {len(misplaced)} of {requests} pipelined requests were appended "
                f"out of order, (request, base offset) e.g. {misplaced[:4]}"
            )


def test_pipelined_produce_to_a_new_topic_keeps_request_order(start_broker):
    broker = start_broker("--num-partitions", "1")
    requests = 200
    for attempt in range(10):  # the race is likely, not certain, in one round
        topic = f"wire-fresh-{attempt}"
        with wire.Connection(broker.port, timeout=30) as conn:
            frames = [
                wire.request_frame(wire.API_PRODUCE, 3, 20_000 + index, wire.produce_v3_body(topic, 0, wire.record_batch([(b"k", b"%04d" % index)]), acks=1))
                for index in range(requests)
            ]
            conn.send(b"".join(frames))  # no Metadata first: the first Produce creates the topic
            answers = [wire.parse_produce_v3(conn.read_response(20_000 + index))[(topic, 0)] for index in range(requests)]
        appended = [(index, offset) for index, (error_code, offset) in enumerate(answers) if error_code == wire.ERROR_NONE]
        assert appended and appended[0] == (0, 0), answers[:3]
        offsets = [offset for _, offset in appended]
        overtaking = [(index, offset) for index, offset in appended if offset < max(offsets[: appended.index((index, offset))] or [-1])]
        failed = [index for index, (error_code, _) in enumerate(answers) if error_code != wire.ERROR_NONE]
        assert not overtaking, (
            f"round {attempt}: later requests got lower offsets than earlier ones, (request, base offset) e.g. "
            f"{overtaking[:4]}; first answers {appended[:4]}; {len(failed)} requests failed, e.g. {failed[:3]}"
        )
