#!/usr/bin/env bash
# Runs Zaqar 23.0.1's own HTTP and WebSocket transport unit tests against our
# server (tools/reference_unit_tests/conftest.py says how), and sorts the
# failures: those that reach into the reference's internals (its storage
# objects, its protocol's attributes), which no other server can pass, and
# the rest, which are differences to look at (or listed in
# doc/source/differences.rst). A development tool, not part of
# ./run_tests.sh: it needs the reference installed in .venv-bench
# (tools/bench-compare.sh installs it) plus its test dependencies.
#
#   tools/reference-unit-tests.sh [pytest args, e.g. -k messages]
#
# Env: ZAQAR_SERVER (target/debug/zaqar-server).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=${BENCH_VENV:-$ROOT/.venv-bench}
"$VENV/bin/python" -c 'import zaqar' 2>/dev/null || {
    echo "the reference is not installed in $VENV: run tools/bench-compare.sh once (or pip install zaqar==23.0.1 there)" >&2
    exit 2
}
"$VENV/bin/pip" install -q pytest ddt oslotest testtools fixtures websocket-client
Z=$("$VENV/bin/python" -c 'import os, zaqar; print(os.path.dirname(zaqar.__file__))')
export ZAQAR_TESTS_CONFIGS_DIR=$Z/tests/etc ZAQAR_TEST_MONGODB=1 ZAQAR_TEST_REDIS=1
export ZAQAR_SERVER=${ZAQAR_SERVER:-$ROOT/target/debug/zaqar-server}
T=$Z/tests/unit/transport
LOG=$(mktemp /tmp/zaqar-refunit-XXXX.log)
cd "$ROOT/tools/reference_unit_tests"
# The pool and flavor tests need a MongoDB for their pools
# (ZAQAR_TEST_MONGODB_URL, e.g. mongodb://127.0.0.1:17217 from
# tests/mongodb/start.sh: our server gets `unreliable`); the faulty-driver
# and auth tests need the reference's own drivers and middleware: not run.
POOLS=(--ignore "$T/wsgi/v2_0/test_pools_new.py" --ignore "$T/wsgi/v2_0/test_flavors_new.py")
[ -n "${ZAQAR_TEST_MONGODB_URL:-}" ] && POOLS=()
# ZAQAR_REFUNIT_STORE=mongodb runs our server on its MongoDB store (at
# ZAQAR_TEST_MONGODB_URL), and then the MongoDB health tests too.
HEALTH=(--ignore "$T/wsgi/v2_0/test_health.py")
[ "${ZAQAR_REFUNIT_STORE:-}" = mongodb ] && HEALTH=()
"$VENV/bin/python" -m pytest -q -p conftest -p no:cacheprovider "$@" \
    "$T/wsgi/v2_0" "$T/websocket/v2" "$T/websocket/test_protocol.py" "${POOLS[@]}" \
    "${HEALTH[@]}" --ignore "$T/wsgi/v2_0/test_auth.py" \
    --ignore "$T/websocket/v2/test_auth.py" -k "not Faulty" > "$LOG" 2>&1 || true
"$VENV/bin/python" "$ROOT/tools/reference_unit_tests/triage.py" "$LOG" "$T"
