#!/usr/bin/env python3
"""The load a Python program can put on a broker with confluent-kafka
(librdkafka), for comparison with `pinion-bench run`: one producer thread
calling produce() as fast as it can for DURATION seconds, with the same
settings as the throughput workloads (lz4, acks=all, linger 1 ms, 128 KiB
batches). Prints the acknowledged messages per second.

    python_producer.py HOST:PORT TOPIC MESSAGE_BYTES DURATION_SECS
"""

import os
import sys
import time

from confluent_kafka import Producer


def main() -> int:
    bootstrap, topic, size, duration = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    acked = 0
    failed = 0

    def delivered(err, _msg):
        nonlocal acked, failed
        if err is None:
            acked += 1
        else:
            failed += 1

    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "compression.type": "lz4",
            "linger.ms": 1,
            "batch.size": 131072,
            "queue.buffering.max.messages": 1_000_000,
            "queue.buffering.max.kbytes": 1_048_576,
        }
    )
    value = os.urandom(size)
    start = time.monotonic()
    end = start + duration
    sent = 0
    while time.monotonic() < end:
        for _ in range(1000):
            try:
                producer.produce(topic, value, on_delivery=delivered)
                sent += 1
            except BufferError:
                producer.poll(0.001)
        producer.poll(0)
    producer.flush(30)
    elapsed = time.monotonic() - start
    print(f"confluent-kafka {size} B: sent {sent}, acked {acked}, failed {failed}, "
          f"{acked / elapsed:.0f} msgs/s acked over {elapsed:.1f} s")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
