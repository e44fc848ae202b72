#!/usr/bin/env bash
# Starts throw-away Redis topologies for the Redis driver's tests, on
# loopback ports of their own (never the machine's 6379), and prints the
# environment the tests read:
#
#   eval "$(tests/redis/start.sh all)"        # standalone + cluster + sentinel
#   cargo test -p zaqar storage::redis
#   tests/redis/stop.sh all
#
# Topologies (ports overridable by env):
#   standalone  one server on $ZAQAR_REDIS_PORT (6390), appendonly with
#               appendfsync always       -> ZAQAR_TEST_REDIS_URL
#   cluster     three masters on $ZAQAR_REDIS_CLUSTER_PORT..+2 (6391-6393)
#                                        -> ZAQAR_TEST_REDIS_CLUSTER_URL
#   sentinel    master $ZAQAR_REDIS_SENTINEL_PORT (6394), replica +1, three
#               sentinels on $ZAQAR_REDIS_SENTINELS_PORT..+2 (26394-26396),
#               master name zqmaster
#                                        -> ZAQAR_TEST_REDIS_SENTINEL_URL
# Data and logs go under $ZAQAR_REDIS_DIR (/tmp/zaqar-test-redis). Starting
# a topology that already answers is a no-op. Needs redis-server and
# redis-cli (Debian: apt-get install redis-server).
set -euo pipefail

DIR=${ZAQAR_REDIS_DIR:-/tmp/zaqar-test-redis}
PORT=${ZAQAR_REDIS_PORT:-6390}
CPORT=${ZAQAR_REDIS_CLUSTER_PORT:-6391}
SPORT=${ZAQAR_REDIS_SENTINEL_PORT:-6394}
SSPORT=${ZAQAR_REDIS_SENTINELS_PORT:-26394}
HOST=127.0.0.1

for tool in redis-server redis-cli; do
  command -v "$tool" >/dev/null || { echo "start.sh: $tool not found (apt-get install redis-server)" >&2; exit 1; }
done

up() { redis-cli -h "$HOST" -p "$1" ping 2>/dev/null | grep -q PONG; }

wait_up() {
  for _ in $(seq 1 100); do up "$1" && return 0; sleep 0.1; done
  echo "start.sh: Redis on port $1 did not come up; see $DIR/$1/log" >&2
  exit 1
}

# server PORT [extra redis-server args...]
server() {
  local port=$1; shift
  up "$port" && return 0
  mkdir -p "$DIR/$port"
  redis-server --bind "$HOST" --port "$port" --dir "$DIR/$port" --daemonize yes \
    --pidfile "$DIR/$port/pid" --logfile "$DIR/$port/log" --save '' \
    --protected-mode no "$@"
  wait_up "$port"
}

standalone() {
  server "$PORT" --appendonly yes --appendfsync always
  echo "export ZAQAR_TEST_REDIS_URL=redis://$HOST:$PORT"
}

cluster() {
  local ports=("$CPORT" "$((CPORT + 1))" "$((CPORT + 2))")
  for p in "${ports[@]}"; do
    server "$p" --cluster-enabled yes --cluster-config-file "$DIR/$p/nodes.conf" \
      --cluster-node-timeout 2000 --appendonly no
  done
  if ! redis-cli -h "$HOST" -p "$CPORT" cluster info | grep -q 'cluster_state:ok'; then
    redis-cli --cluster create "$HOST:${ports[0]}" "$HOST:${ports[1]}" "$HOST:${ports[2]}" \
      --cluster-replicas 0 --cluster-yes >"$DIR/cluster-create.log" 2>&1
    for _ in $(seq 1 100); do
      redis-cli -h "$HOST" -p "$CPORT" cluster info | grep -q 'cluster_state:ok' && break
      sleep 0.1
    done
  fi
  echo "export ZAQAR_TEST_REDIS_CLUSTER_URL=redis+cluster://$HOST:${ports[0]},$HOST:${ports[1]},$HOST:${ports[2]}"
}

sentinel() {
  local master=$SPORT replica=$((SPORT + 1))
  # No 5 s diskless-sync delay (Redis 7's default) before the replica's first
  # sync, and wait for the link: a failover test must start with a replica
  # that holds what the master acknowledged.
  server "$master" --repl-diskless-sync-delay 0
  server "$replica" --replicaof "$HOST" "$master"
  for _ in $(seq 1 100); do
    redis-cli -h "$HOST" -p "$replica" info replication | grep -q 'master_link_status:up' && break
    sleep 0.1
  done
  local urls=()
  for i in 0 1 2; do
    local sp=$((SSPORT + i))
    urls+=("$HOST:$sp")
    up "$sp" && continue
    mkdir -p "$DIR/$sp"
    cat >"$DIR/$sp/sentinel.conf" <<CONF
bind $HOST
port $sp
daemonize yes
pidfile $DIR/$sp/pid
logfile $DIR/$sp/log
dir $DIR/$sp
sentinel monitor zqmaster $HOST $master 2
sentinel down-after-milliseconds zqmaster 1000
sentinel failover-timeout zqmaster 5000
sentinel parallel-syncs zqmaster 1
CONF
    redis-server "$DIR/$sp/sentinel.conf" --sentinel
    wait_up "$sp"
  done
  local IFS=,
  echo "export ZAQAR_TEST_REDIS_SENTINEL_URL=redis://${urls[*]}?master=zqmaster"
}

mkdir -p "$DIR"
case "${1:-standalone}" in
  standalone) standalone ;;
  cluster) cluster ;;
  sentinel) sentinel ;;
  all) standalone; cluster; sentinel ;;
  *) echo "usage: $0 [standalone|cluster|sentinel|all]" >&2; exit 2 ;;
esac
