#!/usr/bin/env python3
"""Compares `pinion serve --profile` settings end to end with a real client
(confluent-kafka) until pinion-bench's own load generator exists.

For each profile (none, latency, throughput) it starts a broker on a free
loopback port with a fresh data dir, then measures:
  - produce throughput: N messages of SIZE bytes, acks=1 and acks=all, lz4,
    as fast as the client sends them (client-bound on 2 cores: the Python
    producer loop is the limit, not the broker);
  - end-to-end latency at a fixed rate: a producer sends RATE msgs/s with
    acks=all for SECONDS, a consumer in another thread reads them, and each
    message's latency is now - its send timestamp (carried in the value).
Prints a table; --json FILE writes the numbers.

Usage: bench/scripts/profiles.py --pinion target/release/pinion [--rate 2000] [--seconds 10]
"""

import argparse
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(binary, profile, data_dir, port):
    args = [binary, "serve", "--data-dir", data_dir, "--listen", f"127.0.0.1:{port}", "--log-segment-bytes", str(64 << 20)]
    if profile != "none":
        args += ["--profile", profile]
    log = open(os.path.join(tempfile.gettempdir(), f"pinion-profile-{profile}.log"), "w")
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"broker with profile {profile} did not start")


def throughput(bootstrap, topic, count, size, acks):
    producer = Producer({"bootstrap.servers": bootstrap, "acks": acks, "compression.type": "lz4", "linger.ms": 5,
                         "batch.size": 1 << 20, "queue.buffering.max.messages": 1_000_000})
    payload = b"x" * size
    started = time.perf_counter()
    for i in range(count):
        while True:
            try:
                producer.produce(topic, key=str(i % 100).encode(), value=payload)
                break
            except BufferError:
                producer.poll(0.01)
    left = producer.flush(60)
    elapsed = time.perf_counter() - started
    assert left == 0
    return count / elapsed


def latency(bootstrap, topic, rate, seconds):
    latencies = []
    done = threading.Event()

    def consume():
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "profiles", "enable.auto.commit": False,
                             "fetch.wait.max.ms": 5, "fetch.min.bytes": 1})
        consumer.assign([TopicPartition(topic, p, 0) for p in range(6)])
        while not done.is_set() or len(latencies) < rate * seconds:
            message = consumer.poll(0.1)
            if message is None:
                if done.is_set():
                    break
                continue
            if message.error():
                continue
            sent = float(message.value().split(b" ", 1)[0])
            latencies.append((time.time() - sent) * 1000)
        consumer.close()

    reader = threading.Thread(target=consume)
    reader.start()
    time.sleep(2)  # let the consumer join
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0})
    interval = 1.0 / rate
    start_at = time.time()
    for i in range(rate * seconds):
        target = start_at + i * interval
        while time.time() < target:
            time.sleep(min(0.0005, target - time.time()) if target > time.time() else 0)
        producer.produce(topic, value=b"%.6f " % time.time() + b"x" * 100)
        producer.poll(0)
    producer.flush(30)
    time.sleep(1)
    done.set()
    reader.join(30)
    latencies.sort()
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))]
    return {"count": len(latencies), "p50_ms": pick(0.5), "p99_ms": pick(0.99), "p999_ms": pick(0.999)}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--pinion", default="target/release/pinion")
    parser.add_argument("--rate", type=int, default=2000)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--count", type=int, default=200_000)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--json")
    args = parser.parse_args()
    results = {}
    for profile in ["none", "latency", "throughput"]:
        data_dir = tempfile.mkdtemp(prefix=f"pinion-profile-{profile}-")
        port = free_port()
        proc = start(args.pinion, profile, data_dir, port)
        try:
            bootstrap = f"127.0.0.1:{port}"
            admin = AdminClient({"bootstrap.servers": bootstrap})
            for topic in ["tput-1", "tput-all", "lat"]:
                admin.create_topics([NewTopic(topic, 6, 1)])[topic].result(15)
            results[profile] = {
                "produce_acks1_msgs_per_sec": throughput(bootstrap, "tput-1", args.count, args.size, "1"),
                "produce_acksall_msgs_per_sec": throughput(bootstrap, "tput-all", args.count, args.size, "all"),
                "e2e": latency(bootstrap, "lat", args.rate, args.seconds),
            }
        finally:
            proc.terminate()
            proc.wait(30)
            shutil.rmtree(data_dir, ignore_errors=True)
        r = results[profile]
        print(f"{profile:10} acks=1 {r['produce_acks1_msgs_per_sec']:>10,.0f} msg/s  acks=all {r['produce_acksall_msgs_per_sec']:>10,.0f} msg/s  "
              f"e2e@{args.rate}/s p50 {r['e2e']['p50_ms']:.2f} ms p99 {r['e2e']['p99_ms']:.2f} ms p99.9 {r['e2e']['p999_ms']:.2f} ms (n={r['e2e']['count']})",
              flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
