#!/usr/bin/env bash
# Measures, in one run on this machine: the O_DIRECT sequential write ceiling
# of the disk under DIR (dd, 256 KiB blocks, synced), then acks=all idempotent
# producer throughput (librdkafka) against a release `weir dev` on DIR for
# 100 B and 1 KiB records. Prints the numbers and the node/ceiling ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-$(mktemp -d)}
PORT=${PORT:-19500}
cargo build --release -q -p weir --bin weir -p weir-tests --example produce_rate
mkdir -p "$DIR"
echo "== O_DIRECT write ceiling (dd, 256 KiB blocks, 2 GiB, fdatasync at end)"
CEIL=$(dd if=/dev/zero of="$DIR/ceiling.bin" bs=256K count=8192 oflag=direct conv=fdatasync 2>&1 | tail -1)
rm -f "$DIR/ceiling.bin"
echo "$CEIL"
CEIL_MBS=$(echo "$CEIL" | awk '{for(i=1;i<=NF;i++) if ($i ~ /^[GM]B\/s$/) { v=$(i-1); gsub(",",".",v); print ($i=="GB/s") ? v*1000 : v }}')
target/release/weir dev --data-dir "$DIR/data" --kafka-port "$PORT" > "$DIR/dev.out" 2> "$DIR/dev.err" &
PID=$!
trap 'kill $PID 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q bootstrap "$DIR/dev.out" && break; sleep 0.1; done
run() {
  local size=$1 count=$2
  local out; out=$(target/release/examples/produce_rate "127.0.0.1:$PORT" "perf-$size" "$size" "$count")
  echo "$out"
  local mbs; mbs=$(echo "$out" | sed -E 's/.*MB_per_s=([0-9.]+).*/\1/')
  awk -v n="$mbs" -v c="$CEIL_MBS" 'BEGIN { printf "node/ceiling = %.2f\n", n / c }'
}
echo "== 100 B records, acks=all, idempotent"
run 100 3000000
echo "== 1 KiB records, acks=all, idempotent"
run 1024 1000000
kill -TERM $PID; wait $PID || true
