"""Just enough of the Kafka wire protocol, written by hand, to send requests
no well-behaved client would send: frames with bad sizes, unknown API keys
and versions, RecordBatch v2 bytes with a corrupted CRC-32C, and group API
calls (JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit,
OffsetFetch, ListGroups) with unknown members and stale generations.

Byte formats (all integers big-endian):
- frame: size int32, then the request header and body;
- request header v1: api_key int16, api_version int16, correlation_id
  int32, client_id nullable string (int16 length); v2 adds tagged fields;
- RecordBatch v2: baseOffset int64, batchLength int32,
  partitionLeaderEpoch int32, magic int8 = 2, crc uint32 (CRC-32C of
  everything after it), attributes int16, lastOffsetDelta int32,
  baseTimestamp int64, maxTimestamp int64, producerId int64,
  producerEpoch int16, baseSequence int32, recordCount int32, records.
"""

import socket
import struct
import time

from pinion_broker import HOST

API_PRODUCE = 0
API_METADATA = 3
API_OFFSET_COMMIT = 8
API_OFFSET_FETCH = 9
API_JOIN_GROUP = 11
API_HEARTBEAT = 12
API_LEAVE_GROUP = 13
API_SYNC_GROUP = 14
API_LIST_GROUPS = 16
API_API_VERSIONS = 18

ERROR_NONE = 0
ERROR_CORRUPT_MESSAGE = 2
ERROR_UNKNOWN_TOPIC_OR_PARTITION = 3
ERROR_UNSUPPORTED_VERSION = 35
ERROR_ILLEGAL_GENERATION = 22
ERROR_INVALID_GROUP_ID = 24
ERROR_UNKNOWN_MEMBER_ID = 25
ERROR_REBALANCE_IN_PROGRESS = 27

try:
    from crc32c import crc32c as _crc32c_native
except ImportError:  # the package is in requirements.txt; this is the fallback
    _crc32c_native = None


def _castagnoli_table():
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _castagnoli_table()


def crc32c(data: bytes) -> int:
    if _crc32c_native is not None:
        return _crc32c_native(data)
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


# --- primitive encoders -----------------------------------------------------


def string(text):
    if text is None:
        return struct.pack(">h", -1)
    data = text.encode()
    return struct.pack(">h", len(data)) + data


def byte_string(data: bytes) -> bytes:
    """BYTES: int32 length, then the bytes."""
    return struct.pack(">i", len(data)) + data


def compact_string(text: str) -> bytes:
    data = text.encode()
    return uvarint(len(data) + 1) + data


def uvarint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def varint(value: int) -> bytes:
    """Zig-zag varint (varlong too: Python ints are unbounded)."""
    return uvarint((value << 1) ^ (value >> 63))


def array(items) -> bytes:
    items = list(items)
    return struct.pack(">i", len(items)) + b"".join(items)


# --- record batches ---------------------------------------------------------


def record(offset_delta: int, key, value, timestamp_delta: int = 0) -> bytes:
    body = b"\x00" + varint(timestamp_delta) + varint(offset_delta)
    body += varint(-1) if key is None else varint(len(key)) + key
    body += varint(-1) if value is None else varint(len(value)) + value
    body += varint(0)  # no headers
    return varint(len(body)) + body


def record_batch(messages, timestamp_ms=None, corrupt_crc=False) -> bytes:
    """An uncompressed RecordBatch v2 of [(key, value)], base offset 0."""
    timestamp_ms = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
    records = b"".join(record(i, key, value) for i, (key, value) in enumerate(messages))
    after_crc = struct.pack(
        ">hiqqqhii",
        0,  # attributes: no compression, CreateTime, not transactional
        len(messages) - 1,
        timestamp_ms,
        timestamp_ms,
        -1,  # producerId
        -1,  # producerEpoch
        -1,  # baseSequence
        len(messages),
    ) + records
    crc = crc32c(after_crc)
    if corrupt_crc:
        crc ^= 0x5A5A5A5A
    after_length = struct.pack(">ibI", 0, 2, crc) + after_crc
    return struct.pack(">qi", 0, len(after_length)) + after_length


# --- requests ---------------------------------------------------------------


def request_frame(api_key, api_version, correlation_id, body, client_id="pinion-tests", flexible_header=False):
    header = struct.pack(">hhi", api_key, api_version, correlation_id) + string(client_id)
    if flexible_header:
        header += uvarint(0)  # no tagged fields
    payload = header + body
    return struct.pack(">i", len(payload)) + payload


def produce_v3_body(topic, partition, batch, acks=-1, timeout_ms=10_000):
    return produce_v3_body_many({topic: {partition: batch}}, acks=acks, timeout_ms=timeout_ms)


def produce_v3_body_many(batches, acks=-1, timeout_ms=10_000):
    """A Produce v3 body from {topic: {partition: batch}}."""
    topics = []
    for topic, partitions in batches.items():
        partition_data = array(struct.pack(">ii", partition, len(batch)) + batch for partition, batch in partitions.items())
        topics.append(string(topic) + partition_data)
    return string(None) + struct.pack(">hi", acks, timeout_ms) + array(topics)


def metadata_v4_body(topics, allow_auto_create=False):
    topic_array = struct.pack(">i", -1) if topics is None else array(string(t) for t in topics)
    return topic_array + struct.pack(">?", allow_auto_create)


# Group APIs, at their oldest versions with a plain (non-flexible) layout.


def join_group_v1_body(group_id, member_id, protocols, protocol_type="consumer", session_timeout_ms=10_000):
    """JoinGroup v1 from [(protocol name, metadata bytes)]."""
    return (
        string(group_id)
        + struct.pack(">ii", session_timeout_ms, session_timeout_ms)
        + string(member_id)
        + string(protocol_type)
        + array(string(name) + byte_string(metadata) for name, metadata in protocols)
    )


def sync_group_v0_body(group_id, generation_id, member_id, assignments=()):
    """SyncGroup v0 from [(member id, assignment bytes)]."""
    return (
        string(group_id)
        + struct.pack(">i", generation_id)
        + string(member_id)
        + array(string(member) + byte_string(assignment) for member, assignment in assignments)
    )


def heartbeat_v0_body(group_id, generation_id, member_id):
    return string(group_id) + struct.pack(">i", generation_id) + string(member_id)


def leave_group_v0_body(group_id, member_id):
    return string(group_id) + string(member_id)


def offset_commit_v2_body(group_id, generation_id, member_id, offsets):
    """OffsetCommit v2 from {topic: {partition: offset}} (retention -1: the broker's)."""
    def partitions(parts):
        return array(struct.pack(">iq", partition, offset) + string(None) for partition, offset in parts.items())

    topics = [string(topic) + partitions(parts) for topic, parts in offsets.items()]
    head = string(group_id) + struct.pack(">i", generation_id) + string(member_id)
    return head + struct.pack(">q", -1) + array(topics)


def offset_fetch_v1_body(group_id, partitions):
    """OffsetFetch v1 from {topic: [partition]}."""
    topics = [string(topic) + array(struct.pack(">i", p) for p in parts) for topic, parts in partitions.items()]
    return string(group_id) + array(topics)


# --- responses --------------------------------------------------------------


class Reader:
    def __init__(self, data: bytes):
        self.data = data
        self.position = 0

    def take(self, fmt):
        values = struct.unpack_from(fmt, self.data, self.position)
        self.position += struct.calcsize(fmt)
        return values[0] if len(values) == 1 else values

    def string(self):
        length = self.take(">h")
        if length < 0:
            return None
        text = self.data[self.position:self.position + length].decode()
        self.position += length
        return text

    def bytes(self):
        length = self.take(">i")
        if length < 0:
            return None
        data = self.data[self.position:self.position + length]
        self.position += length
        return data

    def array(self, read_item):
        count = self.take(">i")
        return [] if count < 0 else [read_item() for _ in range(count)]


def parse_api_versions_v0(body: bytes):
    """(error_code, {api_key: (min, max)})"""
    reader = Reader(body)
    error_code = reader.take(">h")
    keys = reader.array(lambda: reader.take(">hhh"))
    return error_code, {key: (low, high) for key, low, high in keys}


def parse_produce_v3(body: bytes):
    """{(topic, partition): (error_code, base_offset)}"""
    reader = Reader(body)
    result = {}
    for topic, partitions in reader.array(lambda: (reader.string(), reader.array(lambda: reader.take(">ihqq")))):
        for index, error_code, base_offset, _log_append_time in partitions:
            result[(topic, index)] = (error_code, base_offset)
    return result


def parse_metadata_v4(body: bytes):
    """{topic: (error_code, partition_count)}"""
    reader = Reader(body)
    reader.take(">i")  # throttle
    reader.array(lambda: (reader.take(">i"), reader.string(), reader.take(">i"), reader.string()))
    reader.string()  # cluster id
    reader.take(">i")  # controller

    def partition():
        reader.take(">hii")
        reader.array(lambda: reader.take(">i"))
        reader.array(lambda: reader.take(">i"))

    def topic():
        error_code = reader.take(">h")
        name = reader.string()
        reader.take(">?")
        return name, error_code, len(reader.array(partition))

    return {name: (error_code, count) for name, error_code, count in reader.array(topic)}


def parse_join_group_v1(body: bytes):
    """(error_code, generation_id, protocol_name, leader, member_id, [(member_id, metadata)])"""
    reader = Reader(body)
    error_code, generation_id = reader.take(">hi")
    protocol_name, leader, member_id = reader.string(), reader.string(), reader.string()
    members = reader.array(lambda: (reader.string(), reader.bytes()))
    return error_code, generation_id, protocol_name, leader, member_id, members


def parse_sync_group_v0(body: bytes):
    """(error_code, assignment)"""
    reader = Reader(body)
    return reader.take(">h"), reader.bytes()


def parse_error_code_only(body: bytes) -> int:
    """Heartbeat v0 and LeaveGroup v0: just an error code."""
    return Reader(body).take(">h")


def parse_offset_commit_v2(body: bytes):
    """{(topic, partition): error_code}"""
    reader = Reader(body)
    result = {}
    for topic, partitions in reader.array(lambda: (reader.string(), reader.array(lambda: reader.take(">ih")))):
        for partition, error_code in partitions:
            result[(topic, partition)] = error_code
    return result


def parse_offset_fetch_v1(body: bytes):
    """{(topic, partition): (offset, error_code)}"""
    reader = Reader(body)

    def partition():
        index, offset = reader.take(">iq")
        reader.string()  # metadata
        return index, offset, reader.take(">h")

    result = {}
    for topic, partitions in reader.array(lambda: (reader.string(), reader.array(partition))):
        for index, offset, error_code in partitions:
            result[(topic, index)] = (offset, error_code)
    return result


def parse_list_groups_v0(body: bytes):
    """(error_code, [group_id])"""
    reader = Reader(body)
    error_code = reader.take(">h")
    return error_code, [group for group, _ in reader.array(lambda: (reader.string(), reader.string()))]


# --- a connection -----------------------------------------------------------


class Connection:
    """A blocking client socket; every wait is bounded by `timeout`."""

    def __init__(self, port: int, timeout: float = 10.0):
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.timeout = timeout
        self.next_correlation_id = 1

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data: bytes):
        self.sock.sendall(data)

    def send_request(self, api_key, api_version, body, flexible_header=False) -> int:
        correlation_id = self.next_correlation_id
        self.next_correlation_id += 1
        self.send(request_frame(api_key, api_version, correlation_id, body, flexible_header=flexible_header))
        return correlation_id

    def _read_exactly(self, count: int) -> bytes:
        data = bytearray()
        while len(data) < count:
            chunk = self.sock.recv(min(count - len(data), 1 << 20))
            if not chunk:
                raise ConnectionError(f"connection closed after {len(data)} of {count} bytes")
            data += chunk
        return bytes(data)

    def read_response(self, correlation_id: int, flexible_header: bool = False) -> bytes:
        size = struct.unpack(">i", self._read_exactly(4))[0]
        assert 4 <= size <= 64 << 20, f"response frame size {size}"
        frame = self._read_exactly(size)
        got = struct.unpack(">i", frame[:4])[0]
        assert got == correlation_id, f"correlation id {got}, expected {correlation_id}"
        body = frame[4:]
        if flexible_header:
            assert body[0] == 0, "tagged fields in a response header"
            body = body[1:]
        return body

    def roundtrip(self, api_key, api_version, body, flexible_header=False) -> bytes:
        return self.read_response(self.send_request(api_key, api_version, body, flexible_header))

    def closed_by_peer(self, timeout: float = 10.0) -> bool:
        """True if the broker closes the connection within `timeout` (EOF or
        reset), without sending anything first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                return False
            except ConnectionError:
                return True
            if not data:
                return True
            raise AssertionError(f"the broker answered instead of closing: {data[:64]!r}")
        return False
