#!/usr/bin/env bash
# Bench-only tools (not CI, not a build dependency): mkosi 24 from bookworm-backports, the
# comparison bench/build.sh runs. Needs scripts/install-deps.sh first (it adds bookworm-backports
# from the host's own Debian sources). Idempotent; run as root.
set -euo pipefail
[ "$(id -u)" -eq 0 ] || { echo "bench/install-deps.sh: run as root" >&2; exit 1; }
if ! command -v mkosi >/dev/null || ! mkosi --version | grep -Eq 'mkosi (2[4-9]|[3-9][0-9])'; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -t bookworm-backports mkosi
fi
mkosi --version
