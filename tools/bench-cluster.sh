#!/usr/bin/env bash
# Scale-out with Redis Cluster: one zaqar-bench load over many queues, for
# each number of Cluster masters (1 and 3) and of zaqar-server processes
# (1, 2 and 4) sharing that Cluster. The load is split evenly over the
# servers: one zaqar-bench per server (it drives one URL), each with its own
# queues (prefix s<i>), producers and consumers, all in one project, started
# together; their rates are summed. Queues hash to slots by name, so 64 of
# them spread over the masters. Reports, per point, messages posted and
# consumed per second, zaqar-bench's loss and duplicate checks (all must be
# OK), the CPU of every process over the run (the servers' and the benches'
# from /proc, each master's from INFO cpu), how many of the queues each
# master holds (CLUSTER KEYSLOT of the queues' hash tag), and the whole
# machine's busy CPU (/proc/stat) and load average, which tell whether
# other work shared the cores; and the servers' and the masters' CPU per
# message, which holds whatever the share of the cores they got.
#
# The single master is a one-node Cluster holding all 16384 slots (CLUSTER
# ADDSLOTSRANGE 0 16383), so both setups go through the same Cluster client
# (redis+cluster://); three masters are made by redis-cli --cluster create.
# Everything runs on loopback, on ports of its own (BASE+1.. Redis, BASE+51..
# their cluster buses, BASE+10.. servers). Usage:
#   tools/bench-cluster.sh [--duration S] [--queues N] [--servers "1 2 4"]
#       [--masters "1 3"] [--producers N] [--consumers N] [--batch N]
# Defaults: 10 s per point after a 2 s warm-up, 64 queues, 64 producers and
# 64 consumers in all (one of each per queue), batches of 1; about 1.5
# minutes for the six points.
# Environment: BENCH_BIN_DIR (prebuilt zaqar-server and zaqar-bench, default
#   target/release), BENCH_PORT_BASE (16700), BENCH_OUT (target/bench-cluster:
#   every JSON report, the servers' logs and the table, table.txt).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DURATION=10
WARMUP=2
QUEUES=64
PRODUCERS=
CONSUMERS=
BATCH=1
SERVERS="1 2 4"
MASTERS="1 3"
BASE=${BENCH_PORT_BASE:-16700}
OUT=${BENCH_OUT:-$ROOT/target/bench-cluster}
BIN_DIR=${BENCH_BIN_DIR:-$ROOT/target/release}
PROJECT=bench-cluster

while [ $# -gt 0 ]; do
    case "$1" in
        --duration) DURATION=$2; shift 2 ;;
        --queues) QUEUES=$2; shift 2 ;;
        --servers) SERVERS=$2; shift 2 ;;
        --masters) MASTERS=$2; shift 2 ;;
        --producers) PRODUCERS=$2; shift 2 ;;
        --consumers) CONSUMERS=$2; shift 2 ;;
        --batch) BATCH=$2; shift 2 ;;
        -h|--help) sed -n '2,29p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
PRODUCERS=${PRODUCERS:-$QUEUES}
CONSUMERS=${CONSUMERS:-$QUEUES}

for tool in redis-server redis-cli curl python3; do
    command -v "$tool" >/dev/null || { echo "bench-cluster: $tool not found" >&2; exit 1; }
done
for bin in zaqar-server zaqar-bench; do
    [ -x "$BIN_DIR/$bin" ] || {
        echo "bench-cluster: no $BIN_DIR/$bin (cargo build --release, or set BENCH_BIN_DIR)" >&2
        exit 1
    }
done

log() { printf '== %s\n' "$*" >&2; }
mkdir -p "$OUT"
rm -rf "${OUT:?}"/*
PIDS=()       # every process started here, killed on exit
SERVER_PIDS=() # the current point's servers
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
reap() { # pid: wait for it and forget it (so cleanup never signals a reused pid)
    wait "$1" 2>/dev/null || true
    local keep=() p
    for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}
trap cleanup EXIT
trap 'exit 130' INT TERM

CLIENT='3381af92-2b9e-11e3-b191-71861300734c'

start_redis() { # port: a Cluster-enabled node, bus on port+50, no persistence
    local dir="$OUT/redis-$1"
    mkdir -p "$dir"
    redis-server --port "$1" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" \
        --cluster-enabled yes --cluster-config-file "$dir/nodes.conf" \
        --cluster-port $(($1 + 50)) --cluster-node-timeout 5000 \
        >"$dir/log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 1 100); do redis-cli -p "$1" ping 2>/dev/null | grep -q PONG && return 0; sleep 0.1; done
    echo "redis on $1 did not start" >&2; exit 1
}

wait_cluster_ok() { # ports...
    local p
    for p in "$@"; do
        for _ in $(seq 1 200); do
            redis-cli -p "$p" cluster info | grep -q 'cluster_state:ok' && continue 2
            sleep 0.1
        done
        echo "cluster node $p not ok" >&2; exit 1
    done
}

start_cluster() { # masters -> sets PORTS
    local n=$1 i
    PORTS=()
    for i in $(seq 1 "$n"); do PORTS+=($((BASE + i))); done
    local ports=("${PORTS[@]}")
    for p in "${ports[@]}"; do start_redis "$p"; done
    if [ "$n" -eq 1 ]; then
        redis-cli -p "${ports[0]}" cluster addslotsrange 0 16383 >/dev/null
    else
        local nodes=()
        for p in "${ports[@]}"; do nodes+=("127.0.0.1:$p"); done
        redis-cli --cluster create "${nodes[@]}" --cluster-replicas 0 --cluster-yes \
            >"$OUT/cluster-create-$n.log" 2>&1
    fi
    wait_cluster_ok "${ports[@]}"
}

stop_cluster() { # ports...
    local p pid
    for p in "$@"; do
        pid=$(redis-cli -p "$p" info server | awk -F: '/^process_id:/ {print $2}' | tr -d '\r')
        redis-cli -p "$p" shutdown nosave >/dev/null 2>&1 || true
        [ -n "$pid" ] && reap "$pid"
    done
}

redis_cpu() { # port -> used_cpu_sys + used_cpu_user (seconds)
    redis-cli -p "$1" info cpu | awk -F: '/used_cpu_(sys|user):/ {s += $2} END {printf "%.3f", s}'
}

machine_cpu() { # -> "busy total" jiffies of all cores (/proc/stat; idle and iowait not busy)
    awk '/^cpu / {t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t}' /proc/stat
}

proc_cpu() { # pid -> utime + stime (seconds)
    awk -v hz="$(getconf CLK_TCK)" '{printf "%.3f", ($14 + $15) / hz}' "/proc/$1/stat"
}

start_servers() { # count uri
    local i port conf
    SERVER_PIDS=()
    for i in $(seq 0 $(($1 - 1))); do
        port=$((BASE + 10 + i))
        conf="$OUT/server-$i.conf"
        printf '[drivers]\ntransport = wsgi\nmessage_store = redis\nmanagement_store = redis\n[drivers:message_store:redis]\nuri = %s\n[drivers:management_store:redis]\nuri = %s\n[drivers:transport:wsgi]\nport = %s\n' \
            "$2" "$2" "$port" >"$conf"
        RUST_LOG=warn "$BIN_DIR/zaqar-server" --config-file "$conf" >>"$OUT/server-$i.log" 2>&1 &
        PIDS+=($!)
        SERVER_PIDS+=($!)
    done
    for i in $(seq 0 $(($1 - 1))); do
        port=$((BASE + 10 + i))
        for _ in $(seq 1 100); do
            curl -sf -o /dev/null -H "Client-ID: $CLIENT" -H "X-Project-ID: $PROJECT" \
                "http://127.0.0.1:$port/v2/ping" && continue 2
            sleep 0.1
        done
        echo "server $i did not start (see $OUT/server-$i.log)" >&2; exit 1
    done
}

stop_servers() {
    local pid
    for pid in "${SERVER_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${SERVER_PIDS[@]}"; do reap "$pid"; done
    SERVER_PIDS=()
}

share() { # total parts index -> this part's share (the first ones take the remainder)
    echo $(($1 / $2 + ($3 < $1 % $2 ? 1 : 0)))
}

run_point() { # masters servers redis-ports...
    local masters=$1 servers=$2; shift 2
    local name="m${masters}-s${servers}" i pid
    local rbefore=() rafter=() sbefore=() safter=() benches=()
    for p in "$@"; do rbefore+=("$(redis_cpu "$p")"); done
    for pid in "${SERVER_PIDS[@]}"; do sbefore+=("$(proc_cpu "$pid")"); done
    local mbefore; mbefore=$(machine_cpu)
    local t0; t0=$(date +%s.%N)
    for i in $(seq 0 $((servers - 1))); do
        "$BIN_DIR/zaqar-bench" -s "http://127.0.0.1:$((BASE + 10 + i))" --project "$PROJECT" \
            --queue-prefix "s$i" -q "$(share "$QUEUES" "$servers" "$i")" \
            -p "$(share "$PRODUCERS" "$servers" "$i")" -c "$(share "$CONSUMERS" "$servers" "$i")" \
            -b "$BATCH" -t "$DURATION" --warmup "$WARMUP" --threads 1 --json --quiet \
            >"$OUT/$name-bench$i.json" 2>"$OUT/$name-bench$i.err" &
        benches+=($!)
        PIDS+=($!)
    done
    for pid in "${benches[@]}"; do reap "$pid"; done
    local t1; t1=$(date +%s.%N)
    for pid in "${SERVER_PIDS[@]}"; do safter+=("$(proc_cpu "$pid")"); done
    for p in "$@"; do rafter+=("$(redis_cpu "$p")"); done
    local mafter; mafter=$(machine_cpu)
    local load; load=$(cut -d' ' -f1 /proc/loadavg)
    local queues=() n
    for i in $(seq 0 $((servers - 1))); do
        n=$(share "$QUEUES" "$servers" "$i")
        for q in $(seq 0 $((n - 1))); do queues+=("s$i-$q"); done
    done
    python3 - "$OUT" "$name" "$masters" "$servers" "$t0" "$t1" "$load" \
        "${sbefore[*]}" "${safter[*]}" "${rbefore[*]}" "${rafter[*]}" "$1" "$PROJECT" \
        "${queues[*]}" "$mbefore" "$mafter" "$(nproc)" <<'PY'
import json, subprocess, sys
out, name, masters, servers, t0, t1, load = sys.argv[1:8]
sb, sa, rb, ra = (list(map(float, a.split())) for a in sys.argv[8:12])
port, project, queues = sys.argv[12], sys.argv[13], sys.argv[14].split()
(mb_busy, mb_total), (ma_busy, ma_total) = (map(float, a.split()) for a in sys.argv[15:17])
# Every core's busy share over the run, as % of one core (2 cores: 200 at most).
machine = (ma_busy - mb_busy) / (ma_total - mb_total) * int(sys.argv[17]) * 100

def cli(*args):
    return subprocess.run(["redis-cli", "-p", port, *args], capture_output=True, text=True,
                          check=True).stdout

# Queues per master: each queue's slot (its keys' hash tag, as the Redis
# driver writes it: zaqar/src/storage/redis/keys.rs) and who owns it.
owners = []
for line in cli("cluster", "nodes").splitlines():
    f = line.split()
    if "master" not in f[2]:
        continue
    mport = int(f[1].split("@")[0].rsplit(":", 1)[1])
    for r in f[8:]:
        if not r.startswith("["):
            lo, _, hi = r.partition("-")
            owners.append((int(lo), int(hi or lo), mport))
per_master = {p: 0 for _, _, p in owners}
for q in queues:
    slot = int(cli("cluster", "keyslot", f"{len(project)}:{project}:{len(q)}:{q}"))
    mport = next(p for lo, hi, p in owners if lo <= slot <= hi)
    per_master[mport] = per_master.get(mport, 0) + 1
wall = float(t1) - float(t0)
posted = consumed = bench_cpu = 0.0
ok = True
for i in range(int(servers)):
    try:
        report = json.load(open(f"{out}/{name}-bench{i}.json"))
    except (OSError, ValueError):
        ok = False
        continue
    ops = {o["op"]: o for o in report["ops"]}
    posted += ops.get("post", {}).get("messages_per_s", 0)
    consumed += report["consumed_per_s"]
    bench_cpu += report["bench_cpu"]["percent_of_one_core"]
    ok = ok and report["correct"]
pct = lambda a, b: (a - b) / wall * 100
srv = [pct(a, b) for a, b in zip(sa, sb)]
red = [pct(a, b) for a, b in zip(ra, rb)]
row = {
    "masters": int(masters), "servers": int(servers), "posted_per_s": posted,
    "consumed_per_s": consumed, "correct": ok, "server_cpu": srv, "redis_cpu": red,
    "bench_cpu": bench_cpu, "wall_s": wall, "load1": float(load),
    "queues_per_master": [n for _, n in sorted(per_master.items())],
    "machine_cpu": machine,
}
json.dump(row, open(f"{out}/{name}.row.json", "w"))
print(json.dumps(row))
PY
}

log "ports: Redis $((BASE + 1))-$((BASE + 3)) (buses +50), servers $((BASE + 10))-$((BASE + 13)); reports in $OUT"
START=$(date +%s)
for m in $MASTERS; do
    log "$m master(s)"
    start_cluster "$m"
    URI="redis+cluster://$(printf '127.0.0.1:%s,' "${PORTS[@]}" | sed 's/,$//')"
    for s in $SERVERS; do
        log "$m master(s), $s server(s)"
        for p in "${PORTS[@]}"; do redis-cli -p "$p" flushall >/dev/null; done
        start_servers "$s" "$URI"
        run_point "$m" "$s" "${PORTS[@]}" >>"$OUT/rows.jsonl"
        stop_servers
    done
    stop_cluster "${PORTS[@]}"
done
ELAPSED=$(($(date +%s) - START))

echo
python3 - "$OUT" "$MASTERS" "$SERVERS" "$ELAPSED" <<PY | tee "$OUT/table.txt"
import json, sys
out, masters, servers, elapsed = sys.argv[1], sys.argv[2].split(), sys.argv[3].split(), sys.argv[4]
print(f"Redis Cluster scale-out: $QUEUES queues, $PRODUCERS producers, $CONSUMERS consumers, "
      f"batch $BATCH, ${DURATION}s after ${WARMUP}s warm-up per point, one zaqar-bench per server; "
      f"$(nproc) cores; {elapsed}s in all")
print("CPU: % of one core over each point's whole zaqar-bench run (set-up and warm-up included);"
      " machine: every process on every core, ours and others' ($(nproc) cores: $(($(nproc) * 100)) at most);"
      " CPU µs/msg: all servers' and all masters' CPU per message posted (each is also claimed and deleted)")
head = ["masters", "servers", "posted/s", "consumed/s", "checks", "servers CPU %",
        "bench CPU %", "Redis CPU % (each master)", "queues/master", "machine CPU %", "load1",
        "CPU µs/msg servers", "Redis"]
# CPU per message posted (then claimed and deleted): % of a core over messages/s.
per_msg = lambda pct, rate: f"{pct / 100 / rate * 1e6:.0f}" if rate else "-"
rows = []
for m in masters:
    for s in servers:
        r = json.load(open(f"{out}/m{m}-s{s}.row.json"))
        each = " + ".join(f"{c:.0f}" for c in r["server_cpu"])
        rows.append([m, s, f"{r['posted_per_s']:,.0f}", f"{r['consumed_per_s']:,.0f}",
                     "OK" if r["correct"] else "FAILED",
                     f"{sum(r['server_cpu']):.0f}" + (f" ({each})" if len(r["server_cpu"]) > 1 else ""),
                     f"{r['bench_cpu']:.0f}",
                     " + ".join(f"{c:.0f}" for c in r["redis_cpu"]),
                     " + ".join(str(n) for n in r["queues_per_master"]),
                     f"{r['machine_cpu']:.0f}",
                     f"{r['load1']:.2f}",
                     per_msg(sum(r["server_cpu"]), r["posted_per_s"]),
                     per_msg(sum(r["redis_cpu"]), r["posted_per_s"])])
width = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
fmt = lambda cells: "  ".join(c.rjust(w) if i not in (4,) else c.ljust(w) for i, (c, w) in enumerate(zip(cells, width))).rstrip()
print(fmt(head))
print("  ".join("-" * w for w in width))
for r in rows:
    print(fmt(r))
bad = [f"m{r[0]}-s{r[1]}" for r in rows if r[4] != "OK"]
print("Checks (zaqar-bench: no loss, no duplicate, before + posted = consumed + left):",
      "all OK" if not bad else "FAILED at " + ", ".join(bad) + f" (see {out})")
sys.exit(1 if bad else 0)
PY
