#!/usr/bin/env bash
# Upload throughput and peak memory of `mesos-image upload` vs `curl -T` to the same Glance, and
# of one target vs two (RegionOne and RegionTwo, each its own Glance), the file read once.
#
# Usage: bench/upload.sh [SIZE]        SIZE for head -c, default 2G (random data: nothing compresses)
#   BIN      the mesos-image binary (default: target/release/mesos-image, else target/debug/)
#   WORKDIR  scratch space for the image and Glance's store (default /var/tmp/mesos-image-bench-upload)
# Starts its own Keystone + Glance (tests/openstack/services.sh) on ports apart from the tests',
# and stops them on exit. Prints one line per run (seconds, MiB/s, max RSS), then the ratios
# issue #22 asks for: one target >= 0.9x curl's throughput, two targets <= 1.3x one's time.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${1:-2G}
WORKDIR=${WORKDIR:-/var/tmp/mesos-image-bench-upload}
BIN=${BIN:-}
if [ -z "$BIN" ]; then
  if [ -x target/release/mesos-image ]; then BIN=target/release/mesos-image; else BIN=target/debug/mesos-image; fi
fi
[ -x "$BIN" ] || { echo "bench: build first (cargo build)" >&2; exit 1; }

export OSDIR=$WORKDIR/os KS_PORT=25740 GL_PORT=29740 GL2_PORT=29741
GL=http://127.0.0.1:$GL_PORT
cleanup() { tests/openstack/services.sh stop || true; rm -rf "$WORKDIR"; }
trap cleanup EXIT
mkdir -p "$WORKDIR"
tests/openstack/services.sh start > "$WORKDIR/services.log" 2>&1 || { cat "$WORKDIR/services.log" >&2; exit 1; }
# shellcheck disable=SC1091
. "$OSDIR/openrc"

IMAGE=$WORKDIR/bench.raw
head -c "$SIZE" /dev/urandom > "$IMAGE"
BYTES=$(stat -c %s "$IMAGE")
# Both clients read the file from the page cache, not the disk: warm it once.
cat "$IMAGE" > /dev/null

token() {
  curl -sf -D - -o /dev/null -X POST "$OS_AUTH_URL/auth/tokens" -H 'Content-Type: application/json' -d \
    "{\"auth\":{\"identity\":{\"methods\":[\"password\"],\"password\":{\"user\":{\"name\":\"$OS_USERNAME\",\"domain\":{\"id\":\"default\"},\"password\":\"$OS_PASSWORD\"}}},\"scope\":{\"project\":{\"name\":\"$OS_PROJECT_NAME\",\"domain\":{\"id\":\"default\"}}}}}" \
    | awk 'tolower($1)=="x-subject-token:"{print $2}' | tr -d '\r'
}

# "<seconds> <max RSS KiB>" from /usr/bin/time -v output.
measure() {
  awk -F': ' '/Elapsed \(wall clock\)/{n=split($2,t,":"); s=(n==3)?t[1]*3600+t[2]*60+t[3]:t[1]*60+t[2]}
              /Maximum resident set size/{rss=$2} END{print s, rss}' "$1"
}

report() { # label seconds rss_kib
  awk -v l="$1" -v s="$2" -v r="$3" -v b="$BYTES" \
    'BEGIN{printf "%-22s %8.1f s  %8.1f MiB/s  max RSS %7.1f MiB\n", l, s, b/1048576/s, r/1024}'
}

delete_image() { curl -sf -X DELETE "$GL/v2/images/$1" -H "X-Auth-Token: $TOK" > /dev/null; }

# --- curl -T: create the record, then PUT the file (no hashing, no verification) ---
TOK=$(token)
ID=$(curl -sf -X POST "$GL/v2/images" -H "X-Auth-Token: $TOK" -H 'Content-Type: application/json' \
  -d '{"name":"bench-curl","disk_format":"raw","container_format":"bare"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
/usr/bin/time -v -o "$WORKDIR/curl.time" curl -sf -X PUT -T "$IMAGE" "$GL/v2/images/$ID/file" \
  -H "X-Auth-Token: $TOK" -H 'Content-Type: application/octet-stream'
read -r CURL_S CURL_RSS < <(measure "$WORKDIR/curl.time")
delete_image "$ID"

# --- mesos-image upload: auth, clash check, create, stream + hash, wait active, verify ---
/usr/bin/time -v -o "$WORKDIR/mi.time" "$BIN" -q upload --format json --disk-format raw --name bench-one \
  --os-region-name RegionOne "$IMAGE" > "$WORKDIR/mi.out"
read -r MI_S MI_RSS < <(measure "$WORKDIR/mi.time")

# --- the same to two regions at once (the file read once, both Glances on this host) ---
/usr/bin/time -v -o "$WORKDIR/mi2.time" "$BIN" -q upload --format json --disk-format raw --name bench-two \
  --os-region-name RegionOne --os-region-name RegionTwo "$IMAGE" > "$WORKDIR/mi2.out"
read -r MI2_S MI2_RSS < <(measure "$WORKDIR/mi2.time")

echo "image: $BYTES bytes of random data; binary: $BIN; $(nproc) cores"
report "curl -T" "$CURL_S" "$CURL_RSS"
report "mesos-image, 1 target" "$MI_S" "$MI_RSS"
report "mesos-image, 2 targets" "$MI2_S" "$MI2_RSS"
awk -v c="$CURL_S" -v one="$MI_S" -v two="$MI2_S" 'BEGIN{
  printf "1 target / curl throughput: %.2fx (want >= 0.90)\n", c/one
  printf "2 targets / 1 target time:  %.2fx (want <= 1.30)\n", two/one }'
