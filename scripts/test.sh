#!/usr/bin/env bash
# The project's test command (README): formatting, lints, every Rust test
# (unit, property, storage fault, and real-process tests with librdkafka),
# then the client compatibility suite against a real `weir dev`.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR=never
# A clean checkout builds once: incremental caches would only fill the disk.
export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo build (binaries used by the process tests)"
cargo build --workspace --bins
echo "== cargo test"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace -- --test-threads=2 2>&1 | tee "$log"
read -r rust_passed rust_failed < <(awk '/^test result:/ {p += $4; f += $6} END {print p + 0, f + 0}' "$log")
echo "== client compatibility suite"
tests/compat/with_weir_dev.sh 2>&1 | tee "$log"
read -r compat_passed compat_failed < <(awk '/^[0-9]+ passed, [0-9]+ failed/ {p = $1; f = $3} END {print p + 0, f + 0}' "$log")
echo "rust tests: $rust_passed passed; client checks: $compat_passed passed"
echo "tests: $((rust_passed + compat_passed)) passed, $((rust_failed + compat_failed)) failed"
