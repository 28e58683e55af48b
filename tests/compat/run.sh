#!/usr/bin/env bash
# Client compatibility suite: real Kafka clients against a running node.
#
#   tests/compat/run.sh BOOTSTRAP          e.g. tests/compat/run.sh 127.0.0.1:9092
#
# Installs what it needs (idempotent; quick when already there): kcat from
# apt, a Python venv with confluent-kafka / kafka-python / aiokafka, kafkajs
# from npm, and the Java kafka-clients 3.9.1 jars taken out of a PyPI wheel.
# Then runs every check and prints `PASS name`, `FAIL name: reason` or
# `SKIP name: reason`, and last `N passed, M failed, K skipped`. Exits non-zero
# if any check failed. Each check's full output is in tests/compat/logs/NAME.log
# (COMPAT_LOG_DIR overrides); a failing check's last lines also go to stderr.
#
# Environment: COMPAT_ONLY=REGEX runs only the checks whose name matches;
# WEIR_COMPAT_JAVA_LOG=DEBUG makes the Java client log more.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bootstrap=${1:?usage: run.sh BOOTSTRAP (host:port)}
log_dir=${COMPAT_LOG_DIR:-$here/logs}
only=${COMPAT_ONLY:-}
suffix=$(date +%s)-$$
export COMPAT_SUFFIX=$suffix
mkdir -p "$log_dir"

venv=$here/.venv
jars=$here/jars
py=$venv/bin/python

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# ---------------------------------------------------------------- install ---

install_kcat() {
    command -v kcat >/dev/null && return 0
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kcat
}

install_python() {
    local stamp=$venv/.weir-compat-installed want
    want=$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)
    [ -x "$py" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && return 0
    [ -x "$py" ] || python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$here/requirements.txt"
    echo "$want" >"$stamp"
}

install_kafkajs() {
    local want have
    want=$(sed -n 's/.*"kafkajs": *"\([^"]*\)".*/\1/p' "$here/package.json" | head -1)
    have=$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' "$here/node_modules/kafkajs/package.json" 2>/dev/null | head -1)
    [ -n "$want" ] && [ "$want" = "$have" ] && return 0
    (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
}

# kafka-clients 3.9.1 and its codec/logging jars, as shipped inside the
# shigawire-apache-flink-libraries wheel (pyflink/lib/*.jar).
JAR_NAMES=(kafka-clients lz4-java snappy-java zstd-jni slf4j-api)
FLINK_WHEEL=shigawire-apache-flink-libraries==2.0.0.post1

install_jars() {
    local missing=0 name tmp
    for name in "${JAR_NAMES[@]}"; do [ -s "$jars/$name.jar" ] || missing=1; done
    if [ "$missing" = 1 ]; then
        tmp=$(mktemp -d)
        "$venv/bin/pip" download -q --disable-pip-version-check --no-deps "$FLINK_WHEEL" -d "$tmp"
        mkdir -p "$jars"
        "$py" - "$tmp" "$jars" "${JAR_NAMES[@]}" <<'PY'
import glob, os, sys, zipfile
tmp, out, names = sys.argv[1], sys.argv[2], sys.argv[3:]
wheel = glob.glob(os.path.join(tmp, "*.whl"))[0]
with zipfile.ZipFile(wheel) as z:
    for name in names:
        data = z.read("pyflink/lib/%s.jar" % name)
        with open(os.path.join(out, name + ".jar.tmp"), "wb") as f:
            f.write(data)
        os.replace(os.path.join(out, name + ".jar.tmp"), os.path.join(out, name + ".jar"))
with zipfile.ZipFile(os.path.join(out, "kafka-clients.jar")) as z:
    props = z.read("kafka/kafka-version.properties").decode()
if "version=3.9.1" not in props:
    sys.exit("kafka-clients.jar is not 3.9.1: " + props)
PY
        rm -rf "$tmp"
    fi
    # Compile the Java checks when the sources changed.
    local stamp=$jars/classes/.weir-compat-sources want
    want=$(cat "$here"/java/*.java | sha256sum | cut -d' ' -f1)
    [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && return 0
    rm -rf "$jars/classes"
    mkdir -p "$jars/classes"
    javac -nowarn -encoding UTF-8 -cp "$jars/*" -d "$jars/classes" "$here"/java/*.java
    echo "$want" >"$stamp"
}

setup() {
    local step
    for step in install_kcat install_python install_kafkajs install_jars; do
        if ! "$step" >>"$log_dir/setup.log" 2>&1; then
            echo "setup step $step failed; see $log_dir/setup.log" >&2
            tail -20 "$log_dir/setup.log" | sed 's/^/    | /' >&2
            return 1
        fi
    done
}

# ----------------------------------------------------------------- checks ---

passed=0 failed=0 skipped=0

report() { # report STATUS NAME [REASON]
    local status=$1 name=$2 reason=${3:-}
    case $status in
    PASS) passed=$((passed + 1)); echo "PASS $name" ;;
    SKIP) skipped=$((skipped + 1)); echo "SKIP $name: $reason" ;;
    FAIL) failed=$((failed + 1)); echo "FAIL $name: $reason" ;;
    esac
}

wanted() { [ -z "$only" ] || [[ $1 =~ $only ]]; }

# check NAME TIMEOUT_SECONDS COMMAND...: the command exits 0 (PASS), 77
# (SKIP) or anything else (FAIL); its last `REASON: ` line says why.
check() {
    local name=$1 secs=$2 rc=0 reason health
    shift 2
    wanted "$name" || return 0
    local log=$log_dir/$name.log
    echo "# $name: $*" >"$log"
    # A node that stopped answering (say, a shard died in an earlier check)
    # fails the check at once rather than after its whole timeout.
    if ! health=$(timeout 15 "$py" "$here/python/node_health.py" "$bootstrap" 2>&1); then
        echo "$health" >>"$log"
        report FAIL "$name" "node not healthy before the check: $(echo "$health" | sed -n 's/^REASON: //p' | tail -1)"
        return 0
    fi
    timeout -k 10 "$secs" "$@" >>"$log" 2>&1 </dev/null || rc=$?
    reason=$(grep '^REASON: ' "$log" | tail -1 | cut -c9- || true)
    case $rc in
    0) report PASS "$name" ;;
    77) report SKIP "$name" "$reason" ;;
    124 | 137) report FAIL "$name" "timed out after ${secs}s${reason:+ ($reason)}" ;;
    *) report FAIL "$name" "${reason:-exit status $rc: $(grep -v '^\s*$' "$log" | tail -1)}" ;;
    esac
    if [ "$rc" != 0 ] && [ "$rc" != 77 ]; then
        grep -v '^REASON: ' "$log" | tail -15 | sed "s/^/    | /" >&2
        echo "    | (full log: $log)" >&2
    fi
}

# Group checks run only when the node serves consumer groups: a SKIP (not a
# FAIL) when FindCoordinator is unsupported, as python/groups_probe.py asks.
groups_state=""
group_check() {
    local name=$1
    wanted "$name" || return 0
    if [ -z "$groups_state" ]; then
        local rc=0
        timeout 30 "$py" python/groups_probe.py "$bootstrap" >"$log_dir/groups-probe.log" 2>&1 || rc=$?
        groups_reason=$(grep '^REASON: ' "$log_dir/groups-probe.log" | tail -1 | cut -c9- || true)
        if [ "$rc" = 77 ]; then groups_state=unsupported; else groups_state=try; fi
    fi
    if [ "$groups_state" = unsupported ]; then
        report SKIP "$name" "consumer groups unsupported by the node ($groups_reason)"
        return 0
    fi
    check "$@"
}

# The commands each check runs (timeout needs programs, not functions).
# The codec jars unpack native libraries into java.io.tmpdir and the JVM is
# halted, so give them a folder of ours that each run empties.
jvm=(java -Djava.io.tmpdir="$jars/tmp" -cp "$jars/classes:$jars/*" Compat)
rm -rf "$jars/tmp"
mkdir -p "$jars/tmp"

start=$(date +%s)
: >"$log_dir/setup.log"
if setup; then
    cd "$here"
    check confluent-bulk-idempotent 300 "$py" python/confluent_bulk.py "$bootstrap"
    group_check confluent-group-resume 120 "$py" python/confluent_group.py "$bootstrap"
    check kafka-python-roundtrip 90 "$py" python/kafka_python_roundtrip.py "$bootstrap"
    check kafka-python-admin 90 "$py" python/kafka_python_admin.py "$bootstrap"
    check aiokafka-roundtrip 90 "$py" python/aiokafka_roundtrip.py "$bootstrap"
    check kcat-metadata 60 sh/kcat.sh metadata "$bootstrap"
    check kcat-roundtrip 90 sh/kcat.sh roundtrip "$bootstrap"
    check kafkajs-produce 90 node js/kafkajs_produce.js "$bootstrap"
    group_check kafkajs-consume 120 node js/kafkajs_consume.js "$bootstrap"
    check java-compression 150 "${jvm[@]}" compression "$bootstrap"
    check java-admin 90 "${jvm[@]}" admin "$bootstrap"
    group_check java-group-resume 120 "${jvm[@]}" group "$bootstrap"
else
    report FAIL setup "installing the clients failed (see $log_dir/setup.log)"
fi
echo "# compat suite took $(($(date +%s) - start))s; logs in $log_dir" >&2
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" = 0 ]
