#!/usr/bin/env bash
# Install everything mesos-image needs on a Debian 12 host: build tools, qemu for `mesos-image
# test`, and a Rust toolchain when none is present. Idempotent; run as root. No mirror is named
# here: bookworm-backports is added with the URI of the host's own Debian sources.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps.sh: run as root (it installs system packages)" >&2
    exit 1
fi

# The first URI of the main Debian archive in the host's apt sources (deb822 or one-line style).
host_debian_uri() {
    local uri
    uri=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
    if [ -z "$uri" ]; then
        uri=$(awk '$1 == "deb" && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /:\/\//) {print $i; exit}}' \
            /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | head -n 1 || true)
    fi
    printf '%s\n' "$uri"
}

# qemu-utils on these hosts comes from bookworm-backports, so qemu-system-x86 must too.
add_backports() {
    local uri
    uri=$(host_debian_uri)
    if [ -z "$uri" ]; then
        echo "install-deps.sh: no Debian archive found in the host's apt sources" >&2
        exit 1
    fi
    cat > /etc/apt/sources.list.d/mesos-image-backports.sources <<EOF
Types: deb
URIs: $uri
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
}

add_backports
apt-get update -q

packages=(
    # base trees and element helpers
    mmdebstrap debootstrap arch-test debian-archive-keyring ubuntu-keyring squashfs-tools
    zstd xz-utils curl ca-certificates gnupg python3-yaml
    # builds without root: newuidmap/newgidmap map the user's subordinate ids (tests/rootless.rs)
    uidmap
    # arm64 builds: host programs stand in for the tree's in maintainer scripts only at the very
    # package version the tree has (src/stage/native_unpack.rs): kmod (modinfo/depmod, per module
    # in mkinitramfs), cpio, and sed at bookworm's current revision (update-ca-certificates).
    kmod cpio sed
    # disk assembly and conversion
    e2fsprogs fdisk grub-pc-bin grub-common mtools dosfstools
    # UEFI boot test firmware (x86: ovmf; arm64: AAVMF)
    ovmf qemu-efi-aarch64
    # the Mesos fixture repository used by tests
    dpkg-dev apt-utils
    # bench/ arithmetic
    bc
    # `mesos-image test`: seed key
    openssh-client
    # upload tests and bench: a real Keystone + Glance in a venv, TLS certificates, peak memory
    python3-venv iproute2 openssl time
    # tests/nodepool.rs: the nodepool fleet's ZooKeeper, serving TLS through libnetty-java's jars
    zookeeper libnetty-java
    # tests/reproducible.rs: the second build runs in another time zone (and its SPDX validator in a venv)
    tzdata
    # DIB-compatibility tests: the upstream element sdists (tests/upstream/fetch.sh)
    python3-pip
    # toolchain pieces crates need
    gcc libc6-dev pkg-config
)
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${packages[@]}"
# arm64 images: qemu-user-static runs the target's binaries while building (binfmt_misc, F flag;
# .ci/run registers it), qemu-system-arm boots them for `mesos-image test`.
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends -t bookworm-backports \
    qemu-system-x86 qemu-utils qemu-system-arm qemu-user-static

# A Rust toolchain: keep the one that is there, else Debian's newer rustc-web/cargo-web.
if ! command -v cargo >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends rustc-web cargo-web
fi
