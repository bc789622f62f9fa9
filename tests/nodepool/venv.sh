#!/usr/bin/env bash
# nodepool 11.0.0 from PyPI in a venv, created on first use and reused by later runs; prints
# the venv's path. pip runs with its own configuration (no index is named here).
#
#   NODEPOOL_VENV  where (default /var/tmp/mesos-image-nodepool-venv)
#
# nodepool 11.0.0 imports cachetools without declaring it, so it is installed too. The
# `.complete` marker is written last, so an interrupted install is redone, not half-used; a lock
# makes test binaries that start at once share one install.
set -euo pipefail
VENV=${NODEPOOL_VENV:-/var/tmp/mesos-image-nodepool-venv}
PY=${PY:-python3}

mkdir -p "$(dirname "$VENV")"
exec 9>"$VENV.lock"
flock 9
if [ ! -f "$VENV/.complete" ]; then
    rm -rf "$VENV"
    "$PY" -m venv "$VENV" || { echo "nodepool/venv.sh: $PY -m venv failed (install python3-venv)" >&2; exit 1; }
    if ! "$VENV/bin/pip" install -q 'nodepool==11.0.0' 'cachetools==8.0.3' >"$VENV.pip.log" 2>&1; then
        echo "nodepool/venv.sh: pip install nodepool==11.0.0 failed: $(tail -n 1 "$VENV.pip.log")" >&2
        exit 1
    fi
    touch "$VENV/.complete"
fi
echo "$VENV"
