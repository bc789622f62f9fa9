# Containerised mesos-image: build the binary, then a slim runtime holding exactly the tools a
# build needs. Base images are build arguments so a site without registry access can substitute
# images it made itself (tests/container/run.sh does exactly that with mmdebstrap + docker import).
#
#   docker build -t mesos-image .
#   docker run --rm --security-opt seccomp=unconfined --security-opt systempaths=unconfined \
#       -v /tmp:/output -e HOST_UID=$(id -u) -e HOST_GID=$(id -g) mesos-image
# (no --privileged, no added capability: README, "Least privilege"; --privileged works too)
#
# Written for the classic builder as well as BuildKit: no cache mounts, so the layers are ordered
# for caching instead (dependencies compile in their own layer keyed on Cargo.toml + Cargo.lock).

ARG BUILD_IMAGE=debian:bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${BUILD_IMAGE} AS build
# rustc-web/cargo-web are bookworm's up-to-date toolchain (from the security suite); the base
# image's own apt sources are used, so no mirror is named here.
RUN apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        rustc-web cargo-web gcc libc6-dev pkg-config ca-certificates \
 && rm -rf /var/lib/apt/lists/*
# docker/cargo-home/ becomes CARGO_HOME: a site can drop a config.toml there (vendored sources,
# a registry mirror, proxy settings) without editing this file.
ENV CARGO_HOME=/usr/local/cargo
COPY docker/cargo-home/ /usr/local/cargo/
WORKDIR /src
# Dependencies first, against empty crate roots, so a source change does not recompile them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src \
 && echo 'fn main() {}' > src/main.rs \
 && : > src/lib.rs \
 && cargo build --release --locked --bin mesos-image \
 && rm -rf src
COPY src/ src/
# COPY keeps the context's mtimes, which can be older than the placeholder build: touch so cargo
# sees the real sources as changed.
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked --bin mesos-image \
 && install -D -m 0755 target/release/mesos-image /out/mesos-image

FROM ${RUNTIME_IMAGE}
# ubuntu-keyring (Ubuntu archive and cloud-image keys) is only in backports on Debian 12. Add the
# release's backports suite on the mirror the base image already uses, so no host is named here.
RUN set -eu; \
    . /etc/os-release; \
    uri=$(sed -n 's/^URIs: *\([^ ]*\).*/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n 1); \
    if [ -z "$uri" ]; then \
        uri=$(sed -n 's/^deb \(\[[^]]*\] \)\{0,1\}\([^ ]*\).*/\2/p' /etc/apt/sources.list | head -n 1); \
    fi; \
    printf 'Types: deb\nURIs: %s\nSuites: %s-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
        "$uri" "$VERSION_CODENAME" > /etc/apt/sources.list.d/backports.sources
# Exactly what a build runs on the host side: bootstrap (mmdebstrap, debootstrap, keyrings),
# fetching (curl: the mirror's InRelease that dates the build, cloud-image downloads),
# filesystem and disk assembly (e2fsprogs, fdisk, mtools, dosfstools, squashfs-tools), GRUB
# tooling, image conversion (qemu-utils), archive formats (xz, zstd) and namespaces (util-linux).
RUN apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        mmdebstrap debootstrap qemu-utils e2fsprogs fdisk mtools dosfstools squashfs-tools \
        grub-pc-bin grub-common ubuntu-keyring debian-archive-keyring ca-certificates gnupg \
        xz-utils zstd util-linux mount curl \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/mesos-image /usr/local/bin/mesos-image
# The binary finds these through <exe>/../share/mesos-image (src/paths.rs).
COPY elements/ /usr/local/share/mesos-image/elements/
COPY recipes/ /usr/local/share/mesos-image/recipes/
COPY docker/entrypoint.sh /usr/local/bin/mesos-image-entrypoint
# The package and stage caches want a real filesystem: the container's own root may be an
# overlay (fuse-overlayfs), slow for multi-GiB snapshots. A named volume or host directory here
# also keeps builds warm across runs.
VOLUME /root/.cache/mesos-image
# Relative output paths land in the mounted output directory.
WORKDIR /output
ENTRYPOINT ["/usr/local/bin/mesos-image-entrypoint"]
