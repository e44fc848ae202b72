#!/usr/bin/env bash
# Side-by-side benchmark: the reference Zaqar 23.0.1 (PyPI, under uWSGI) and
# ours (release build), on one private Redis (and ours on the embedded SQLite
# store too), driven one after the other by the same zaqar-bench loads.
# With --only ref-mongodb,mongodb: both on one private MongoDB-wire server
# (SecantusDB, tests/mongodb/start.sh; separate databases), with the CPU of
# the Zaqar server and of the database server measured over every load.
#
# Everything runs on loopback, on ports of its own (never the machine's Redis
# on 6379), and every load lasts a fixed time. Prints one table (messages/s,
# p99, ratios, RSS) and leaves the raw JSON reports in $OUT.
#
# Usage: tools/bench-compare.sh [--duration S] [--warmup S] [--loads a,b]
#          [--only ref,redis,sqlite,ref-mongodb,mongodb]   (default ref,redis,sqlite)
# Environment: BENCH_DURATION, BENCH_WARMUP, BENCH_PREFILL, BENCH_THREADS,
#   BENCH_REDIS_PORT (16479), BENCH_REF_PORT (18891), BENCH_OURS_PORT (18892),
#   BENCH_MONGODB_PORT (25017), BENCH_MONGODB_VENV (SecantusDB's venv; default
#   that of tests/mongodb/start.sh), BENCH_OUT (target/bench-compare),
#   BENCH_VENV (.venv-bench),
#   BENCH_BIN_DIR (prebuilt zaqar-server and zaqar-bench; else a release build).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DURATION=${BENCH_DURATION:-10}
WARMUP=${BENCH_WARMUP:-2}
PREFILL=${BENCH_PREFILL:-300000}
THREADS=${BENCH_THREADS:-1}
REDIS_PORT=${BENCH_REDIS_PORT:-16479}
REF_PORT=${BENCH_REF_PORT:-18891}
OURS_PORT=${BENCH_OURS_PORT:-18892}
MONGODB_PORT=${BENCH_MONGODB_PORT:-25017}
OUT=${BENCH_OUT:-$ROOT/target/bench-compare}
VENV=${BENCH_VENV:-$ROOT/.venv-bench}
ONLY=ref,redis,sqlite
LOADS=post1,post10,claim,mixed,stats
CORES=$(nproc)

while [ $# -gt 0 ]; do
    case "$1" in
        --duration) DURATION=$2; shift 2 ;;
        --warmup) WARMUP=$2; shift 2 ;;
        --only) ONLY=$2; shift 2 ;;
        --loads) LOADS=$2; shift 2 ;;
        --prefill) PREFILL=$2; shift 2 ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

log() { printf '== %s\n' "$*" >&2; }
want() { case ",$1," in *",$2,"*) return 0 ;; *) return 1 ;; esac; }

mkdir -p "$OUT"
rm -f "$OUT"/*.json "$OUT"/*.rss "$OUT"/*.cpu
PIDS=()
MONGODB_ENV=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [ ${#MONGODB_ENV[@]} -gt 0 ]; then
        env "${MONGODB_ENV[@]}" bash "$ROOT/tests/mongodb/stop.sh" || true
    fi
}
trap cleanup EXIT

# --- build ours ------------------------------------------------------------
BIN_DIR=${BENCH_BIN_DIR:-}
if [ -z "$BIN_DIR" ]; then
    log "building zaqar-server and zaqar-bench (release)"
    (cd "$ROOT" && cargo build --release -q -p zaqar --bin zaqar-server && cargo build --release -q -p zaqar-bench)
    BIN_DIR=$ROOT/target/release
fi
SERVER=$BIN_DIR/zaqar-server
BENCH=$BIN_DIR/zaqar-bench

# --- the reference, in its own venv -----------------------------------------
if want "$ONLY" ref || want "$ONLY" ref-mongodb; then
    if [ ! -x "$VENV/bin/uwsgi" ] || ! "$VENV/bin/python" -c 'import zaqar, redis' 2>/dev/null; then
        log "installing zaqar==23.0.1 and uwsgi into $VENV"
        if ! python3 -c 'import sysconfig,os,sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"],"Python.h")))'; then
            log "Python headers missing: apt-get install -y python3-dev build-essential"
            apt-get install -y -q python3-dev build-essential >/dev/null
        fi
        python3 -m venv "$VENV"
        "$VENV/bin/pip" install -q --upgrade pip
        "$VENV/bin/pip" install -q 'zaqar[redis]==23.0.1' uwsgi
    fi
    if want "$ONLY" ref-mongodb && ! "$VENV/bin/python" -c 'import pymongo' 2>/dev/null; then
        log "installing zaqar[mongodb] (pymongo) into $VENV"
        "$VENV/bin/pip" install -q 'zaqar[mongodb]==23.0.1'
    fi
fi

# --- Redis of our own -------------------------------------------------------
PING_CLIENT=3381af92-2b9e-11e3-b191-71861300734c
wait_for() { # url, what
    for _ in $(seq 1 100); do
        code=$(curl -s -o /dev/null -w '%{http_code}' -H "Client-ID: $PING_CLIENT" -H 'X-Project-ID: bench' "$1" || true)
        [ "$code" = 204 ] && return 0
        sleep 0.2
    done
    echo "$2 did not come up at $1" >&2
    return 1
}

if want "$ONLY" ref || want "$ONLY" redis; then
    log "starting redis-server on 127.0.0.1:$REDIS_PORT"
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
        --dir "$OUT" --logfile "$OUT/redis.log" &
    PIDS+=($!)
    REDIS_PID=$!
    for _ in $(seq 1 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
    redis-cli -p "$REDIS_PORT" flushall >/dev/null
fi

# --- a MongoDB-wire server of our own (SecantusDB) ----------------------------
MONGODB_PID=
if want "$ONLY" ref-mongodb || want "$ONLY" mongodb; then
    MONGODB_ENV=(ZAQAR_MONGODB_PORT="$MONGODB_PORT" ZAQAR_MONGODB_DIR="$OUT/mongodb")
    if [ -n "${BENCH_MONGODB_VENV:-}" ]; then MONGODB_ENV+=(ZAQAR_MONGODB_VENV="$BENCH_MONGODB_VENV"); fi
    log "starting SecantusDB on 127.0.0.1:$MONGODB_PORT"
    # A fresh data directory: no databases left over from an earlier run.
    env "${MONGODB_ENV[@]}" bash "$ROOT/tests/mongodb/stop.sh"
    env "${MONGODB_ENV[@]}" bash "$ROOT/tests/mongodb/start.sh" >/dev/null
    MONGODB_PID=$(cat "$OUT/mongodb/pid")
    MONGODB_URI="mongodb://127.0.0.1:$MONGODB_PORT/?replicaSet=secantus"
fi

# --- CPU time of a process tree (seconds, utime + stime of the live ones) -----
cpu_s() { # pid
    local hz total=0 p
    hz=$(getconf CLK_TCK)
    for p in $(tree_pids "$1"); do
        total=$((total + $(awk '{print $14 + $15}' /proc/"$p"/stat 2>/dev/null || echo 0)))
    done
    awk -v t="$total" -v hz="$hz" 'BEGIN {printf "%.2f", t / hz}'
}

# --- memory of a process tree (KiB): VmRSS now, VmHWM peak -------------------
tree_pids() { # pid -> pid and its descendants
    local p=$1
    echo "$p"
    for c in $(cat /proc/"$p"/task/*/children 2>/dev/null); do tree_pids "$c"; done
}
mem_kib() { # pid field
    local total=0 v
    for p in $(tree_pids "$1"); do
        v=$(awk -v f="$2:" '$1==f {print $2}' /proc/"$p"/status 2>/dev/null || true)
        total=$((total + ${v:-0}))
    done
    echo "$total"
}

# --- the loads ----------------------------------------------------------------
COMMON=(--duration "$DURATION" --warmup "$WARMUP" --threads "$THREADS" --quiet --json --project bench)
# shellcheck source=tools/bench-loads.sh
. "$ROOT/tools/bench-loads.sh"

run_loads() { # name url pid [database-server-pid]
    local name=$1 url=$2 pid=$3 db=${4:-}
    echo "$(mem_kib "$pid" VmRSS)" > "$OUT/$name.idle.rss"
    for load in ${LOADS//,/ }; do
        log "$name: $load ($(load_args "$load"))"
        # With a database server: the CPU seconds both used over the whole run
        # of the load (prefill, warm-up and measured time), and its wall time.
        local t0 s0 d0
        if [ -n "$db" ]; then t0=$(date +%s.%N); s0=$(cpu_s "$pid"); d0=$(cpu_s "$db"); fi
        # shellcheck disable=SC2046
        "$BENCH" --url "$url" --queue-prefix "$load" $(load_args "$load") "${COMMON[@]}" \
            > "$OUT/$name.$load.json" 2> "$OUT/$name.$load.err" &
        local bench=$!
        sleep "$(awk -v w="$WARMUP" -v d="$DURATION" 'BEGIN{print w + d/2}')"
        # mid-run RSS (prefill makes the start time vary; sample again at the end)
        local mid
        mid=$(mem_kib "$pid" VmRSS)
        wait "$bench" || log "$name: $load reported a failure (see $OUT/$name.$load.json)"
        echo "$mid $(mem_kib "$pid" VmRSS) $(mem_kib "$pid" VmHWM)" > "$OUT/$name.$load.rss"
        if [ -n "$db" ]; then
            echo "$(awk -v a="$(date +%s.%N)" -v b="$t0" 'BEGIN {printf "%.2f", a - b}')" \
                "$(awk -v a="$(cpu_s "$pid")" -v b="$s0" 'BEGIN {printf "%.2f", a - b}')" \
                "$(awk -v a="$(cpu_s "$db")" -v b="$d0" 'BEGIN {printf "%.2f", a - b}')" \
                > "$OUT/$name.$load.cpu"
        fi
    done
}

start_ref() { # store-config (the [drivers] section's stores and their sections) [DEFAULT-lines]
    mkdir -p "$OUT/refhome/.zaqar"
    cat > "$OUT/refhome/.zaqar/zaqar.conf" <<CONF
[DEFAULT]
auth_strategy =
${2:-}
[drivers]
transport = wsgi
$1
CONF
    # uWSGI's HTTP router keeps a connection alive only when the response has a
    # length; the reference sends its 204s without one, so the router would close
    # the connection after every 204 (each delete!) and the bench would measure
    # reconnects. This wrapper adds "Content-Length: 0" to 204s, nothing else,
    # to give the reference its best keep-alive behaviour.
    cat > "$OUT/refhome/bench_wsgi.py" <<'PY'
from zaqar.transport.wsgi.app import application as _zaqar


def application(environ, start_response):
    def with_length(status, headers, exc_info=None):
        if status.startswith('204') and not any(
                k.lower() == 'content-length' for k, _ in headers):
            headers = list(headers) + [('Content-Length', '0')]
        return start_response(status, headers, exc_info)
    return _zaqar(environ, with_length)
PY
    log "starting the reference under uWSGI ($CORES workers) on 127.0.0.1:$REF_PORT"
    # The app reads ~/.zaqar/zaqar.conf, hence HOME.
    HOME="$OUT/refhome" "$VENV/bin/uwsgi" --http "127.0.0.1:$REF_PORT" --http-keepalive --so-keepalive \
        --add-header "Connection: Keep-Alive" \
        --master --processes "$CORES" --pythonpath "$OUT/refhome" --module bench_wsgi:application \
        --virtualenv "$VENV" --need-app --die-on-term --disable-logging \
        --worker-reload-mercy 2 --reload-mercy 2 \
        > "$OUT/ref.log" 2>&1 &
    REF_PID=$!
    PIDS+=($REF_PID)
    wait_for "http://127.0.0.1:$REF_PORT/v2/ping" "the reference"
}

if want "$ONLY" ref; then
    start_ref "message_store = redis
management_store = redis
[drivers:message_store:redis]
uri = redis://127.0.0.1:$REDIS_PORT?dbid=0
[drivers:management_store:redis]
uri = redis://127.0.0.1:$REDIS_PORT?dbid=0"
    run_loads ref "http://127.0.0.1:$REF_PORT" "$REF_PID"
    kill "$REF_PID"; wait "$REF_PID" 2>/dev/null || true
fi

# The reference and ours on the one SecantusDB, in databases of their own
# (ref*, ours*). SecantusDB answers as the primary of the one-node replica set
# `secantus`. The reference cannot be given `replicaSet=` with pymongo 4 (it
# then asks for pymongo.MongoReplicaSetClient, removed in 4.0), and it counts
# a one-node set as no replica set, so it runs with `unreliable = true`; its
# message databases still write with w=majority (j=false), as it always does.
if want "$ONLY" ref-mongodb; then
    start_ref "message_store = mongodb
management_store = mongodb
[drivers:message_store:mongodb]
uri = mongodb://127.0.0.1:$MONGODB_PORT
database = ref
[drivers:management_store:mongodb]
uri = mongodb://127.0.0.1:$MONGODB_PORT
database = ref" "unreliable = true"
    run_loads ref-mongodb "http://127.0.0.1:$REF_PORT" "$REF_PID" "$MONGODB_PID"
    kill "$REF_PID"; wait "$REF_PID" 2>/dev/null || true
fi

start_ours() { # name store-config
    cat > "$OUT/$1.conf" <<CONF
[drivers]
transport = wsgi
$2
[drivers:transport:wsgi]
bind = 127.0.0.1
port = $OURS_PORT
CONF
    RUST_LOG=warn "$SERVER" --config-file "$OUT/$1.conf" > "$OUT/$1.log" 2>&1 &
    OURS_PID=$!
    PIDS+=($OURS_PID)
    wait_for "http://127.0.0.1:$OURS_PORT/v2/ping" "ours ($1)"
}

if want "$ONLY" redis; then
    log "starting ours on Redis (db 1) on 127.0.0.1:$OURS_PORT"
    start_ours redis "message_store = redis
management_store = redis
[drivers:message_store:redis]
uri = redis://127.0.0.1:$REDIS_PORT?dbid=1
[drivers:management_store:redis]
uri = redis://127.0.0.1:$REDIS_PORT?dbid=1"
    run_loads redis "http://127.0.0.1:$OURS_PORT" "$OURS_PID"
    kill "$OURS_PID"; wait "$OURS_PID" 2>/dev/null || true
fi

if want "$ONLY" sqlite; then
    log "starting ours on the embedded SQLite store on 127.0.0.1:$OURS_PORT"
    rm -rf "$OUT/sqlite-data"
    start_ours sqlite "message_store = sqlite
management_store = sqlite
[drivers:message_store:sqlite]
uri = $OUT/sqlite-data/zaqar.sqlite"
    run_loads sqlite "http://127.0.0.1:$OURS_PORT" "$OURS_PID"
    kill "$OURS_PID"; wait "$OURS_PID" 2>/dev/null || true
fi

if want "$ONLY" mongodb; then
    log "starting ours on MongoDB (SecantusDB) on 127.0.0.1:$OURS_PORT"
    start_ours mongodb "message_store = mongodb
management_store = mongodb
[drivers:message_store:mongodb]
uri = $MONGODB_URI
database = ours
[drivers:management_store:mongodb]
uri = $MONGODB_URI
database = ours"
    run_loads mongodb "http://127.0.0.1:$OURS_PORT" "$OURS_PID" "$MONGODB_PID"
    kill "$OURS_PID"; wait "$OURS_PID" 2>/dev/null || true
fi

# --- the table ----------------------------------------------------------------
REDIS_VERSION=$(redis-server --version | sed -n 's/.*v=\([0-9.]*\).*/\1/p')
STORES="Redis $REDIS_VERSION"
if [ -n "$MONGODB_PID" ]; then
    SECANTUS=$("${BENCH_MONGODB_VENV:-$ROOT/target/secantusdb-venv}/bin/python" -c \
        'import importlib.metadata as m; print(m.version("secantusdb"))' 2>/dev/null || echo "?")
    if want "$ONLY" ref || want "$ONLY" redis || want "$ONLY" sqlite; then
        STORES+=", SecantusDB $SECANTUS"
    else
        STORES="SecantusDB $SECANTUS"
    fi
fi
python3 "$ROOT/tools/bench-table.py" "$OUT" "$LOADS" \
    "$(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p' | head -1), $STORES, ${DURATION}s per load after ${WARMUP}s warm-up"
