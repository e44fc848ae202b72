#!/usr/bin/env bash
# Stops what tests/redis/start.sh started (same arguments and env) and
# removes its data: tests/redis/stop.sh [standalone|cluster|sentinel|all]
set -uo pipefail

DIR=${ZAQAR_REDIS_DIR:-/tmp/zaqar-test-redis}
PORT=${ZAQAR_REDIS_PORT:-6390}
CPORT=${ZAQAR_REDIS_CLUSTER_PORT:-6391}
SPORT=${ZAQAR_REDIS_SENTINEL_PORT:-6394}
SSPORT=${ZAQAR_REDIS_SENTINELS_PORT:-26394}

# Stops the server whose pid file start.sh wrote for PORT (only that pid).
stop_port() {
  local port=$1 pidfile="$DIR/$1/pid"
  if [ -f "$pidfile" ]; then
    local pid
    pid=$(cat "$pidfile")
    if kill "$pid" 2>/dev/null; then
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
  fi
  rm -rf "${DIR:?}/$port"
}

case "${1:-standalone}" in
  standalone) stop_port "$PORT" ;;
  cluster) for p in "$CPORT" $((CPORT + 1)) $((CPORT + 2)); do stop_port "$p"; done ;;
  sentinel) for p in "$SSPORT" $((SSPORT + 1)) $((SSPORT + 2)) "$SPORT" $((SPORT + 1)); do stop_port "$p"; done ;;
  all) "$0" standalone; "$0" cluster; "$0" sentinel ;;
  *) echo "usage: $0 [standalone|cluster|sentinel|all]" >&2; exit 2 ;;
esac
