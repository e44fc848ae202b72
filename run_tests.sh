#!/usr/bin/env bash
# The one test command: builds the workspace and runs every test suite.
#
# Runs from a fresh clone on a fresh Debian 12 machine (as root, or with sudo):
# installs what is missing, builds, runs the Rust tests, the lints and the
# functional tests against the real binaries, then prints a summary.  Exits
# non-zero when anything failed.
#
# Usage:
#   ./run_tests.sh                 every step (what CI runs)
#   ./run_tests.sh --list          the steps, with what each needs
#   ./run_tests.sh STEP...         only these test steps (and the setup steps
#                                  they need), e.g. ./run_tests.sh cargo-test docs
#   ./run_tests.sh bootstrap       only install what is missing (packages, venv)
#
# Structure: each step is a shell function.  Setup steps (bootstrap, build,
# services) run in this shell and their failure stops the run; test steps run
# in a subshell, and a failure is recorded while the run goes on, so one report
# lists every failing suite.  Services a suite needs (Redis, Keystone, ...) are
# started on ports of their own and stopped on exit through `on_exit_do`; a
# suite that needs a service fails (never skips) when the service is missing.
# To add a suite: write a function and add a line to the STEPS table at the
# bottom.
#
# Environment:
#   SKIP_APT=1        never call apt-get (a missing tool is then an error)
#   PYTEST_ARGS="..." extra arguments for every pytest run (e.g. "-x -k claims")
#   ZAQAR_TEST_PORT_BASE  base of the ports services started here use (default 16300)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$ROOT"

VENV="$ROOT/.venv"
PY="$VENV/bin/python"
PORT_BASE="${ZAQAR_TEST_PORT_BASE:-16300}"
# Ports of services this script may start; never the standard ones (6379, 5000...).
REDIS_TEST_PORT="${REDIS_TEST_PORT:-$((PORT_BASE + 79))}"
KEYSTONE_TEST_PORT="${KEYSTONE_TEST_PORT:-$((PORT_BASE + 55))}"
MONGODB_TEST_PORT="${MONGODB_TEST_PORT:-$((PORT_BASE + 17))}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export PIP_DISABLE_PIP_VERSION_CHECK=1
export PYTHONDONTWRITEBYTECODE=1
export ZAQAR_SERVER_BIN="${ZAQAR_SERVER_BIN:-$ROOT/target/debug/zaqar-server}"

RESULTS=()        # "PASS|FAIL|SKIP<TAB>name<TAB>seconds"
CLEANUPS=()       # commands run in reverse order on exit
CURRENT_STEP=""
FAILED=0
START_TS=$(date +%s)

log() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
warn() { printf 'WARNING: %s\n' "$*" >&2; }

# Register a command to run when the script exits (services, temp dirs).
on_exit_do() { CLEANUPS+=("$1"); }

print_summary() {
    local total=$(( $(date +%s) - START_TS ))
    echo
    echo "================================ summary ================================"
    local r
    for r in "${RESULTS[@]}"; do
        IFS=$'\t' read -r status name secs <<<"$r"
        printf '  %-5s %-45s %6ss\n' "$status" "$name" "$secs"
    done
    if [[ -n "$CURRENT_STEP" ]]; then
        printf '  %-5s %-45s\n' "FAIL" "$CURRENT_STEP (setup step; run stopped)"
    fi
    echo "  total time: ${total}s"
    if (( FAILED )) || [[ -n "$CURRENT_STEP" ]]; then
        echo "  RESULT: FAILED"
    else
        echo "  RESULT: OK"
    fi
    echo "========================================================================="
}

on_exit() {
    local rc=$?
    set +e
    local i
    for (( i=${#CLEANUPS[@]}-1; i>=0; i-- )); do
        eval "${CLEANUPS[$i]}" >/dev/null 2>&1
    done
    print_summary
    if (( rc == 0 && FAILED )); then rc=1; fi
    exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# run_step NAME FUNC [ARGS...]: a setup step, run in this shell (it may start
# services and register cleanups).  Its failure stops the whole run.
run_step() {
    local name=$1; shift
    local t0; t0=$(date +%s)
    log "$name"
    CURRENT_STEP="$name"
    "$@"
    CURRENT_STEP=""
    RESULTS+=("PASS"$'\t'"$name"$'\t'"$(( $(date +%s) - t0 ))")
}

# run_check NAME FUNC [ARGS...]: a test step, run in a subshell with `set -e`;
# its failure is recorded and the run continues.
run_check() {
    local name=$1; shift
    local t0 rc; t0=$(date +%s)
    log "$name"
    set +e
    ( set -e; "$@" )
    rc=$?
    set -e
    local status=PASS
    if (( rc != 0 )); then status=FAIL; FAILED=1; warn "$name failed (exit $rc)"; fi
    RESULTS+=("$status"$'\t'"$name"$'\t'"$(( $(date +%s) - t0 ))")
}

skip() { RESULTS+=("SKIP"$'\t'"$1"$'\t'"0"); log "$1: skipped ($2)"; }

as_root() {
    if (( EUID == 0 )); then "$@"
    elif command -v sudo >/dev/null 2>&1; then sudo "$@"
    else echo "need root (or sudo) to run: $*" >&2; return 1
    fi
}

# ---------------------------------------------------------------------------
# Setup steps
# ---------------------------------------------------------------------------

# curl, lsb-release, git: the devstack step (devstack's functions and our
# plugin call them).
# openssl: the certificates of the Redis TLS test.
APT_PACKAGES=(build-essential openssl python3-venv redis-server curl lsb-release git)

install_system_packages() {
    local missing=() p
    for p in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$p")
    done
    if (( ${#missing[@]} == 0 )); then
        echo "system packages present: ${APT_PACKAGES[*]}"
        return 0
    fi
    if [[ "${SKIP_APT:-0}" == 1 ]]; then
        echo "missing packages (SKIP_APT=1): ${missing[*]}" >&2
        return 1
    fi
    echo "installing: ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        --no-install-recommends "${missing[@]}"
    # The Debian package starts a Redis on 6379; our suites use their own.
}

check_toolchain() {
    command -v cargo >/dev/null 2>&1 || {
        echo "cargo not found: this machine needs a Rust toolchain (rustup)" >&2
        return 1
    }
    cargo --version
    cargo clippy --version >/dev/null 2>&1 || warn "cargo clippy is not installed"
    cargo fmt --version >/dev/null 2>&1 || warn "cargo fmt (rustfmt) is not installed"
}

python_requirement_files() {
    echo "$ROOT/tests/requirements.txt"
    if [[ -f "$ROOT/doc/requirements.txt" ]]; then echo "$ROOT/doc/requirements.txt"; fi
}

# Create/refresh .venv; pip runs only when the requirement files changed
# (a hash stamp in the venv), so a warm run costs nothing.
setup_venv() {
    local host_py
    host_py="$(command -v python3)"
    if [[ ! -x "$PY" ]] || ! "$PY" -c 'import sys' >/dev/null 2>&1; then
        rm -rf "$VENV"
        "$host_py" -m venv "$VENV"
    fi
    local files=() f
    while IFS= read -r f; do files+=("$f"); done < <(python_requirement_files)
    local want stamp="$VENV/.requirements.sha256"
    want="$( { "$PY" -c 'import sys; print(sys.version)'; cat "${files[@]}"; \
               [[ -f "$ROOT/doc/source/conf.py" ]] && echo docs; true; } | sha256sum | cut -d' ' -f1)"
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
        echo "venv up to date ($VENV)"
        return 0
    fi
    "$PY" -m pip install -q --upgrade pip
    local args=() 
    for f in "${files[@]}"; do args+=(-r "$f"); done
    # Docs need Sphinx even when doc/ has no requirements file of its own.
    if [[ -f "$ROOT/doc/source/conf.py" && ! -f "$ROOT/doc/requirements.txt" ]]; then
        args+=(sphinx)
    fi
    "$PY" -m pip install -q "${args[@]}"
    echo "$want" >"$stamp"
}

cargo_build() {
    # Not --locked: a Cargo.lock that lags Cargo.toml is resolved (and reported)
    # rather than failing the whole run.
    local before
    before="$(sha256sum Cargo.lock 2>/dev/null || true)"
    cargo build --workspace --bins
    if [[ "$(sha256sum Cargo.lock 2>/dev/null || true)" != "$before" ]]; then
        warn "Cargo.lock was out of date with Cargo.toml and has been updated: commit it"
    fi
    [[ -x "$ZAQAR_SERVER_BIN" ]] || { echo "no server binary at $ZAQAR_SERVER_BIN" >&2; return 1; }
}

# Start a private Redis (no persistence) on $1; stopped on exit.  Exports
# ZAQAR_TEST_REDIS_URL for the suites.  Not used by the default steps yet: add
# `run_step "start redis" start_redis "$REDIS_TEST_PORT"` where a suite needs it.
start_redis() {
    local port=$1 dir
    dir="$(mktemp -d)"
    on_exit_do "rm -rf '$dir'"
    redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
        --dir "$dir" --daemonize no >"$dir/redis.log" 2>&1 &
    local pid=$!
    on_exit_do "kill $pid; wait $pid"
    local i
    for (( i=0; i<100; i++ )); do
        if redis-cli -p "$port" ping 2>/dev/null | grep -q PONG; then
            export ZAQAR_TEST_REDIS_URL="redis://127.0.0.1:$port"
            echo "redis up on 127.0.0.1:$port (pid $pid)"
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    cat "$dir/redis.log" >&2
    return 1
}

# Start the Redis topologies of tests/redis (one server with appendfsync
# always, a three-master Cluster, a master+replica watched by three
# sentinels) on ports PORT_BASE+79..+87 (cluster bus ports +10000), data
# under target/redis-test; stopped on exit.  Exports ZAQAR_TEST_REDIS_URL,
# ZAQAR_TEST_REDIS_CLUSTER_URL and ZAQAR_TEST_REDIS_SENTINEL_URL, so that
# `cargo test` runs the Redis driver's conformance suites on all three and the
# functional suite can run a second time on Redis.
start_redis_topologies() {
    export ZAQAR_REDIS_DIR="$ROOT/target/redis-test"
    export ZAQAR_REDIS_PORT="$REDIS_TEST_PORT"
    export ZAQAR_REDIS_CLUSTER_PORT=$((REDIS_TEST_PORT + 1))
    export ZAQAR_REDIS_SENTINEL_PORT=$((REDIS_TEST_PORT + 4))
    export ZAQAR_REDIS_SENTINELS_PORT=$((REDIS_TEST_PORT + 6))
    # Leftovers of an interrupted run (pid files under ZAQAR_REDIS_DIR) first.
    bash "$ROOT/tests/redis/stop.sh" all >/dev/null 2>&1 || true
    on_exit_do "bash '$ROOT/tests/redis/stop.sh' all"
    local env_lines
    env_lines="$(bash "$ROOT/tests/redis/start.sh" all)"
    eval "$env_lines"
    echo "$env_lines"
}

# Start SecantusDB (tests/mongodb: a MongoDB-wire server on WiredTiger, from
# PyPI into a venv under target/, presenting itself as a one-node replica set)
# on port PORT_BASE+17, data under target/mongodb-test; stopped on exit.
# Exports ZAQAR_TEST_MONGODB_URI (the MongoDB driver's suites in `cargo test`,
# the functional suite's third run) and ZAQAR_TEST_SECANTUSD (the fault and
# durability tests start servers of their own with it).
start_mongodb() {
    export ZAQAR_MONGODB_PORT="$MONGODB_TEST_PORT"
    export ZAQAR_MONGODB_DIR="$ROOT/target/mongodb-test"
    bash "$ROOT/tests/mongodb/stop.sh" >/dev/null 2>&1 || true
    on_exit_do "bash '$ROOT/tests/mongodb/stop.sh'"
    local env_lines
    env_lines="$(bash "$ROOT/tests/mongodb/start.sh")"
    eval "$env_lines"
    echo "$env_lines"
}

# Keystone needs a Python with a working venv module (setup.sh builds its own
# venv from PyPI); without one the Keystone suites are skipped.
python_venv_works() {
    local dir rc=0
    dir="$(mktemp -d)"
    python3 -m venv "$dir/v" >/dev/null 2>&1 || rc=1
    rm -rf "$dir"
    return "$rc"
}

# Start a private Keystone (tests/keystone/setup.sh: Keystone 30 in a venv,
# SQLite, provisioned users) on its own port and state directory; stopped on
# exit.  Exports the KEYSTONE_* variables of its env file, which the
# middleware's Keystone tests (cargo test) and tests/functional_keystone read.
start_keystone() {
    export KEYSTONE_PORT="$KEYSTONE_TEST_PORT"
    export KEYSTONE_STATE_DIR="$ROOT/target/keystone-state"
    on_exit_do "KEYSTONE_PORT=$KEYSTONE_PORT KEYSTONE_STATE_DIR='$KEYSTONE_STATE_DIR' bash '$ROOT/tests/keystone/setup.sh' stop"
    bash "$ROOT/tests/keystone/setup.sh" start
    set -a
    # shellcheck disable=SC1091
    . "$KEYSTONE_STATE_DIR/env"
    set +a
    echo "keystone up at $KEYSTONE_URL"
}

# ---------------------------------------------------------------------------
# Test steps
# ---------------------------------------------------------------------------

cargo_test() { cargo test --workspace; }
cargo_clippy() { cargo clippy --workspace --all-targets -- -D warnings; }
cargo_fmt() { cargo fmt --all -- --check; }

# The declared rust-version builds the workspace, where that toolchain is
# installed (rustup); zaqar/tests/msrv.rs checks in every run that it is
# what Cargo.lock needs.
check_msrv() {
    local rv
    rv="$(sed -n 's/^rust-version = "\(.*\)"/\1/p' "$ROOT/Cargo.toml" | head -1)"
    if command -v rustup >/dev/null && rustup toolchain list | grep -q "^$rv[.-]"; then
        cargo "+$rv" check --locked --workspace --all-targets
    else
        echo "rust $rv is not installed (rustup toolchain install $rv): build with it skipped"
    fi
}

pytest_suite() {
    local dir=$1
    # shellcheck disable=SC2086
    "$PY" -m pytest "$dir" -ra --durations=10 --timeout=300 ${PYTEST_ARGS:-}
}

# The functional suite again, with Redis as the message store (every server
# gets a key prefix of its own in the standalone Redis; see zaqar_testlib.py).
pytest_functional_redis() {
    ZAQAR_TEST_BACKEND=redis pytest_suite tests/functional
}

# The functional suite a third time, with MongoDB as both stores (every server
# gets databases of its own on the SecantusDB started above).
pytest_functional_mongodb() {
    ZAQAR_TEST_BACKEND=mongodb pytest_suite tests/functional
}

# The reference implementation's own suites, from a venv of their own
# (.venv-tempest, made on first use; tests/reference_suites/run.sh):
# python-zaqarclient 4.7.0's functional tests (noauth, ~10 s; and with the
# admin's Keystone credentials as the client's own gate runs them, ~1 min, the
# pool and flavor tests included), and zaqar-tempest-plugin 4.3.0 against the Keystone started above (~3.5 min, one
# of its tests sleeps 140 s).  Known failures are listed, with their reasons,
# in tests/reference_suites/expected-failures-*.txt.
reference_suite() { bash "$ROOT/tests/reference_suites/run.sh" "$1"; }
reference_suite_redis() { ZAQAR_TEST_BACKEND=redis reference_suite "$1"; }
reference_suite_mongodb() { ZAQAR_TEST_BACKEND=mongodb reference_suite "$1"; }

# The devstack plugin run for real (tests/devstack/run.sh): its phases stack
# install/post-config/extra/test-config, unstack and clean, with the functions
# of a pinned devstack (the local mirror, or DEVSTACK_REPO), against the
# Keystone and Redis started above and target/debug/zaqar-server; then the
# openstack CLI, a few python-zaqarclient functional tests and
# zaqar-tempest-plugin's queue tests against the endpoint devstack registered.
# systemctl and sudo are test doubles (tests/devstack/bin). About 1.5 min.
devstack_suite() { ZAQAR_TEST_PORT_BASE="$PORT_BASE" bash "$ROOT/tests/devstack/run.sh"; }

# The API contract (tests/contract): the OpenAPI document the server serves,
# checked by openapi-spec-validator, and schemathesis checking every answer
# against it (no 5xx; status, content type and body as documented),
# stateless and along the document's links.  Short here; a long run on
# demand: ZAQAR_CONTRACT_EXAMPLES=1000 ZAQAR_CONTRACT_MAX_TIME=1800.
contract_suite() { pytest_suite tests/contract; }
contract_suite_redis() { ZAQAR_TEST_BACKEND=redis pytest_suite tests/contract; }
contract_suite_mongodb() { ZAQAR_TEST_BACKEND=mongodb pytest_suite tests/contract; }

# The fault harness (tests/faults/harness.py): load through zaqar-server
# processes while the servers and the store are killed and the store's
# connections slowed and cut, then an exact account of every message (every
# acknowledged message consumed once or still present, none in two live
# claims, none deleted and back, every 5xx in a fault window).  One short
# schedule per store: two servers on one Redis (AOF always) and on one
# SecantusDB (its venv made by tests/mongodb/start.sh on first use), one
# server owning a SQLite file, two servers on a Sentinel-watched master and
# replica (failover by kill -9 of the master; wait_replicas 0, where writes
# acknowledged just before the kill may be lost, measured; and 1, where
# none may).  About 3 minutes; `--schedule long` on demand.  Ports
# PORT_BASE+90..+103.
faults_suite() {
    ZAQAR_TEST_PORT_BASE="$PORT_BASE" "$PY" "$ROOT/tests/faults/harness.py" \
        --store all --schedule short --out "$ROOT/target/faults"
}

# The API reference pages are generated first, from the OpenAPI document and
# the samples of a server run (tools/api_ref.py), so they cannot drift.
docs_build() {
    rm -rf "$ROOT/doc/build/html" "$ROOT/doc/source/api-ref"
    "$PY" "$ROOT/tools/api_ref.py"
    # The configuration reference is rendered by the binary (doc/source/_ext).
    ZAQAR_SERVER_BIN="${ZAQAR_SERVER_BIN:-$ROOT/target/debug/zaqar-server}" \
        "$VENV/bin/sphinx-build" -W --keep-going -b html "$ROOT/doc/source" "$ROOT/doc/build/html"
}

# ---------------------------------------------------------------------------

# ---------------------------------------------------------------------------
# The steps: name | what it needs (setup steps, in order) | function [args]
# ---------------------------------------------------------------------------

STEPS=(
    "cargo-test|build redis mongodb keystone|cargo_test"
    "clippy|build|cargo_clippy"
    "fmt||cargo_fmt"
    "msrv||check_msrv"
    "functional|build|pytest_suite tests/functional"
    "functional-redis|build redis|pytest_functional_redis"
    "functional-mongodb|build mongodb|pytest_functional_mongodb"
    "functional-keystone|build keystone|pytest_suite tests/functional_keystone"
    "contract|build|contract_suite"
    "contract-redis|build redis|contract_suite_redis"
    "contract-mongodb|build mongodb|contract_suite_mongodb"
    "faults|build|faults_suite"
    "zaqarclient|build|reference_suite zaqarclient"
    "zaqarclient-redis|build redis|reference_suite_redis zaqarclient"
    "zaqarclient-mongodb|build mongodb|reference_suite_mongodb zaqarclient"
    "zaqarclient-keystone|build keystone|reference_suite zaqarclient-keystone"
    "tempest|build keystone|reference_suite tempest"
    "osc|build keystone|reference_suite osc"
    "devstack|build redis keystone|devstack_suite"
    "docs|build|docs_build"
)

# The setup steps, in the order they run: name | title | function.
SETUPS=(
    "build|cargo build|cargo_build"
    "redis|start redis (standalone, cluster, sentinel)|start_redis_topologies"
    "mongodb|start mongodb (secantusdb)|start_mongodb"
    "keystone|start keystone|start_keystone"
)

bootstrap() {
    run_step "system packages" install_system_packages
    run_step "rust toolchain" check_toolchain
    run_step "python venv" setup_venv
}

list_steps() {
    local row name needs fn
    echo "test steps (./run_tests.sh STEP...):"
    for row in "${STEPS[@]}"; do
        IFS='|' read -r name needs fn <<<"$row"
        printf '  %-22s needs: %s\n' "$name" "${needs:-nothing}"
    done
    echo "setup steps (run as needed): bootstrap (always)$(for row in "${SETUPS[@]}"; do IFS='|' read -r name _ _ <<<"$row"; printf ', %s' "$name"; done)"
}

main() {
    local selected=("$@") row name needs fn title
    if [[ "${1:-}" == "--list" || "${1:-}" == "-l" ]]; then
        trap - EXIT
        list_steps
        return 0
    fi
    if [[ "${1:-}" == "bootstrap" && $# -eq 1 ]]; then
        bootstrap
        return 0
    fi
    # Which test steps, and which setup steps they need.
    local wanted=() needed=" "
    for row in "${STEPS[@]}"; do
        IFS='|' read -r name needs fn <<<"$row"
        if (( ${#selected[@]} == 0 )) || [[ " ${selected[*]} " == *" $name "* ]]; then
            wanted+=("$row")
            needed+="$needs "
        fi
    done
    local known=" " s
    for row in "${STEPS[@]}"; do IFS='|' read -r name _ _ <<<"$row"; known+="$name "; done
    for s in "${selected[@]}"; do
        if [[ "$known" != *" $s "* ]]; then
            trap - EXIT
            echo "run_tests.sh: unknown step $s" >&2
            list_steps >&2
            return 2
        fi
    done
    bootstrap
    for row in "${SETUPS[@]}"; do
        IFS='|' read -r name title fn <<<"$row"
        if [[ "$needed" == *" $name "* ]]; then
            if [[ "$name" == keystone ]] && ! python_venv_works; then
                echo "python3 cannot create a venv: Keystone (and the suites that need it) cannot run" >&2
                return 1
            fi
            # shellcheck disable=SC2086
            run_step "$title" $fn
        fi
    done
    # Tell the suites which services they must find (a missing one fails them).
    local require=()
    [[ "$needed" == *" redis "* ]] && require+=(redis)
    [[ "$needed" == *" mongodb "* ]] && require+=(mongodb)
    [[ "$needed" == *" keystone "* ]] && require+=(keystone)
    ZAQAR_TEST_REQUIRE="$(IFS=,; echo "${require[*]}")"
    export ZAQAR_TEST_REQUIRE
    for row in "${wanted[@]}"; do
        IFS='|' read -r name needs fn <<<"$row"
        # shellcheck disable=SC2086
        run_check "$name" $fn
    done
}

main "$@"
