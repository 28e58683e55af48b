#!/usr/bin/env bash
# The project's test command (README): formatting, lints, every Rust test
# (unit, property, storage fault, and real-process tests with librdkafka),
# then the client compatibility suite against a real `weir dev`.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR=never
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo build (binaries used by the process tests)"
cargo build --workspace --bins
echo "== cargo test"
cargo test --workspace -- --test-threads=2
if [ -x tests/compat/with_weir_dev.sh ]; then
  echo "== client compatibility suite"
  tests/compat/with_weir_dev.sh
fi
