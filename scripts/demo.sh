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
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi
bash scripts/install-deps.sh
cargo build --workspace --bins
export MOAT_SHIM="${MOAT_SHIM:-$PWD/target/debug/containerd-shim-moat-v2}"
exec target/debug/demo
