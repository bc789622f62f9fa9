#!/usr/bin/env bash
# Upload throughput and peak memory of `mesos-image upload` vs `curl -T` to the same Glance, and
# of one target vs two (RegionOne and RegionTwo, each its own Glance), the file read once.
# The image carries a manifest as a build writes it (its md5, sha256 and sha512 recorded, here
# by md5sum/sha256sum/sha512sum), so upload sends it without hashing, as it sends what users
# build; `bare` uploads the same data under a name without a manifest (any qcow2/raw a user
# brings), hashed on the way.
#
# Usage: bench/upload.sh [SIZE]        SIZE for head -c, default 2G (random data: nothing compresses)
#   REPEATS  rounds (default 3); each round runs curl, one target, one target without the
#            manifest and two targets in turn, so a machine whose load changes affects all alike;
#            medians are reported
#   BIN      the mesos-image binary (default: target/release/mesos-image, built if missing)
#   WORKDIR  scratch space for the image and Glance's store (default /var/tmp/mesos-image-bench-upload)
#   SAME_GROUP=1  run the clients in the bench's own session, with Glance (see below)
# Each client run (curl and ours alike) starts in a session of its own (setsid): on a shared host
# the kernel's autogroup scheduling then gives it its own CPU share, as a client on another host
# than Glance would have. In Glance's session, the client's hashing where it hashes (md5 + sha256
# + sha512, ~4 ns a byte) would come out of Glance's share, which curl (no hashing) does not touch.
# Starts its own Keystone + Glance (tests/openstack/services.sh) on ports apart from the tests',
# and stops them on exit. Prints one line per run, the medians, then the ratios issue #22 asks
# for: one target >= 0.9x curl's throughput (the PUT alone, and the whole command: token, checks,
# record, PUT, verification and properties; with and without the manifest), two targets <= 1.3x
# one's time, the file read once (the bytes the tool says it read), max RSS < 64 MiB.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${1:-2G}
REPEATS=${REPEATS:-3}
WORKDIR=${WORKDIR:-/var/tmp/mesos-image-bench-upload}
BIN=${BIN:-}
if [ -z "$BIN" ]; then
  BIN=target/release/mesos-image
  [ -x "$BIN" ] || cargo build --release --quiet
fi
[ -x "$BIN" ] || { echo "bench: no binary at $BIN" >&2; exit 1; }

export OSDIR=$WORKDIR/os KS_PORT=25740 GL_PORT=29740 GL2_PORT=29741 IMAGE TOK
GL=http://127.0.0.1:$GL_PORT
GL2=http://127.0.0.1:$GL2_PORT
cleanup() { tests/openstack/services.sh stop || true; rm -rf "$WORKDIR"; }
trap cleanup EXIT
mkdir -p "$WORKDIR"
tests/openstack/services.sh start > "$WORKDIR/services.log" 2>&1 || { cat "$WORKDIR/services.log" >&2; exit 1; }
# shellcheck disable=SC1091
. "$OSDIR/openrc"

IMAGE=$WORKDIR/bench.raw
head -c "$SIZE" /dev/urandom > "$IMAGE"
BYTES=$(stat -c %s "$IMAGE")
# The manifest a build writes beside its image (src/manifest.rs): what upload reads of it is the
# output entry of the file, with its size and digests.
digest() { "$1" "$IMAGE" | cut -d' ' -f1; }
cat > "$IMAGE.manifest.json" <<JSON
{"tool_version": "bench", "recipe": null, "distro": "debian", "release": "bookworm", "arch": "amd64",
 "elements": [], "packages": [], "cache_key": "bench",
 "outputs": [{"file": "bench.raw", "format": "raw", "size": $BYTES, "sha256": "$(digest sha256sum)",
              "md5": "$(digest md5sum)", "sha512": "$(digest sha512sum)"}]}
JSON
# The same data (a second name for the same inode) without a manifest.
BARE=$WORKDIR/bench-bare.raw
ln "$IMAGE" "$BARE"
# Both clients read the file from the page cache, not the disk: warm it once.
cat "$IMAGE" > /dev/null
CLIENT=(setsid -w)
[ -n "${SAME_GROUP:-}" ] && CLIENT=()
RESULTS=$WORKDIR/results   # label seconds put_seconds rss_kib bytes_read cpu_seconds

token() {
  curl -sf -D - -o /dev/null -X POST "$OS_AUTH_URL/auth/tokens" -H 'Content-Type: application/json' -d \
    "{\"auth\":{\"identity\":{\"methods\":[\"password\"],\"password\":{\"user\":{\"name\":\"$OS_USERNAME\",\"domain\":{\"id\":\"default\"},\"password\":\"$OS_PASSWORD\"}}},\"scope\":{\"project\":{\"name\":\"$OS_PROJECT_NAME\",\"domain\":{\"id\":\"default\"}}}}}" \
    | awk 'tolower($1)=="x-subject-token:"{print $2}' | tr -d '\r'
}

# "<seconds> <max RSS KiB> <CPU seconds, user + system>" from /usr/bin/time -v output.
measure() {
  awk -F': ' '/Elapsed \(wall clock\)/{n=split($2,t,":"); s=(n==3)?t[1]*3600+t[2]*60+t[3]:t[1]*60+t[2]}
              /User time|System time/{cpu+=$2}
              /Maximum resident set size/{rss=$2} END{print s, rss, cpu}' "$1"
}

# The tool's own log: the longest PUT's seconds, and the bytes it read from the file in all.
put_seconds() { grep -o 'bytes sent in [0-9.]* s' "$1" | awk '{if ($4>m) m=$4} END{print m+0}'; }
bytes_read() { grep -o '[0-9]* bytes of image data read in all' "$1" | awk '{s+=$1} END{print s+0}'; }

delete_image() { curl -sf -X DELETE "$1/v2/images/$2" -H "X-Auth-Token: $TOK" > /dev/null || true; }

new_image() { # glance name: the id of a new record
  curl -sf -X POST "$1/v2/images" -H "X-Auth-Token: $TOK" -H 'Content-Type: application/json' \
    -d "{\"name\":\"$2\",\"disk_format\":\"raw\",\"container_format\":\"bare\"}" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])'
}

put() { # glance id
  curl -sf -X PUT -T "$IMAGE" "$1/v2/images/$2/file" -H "X-Auth-Token: $TOK" -H 'Content-Type: application/octet-stream'
}
export -f put

run_curl() { # round
  TOK=$(token)
  local id
  id=$(new_image "$GL" "bench-curl-$1")
  "${CLIENT[@]}" /usr/bin/time -v -o "$WORKDIR/curl.time" bash -c "put $GL $id"
  read -r s rss cpu < <(measure "$WORKDIR/curl.time")
  echo "curl $s $s $rss $BYTES $cpu" >> "$RESULTS"
  delete_image "$GL" "$id"
}

# The same PUT to both Glances at once, two curls in one session as ours is one process: what two
# targets cost this host whatever the client (each localhost Glance needs about a core).
run_curl2() { # round
  TOK=$(token)
  local id id2
  id=$(new_image "$GL" "bench-curl2-$1")
  id2=$(new_image "$GL2" "bench-curl2-$1")
  "${CLIENT[@]}" /usr/bin/time -v -o "$WORKDIR/curl.time" bash -c "put $GL $id & a=\$!; put $GL2 $id2 & b=\$!; wait \$a && wait \$b"
  read -r s rss cpu < <(measure "$WORKDIR/curl.time")
  echo "curl2 $s $s $rss $((2 * BYTES)) $cpu" >> "$RESULTS"
  delete_image "$GL" "$id"
  delete_image "$GL2" "$id2"
}

run_tool() { # label round image region...
  local label=$1 round=$2 image=$3; shift 3
  local regions=()
  for region in "$@"; do regions+=(--os-region-name "$region"); done
  RUST_LOG=info "${CLIENT[@]}" /usr/bin/time -v -o "$WORKDIR/mi.time" "$BIN" -q upload --format json --disk-format raw \
    --name "bench-$label-$round" "${regions[@]}" "$image" > "$WORKDIR/mi.out" 2> "$WORKDIR/mi.log" \
    || { cat "$WORKDIR/mi.log" >&2; exit 1; }
  read -r s rss cpu < <(measure "$WORKDIR/mi.time")
  echo "$label $s $(put_seconds "$WORKDIR/mi.log") $rss $(bytes_read "$WORKDIR/mi.log") $cpu" >> "$RESULTS"
  TOK=$(token)
  # One target prints its image record, several a list of entries with theirs.
  python3 -c '
import json, sys
out = json.load(open(sys.argv[1]))
for entry in (out if isinstance(out, list) else [{"target": "-/RegionOne", "image": out}]):
    print(entry["target"].split("/")[-1], entry["image"]["id"])' "$WORKDIR/mi.out" |
    while read -r region id; do
      if [ "$region" = RegionTwo ]; then delete_image "$GL2" "$id"; else delete_image "$GL" "$id"; fi
    done
}

report() { # label seconds put_seconds rss_kib bytes_read cpu_seconds
  awk -v l="$1" -v s="$2" -v p="$3" -v r="$4" -v d="$5" -v c="$6" -v b="$BYTES" 'BEGIN{
    printf "%-5s %6.1f s %6.1f MiB/s  PUT %6.1f s %6.1f MiB/s  CPU %5.1f s  max RSS %5.1f MiB  read %.2fx\n",
      l, s, b/1048576/s, p, b/1048576/p, c, r/1024, d/b }'
}

: > "$RESULTS"
echo "image: $BYTES bytes of random data; binary: $BIN; $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg);" \
  "$REPEATS rounds, interleaved; clients ${CLIENT[*]:-in the session of Glance}"
for round in $(seq 1 "$REPEATS"); do
  run_curl "$round"
  run_tool one "$round" "$IMAGE" RegionOne
  run_tool bare "$round" "$BARE" RegionOne
  run_tool two "$round" "$IMAGE" RegionOne RegionTwo
  run_curl2 "$round"
  for label in curl one bare two curl2; do
    # shellcheck disable=SC2046
    report $(grep "^$label " "$RESULTS" | tail -1)
  done
done

# Medians of each column per label (the middle run; the upper middle of an even count).
median() { grep "^$1 " "$RESULTS" | awk -v c="$2" '{print $c}' | sort -g | awk '{v[NR]=$1} END{print v[int(NR/2)+1]}'; }
echo "medians (one, two: the image with its manifest; bare: without, hashed on the way):"
for label in curl one bare two curl2; do
  report "$label" "$(median $label 2)" "$(median $label 3)" "$(median $label 4)" "$(median $label 5)" "$(median $label 6)"
done
max_rss=$(awk '$1!~/^curl/{if ($4>m) m=$4} END{print m}' "$RESULTS")
# Ratios within each round (its three runs are neighbours in time), then their median and range.
awk -v b="$BYTES" -v rss="$max_rss" '
  { n[$1]++; secs[$1, n[$1]] = $2; put[$1, n[$1]] = $3; bytes[$1, n[$1]] = $5 }
  function line(what, want, k,   i, j, t, v, list) {
    for (i = 1; i <= k; i++) v[i] = r[i]
    for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
    for (i = 1; i <= k; i++) list = list sprintf(" %.2f", r[i])
    printf "%-44s %.2fx (rounds:%s; want %s)\n", what, v[int((k + 1) / 2)], list, want
  }
  END {
    k = n["curl"]
    for (i = 1; i <= k; i++) r[i] = put["curl", i] / put["one", i]; line("1 target / curl throughput, the PUT:", ">= 0.90", k)
    for (i = 1; i <= k; i++) r[i] = secs["curl", i] / secs["one", i]; line("1 target / curl throughput, whole command:", "-", k)
    for (i = 1; i <= k; i++) r[i] = put["curl", i] / put["bare", i]; line("no manifest (hashing) / curl, the PUT:", "-", k)
    for (i = 1; i <= k; i++) r[i] = secs["curl", i] / secs["bare", i]; line("no manifest (hashing) / curl, whole command:", "-", k)
    for (i = 1; i <= k; i++) r[i] = secs["two", i] / secs["one", i]; line("2 targets / 1 target time:", "<= 1.30", k)
    for (i = 1; i <= k; i++) r[i] = secs["curl2", i] / secs["curl", i]; line("the host: 2 curls at once / 1 curl time:", "-", k)
    for (i = 1; i <= k; i++) r[i] = secs["two", i] / secs["curl2", i]; line("2 targets / 2 curls at once, time:", "-", k)
    for (i = 1; i <= k; i++) r[i] = put["two", i] / put["curl2", i]; line("2 targets / 2 curls at once, the PUTs:", "-", k)
    for (i = 1; i <= k; i++) r[i] = bytes["two", i] / b; line("2 targets: the file read", "1.00", k)
    printf "%-44s %.1f MiB (want < 64)\n", "max RSS of every run of ours:", rss / 1024
  }' "$RESULTS"
