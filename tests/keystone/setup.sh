#!/usr/bin/env bash
# A real Keystone for the tests: Keystone 30 from PyPI in a venv, SQLite,
# fernet tokens, served by ONE waitress process on a loopback port.
#
#   tests/keystone/setup.sh [start]   install if needed, start, provision, write env
#   tests/keystone/setup.sh stop      stop the Keystone process (state is kept)
#   tests/keystone/setup.sh status    exit 0 if Keystone answers
#   tests/keystone/setup.sh clean     stop and delete the state directory
#
# Environment (all optional):
#   KEYSTONE_PORT       loopback port                   (default 5055)
#   KEYSTONE_HOST       loopback address                (default 127.0.0.1)
#   KEYSTONE_STATE_DIR  config, database, keys, log, env (default tests/keystone/.state)
#   KEYSTONE_VENV       the virtualenv                  (default tests/keystone/.venv)
#   KEYSTONE_PYTHON     interpreter for the venv        (default python3)
#   KEYSTONE_THREADS    request threads (default 1: SQLite writes must not overlap)
#   KEYSTONE_TOKEN_EXPIRATION  token lifetime in seconds, [token] expiration (default 3600)
#   KEYSTONE_{ADMIN,SERVICE,ALICE,BOB}_PASSWORD        passwords of the test users
#
# After `start`, $KEYSTONE_STATE_DIR/env holds the URLs, ids and passwords;
# tests read it with:  set -a; . tests/keystone/.state/env; set +a
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PORT="${KEYSTONE_PORT:-5055}"
HOST="${KEYSTONE_HOST:-127.0.0.1}"
STATE="${KEYSTONE_STATE_DIR:-$HERE/.state}"
VENV="${KEYSTONE_VENV:-$HERE/.venv}"
PYTHON="${KEYSTONE_PYTHON:-python3}"
URL="http://$HOST:$PORT"
# Eventlet's deprecation notice is printed by every keystone-manage call.
export PYTHONWARNINGS="${PYTHONWARNINGS:-ignore}"
# One worker thread: Keystone on SQLite fails concurrent writes with
# "database is locked" (a read transaction that upgrades to a write cannot
# wait for another writer), which turns into HTTP 500 under parallel tests.
THREADS="${KEYSTONE_THREADS:-1}"
TOKEN_EXPIRATION="${KEYSTONE_TOKEN_EXPIRATION:-3600}"
PIDFILE="$STATE/keystone.pid"
LOG="$STATE/keystone.log"
CONF="$STATE/keystone.conf"

export KEYSTONE_ADMIN_PASSWORD="${KEYSTONE_ADMIN_PASSWORD:-admin-secret}"
export KEYSTONE_SERVICE_PASSWORD="${KEYSTONE_SERVICE_PASSWORD:-zaqar-secret}"
export KEYSTONE_ALICE_PASSWORD="${KEYSTONE_ALICE_PASSWORD:-alice-secret}"
export KEYSTONE_BOB_PASSWORD="${KEYSTONE_BOB_PASSWORD:-bob-secret}"

log() { echo "keystone-setup: $*" >&2; }
die() { log "$*"; exit 1; }

case "$HOST" in
  127.*|localhost|::1) ;;
  *) die "KEYSTONE_HOST must be a loopback address, not $HOST" ;;
esac

running_pid() {
  [[ -f "$PIDFILE" ]] || return 1
  local pid
  pid="$(cat "$PIDFILE")"
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

answers() {
  "$VENV/bin/python" - "$URL/v3" <<'PY' 2>/dev/null
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=2) as r:
    sys.exit(0 if r.status == 200 else 1)
PY
}

ensure_apt() {
  # A fresh Debian machine may lack the venv module of its python3.
  if ! "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null; then
    command -v apt-get >/dev/null || die "$PYTHON lacks venv/ensurepip and apt-get is missing"
    log "installing python3-venv with apt-get"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
  fi
}

install() {
  local stamp="$VENV/.installed"
  local want
  want="$(cat "$HERE/requirements.txt" "$HERE/constraints.txt" | sha256sum | cut -d' ' -f1)"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    return
  fi
  ensure_apt
  log "installing Keystone into $VENV"
  [[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check \
    -c "$HERE/constraints.txt" -r "$HERE/requirements.txt"
  echo "$want" > "$stamp"
}

configure() {
  mkdir -p "$STATE/fernet-keys" "$STATE/credential-keys"
  chmod 700 "$STATE/fernet-keys" "$STATE/credential-keys"
  cat > "$CONF" <<CONF
[DEFAULT]
log_file = $LOG
use_stderr = false
debug = false

[database]
connection = sqlite:///$STATE/keystone.db
# Test data: no fsync per commit.
sqlite_synchronous = false

[token]
provider = fernet
expiration = $TOKEN_EXPIRATION

[fernet_tokens]
key_repository = $STATE/fernet-keys
max_active_keys = 3

[fernet_receipts]
key_repository = $STATE/fernet-keys

[credential]
key_repository = $STATE/credential-keys

[identity]
# bcrypt's minimum cost: tests authenticate often and this is not production.
password_hash_rounds = 4

[cache]
enabled = false

[oslo_policy]
enforce_scope = false
enforce_new_defaults = false
CONF
}

bootstrap() {
  local km=("$VENV/bin/keystone-manage" --config-file "$CONF")
  if [[ ! -f "$STATE/.bootstrapped" ]]; then
    log "db_sync, fernet_setup, credential_setup, bootstrap"
    "${km[@]}" db_sync
    "${km[@]}" fernet_setup --keystone-user "$(id -un)" --keystone-group "$(id -gn)"
    "${km[@]}" credential_setup --keystone-user "$(id -un)" --keystone-group "$(id -gn)"
  fi
  # bootstrap is idempotent; it also refreshes the admin password and endpoints.
  "${km[@]}" bootstrap \
    --bootstrap-username admin \
    --bootstrap-password "$KEYSTONE_ADMIN_PASSWORD" \
    --bootstrap-project-name admin \
    --bootstrap-role-name admin \
    --bootstrap-service-name keystone \
    --bootstrap-region-id RegionOne \
    --bootstrap-admin-url "$URL/v3" \
    --bootstrap-internal-url "$URL/v3" \
    --bootstrap-public-url "$URL/v3"
  touch "$STATE/.bootstrapped"
}

serve() {
  if running_pid >/dev/null; then
    log "already running (pid $(running_pid))"
  else
    log "starting Keystone on $URL"
    OS_KEYSTONE_CONFIG_FILES="$CONF" setsid "$VENV/bin/python" "$HERE/serve.py" \
      --host "$HOST" --port "$PORT" --threads "$THREADS" >>"$STATE/server.log" 2>&1 < /dev/null &
    echo $! > "$PIDFILE"
  fi
  local i
  for i in $(seq 1 120); do
    if answers; then return; fi
    running_pid >/dev/null || { tail -n 30 "$STATE/server.log" "$LOG" >&2 || true; die "Keystone exited"; }
    sleep 0.5
  done
  die "Keystone did not answer on $URL/v3 within 60 s"
}

provision() {
  KEYSTONE_URL="$URL" KEYSTONE_ENV_FILE="$STATE/env" "$VENV/bin/python" "$HERE/provision.py"
  log "ready: $URL (env in $STATE/env)"
}

stop() {
  local pid
  if pid="$(running_pid)"; then
    log "stopping pid $pid"
    kill "$pid"
    local i
    for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
  fi
  rm -f "$PIDFILE"
}

case "${1:-start}" in
  start)
    mkdir -p "$STATE"
    install
    configure
    if ! running_pid >/dev/null; then bootstrap; fi
    serve
    provision
    ;;
  stop) stop ;;
  status) [[ -x "$VENV/bin/python" ]] && answers ;;
  clean) stop; rm -rf "$STATE" ;;
  *) die "usage: $0 [start|stop|status|clean]" ;;
esac
