#!/usr/bin/env bash
# The README demo: installs the packages, builds moat, starts a private containerd with the
# moat and runc runtime handlers, runs the same busybox pod under each (read-only root asked
# for) and shows side by side its uid_map, seccomp mode, no_new_privs, capabilities, whether
# it can write /, its cgroup; then asks moat for a privileged pod and prints the refusal.
# Everything is removed and containerd stopped at the end.
#
#   scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# Root, user namespaces, packages, cargo on PATH (stops at once with what to do).
source scripts/preflight.sh
cargo build --workspace --bins
export MOAT_SHIM="${MOAT_SHIM:-$PWD/target/debug/containerd-shim-moat-v2}"
exec target/debug/demo
