#!/usr/bin/env bash
# Container build test, with no registry access at all:
#   1. make the base images locally (mmdebstrap a bookworm tree, `docker import` it) under test tags;
#   2. `docker build` the Dockerfile against them (cold or warm, timed), crates vendored on the host;
#   3. smoke-test the image (--help, data dir, --user refusal, missing-privilege message);
#   4. probe which privileges a build needs (tests/container/probe.sh) and assert the documented
#      reduced set (no capability added) works while the default set, and that set less any one
#      option, do not;
#   5. when the pipeline is there, build debian-base in the container (reduced privileges: the build
#      runs in a user namespace; every stage run there: --no-cache), then `qemu-img check` and boot
#      the image with the recipe's checks.
# Exits 0 only if everything it attempted passed; prints SKIPPED lines for what it did not attempt.
#
# Environment:
#   CONTAINER_TEST_WORK    scratch directory (default /var/tmp/mesos-image-container-test)
#   CONTAINER_TEST_PREFIX  repository prefix of the test's image tags (default mesos-image-test)
#   CONTAINER_TEST_REBASE  1: rebuild the base images even if the test made them before
#   MESOS_IMAGE_BIN        host binary whose `test` subcommand boots the built image (else plain qemu)
#   CONTAINER_TEST_ACCEL   its --accel (default tcg)
#   MESOS_IMAGE_CACHE_DIR  cache the containerised build shares with the host's (default: WORK/cache)
# The base images and the built image stay (tagged under the prefix) so the next run is warm.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
work=${CONTAINER_TEST_WORK:-/var/tmp/mesos-image-container-test}
prefix=${CONTAINER_TEST_PREFIX:-mesos-image-test}
build_base=$prefix/debian:bookworm
runtime_base=$prefix/debian:bookworm-slim
image=$prefix/mesos-image:latest
# Marks base images this script made, so it never replaces an image someone else put there.
base_label=org.mesos-image.test-base

skipped=()
failed=()
container_names=()

log() { echo "container-test: $*"; }
skip() { echo "SKIPPED: $*"; skipped+=("$*"); }
fail() { echo "FAILED: $*"; failed+=("$*"); }

cleanup() {
    local name
    for name in "${container_names[@]}"; do
        docker rm -f "$name" >/dev/null 2>&1 || true
    done
    if [ -d "$work/tree" ]; then rm -rf "$work/tree"; fi
}
trap cleanup EXIT

summary() {
    echo
    echo "container-test summary:"
    local s
    for s in "${skipped[@]}"; do echo "  SKIPPED: $s"; done
    for s in "${failed[@]}"; do echo "  FAILED: $s"; done
    if [ ${#failed[@]} -eq 0 ]; then
        echo "  all attempted checks passed"
        exit 0
    fi
    exit 1
}

if ! docker info >/dev/null 2>&1; then
    echo "FAILED: docker info failed (no reachable docker engine); the container build cannot be tested" >&2
    exit 1
fi
mkdir -p "$work"

# --- 1. base images ------------------------------------------------------------------------------

# The host's own apt sources: the mirror is read at run time, never written down.
host_sources() {
    if [ -f /etc/apt/sources.list.d/debian.sources ]; then
        echo /etc/apt/sources.list.d/debian.sources
    elif [ -s /etc/apt/sources.list ]; then
        echo /etc/apt/sources.list
    else
        echo "container-test: no Debian apt sources on this host to bootstrap the base images from" >&2
        return 1
    fi
}

# Is TAG an image this script made (reuse), absent (make it), or someone else's (refuse)?
base_state() {
    local label
    if ! label=$(docker image inspect --format "{{ index .Config.Labels \"$base_label\" }}" "$1" 2>/dev/null); then
        echo absent
    elif [ "$label" = 1 ]; then
        echo ours
    else
        echo foreign
    fi
}

import_tree() {
    tar -C "$work/tree" -c . | docker import \
        --change "LABEL $base_label=1" --change 'CMD ["/bin/bash"]' - "$1" >/dev/null
}

make_base_images() {
    local state_build state_runtime sources started
    state_build=$(base_state "$build_base")
    state_runtime=$(base_state "$runtime_base")
    for pair in "$build_base:$state_build" "$runtime_base:$state_runtime"; do
        if [ "${pair##*:}" = foreign ]; then
            fail "$(echo "$pair" | sed 's/:[a-z]*$//') exists and was not made by this test; set CONTAINER_TEST_PREFIX to use other tags"
            summary
        fi
    done
    if [ "$state_build" = ours ] && [ "$state_runtime" = ours ] && [ "${CONTAINER_TEST_REBASE:-0}" != 1 ]; then
        log "reusing base images $build_base and $runtime_base (CONTAINER_TEST_REBASE=1 remakes them)"
        return 0
    fi
    sources=$(host_sources)
    started=$SECONDS
    rm -rf "$work/tree"
    log "bootstrapping a bookworm tree for the base images from the host's apt sources"
    mmdebstrap --quiet --variant=minbase bookworm "$work/tree" "$sources"
    import_tree "$build_base"
    # The slim flavour, as Debian's -slim images do it: no docs, man pages or translations, now or
    # for packages installed later.
    cat > "$work/tree/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
EOF
    find "$work/tree/usr/share/doc" -mindepth 1 ! -name copyright ! -type d -delete
    rm -rf "$work/tree/usr/share/man/"* "$work/tree/usr/share/info/"* "$work/tree/usr/share/locale/"*
    import_tree "$runtime_base"
    rm -rf "$work/tree"
    log "base images $build_base and $runtime_base made in $((SECONDS - started)) s"
}

# --- 2. docker build -----------------------------------------------------------------------------

# A copy of the checkout's files (tracked and untracked, not ignored) plus vendored crates: docker
# builds here cannot reach the crate registry, the host can.
make_context() {
    local ctx=$work/context
    rm -rf "$ctx"
    mkdir -p "$ctx"
    (cd "$repo" && git ls-files -z -co --exclude-standard) |
        (cd "$repo" && tar --null --ignore-failed-read -T - -c 2>/dev/null) | tar -C "$ctx" -x
    # The image needs these directories even before any element or recipe is merged.
    for d in elements recipes; do
        if [ ! -d "$ctx/$d" ]; then
            log "note: $d/ is missing in the checkout; the image gets an empty one"
            mkdir -p "$ctx/$d"
        fi
    done
    (cd "$repo" && cargo vendor --quiet --locked --versioned-dirs "$ctx/docker/cargo-home/vendor" >/dev/null)
    cat > "$ctx/docker/cargo-home/config.toml" <<'EOF'
[source.crates-io]
replace-with = "vendored-sources"

[source.vendored-sources]
directory = "/usr/local/cargo/vendor"
EOF
}

build_image() {
    local started=$SECONDS
    log "docker build (Rust build on $(nproc) cores; the first build takes a while)"
    if ! docker build \
        --build-arg "BUILD_IMAGE=$build_base" --build-arg "RUNTIME_IMAGE=$runtime_base" \
        -t "$image" "$work/context" > "$work/docker-build.log" 2>&1; then
        tail -n 30 "$work/docker-build.log"
        fail "docker build (log: $work/docker-build.log)"
        summary
    fi
    log "docker build took $((SECONDS - started)) s; image size $(docker image inspect --format '{{.Size}}' "$image" | awk '{printf "%.0f MiB", $1/1048576}')"
    drop_stale_images
}

# Every source change leaves the previous build stage (1.4 GB) and image behind, untagged. Tag
# the current build stage (all cached, so quick) so it and its dependency layer stay, then drop
# the untagged images derived from this test's base images.
drop_stale_images() {
    docker build --quiet --target build \
        --build-arg "BUILD_IMAGE=$build_base" --build-arg "RUNTIME_IMAGE=$runtime_base" \
        -t "$prefix/mesos-image:build-stage" "$work/context" >> "$work/docker-build.log" 2>&1 ||
        { fail "tagging the build stage (log: $work/docker-build.log)"; return; }
    docker image prune --force --filter "label=$base_label=1" >> "$work/docker-build.log" 2>&1 ||
        fail "pruning stale test images (log: $work/docker-build.log)"
}

apparmor_enabled() {
    [ "$(cat /sys/module/apparmor/parameters/enabled 2>/dev/null)" = Y ]
}

# The least privilege a build needs (README, "Least privilege"): no capability added, the build
# runs in a user namespace of its own. Docker's default seccomp profile refuses unshare(CLONE_NEWUSER)
# to a container without CAP_SYS_ADMIN; its masked /proc paths make the kernel refuse a new proc
# mount inside a user namespace; AppArmor's docker-default profile (where AppArmor is on) denies
# every mount.
reduced_privileges=(--security-opt seccomp=unconfined --security-opt systempaths=unconfined)
if apparmor_enabled; then reduced_privileges+=(--security-opt apparmor=unconfined); fi
# The earlier documented set, which keeps working (the build then needs no user namespace).
capability_privileges=(--cap-add SYS_ADMIN --security-opt apparmor=unconfined)

# --- 3. smoke tests ------------------------------------------------------------------------------

expect_ok() {
    local what=$1
    shift
    local out
    if out=$("$@" 2>&1); then
        log "ok: $what"
    else
        printf '%s\n' "$out" | tail -n 10
        fail "$what"
    fi
}

# expect_refusal WHAT PATTERN CMD...: CMD must fail with exactly one line of stderr matching PATTERN.
expect_refusal() {
    local what=$1 pattern=$2
    shift 2
    local err
    if err=$("$@" 2>&1 >/dev/null); then
        fail "$what: succeeded, expected a refusal"
    elif [ "$(printf '%s\n' "$err" | wc -l)" -ne 1 ] || ! grep -q -- "$pattern" <<<"$err"; then
        printf '%s\n' "$err" | tail -n 5
        fail "$what: expected one line matching '$pattern'"
    else
        log "ok: $what ($err)"
    fi
}

# Every recipe of the checkout must be one the containerised binary finds.
recipes_listed() {
    local listed recipe missing=()
    if ! compgen -G "$repo/recipes/*.yaml" >/dev/null; then
        skip "recipes listed by the image: the checkout has no recipes yet"
        return
    fi
    if ! listed=$(docker run --rm "$image" recipes list 2>&1); then
        printf '%s\n' "$listed" | tail -n 5
        fail "mesos-image recipes list in the image"
        return
    fi
    for recipe in "$repo"/recipes/*.yaml; do
        recipe=$(basename "$recipe" .yaml)
        grep -qw -- "$recipe" <<<"$listed" || missing+=("$recipe")
    done
    if [ ${#missing[@]} -eq 0 ]; then
        log "ok: the image lists every recipe of the checkout"
    else
        fail "recipes missing from 'mesos-image recipes list' in the image: ${missing[*]}"
    fi
}

smoke_tests() {
    expect_ok "mesos-image --help runs in the image" docker run --rm "$image" --help
    expect_ok "elements and recipes installed where the binary looks (<exe>/../share/mesos-image)" \
        docker run --rm --entrypoint sh "$image" -c \
        'test -d /usr/local/share/mesos-image/elements && test -d /usr/local/share/mesos-image/recipes'
    recipes_listed
    expect_ok "build tools present" docker run --rm --entrypoint sh "$image" -c \
        'for t in mmdebstrap debootstrap curl qemu-img mkfs.ext4 debugfs mkfs.vfat mcopy grub-mkimage sfdisk unshare chroot gpg xz zstd mksquashfs unsquashfs; do command -v $t >/dev/null || { echo "missing $t"; exit 1; }; done'
    expect_refusal "--user is refused for a build" "drop --user" docker run --rm --user 1000:1000 "$image"
    expect_ok "--user is fine for commands that build nothing" docker run --rm --user 1000:1000 "$image" --help
    expect_refusal "build without privileges is refused" "cannot create user, mount and PID namespaces" \
        docker run --rm "$image" build -o /output/refused.qcow2
}

# The entrypoint's HOST_UID handling, with a stand-in mesos-image that writes an image and a
# manifest and fails: the status must come through, those two files must change owner, and a
# file that was in the output directory before must not.
ownership_test() {
    local dir=$work/ownership stub=$work/stub status=0
    rm -rf "$dir" "$stub"
    mkdir -p "$dir" "$stub"
    touch "$dir/unrelated" "$dir/img-from-before.qcow2"
    printf '#!/bin/sh\ntouch /output/img.qcow2 /output/img.manifest.json\nexit 3\n' > "$stub/mesos-image"
    chmod 0755 "$stub/mesos-image"
    docker run --rm "${reduced_privileges[@]}" -v "$dir:/output" -v "$stub:/stub:ro" \
        -e PATH=/stub:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        -e HOST_UID=4242 -e HOST_GID=4343 "$image" build -o /output/img.qcow2 || status=$?
    local owners
    owners=$(cd "$dir" && stat -c '%n=%u:%g' img.qcow2 img.manifest.json unrelated img-from-before.qcow2 | tr '\n' ' ')
    if [ "$status" -eq 3 ] && [ "$owners" = "img.qcow2=4242:4343 img.manifest.json=4242:4343 unrelated=0:0 img-from-before.qcow2=0:0 " ]; then
        log "ok: outputs handed to HOST_UID:HOST_GID, other files untouched, exit status kept"
    else
        fail "HOST_UID handling: exit status $status (want 3), owners: $owners"
    fi
    rm -rf "$dir" "$stub"
}

# --- 4. privileges -------------------------------------------------------------------------------

probe() {
    docker run --rm -v "$repo/tests/container/probe.sh:/probe.sh:ro" --entrypoint sh "$@" "$image" /probe.sh
}

# PROBE WHAT OPTIONS...: the probe must fail with those options (each of the reduced set is needed).
expect_probe_refused() {
    local what=$1 out
    shift
    if out=$(probe "$@" 2>&1); then
        fail "probe passed with $*: $what"
    else
        log "ok: $what ($(tail -n 1 <<<"$out"))"
    fi
}

privilege_tests() {
    expect_probe_refused "docker's default privileges are not enough"
    expect_ok "probe with the reduced set (${reduced_privileges[*]}), no capability added" probe "${reduced_privileges[@]}"
    expect_probe_refused "systempaths=unconfined is needed (a new proc in a user namespace)" \
        --security-opt seccomp=unconfined
    expect_probe_refused "seccomp=unconfined is needed (unshare of a user namespace)" \
        --security-opt systempaths=unconfined
    expect_ok "probe with CAP_SYS_ADMIN instead (${capability_privileges[*]})" probe "${capability_privileges[@]}"
    if ! apparmor_enabled; then
        skip "apparmor=unconfined being needed: AppArmor is not enabled on this host"
    else
        expect_probe_refused "apparmor=unconfined is needed under AppArmor" \
            --security-opt seccomp=unconfined --security-opt systempaths=unconfined
    fi
    # --privileged asks for every capability; a docker engine that itself runs with a reduced
    # bounding set (nested in another container) cannot grant that, which is not our failure.
    if out=$(probe --privileged 2>&1); then
        log "ok: probe with --privileged"
    elif grep -q 'unable to apply caps' <<<"$out"; then
        skip "--privileged: this docker engine cannot grant all capabilities ($(grep -o 'unable to apply caps[^:]*: [^:]*' <<<"$out" | head -n 1))"
    else
        printf '%s\n' "$out" | tail -n 5
        fail "probe with --privileged"
    fi
}

# The real bootstrapper inside the container with the reduced set, from the container's own apt
# sources. The full build below covers this too; it runs only when the full build cannot.
bootstrap_test() {
    local started=$SECONDS
    expect_ok "mmdebstrap (root mode) in the container with CAP_SYS_ADMIN" \
        docker run --rm "${capability_privileges[@]}" --entrypoint mmdebstrap "$image" \
        --quiet --mode=root --variant=essential bookworm /tmp/probe.tar
    log "mmdebstrap in the container took $((SECONDS - started)) s"
}

# --- 5. full build + boot ------------------------------------------------------------------------

pipeline_available() {
    local help
    help=$(docker run --rm --entrypoint mesos-image "$image" build --help 2>&1) || return 1
    grep -q -- '--recipe' <<<"$help" && [ -f "$repo/recipes/debian-base.yaml" ]
}

# The host's mesos-image (MESOS_IMAGE_BIN, set by tests/container.rs to the binary cargo built),
# when it can run the recipe's checks.
host_tester() {
    local bin=${MESOS_IMAGE_BIN:-}
    if [ -z "$bin" ]; then bin=$(command -v mesos-image || true); fi
    if [ -n "$bin" ]; then
        local help
        help=$("$bin" test --help 2>/dev/null) || true
        if grep -q -- '--recipe' <<<"$help"; then echo "$bin"; fi
    fi
}

# Plain qemu (TCG): the serial console must show a login prompt within 5 minutes.
boot_to_login() {
    local qcow2=$1 serial=$work/boot-serial.log pid booted=0
    rm -f "$serial"
    qemu-system-x86_64 -accel tcg -m 1024 -display none -no-reboot -snapshot \
        -drive "file=$qcow2,if=virtio,format=qcow2" -serial "file:$serial" &
    pid=$!
    for _ in $(seq 300); do
        if grep -q 'login:' "$serial" 2>/dev/null; then booted=1; break; fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 1
    done
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    if [ "$booted" = 1 ]; then
        log "ok: image booted to a login prompt"
    else
        tail -n 20 "$serial" 2>/dev/null || true
        fail "boot: no login prompt within 5 minutes (serial log: $serial)"
    fi
}

boot_image() {
    local qcow2=$1 tester
    tester=$(host_tester)
    if [ -n "$tester" ]; then
        # TCG by default: where /dev/kvm opens but cannot run a full guest, `auto` picks KVM and the
        # guest aborts (seen on these machines).
        local accel=${CONTAINER_TEST_ACCEL:-tcg}
        expect_ok "mesos-image test $qcow2 --recipe debian-base --accel $accel" \
            "$tester" test "$qcow2" --recipe debian-base --accel "$accel"
    elif command -v qemu-system-x86_64 >/dev/null; then
        log "booting $qcow2 in qemu (TCG), waiting up to 5 minutes for login:"
        boot_to_login "$qcow2"
    else
        skip "boot: no qemu-system-x86_64 and no 'mesos-image test' on this host"
    fi
}

full_build() {
    if ! pipeline_available; then
        skip "containerised debian-base build + boot: 'mesos-image build' has no --recipe yet or recipes/debian-base.yaml is missing"
        bootstrap_test
        return
    fi
    local out=$work/output started name=mesos-image-test-build-$$
    # A host cache directory: the test run's shared one when there is one (MESOS_IMAGE_CACHE_DIR,
    # as .ci/run sets it: the packages the host's builds download are not fetched again, and
    # builds in and out of the container queue on the same package-cache lock), else our own,
    # warm for the next run. --no-cache: every stage runs in the container (mmdebstrap, apt,
    # the chroot phases, the disk), whatever the host's builds left in the stage cache.
    local cache=${MESOS_IMAGE_CACHE_DIR:-$work/cache}
    local mounts=(-v "$work/output:/output" -v "$cache:/root/.cache/mesos-image")
    rm -rf "$out"
    mkdir -p "$out" "$cache"
    started=$SECONDS
    container_names+=("$name")
    # Ids 4242:4343 stand for "the invoking user" so the hand-over is visible even when the test
    # runs as root. No mirror is given: the build falls back to the container's own apt sources.
    log "building debian-base in the container (${reduced_privileges[*]})"
    if docker run --rm --name "$name" "${reduced_privileges[@]}" --network host "${mounts[@]}" \
        -e HOST_UID=4242 -e HOST_GID=4343 \
        "$image" build --recipe debian-base --no-cache -o /output/debian-base.qcow2 \
        > "$work/container-build.log" 2>&1; then
        log "ok: containerised debian-base build took $((SECONDS - started)) s"
    else
        tail -n 30 "$work/container-build.log"
        fail "containerised debian-base build (log: $work/container-build.log)"
        return
    fi
    local qcow2=$out/debian-base.qcow2
    expect_ok "qemu-img check $qcow2" qemu-img check "$qcow2"
    if [ "$(stat -c %u:%g "$qcow2")" = 4242:4343 ]; then
        log "ok: output owned by HOST_UID:HOST_GID"
    else
        fail "output owned by $(stat -c %u:%g "$qcow2"), expected HOST_UID:HOST_GID 4242:4343"
    fi
    boot_image "$qcow2"
}

make_base_images
make_context
build_image
smoke_tests
ownership_test
privilege_tests
full_build
summary
