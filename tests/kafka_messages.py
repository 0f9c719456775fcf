"""Any Kafka request at any version, from kafka-python's message classes
(generated from Apache Kafka's JSON schemas), sent on a raw connection; the
response is decoded strictly: every byte of the frame must be consumed.

This lets a test speak versions that no installed client would choose.
"""

import io
import re

import kafka_wire as wire

PRIMITIVE_TYPES = {"bool", "int8", "int16", "int32", "int64", "uint16", "float64", "string", "bytes", "records", "uuid"}


def snake_case(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def build(cls, data: dict, fields=None):
    """An instance of message class `cls` from a dict of snake_case field
    names; nested structs and arrays of structs may be dicts too."""
    fields = cls.json["fields"] if fields is None else fields
    by_name = {snake_case(field["name"]): field for field in fields}
    values = {}
    for name, value in data.items():
        field = by_name[name]
        kind = field["type"]
        element = kind[2:] if kind.startswith("[]") else kind
        if element not in PRIMITIVE_TYPES and value is not None:
            nested = getattr(cls, element)
            if kind.startswith("[]"):
                value = [build(nested, item, field["fields"]) for item in value]
            else:
                value = build(nested, value, field["fields"])
        values[name] = value
    return cls(**values)


def error_codes(value, path="response"):
    """[(path, code)] of every nonzero error_code field in a decoded response."""
    found = []
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "error_code" and item:
                found.append((path, item))
            else:
                found += error_codes(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += error_codes(item, f"{path}[{index}]")
    return found


def call(conn: wire.Connection, request_cls, response_cls, version: int, data: dict):
    """Sends `request_cls` at `version` built from `data` and returns the
    decoded response as a dict."""
    request = build(request_cls, data)
    correlation_id = conn.next_correlation_id
    conn.next_correlation_id += 1
    request.with_header(correlation_id=correlation_id, client_id="pinion-version-sweep")
    conn.send(bytes(request.encode(version=version, header=True, framed=True)))
    size = int.from_bytes(conn._read_exactly(4), "big", signed=True)
    assert 4 <= size <= 64 << 20, f"response frame size {size}"
    payload = conn._read_exactly(size)
    header_stream = io.BytesIO(payload)
    header = response_cls.parse_header(header_stream, version=version)
    assert header.correlation_id == correlation_id
    flexible = response_cls.flexible_version_q(version)
    decode = response_cls._struct.compiled_decode_from(version, compact=flexible, tagged=flexible, data_class=response_cls[None])
    response, end = decode(memoryview(payload), header_stream.tell())
    assert end == len(payload), f"{response_cls.__name__} v{version}: {len(payload) - end} bytes left after decoding"
    return response.to_dict(json=False)
