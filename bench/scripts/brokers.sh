#!/usr/bin/env bash
# Runs pinion-bench's three built-in workloads (throughput-1k,
# throughput-100b, latency) against pinion and against tansu (in-memory
# storage), each on a free loopback port with a fresh broker per workload,
# and writes one run file per broker and workload plus a ratio table.
#
#   bench/scripts/brokers.sh [OUT_DIR]
#
# Environment: DURATION (measured seconds, default 20), WARMUP (default 5),
# RUN_ARGS (extra pinion-bench run flags for every run, e.g. "--acks 1" or
# "--consumers 0"),
# BROKERS ("pinion tansu"), WORKLOADS, PINION_BIN, BENCH_BIN (default: built
# here with cargo --release), TANSU_BIN (default /work/tansu-install/bin/tansu,
# or `tansu` on PATH; `cargo install tansu` installs it).
set -euo pipefail
cd "$(dirname "$0")/../.."

out=${1:-bench-results/brokers-$(date -u +%Y%m%dT%H%M%SZ)}
duration=${DURATION:-20}
warmup=${WARMUP:-5}
brokers=${BROKERS:-pinion tansu}
workloads=${WORKLOADS:-throughput-1k throughput-100b latency}
target=${CARGO_TARGET_DIR:-target}
mkdir -p "$out"

if [ -z "${PINION_BIN:-}" ] || [ -z "${BENCH_BIN:-}" ]; then
  cargo build --release -p pinion-server -p pinion-bench
fi
pinion_bin=${PINION_BIN:-$target/release/pinion}
bench_bin=${BENCH_BIN:-$target/release/pinion-bench}
tansu_bin=${TANSU_BIN:-$(command -v tansu || echo /work/tansu-install/bin/tansu)}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits (at most 30 s) until something accepts connections on the port.
wait_port() {
  local i
  for i in $(seq 1 300); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  return 1
}

broker_pid=""
data_dir=""
stop_broker() {
  if [ -n "$broker_pid" ]; then
    kill "$broker_pid" 2>/dev/null || true
    wait "$broker_pid" 2>/dev/null || true
    broker_pid=""
  fi
  if [ -n "$data_dir" ]; then
    rm -rf "$data_dir"
    data_dir=""
  fi
}
trap stop_broker EXIT

start_broker() { # broker port log
  case "$1" in
    pinion)
      data_dir=$(mktemp -d)
      "$pinion_bin" serve --data-dir "$data_dir/data" --listen "127.0.0.1:$2" >"$3" 2>&1 &
      ;;
    tansu)
      "$tansu_bin" broker --listener-url "tcp://127.0.0.1:$2" --advertised-listener-url "tcp://127.0.0.1:$2" \
        --storage-engine memory://tansu/ >"$3" 2>&1 &
      ;;
    *)
      echo "brokers.sh: unknown broker $1" >&2
      return 1
      ;;
  esac
  broker_pid=$!
  if ! wait_port "$2"; then
    echo "brokers.sh: $1 did not listen on 127.0.0.1:$2 within 30 s; see $3" >&2
    return 1
  fi
}

status=0
for broker in $brokers; do
  for workload in $workloads; do
    port=$(free_port)
    start_broker "$broker" "$port" "$out/$broker-$workload.broker.log"
    echo "== $broker: $workload (127.0.0.1:$port, ${warmup} s warm-up + ${duration} s)"
    if ! "$bench_bin" run --bootstrap "127.0.0.1:$port" --workload "$workload" \
      --duration "$duration" --warmup "$warmup" --json "$out/$broker-$workload.json" ${RUN_ARGS:-} \
      2>"$out/$broker-$workload.progress.log" | tee "$out/$broker-$workload.txt"; then
      echo "brokers.sh: $broker $workload failed: $(tail -1 "$out/$broker-$workload.progress.log")" >&2
      status=1
    fi
    stop_broker
  done
done

python3 - "$out" $brokers -- $workloads <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1]); rest = sys.argv[2:]; cut = rest.index("--")
brokers, workloads = rest[:cut], rest[cut + 1:]
def load(b, w):
    p = out / f"{b}-{w}.json"
    return json.loads(p.read_text()) if p.exists() else None
print(f"\n{'workload':<16} {'broker':<8} {'msgs/s':>12} {'MiB/s':>8} {'pub p50 ms':>11} {'pub p99 ms':>11} {'e2e p99 ms':>11}")
for w in workloads:
    for b in brokers:
        r = load(b, w)
        if r is None:
            print(f"{w:<16} {b:<8} {'failed':>12}")
            continue
        t, p, e = r["throughput"], r["publish_latency_us"], r.get("end_to_end_latency_us") or {}
        print(f"{w:<16} {b:<8} {t['messages_per_sec']:>12.0f} {t['bytes_per_sec'] / 2**20:>8.1f} "
              f"{p['p50'] / 1000:>11.2f} {p['p99'] / 1000:>11.2f} {e.get('p99', 0) / 1000:>11.2f}")
    if len(brokers) == 2 and all(load(b, w) for b in brokers):
        a, c = (load(b, w) for b in brokers)
        ratio = a["throughput"]["messages_per_sec"] / max(c["throughput"]["messages_per_sec"], 1e-9)
        lat = c["publish_latency_us"]["p99"] / max(a["publish_latency_us"]["p99"], 1)
        print(f"{'':<16} {brokers[0]}/{brokers[1]}: throughput x{ratio:.2f}, publish p99 {brokers[1]}/{brokers[0]} x{lat:.2f}")
PY
echo "run files in $out"
exit $status
