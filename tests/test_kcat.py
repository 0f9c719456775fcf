"""kcat (Debian's, linked with librdkafka 2.0.2, which is stricter about
some response layouts than newer clients) against pinion: keyed produce
with every codec, consume to the end, metadata and offsets by time. Topics
are auto-created with the shared broker's 6 partitions."""

import json
import re
import shutil
import subprocess
import time

import pytest

from workload import ACKS, CODECS, PARTITION_COUNT, check_consumed, make_messages

KCAT = shutil.which("kcat") or shutil.which("kafkacat")
pytestmark = pytest.mark.skipif(KCAT is None, reason="kcat is not installed (scripts/test.sh installs it with apt-get)")

KCAT_TIMEOUT_S = 90


def kcat(*args, input=None):
    result = subprocess.run(
        [KCAT, *args], input=input, capture_output=True, timeout=KCAT_TIMEOUT_S, stdin=None if input else subprocess.DEVNULL
    )
    assert result.returncode == 0, f"kcat {' '.join(args)} exited {result.returncode}:\n{result.stderr.decode(errors='replace')[-3000:]}"
    return result


def kcat_produce(bootstrap, topic, messages, *options):
    lines = b"".join(key + b":" + value + b"\n" for key, value in messages)
    kcat("-P", "-b", bootstrap, "-t", topic, "-K:", "-X", "linger.ms=5", *options, input=lines)


def kcat_consume(bootstrap, topic):
    """[(partition, offset, key, value)] of every partition, to the end."""
    output = kcat("-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e", "-q", "-f", r"%p\t%o\t%k\t%s\n").stdout
    records = []
    for line in output.split(b"\n"):
        if line:
            partition, offset, key, value = line.split(b"\t", 3)
            records.append((int(partition), int(offset), key, value))
    return records


@pytest.mark.parametrize("acks", ACKS)
@pytest.mark.parametrize("codec", CODECS)
def test_produce_and_consume_every_codec(shared_broker, codec, acks):
    topic = f"kc-{codec}-acks{acks}"
    messages = make_messages(topic)
    kcat_produce(shared_broker.bootstrap, topic, messages, "-z", codec, "-X", f"acks={acks}")
    records = kcat_consume(shared_broker.bootstrap, topic)
    check_consumed(records, messages, partitions=PARTITION_COUNT)


def test_metadata_list(shared_broker):
    kcat_produce(shared_broker.bootstrap, "kc-listed", [(b"k", b"v")])
    listing = json.loads(kcat("-L", "-J", "-b", shared_broker.bootstrap).stdout)
    assert [(b["id"], b["name"]) for b in listing["brokers"]] == [(0, shared_broker.bootstrap)]
    topics = {t["topic"]: t for t in listing["topics"]}
    assert "kc-listed" in topics
    partitions = topics["kc-listed"]["partitions"]
    assert sorted(p["partition"] for p in partitions) == list(range(PARTITION_COUNT))
    assert all(p["leader"] == 0 for p in partitions)
    text = kcat("-L", "-b", shared_broker.bootstrap, "-t", "kc-listed").stdout.decode()
    assert f'topic "kc-listed" with {PARTITION_COUNT} partitions' in text, text


def query_offset(bootstrap, topic, partition, timestamp):
    output = kcat("-Q", "-b", bootstrap, "-t", f"{topic}:{partition}:{timestamp}").stdout.decode()
    match = re.search(rf"{re.escape(topic)} \[{partition}\] offset (-?\d+)", output)
    assert match, output
    return int(match.group(1))


def test_query_offsets_by_time(shared_broker):
    bootstrap, topic = shared_broker.bootstrap, "kc-times"
    before = int(time.time() * 1000) - 1
    kcat_produce(bootstrap, topic, [(b"k", b"early-%d" % i) for i in range(7)], "-p", "0")
    time.sleep(0.05)
    middle = int(time.time() * 1000)
    time.sleep(0.05)
    kcat_produce(bootstrap, topic, [(b"k", b"late-%d" % i) for i in range(5)], "-p", "0")
    assert query_offset(bootstrap, topic, 0, before) == 0
    assert query_offset(bootstrap, topic, 0, middle) == 7
    assert query_offset(bootstrap, topic, 0, int(time.time() * 1000) + 60_000) == -1
    assert query_offset(bootstrap, topic, 0, -1) == 12  # latest
    assert query_offset(bootstrap, topic, 0, -2) == 0  # earliest
    values = [value for _, _, _, value in kcat_consume(bootstrap, topic)]
    assert values == [b"early-%d" % i for i in range(7)] + [b"late-%d" % i for i in range(5)]
