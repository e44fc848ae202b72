#!/usr/bin/env bash
# Cost as a queue grows deep: ours (release build) on the embedded SQLite
# store and on a private Redis, each load run against one queue prefilled
# with DEPTH messages (default 100,000), one load after the other.
#
# Loads (16 connections each, one queue):
#   bulk   16 consumers: claim 10, delete them with one DELETE ?ids=&claim_ids=
#   each   16 consumers: claim 10, delete them one DELETE .../{id}?claim_id= each
#          (both start from 2 x DEPTH messages, so the queue stays about DEPTH
#          deep or more while measured; the table's "left" is the end depth)
#   post   16 producers posting one message
#   list   16 observers listing 10 (echo=true, from the head of the queue)
#   stats  16 readers of GET /v2/queues/{q}/stats
# Every run checks that nothing was lost or delivered twice (zaqar-bench's
# ledger and balance); a failed check is reported on stderr.
#
# Usage: tools/bench-depth.sh [--depth N] [--duration S] [--only sqlite,redis] [--loads a,b]
# Environment: BENCH_DEPTH, BENCH_DURATION (10), BENCH_WARMUP (2),
#   BENCH_PORT_BASE (23000: server on +1, Redis on +379), BENCH_OUT
#   (target/bench-depth), BENCH_BIN_DIR (prebuilt zaqar-server and zaqar-bench;
#   else a release build).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DEPTH=${BENCH_DEPTH:-100000}
DURATION=${BENCH_DURATION:-10}
WARMUP=${BENCH_WARMUP:-2}
BASE=${BENCH_PORT_BASE:-23000}
OURS_PORT=$((BASE + 1))
REDIS_PORT=$((BASE + 379))
OUT=${BENCH_OUT:-$ROOT/target/bench-depth}
ONLY=sqlite,redis
LOADS=bulk,each,post,list,stats

while [ $# -gt 0 ]; do
    case "$1" in
        --depth) DEPTH=$2; shift 2 ;;
        --duration) DURATION=$2; shift 2 ;;
        --only) ONLY=$2; shift 2 ;;
        --loads) LOADS=$2; shift 2 ;;
        -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

log() { printf '== %s\n' "$*" >&2; }
want() { case ",$1," in *",$2,"*) return 0 ;; *) return 1 ;; esac; }

mkdir -p "$OUT"
rm -f "$OUT"/*.json
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

BIN_DIR=${BENCH_BIN_DIR:-}
if [ -z "$BIN_DIR" ]; then
    log "building zaqar-server and zaqar-bench (release)"
    (cd "$ROOT" && cargo build --release -q -p zaqar --bin zaqar-server && cargo build --release -q -p zaqar-bench)
    BIN_DIR=$ROOT/target/release
fi
SERVER=$BIN_DIR/zaqar-server
BENCH=$BIN_DIR/zaqar-bench

wait_for() { # url what
    for _ in $(seq 1 100); do
        code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Client-ID: 3381af92-2b9e-11e3-b191-71861300734c' \
            -H 'X-Project-ID: bench' "$1" || true)
        [ "$code" = 204 ] && return 0
        sleep 0.2
    done
    echo "$2 did not come up at $1" >&2
    return 1
}

load_args() {
    case "$1" in
        bulk) echo "--consumers 16 --claim-limit 10 --delete-mode bulk" ;;
        each) echo "--consumers 16 --claim-limit 10 --delete-mode each" ;;
        post) echo "--producers 16 --batch 1" ;;
        list) echo "--observers 16 --list-limit 10" ;;
        stats) echo "--stats-readers 16" ;;
    esac
}

run_loads() { # name
    for load in ${LOADS//,/ }; do
        log "$1: $load at depth $DEPTH ($(load_args "$load"))"
        # shellcheck disable=SC2046
        # Consumers start twice as deep, so that the queue is still DEPTH deep
        # or more when the run ends ("left" in the table says how deep).
        local prefill=$DEPTH
        case "$load" in bulk|each) prefill=$((2 * DEPTH)) ;; esac
        "$BENCH" --url "http://127.0.0.1:$OURS_PORT" --queue-prefix "depth-$load" --prefill "$prefill" \
            $(load_args "$load") --duration "$DURATION" --warmup "$WARMUP" --quiet --json \
            > "$OUT/$1.$load.json" 2> "$OUT/$1.$load.err" \
            || log "$1: $load reported a failure (see $OUT/$1.$load.json)"
    done
}

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

if want "$ONLY" sqlite; then
    rm -rf "$OUT/sqlite-data"
    log "ours on the embedded SQLite store, 127.0.0.1:$OURS_PORT"
    start_ours sqlite "message_store = sqlite
management_store = sqlite
[drivers:message_store:sqlite]
uri = $OUT/sqlite-data/zaqar.sqlite"
    run_loads sqlite
    kill "$OURS_PID"; wait "$OURS_PID" 2>/dev/null || true
fi

if want "$ONLY" redis; then
    log "redis-server on 127.0.0.1:$REDIS_PORT"
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
        --dir "$OUT" --logfile "$OUT/redis.log" &
    PIDS+=($!)
    for _ in $(seq 1 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
    redis-cli -p "$REDIS_PORT" flushall >/dev/null
    log "ours on Redis, 127.0.0.1:$OURS_PORT"
    start_ours redis "message_store = redis
management_store = redis
[drivers:message_store:redis]
uri = redis://127.0.0.1:$REDIS_PORT?dbid=0
[drivers:management_store:redis]
uri = redis://127.0.0.1:$REDIS_PORT?dbid=0"
    run_loads redis
    kill "$OURS_PID"; wait "$OURS_PID" 2>/dev/null || true
fi

# --- the table ----------------------------------------------------------------
python3 - "$OUT" "$LOADS" "$DEPTH" <<'PY'
import json, os, sys
out, loads, depth = sys.argv[1], sys.argv[2].split(","), int(sys.argv[3])
main_op = {"bulk": "claim", "each": "claim", "post": "post", "list": "list", "stats": "stats"}
print(f"depth {depth:,}; 16 connections; messages/s (requests/s for stats), "
      "p99 of the main request in ms")
print(f"{'store':8} {'load':6} {'msgs/s':>10} {'req/s':>10} {'p50':>8} {'p99':>8} {'left':>9}  checked")
for store in ("sqlite", "redis"):
    for load in loads:
        path = os.path.join(out, f"{store}.{load}.json")
        try:
            r = json.load(open(path))
        except (OSError, ValueError):
            continue
        op = next((o for o in r["ops"] if o["op"] == main_op[load]), None)
        if op is None:
            continue
        rate = (r["consumed_per_s"] if load in ("bulk", "each")
                else op["requests_per_s"] if load == "stats" else op["messages_per_s"])
        lat = op["latency_ms"]
        ok = "ok" if r.get("correct") else "FAILED"
        print(f"{store:8} {load:6} {rate:>10,.0f} {op['requests_per_s']:>10,.0f} "
              f"{lat['p50']:>8.2f} {lat['p99']:>8.2f} {r['balance']['after'] or 0:>9,}  {ok}")
PY
