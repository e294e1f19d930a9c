#!/usr/bin/env bash
# Installs the Debian 12 packages moat needs to build and to run its end-to-end tests.
# Run as root; non-interactive; idempotent (does nothing when everything is installed).
#
# The tests never use a system containerd: they start a private one with its own root, state
# and socket (see tests/src/containerd.rs). If the containerd package starts containerd.service
# anyway, that is harmless: shim sockets under /run/containerd/s are named by a hash of the
# containerd address, namespace and id, so the two never share one.
set -euo pipefail

PACKAGES=(
    containerd                  # containerd 1.6 with the CRI plugin, ctr, containerd-shim-runc-v2
    runc                        # the comparison runtime in the e2e tests
    containernetworking-plugins # CNI bridge, host-local, loopback in /usr/lib/cni
    busybox-static              # the test images are made of it
    umoci                       # builds the OCI images
    skopeo                      # copies OCI images (optional registry path)
    docker-registry             # a loopback registry (optional)
    libseccomp-dev              # libseccomp for the sandbox crate
    protobuf-compiler           # protoc, for k8s-cri's build script
    iptables                    # CNI bridge plugin
    iproute2
    pkg-config
    gcc                         # builds the pause binary (static) and C deps
    libc6-dev                   # static libc for the pause binary
    ca-certificates
    tar
    procps
)

if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: must run as root" >&2
    exit 1
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$pkg")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    echo "install-deps: all ${#PACKAGES[@]} packages are installed"
else
    echo "install-deps: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Keep package scripts from starting services (containerd, docker-registry) while
    # installing; our tests run their own containerd.
    created_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        created_policy=1
    fi
    cleanup() { if [ "$created_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi; }
    trap cleanup EXIT
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        "${missing[@]}"
fi

# The e2e tests need a static busybox (busybox-static replaces the dynamic busybox package).
if ! busybox --list >/dev/null 2>&1; then
    echo "install-deps: busybox does not run" >&2
    exit 1
fi

# Rust comes from the machine (rustup); Debian 12's rustc is too old for this workspace.
if ! command -v cargo >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/cargo" ]; then
    echo "install-deps: no cargo found: install a Rust toolchain >= 1.85 (rustup)" >&2
    exit 1
fi
echo "install-deps: done"
