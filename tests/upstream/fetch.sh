#!/usr/bin/env bash
# Fetch the real upstream element trees the DIB-compatibility tests run: the sdists of
# tripleo-image-elements, heat-agents, magnum 5.x and diskimage-builder, downloaded with pip's
# own configuration (no index is named here), checked against pinned sha256 sums, unpacked into a
# cache and never committed. Prints one `NAME PATH` line per element tree:
#
#   tripleo-image-elements  .../tripleo-image-elements-15.0.0/elements
#   heat-agents             .../heat_agents-13.0.0            (its elements sit at the top)
#   magnum                  .../magnum-5.0.2/magnum/drivers/mesos_ubuntu_v1/image
#   diskimage-builder       .../diskimage_builder-3.43.0/diskimage_builder/elements
#
# Cache: $MESOS_IMAGE_UPSTREAM_CACHE (default /var/tmp/mesos-image-upstream). A tree is unpacked
# into a temporary directory and renamed into place, under a lock, so parallel tests and an
# interrupted run never see half a tree. Any failure exits non-zero with one line naming the sdist.
set -euo pipefail

cache=${MESOS_IMAGE_UPSTREAM_CACHE:-/var/tmp/mesos-image-upstream}

# name  version  sha256 of the sdist  unpacked top directory  element tree inside it
# magnum 5.0.2 is the 5.x release on PyPI; it still carries the mesos_ubuntu_v1 driver's
# image/{docker,mesos} elements the Heat Mesos guide puts on ELEMENTS_PATH.
sdists=(
    "tripleo-image-elements 15.0.0 667c581c6a0fc193a475207cea24a4af8ddb2464929dc333e36391afcbd84e6b tripleo-image-elements-15.0.0 elements"
    "heat-agents 13.0.0 346099c6e9f16bd5e68913b825013acdd97b6743a1764ebcfc08d6528cefa9d6 heat_agents-13.0.0 ."
    "magnum 5.0.2 b9875980dcafa89997c0811c1e7fc687a0635a07644170a2da4999083ac748cb magnum-5.0.2 magnum/drivers/mesos_ubuntu_v1/image"
    "diskimage-builder 3.43.0 a0e71b53c62e9f91dfa29a19118b4f44f6c9ddbf490ce51700234f950d1d70df diskimage_builder-3.43.0 diskimage_builder/elements"
)

fail() {
    echo "upstream/fetch.sh: $*" >&2
    exit 1
}

pip_command() {
    if command -v pip3 >/dev/null; then
        echo pip3
    elif command -v pip >/dev/null; then
        echo pip
    elif python3 -m pip --version >/dev/null 2>&1; then
        echo "python3 -m pip"
    else
        fail "no pip found (install python3-pip: scripts/install-deps.sh)"
    fi
}

# Download NAME==VERSION's sdist into DIR, check its sum, unpack it to $cache/TOP.
fetch_one() {
    local name=$1 version=$2 sum=$3 top=$4 scratch archive
    scratch=$(mktemp -d "$cache/.fetch-$name.XXXXXX")
    # shellcheck disable=SC2046 # pip_command may be two words
    if ! $(pip_command) download --quiet --no-deps --no-binary :all: --dest "$scratch/dl" "$name==$version" \
        >"$scratch/pip.log" 2>&1; then
        fail "pip download $name==$version failed: $(tail -n 1 "$scratch/pip.log")"
    fi
    archive=$(find "$scratch/dl" -maxdepth 1 -name '*.tar.gz' | head -n 1)
    [ -n "$archive" ] || fail "pip download $name==$version gave no .tar.gz sdist"
    echo "$sum  $archive" | sha256sum --check --status ||
        fail "$name==$version: sdist sha256 is not the pinned $sum"
    mkdir "$scratch/unpacked"
    tar -xzf "$archive" -C "$scratch/unpacked" || fail "$name==$version: cannot unpack $(basename "$archive")"
    [ -d "$scratch/unpacked/$top" ] || fail "$name==$version: sdist has no $top/"
    mv -T "$scratch/unpacked/$top" "$cache/$top"
    rm -rf "$scratch"
}

mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9
# Leftovers of an interrupted run (we hold the lock, so no one else is fetching).
rm -rf "$cache"/.fetch-*

for entry in "${sdists[@]}"; do
    read -r name version sum top tree <<<"$entry"
    [ -d "$cache/$top" ] || fetch_one "$name" "$version" "$sum" "$top"
    path=$(cd "$cache/$top/$tree" && pwd)
    printf '%s %s\n' "$name" "$path"
done
