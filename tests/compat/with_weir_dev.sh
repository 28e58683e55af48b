#!/usr/bin/env bash
# Runs the client compatibility suite against a fresh `weir dev`:
# starts the node on a temp data dir and a free port, waits for its
# `bootstrap: HOST:PORT` line, runs run.sh against it, stops the node with
# SIGTERM and exits with run.sh's status.
#
#   tests/compat/with_weir_dev.sh            uses target/debug/weir
#   WEIR_BIN=target/release/weir tests/compat/with_weir_dev.sh
#
# The node's output is kept in tests/compat/logs/weir-dev.log (COMPAT_LOG_DIR).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=${WEIR_BIN:-$root/target/debug/weir}
shards=${WEIR_SHARDS:-2}
log_dir=${COMPAT_LOG_DIR:-$here/logs}
mkdir -p "$log_dir"
node_log=$log_dir/weir-dev.log

if [ ! -x "$bin" ]; then
    echo "weir binary not found at $bin (cargo build -p weir, or set WEIR_BIN)" >&2
    echo "FAIL start-weir-dev: no binary at $bin"
    echo "0 passed, 1 failed, 0 skipped"
    exit 1
fi

data=$(mktemp -d "${TMPDIR:-/tmp}/weir-compat.XXXXXX")
pid=""
stop_node() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 150); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            echo "weir dev did not stop within 15 s of SIGTERM; killing it" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    fi
    pid=""
    rm -rf "$data"
}
trap stop_node EXIT
trap 'exit 130' INT TERM

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
: >"$node_log"
"$bin" dev --data-dir "$data" --kafka-port "$port" --shards "$shards" --metrics-port 0 >"$node_log" 2>&1 &
pid=$!

bootstrap=""
for _ in $(seq 1 600); do # up to 60 s
    bootstrap=$(sed -n 's/^bootstrap: *\([^ ]*\).*/\1/p' "$node_log" | head -1 || true)
    [ -n "$bootstrap" ] && break
    if ! kill -0 "$pid" 2>/dev/null; then
        break
    fi
    sleep 0.1
done
if [ -z "$bootstrap" ]; then
    echo "weir dev printed no bootstrap line (node log: $node_log):" >&2
    tail -30 "$node_log" | sed 's/^/    | /' >&2
    echo "FAIL start-weir-dev: no bootstrap line within 60 s"
    echo "0 passed, 1 failed, 0 skipped"
    exit 1
fi
echo "# weir dev ($bin) is up at $bootstrap, data in $data" >&2

rc=0
"$here/run.sh" "$bootstrap" || rc=$?

# A panicking shard thread can leave the process up but deaf on that shard:
# surface every panic, and do not let a run with one pass.
if grep -a -q 'panicked at' "$node_log"; then
    echo "weir dev panicked during the suite (node log: $node_log):" >&2
    grep -a -A1 'panicked at' "$node_log" | sed 's/\x1b\[[0-9;]*m//g; s/^/    | /' >&2
    [ "$rc" != 0 ] || rc=1
fi
if ! kill -0 "$pid" 2>/dev/null; then
    echo "weir dev exited during the suite (node log: $node_log):" >&2
    tail -30 "$node_log" | sed 's/^/    | /' >&2
    [ "$rc" != 0 ] || rc=1
fi
stop_node
exit "$rc"
