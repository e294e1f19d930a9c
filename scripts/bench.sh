#!/usr/bin/env bash
# Benchmarks moat against runc on a private containerd (the test bed of tests/) and prints a
# table of medians, p95 and ratios; writes the same as JSON (default target/moat-bench.json).
#
#   bash scripts/bench.sh [--quick] [moat-bench options...]    (see: moat-bench --help)
#
# Needs root. Installs the Debian packages (scripts/install-deps.sh), builds the shim and the
# bench with the release profile, then runs the bench with that shim. --quick is the short
# run CI does so the bench cannot rot (CI does not judge the numbers).
# Env: MOAT_BENCH_SKIP_DEPS=1 skips the package check; MOAT_SHIM overrides the shim binary.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi

if [ "${MOAT_BENCH_SKIP_DEPS:-0}" != 1 ]; then
    bash scripts/install-deps.sh
fi

echo "== build (release)"
start=$(date +%s)
cargo build --release -p moat-shim -p moat-bench
echo "== build took $(( $(date +%s) - start ))s"

export MOAT_SHIM="${MOAT_SHIM:-$PWD/target/release/containerd-shim-moat-v2}"
exec "$PWD/target/release/moat-bench" "$@"
