#!/usr/bin/env bash
# Runs every test of the workspace: the unit tests of all crates and the end-to-end tests
# (tests/, crate moat-e2e) against a private containerd with the moat and runc handlers.
#
#   scripts/test.sh [extra cargo test args...]    e.g. scripts/test.sh -p moat-e2e
#
# Needs root; installs the packages itself (scripts/preflight.sh). MOAT_E2E=1 is set, so an
# end-to-end test whose prerequisite is missing fails instead of skipping.
# After a whole-workspace run (no arguments), the benchmark runs in its short mode
# (`moat-bench --quick`, see scripts/bench.sh) so it cannot rot; its numbers are not judged,
# but it must succeed.
# Env: MOAT_TEST_THREADS (default 2), MOAT_TEST_TIMEOUT (seconds, default 1500),
#      MOAT_TEST_BENCH=0 skips the benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."

# Root, user namespaces, packages, cargo on PATH (stops at once with what to do): the test
# command works alone on a fresh machine, before or after the demo.
source scripts/preflight.sh

# The formatting gate: one style for the workspace (rustfmt.toml).
echo "== cargo fmt --check"
cargo fmt --all -- --check
# The lint gate: clippy with warnings as errors over every target (the workspace lints in
# Cargo.toml deny undocumented unsafe blocks).
echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

# Debug builds: building with the release profile (LTO, one codegen unit) takes far longer
# on two cores than the tests gain from optimised code.
echo "== build"
start=$(date +%s)
cargo build --workspace --all-targets
echo "== build took $(( $(date +%s) - start ))s"

export MOAT_E2E=1
export MOAT_SHIM="${MOAT_SHIM:-$PWD/target/debug/containerd-shim-moat-v2}"
threads="${MOAT_TEST_THREADS:-2}"
# The whole workspace, unless the arguments choose (e.g. `-p moat-e2e --test lifecycle`).
scope=(--workspace)
if [ "$#" -gt 0 ]; then scope=(); fi
log="$(mktemp /tmp/moat-test.XXXXXX.log)"

echo "== test (MOAT_E2E=1, --test-threads=$threads, shim $MOAT_SHIM)"
start=$(date +%s)
set +e
timeout --kill-after=60 "${MOAT_TEST_TIMEOUT:-1500}" \
    cargo test "${scope[@]}" --no-fail-fast "$@" -- --test-threads="$threads" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
echo "== tests took $(( $(date +%s) - start ))s"

# Totals over every test line ("test NAME ... ok|FAILED|ignored"), which libtest and the
# custom harnesses print alike.
read -r passed failed ignored < <(awk '
    /^test .* \.\.\. ok( |$)/ { p++ }
    /^test .* \.\.\. FAILED( |$)/ { f++ }
    /^test .* \.\.\. ignored([ ,]|$)/ { g++ }
    END { print p+0, f+0, g+0 }' "$log")
if [ "$failed" -gt 0 ] || [ "$status" -ne 0 ]; then
    echo
    echo "failing tests:"
    awk '/^failures:$/ { in_list = 1; next }
         in_list && /^    [^ ]/ { print "  " $1; next }
         { in_list = 0 }' "$log" | sort -u
fi
echo
if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
    echo "test.sh: the test run hit its time limit (${MOAT_TEST_TIMEOUT:-1500}s)"
fi
echo "total: $passed passed, $failed failed, $ignored skipped"
rm -f "$log"

if [ "$#" -eq 0 ] && [ "${MOAT_TEST_BENCH:-1}" != 0 ]; then
    echo
    echo "== bench (moat-bench --quick: must run; numbers not judged)"
    start=$(date +%s)
    set +e
    timeout --kill-after=30 600 target/debug/moat-bench --quick --json target/moat-bench-quick.json
    bench_status=$?
    set -e
    echo "== bench took $(( $(date +%s) - start ))s (status $bench_status)"
    if [ "$bench_status" -ne 0 ] && [ "$status" -eq 0 ]; then
        status=$bench_status
    fi
    # The test totals again, as the run's closing line.
    echo "total: $passed passed, $failed failed, $ignored skipped"
fi
exit "$status"
