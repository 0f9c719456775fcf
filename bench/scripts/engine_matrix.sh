#!/usr/bin/env bash
# Runs the engine benchmark matrix recorded in BENCHMARKS.md and prints the
# medians.
#
#   bench/scripts/engine_matrix.sh DATA_DIR OUT_DIR [REPETITIONS] [DURATION_SECS]
#
# Configurations: 100 B and 1 KiB messages x none/lz4/zstd (acks=1,
# `--durability written`), one `--durability durable` run of 100 B
# uncompressed, then fixed-rate runs of 100 B uncompressed at half the
# median rate the closed-loop 100 B runs reached, with 1 MiB batches and
# with 64 KiB batches (a latency-minded producer's batch.size). Repetitions go round-robin
# over the configurations, so a noisy minute on the machine spreads over
# all of them instead of spoiling one. Each run writes OUT_DIR/<name>-<n>.json
# and OUT_DIR/<name>-<n>.txt (the exact command is the first line of the .txt).
# EXTRA_ARGS (environment) are added to every run, e.g. the recycling
# steady state of a log whose retention deletes segments all the time:
#   EXTRA_ARGS="--segment-bytes 268435456 --retention-bytes 536870912 --warmup 3 --raw-rewrite"
# Needs jq. Build first:
#   CARGO_TARGET_DIR=... cargo build --release -p pinion-bench
# On a machine shared with other work (autogroup scheduling, so plain nice
# does nothing), give the runs the CPU they ask for with
#   setsid bash -c 'echo -20 > /proc/self/autogroup; exec bench/scripts/engine_matrix.sh ...'
set -euo pipefail

data_dir=${1:?data directory}
out_dir=${2:?output directory}
repetitions=${3:-3}
duration=${4:-10}
bench=${PINION_BENCH:-$(dirname "$0")/../../target/release/pinion-bench}
mkdir -p "$out_dir"

run() {
    local name=$1 n=$2
    shift 2
    # shellcheck disable=SC2206
    local cmd=("$bench" engine --dir "$data_dir" --duration "$duration" --json "$out_dir/$name-$n.json" "$@" ${EXTRA_ARGS:-})
    { echo "\$ ${cmd[*]}"; "${cmd[@]}"; } >"$out_dir/$name-$n.txt" 2>&1 || { cat "$out_dir/$name-$n.txt"; exit 1; }
    jq -r --arg name "$name-$n" \
        '"\($name)\t\(.messages_per_sec|floor) msg/s\t\(.bytes_per_sec/1e6|floor) MB/s\traw \(.raw_odirect_write_bytes_per_sec/1e6|floor) MB/s\tratio \(.ratio_to_raw*1000|floor/1000)\tp99 \(.append_latency_us.p99) us\tother cores \(.write.other_busy_cores*100|floor/100)"' \
        "$out_dir/$name-$n.json"
}

configs=(
    "100-none --message-bytes 100 --compression none"
    "100-lz4 --message-bytes 100 --compression lz4"
    "100-zstd --message-bytes 100 --compression zstd"
    "1024-none --message-bytes 1024 --compression none"
    "1024-lz4 --message-bytes 1024 --compression lz4"
    "1024-zstd --message-bytes 1024 --compression zstd"
    "100-none-durable --message-bytes 100 --compression none --durability durable"
)
for n in $(seq 1 "$repetitions"); do
    for config in "${configs[@]}"; do
        read -r name args <<<"$config"
        # shellcheck disable=SC2086
        run "$name" "$n" $args
    done
done

max_rate=$(jq -s 'map(.messages_per_sec) | sort | .[length/2|floor]' \
    $(for n in $(seq 1 "$repetitions"); do echo "$out_dir/100-none-$n.json"; done))
half_rate=$(jq -n --argjson r "$max_rate" '$r / 2 | floor')
echo "median closed-loop rate of 100 B uncompressed: $max_rate msg/s; fixed-rate runs at $half_rate msg/s"
for n in $(seq 1 "$repetitions"); do
    run "100-none-rate" "$n" --message-bytes 100 --compression none --rate "$half_rate"
    run "100-none-rate-64KiB" "$n" --message-bytes 100 --compression none --rate "$half_rate" --batch-bytes 65536
done

echo
echo "medians over $repetitions runs"
printf 'config\tmsg/s\tstored MB/s\tpayload MB/s\traw write MB/s\tratio\tp50 us\tp99 us\tp999 us\tmax us\ttail read MB/s\tcold read MB/s\traw read MB/s\tother busy cores\n'
for config in "${configs[@]}" "100-none-rate" "100-none-rate-64KiB"; do
    read -r name _ <<<"$config"
    jq -s -r --arg name "$name" '
        def median(f): map(f) | sort | if length % 2 == 1 then .[length/2|floor] else (.[length/2-1] + .[length/2]) / 2 end;
        def r(x): (x * 1000 | round) / 1000;
        [$name,
         (median(.messages_per_sec) | round),
         r(median(.bytes_per_sec) / 1e6), r(median(.payload_bytes_per_sec) / 1e6),
         r(median(.raw_odirect_write_bytes_per_sec) / 1e6), r(median(.ratio_to_raw)),
         median(.append_latency_us.p50), median(.append_latency_us.p99), median(.append_latency_us.p999), median(.append_latency_us.max),
         r(median(.tail_read_bytes_per_sec) / 1e6), r(median(.cold_read_bytes_per_sec) / 1e6),
         r(median(.raw_odirect_read_bytes_per_sec) / 1e6), r(median(.write.other_busy_cores))] | @tsv' \
        $(for n in $(seq 1 "$repetitions"); do echo "$out_dir/$name-$n.json"; done)
done
