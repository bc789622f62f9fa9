#!/bin/sh
# Privilege probe, run INSIDE the mesos-image container: performs the kernel operations a build
# performs (private mount + PID namespace, tmpfs, bind mounts, proc/sysfs/devpts in a chroot,
# device nodes, chroot) and prints the first one the container's privileges refuse.
# Exit 0 when all work. Needs no loop devices and no device-mapper, like the build itself.
set -u

step() {
    name=$1
    shift
    if ! err=$("$@" 2>&1); then
        echo "probe: $name: FAILED: $(printf '%s' "$err" | tail -n 1)"
        exit 1
    fi
}

step "unshare mount+pid namespaces" unshare --mount --pid --fork --propagation private true

# Everything below runs inside the new namespaces, as the build's sandbox does.
exec unshare --mount --pid --fork --propagation private sh -s <<'INNER'
set -u
step() {
    name=$1
    shift
    if ! err=$("$@" 2>&1); then
        echo "probe: $name: FAILED: $(printf '%s' "$err" | tail -n 1)"
        exit 1
    fi
}
root=$(mktemp -d /tmp/probe-root.XXXXXX)
step "mount tmpfs" mount -t tmpfs -o mode=0755 probe "$root"
mkdir -p "$root/usr" "$root/proc" "$root/sys" "$root/dev/pts" "$root/tmp" "$root/etc"
# A usable tree without copying: the container's /usr, read-only, plus merged-/usr links.
step "bind mount" mount --bind /usr "$root/usr"
step "remount bind read-only" mount -o remount,bind,ro "$root/usr"
for d in bin sbin lib lib64; do [ -e "/$d" ] && ln -s "usr/$d" "$root/$d"; done
step "mount proc (new PID namespace)" mount -t proc proc "$root/proc"
step "mount sysfs" mount -t sysfs -o ro sysfs "$root/sys"
step "mount devpts" mount -t devpts -o newinstance,ptmxmode=0666 devpts "$root/dev/pts"
step "mknod /dev/null" mknod -m 0666 "$root/dev/null" c 1 3
step "mknod /dev/urandom" mknod -m 0666 "$root/dev/urandom" c 1 9
step "chroot" chroot "$root" /bin/true
step "chroot sees its own PID namespace" chroot "$root" /bin/sh -c 'test "$(ls /proc | grep -c "^[0-9]")" -lt 10'
step "write device node in chroot" chroot "$root" /bin/sh -c 'echo x > /dev/null && head -c 16 /dev/urandom > /dev/null'
step "tmpfs inside chroot" mount -t tmpfs tmp "$root/tmp"
step "recursive unmount" umount -R "$root"
echo "probe: all operations permitted"
INNER
