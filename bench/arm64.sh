#!/usr/bin/env bash
# Benchmark: arm64 cross build against amd64 on an amd64 host (issue 21's target: a cold arm64
# build within 3x the amd64 one, a warm rebuild as fast). One after the other, each cold build in
# a fresh cache dir whose package cache is a hardlinked copy of a warm one (filled by a first
# build of each architecture), so the mirror is not what is measured; then a warm rebuild of
# each. With `acct` installed, CPU seconds of each build come from BSD process accounting, split
# into native and emulated (qemu-user reserves the guest's address space, so an emulated process
# averages >= ~166 MB even for `true`; the native ones of a build stay below, zstd and the tool
# aside), and the emulated seconds by the innermost of a few known programs.
#
#   bench/arm64.sh [RECIPE]     (default debian-base; run as root; needs the mirror and binfmt)
#   BENCH_ARCHES="arm64 amd64"  order of the builds (default "amd64 arm64")
#
# Not a test: it prints figures; read them, don't assert on them.
set -euo pipefail

recipe=${1:-debian-base}
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${MESOS_IMAGE_BIN:-$here/target/release/mesos-image}
work=${BENCH_DIR:-/var/tmp/mesos-image-bench-arm64}
arches=${BENCH_ARCHES:-amd64 arm64}

[ "$(id -u)" -eq 0 ] || { echo "bench/arm64.sh: run as root" >&2; exit 1; }
[ -n "${MESOS_IMAGE_BIN:-}" ] || (cd "$here" && cargo build --release --quiet)
mkdir -p "$work"

build() { # build ARCH CACHE OUT
    "$bin" --quiet build -a "$1" --recipe "$recipe" --cache-dir "$2" -o "$3" >>"$work/log" 2>&1 ||
        { echo "bench: build -a $1 failed (see $work/log)" >&2; exit 1; }
}
seconds() { local s; s=$(date +%s.%N); "$@"; echo "$(date +%s.%N) - $s" | bc; }

accounting=
if command -v accton >/dev/null; then
    accounting=$work/pacct
    : >"$accounting"
    accton "$accounting" >/dev/null
    trap 'accton off >/dev/null' EXIT
fi

for arch in $arches; do
    warm=$work/warm-$arch
    [ -d "$warm/apt/archives" ] || build "$arch" "$warm" "$work/warm-$arch.qcow2"
done
for arch in $arches; do
    run=$work/run-$arch
    rm -rf "$run"
    mkdir -p "$run/cache/apt/archives"
    cp -al "$work/warm-$arch/apt/archives/." "$run/cache/apt/archives/"
    rm -f "$run/cache/apt/archives/lock" "$run/cache/apt/archives/.mesos-image.lock"
    echo "$arch: start $(date -u +%T), load $(cut -d' ' -f1-3 /proc/loadavg)"
    cold=$(seconds build "$arch" "$run/cache" "$run/img.qcow2")
    echo "$arch: cold $cold s, load $(cut -d' ' -f1-3 /proc/loadavg)"
    warm=$(seconds build "$arch" "$run/cache" "$run/warm.qcow2")
    echo "$arch: warm $warm s"
    python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); print("  stages:", ", ".join("%s %.0f s" % (s["stage"], s["seconds"]) for s in m["run"]["stages"] if s["seconds"] >= 1))' "$run/img.qcow2.manifest.json"
done
[ -n "$accounting" ] || exit 0
accton off >/dev/null
python3 - "$accounting" "$bin" <<'EOF'
import collections, os, struct, sys
comp = lambda v: (v & 0x1fff) << (3 * ((v >> 13) & 7))
data = open(sys.argv[1], "rb").read()
recs = []
for off in range(0, len(data) - 63, 64):
    f = struct.unpack("<BBHIIIIIIfHHHHHHHH", data[off:off + 48])
    comm = data[off + 48:off + 64].split(b"\0")[0].decode(errors="replace")
    recs.append(dict(pid=f[6], ppid=f[7], start=f[8], end=f[8] + f[9] / 100,
                     cpu=(comp(f[10]) + comp(f[11])) / 100, mem=comp(f[12]), comm=comm))
by_pid = collections.defaultdict(list)
for r in recs:
    by_pid[r["pid"]].append(r)
def parent(r):  # the record of the parent alive when r ran (pids are reused)
    return next((p for p in by_pid.get(r["ppid"], []) if p is not r and p["start"] <= r["start"] + 1 and p["end"] + 1 >= r["end"]), None)
def chain(r):
    out = [r]
    while len(out) < 100 and (p := parent(out[-1])):
        out.append(p)
    return out
tool = os.path.basename(sys.argv[2])[:15]
named = ["mkinitramfs", "update-ca-certi", "deb-systemd-hel", "python3.11", "py3compile", "dpkg-deb", "ld-linux-x86-64", "localedef", "mmdebstrap", "apt-get"]
# update-initramfs's own processes count with the mkinitramfs it runs.
named.append("update-initramf")
for root in [r for r in recs if r["comm"] == tool and (p := parent(r)) and p["comm"] != tool and r["end"] - r["start"] > 30]:
    native = emulated = 0.0
    by_name, by_comm, count = collections.Counter(), collections.Counter(), collections.Counter()
    for r in recs:
        c = chain(r)
        if root not in c:
            continue
        if r["mem"] >= 166000 and r["comm"] != "zstd" and r["comm"] != tool:
            emulated += r["cpu"]
            group = next((x["comm"] for x in c if x["comm"] in named), "other")
            by_name["mkinitramfs" if group == "update-initramf" else group] += r["cpu"]
            by_comm[r["comm"]] += r["cpu"]
            count[r["comm"]] += 1
        else:
            native += r["cpu"]
    print("build of %.0f s: CPU native %.0f s + emulated %.0f s" % (root["end"] - root["start"], native, emulated))
    if emulated:
        print("  emulated:", ", ".join("%s %.0f s" % kv for kv in by_name.most_common()))
        print("  emulated programs (CPU s / processes):",
              ", ".join("%s %.1f/%d" % (k, v, count[k]) for k, v in by_comm.most_common(15)))
EOF
