#!/usr/bin/env bash
# Sourced by scripts/demo.sh and scripts/test.sh before anything slow: stops within a second,
# with what to do, on a machine where moat cannot run at all (not root, no user namespaces),
# then installs the packages (scripts/install-deps.sh, idempotent) and puts cargo on PATH.
preflight_fail() {
    echo "$1" >&2
    exit 1
}
if [ "$(id -u)" -ne 0 ]; then
    preflight_fail "$0: must run as root (moat creates namespaces, cgroups and mounts, and the
tests start a private containerd): run it again with sudo or as root."
fi
max_userns=/proc/sys/user/max_user_namespaces
if [ -r "$max_userns" ] && [ "$(cat "$max_userns")" = 0 ]; then
    preflight_fail "$0: user namespaces are disabled ($max_userns is 0): allow them, e.g.
    sysctl -w user.max_user_namespaces=63359"
fi
if ! unshare --user --map-root-user true 2>/tmp/moat-preflight.$$; then
    err="$(cat /tmp/moat-preflight.$$)"
    rm -f /tmp/moat-preflight.$$
    preflight_fail "$0: this kernel refuses a user namespace (unshare --user: $err); moat needs
them (CONFIG_USER_NS, and no LSM or sysctl such as kernel.apparmor_restrict_unprivileged_userns
blocking them for root)."
fi
rm -f /tmp/moat-preflight.$$
bash "$(dirname "${BASH_SOURCE[0]}")/install-deps.sh"
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi
