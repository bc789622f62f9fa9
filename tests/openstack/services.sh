#!/usr/bin/env bash
# A real Keystone + Glance (Python packages in a cached venv, sqlite, file store) on 127.0.0.1,
# for the upload integration tests and bench/upload.sh.
#
# Usage: services.sh start|stop
#   OSDIR        state directory (config, databases, images, logs, pids, openrc); required
#   KS_PORT      Keystone port (default 25730)      GL_PORT  Glance port (default 29730)
#   GL_SIZE_CAP  Glance image_size_cap in bytes (default 1 TiB, Glance's own default)
#   GL_TLS_PORT  if set, a second Glance process serves the same images over TLS on this port,
#                with a certificate for 127.0.0.1 signed by $OSDIR/tls/ca.pem
#   GL2_PORT     if set, a second Glance (its own database and store) is the image endpoint of
#                region RegionTwo of the same Keystone
#   KS2_PORT, GL3_PORT  if set, a second cloud: its own Keystone (same users and passwords) and
#                Glance, started alongside the first
#   Every Glance has two file stores, `local` (the default) and `second`.
#   WATCH_PID    if set, the servers are stopped and $OSDIR removed once this process is gone
#                (test binaries have no teardown hook; a crash must not leave servers behind);
#                KEEP_STATE=1 keeps $OSDIR (logs) for a post-mortem
#   VENV         venv holding glance/keystone/gunicorn (default /var/tmp/mesos-image-openstack-venv,
#                created on first use and reused by later runs)
#
# `start` first kills servers a previous run left listening on the same ports, so a crashed test
# run never makes the next one fail. It writes $OSDIR/openrc (demo user) and $OSDIR/appcred.env
# (an application credential of the demo user); the user `importer` has the role `nodirect`,
# which the Glance policy denies direct upload, so clients must fall back to glance-direct import.
set -euo pipefail
: "${OSDIR:?set OSDIR to a state directory}"
VENV=${VENV:-/var/tmp/mesos-image-openstack-venv}
PY=${PY:-python3}
KS_PORT=${KS_PORT:-25730}
GL_PORT=${GL_PORT:-29730}
GL_SIZE_CAP=${GL_SIZE_CAP:-1099511627776}
ADMIN_PW=${ADMIN_PW:-adminpw}
KS=http://127.0.0.1:$KS_PORT
GL=http://127.0.0.1:$GL_PORT

wait_http() {
  for _ in $(seq 1 600); do curl -sf -m 2 -o /dev/null "$1" && return 0; sleep 0.1; done
  echo "services.sh: timeout waiting for $1 (logs in $OSDIR/log)" >&2
  return 1
}
jget() { "$VENV/bin/python" -c "import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))" "$1"; }

# Kill the gunicorn master listening on a port (a leftover of an earlier run), by its pid.
kill_listener() {
  local pid
  for pid in $(ss -Hltnp "sport = :$1" | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u); do
    if grep -q gunicorn "/proc/$pid/cmdline" 2>/dev/null; then kill "$pid" 2>/dev/null || true; fi
  done
  for _ in $(seq 1 50); do
    [ -z "$(ss -Hltn "sport = :$1")" ] && return 0
    sleep 0.1
  done
  echo "services.sh: port $1 is still in use" >&2
  return 1
}

stop() {
  local p
  for p in keystone glance glance-tls glance2 keystone2 glance3; do
    if [ -f "$OSDIR/$p.pid" ]; then kill "$(cat "$OSDIR/$p.pid")" 2>/dev/null || true; rm -f "$OSDIR/$p.pid"; fi
  done
}

ensure_venv() {
  # Held while checking and installing: two test binaries starting at once share one venv.
  mkdir -p "$(dirname "$VENV")"
  exec 8>"$VENV.lock"
  flock 8
  # The marker is written last, so an interrupted install is redone rather than half-used.
  if [ ! -f "$VENV/.complete" ]; then
    rm -rf "$VENV"
    "$PY" -m venv "$VENV"
    "$VENV/bin/pip" install -q 'glance==33.0.0' 'keystone==30.0.0' 'gunicorn==27.0.1'
    touch "$VENV/.complete"
  fi
  exec 8>&- # released before any server starts: they must not inherit (and hold) it
}

start_keystone() { # name port
  local name=$1 port=$2 ksd=$OSDIR/$1 ks=http://127.0.0.1:$2
  mkdir -p "$ksd/fernet" "$ksd/cred"
  chmod 700 "$ksd/fernet" "$ksd/cred"
  cat > "$ksd/keystone.conf" <<EOF
[DEFAULT]
log_file = $OSDIR/log/$name.log
[database]
connection = sqlite:///$ksd/keystone.sqlite
[token]
provider = fernet
[fernet_tokens]
key_repository = $ksd/fernet
[fernet_receipts]
key_repository = $ksd/fernet
[credential]
key_repository = $ksd/cred
EOF
  cat > "$ksd/ks_wsgi.py" <<'EOF'
import sys
sys.argv = sys.argv[:1]  # keystone's oslo.config must not parse gunicorn's arguments
from keystone.wsgi.api import application  # noqa
EOF
  local km="$VENV/bin/keystone-manage --config-file $ksd/keystone.conf"
  $km db_sync
  $km fernet_setup --keystone-user "$(id -un)" --keystone-group "$(id -gn)"
  $km credential_setup --keystone-user "$(id -un)" --keystone-group "$(id -gn)"
  $km bootstrap --bootstrap-password "$ADMIN_PW" --bootstrap-region-id RegionOne \
      --bootstrap-public-url "$ks/v3/" --bootstrap-internal-url "$ks/v3/"
  # sqlite's rollback journal gives "database is locked" errors under concurrent writes; WAL does not.
  "$VENV/bin/python" -c "import sqlite3,sys; sqlite3.connect(sys.argv[1]).execute('PRAGMA journal_mode=WAL')" \
      "$ksd/keystone.sqlite"
  OS_KEYSTONE_CONFIG_FILES=$ksd/keystone.conf nohup "$VENV/bin/gunicorn" --chdir "$ksd" \
      -b "127.0.0.1:$port" -w 1 --threads 4 ks_wsgi:application > "$OSDIR/log/$name-gunicorn.log" 2>&1 &
  echo $! > "$OSDIR/$name.pid"
  wait_http "$ks/v3"
}

token_for() { # user password project [keystone]
  curl -sf -D - -o /dev/null -X POST "${4:-$KS}/v3/auth/tokens" -H 'Content-Type: application/json' -d \
    "{\"auth\":{\"identity\":{\"methods\":[\"password\"],\"password\":{\"user\":{\"name\":\"$1\",\"domain\":{\"id\":\"default\"},\"password\":\"$2\"}}},\"scope\":{\"project\":{\"name\":\"$3\",\"domain\":{\"id\":\"default\"}}}}}" \
    | awk 'tolower($1)=="x-subject-token:"{print $2}' | tr -d '\r'
}

populate_keystone() { # keystone-url env-file glance-url [region2-glance-url]
  local KS=$1 env_file=$2 GL=$3 GL2=${4:-}
  local tok svc_p gl_u svc demo_p demo_u imp_u nodirect member i
  tok=$(token_for admin "$ADMIN_PW" admin "$KS")
  post() { curl -sf -X POST "$KS/v3/$1" -H "X-Auth-Token: $tok" -H 'Content-Type: application/json' -d "$2"; }
  role_id() { curl -sf "$KS/v3/roles?name=$1" -H "X-Auth-Token: $tok" | jget 'd["roles"][0]["id"]'; }
  grant() { curl -sf -X PUT "$KS/v3/projects/$1/users/$2/roles/$3" -H "X-Auth-Token: $tok"; }
  member=$(role_id member)
  svc_p=$(post projects '{"project":{"name":"service","domain_id":"default"}}' | jget 'd["project"]["id"]')
  gl_u=$(post users '{"user":{"name":"glance","domain_id":"default","password":"glancepw"}}' | jget 'd["user"]["id"]')
  grant "$svc_p" "$gl_u" "$(role_id admin)"
  svc=$(post services '{"service":{"type":"image","name":"glance"}}' | jget 'd["service"]["id"]')
  for i in public internal admin; do
    post endpoints "{\"endpoint\":{\"service_id\":\"$svc\",\"interface\":\"$i\",\"region_id\":\"RegionOne\",\"url\":\"$GL\"}}" >/dev/null
  done
  if [ -n "$GL2" ]; then
    post regions '{"region":{"id":"RegionTwo"}}' >/dev/null
    for i in public internal admin; do
      post endpoints "{\"endpoint\":{\"service_id\":\"$svc\",\"interface\":\"$i\",\"region_id\":\"RegionTwo\",\"url\":\"$GL2\"}}" >/dev/null
    done
  fi
  demo_p=$(post projects '{"project":{"name":"demo","domain_id":"default"}}' | jget 'd["project"]["id"]')
  demo_u=$(post users '{"user":{"name":"demo","domain_id":"default","password":"demopw"}}' | jget 'd["user"]["id"]')
  grant "$demo_p" "$demo_u" "$member"
  imp_u=$(post users '{"user":{"name":"importer","domain_id":"default","password":"importerpw"}}' | jget 'd["user"]["id"]')
  nodirect=$(post roles '{"role":{"name":"nodirect"}}' | jget 'd["role"]["id"]')
  grant "$demo_p" "$imp_u" "$member"
  grant "$demo_p" "$imp_u" "$nodirect"

  # An application credential of demo (created by demo itself, as users do).
  local demo_tok cred
  demo_tok=$(token_for demo demopw demo "$KS")
  cred=$(curl -sf -X POST "$KS/v3/users/$demo_u/application_credentials" -H "X-Auth-Token: $demo_tok" \
      -H 'Content-Type: application/json' -d '{"application_credential":{"name":"mesos-image-it"}}')
  {
    echo "APPCRED_ID=$(echo "$cred" | jget 'd["application_credential"]["id"]')"
    echo "APPCRED_SECRET=$(echo "$cred" | jget 'd["application_credential"]["secret"]')"
    echo "DEMO_PROJECT_ID=$demo_p"
  } > "$env_file"
}

start_glance() { # name port keystone-url size-cap
  local name=$1 port=$2 KS=$3 cap=$4 gld=$OSDIR/$1
  mkdir -p "$gld"/{images,second,staging,tasks,cache}
  cp "$VENV/etc/glance/glance-api-paste.ini" "$gld/"
  cat > "$gld/glance-api.conf" <<EOF
[DEFAULT]
log_file = $OSDIR/log/$name-api.log
enabled_backends = local:file,second:file
enabled_import_methods = [glance-direct,web-download]
image_cache_dir = $gld/cache
image_size_cap = $cap
[database]
connection = sqlite:///$gld/glance.sqlite
[glance_store]
default_backend = local
[local]
filesystem_store_datadir = $gld/images
[second]
filesystem_store_datadir = $gld/second
[os_glance_staging_store]
filesystem_store_datadir = $gld/staging
[os_glance_tasks_store]
filesystem_store_datadir = $gld/tasks
[oslo_policy]
policy_file = $gld/policy.yaml
[paste_deploy]
config_file = $gld/glance-api-paste.ini
flavor = keystone
[keystone_authtoken]
www_authenticate_uri = $KS
auth_url = $KS
auth_type = password
user_domain_id = default
project_domain_id = default
project_name = service
username = glance
password = glancepw
EOF
  # Direct upload (PUT .../file) is denied to holders of `nodirect`; staging and import stay allowed.
  cat > "$gld/policy.yaml" <<'EOF'
"upload_image": "(role:admin or (role:member and project_id:%(project_id)s)) and not role:nodirect"
EOF
  "$VENV/bin/glance-manage" --config-file "$gld/glance-api.conf" db_sync
  # Two Glance processes (plain and TLS) write to this database: WAL, as for Keystone.
  "$VENV/bin/python" -c "import sqlite3,sys; sqlite3.connect(sys.argv[1]).execute('PRAGMA journal_mode=WAL')" \
      "$gld/glance.sqlite"
  run_glance "$name" "$port"
}

# (Re)start the gunicorn of Glance `name` on `port` (`services.sh restart-glance` after a kill).
run_glance() { # name port
  OS_GLANCE_CONFIG_DIR=$OSDIR/$1 nohup "$VENV/bin/gunicorn" -b "127.0.0.1:$2" -w 1 --threads 4 \
      --timeout 600 glance.wsgi.api:application > "$OSDIR/log/$1-gunicorn.log" 2>&1 &
  echo $! > "$OSDIR/$1.pid"
  wait_http "http://127.0.0.1:$2/healthcheck"
}

make_tls_cert() {
  mkdir -p "$OSDIR/tls"
  (
    cd "$OSDIR/tls"
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj '/CN=mesos-image test CA' \
        -keyout ca.key -out ca.pem 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj '/CN=127.0.0.1' -keyout server.key -out server.csr 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' > ext.cnf
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
        -extfile ext.cnf -out server.pem 2>/dev/null
  )
}

start_glance_tls() {
  make_tls_cert
  OS_GLANCE_CONFIG_DIR=$OSDIR/glance nohup "$VENV/bin/gunicorn" -b "127.0.0.1:$GL_TLS_PORT" -w 1 --threads 4 \
      --timeout 600 --certfile "$OSDIR/tls/server.pem" --keyfile "$OSDIR/tls/server.key" \
      glance.wsgi.api:application > "$OSDIR/log/glance-tls-gunicorn.log" 2>&1 &
  echo $! > "$OSDIR/glance-tls.pid"
  for _ in $(seq 1 600); do
    curl -sf -m 2 --cacert "$OSDIR/tls/ca.pem" -o /dev/null "https://127.0.0.1:$GL_TLS_PORT/healthcheck" && return 0
    sleep 0.1
  done
  echo "services.sh: timeout waiting for the TLS Glance (logs in $OSDIR/log)" >&2
  return 1
}

# Stop everything once $WATCH_PID exits. Detached, so the caller's pipes are not held open.
start_watcher() {
  local self
  self=$(readlink -f "$0")
  setsid bash -c 'while kill -0 "$1" 2>/dev/null; do sleep 1; done; OSDIR="$2" "$3" stop; [ -n "$4" ] || rm -rf "$2"' \
      watcher "$WATCH_PID" "$OSDIR" "$self" "${KEEP_STATE:-}" < /dev/null > /dev/null 2>&1 &
}

# The second cloud: its own Keystone and Glance, the same users.
start_cloud2() {
  start_keystone keystone2 "$KS2_PORT"
  populate_keystone "http://127.0.0.1:$KS2_PORT" "$OSDIR/appcred2.env" "http://127.0.0.1:$GL3_PORT"
  start_glance glance3 "$GL3_PORT" "http://127.0.0.1:$KS2_PORT" "$GL_SIZE_CAP"
}

start() {
  local port cloud2=
  ensure_venv
  for port in "$KS_PORT" "$GL_PORT" ${GL_TLS_PORT:-} ${GL2_PORT:-} ${KS2_PORT:-} ${GL3_PORT:-}; do
    kill_listener "$port"
  done
  rm -rf "$OSDIR"/{keystone,glance,glance2,keystone2,glance3}
  mkdir -p "$OSDIR/log"
  # The second cloud starts alongside the first: on 2 cores that saves most of its start time.
  if [ -n "${KS2_PORT:-}" ]; then start_cloud2 > "$OSDIR/log/cloud2-start.log" 2>&1 & cloud2=$!; fi
  start_keystone keystone "$KS_PORT"
  populate_keystone "$KS" "$OSDIR/appcred.env" "$GL" "${GL2_PORT:+http://127.0.0.1:$GL2_PORT}"
  start_glance glance "$GL_PORT" "$KS" "$GL_SIZE_CAP"
  if [ -n "${GL2_PORT:-}" ]; then start_glance glance2 "$GL2_PORT" "$KS" "$GL_SIZE_CAP"; fi
  if [ -n "${GL_TLS_PORT:-}" ]; then start_glance_tls; fi
  if [ -n "$cloud2" ] && ! wait "$cloud2"; then
    echo "services.sh: the second cloud did not start:" >&2
    cat "$OSDIR/log/cloud2-start.log" >&2
    return 1
  fi
  if [ -n "${WATCH_PID:-}" ]; then start_watcher; fi
  cat > "$OSDIR/openrc" <<EOF
export OS_AUTH_URL=$KS/v3
export OS_USERNAME=demo OS_PASSWORD=demopw OS_PROJECT_NAME=demo
export OS_USER_DOMAIN_NAME=Default OS_PROJECT_DOMAIN_NAME=Default
export OS_REGION_NAME=RegionOne OS_INTERFACE=public
EOF
  echo "keystone $KS  glance $GL  env: $OSDIR/openrc"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  # A killed master's orphaned worker may still hold the port for a moment: wait it out first.
  restart-glance) kill_listener "$3"; run_glance "$2" "$3" ;;
  *) echo "usage: $0 start|stop|restart-glance NAME PORT" >&2; exit 2 ;;
esac
