#!/usr/bin/env bash
# Benchmark: cold build, warm rebuild, rebuild after touching one post-install script, and the
# floor (the same package set through plain mmdebstrap + mkfs.ext4 -d + qemu-img convert), all in
# one run on this machine, with the ratios the project targets:
#   cold <= 1.3 x floor,  warm <= 0.15 x cold,  touched <= 0.35 x cold.
#
#   bench/build.sh [RECIPE]      (default debian-mesos; run as root; needs the Debian mirror)
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
floor() {
    mmdebstrap --variant=minbase --include="$packages" --aptopt='APT::Install-Recommends "false"' \
        "$release" "$scratch/floor-tree" "deb $mirror $release main" "${fixture_source[@]}"
    local size_kib
    size_kib=$(( $(du -sk "$scratch/floor-tree" | cut -f1) * 13 / 10 + 262144 ))
    mkfs.ext4 -q -F -d "$scratch/floor-tree" "$scratch/floor.raw" "${size_kib}k"
    qemu-img convert -O qcow2 "$scratch/floor.raw" "$scratch/floor.qcow2"
}

echo "bench: recipe $recipe, $(nproc) cores, $(date -u +%FT%TZ)"
t_floor=$(seconds_of floor)
rm -rf "$scratch/floor-tree" "$scratch/floor.raw" "$scratch/floor.qcow2"
t_cold=$(seconds_of build "$scratch/out/cold.qcow2")
t_warm=$(seconds_of build "$scratch/out/warm.qcow2")
touched=$(find "$scratch/data/elements" -path '*/post-install.d/*' -type f | sort | head -n 1)
echo "# touched by bench" >> "$touched"
t_touched=$(seconds_of build "$scratch/out/touched.qcow2")

ratio() { printf '%.2f' "$(echo "scale=4; $1 / $2" | bc)"; }
echo "touched script: ${touched#"$scratch/data/"}"
printf '%-34s %8s\n' "measurement" "seconds"
printf '%-34s %8.1f\n' "floor (mmdebstrap+mkfs+qemu-img)" "$t_floor"
printf '%-34s %8.1f   %sx floor (target <= 1.3)\n' "cold build" "$t_cold" "$(ratio "$t_cold" "$t_floor")"
printf '%-34s %8.1f   %sx cold (target <= 0.15)\n' "warm rebuild, nothing changed" "$t_warm" "$(ratio "$t_warm" "$t_cold")"
printf '%-34s %8.1f   %sx cold (target <= 0.35)\n' "rebuild, one post-install touched" "$t_touched" "$(ratio "$t_touched" "$t_cold")"
