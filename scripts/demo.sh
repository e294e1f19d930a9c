#!/usr/bin/env bash
# The README demo: installs the packages, builds moat, starts a private containerd with the
# moat runtime handler, runs a pod whose busybox container prints `id`, its uid_map and its
# hostname, shows its log, then removes everything and stops containerd.
#
#   scripts/demo.sh [moat|runc]
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi
bash scripts/install-deps.sh
cargo build --workspace --bins
export MOAT_SHIM="${MOAT_SHIM:-$PWD/target/debug/containerd-shim-moat-v2}"
exec target/debug/demo "${1:-moat}"
