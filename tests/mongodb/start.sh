#!/usr/bin/env bash
# Starts a throw-away MongoDB-wire server for the MongoDB driver's tests:
# SecantusDB (PyPI `secantusdb`, WiredTiger storage, presenting itself as
# the primary of a one-node replica set `secantus`), bound to 127.0.0.1 on
# a port of its own (never the machine's 27017), and prints the environment
# the tests read:
#
#   eval "$(tests/mongodb/start.sh)"
#   cargo test -p zaqar storage::mongodb
#   tests/mongodb/stop.sh
#
# Env (all optional):
#   ZAQAR_MONGODB_PORT  port (17217)
#   ZAQAR_MONGODB_DIR   data, config, pid and log (target/mongodb-test)
#   ZAQAR_MONGODB_VENV  the venv SecantusDB is installed into
#                       (target/secantusdb-venv; created with pip if missing)
#
# Prints `export ZAQAR_TEST_MONGODB_URI=mongodb://127.0.0.1:<port>/?replicaSet=secantus`
# and `export ZAQAR_TEST_SECANTUSD=<venv>/bin/secantusd-py` (the fault and
# durability tests start, kill -9 and restart servers of their own with it).
# Starting a server that already answers is a no-op. Durability: the server
# runs with its WiredTiger journal on; writes with `j: true` (the driver's
# default write concern) are fsynced before they are acknowledged.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PORT=${ZAQAR_MONGODB_PORT:-17217}
DIR=${ZAQAR_MONGODB_DIR:-$ROOT/target/mongodb-test}
VENV=${ZAQAR_MONGODB_VENV:-$ROOT/target/secantusdb-venv}
HOST=127.0.0.1
# The release the tests were written against; newer ones may differ.
SECANTUS_VERSION=${ZAQAR_SECANTUS_VERSION:-0.7.0b3}

if [ ! -x "$VENV/bin/secantusd-py" ]; then
  python3 -m venv "$VENV" >&2
  "$VENV/bin/pip" install -q "secantusdb==$SECANTUS_VERSION" >&2
fi

up() {
  "$VENV/bin/python" - "$PORT" <<'PY' 2>/dev/null
import sys
from pymongo import MongoClient
c = MongoClient(f"mongodb://127.0.0.1:{sys.argv[1]}/?directConnection=true", serverSelectionTimeoutMS=300)
sys.exit(0 if c.admin.command("ping").get("ok") else 1)
PY
}

if ! up; then
  mkdir -p "$DIR/data"
  # An explicit --config stops SecantusDB from picking up a secantusd.toml
  # from the working directory or the home directory.
  cat >"$DIR/secantusd.toml" <<CONF
[server]
host = "$HOST"
port = $PORT
storage_path = "$DIR/data"
log_level = "WARNING"

[oplog]
# Kept short: nothing here reads the oplog, and a long one slows a test
# server that takes thousands of writes.
retention_seconds = 120
max_entries = 5000

[storage]
# Each test makes databases of its own, so the server ends up with thousands
# of tables; with a 256M cache, WiredTiger's eviction stalled once on a full
# cache while SecantusDB held its catalogue lock, and every later command
# waited for ever. A cache this size is not filled by a whole CI run.
cache_size = "1G"
# The TTL monitor runs every 10 s (mongod: 60 s); queries filter by time anyway.
ttl_sweep_seconds = 10.0
CONF
  # setsid: the server outlives this shell and is not in its process group.
  setsid "$VENV/bin/secantusd-py" --config "$DIR/secantusd.toml" \
    >"$DIR/log" 2>&1 </dev/null &
  echo $! >"$DIR/pid"
  for _ in $(seq 1 150); do up && break; sleep 0.2; done
  up || { echo "start.sh: SecantusDB on port $PORT did not come up; see $DIR/log" >&2; exit 1; }
fi
echo "export ZAQAR_TEST_MONGODB_URI=mongodb://$HOST:$PORT/?replicaSet=secantus"
echo "export ZAQAR_TEST_SECANTUSD=$VENV/bin/secantusd-py"
