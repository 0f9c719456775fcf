"""Fetch from disk within the response's max_bytes: after a restart the
tail cache is empty, so every read goes to the disk. A fetch of many
partitions with a small max_bytes must read about max_bytes from the disk,
not every partition up to its partition_max_bytes only to drop most of it
(`pinion_bytes_out_total` counts what the shards read for fetches), and the
partitions left out of one response are served by the next ones, so a
consumer that keeps fetching reads everything, in order, exactly once.
A read from disk that stops at its byte limit reads the partition's next
window ahead, and the next fetch of that partition starts with it
(`pinion_read_ahead_hits_total`); `--read-ahead-bytes-max 0` turns that
off, with the same answers."""

import signal

import pytest
from kafka.protocol.consumer.fetch import FetchRequest, FetchResponse
from kafka.record import MemoryRecords

import kafka_wire as wire
from confluent_helpers import create_topic, produce_all
from kafka_messages import call
from test_metrics import scrape

TOPIC = "disk-fetch"
PARTITIONS = 8
PER_PARTITION = 400  # 400 x 1 KiB: 400 KiB a partition, 3.2 MiB in all
MAX_BYTES = 256 << 10
PARTITION_MAX_BYTES = 1 << 20


def bytes_out(broker):
    return sum(value for _, value in scrape(broker)["pinion_bytes_out_total"])


def fetch(conn, offsets):
    request = {
        "replica_id": -1,
        "max_wait_ms": 100,
        "min_bytes": 1,
        "max_bytes": MAX_BYTES,
        "isolation_level": 0,
        "session_id": 0,
        "session_epoch": -1,
        "topics": [
            {
                "topic": TOPIC,
                "partitions": [
                    {"partition": p, "fetch_offset": offsets[p], "log_start_offset": -1, "partition_max_bytes": PARTITION_MAX_BYTES}
                    for p in range(PARTITIONS)
                ],
            }
        ],
        "forgotten_topics_data": [],
        "rack_id": "",
    }
    response = call(conn, FetchRequest, FetchResponse, 12, request)
    assert response["error_code"] == 0
    return response["responses"][0]["partitions"]


def records_of(data):
    """[(offset, value)] of the raw record batches in a partition's answer."""
    out = []
    records = MemoryRecords(data or b"")
    while (batch := records.next_batch()) is not None:
        out += [(record.offset, record.value) for record in batch]
    return out


def metric_total(broker, name):
    return sum(value for _, value in scrape(broker)[name])


@pytest.mark.parametrize("read_ahead", [True, False], ids=["read-ahead", "no-read-ahead"])
def test_a_fetch_reads_about_max_bytes_from_disk_and_every_partition_gets_its_turn(start_broker, read_ahead):
    flags = [] if read_ahead else ["--read-ahead-bytes-max", "0"]
    broker = start_broker("--num-partitions", str(PARTITIONS), *flags, metrics=True)
    create_topic(broker.bootstrap, TOPIC, PARTITIONS)
    for p in range(PARTITIONS):
        messages = [(b"k", b"%d-%05d-" % (p, i) + b"v" * 1000) for i in range(PER_PARTITION)]
        # Small batches (about 16 KiB), as a steady producer writes them.
        produce_all(broker.bootstrap, TOPIC, messages, partition=p, linger_ms=0, batch_size=16 << 10)
    assert broker.stop(signal.SIGTERM) == 0
    broker.start(metrics=True)

    offsets = [0] * PARTITIONS
    seen = {p: [] for p in range(PARTITIONS)}
    with wire.Connection(broker.port, timeout=30) as conn:
        before = bytes_out(broker)
        first = fetch(conn, offsets)
        read = bytes_out(broker) - before
        returned = sum(len(p["records"] or b"") for p in first)
        assert 0 < returned <= MAX_BYTES + (32 << 10), returned
        # Before, each partition was read up to its 1 MiB limit: 3.2 MiB for a 256 KiB answer.
        assert read <= 2 * MAX_BYTES, f"{read} bytes read from disk for a {MAX_BYTES}-byte fetch"
        answers = [first]
        for _ in range(200):  # bounded: 3.2 MiB at about 256 KiB a fetch takes 13
            for partition in answers.pop():
                assert partition["error_code"] == 0, partition
                p = partition["partition_index"]
                for offset, value in records_of(partition["records"]):
                    if offset >= offsets[p]:
                        seen[p].append((offset, value))
                        offsets[p] = offset + 1
            if all(offset == PER_PARTITION for offset in offsets):
                break
            answers.append(fetch(conn, offsets))
    for p in range(PARTITIONS):
        assert [offset for offset, _ in seen[p]] == list(range(PER_PARTITION)), f"partition {p}"
        assert [value[:8] for _, value in seen[p]] == [b"%d-%05d-" % (p, i) for i in range(PER_PARTITION)]
    windows, hits = metric_total(broker, "pinion_read_aheads_total"), metric_total(broker, "pinion_read_ahead_hits_total")
    if read_ahead:
        # Each partition but the last is cut by the fetch's budget at least once.
        assert windows >= PARTITIONS - 1 and hits >= PARTITIONS - 1, (windows, hits)
    else:
        assert (windows, hits) == (0, 0)
