#!/usr/bin/env bash
# Builds the installer image that deploy/kubernetes/daemonset.yaml runs, from this repository,
# the way the test images are built (tests/src/images.rs): a rootfs made of busybox-static,
# packed with umoci into an OCI layout and tarred into an OCI archive. No registry, no Docker.
#
#   scripts/build-installer-image.sh [--shim FILE] [--kubectl FILE] [--out DIR]
#
# The image (one layer):
#   /bin/*                         busybox-static and its applets (sh, nsenter, cmp, awk, ...)
#   /opt/moat/containerd-shim-moat-v2   the shim (--shim; default target/release, else
#                                  target/debug), with the shared libraries it links (ldd)
#                                  under /lib*, so it runs in the image (`config merge`, `check`)
#   /opt/moat/install.sh           deploy/install.sh
#   /opt/moat/installer-entrypoint.sh   deploy/installer-entrypoint.sh (the entrypoint)
#   /opt/moat/config.example.toml  docs/config.example.toml (put on a node without a config)
#   /opt/moat/bin/kubectl          only with --kubectl: labels the node. kubectl is not packaged
#                                  in Debian 12; get the static binary from dl.k8s.io and check
#                                  its sha256. Without it the pod installs and says which
#                                  `kubectl label node` command to run.
# Config: Entrypoint /opt/moat/installer-entrypoint.sh; Env PATH with /opt/moat/bin and the
# image's busybox (/bin) first, so the host's /usr/local/bin (mounted in the pod) shadows none of
# them, then the host's usual dirs (nsenter finds the host's containerd and systemctl with it).
#
# Prints the image's name and its manifest digest, and writes DIR/moat-installer.tar (OCI
# archive) and DIR/layout (the OCI layout). Load it where the cluster's nodes find it, e.g. on
# each node: ctr -n k8s.io images import --base-name moat.local/installer DIR/moat-installer.tar
# or push the layout to your registry: skopeo copy oci:DIR/layout:TAG docker://REGISTRY/...
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
shim=""
kubectl=""
out="$here/target/installer-image"
die() { echo "build-installer-image: $*" >&2; exit 1; }
while [ $# -gt 0 ]; do
  case "$1" in
    --shim) shim="$2"; shift 2 ;;
    --kubectl) kubectl="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    *) die "unknown argument $1 (see the comment at the top of $0)" ;;
  esac
done

# The name deploy/kubernetes/daemonset.yaml pulls; the tag is the workspace's version.
repo=moat.local/installer
version="$(sed -n 's/^version = "\(.*\)"$/\1/p' "$here/Cargo.toml" | head -n1)"
[ -n "$version" ] || die "no version in $here/Cargo.toml"

if [ -z "$shim" ]; then
  for candidate in "$here/target/release/containerd-shim-moat-v2" "$here/target/debug/containerd-shim-moat-v2"; do
    if [ -x "$candidate" ]; then shim="$candidate"; break; fi
  done
fi
[ -n "$shim" ] && [ -x "$shim" ] || die "no shim binary (cargo build --release -p moat-shim, or pass --shim)"
[ -z "$kubectl" ] || [ -x "$kubectl" ] || die "--kubectl $kubectl is not an executable"
for tool in umoci tar ldd; do
  command -v "$tool" >/dev/null || die "needs $tool (apt-get install umoci)"
done
busybox=""
for candidate in /bin/busybox /usr/bin/busybox; do
  if [ -x "$candidate" ]; then busybox="$candidate"; break; fi
done
[ -n "$busybox" ] || die "needs busybox-static (apt-get install busybox-static)"
if ldd "$busybox" >/dev/null 2>&1; then die "$busybox is dynamically linked (needs busybox-static)"; fi

mkdir -p "$out"
work="$(mktemp -d "$out/.build.XXXXXX")"
trap 'rm -rf "$work"' EXIT
root="$work/rootfs"
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,opt/moat/bin,proc,sys,dev,run,var}
install -d -m 1777 "$root/tmp"
cp "$busybox" "$root/bin/busybox"
for applet in $("$busybox" --list); do
  [ "$applet" = busybox ] || [ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root/etc/passwd"
printf 'root:x:0:\n' >"$root/etc/group"

install -m 0755 "$shim" "$root/opt/moat/containerd-shim-moat-v2"
# The shim's shared libraries (libseccomp, libc, ...) at the paths its loader looks in.
for lib in $(ldd "$shim" | awk '$3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'); do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
install -m 0755 "$here/deploy/install.sh" "$root/opt/moat/install.sh"
install -m 0755 "$here/deploy/installer-entrypoint.sh" "$root/opt/moat/installer-entrypoint.sh"
install -m 0644 "$here/docs/config.example.toml" "$root/opt/moat/config.example.toml"
if [ -n "$kubectl" ]; then install -m 0755 "$kubectl" "$root/opt/moat/bin/kubectl"; fi
# The image must run its own shim: fail the build, not the node, when it cannot.
printf 'version = 2\n' >"$root/tmp/probe.toml"
chroot "$root" /opt/moat/containerd-shim-moat-v2 config merge --config /tmp/probe.toml >/dev/null \
  || die "the shim does not run inside the image (a missing library?): chroot $root /opt/moat/containerd-shim-moat-v2"
rm -f "$root/tmp/probe.toml"

layout="$work/layout"
umoci init --layout "$layout"
umoci new --image "$layout:$version"
umoci insert --image "$layout:$version" "$root" /
umoci config --image "$layout:$version" \
  --config.entrypoint /opt/moat/installer-entrypoint.sh \
  --config.env PATH=/opt/moat/bin:/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin \
  --config.workingdir / \
  --config.label org.opencontainers.image.title=moat-installer \
  --config.label "org.opencontainers.image.version=$version"
umoci gc --layout "$layout"
tar -C "$layout" -cf "$work/moat-installer.tar" .
digest="$(grep -o '"digest":"sha256:[0-9a-f]*"' "$layout/index.json" | head -n1 | cut -d'"' -f4)"
[ -n "$digest" ] || die "no manifest digest in $layout/index.json"

rm -rf "$out/layout" "$out/moat-installer.tar"
mv "$layout" "$out/layout"
mv "$work/moat-installer.tar" "$out/moat-installer.tar"
echo "image $repo:$version"
echo "digest $digest"
echo "archive $out/moat-installer.tar"
echo "layout $out/layout:$version"
echo "load: ctr -n k8s.io images import --base-name $repo $out/moat-installer.tar"
