#!/usr/bin/env bash
# Benchmark: cold build, warm rebuild, rebuild after touching one post-install script, the floor
# (the same package set through plain mmdebstrap + mkfs.ext4 -d + qemu-img convert -c, the
# format our build writes: compressed qcow2, zlib, 64 KiB clusters) and mkosi (the same package
# set), all in one run on this machine, with the ratios and the image sizes. The project's
# targets (issue 11):
#   cold <= 0.9 x floor,  cold <= 0.8 x mkosi,  warm <= 0.05 x cold,  touched <= 0.25 x cold.
#
#   bench/build.sh [RECIPE]      (default debian-mesos; run as root; needs the Debian mirror)
#   BENCH_SKIP_MKOSI=1           leaves mkosi out (bench/install-deps.sh installs mkosi 24)
#
# The mirror is --mirror's default resolution: DIB_DISTRIBUTION_MIRROR, else the host's sources.
# Not a test: it prints figures; read them, don't assert on them.
set -euo pipefail

recipe=${1:-debian-mesos}
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${MESOS_IMAGE_BIN:-$here/target/release/mesos-image}
scratch=$(mktemp -d /var/tmp/mesos-image-bench.XXXXXX)
port=${BENCH_FIXTURE_PORT:-18765}

cleanup() {
    "$here/tests/fixtures/mesos-repo/serve.sh" --stop "$scratch/fixture" 2>/dev/null || true
    rm -rf "$scratch"
}
trap cleanup EXIT

[ "$(id -u)" -eq 0 ] || { echo "bench/build.sh: run as root" >&2; exit 1; }
if [ ! -x "$bin" ] || [ -z "${MESOS_IMAGE_BIN:-}" ]; then
    (cd "$here" && cargo build --release --quiet)
fi

# A private copy of the data dir, so "touching a script" never edits the checkout.
mkdir -p "$scratch/data" "$scratch/out"
cp -a "$here/elements" "$here/recipes" "$scratch/data/"
export MESOS_IMAGE_DATA_DIR=$scratch/data

extra_args=()
fixture_source=()
if [ "$recipe" = debian-mesos ]; then
    mkdir -p "$scratch/fixture"
    "$here/tests/fixtures/mesos-repo/build.sh" "$scratch/fixture" >/dev/null
    "$here/tests/fixtures/mesos-repo/serve.sh" "$scratch/fixture" "$port"
    extra_args=(--mesos-repo "http://127.0.0.1:$port bookworm main" --mesos-repo-key "$scratch/fixture/fixture-key.asc")
    fixture_source=("deb [trusted=yes] http://127.0.0.1:$port bookworm main")
fi

seconds_of() { # run a command, print its wall time in seconds
    local start end
    start=$(date +%s.%N)
    "$@" >>"$scratch/log" 2>&1 || { echo "bench: failed: $*" >&2; tail -20 "$scratch/log" >&2; exit 1; }
    end=$(date +%s.%N)
    echo "$end - $start" | bc
}

build() { "$bin" --quiet build --recipe "$recipe" --cache-dir "$scratch/cache" "${extra_args[@]}" -o "$1"; }

# The floor: every package the plan installs, in one mmdebstrap, then disk and conversion.
plan_json=$("$bin" build --recipe "$recipe" "${extra_args[@]}" --dry-run --json)
mirror=$(printf '%s' "$plan_json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["mirror"])')
release=$(printf '%s' "$plan_json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["release"])')
packages=$(printf '%s' "$plan_json" | python3 -c '
import json, sys
plan = json.load(sys.stdin)
names = sorted({p for phase in plan["packages"].values() for p in phase["install"]})
print(",".join(names))')
# The plain tool's conversion to the format our build writes (compressed qcow2, zlib, 64 KiB
# clusters, writes in order so the bytes are reproducible); our build writes it with its own
# parallel writer (src/qcow2.rs), so the floor and mkosi pay qemu-img's single-threaded price.
convert_compressed() { qemu-img convert -f raw -O qcow2 -c "$1" "$2"; }
raw_disk_of_tree() { # TREE RAW: mkfs.ext4 -d with the headroom the floor always used
    local size_kib
    size_kib=$(( $(du -sk "$1" | cut -f1) * 13 / 10 + 262144 ))
    mkfs.ext4 -q -F -d "$1" "$2" "${size_kib}k"
}
floor() {
    mmdebstrap --variant=minbase --include="$packages" --aptopt='APT::Install-Recommends "false"' \
        "$release" "$scratch/floor-tree" "deb $mirror $release main" "${fixture_source[@]}"
    raw_disk_of_tree "$scratch/floor-tree" "$scratch/floor.raw"
    convert_compressed "$scratch/floor.raw" "$scratch/floor.qcow2"
}
# The conversion alone, on the floor's disk: qemu-img in order (what the floor pays, and what we
# paid before our writer) and with out-of-order writes on every core (-W: parallel, but the
# compressed clusters land in completion order, so two runs differ byte for byte).
convert_in_order() { convert_compressed "$scratch/floor.raw" "$scratch/convert.qcow2"; }
convert_out_of_order() { qemu-img convert -f raw -O qcow2 -c -W "$scratch/floor.raw" "$scratch/convert.qcow2"; }
# mkosi 24 with the same packages: a plain directory tree (no bootloader, no kernel install
# hooks: mkosi's disk output needs systemd-repart features bookworm lacks), then the same disk
# and conversion steps as the floor. mkosi's own Debian repository list adds a debug archive and
# the security archive by fixed URL, which a mirror-only host cannot reach (apt fails on
# `bookworm-debug`); a package-manager tree holding `mkosi.sources` replaces that list with exactly
# the floor's sources.
mkosi_sources() {
    printf 'Types: deb\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
        "$mirror" "$release"
    if [ ${#fixture_source[@]} -gt 0 ]; then
        printf '\nTypes: deb\nURIs: http://127.0.0.1:%s\nSuites: bookworm\nComponents: main\nTrusted: yes\n' "$port"
    fi
}
mkosi_build() {
    mkdir -p "$scratch/mkosi-pm/etc/apt/sources.list.d"
    mkosi_sources > "$scratch/mkosi-pm/etc/apt/sources.list.d/mkosi.sources"
    mkosi --force --directory="$scratch" --package-manager-tree="$scratch/mkosi-pm" \
        --output-dir="$scratch/mkosi-out" --output=image \
        --distribution=debian --release="$release" --format=directory \
        --bootable=no --with-docs=yes --package="${packages}" build
    raw_disk_of_tree "$scratch/mkosi-out/image" "$scratch/mkosi.raw"
    convert_compressed "$scratch/mkosi.raw" "$scratch/mkosi.qcow2"
}

mib() { echo $(( $(stat -c %s "$1") / 1048576 )); }
echo "bench: recipe $recipe, $(nproc) cores, $(date -u +%FT%TZ), load: $(cut -d' ' -f1-3 /proc/loadavg)"
t_floor=$(seconds_of floor)
size_floor=$(mib "$scratch/floor.qcow2")
t_convert=$(seconds_of convert_in_order)
t_convert_w=$(seconds_of convert_out_of_order)
rm -f "$scratch/convert.qcow2"
rm -rf "$scratch/floor-tree" "$scratch/floor.raw" "$scratch/floor.qcow2"
t_mkosi=''
size_mkosi=''
if [ -z "${BENCH_SKIP_MKOSI:-}" ]; then
    if t_mkosi=$(seconds_of mkosi_build); then
        size_mkosi=$(mib "$scratch/mkosi.qcow2")
    else
        echo "bench: mkosi failed; its figures are left out (log: the lines above)" >&2
        t_mkosi=''
    fi
    rm -rf "$scratch/mkosi-out" "$scratch/mkosi.raw" "$scratch/mkosi.qcow2"
fi
t_cold=$(seconds_of build "$scratch/out/cold.qcow2")
t_warm=$(seconds_of build "$scratch/out/warm.qcow2")
touched=$(find "$scratch/data/elements" -path '*/post-install.d/*' -type f | sort | head -n 1)
echo "# touched by bench" >> "$touched"
t_touched=$(seconds_of build "$scratch/out/touched.qcow2")

size_ours=$(mib "$scratch/out/cold.qcow2")

ratio() { printf '%.2f' "$(echo "scale=4; $1 / $2" | bc)"; }
echo "touched script: ${touched#"$scratch/data/"}"
echo "load at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-34s %8s\n' "measurement" "seconds"
printf '%-34s %8.1f\n' "floor (mmdebstrap+mkfs+qemu-img -c)" "$t_floor"
[ -z "$t_mkosi" ] || printf '%-34s %8.1f\n' "mkosi (same packages, same disk)" "$t_mkosi"
printf '%-34s %8.1f   %sx floor (target <= 0.9)\n' "cold build" "$t_cold" "$(ratio "$t_cold" "$t_floor")"
[ -z "$t_mkosi" ] || printf '%-34s %8s   %sx mkosi (target <= 0.8)\n' "" "" "$(ratio "$t_cold" "$t_mkosi")"
printf '%-34s %8.1f   %sx cold (target <= 0.05)\n' "warm rebuild, nothing changed" "$t_warm" "$(ratio "$t_warm" "$t_cold")"
printf '%-34s %8.1f   %sx cold (target <= 0.25)\n' "rebuild, one post-install touched" "$t_touched" "$(ratio "$t_touched" "$t_cold")"
printf '%-34s %8s\n' "qcow2 size" "MiB"
printf '%-34s %8s\n' "ours" "$size_ours"
printf '%-34s %8s\n' "floor, compressed like ours" "$size_floor"
[ -z "$size_mkosi" ] || printf '%-34s %8s\n' "mkosi, compressed like ours" "$size_mkosi"
echo "conversion of the floor's disk: qemu-img -c $(printf %.1f "$t_convert") s; with -W (parallel, not reproducible) $(printf %.1f "$t_convert_w") s; ours: the convert step below"
echo "per-step times of the cold build:"
python3 -c '
import json, sys
stages = json.load(open(sys.argv[1]))["run"]["stages"]
for s in sorted(stages, key=lambda s: -s["seconds"])[:12]:
    print("  %-40s %7.1f s" % (s["stage"][:40], s["seconds"]))' "$scratch/out/cold.qcow2.manifest.json"
