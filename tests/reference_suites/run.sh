#!/usr/bin/env bash
# Run the reference implementation's own test suites against zaqar-server.
#
#   tests/reference_suites/run.sh zaqarclient   python-zaqarclient 4.7.0 functional tests
#                                               (noauth, admin_mode; about 10 s)
#   tests/reference_suites/run.sh zaqarclient-keystone
#                                               the same as the client's tox job runs
#                                               them: Keystone, admin credentials
#                                               (about 2.5 min: a token per request)
#   tests/reference_suites/run.sh tempest       zaqar-tempest-plugin 4.3.0 against the
#                                               Keystone of tests/keystone/setup.sh
#                                               (about 3.5 min: one test sleeps 140 s)
#   tests/reference_suites/run.sh osc           `openstack messaging pool|flavor ...`
#                                               against a pooled keystone-mode server
#   tests/reference_suites/run.sh venv          only create/refresh the venv
#
# The suites run from a venv of their own ($REFERENCE_VENV, default .venv-tempest,
# git-ignored), made from requirements.txt here; pip runs only when that file
# changes.  python-zaqarclient's functional tests are not in its wheel: its sdist
# is fetched once with `pip download` into the venv.  Nothing of the reference is
# copied into this repository.
#
# Environment: ZAQAR_SERVER_BIN (default target/debug/zaqar-server),
# ZAQAR_TEST_BACKEND=redis (+ ZAQAR_TEST_REDIS_URL) for the Redis store,
# ZAQAR_TEST_BACKEND=mongodb (+ ZAQAR_TEST_MONGODB_URI) for the MongoDB stores,
# KEYSTONE_URL... or KEYSTONE_STATE_DIR (tempest: where setup.sh wrote its env),
# TEMPEST_CONCURRENCY (default 2), REFERENCE_KEEP=1 to keep the work directory.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
VENV="${REFERENCE_VENV:-$ROOT/.venv-tempest}"
PY="$VENV/bin/python"
CLIENT_VERSION=4.7.0
export ZAQAR_SERVER_BIN="${ZAQAR_SERVER_BIN:-$ROOT/target/debug/zaqar-server}"
export PIP_DISABLE_PIP_VERSION_CHECK=1
export PYTHONDONTWRITEBYTECODE=1

ensure_venv() {
    if [[ ! -x "$PY" ]] || ! "$PY" -c 'import sys' >/dev/null 2>&1; then
        rm -rf "$VENV"
        python3 -m venv "$VENV"
    fi
    local want stamp="$VENV/.reference-suites.sha256"
    want="$( { "$PY" -c 'import sys; print(sys.version)'; cat "$HERE/requirements.txt"; \
               echo "sdist $CLIENT_VERSION"; } | sha256sum | cut -d' ' -f1)"
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" \
          && -d "$VENV/sdist/python_zaqarclient-$CLIENT_VERSION/tests/functional" ]]; then
        echo "reference venv up to date ($VENV)"
        return 0
    fi
    echo "installing the reference suites into $VENV"
    "$PY" -m pip install -q --upgrade pip
    "$PY" -m pip install -q -r "$HERE/requirements.txt"
    rm -rf "$VENV/sdist"
    mkdir -p "$VENV/sdist"
    "$PY" -m pip download -q --no-deps --no-binary :all: -d "$VENV/sdist" \
        "python-zaqarclient==$CLIENT_VERSION"
    tar -xzf "$VENV/sdist/python_zaqarclient-$CLIENT_VERSION.tar.gz" -C "$VENV/sdist"
    echo "$want" >"$stamp"
}

suite="${1:-}"
case "$suite" in
    venv) ensure_venv ;;
    zaqarclient|zaqarclient-keystone)
        ensure_venv
        export ZAQARCLIENT_SDIST="$VENV/sdist/python_zaqarclient-$CLIENT_VERSION"
        exec "$PY" "$HERE/run_suites.py" "$suite" ${REFERENCE_KEEP:+--keep}
        ;;
    tempest)
        ensure_venv
        exec "$PY" "$HERE/run_suites.py" tempest --concurrency "${TEMPEST_CONCURRENCY:-2}" \
            ${REFERENCE_KEEP:+--keep}
        ;;
    osc)
        ensure_venv
        exec "$PY" "$HERE/run_suites.py" osc ${REFERENCE_KEEP:+--keep}
        ;;
    *) echo "usage: $0 zaqarclient|zaqarclient-keystone|tempest|osc|venv" >&2; exit 2 ;;
esac
