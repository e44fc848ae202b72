#!/usr/bin/env bash
# Throughput of one zaqar-server with auth_strategy = noauth, then keystone with
# a cached token, on the same SQLite store and the same load (zaqar-bench).
#
#   tests/keystone/setup.sh                 # a real Keystone (writes its env file)
#   cargo build --release -p zaqar -p zaqar-bench --bins
#   tools/bench-keystone.sh [zaqar-bench options...]   # default: -o 4 --stats-readers 4 -t 15
#
# Environment: KEYSTONE_STATE_DIR (default tests/keystone/.state), ZAQAR_BIN_DIR
# (default target/release), BENCH_PORT (default: a free
# port), BENCH_WORK (keep config, store and logs there).  Prints one zaqar-bench
# report per mode; the doc's numbers (doc/source/performance.rst) come from it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${ZAQAR_BIN_DIR:-$ROOT/target/release}"
STATE="${KEYSTONE_STATE_DIR:-$ROOT/tests/keystone/.state}"
PORT="${BENCH_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
[[ -f "$STATE/env" ]] || { echo "no $STATE/env: run tests/keystone/setup.sh first" >&2; exit 1; }
set -a
# shellcheck disable=SC1091
. "$STATE/env"
set +a
LOAD=("$@")
(( ${#LOAD[@]} )) || LOAD=(-o 4 --stats-readers 4 -t 15)

WORK="${BENCH_WORK:-$(mktemp -d)}"
PID=""
cleanup() { [[ -n "$PID" ]] && kill "$PID" 2>/dev/null; wait 2>/dev/null; [[ -n "${BENCH_WORK:-}" ]] || rm -rf "$WORK"; }
trap cleanup EXIT

serve() {
    local auth=$1
    cat >"$WORK/zaqar.conf" <<CONF
[DEFAULT]
auth_strategy = $auth
[drivers]
transport = wsgi
message_store = sqlite
management_store = sqlite
[drivers:transport:wsgi]
bind = 127.0.0.1
port = $PORT
[drivers:message_store:sqlite]
uri = $WORK/zaqar.db
[keystone_authtoken]
www_authenticate_uri = $KEYSTONE_URL
auth_url = $KEYSTONE_URL
auth_type = password
username = $KEYSTONE_SERVICE_USER
password = $KEYSTONE_SERVICE_PASSWORD
project_name = $KEYSTONE_SERVICE_PROJECT
user_domain_name = Default
project_domain_name = Default
CONF
    RUST_LOG=warn "$BIN/zaqar-server" --config-file "$WORK/zaqar.conf" 2>"$WORK/server-$auth.log" &
    PID=$!
    local i
    for (( i=0; i<100; i++ )); do
        [[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/")" == 300 ]] && return 0
        kill -0 "$PID" 2>/dev/null || break
        sleep 0.1
    done
    echo "server did not start" >&2; cat "$WORK/server-$auth.log" >&2; return 1
}

stop() { kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""; }

token="$(curl -fsi -H 'Content-Type: application/json' "$KEYSTONE_AUTH_URL/auth/tokens" -d "{\"auth\":{
  \"identity\":{\"methods\":[\"password\"],\"password\":{\"user\":{\"name\":\"$KEYSTONE_ALICE_USER\",
  \"domain\":{\"name\":\"Default\"},\"password\":\"$KEYSTONE_ALICE_PASSWORD\"}}},
  \"scope\":{\"project\":{\"name\":\"$KEYSTONE_PROJ_A\",\"domain\":{\"name\":\"Default\"}}}}}" \
  | tr -d '\r' | sed -n 's/^[Xx]-[Ss]ubject-[Tt]oken: //p')"
[[ -n "$token" ]] || { echo "could not get a token from $KEYSTONE_AUTH_URL" >&2; exit 1; }

echo "== noauth"
serve ""
"$BIN/zaqar-bench" --url "http://127.0.0.1:$PORT" --project "$KEYSTONE_PROJ_A_ID" --prefill 50 "${LOAD[@]}"
stop
echo "== keystone, cached token"
serve keystone
"$BIN/zaqar-bench" --url "http://127.0.0.1:$PORT" --project "$KEYSTONE_PROJ_A_ID" --token "$token" \
    --prefill 50 "${LOAD[@]}"
stop
