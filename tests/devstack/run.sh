#!/usr/bin/env bash
# The devstack plugin (devstack/plugin.sh, devstack/settings) run for real:
# its phases `stack install`, `stack post-config`, `stack extra`, `stack
# test-config`, `unstack` and `clean`, with devstack's own functions (iniset,
# run_process, stop_process, is_service_enabled, get_or_create_service,
# create_service_user, configure_keystone_authtoken_middleware, pip_install_gr,
# write_clouds_yaml, ...) from a pinned devstack checkout, against the test's
# Keystone (tests/keystone/setup.sh), the test's Redis and our binary; then
# python-zaqarclient's functional tests (a few) and zaqar-tempest-plugin (a
# small subset) against the service devstack registered; then unstack and
# clean, checking that the server stopped and what clean must remove is gone.
#
#   tests/devstack/run.sh          (run_tests.sh's `devstack` step)
#
# Needs: target/debug/zaqar-server (ZAQAR_SERVER_BIN), a Keystone (KEYSTONE_URL...
# exported by run_tests.sh, or KEYSTONE_STATE_DIR/env of tests/keystone/setup.sh),
# a Redis (ZAQAR_TEST_REDIS_URL), and the reference suites' venv (made here with
# tests/reference_suites/run.sh venv when missing).
#
# devstack: commit $DEVSTACK_PIN of DEVSTACK_REPO (a git URL or a local
# repository, bare or not; default: the local mirror when this machine has one,
# else https://opendev.org/openstack/devstack), unpacked under
# target/devstack-src/<pin>. Nothing of devstack is kept in this repository.
#
# What is a stand-in (everything else is devstack's code and our plugin):
# tests/devstack/phases.sh runs the steps of stack.sh/unstack.sh/clean.sh the
# plugin needs (see its header: those scripts install the whole cloud and
# refuse root), and tests/devstack/bin holds test doubles of `systemctl` (the
# machine has no systemd as PID 1: it runs the devstack@ units devstack writes)
# and `sudo` (every path is the test's own). Everything the phases write goes
# under target/devstack-test (kept for inspection; removed at the next run),
# the devstack venv (python-openstackclient, python-zaqarclient) is
# target/devstack-venv (kept: pip runs once).
#
# Environment: ZAQAR_TEST_PORT_BASE (ports +60 HTTP, +61 WebSocket),
# DEVSTACK_REPO, ZAQAR_DEVSTACK_TEMPEST_REGEX, ZAQAR_DEVSTACK_ZAQARCLIENT_REGEX.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
# devstack master of 2026-07-17 ("Merge 'Collect Guru Meditation Reports on
# failed job runs'"). Move it on purpose, with a run of this test.
DEVSTACK_PIN=493835a61a996731a7031861f80c7629acd5d6f2
DEVSTACK_MIRROR=/work/.mirror/openstack+devstack/repo
if [[ -z "${DEVSTACK_REPO:-}" ]]; then
    if [[ -d "$DEVSTACK_MIRROR" ]]; then
        DEVSTACK_REPO=$DEVSTACK_MIRROR
    else
        DEVSTACK_REPO=https://opendev.org/openstack/devstack
    fi
fi
PORT_BASE="${ZAQAR_TEST_PORT_BASE:-16300}"
ZAQAR_PORT=$((PORT_BASE + 60))
ZAQAR_WS_PORT=$((PORT_BASE + 61))
SERVER_BIN="${ZAQAR_SERVER_BIN:-$ROOT/target/debug/zaqar-server}"
WORK="$ROOT/target/devstack-test"
DEVSTACK_VENV_DIR="$ROOT/target/devstack-venv"
REF_VENV="${REFERENCE_VENV:-$ROOT/.venv-tempest}"
CLIENT_VERSION=4.7.0
OSC_VERSION=8.2.0
TEMPEST_REGEX="${ZAQAR_DEVSTACK_TEMPEST_REGEX:-^zaqar_tempest_plugin\.tests\.v2\.test_queues\.}"
ZAQARCLIENT_REGEX="${ZAQAR_DEVSTACK_ZAQARCLIENT_REGEX:-tests\.functional\.queues\.v2\.test_(health|claims)\.}"

log() { printf '\n--- devstack test: %s\n' "$*"; }
die() { echo "devstack test: $*" >&2; exit 1; }

# -- what the test needs ------------------------------------------------------

[[ -x "$SERVER_BIN" ]] || die "no zaqar-server at $SERVER_BIN (cargo build first)"
if [[ -z "${KEYSTONE_URL:-}" ]]; then
    env_file="${KEYSTONE_STATE_DIR:-$ROOT/tests/keystone/.state}/env"
    [[ -f "$env_file" ]] || die "no Keystone: run through ./run_tests.sh devstack, or start one with tests/keystone/setup.sh (no $env_file)"
    set -a
    # shellcheck disable=SC1090
    . "$env_file"
    set +a
fi
[[ -n "${ZAQAR_TEST_REDIS_URL:-}" ]] || die "no Redis: ZAQAR_TEST_REDIS_URL is not set (run through ./run_tests.sh devstack)"
bash "$ROOT/tests/reference_suites/run.sh" venv
PY="$REF_VENV/bin/python"

# -- devstack at the pin --------------------------------------------------------

SRC="$ROOT/target/devstack-src/$DEVSTACK_PIN"
if [[ ! -f "$SRC/stack.sh" ]]; then
    log "devstack $DEVSTACK_PIN from $DEVSTACK_REPO"
    rm -rf "$SRC" "$SRC.git"
    mkdir -p "$SRC"
    if git --git-dir="$DEVSTACK_REPO" cat-file -e "$DEVSTACK_PIN^{commit}" 2>/dev/null; then
        git --git-dir="$DEVSTACK_REPO" archive "$DEVSTACK_PIN" | tar -x -C "$SRC"
    elif git --git-dir="$DEVSTACK_REPO/.git" cat-file -e "$DEVSTACK_PIN^{commit}" 2>/dev/null; then
        git --git-dir="$DEVSTACK_REPO/.git" archive "$DEVSTACK_PIN" | tar -x -C "$SRC"
    elif git clone -q --bare "$DEVSTACK_REPO" "$SRC.git" \
            && git --git-dir="$SRC.git" cat-file -e "$DEVSTACK_PIN^{commit}"; then
        git --git-dir="$SRC.git" archive "$DEVSTACK_PIN" | tar -x -C "$SRC"
        rm -rf "$SRC.git"
    else
        rm -rf "$SRC" "$SRC.git"
        die "cannot get devstack $DEVSTACK_PIN from $DEVSTACK_REPO: set DEVSTACK_REPO to a clone of https://opendev.org/openstack/devstack (a local path or a URL) that has this commit"
    fi
fi

# -- the work directory -----------------------------------------------------------

rm -rf "$WORK"
mkdir -p "$WORK"/{etc,systemd,systemd-state,requirements}
# devstack's tree with our local.conf, as a user has it.
cp -a "$SRC" "$WORK/devstack"
TOP_DIR="$WORK/devstack"
DEST="$WORK/opt-stack"
mkdir -p "$DEST"
# enable_plugin's clone: the directory is there, so fetch_plugins (git_clone)
# uses this working tree as it is.
ln -s "$ROOT" "$DEST/zaqar"

REDIS_URI="$ZAQAR_TEST_REDIS_URL?key_prefix=devstack-$(date +%s)-$$"
export ZAQAR_DEVSTACK_WORK="$WORK"
export ZAQAR_DEVSTACK_URL="http://127.0.0.1:$ZAQAR_PORT"
export ZAQAR_DEVSTACK_WS_URL="ws://127.0.0.1:$ZAQAR_WS_PORT"
export ZAQAR_DEVSTACK_PORT="$ZAQAR_PORT" ZAQAR_DEVSTACK_WS_PORT="$ZAQAR_WS_PORT"
export ZAQAR_DEVSTACK_REDIS_URI="$REDIS_URI"
export ZAQAR_DEVSTACK_CONF="$WORK/etc/zaqar/zaqar.conf"
export ZAQAR_DEVSTACK_CLOUDS_YAML="$WORK/etc/openstack/clouds.yaml"
export ZAQAR_DEVSTACK_TEMPEST_DIR="$WORK/tempest"
export ZAQAR_DEVSTACK_TEMPEST_REGEX="$TEMPEST_REGEX"
export ZAQAR_DEVSTACK_ZAQARCLIENT_REGEX="$ZAQARCLIENT_REGEX"
export ZAQARCLIENT_SDIST="$REF_VENV/sdist/python_zaqarclient-$CLIENT_VERSION"
# For phases.sh and the test doubles.
export TOP_DIR
export ZAQAR_DEVSTACK_SYSTEMD_DIR="$WORK/systemd"
export ZAQAR_DEVSTACK_SYSTEMD_STATE="$WORK/systemd-state"
export ZAQAR_DEVSTACK_CLIENT_CONF_DIR="$WORK/etc/openstack"
export ZAQAR_DEVSTACK_KEYSTONE_URI="$KEYSTONE_URL"
# git_clone marks the plugin's directory safe in the system gitconfig: this
# one instead of /etc/gitconfig.
export GIT_CONFIG_SYSTEM="$WORK/etc/gitconfig"
UNIT="devstack@zaqar-wsgi.service"

# The requirements repository devstack reads pins from (pip_install_gr):
# only the two packages the phases install, at the reference suites' pins.
cat >"$WORK/requirements/global-requirements.txt" <<EOF
python-openstackclient>=$OSC_VERSION
python-zaqarclient>=$CLIENT_VERSION
EOF
cat >"$WORK/requirements/upper-constraints.txt" <<EOF
python-openstackclient===$OSC_VERSION
python-zaqarclient===$CLIENT_VERSION
EOF

cat >"$TOP_DIR/local.conf" <<EOF
[[local|localrc]]
DEST=$DEST
DATA_DIR=$DEST/data
SERVICE_DIR=$DEST/status
LOGFILE=$WORK/stack.log
STACK_USER=$(id -un)
HOST_IP=127.0.0.1
SERVICE_HOST=127.0.0.1
SERVICE_LISTEN_ADDRESS=127.0.0.1
ADMIN_PASSWORD=$KEYSTONE_ADMIN_PASSWORD
SERVICE_PASSWORD=$KEYSTONE_SERVICE_PASSWORD
DEVSTACK_VENV=$DEVSTACK_VENV_DIR
REQUIREMENTS_DIR=$WORK/requirements
ERROR_ON_CLONE=True
ENABLED_SERVICES=key,tempest
TEMPEST_CONFIG_DIR=$WORK/tempest/etc

enable_plugin zaqar file://$ROOT
ZAQAR_BIN=$SERVER_BIN
ZAQAR_BIN_DIR=$WORK/bin
ZAQAR_CONF_DIR=$WORK/etc/zaqar
ZAQAR_BACKEND=redis
ZAQAR_REDIS_URI=$REDIS_URI
ZAQAR_INSTALL_REDIS=False
ZAQAR_INSTALL_TEMPEST_PLUGIN=False
ZAQAR_SERVICE_PORT=$ZAQAR_PORT
ZAQAR_WEBSOCKET_PORT=$ZAQAR_WS_PORT
ZAQAR_START_TIMEOUT=60
EOF

# The test doubles first on PATH; a bare PATH otherwise (no venv of ours).
PHASE_PATH="$HERE/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
phases() {
    local mode=$1
    log "phases.sh $mode (output: $WORK/$mode.log)"
    if ! env PATH="$PHASE_PATH" PIP_DISABLE_PIP_VERSION_CHECK=1 \
            bash "$HERE/phases.sh" "$mode" >"$WORK/$mode.log" 2>&1; then
        tail -n 60 "$WORK/$mode.log" >&2
        die "phases.sh $mode failed (see $WORK/$mode.log)"
    fi
    grep -E '^(phase: |Installing|Configuring|Starting|zaqar-server is up)' "$WORK/$mode.log" || true
}

server_pid() { cat "$ZAQAR_DEVSTACK_SYSTEMD_STATE/$UNIT.pid" 2>/dev/null; }
port_answers() { curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$1/" ; }

cleanup() {
    local pid
    pid="$(server_pid || true)"
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
    fi
    "$PY" "$HERE/check.py" keystone-forget >/dev/null 2>&1 || true
}
trap cleanup EXIT

FAILED=()
check() {
    local name=$1; shift
    if "$@"; then echo "  ok    $name"; else echo "  FAIL  $name"; FAILED+=("$name"); fi
}

# -- stack ------------------------------------------------------------------------

# A messaging service left in Keystone (an interrupted run) would be reused
# by get_or_create_service with its old endpoints: start from none.
"$PY" "$HERE/check.py" keystone-forget
"$PY" "$HERE/check.py" tempest-init
t0=$SECONDS
phases stack
echo "stack phases: $((SECONDS - t0))s"

log "what stack left"
check "binary installed in ZAQAR_BIN_DIR" test -x "$WORK/bin/zaqar-server"
check "python-zaqarclient in devstack's venv" \
    "$DEVSTACK_VENV_DIR/bin/python" -c "import zaqarclient"
check "unit file written by run_process" \
    grep -qx "ExecStart = $WORK/bin/zaqar-server --config-file $ZAQAR_DEVSTACK_CONF" \
    "$ZAQAR_DEVSTACK_SYSTEMD_DIR/$UNIT"
systemctl_() { env PATH="$HERE/bin:$PATH" systemctl "$@" >/dev/null; }
check "unit enabled" systemctl_ is-enabled "$UNIT"
check "server running" kill -0 "$(server_pid)"
check "ZAQAR_DATA_DIR created" test -d "$DEST/data/zaqar"
check "zaqar.conf" "$PY" "$HERE/check.py" conf
check "Keystone catalogue and service user" "$PY" "$HERE/check.py" keystone-registered

log "openstack messaging ... (python-zaqarclient from devstack's venv, endpoint from the catalogue)"
osc() {
    env OS_CLIENT_CONFIG_FILE="$ZAQAR_DEVSTACK_CLOUDS_YAML" OS_CLOUD=devstack-admin \
        OS_MESSAGE_CLIENT_ID=0b5a4e6c-3c1e-4bd4-9d5c-6a1f0c1d2e3f \
        "$DEVSTACK_VENV_DIR/bin/openstack" "$@"
}
osc_round_trip() {
    local q="devstack-check-$$"
    osc messaging queue create "$q" -f value >/dev/null &&
    osc messaging message post "$q" '[{"body": {"from": "devstack"}, "ttl": 300}]' &&
    osc messaging message list "$q" --echo -f value -c Body | grep -q devstack &&
    osc messaging queue delete "$q"
}
check "queue create, message post/list, queue delete" osc_round_trip

log "systemctl reload (the unit's ExecReload: SIGHUP re-reads policy and log levels)"
ping_answers() {
    [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$ZAQAR_DEVSTACK_URL/v2/ping")" == 401 ]]
}
check "reload" systemctl_ reload "$UNIT"
sleep 1
check "server still running after reload" kill -0 "$(server_pid)"
check "server still answers after reload (401 without a token)" ping_answers

log "python-zaqarclient functional tests ($ZAQARCLIENT_REGEX)"
check "python-zaqarclient functional tests" "$PY" "$HERE/check.py" zaqarclient
log "zaqar-tempest-plugin ($TEMPEST_REGEX)"
check "zaqar-tempest-plugin" "$PY" "$HERE/check.py" tempest

# -- unstack, clean ------------------------------------------------------------------

pid="$(server_pid)"
phases unstack
log "what unstack left"
check "server process gone" bash -c "! kill -0 $pid 2>/dev/null"
check "HTTP port closed" bash -c "! curl -s -o /dev/null --max-time 2 http://127.0.0.1:$ZAQAR_PORT/v2/ping"
check "unit disabled" bash -c "! env PATH='$HERE/bin:$PATH' systemctl is-enabled $UNIT >/dev/null"
check "zaqar.conf still there (clean removes it)" test -f "$ZAQAR_DEVSTACK_CONF"

phases clean
log "what clean left"
check "ZAQAR_CONF_DIR removed" test ! -e "$WORK/etc/zaqar"
check "ZAQAR_DATA_DIR removed" test ! -e "$DEST/data/zaqar"
check "binary removed from ZAQAR_BIN_DIR" test ! -e "$WORK/bin/zaqar-server"
check "unit file removed" test ! -e "$ZAQAR_DEVSTACK_SYSTEMD_DIR/$UNIT"

echo
if (( ${#FAILED[@]} )); then
    echo "devstack test: FAILED: ${FAILED[*]} (work directory: $WORK)"
    exit 1
fi
echo "devstack test: OK (work directory: $WORK)"
