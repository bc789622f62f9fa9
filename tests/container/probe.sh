#!/bin/sh
# Privilege probe, run INSIDE the mesos-image container as root: performs the kernel operations
# a build performs and prints the first one the container's privileges refuse. Exit 0 when all
# work. As the build does (src/sandbox/), it takes one of two paths:
#   direct:   root holding CAP_SYS_ADMIN makes private mount + PID namespaces itself;
#   userns:   without it, a user namespace mapping ids 0-65535 onto themselves (written from
#             outside, as the build's helper does), then the mount + PID namespaces inside it.
# Then, inside: tmpfs, bind mounts, proc (new PID namespace), sysfs or /sys bound recursively,
# devpts, chroot, chown to another id. Needs no loop devices and no device-mapper.
set -u

fail() {
    echo "probe: $1: FAILED: $(printf '%s' "$2" | head -n 1)"
    exit 1
}

# The operations inside the namespaces, as one script for `sh -c`.
inner='
set -u
step() { name=$1; shift; if ! err=$("$@" 2>&1); then echo "probe: $name: FAILED: $(printf "%s" "$err" | head -n 1)"; exit 1; fi; }
root=$(mktemp -d /tmp/probe-root.XXXXXX)
step "mount tmpfs" mount -t tmpfs -o mode=0755 probe "$root"
mkdir -p "$root/usr" "$root/proc" "$root/sys" "$root/dev/pts" "$root/tmp" "$root/etc"
step "bind mount" mount --bind /usr "$root/usr"
for d in bin sbin lib lib64; do [ -e "/$d" ] && ln -s "usr/$d" "$root/$d"; done
step "mount proc (new PID namespace)" mount -t proc proc "$root/proc"
if ! mount -t sysfs -o ro sysfs "$root/sys" 2>/dev/null; then
    step "bind /sys recursively" mount --rbind /sys "$root/sys"
fi
step "mount devpts" mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5 devpts "$root/dev/pts"
touch "$root/dev/null"
step "bind /dev/null" mount --bind /dev/null "$root/dev/null"
step "chroot" chroot "$root" /bin/true
step "chroot sees its own PID namespace" chroot "$root" /bin/sh -c "test \"\$(ls /proc | grep -c \"^[0-9]\")\" -lt 10"
step "write device node in chroot" chroot "$root" /bin/sh -c "echo x > /dev/null"
mkdir "$root/tmp/owned"
step "chown to another id" chown 42:42 "$root/tmp/owned"
# Lazily, as the build does when a mount is busy: a recursive bind of /sys in a user namespace
# carries locked submounts that only go with their parent.
step "unmount the tree" umount --lazy "$root"
echo "probe: all operations permitted"
'

if unshare --mount --pid --fork --propagation private true 2>/dev/null; then
    exec unshare --mount --pid --fork --propagation private sh -c "$inner"
fi

# The user-namespace path: a child unshares its user namespace and waits; this process (root in
# the parent namespace) writes the identity maps; then the child goes on.
go=$(mktemp -u /tmp/probe-go.XXXXXX)
mkfifo "$go"
unshare --user sh -c 'read x < "$1"; [ "$x" = go ] || exit 1; exec unshare --mount --pid --fork --propagation private sh -c "$2"' probe "$go" "$inner" &
child=$!
mine=$(readlink /proc/self/ns/user)
theirs=
for _ in $(seq 50); do
    theirs=$(readlink "/proc/$child/ns/user" 2>/dev/null) || theirs=
    if [ -n "$theirs" ] && [ "$theirs" != "$mine" ]; then break; fi
    kill -0 "$child" 2>/dev/null || break
    sleep 0.1
done
if [ -z "$theirs" ] || [ "$theirs" = "$mine" ]; then
    wait "$child" 2>/dev/null
    fail "unshare user namespace" "refused (no CAP_SYS_ADMIN and a seccomp profile that blocks it)"
fi
for map in uid_map gid_map; do
    if ! err=$(echo "0 0 65536" 2>&1 > "/proc/$child/$map"); then
        echo stop > "$go"
        fail "write $map" "$err"
    fi
done
echo go > "$go"
wait "$child"
status=$?
rm -f "$go"
exit "$status"
