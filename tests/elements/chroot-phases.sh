#!/bin/bash
# Run our elements' phases on an existing root tree the way the mesos-image pipeline does
# (DIB semantics, one apt transaction per phase at DIB's slot), without the Rust pipeline.
# A developer tool for element work; it needs root.
#
# usage: chroot-phases.sh TREE ELEMENT...
#   environment: DIB_RELEASE (bookworm), DISTRO_NAME (debian), DIB_INIT_SYSTEM (systemd),
#   ARCH (amd64), ELEMENTS_DIR (this checkout's elements/), HOOKS_DIR (a scratch dir), plus any
#   DIB_* the elements read (DIB_MESOS_REPO, DIB_MESOS_REPO_KEY, ...).
# Bind mounts (proc, sys, dev, the hooks dir) are always removed on exit.
set -eu
set -o pipefail
if [ ${DIB_DEBUG_TRACE:-0} -gt 0 ]; then set -x; fi

[ $# -ge 2 ] || { echo "usage: $0 TREE ELEMENT..." >&2; exit 2; }
TREE=$(cd "$1" && pwd)
shift
HERE=$(cd "$(dirname "$0")" && pwd)
export ELEMENTS_DIR=${ELEMENTS_DIR:-$(cd "$HERE/../../elements" && pwd)}
export DIB_RELEASE=${DIB_RELEASE:-bookworm}
export DISTRO_NAME=${DISTRO_NAME:-debian}
export DIB_INIT_SYSTEM=${DIB_INIT_SYSTEM:-systemd}
export ARCH=${ARCH:-amd64}
export TMP_HOOKS_PATH=${HOOKS_DIR:-/var/tmp/chroot-phases-hooks}
export TARGET_ROOT=$TREE TMP_MOUNT_PATH=$TREE
export IMAGE_ELEMENT
IMAGE_ELEMENT=$(python3 "$HERE/element_tool.py" resolve "$ELEMENTS_DIR" "$@")
echo "elements: $IMAGE_ELEMENT"

MOUNTS=()
cleanup() {
    local i
    for ((i=${#MOUNTS[@]}-1; i>=0; i--)); do
        umount -l "${MOUNTS[$i]}" || true
    done
}
trap cleanup EXIT
bind() {
    mkdir -p "$2"
    mount --bind "$1" "$2"
    MOUNTS+=("$2")
}

rm -rf "$TMP_HOOKS_PATH"
mkdir -p "$TMP_HOOKS_PATH"
# Merge every element's phase dirs and environment.d into one hooks dir, like DIB.
for element in $IMAGE_ELEMENT; do
    for dir in environment.d root.d extra-data.d pre-install.d install.d post-install.d \
               post-root.d finalise.d cleanup.d; do
        if [ -d "$ELEMENTS_DIR/$element/$dir" ]; then
            mkdir -p "$TMP_HOOKS_PATH/$dir"
            cp -a "$ELEMENTS_DIR/$element/$dir/." "$TMP_HOOKS_PATH/$dir/"
        fi
    done
done

# run_parts PHASE inside|outside: scripts in DIB order, environment.d sourced before each.
run_script() {
    local phase=$1 where=$2 script=$3
    echo "== $phase/$script"
    if [ "$where" = outside ]; then
        bash -c 'for f in $(ls "$0/environment.d" 2>/dev/null | sort -n); do . "$0/environment.d/$f"; done; exec "$0/$1/$2"' \
            "$TMP_HOOKS_PATH" "$phase" "$script"
    else
        chroot "$TREE" /usr/bin/env TMP_HOOKS_PATH=/tmp/in_target.d PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
            bash -c 'for f in $(ls /tmp/in_target.d/environment.d 2>/dev/null | sort -n); do . /tmp/in_target.d/environment.d/$f; done; exec /tmp/in_target.d/$0/$1' \
            "$phase" "$script"
    fi
}
install_phase_packages() {
    local phase=$1 packages
    # `when` conditions see the variables environment.d exports.
    packages=$(bash -c 'for f in $(ls "$0/environment.d" 2>/dev/null | sort -n); do . "$0/environment.d/$f"; done; shift; exec python3 "$@"' \
        "$TMP_HOOKS_PATH" - "$HERE/element_tool.py" packages "$ELEMENTS_DIR" "$phase" $IMAGE_ELEMENT)
    [ -n "$packages" ] || return 0
    echo "== $phase packages: $packages"
    chroot "$TREE" /usr/bin/env DEBIAN_FRONTEND=noninteractive \
        apt-get -y -o Dpkg::Options::=--force-confold -o Dpkg::Options::=--force-unsafe-io \
        --no-install-recommends install $packages
}
run_phase() {
    local phase=$1 where=$2 slot=${3:-} script done_packages=0
    for script in $(ls "$TMP_HOOKS_PATH/$phase" 2>/dev/null | grep -E '^[0-9A-Za-z_-]+$' | sort -n -s); do
        if [ -n "$slot" ] && [ $done_packages = 0 ] && [ "${script%%-*}" -ge "$slot" ] 2>/dev/null; then
            install_phase_packages "$phase"
            done_packages=1
        fi
        run_script "$phase" "$where" "$script"
    done
    if [ -n "$slot" ] && [ $done_packages = 0 ]; then
        install_phase_packages "$phase"
    fi
}

bind /proc "$TREE/proc"
bind /sys "$TREE/sys"
bind /dev "$TREE/dev"
bind /dev/pts "$TREE/dev/pts"
cp /etc/resolv.conf "$TREE/etc/resolv.conf"

run_phase extra-data.d outside
bind "$TMP_HOOKS_PATH" "$TREE/tmp/in_target.d"
# bin/ and static/ into the root before the inside phases.
for element in $IMAGE_ELEMENT; do
    if [ -d "$ELEMENTS_DIR/$element/bin" ]; then
        cp -a "$ELEMENTS_DIR/$element/bin/." "$TREE/usr/local/bin/"
    fi
    if [ -d "$ELEMENTS_DIR/$element/static" ]; then
        cp -a --no-preserve=ownership "$ELEMENTS_DIR/$element/static/." "$TREE/"
    fi
done
chroot "$TREE" apt-get -y update >/dev/null
run_phase pre-install.d inside 10
run_phase install.d inside 01
run_phase post-install.d inside 00
run_phase post-root.d outside
run_phase finalise.d inside
run_phase cleanup.d outside
echo "all phases passed"
