"""The Prometheus endpoint (`--metrics-addr`): request latency, bytes in,
and the log end offset of every partition."""

import collections
import re
import time
import urllib.request

from confluent_helpers import produce_all
from workload import make_messages

SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$")


def scrape(broker, timeout=10.0):
    """{name: [(labels, value)]} from GET /metrics, retried until it answers."""
    url = f"http://127.0.0.1:{broker.metrics_port}/metrics"
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                assert response.status == 200
                text = response.read().decode()
                break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    samples = collections.defaultdict(list)
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = SAMPLE.match(line)
        assert match, f"not a Prometheus sample: {line!r}"
        name, labels, value = match.groups()
        parsed = dict(re.findall(r'(\w+)="([^"]*)"', labels or ""))
        samples[name].append((parsed, float(value)))
    return samples


def test_metrics_endpoint(start_broker):
    broker = start_broker("--num-partitions", "6", metrics=True)
    delivered = produce_all(broker.bootstrap, "metered", make_messages("metered", count=600), acks="all")
    ends = collections.Counter(partition for partition, _ in delivered.values())

    samples = scrape(broker)
    produce_counts = [value for labels, value in samples["pinion_request_latency_seconds_count"] if labels.get("api") == "Produce"]
    assert produce_counts and sum(produce_counts) > 0, samples["pinion_request_latency_seconds_count"]
    assert sum(value for _, value in samples["pinion_bytes_in_total"]) > 600 * 60
    log_end = {
        int(labels["partition"]): value for labels, value in samples["pinion_log_end_offset"] if labels.get("topic") == "metered"
    }
    assert log_end == {partition: float(ends[partition]) for partition in range(6)}
