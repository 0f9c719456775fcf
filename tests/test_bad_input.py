"""Bad input on a raw socket: frames no client sends. The broker must answer
with the matching Kafka error or close that one connection, never crash,
and keep serving everyone else with the data it already had."""

import os
import socket
import struct

import pytest

import kafka_wire as wire
from confluent_helpers import admin, consume, produce_all
from workload import check_consumed, make_messages

TOPIC = "bad-input-seed"
SEED_PARTITIONS = 3


@pytest.fixture
def seeded(start_broker):
    """A broker holding 300 keyed messages in a 3-partition topic."""
    broker = start_broker("--num-partitions", str(SEED_PARTITIONS))
    messages = make_messages("seed", count=300, keys=11)
    delivered = produce_all(broker.bootstrap, TOPIC, messages, acks="all")
    return broker, messages, delivered


def assert_still_serving(broker, messages, delivered):
    """A fresh client gets metadata and reads back everything produced."""
    metadata = admin(broker.bootstrap).list_topics(timeout=10)
    assert TOPIC in metadata.topics and len(metadata.topics[TOPIC].partitions) == SEED_PARTITIONS
    records = consume(broker.bootstrap, TOPIC, SEED_PARTITIONS, len(messages), timeout=30)
    check_consumed(records, messages, partitions=SEED_PARTITIONS, delivered=delivered)
    with wire.Connection(broker.port) as conn:
        error_code, _ = wire.parse_api_versions_v0(conn.roundtrip(wire.API_API_VERSIONS, 0, b""))
        assert error_code == wire.ERROR_NONE
    assert broker.running()


def send_and_expect_close(broker, data: bytes):
    with wire.Connection(broker.port) as conn:
        conn.send(data)
        assert conn.closed_by_peer(timeout=10), f"the broker kept the connection open after {data[:32]!r}"


def test_garbage_bytes(seeded):
    broker, messages, delivered = seeded
    # Text instead of a frame: the size prefix reads as ~1.2 GB.
    send_and_expect_close(broker, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    # A plausible size, then random bytes as header and body.
    noise = bytes.fromhex("7ffe0001000000aa") + os.urandom(56)
    send_and_expect_close(broker, struct.pack(">i", len(noise)) + noise)
    assert_still_serving(broker, messages, delivered)


def test_frame_shorter_than_a_header(seeded):
    broker, messages, delivered = seeded
    send_and_expect_close(broker, struct.pack(">i", 3) + b"\x00\x12\x00")
    assert_still_serving(broker, messages, delivered)


def test_truncated_frame_then_close(seeded):
    broker, messages, delivered = seeded
    for _ in range(20):
        with socket.create_connection(("127.0.0.1", broker.port), timeout=5) as conn:
            conn.sendall(struct.pack(">i", 1000) + wire.request_frame(wire.API_METADATA, 1, 7, b"")[4:] + b"\x00" * 10)
    # Half a size prefix.
    with socket.create_connection(("127.0.0.1", broker.port), timeout=5) as conn:
        conn.sendall(b"\x00\x00")
    assert_still_serving(broker, messages, delivered)


def test_frame_larger_than_100_mib(seeded):
    broker, messages, delivered = seeded
    send_and_expect_close(broker, struct.pack(">i", 200 << 20) + b"\x00" * 1024)
    send_and_expect_close(broker, struct.pack(">i", 0x7FFFFFFF))
    assert_still_serving(broker, messages, delivered)


def test_negative_frame_size(seeded):
    broker, messages, delivered = seeded
    send_and_expect_close(broker, struct.pack(">i", -5) + b"\x00" * 16)
    send_and_expect_close(broker, struct.pack(">i", -(1 << 31)))
    assert_still_serving(broker, messages, delivered)


def test_unknown_api_key(seeded):
    broker, messages, delivered = seeded
    send_and_expect_close(broker, wire.request_frame(999, 0, 11, b"\x00" * 8))
    send_and_expect_close(broker, wire.request_frame(-1, 0, 12, b""))
    # A Kafka API pinion does not serve (AddPartitionsToTxn v1: no transactions).
    send_and_expect_close(broker, wire.request_frame(24, 1, 13, wire.string("txn") + b"\x00" * 14))
    # A served API at a version pinion does not serve (Produce v0).
    send_and_expect_close(broker, wire.request_frame(wire.API_PRODUCE, 0, 14, b""))
    assert_still_serving(broker, messages, delivered)


def test_api_versions_v99_gets_v0_unsupported_version_with_the_list(seeded):
    broker, messages, delivered = seeded
    body = wire.compact_string("pinion-tests") + wire.compact_string("1.0") + wire.uvarint(0)
    with wire.Connection(broker.port) as conn:
        response = conn.roundtrip(wire.API_API_VERSIONS, 99, body, flexible_header=True)
        error_code, apis = wire.parse_api_versions_v0(response)
        assert error_code == wire.ERROR_UNSUPPORTED_VERSION
        assert apis[wire.API_API_VERSIONS][0] == 0 and apis[wire.API_API_VERSIONS][1] >= 3
        assert wire.API_PRODUCE in apis and wire.API_METADATA in apis
        # The same connection still works with a version the broker knows.
        error_code, apis_again = wire.parse_api_versions_v0(conn.roundtrip(wire.API_API_VERSIONS, 0, b""))
        assert error_code == wire.ERROR_NONE and apis_again == apis
    assert_still_serving(broker, messages, delivered)


def produce_raw(conn, topic, batch, acks=-1):
    response = conn.roundtrip(wire.API_PRODUCE, 3, wire.produce_v3_body(topic, 0, batch, acks=acks))
    return wire.parse_produce_v3(response)[(topic, 0)]


def test_produce_with_a_corrupted_crc(seeded):
    broker, messages, delivered = seeded
    topic = "bad-crc"
    with wire.Connection(broker.port) as conn:
        assert produce_raw(conn, topic, wire.record_batch([(b"k", b"good-0")])) == (wire.ERROR_NONE, 0)
        bad = wire.record_batch([(b"k", b"corrupt-%d" % i) for i in range(3)], corrupt_crc=True)
        error_code, _ = produce_raw(conn, topic, bad)
        assert error_code == wire.ERROR_CORRUPT_MESSAGE
        # Right CRC, but a flipped bit in a record after it was computed.
        flipped = bytearray(wire.record_batch([(b"k", b"flipped")]))
        flipped[-3] ^= 0x01
        assert produce_raw(conn, topic, bytes(flipped))[0] == wire.ERROR_CORRUPT_MESSAGE
        # The refused batches took no offsets.
        assert produce_raw(conn, topic, wire.record_batch([(b"k", b"good-1"), (b"k", b"good-2")])) == (wire.ERROR_NONE, 1)
    records = consume(broker.bootstrap, topic, SEED_PARTITIONS, 3, timeout=30)
    assert [(p, o, v) for p, o, _, v in records] == [(0, 0, b"good-0"), (0, 1, b"good-1"), (0, 2, b"good-2")]
    assert_still_serving(broker, messages, delivered)


def test_produce_with_a_malformed_batch(seeded):
    broker, messages, delivered = seeded
    topic = "bad-batch"
    good = wire.record_batch([(b"k", b"v")])
    cases = {
        "truncated batch": good[:-5],
        "length field past the end": good[:8] + struct.pack(">i", len(good) + 100) + good[12:],
        "magic 1": good[:16] + b"\x01" + good[17:],
        "too short for a header": good[:20],
    }
    with wire.Connection(broker.port) as conn:
        for name, batch in cases.items():
            error_code, _ = produce_raw(conn, topic, batch)
            assert error_code != wire.ERROR_NONE, f"{name}: accepted"
        assert produce_raw(conn, topic, good) == (wire.ERROR_NONE, 0), "a refused batch took an offset"
    assert_still_serving(broker, messages, delivered)


def test_undecodable_produce_body(seeded):
    broker, messages, delivered = seeded
    body = wire.produce_v3_body("bad-body", 0, wire.record_batch([(b"k", b"v")]))
    send_and_expect_close(broker, wire.request_frame(wire.API_PRODUCE, 3, 21, body[:-40]))
    # An array count far beyond the bytes present.
    send_and_expect_close(broker, wire.request_frame(wire.API_PRODUCE, 3, 22, wire.string(None) + struct.pack(">hii", -1, 1000, 1 << 30)))
    assert_still_serving(broker, messages, delivered)


def test_many_bad_connections_at_once(seeded):
    broker, messages, delivered = seeded
    connections = [socket.create_connection(("127.0.0.1", broker.port), timeout=5) for _ in range(50)]
    try:
        for index, conn in enumerate(connections):
            conn.sendall([b"\xff\xff\xff\xff", struct.pack(">i", 1 << 29), b"\x00\x00\x00\x20garbage"][index % 3])
    finally:
        for conn in connections:
            conn.close()
    assert_still_serving(broker, messages, delivered)
