#!/usr/bin/env bash
# Stops the server tests/mongodb/start.sh started (same env) and removes its
# data: tests/mongodb/stop.sh
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DIR=${ZAQAR_MONGODB_DIR:-$ROOT/target/mongodb-test}

if [ -f "$DIR/pid" ]; then
  pid=$(cat "$DIR/pid")
  if kill "$pid" 2>/dev/null; then
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
fi
rm -rf "${DIR:?}"
