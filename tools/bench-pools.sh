#!/usr/bin/env bash
# Scale-out with pools: the same zaqar-bench load over many queues, first on
# one Redis (no pooling), then over three Redis pools (three redis-server
# processes behind one pooled server). Reports messages/s and the CPU each
# process used (the server's from /proc, each Redis's from INFO cpu), so the
# table says what bounds each setup.
#
# Everything runs on loopback, on ports of its own. Usage:
#   tools/bench-pools.sh [--duration S] [--queues N] [--producers N] [--consumers N]
# Environment: BENCH_BIN_DIR (prebuilt zaqar-server and zaqar-bench; else a
#   release build), BENCH_PORT_BASE (16600), BENCH_OUT (target/bench-pools).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DURATION=10
QUEUES=64
PRODUCERS=16
CONSUMERS=16
BASE=${BENCH_PORT_BASE:-16600}
OUT=${BENCH_OUT:-$ROOT/target/bench-pools}

while [ $# -gt 0 ]; do
    case "$1" in
        --duration) DURATION=$2; shift 2 ;;
        --queues) QUEUES=$2; shift 2 ;;
        --producers) PRODUCERS=$2; shift 2 ;;
        --consumers) CONSUMERS=$2; shift 2 ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

log() { printf '== %s\n' "$*" >&2; }
mkdir -p "$OUT"
rm -rf "${OUT:?}"/*
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

start_redis() { # port
    mkdir -p "$OUT/redis-$1"
    redis-server --port "$1" --bind 127.0.0.1 --save '' --appendonly no --dir "$OUT/redis-$1" \
        >"$OUT/redis-$1/log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 1 100); do redis-cli -p "$1" ping 2>/dev/null | grep -q PONG && return 0; sleep 0.1; done
    echo "redis on $1 did not start" >&2; exit 1
}

redis_cpu() { # port -> used_cpu_sys + used_cpu_user (seconds)
    redis-cli -p "$1" info cpu | awk -F: '/used_cpu_(sys|user):/ {s += $2} END {printf "%.3f", s}'
}

proc_cpu() { # pid -> utime + stime (seconds)
    awk -v hz="$(getconf CLK_TCK)" '{printf "%.3f", ($14 + $15) / hz}' "/proc/$1/stat"
}

start_server() { # name config (its [drivers] section last, transport added here)
    local port=$((BASE + 10))
    printf '%s\ntransport = wsgi\n[drivers:transport:wsgi]\nport = %s\n' "$2" "$port" \
        >"$OUT/$1.conf"
    RUST_LOG=warn "$BIN_DIR/zaqar-server" --config-file "$OUT/$1.conf" >"$OUT/$1.log" 2>&1 &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    for _ in $(seq 1 100); do
        curl -sf -o /dev/null -H 'Client-ID: 3381af92-2b9e-11e3-b191-71861300734c' -H 'X-Project-ID: p' \
            "http://127.0.0.1:$port/v2/ping" && return 0
        sleep 0.1
    done
    echo "server $1 did not start" >&2; exit 1
}

run_load() { # name redis-ports...
    local name=$1; shift
    local port=$((BASE + 10)) before=() after=() i
    for p in "$@"; do before+=("$(redis_cpu "$p")"); done
    local server_before; server_before=$(proc_cpu "$SERVER_PID")
    "$BIN_DIR/zaqar-bench" -s "http://127.0.0.1:$port" --project bench-pools -p "$PRODUCERS" \
        -c "$CONSUMERS" -q "$QUEUES" -t "$DURATION" --warmup 2 --threads 1 --json --quiet \
        >"$OUT/$name.json"
    local server_after; server_after=$(proc_cpu "$SERVER_PID")
    for p in "$@"; do after+=("$(redis_cpu "$p")"); done
    local cpus="server $(awk -v a="$server_after" -v b="$server_before" -v d="$DURATION" \
        'BEGIN {printf "%.0f%%", (a - b) / (d + 2) * 100}')"
    for i in "${!before[@]}"; do
        cpus+=", redis$i $(awk -v a="${after[$i]}" -v b="${before[$i]}" -v d="$DURATION" \
            'BEGIN {printf "%.0f%%", (a - b) / (d + 2) * 100}')"
    done
    python3 - "$OUT/$name.json" "$name" "$cpus" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
ops = {o["op"]: o for o in report["ops"]}
posted = ops.get("post", {}).get("messages_per_s", 0)
print(f"{sys.argv[2]:<14} posted/s {posted:>9.0f}  consumed/s {report['consumed_per_s']:>9.0f}"
      f"  checks {'OK' if report['correct'] else 'FAILED'}  CPU: {sys.argv[3]}")
PY
}

R0=$((BASE + 1)); R1=$((BASE + 2)); R2=$((BASE + 3))
start_redis "$R0"; start_redis "$R1"; start_redis "$R2"

log "one Redis, no pooling"
start_server single "$(printf '[drivers:message_store:redis]\nuri = redis://127.0.0.1:%s\n[drivers]\nmessage_store = redis\n' "$R0")"
ONE=$(run_load "one-redis" "$R0")
kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true
redis-cli -p "$R0" flushall >/dev/null

log "three Redis pools"
start_server pooled "$(printf '[DEFAULT]\nadmin_mode = true\npooling = true\n[drivers:management_store:sqlite]\nuri = %s\n[drivers]\nmanagement_store = sqlite\n' "$OUT/catalogue.sqlite")"
H=(-H 'Client-ID: 3381af92-2b9e-11e3-b191-71861300734c' -H 'X-Project-ID: admin' -H 'X-Roles: admin' -H 'Content-Type: application/json')
for i in 0 1 2; do
    p=$((BASE + 1 + i))
    curl -sf "${H[@]}" -X PUT "http://127.0.0.1:$((BASE + 10))/v2/pools/pool$i" \
        -d "{\"uri\": \"redis://127.0.0.1:$p\", \"weight\": 1}" >/dev/null
done
THREE=$(run_load "three-pools" "$R0" "$R1" "$R2")

echo
echo "load: $PRODUCERS producers, $CONSUMERS consumers, $QUEUES queues, ${DURATION}s, $(nproc) cores"
echo "$ONE"
echo "$THREE"
