"""The keyed workload every client produces, and the checks on what comes back.

Each message's value names its workload (`tag`), its global sequence number
and its key's own sequence number, so a consumer can check, without any
state of the producer, that nothing was lost, duplicated, altered or
reordered within a key.
"""

import collections
import hashlib

MESSAGE_COUNT = 20_000
KEY_COUNT = 101
PARTITION_COUNT = 6
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
ACKS = ["1", "all"]

# Every consume loop gives up after this long.
CONSUME_TIMEOUT_S = 60.0


def make_messages(tag: str, count: int = MESSAGE_COUNT, keys: int = KEY_COUNT):
    """[(key, value)] as bytes: `count` messages over `keys` keys, with a
    somewhat compressible filler so every codec has work to do."""
    messages = []
    per_key = collections.Counter()
    for sequence in range(count):
        key_index = sequence % keys
        key_sequence = per_key[key_index]
        per_key[key_index] += 1
        key = f"key-{key_index:03d}".encode()
        filler = hashlib.sha256(f"{tag}/{sequence}".encode()).hexdigest()[:32]
        value = f"{tag}|{sequence:06d}|{key_index:03d}|{key_sequence:06d}|{filler}|{'pinion ' * 6}".encode()
        messages.append((key, value))
    return messages


def key_sequence(value: bytes) -> int:
    return int(value.split(b"|")[3])


def check_consumed(records, messages, partitions: int = PARTITION_COUNT, delivered=None, key_order=True):
    """Checks `records`, [(partition, offset, key, value)] in the order they
    were consumed, against the produced `messages`; `delivered` maps each
    value to the (partition, offset) the producer was acknowledged with.
    `key_order=False` skips the check that each key's values are stored in
    produce order (see test_protocol.py's pipelined-produce test)."""
    problems = []
    produced = collections.Counter(messages)
    consumed = collections.Counter((key, value) for _, _, key, value in records)
    missing = produced - consumed
    extra = consumed - produced
    if len(records) != len(messages):
        problems.append(f"consumed {len(records)} records, produced {len(messages)}")
    if missing:
        problems.append(f"{sum(missing.values())} produced messages never consumed, e.g. {list(missing)[:3]}")
    if extra:
        problems.append(f"{sum(extra.values())} consumed records not produced (or duplicated), e.g. {list(extra)[:3]}")

    by_partition = collections.defaultdict(list)
    for partition, offset, key, value in records:
        by_partition[partition].append((offset, key, value))
    if not set(by_partition) <= set(range(partitions)):
        problems.append(f"records from partitions {sorted(by_partition)}, the topic has {partitions}")
    if len(by_partition) < 2:
        problems.append(f"all {len(records)} records are in partitions {sorted(by_partition)}: keys are not spread")
    for partition, rows in sorted(by_partition.items()):
        offsets = [offset for offset, _, _ in rows]
        if offsets != list(range(len(offsets))):
            bad = next(i for i, offset in enumerate(offsets) if offset != i)
            problems.append(f"partition {partition}: offsets are not 0,1,2,... in consume order; at index {bad}: {offsets[max(0, bad - 2):bad + 3]}")
        last = {}  # per key and workload tag: the last key sequence seen
        for offset, key, value in rows if key_order else []:
            stream = (key, value.split(b"|")[0])
            sequence = key_sequence(value)
            if stream in last and sequence <= last[stream]:
                problems.append(f"partition {partition} offset {offset}: {stream!r} sequence {sequence} after {last[stream]}")
                break
            last[stream] = sequence

    partitions_of_key = collections.defaultdict(set)
    for partition, _, key, _ in records:
        partitions_of_key[key].add(partition)
    split = {key: sorted(parts) for key, parts in partitions_of_key.items() if len(parts) > 1}
    if split:
        problems.append(f"{len(split)} keys are in more than one partition, e.g. {list(split.items())[:3]}")

    if delivered is not None:
        mismatched = [
            (value, delivered.get(value), (partition, offset))
            for partition, offset, _, value in records
            if delivered.get(value) != (partition, offset)
        ]
        if mismatched:
            problems.append(
                f"{len(mismatched)} records are not where the producer was told they are (value, acked, consumed): {mismatched[:3]}"
            )
    assert not problems, "\n".join(problems)
