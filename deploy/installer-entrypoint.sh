#!/bin/sh
# What the installer image runs (scripts/build-installer-image.sh; the DaemonSets in
# deploy/kubernetes). It runs deploy/install.sh from the image against the host's files, which
# the pod mounts at the SAME paths as on the host, so that every path install.sh writes into
# containerd's config (the shim's ConfigPath) and every file it hands to the host's containerd
# (`containerd --config FILE config dump`) means the same thing inside and outside the pod.
#
# The host's programs are reached through the host's PID 1 (the pod has hostPID and is
# privileged): `containerd --version` / `config dump` run as
# `nsenter -t 1 -m -- containerd ...` (the host's binary, never one from the image), and the
# restart is `nsenter -t 1 -m -u -i -n -p -- systemctl restart containerd` by default.
# `containerd-shim-moat-v2 check` runs the same way, as the shim just installed on the host: it
# must probe the host (idmapped mounts in the host's /tmp, not the pod's overlay root; the
# host's cgroups; the shared libraries the shim needs on the host), not this pod.
#
# Environment (the DaemonSet sets these; every one has a default for a systemd node):
#   MOAT_MODE               install (default) or uninstall
#   NODE_NAME               the node to label (downward API); empty: no label
#   MOAT_CONTAINERD_CONFIG  containerd's config (default /etc/containerd/config.toml; k3s:
#                           /var/lib/rancher/k3s/agent/etc/containerd/config.toml.tmpl)
#   MOAT_BIN_DIR            where containerd finds shims (default /usr/local/bin)
#   MOAT_CONFIG             moat's config on the host (default /etc/moat/config.toml); when the
#                           file does not exist, the image's docs/config.example.toml is put
#                           there (and taken away again on uninstall, if unchanged)
#   MOAT_CONTAINERD         containerd binary as seen from the host (default containerd)
#   MOAT_RESTART_CMD        how to restart containerd, run in the pod (default: systemctl in
#                           the host's namespaces; k3s: ... systemctl restart k3s or k3s-agent)
#   MOAT_RESTRICT_OOM_SCORE_ADJ=1  also set the CRI's restrict_oom_score_adj = true
#   MOAT_EXIT=1             exit after the work instead of sleeping (a Job, or a test)
#   MOAT_HOST_PID           the host process whose namespaces nsenter joins (default 1, the
#                           host's init). A test harness whose PID 1 holds capabilities its
#                           containers lack (the kernel then refuses to open /proc/1/ns/*)
#                           names another process in the host's namespaces.
#
# After the work it sleeps: a DaemonSet's pod must stay up, and a restart of the pod must not
# redo anything (install.sh is idempotent: a second run changes nothing and restarts nothing).
# A failing install exits non-zero, so the pod shows the error and its restarts retry.
set -eu

mode="${MOAT_MODE:-install}"
config="${MOAT_CONTAINERD_CONFIG:-/etc/containerd/config.toml}"
bin_dir="${MOAT_BIN_DIR:-/usr/local/bin}"
moat_config="${MOAT_CONFIG:-/etc/moat/config.toml}"
host_containerd="${MOAT_CONTAINERD:-containerd}"
host_pid="${MOAT_HOST_PID:-1}"
restart_cmd="${MOAT_RESTART_CMD:-nsenter -t $host_pid -m -u -i -n -p -- systemctl restart containerd}"
image=/opt/moat
example="$image/config.example.toml"
example_marker="$moat_config.moat-example-installed"

say() { echo "moat installer: $*"; }

# install.sh calls `--containerd FILE` as one program; this one runs the host's containerd in
# the host's mount namespace (the config paths are the same there, see above).
wrapper=/tmp/host-containerd
printf '#!/bin/sh\nexec nsenter -t %s -m -- %s "$@"\n' "$host_pid" "$host_containerd" >"$wrapper"
chmod 0755 "$wrapper"

restrict=""
if [ "${MOAT_RESTRICT_OOM_SCORE_ADJ:-0}" = 1 ]; then restrict=--restrict-oom-score-adj; fi

run_install_sh() {
  # $restrict is empty or one word: unquoted on purpose.
  sh "$image/install.sh" "$1" --config "$config" --shim "$image/containerd-shim-moat-v2" \
    --bin-dir "$bin_dir" --moat-config "$moat_config" --containerd "$wrapper" \
    --restart-cmd "$restart_cmd" --node "${NODE_NAME:-}" $restrict \
    --check-prefix "nsenter -t $host_pid -m -u -i -n -p --" --check-containerd "$host_containerd"
}

case "$mode" in
install)
  if [ ! -e "$moat_config" ]; then
    mkdir -p "$(dirname "$moat_config")"
    cp "$example" "$moat_config"
    touch "$example_marker"
    say "no moat config at $moat_config: put the image's config.example.toml there"
  fi
  run_install_sh install
  say "installed on node ${NODE_NAME:-(unnamed)}"
  ;;
uninstall)
  run_install_sh uninstall
  if [ -e "$example_marker" ]; then
    if cmp -s "$example" "$moat_config"; then rm -f "$moat_config"; fi
    rm -f "$example_marker"
  fi
  say "uninstalled from node ${NODE_NAME:-(unnamed)}"
  ;;
*)
  say "MOAT_MODE must be install or uninstall, not $mode" >&2
  exit 2
  ;;
esac

if [ "${MOAT_EXIT:-0}" = 1 ]; then exit 0; fi
say "done; sleeping"
trap 'exit 0' TERM INT
while :; do sleep 3600 & wait $! || true; done
