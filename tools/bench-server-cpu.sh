#!/usr/bin/env bash
# Server CPU per request: runs the zaqar-bench loads of bench-compare.sh
# against one zaqar-server on a Redis of its own, and prints, per load, the
# requests/s, the server's CPU (utime + stime from /proc/PID/stat) per
# request, Redis' CPU per request (the same, of the redis-server process)
# and the part of it spent running scripts (the usec of FCALL and EVALSHA in INFO
# commandstats, with the commands the scripts call), all taken over the
# same steady-state window (after the pre-fill and the warm-up, before the
# end of the run).
#
# Usage: tools/bench-server-cpu.sh SERVER-BINARY [NAME]
# Environment: BENCH_BIN (zaqar-bench; target/release/zaqar-bench),
#   BENCH_LOADS (post1,post10,claim,mixed,stats), BENCH_DURATION (10),
#   BENCH_WARMUP (2), BENCH_PREFILL (300000), BENCH_REDIS_PORT (16601),
#   BENCH_SERVER_PORT (18601), BENCH_OUT (target/bench-server-cpu),
#   BENCH_PERF (a load name: record a perf profile of the server during
#   that load's window into $OUT/NAME.LOAD.perf.data), BENCH_COUNT (1: also
#   count the server's system calls and context switches per request with
#   perf's tracepoints; a separate run from the CPU figures is cleaner),
#   BENCH_PEERS (0: also start that many more server processes of the same
#   binary on the same Redis, idle, on the ports after BENCH_SERVER_PORT,
#   and print their CPU per request of the loaded one: what the others of
#   a deployment pay for the work of one),
#   BENCH_RUST_LOG (the server's RUST_LOG, warn; empty: the configuration's
#   levels, INFO and one access line per request), BENCH_EXTRA_CONF (lines
#   appended to the server's configuration, e.g. a queue pipeline stage).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SERVER=${1:?usage: $0 SERVER-BINARY [NAME]}
NAME=${2:-ours}
BENCH=${BENCH_BIN:-$ROOT/target/release/zaqar-bench}
LOADS=${BENCH_LOADS:-post1,post10,claim,mixed,stats}
DURATION=${BENCH_DURATION:-10}
WARMUP=${BENCH_WARMUP:-2}
PREFILL=${BENCH_PREFILL:-300000}
REDIS_PORT=${BENCH_REDIS_PORT:-16601}
PORT=${BENCH_SERVER_PORT:-18601}
OUT=${BENCH_OUT:-$ROOT/target/bench-server-cpu}
PERF_LOAD=${BENCH_PERF:-}
COUNT=${BENCH_COUNT:-}
HZ=$(getconf CLK_TCK)
mkdir -p "$OUT"

PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
    --dir "$OUT" --logfile "$OUT/redis-$REDIS_PORT.log" &
REDIS_PID=$!
PIDS+=($REDIS_PID)
for _ in $(seq 1 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
redis-cli -p "$REDIS_PORT" flushall >/dev/null

cat > "$OUT/$NAME.conf" <<CONF
[drivers]
transport = wsgi
message_store = redis
management_store = redis
[drivers:message_store:redis]
uri = redis://127.0.0.1:$REDIS_PORT?dbid=1
[drivers:management_store:redis]
uri = redis://127.0.0.1:$REDIS_PORT?dbid=1
[drivers:transport:wsgi]
bind = 127.0.0.1
port = $PORT
${BENCH_EXTRA_CONF:-}
CONF
RUST_LOG=${BENCH_RUST_LOG-warn} "$SERVER" --config-file "$OUT/$NAME.conf" > "$OUT/$NAME.log" 2>&1 &
SERVER_PID=$!
PIDS+=($SERVER_PID)
PEER_PIDS=()
for i in $(seq 1 "${BENCH_PEERS:-0}"); do
    sed "s/^port = $PORT\$/port = $((PORT + i))/" "$OUT/$NAME.conf" > "$OUT/$NAME.peer$i.conf"
    RUST_LOG=${BENCH_RUST_LOG-warn} "$SERVER" --config-file "$OUT/$NAME.peer$i.conf" \
        > "$OUT/$NAME.peer$i.log" 2>&1 &
    PEER_PIDS+=($!)
    PIDS+=($!)
done
for p in "$PORT" $(seq $((PORT + 1)) $((PORT + ${BENCH_PEERS:-0}))); do
    for _ in $(seq 1 100); do
        code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Client-ID: 3381af92-2b9e-11e3-b191-71861300734c' \
            -H 'X-Project-ID: bench' "http://127.0.0.1:$p/v2/ping" || true)
        [ "$code" = 204 ] && break
        sleep 0.2
    done
done

ticks_of() { awk '{print $14 + $15}' "/proc/$1/stat"; }
ticks() { ticks_of "$SERVER_PID"; }
peer_ticks() {
    local t=0 p
    for p in "${PEER_PIDS[@]}"; do t=$((t + $(ticks_of "$p"))); done
    echo "$t"
}
now() { date +%s.%N; }

# shellcheck source=tools/bench-loads.sh
. "$ROOT/tools/bench-loads.sh"

# Microseconds Redis spent running scripts since the last CONFIG RESETSTAT
# (the usec of FCALL and EVALSHA include the commands the scripts call).
script_usec() {
    redis-cli -p "$REDIS_PORT" info commandstats |
        awk -F'[:,=]' '/^cmdstat_(fcall|evalsha|eval)[:]/ {u += $5} END {print u + 0}'
}

printf '%-8s %12s %14s %9s %13s %13s %8s %13s\n' load requests/s "server us/req" "server %" \
    "redis us/req" "script us/req" "redis %" "peers us/req"
for load in ${LOADS//,/ }; do
    err=$OUT/$NAME.$load.err
    # shellcheck disable=SC2046
    "$BENCH" --url "http://127.0.0.1:$PORT" --queue-prefix "$load" $(load_args "$load") \
        --duration "$DURATION" --warmup "$WARMUP" --threads 1 --json --project bench \
        > "$OUT/$NAME.$load.json" 2> "$err" &
    bench=$!
    # The first progress line comes one second after the workers start
    # (after the pre-fill): the window opens at the end of the warm-up plus
    # half a second and closes a second before the end of the run.
    until grep -q '^\[' "$err" 2>/dev/null; do sleep 0.05; done
    sleep "$(awk -v w="$WARMUP" 'BEGIN{print w - 0.5}')"
    window=$(awk -v d="$DURATION" 'BEGIN{print d - 1.5}')
    perf_pid=
    if [ "$load" = "$PERF_LOAD" ]; then
        perf record -q -e cpu-clock -F 999 --call-graph dwarf,16384 -p "$SERVER_PID" \
            -o "$OUT/$NAME.$load.perf.data" -- sleep "$window" 2>/dev/null &
        perf_pid=$!
    fi
    count_pid=
    if [ -n "$COUNT" ]; then
        perf stat -x, -e raw_syscalls:sys_enter,sched:sched_switch -p "$SERVER_PID" \
            -o "$OUT/$NAME.$load.count" -- sleep "$window" 2>/dev/null &
        count_pid=$!
    fi
    redis-cli -p "$REDIS_PORT" config resetstat >/dev/null
    t0=$(now); c0=$(ticks); r0=$(ticks_of "$REDIS_PID"); p0=$(peer_ticks)
    sleep "$window"
    t1=$(now); c1=$(ticks); r1=$(ticks_of "$REDIS_PID"); ru=$(script_usec); p1=$(peer_ticks)
    [ -n "$perf_pid" ] && wait "$perf_pid"
    [ -n "$count_pid" ] && wait "$count_pid"
    wait "$bench" || echo "$NAME: $load reported a failure (see $OUT/$NAME.$load.json)" >&2
    counts=
    [ -n "$COUNT" ] && counts="$OUT/$NAME.$load.count"
    python3 - "$OUT/$NAME.$load.json" "$load" "$t0" "$t1" "$c0" "$c1" "$HZ" "$window" "$counts" \
        "$r0" "$r1" "$ru" "$p0" "$p1" "${BENCH_PEERS:-0}" <<'PY'
import json, sys
path, load, t0, t1, c0, c1, hz, window, counts, r0, r1, ru, p0, p1, peers = sys.argv[1:]
r = json.load(open(path))
rps = sum(op["requests_per_s"] for op in r["ops"])
cores = (float(c1) - float(c0)) / float(hz) / (float(t1) - float(t0))
ok = "" if r["correct"] else "  CHECK FAILED"
extra = ""
if counts:
    n = {}
    for line in open(counts):
        f = line.strip().split(",")
        if len(f) > 2 and f[0].replace(".", "").isdigit():
            n[f[2]] = float(f[0])
    per = lambda e: n.get(e, 0) / (rps * float(window))
    extra = f"  syscalls/req {per('raw_syscalls:sys_enter'):.1f}  switches/req {per('sched:sched_switch'):.2f}"
span = float(t1) - float(t0)
redis_cores = (float(r1) - float(r0)) / float(hz) / span
script_us = float(ru) / (rps * span)
peer_us = "-"
if int(peers):
    peer_us = f"{(float(p1) - float(p0)) / float(hz) / span * 1e6 / rps:.1f}"
print(f"{load:<8} {rps:12,.0f} {cores * 1e6 / rps:14.1f} {cores * 100:9.0f}"
      f" {redis_cores * 1e6 / rps:13.1f} {script_us:13.1f} {redis_cores * 100:8.0f}"
      f" {peer_us:>13}{ok}{extra}")
PY
done
