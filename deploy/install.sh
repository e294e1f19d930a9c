#!/bin/sh
# Installs moat on this node, or undoes it. Idempotent: running install twice changes nothing
# the second time and does not restart containerd.
#
#   deploy/install.sh install   [options]
#   deploy/install.sh uninstall [options]
#
# install: copies the shim to --bin-dir; merges the `moat` runtime handler into containerd's
#   config (containerd-shim-moat-v2 config merge: version = 2 for 1.6/1.7, version = 3 for 2.x,
#   runc kept declared as the default), keeping the original as FILE.moat-backup; checks the
#   merged file with `containerd --config FILE config dump` before it replaces the config;
#   restarts containerd only when the config changed; runs `containerd-shim-moat-v2 check` and
#   labels the node (moat.io/runtime=ready) only when every requirement is met.
# uninstall: puts the original config back (exactly, when nobody edited the file since install;
#   else removes just the handler), restarts containerd if that changed the file, removes the
#   shim and the node label.
#
# Options:
#   --config FILE            containerd's config (default /etc/containerd/config.toml)
#   --shim FILE              the shim to install (default: target/release, else target/debug)
#   --bin-dir DIR            where containerd finds the shim (default /usr/local/bin)
#   --moat-config PATH       the handler's ConfigPath on 1.6/1.7 (default /etc/moat/config.toml)
#   --restrict-oom-score-adj also set the CRI's restrict_oom_score_adj = true
#   --containerd FILE        containerd binary for `config dump` and `--version` (default containerd)
#   --restart-cmd CMD        how to restart containerd (default: systemctl restart containerd)
#   --node NAME              the Kubernetes node to label (default $NODE_NAME; none: no label)
#   --check-prefix CMD       run `check` (the installed shim) under CMD, e.g. the installer pod's
#                            `nsenter -t 1 -m -u -i -n -p --`: check then sees the host's /tmp,
#                            cgroups and libraries, not the pod's (word-split, default none)
#   --check-containerd FILE  the containerd `check` runs for its version (default --containerd)
#
# k3s: pass its template, --config /var/lib/rancher/k3s/agent/etc/containerd/config.toml.tmpl,
#   with --containerd naming k3s's containerd (for its version) and --restart-cmd
#   "systemctl restart k3s" (or k3s-agent). Only the handler is appended to the template (k3s's
#   base declares runc); `check` then reads the config.toml k3s renders beside it.
#
# POSIX sh with busybox tools only (no bash, no coreutils `install`): the installer image
# (scripts/build-installer-image.sh) runs it with busybox-static; deploy/installer-entrypoint.sh
# is what the DaemonSet in deploy/kubernetes runs.
set -eu
# dash (Debian's /bin/sh) has no pipefail; busybox ash and bash do.
if (set -o pipefail) 2>/dev/null; then set -o pipefail; fi

here="$(cd "$(dirname "$0")/.." && pwd)"
verb="${1:-}"
shift || true
config=/etc/containerd/config.toml
shim=""
bin_dir=/usr/local/bin
moat_config=/etc/moat/config.toml
restrict=""
containerd=containerd
restart_cmd="systemctl restart containerd"
node="${NODE_NAME:-}"
check_prefix=""
check_containerd=""
label=moat.io/runtime

die() { echo "moat install: $*" >&2; exit 1; }
while [ $# -gt 0 ]; do
  case "$1" in
    --config) config="$2"; shift 2 ;;
    --shim) shim="$2"; shift 2 ;;
    --bin-dir) bin_dir="$2"; shift 2 ;;
    --moat-config) moat_config="$2"; shift 2 ;;
    --restrict-oom-score-adj) restrict=--restrict-oom-score-adj; shift ;;
    --containerd) containerd="$2"; shift 2 ;;
    --restart-cmd) restart_cmd="$2"; shift 2 ;;
    --node) node="$2"; shift 2 ;;
    --check-prefix) check_prefix="$2"; shift 2 ;;
    --check-containerd) check_containerd="$2"; shift 2 ;;
    *) die "unknown argument $1 (see the comment at the top of $0)" ;;
  esac
done
backup="$config.moat-backup"
installed="$config.moat-installed"
absent_marker="$config.moat-backup-absent"
target="$bin_dir/containerd-shim-moat-v2"
# Either empty or `--k3s-template N`: word-split on purpose where it is used.
template=""
check_config="$config"
major() { "$containerd" --version | awk '{print $3}' | sed 's/^v//; s/\..*//'; }
case "$config" in
*.tmpl)
  # k3s: containerd config version 3 for containerd 2.x, else 2.
  if [ "$(major)" -ge 2 ]; then template="--k3s-template 3"; else template="--k3s-template 2"; fi
  check_config="${config%.tmpl}"
  ;;
esac

restart() {
  if [ -n "$restart_cmd" ]; then
    echo "moat install: config changed, restarting containerd: $restart_cmd"
    sh -c "$restart_cmd"
  fi
}

label_node() {
  [ -n "$node" ] || return 0
  if command -v kubectl >/dev/null; then
    kubectl label node "$node" "$1" --overwrite
  else
    echo "moat install: no kubectl here, node $node not labelled; run: kubectl label node $node $1 --overwrite" >&2
  fi
}

# Writes $2 to $1 after `containerd config dump` accepted it (a k3s template cannot be checked
# before k3s renders it); returns 1 when $1 already held it.
replace_config() {
  local dest="$1" new="$2"
  if [ -z "$template" ]; then
    "$containerd" --config "$new" config dump >/dev/null \
      || die "containerd does not accept the merged config (left unchanged: $dest); see $new"
  fi
  if [ -f "$dest" ] && cmp -s "$new" "$dest"; then
    rm -f "$new"
    return 1
  fi
  if [ -f "$dest" ]; then chmod "$(stat -c %a "$dest")" "$new"; fi
  mv -f "$new" "$dest"
}

case "$verb" in
install)
  if [ -z "$shim" ]; then
    for candidate in "$here/target/release/containerd-shim-moat-v2" "$here/target/debug/containerd-shim-moat-v2"; do
      if [ -x "$candidate" ]; then shim="$candidate"; break; fi
    done
  fi
  [ -x "$shim" ] || die "no shim binary (build it with cargo build --release -p moat-shim, or pass --shim)"
  mkdir -p "$bin_dir"
  if ! cmp -s "$shim" "$target"; then
    # A copy beside it, then a rename: the old binary may be running (ETXTBSY on overwrite).
    cp "$shim" "$target.moat-new" && chmod 0755 "$target.moat-new" && mv -f "$target.moat-new" "$target"
  fi

  if [ ! -e "$config" ]; then
    mkdir -p "$(dirname "$config")"
    if [ -n "$template" ]; then : >"$config";
    elif [ "$(major)" -ge 2 ]; then echo "version = 3" >"$config";
    else echo "version = 2" >"$config"; fi
    touch "$absent_marker"
  fi
  if [ ! -e "$backup" ] && [ ! -e "$absent_marker" ]; then cp -p "$config" "$backup"; fi
  merged="$(mktemp "$config.moat-merge.XXXXXX")"
  "$target" config merge --config "$config" --moat-config "$moat_config" $restrict $template >"$merged" \
    || { rm -f "$merged"; die "cannot merge the moat handler into $config"; }
  if replace_config "$config" "$merged"; then
    cp -p "$config" "$installed"
    restart
  else
    echo "moat install: $config already has the moat handler; containerd not restarted"
    [ -e "$installed" ] || cp -p "$config" "$installed"
  fi
  # $check_prefix is a command line: unquoted on purpose.
  if $check_prefix "$target" check --config "$check_config" --containerd "${check_containerd:-$containerd}"; then
    label_node "$label=ready"
  else
    label_node "$label-" || true
    die "the node fails moat's check (above); it is not labelled $label=ready"
  fi
  ;;
uninstall)
  if [ -e "$installed" ] && [ -e "$config" ] && cmp -s "$installed" "$config"; then
    if [ -e "$absent_marker" ]; then
      rm -f "$config"
      changed=1
    else
      cp -p "$backup" "$config"
      changed=1
    fi
  elif [ -e "$config" ]; then
    # Edited since install: take out only the handler.
    stripped="$(mktemp "$config.moat-merge.XXXXXX")"
    if [ -x "$target" ]; then helper="$target"; else helper="${shim:-$here/target/debug/containerd-shim-moat-v2}"; fi
    "$helper" config remove --config "$config" $template >"$stripped" || { rm -f "$stripped"; die "cannot remove the handler from $config"; }
    if replace_config "$config" "$stripped"; then changed=1; else changed=0; fi
  else
    changed=0
  fi
  rm -f "$backup" "$installed" "$absent_marker"
  rm -f "$target"
  label_node "$label-" || true
  if [ "$changed" = 1 ]; then restart; fi
  echo "moat uninstalled"
  ;;
*)
  die "usage: $0 install|uninstall [options] (see the comment at the top of $0)"
  ;;
esac
