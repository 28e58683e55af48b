#!/usr/bin/env bash
# kcat checks (Debian's kcat 1.7.1 on librdkafka 2.0.2).
#   kcat.sh metadata BOOTSTRAP   -L (plain and -J) for the broker list and a topic
#   kcat.sh roundtrip BOOTSTRAP  -P keyed lines into one partition, -C -e reads them back
# Same contract as python/common.py: exit 0 PASS, 1 FAIL; last line `REASON: ...`.
set -euo pipefail
mode=$1 bootstrap=$2
suffix=${COMPAT_SUFFIX:-$(date +%s)-$$}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

fail() {
    for f in "$work"/*.err; do [ -s "$f" ] && { echo "--- $(basename "$f")"; cat "$f"; }; done
    echo "REASON: $*"
    exit 1
}

# -X: keep a broken node from making kcat retry for minutes.
opts=(-b "$bootstrap" -X socket.timeout.ms=10000 -m 15)

case $mode in
metadata)
    topic=compat-kcat-md-$suffix
    echo hello | kcat "${opts[@]}" -P -t "$topic" -p 0 2>"$work/p.err" || fail "kcat -P failed: $(tail -1 "$work/p.err")"
    kcat "${opts[@]}" -L >"$work/plain" 2>"$work/l.err" || fail "kcat -L failed: $(tail -1 "$work/l.err")"
    cat "$work/plain" "$work/l.err"
    grep -q "broker .* at 127.0.0.1:" "$work/plain" || fail "kcat -L lists no broker at 127.0.0.1"
    grep -q "topic \"$topic\" with 1 partitions" "$work/plain" || fail "kcat -L does not list $topic with 1 partition"
    kcat "${opts[@]}" -L -J -t "$topic" >"$work/json" 2>"$work/j.err" || fail "kcat -L -J failed: $(tail -1 "$work/j.err")"
    cat "$work/json"; echo
    python3 - "$work/json" "$topic" <<'PY' || exit 1
import json, sys
md = json.load(open(sys.argv[1]))
topic = sys.argv[2]
def fail(msg):
    print("REASON: " + msg)
    sys.exit(1)
brokers = md.get("brokers") or []
if not brokers:
    fail("metadata has no brokers: %s" % md)
ids = {b["id"] for b in brokers}
topics = [t for t in md.get("topics", []) if t["topic"] == topic]
if len(topics) != 1:
    fail("metadata for %s: %s" % (topic, md.get("topics")))
t = topics[0]
if t.get("error"):
    fail("topic error: %s" % t["error"])
parts = t.get("partitions") or []
if len(parts) != 1 or parts[0]["leader"] not in ids:
    fail("partitions %s, brokers %s" % (parts, sorted(ids)))
PY
    ;;
roundtrip)
    topic=compat-kcat-rt-$suffix
    for i in $(seq 0 199); do echo "key$i:line number $i with some text"; done >"$work/in"
    kcat "${opts[@]}" -P -t "$topic" -p 0 -K: -l "$work/in" 2>"$work/p.err" \
        || fail "kcat -P failed: $(tail -1 "$work/p.err")"
    cat "$work/p.err"
    timeout 60 kcat "${opts[@]}" -C -t "$topic" -p 0 -o beginning -e -f '%o|%k|%s\n' >"$work/out" 2>"$work/c.err" \
        || fail "kcat -C failed (rc $?): $(tail -1 "$work/c.err")"
    cat "$work/c.err"
    i=0
    while IFS= read -r line; do echo "$i|key$i|line number $i with some text"; i=$((i + 1)); done <"$work/in" >"$work/want"
    if ! diff "$work/want" "$work/out" >"$work/diff"; then
        head -20 "$work/diff"
        fail "kcat -C read $(wc -l <"$work/out") lines, expected 200; first difference: $(grep -m1 '^[<>]' "$work/diff")"
    fi
    # The last 20 by relative offset (ListOffsets latest, then Fetch).
    timeout 60 kcat "${opts[@]}" -C -t "$topic" -p 0 -o -20 -e -f '%o|%k|%s\n' >"$work/tail" 2>"$work/t.err" \
        || fail "kcat -C -o -20 failed (rc $?): $(tail -1 "$work/t.err")"
    tail -20 "$work/want" | diff - "$work/tail" >"$work/diff" \
        || fail "kcat -C -o -20 read $(wc -l <"$work/tail") lines, expected the last 20: $(grep -m1 '^[<>]' "$work/diff")"
    ;;
*)
    fail "unknown mode $mode"
    ;;
esac
echo "REASON: ok"
