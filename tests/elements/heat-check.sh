#!/bin/bash
# Run `mesos-image test`'s heat-deployment check protocol inside a built tree (chroot):
# a `script` deployment in os-collect-config's local-data must be applied and its result
# written. Needs root; bind mounts are removed on exit.
# usage: heat-check.sh TREE
set -eu
set -o pipefail
if [ ${DIB_DEBUG_TRACE:-0} -gt 0 ]; then set -x; fi
TREE=$(cd "${1:?usage: $0 TREE}" && pwd)
MOUNTS=()
cleanup() {
    local i
    for ((i=${#MOUNTS[@]}-1; i>=0; i--)); do umount -l "${MOUNTS[$i]}" || true; done
}
trap cleanup EXIT
for m in proc sys dev; do mount --bind "/$m" "$TREE/$m"; MOUNTS+=("$TREE/$m"); done

cat > "$TREE/var/lib/os-collect-config/local-data/mesos-image-check.json" <<'JSON'
{"deployments":[{"id":"mesos-image-check","name":"mesos-image-check","group":"script","inputs":[],"outputs":[],"options":{},"config":"#!/bin/sh\necho applied > /tmp/mesos-image-check-result\n"}]}
JSON
rm -f "$TREE/tmp/mesos-image-check-result"
for attempt in 1 2 3 4 5; do
    rc=0
    chroot "$TREE" os-collect-config --one-time --debug || rc=$?
    [ $rc -eq 11 ] || break
    sleep 2
done
echo "os-collect-config exit: $rc"
grep -q applied "$TREE/tmp/mesos-image-check-result"
test -f "$TREE/var/lib/heat-config/deployed/mesos-image-check.notify.json"
cat "$TREE/var/lib/heat-config/deployed/mesos-image-check.notify.json"
echo
echo "heat-deployment check passed"
