#!/usr/bin/env bash
# What /metrics costs: ours (release build) with `[metrics] enabled = true`
# against the same server with it off, on one load, several rounds that
# alternate the two (and which goes first) so that a machine busy with
# something else weighs on both alike. Each run starts a fresh server (embedded SQLite store, or a
# private Redis with --store redis) and reports the load's throughput and
# the server's CPU time per request (utime + stime from /proc/<pid>/stat,
# over the whole run), then the medians and the difference.
#
# Usage: tools/bench-metrics.sh [--rounds N] [--duration S] [--store sqlite|redis]
#                               [--load "zaqar-bench arguments"]
# Environment: BENCH_PORT_BASE (23500: server on +1, Redis on +379),
#   BENCH_OUT (target/bench-metrics), BENCH_BIN_DIR (prebuilt zaqar-server
#   and zaqar-bench; else a release build).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=3
DURATION=10
STORE=sqlite
LOAD="--producers 16 --batch 1"
BASE=${BENCH_PORT_BASE:-23500}
PORT=$((BASE + 1))
REDIS_PORT=$((BASE + 379))
OUT=${BENCH_OUT:-$ROOT/target/bench-metrics}

while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) ROUNDS=$2; shift 2 ;;
        --duration) DURATION=$2; shift 2 ;;
        --store) STORE=$2; shift 2 ;;
        --load) LOAD=$2; shift 2 ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

log() { echo "bench-metrics: $*" >&2; }
BIN_DIR=${BENCH_BIN_DIR:-}
if [ -z "$BIN_DIR" ]; then
    log "building zaqar-server and zaqar-bench (release)"
    (cd "$ROOT" && cargo build --release -q -p zaqar --bin zaqar-server -p zaqar-bench)
    BIN_DIR=$ROOT/target/release
fi

rm -rf "$OUT" && mkdir -p "$OUT"
SERVER_PID=
REDIS_PID=
cleanup() {
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
    [ -n "$REDIS_PID" ] && kill "$REDIS_PID" 2>/dev/null || true
}
trap cleanup EXIT

if [ "$STORE" = redis ]; then
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
        --daemonize no >"$OUT/redis.log" 2>&1 &
    REDIS_PID=$!
    for _ in $(seq 1 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
fi

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# run <round> <on|off>: prints "messages/s µs-CPU/request"
run() {
    local dir=$OUT/$1-$2
    mkdir -p "$dir"
    local enabled=false
    [ "$2" = on ] && enabled=true
    local store="[drivers]
message_store = sqlite
[drivers:message_store:sqlite]
uri = $dir/zaqar.db"
    if [ "$STORE" = redis ]; then
        redis-cli -p "$REDIS_PORT" flushall >/dev/null
        store="[drivers]
message_store = redis
management_store = redis
[drivers:message_store:redis]
uri = redis://127.0.0.1:$REDIS_PORT
[drivers:management_store:redis]
uri = redis://127.0.0.1:$REDIS_PORT"
    fi
    cat >"$dir/zaqar.conf" <<EOF
[DEFAULT]
log_file = $dir/server.log
$store
[drivers:transport:wsgi]
bind = 127.0.0.1
port = $PORT
[metrics]
enabled = $enabled
EOF
    "$BIN_DIR/zaqar-server" --config-file "$dir/zaqar.conf" >"$dir/stdout.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 1 100); do
        curl -s -o /dev/null -H 'Client-ID: 3381af92-2b9e-11e3-b191-71861300734c' \
            -H 'X-Project-ID: bench' "http://127.0.0.1:$PORT/v2/ping" && break
        sleep 0.1
    done
    local before
    before=$(cpu_ticks "$SERVER_PID")
    # shellcheck disable=SC2086
    "$BIN_DIR/zaqar-bench" --url "http://127.0.0.1:$PORT" $LOAD --duration "$DURATION" \
        --warmup 2 --json --quiet >"$dir/report.json"
    local after
    after=$(cpu_ticks "$SERVER_PID")
    if [ "$enabled" = true ]; then
        curl -s "http://127.0.0.1:$PORT/metrics" >"$dir/metrics.txt"
        grep -q '^zaqar_request_duration_seconds' "$dir/metrics.txt" \
            || { log "metrics were not served in round $1"; exit 1; }
    fi
    kill "$SERVER_PID"
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
    python3 - "$dir/report.json" "$before" "$after" "$(getconf CLK_TCK)" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
ticks = (int(sys.argv[3]) - int(sys.argv[2])) / int(sys.argv[4])
requests = sum(op["requests"] for op in report["ops"])
messages = sum(op["messages_per_s"] for op in report["ops"])
if not report["correct"]:
    print("the bench's checks failed", file=sys.stderr)
    sys.exit(1)
print(f"{messages:.0f} {ticks / max(requests, 1) * 1e6:.1f}")
PY
}

: >"$OUT/runs.txt"
for round in $(seq 1 "$ROUNDS"); do
    # Odd rounds run "off" first, even rounds "on" first: neither gains
    # from going first or second.
    modes="off on"
    [ $((round % 2)) -eq 0 ] && modes="on off"
    for mode in $modes; do
        log "round $round, metrics $mode ($STORE; $LOAD; ${DURATION}s)"
        echo "$mode $(run "$round" "$mode")" | tee -a "$OUT/runs.txt" >&2
    done
done

python3 - "$OUT/runs.txt" "$STORE" "$LOAD" "$DURATION" <<'PY'
import statistics, sys
runs = [line.split() for line in open(sys.argv[1]) if line.strip()]
def median(mode, col):
    return statistics.median(float(r[col]) for r in runs if r[0] == mode)
off_rate, on_rate = median("off", 1), median("on", 1)
off_cpu, on_cpu = median("off", 2), median("on", 2)
print(f"store {sys.argv[2]}, load: {sys.argv[3]}, {sys.argv[4]} s per run, "
      f"{len(runs) // 2} rounds (medians)")
print(f"{'metrics':<8} {'messages/s':>11} {'server CPU µs/request':>22}")
print(f"{'off':<8} {off_rate:>11,.0f} {off_cpu:>22.1f}")
print(f"{'on':<8} {on_rate:>11,.0f} {on_cpu:>22.1f}")
print(f"cost of metrics: throughput {100 * (off_rate - on_rate) / off_rate:+.1f}%, "
      f"CPU per request {100 * (on_cpu - off_cpu) / off_cpu:+.1f}%")
PY
