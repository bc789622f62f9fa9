#!/bin/sh
# Entrypoint of the mesos-image container: `mesos-image "$@"`, or the default recipe into /output
# when no arguments are given; afterwards the files the build wrote are handed to HOST_UID:HOST_GID.
set -eu

die() {
    echo "mesos-image container: $*" >&2
    exit 2
}

if [ $# -eq 0 ]; then
    set -- build -o /output/ubuntu-mesos.qcow2
fi

wants_help() {
    for arg in "$@"; do
        case "$arg" in -h | --help) return 0 ;; esac
    done
    return 1
}

# A build mounts filesystems and chroots in namespaces of its own: as root holding CAP_SYS_ADMIN
# directly, else (no added capability) inside a user namespace mapping ids 0-65535 onto
# themselves, which Docker's default seccomp profile and masked /proc paths refuse. Without
# either it would fail half-way with an EPERM from some mount, so say what to do instead.
if [ "$1" = build ] && ! wants_help "$@"; then
    if [ "$(id -u)" != 0 ]; then
        die "must run as root (the build maps the container's ids 0-65535 into its namespace); drop --user and pass -e HOST_UID=\$(id -u) -e HOST_GID=\$(id -g) to own the outputs"
    fi
    if ! unshare --mount --pid --fork true 2>/dev/null &&
        ! unshare --user --map-root-user --mount --pid --fork --mount-proc true 2>/dev/null; then
        die "cannot create user, mount and PID namespaces; run with --security-opt seccomp=unconfined --security-opt systempaths=unconfined (README, Least privilege)"
    fi
fi

if [ -z "${HOST_UID:-}" ]; then
    exec mesos-image "$@"
fi

case "$HOST_UID:${HOST_GID:-}" in
    *[!0-9:]*) die "HOST_UID and HOST_GID must be numeric ids, got '$HOST_UID' and '${HOST_GID:-}'" ;;
esac

# The output named by -o/--output (last one wins, as with clap); without one, the working directory.
output=
expect_output=
for arg in "$@"; do
    if [ -n "$expect_output" ]; then
        output=$arg
        expect_output=
        continue
    fi
    case "$arg" in
        -o | --output) expect_output=1 ;;
        --output=*) output=${arg#--output=} ;;
        -o?*) output=${arg#-o} ;;
    esac
done

if [ -n "$output" ]; then
    dir=$(dirname -- "$output")
    base=$(basename -- "$output")
    stem=${base%%.*}
else
    dir=.
    stem=
fi

# Only files this run created or rewrote are chowned: the output directory is often a shared one
# such as the host's /tmp, whose other files must keep their owners. Entries are told apart by
# inode and modification time, recorded before the run: a timestamp marker is not enough, since a
# file written within the same clock tick as the marker is not "newer" than it. (Outputs are
# linked into place as new inodes, so a rewritten output always differs.)
snapshot() {
    if [ -d "$dir" ]; then
        find "$dir" -mindepth 1 -maxdepth 1 -name "$stem*" -printf '%i %T@ %f\n' | sort
    fi
}
before=$(mktemp /tmp/mesos-image-before.XXXXXX)
snapshot > "$before"
status=0
mesos-image "$@" || status=$?

snapshot | comm -13 "$before" - | while read -r _inode _mtime name; do
    if [ "$(stat -c %u -- "$dir/$name")" = 0 ]; then
        chown -R "$HOST_UID:${HOST_GID:-$HOST_UID}" -- "$dir/$name"
    fi
done
rm -f "$before"
exit "$status"
