#!/usr/bin/env python3
"""The fault harness: load through zaqar-server processes on one store while
faults are injected on a schedule, then an exact account of every message.

Stores (``--store``, several separated by commas, or ``all``):

* ``redis``: one Redis (``appendonly yes``, ``appendfsync always``) behind a
  small TCP fault proxy (this file: latency, drops, a cut connection); two
  servers whose message and management stores are that Redis through the
  proxy. Faults: ``kill -9`` of the first server (restarted), ``kill -9`` of
  Redis (restarted on its AOF), 300 ms of latency on every packet, every
  packet dropped for a while (a partition: the proxy forwards nothing, in
  either direction, on old and new connections alike, then resets the
  connections whose bytes it dropped, as TCP gives up on them), the
  connections cut and new ones refused for a while.
* ``mongodb``: SecantusDB (the MongoDB-wire test server of tests/mongodb,
  WiredTiger, journal on, a one-node replica set) behind the same proxy; two
  servers with both stores on one database (``w=majority``, ``j=true``, the
  driver's defaults). Faults: ``kill -9`` of the first server, ``kill -9``
  of SecantusDB restarted on its data directory, a clean restart of
  SecantusDB (SIGTERM, then started again), every packet dropped for a
  while, the connections cut; the long schedule adds latency.
* ``sqlite``: one server owns the database file (SQLite admits one writing
  process); ``kill -9`` of that server, restarted on the file.
* ``sentinel``: a Redis master and a replica (both AOF always) watched by
  three sentinels; two servers configured with the Sentinel URI
  (``redis://s1,s2,s3?master=NAME``) and the default ``wait_replicas = 0``.
  At first the replica replicates through the fault proxy, REPLICATION_LAG
  behind. Faults: a host crash of that first master (``kill -9``, and what
  the lagging link holds is dropped), ``kill -9`` of the current master, and
  the current master paused (SIGSTOP) until the sentinels promoted the
  replica, then resumed; the servers must follow each new master; a killed
  master comes back as a replica of the new one. Replication is
  asynchronous, so writes the master acknowledged in its last moments may
  be lost: this scenario *measures* that loss (lost, claimed twice, deleted
  twice, deleted and back) and fails only when an undone write was
  acknowledged away from a fault (more than ``ASYNC_WINDOW`` seconds before
  one began, or after its recovery).
* ``sentinel-wait``: the same with ``wait_replicas = 1`` (every write waits
  for the replica, Redis ``WAIT``): nothing acknowledged may be lost.
* ``cluster``: a Redis Cluster of three masters with one replica each (AOF
  always, node timeout 2 s, made by ``redis-cli --cluster create``); two
  servers with ``redis+cluster://`` and ``wait_replicas = 0``. Faults: the
  slots of the harness' queues moved to another master under load (SETSLOT
  IMPORTING/MIGRATING, MIGRATE key by key, SETSLOT NODE; a key the target
  already holds, BUSYKEY, is recorded and moved with REPLACE), then
  ``kill -9`` of the master of the first queue's slot (its replica is
  promoted; the node restarted rejoins as a replica). Undone writes are
  excused only around the failover, as for ``sentinel``; around the
  migration they fail the run.
* ``cluster-wait``: the same with ``wait_replicas = 1``: nothing
  acknowledged may be lost.

Load: zaqar-bench (producers, consumers, observers) on queues of its own
through the last server, and this harness' own producers and consumers
through every server, which record every id they are told about and when.

Accounting (Jepsen style, on the harness' own queues; at the end every
message left is listed):

* every post answered 201 is either deleted once under a claim or still in
  the queue at the end: *lost* counts the others;
* no message is returned by two claims that were live at once
  (*double claims*), none is deleted under two different claims (*double
  deletes*), and none deleted under a claim (204) is back at the end
  (*resurrected*);
* every 5xx is counted and must fall in a fault window (or the recovery
  that follows it);
* recovery time: from the end of a fault to the first post and claim that
  succeed through every server.

zaqar-bench's own ledger (its ``correct`` verdict: balance, no double claim,
no double delete) is checked too (reported only for ``sentinel``, where its
messages may be lost in the same window).

Writes ``<out>/<store>/results.json``, ``reliability-table-<store>.inc``
and ``reliability-throughput-<store>.png`` (posts and deletions per second,
fault windows shaded) and ``<out>/summary.json``; ``--publish`` copies the
tables and plots into doc/source for reliability.rst. Exits non-zero when
anything is lost, duplicated or unexplained.

The soak (``--schedule soak --minutes 60``, Redis only) runs the long
schedule's faults over and over for that long at a gentler pace, with a
webhook subscriber on the harness' queues (so the notification outbox works
all the while), samples every server's RSS and open files and the outbox
depth (``/metrics``) every 10 s, and fails unless they stay flat; it writes
``reliability-soak.inc`` and ``reliability-soak.png``.

``--store all`` (the CI step) runs every scenario.

Usage: tests/faults/harness.py [--store all|redis,mongodb,sqlite,sentinel,sentinel-wait,
                                         cluster-failover,cluster,cluster-wait]
                               [--schedule short|long|soak] [--minutes N] [--out DIR]
                               [--publish]
"""

import argparse
import collections
import json
import os
import pathlib
import queue as queue_mod
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse
import uuid

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "functional"))
os.environ.pop("ZAQAR_TEST_BACKEND", None)

import requests  # noqa: E402
from zaqar_testlib import ZaqarServer  # noqa: E402

# Every port this harness opens is PORT_BASE + a fixed offset.
PORT_BASE = int(os.environ.get("ZAQAR_TEST_PORT_BASE", "16300"))
REDIS_PORT = int(os.environ.get("ZAQAR_FAULTS_REDIS_PORT", PORT_BASE + 90))
PROXY_PORT = int(os.environ.get("ZAQAR_FAULTS_PROXY_PORT", PORT_BASE + 91))
MONGODB_PORT = PORT_BASE + 92
SENTINEL_REDIS_PORTS = (PORT_BASE + 93, PORT_BASE + 94)  # master, replica at start
SENTINEL_PORTS = (PORT_BASE + 95, PORT_BASE + 96, PORT_BASE + 97)
REPLICATION_PROXY_PORT = PORT_BASE + 98  # the first replica's link to the master
REPLICATION_LAG = 0.05  # seconds the fault proxy holds each chunk of that link
CLUSTER_PORTS = tuple(PORT_BASE + 110 + k for k in range(6))  # 3 masters, 3 replicas
CLUSTER_BUS = 10  # node k's cluster bus: CLUSTER_PORTS[k] + 10 (in our range)
CLUSTER_NODE_TIMEOUT_MS = 2000
# Keys per MIGRATE while a slot moves: one, so that a queue's few keys
# (index, records, expiries, sequence) are split between the two nodes for
# a while (multi-key scripts on such a slot get TRYAGAIN or ASK).
CLUSTER_MIGRATE_BATCH = 1
SERVER_PORTS = PORT_BASE + 100  # server k: http +2k, websocket +2k+1
RECEIVER_PORT = PORT_BASE + 104  # the soak's webhook receiver
SOAK_SAMPLE_S = 10
SENTINEL_MASTER = "zqfaults"
BENCH_BIN = pathlib.Path(os.environ.get("ZAQAR_BENCH_BIN", ROOT / "target/debug/zaqar-bench"))
SECANTUS_VENV = pathlib.Path(os.environ.get("ZAQAR_MONGODB_VENV",
                                            ROOT / "target" / "secantusdb-venv"))
PROJECT = "faults"
QUEUES = ["acct-0", "acct-1"]
CLAIM_TTL = 60
CLIENT_ID = str(uuid.uuid4())
HEADERS = {"Client-ID": CLIENT_ID, "X-Project-ID": PROJECT}
TIMEOUT = 5  # seconds a client waits for an answer (mongodb: MONGODB_TIMEOUT)
# The MongoDB driver waits up to serverSelectionTimeoutMS (5 s) for a server,
# then the server answers 503: the clients wait longer, to see that answer.
MONGODB_TIMEOUT = 8
RECOVERY_SLACK = 15.0  # seconds after a fault in which 5xx are still explained
# sentinel (wait_replicas = 0): a write acknowledged this long before the
# master was killed must have reached the replica (replication on loopback
# takes well under a millisecond; the ack is timed when the client reads it).
ASYNC_WINDOW = 1.0

KILL_SERVER = "kill -9 server"
KILL_REDIS = "kill -9 redis (AOF always)"
LATENCY = "latency 300 ms"
CUT = "cut connection"
DROP = "packets dropped (partition)"
KILL_MONGODB = "kill -9 mongodb, restart on its data"
RESTART_MONGODB = "clean restart of mongodb"
KILL_MASTER = "kill -9 master (Sentinel failover)"
PAUSE_MASTER = "master paused (SIGSTOP), failover, resumed"
CRASH_MASTER = "master host crash (kill -9, link in flight dropped)"
MIGRATE_SLOTS = "slot migration (the queues' slots to another master)"
KILL_CLUSTER_MASTER = "kill -9 master of the queues' slot (Cluster failover)"

# Per store: (name, seconds of load before it, seconds it lasts).
SCHEDULES = {
    "redis": {
        "short": [(KILL_SERVER, 4, 2), (KILL_REDIS, 4, 2), (LATENCY, 4, 3), (DROP, 4, 3),
                  (CUT, 4, 2)],
        "long": [(KILL_SERVER, 20, 5), (KILL_REDIS, 20, 5), (LATENCY, 20, 10),
                 (DROP, 20, 10), (CUT, 20, 5)] * 3,
    },
    "mongodb": {
        # SecantusDB takes about 4 s to start: the kill leaves it down for
        # about 8 s, past the driver's 5 s server selection (503s).
        "short": [(KILL_SERVER, 4, 2), (KILL_MONGODB, 4, 4), (RESTART_MONGODB, 4, 1),
                  (DROP, 4, 3), (CUT, 4, 2)],
        "long": [(KILL_SERVER, 20, 5), (KILL_MONGODB, 20, 5), (RESTART_MONGODB, 20, 5),
                 (LATENCY, 20, 10), (DROP, 20, 10), (CUT, 20, 5)] * 3,
    },
    "sqlite": {
        "short": [(KILL_SERVER, 4, 1), (KILL_SERVER, 4, 1), (KILL_SERVER, 4, 1)],
        "long": [(KILL_SERVER, 15, 3)] * 8,
    },
    "sentinel": {
        # The crash needs the original master (its replica lags behind it
        # through the proxy): first.
        "short": [(CRASH_MASTER, 5, 3), (KILL_MASTER, 5, 3), (PAUSE_MASTER, 5, 3)],
        "long": [(CRASH_MASTER, 20, 5)] + [(KILL_MASTER, 20, 5), (PAUSE_MASTER, 20, 5)] * 3,
    },
}
SCHEDULES["sentinel-wait"] = SCHEDULES["sentinel"]
SCHEDULES["cluster"] = {
    # The migration first (every slot owner up), then the failover of the
    # master now holding the queues' slot.
    "short": [(MIGRATE_SLOTS, 4, 2), (KILL_CLUSTER_MASTER, 4, 4)],
    "long": [(MIGRATE_SLOTS, 20, 5), (KILL_CLUSTER_MASTER, 20, 8)] * 3,
}
SCHEDULES["cluster-wait"] = SCHEDULES["cluster"]
# Two failovers in a row (wait_replicas = 1), no migration.
SCHEDULES["cluster-failover"] = {
    "short": [(KILL_CLUSTER_MASTER, 4, 4), (KILL_CLUSTER_MASTER, 4, 4)],
    "long": [(KILL_CLUSTER_MASTER, 20, 8)] * 4,
}
STORES = ["redis", "mongodb", "sqlite", "sentinel", "sentinel-wait", "cluster", "cluster-wait",
          "cluster-failover"]
# What `--store all` (the CI step) runs.
ALL_STORES = ["redis", "mongodb", "sqlite", "sentinel", "sentinel-wait", "cluster", "cluster-wait",
              "cluster-failover"]


def wait_for(check, what, timeout=30.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{what}: not within {timeout:.0f} s")


def redis_cmd(port, *args, timeout=1.0):
    """One command to a Redis (or sentinel) on `port`; the reply as text."""
    out = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(port), *args],
                         capture_output=True, text=True, timeout=timeout + 2)
    return out.stdout.strip()


# ---------------------------------------------------------------------------
# the stores and the fault proxy
# ---------------------------------------------------------------------------

class Redis:
    """A redis-server with AOF fsync on every write, restartable on its data."""

    def __init__(self, workdir, port=REDIS_PORT, extra=()):
        self.dir = pathlib.Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port
        self.extra = list(extra)
        self.proc = None

    def start(self, extra=()):
        log = open(self.dir / "redis.log", "a")
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "yes", "--appendfsync", "always",
             "--dir", str(self.dir), *self.extra, *extra],
            stdout=log, stderr=subprocess.STDOUT)
        # Its own answer, not one of a stray server on the port.
        wait_for(lambda: self.proc.poll() is None and redis_cmd(self.port, "ping") == "PONG",
                 f"redis on {self.port}", 20)
        if self.proc.poll() is not None:
            raise RuntimeError(f"redis on {self.port} exited; see {self.dir}/redis.log")

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


class SecantusDB:
    """SecantusDB on MONGODB_PORT through tests/mongodb/start.sh (which
    installs it on first use), its data in a directory of ours; kill -9 by
    its pid file, restarted on the same data."""

    def __init__(self, workdir):
        self.dir = pathlib.Path(workdir)
        self.env = dict(os.environ, ZAQAR_MONGODB_PORT=str(MONGODB_PORT),
                        ZAQAR_MONGODB_DIR=str(self.dir), ZAQAR_MONGODB_VENV=str(SECANTUS_VENV))

    def start(self):
        subprocess.run(["bash", str(ROOT / "tests" / "mongodb" / "start.sh")], env=self.env,
                       check=True, stdout=subprocess.DEVNULL)

    def pid(self):
        return int((self.dir / "pid").read_text())

    def kill(self):
        pid = self.pid()
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not pid_alive(pid), "secantusdb to die", 10)

    def restart_clean(self):
        """SIGTERM (a clean shutdown, checkpoint included), then start."""
        pid = self.pid()
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not pid_alive(pid), "secantusdb to stop", 30)
        self.start()

    def stop(self):
        subprocess.run(["bash", str(ROOT / "tests" / "mongodb" / "stop.sh")], env=self.env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (setsid'd child of a finished shell is reaped by init) counts as gone.
    try:
        return pathlib.Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


class SentinelSet:
    """A master and a replica (AOF always) watched by three sentinels
    (quorum 2, down after 1 s); kill -9 of the current master, which comes
    back as a replica of the new one."""

    def __init__(self, workdir):
        self.dir = pathlib.Path(workdir)
        self.nodes = {p: Redis(self.dir / str(p), p, ["--repl-diskless-sync-delay", "0"])
                      for p in SENTINEL_REDIS_PORTS}
        self.sentinels = []
        self.failovers = []  # (killed port, seconds until a sentinel named another)
        self.lag = None

    def start(self):
        master, replica = SENTINEL_REDIS_PORTS
        self.nodes[master].start()
        # The replica lags: it replicates through the fault proxy, which
        # holds every chunk REPLICATION_LAG seconds (a replica across a
        # slower link). Once promoted it has no proxy; the old master comes
        # back as its replica directly.
        self.lag = FaultProxy(master, REPLICATION_PROXY_PORT, REPLICATION_LAG, delay_line=True)
        self.nodes[replica].start(["--replicaof", "127.0.0.1", str(REPLICATION_PROXY_PORT)])
        wait_for(lambda: "master_link_status:up" in redis_cmd(replica, "info", "replication"),
                 "replica link")
        for port in SENTINEL_PORTS:
            d = self.dir / f"sentinel-{port}"
            d.mkdir(parents=True, exist_ok=True)
            (d / "sentinel.conf").write_text(
                f"bind 127.0.0.1\nport {port}\ndir {d}\n"
                f"sentinel monitor {SENTINEL_MASTER} 127.0.0.1 {master} 2\n"
                f"sentinel down-after-milliseconds {SENTINEL_MASTER} 1000\n"
                f"sentinel failover-timeout {SENTINEL_MASTER} 5000\n"
                f"sentinel parallel-syncs {SENTINEL_MASTER} 1\n")
            log = open(d / "log", "a")
            self.sentinels.append(subprocess.Popen(
                ["redis-server", str(d / "sentinel.conf"), "--sentinel"],
                stdout=log, stderr=subprocess.STDOUT))
        for port in SENTINEL_PORTS:
            # Every sentinel knows the replica (and the others) before load.
            wait_for(lambda: self.master(port) == master and "num-slaves" in
                     redis_cmd(port, "sentinel", "master", SENTINEL_MASTER)
                     and self.replicas(port) >= 1, f"sentinel {port}")

    def master(self, port=SENTINEL_PORTS[0]):
        out = redis_cmd(port, "sentinel", "get-master-addr-by-name", SENTINEL_MASTER).split()
        return int(out[1]) if len(out) == 2 else None

    def replicas(self, port):
        out = redis_cmd(port, "sentinel", "master", SENTINEL_MASTER).split("\n")
        fields = dict(zip(out[::2], out[1::2]))
        return int(fields.get("num-slaves", 0))

    def uri(self):
        hosts = ",".join(f"127.0.0.1:{p}" for p in SENTINEL_PORTS)
        return f"redis://{hosts}?master={SENTINEL_MASTER}"

    def kill_master(self, duration, crash=False):
        """kill -9 of the current master; with `crash`, of the original one
        with what its lagging link to the replica holds (a host crash)."""
        old = self.master()
        if crash and old != SENTINEL_REDIS_PORTS[0]:
            raise RuntimeError("a host crash needs the original master (schedule it first)")
        killed_at = time.time()
        if crash:
            self.lag.crash()
        self.nodes[old].kill()
        wait_for(lambda: all(self.master(p) not in (None, old) for p in SENTINEL_PORTS),
                 "sentinel failover")
        new = self.master()
        self.failovers.append((old, round(time.time() - killed_at, 2)))
        time.sleep(max(0.0, duration - (time.time() - killed_at)))
        self.nodes[old].start(["--replicaof", "127.0.0.1", str(new)])
        return killed_at

    def pause_master(self, duration):
        """SIGSTOP the master (a hung or cut-off master) until the sentinels
        promoted the replica and `duration` passed, then SIGCONT: it answers
        what its clients sent meanwhile, until the sentinels turn it into a
        replica of the new master."""
        old = self.master()
        paused_at = time.time()
        proc = self.nodes[old].proc
        proc.send_signal(signal.SIGSTOP)
        try:
            wait_for(lambda: all(self.master(p) not in (None, old) for p in SENTINEL_PORTS),
                     "sentinel failover")
            self.failovers.append((old, round(time.time() - paused_at, 2)))
            time.sleep(max(0.0, duration - (time.time() - paused_at)))
        finally:
            proc.send_signal(signal.SIGCONT)
        wait_for(lambda: "role:slave" in redis_cmd(old, "info", "replication"),
                 "old master demoted")
        return paused_at

    def stop(self):
        for s in self.sentinels:
            s.terminate()
            s.wait(10)
        for node in self.nodes.values():
            node.stop()
        if self.lag:
            self.lag.close()


class Resp:
    """A minimal Redis connection (RESP2) for the migration loop, which
    sends hundreds of commands: one socket, not a redis-cli per command."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), 5)
        self.file = self.sock.makefile("rb")

    def __call__(self, *args):
        out = [f"*{len(args)}\r\n".encode()]
        for a in args:
            b = str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(b), b))
        self.sock.sendall(b"".join(out))
        return self._read()

    def _read(self):
        line = self.file.readline()[:-2]
        kind, rest = line[:1], line[1:].decode()
        if kind == b"+":
            return rest
        if kind == b"-":
            return "ERR! " + rest
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.file.read(n + 2)[:-2]
            return data.decode()
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._read() for _ in range(n)]
        raise RuntimeError(f"unexpected reply {line!r}")

    def close(self):
        self.file.close()
        self.sock.close()


def describe_key(port, key, asking=False):
    """A key's type and size on one node (`asking`: in a slot it imports)."""
    cmds = "ASKING\n" if asking else ""
    cmds += f"TYPE {key}\n"
    out = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(port)], input=cmds,
                         capture_output=True, text=True, timeout=5).stdout.split()
    kind = out[-1] if out else "?"
    size = {"hash": "HLEN", "zset": "ZCARD", "set": "SCARD", "list": "LLEN",
            "string": "GET"}.get(kind)
    if size:
        got = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(port)],
                             input=("ASKING\n" if asking else "") + f"{size} {key}\n",
                             capture_output=True, text=True, timeout=5).stdout.split()
        return f"{kind} {size.lower()} {got[-1] if got else '?'}"
    return kind


class RedisCluster:
    """A Redis Cluster of three masters with one replica each (AOF always,
    node timeout CLUSTER_NODE_TIMEOUT_MS), made by ``redis-cli --cluster
    create``. Faults: the slots of the harness' queues moved to another
    master by hand (SETSLOT IMPORTING / MIGRATING, MIGRATE in batches,
    SETSLOT NODE) while the load runs, and ``kill -9`` of the master of the
    queues' slot: the cluster promotes its replica; the killed node is
    started again on its data and rejoins as a replica."""

    def __init__(self, workdir):
        self.dir = pathlib.Path(workdir)
        self.nodes = {p: Redis(self.dir / str(p), p, [
            "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", str(CLUSTER_NODE_TIMEOUT_MS),
            "--cluster-port", str(p + CLUSTER_BUS), "--repl-diskless-sync-delay", "0"])
            for p in CLUSTER_PORTS}
        self.failovers = []  # (killed port, seconds until the slot had a new master)
        self.migrations = []  # {slot, from, to, keys, batches, seconds}

    def start(self):
        for node in self.nodes.values():
            node.start()
        out = subprocess.run(
            ["redis-cli", "--cluster", "create", *(f"127.0.0.1:{p}" for p in CLUSTER_PORTS),
             "--cluster-replicas", "1", "--cluster-yes"],
            capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create: {out.stdout}{out.stderr}")
        self.wait_settled()

    def wait_settled(self, timeout=30):
        """Every node up says the cluster is ok, knows six nodes, none
        failing, and every replica's link is up."""
        def settled():
            for p in self.alive():
                if "cluster_state:ok" not in redis_cmd(p, "cluster", "info"):
                    return False
                view = self.view(p)
                if len(view) != 6 or any("fail" in n["flags"] for n in view.values()):
                    return False
                info = redis_cmd(p, "info", "replication")
                if "role:slave" in info and "master_link_status:up" not in info:
                    return False
            return True
        wait_for(settled, "cluster settled", timeout)

    def alive(self):
        return [p for p, n in self.nodes.items() if n.proc and n.proc.poll() is None]

    def view(self, port):
        """CLUSTER NODES as seen by `port`: id -> {port, flags, master, slots}."""
        out = {}
        for line in redis_cmd(port, "cluster", "nodes").splitlines():
            f = line.split()
            # Not a node line: an error reply, such as the "LOADING Redis is
            # loading the dataset in memory" of a node restarted on its AOF
            # (it has eight words: parsing it failed the run once). No view
            # then, so the caller sees an unsettled cluster and looks again.
            if len(f) < 8 or len(f[0]) != 40 or ":" not in f[1]:
                continue
            slots = set()
            for r in f[8:]:
                if r.startswith("["):  # a slot being imported or migrated
                    continue
                a, _, b = r.partition("-")
                slots.update(range(int(a), int(b or a) + 1))
            out[f[0]] = {"port": int(f[1].split("@")[0].rsplit(":", 1)[1]),
                         "flags": f[2], "master": f[3], "slots": slots}
        return out

    def owner(self, slot, via=None):
        """(id, port) of the master serving `slot`, as a live node sees it."""
        via = via or self.alive()[0]
        for nid, n in self.view(via).items():
            if slot in n["slots"] and "master" in n["flags"] and "fail" not in n["flags"]:
                return nid, n["port"]
        return None, None

    def masters(self, via=None):
        via = via or self.alive()[0]
        return {n["port"]: nid for nid, n in self.view(via).items()
                if "master" in n["flags"] and "fail" not in n["flags"]}

    def queue_slots(self):
        """The slots of the harness' queues' keys, found on the masters with
        --scan (a real key of each queue) and CLUSTER KEYSLOT."""
        slots = {}
        for port in self.masters():
            for q in QUEUES:
                out = subprocess.run(
                    ["redis-cli", "-h", "127.0.0.1", "-p", str(port), "--scan", "--pattern",
                     f"*{{{len(PROJECT)}:{PROJECT}:{len(q)}:{q}}}*"],
                    capture_output=True, text=True, timeout=30).stdout.split()
                if out:
                    slots.setdefault(q, int(redis_cmd(port, "cluster", "keyslot", out[0])))
        if set(slots) != set(QUEUES):
            raise RuntimeError(f"keys of the queues not found: {slots}")
        return slots

    def migrate_slots(self, duration):
        """Each queue slot to the next master, by the standard procedure,
        its keys spread over `duration` in batches of CLUSTER_MIGRATE_BATCH
        (the slot stays MIGRATING/IMPORTING all that while)."""
        began = time.time()
        slots = sorted(set(self.queue_slots().values()))
        for slot in slots:
            src_id, src = self.owner(slot)
            masters = self.masters()
            ports = sorted(masters)
            dst = ports[(ports.index(src) + 1) % len(ports)]
            dst_id = masters[dst]
            t = time.time()
            check = [redis_cmd(dst, "cluster", "setslot", str(slot), "importing", src_id),
                     redis_cmd(src, "cluster", "setslot", str(slot), "migrating", dst_id)]
            if check != ["OK", "OK"]:
                raise RuntimeError(f"setslot {slot}: {check}")
            total = int(redis_cmd(src, "cluster", "countkeysinslot", str(slot)) or 0)
            pause = duration / len(slots) / max(1, total / CLUSTER_MIGRATE_BATCH)
            moved = batches = 0
            busy = []
            conn = Resp(src)
            while True:
                keys = conn("cluster", "getkeysinslot", slot, CLUSTER_MIGRATE_BATCH)
                if not keys:
                    break
                reply = conn("migrate", "127.0.0.1", dst, "", 0, 5000, "keys", *keys)
                if "BUSYKEY" in reply:
                    # A script sent to the importing node (ASK: its one
                    # declared key had moved) created this key there while
                    # the source still held it. Recorded, then moved over
                    # it, as ``redis-cli --cluster reshard --cluster-replace``
                    # would: what the target's copy held is lost.
                    busy.append({"key": keys[0], "source": describe_key(src, keys[0]),
                                 "target": describe_key(dst, keys[0], asking=True),
                                 "at_s": round(time.time() - began, 3)})
                    print(f"cluster: MIGRATE BUSYKEY {busy[-1]}", flush=True)
                    reply = conn("migrate", "127.0.0.1", dst, "", 0, 5000, "replace", "keys",
                                 *keys)
                if reply not in ("OK", "NOKEY"):
                    raise RuntimeError(f"migrate slot {slot}: {reply}")
                moved += len(keys)
                batches += 1
                time.sleep(pause)
            conn.close()
            # The target first, then the source, then the other masters.
            for port in [dst, src] + [p for p in ports if p not in (src, dst)]:
                reply = redis_cmd(port, "cluster", "setslot", str(slot), "node", dst_id)
                if reply != "OK":
                    raise RuntimeError(f"setslot {slot} node on {port}: {reply}")
            self.migrations.append({"slot": slot, "from": src, "to": dst, "keys": moved,
                                    "batches": batches, "busykeys": busy,
                                    "seconds": round(time.time() - t, 2)})
            print(f"cluster: slot {slot} moved {src} -> {dst}: {moved} keys in {batches} "
                  f"batches, {time.time() - t:.2f} s", flush=True)
        self.wait_settled()
        return began

    def kill_master(self, duration):
        """kill -9 of the master of the first queue's slot; wait until the
        cluster serves that slot from its replica, then start the killed
        node again (it rejoins as a replica of the promoted one)."""
        slot = self.queue_slots()[QUEUES[0]]
        old_id, old = self.owner(slot)
        killed_at = time.time()
        self.nodes[old].kill()

        def promoted():
            for p in self.alive():
                nid, _ = self.owner(slot, p)
                if nid in (None, old_id):
                    return False
                if "cluster_state:ok" not in redis_cmd(p, "cluster", "info"):
                    return False
            return True
        wait_for(promoted, "cluster failover", 30)
        self.failovers.append((old, round(time.time() - killed_at, 2)))
        time.sleep(max(0.0, duration - (time.time() - killed_at)))
        self.nodes[old].start()
        wait_for(lambda: "role:slave" in redis_cmd(old, "info", "replication"),
                 "killed master back as a replica")
        self.wait_settled()
        return killed_at

    def uri(self):
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in CLUSTER_PORTS)

    def stop(self):
        for node in self.nodes.values():
            node.stop()


class FaultProxy:
    """TCP proxy from PROXY_PORT to a store that can delay, drop or cut traffic."""

    def __init__(self, upstream_port, port=PROXY_PORT, latency=0.0, delay_line=False):
        self.upstream_port = upstream_port
        self.latency = latency
        # delay_line: every chunk is forwarded `latency` after it arrived,
        # whatever the throughput (a link that is long, not narrow); else
        # each chunk waits `latency` before the next is read.
        self.delay_line = delay_line
        self.cut = False
        self.dropping = False
        # A partition: every byte read is thrown away (both directions, every
        # connection, new ones too) and the connections it touched are
        # remembered, to be reset when it ends.
        self.blackhole = False
        self.blackholed = set()
        self.conns = set()
        self.lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", port), reuse_port=False)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopped:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.cut:
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), 2)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.conns.update((client, upstream))
            pump = self._pump_delayed if self.delay_line else self._pump
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=pump, args=(a, b), daemon=True).start()

    def _pump(self, src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if self.latency:
                    time.sleep(self.latency)
                if self.dropping:
                    break
                if self.blackhole:
                    with self.lock:
                        self.blackholed.update((src, dst))
                    continue
                dst.sendall(data)
        except OSError:
            pass
        finally:
            self._close_pair(src, dst)

    def _pump_delayed(self, src, dst):
        chunks = queue_mod.Queue()

        def forward():
            try:
                while True:
                    due, data = chunks.get()
                    if data is None or self.dropping:
                        break
                    time.sleep(max(0.0, due - time.monotonic()))
                    if self.dropping:
                        break
                    if self.blackhole:
                        with self.lock:
                            self.blackholed.update((src, dst))
                        continue
                    dst.sendall(data)
            except OSError:
                pass
            finally:
                self._close_pair(src, dst)

        threading.Thread(target=forward, daemon=True).start()
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                chunks.put((time.monotonic() + self.latency, data))
        except OSError:
            pass
        chunks.put((0.0, None))

    def _close_pair(self, src, dst):
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        with self.lock:
            self.conns.discard(src)
            self.conns.discard(dst)

    def cut_all(self):
        self.cut = True
        with self.lock:
            conns = list(self.conns)
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def partition(self, duration):
        """Drops every packet for `duration` seconds, then resets the
        connections that lost bytes (their streams are broken: TCP would
        have timed them out); untouched ones go on."""
        self.blackhole = True
        time.sleep(duration)
        self.blackhole = False
        with self.lock:
            broken, self.blackholed = list(self.blackholed), set()
        for s in broken:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def crash(self):
        """What the proxy holds and has not delivered is dropped, and every
        connection closed (the sending host died with it)."""
        self.dropping = True
        self.cut_all()

    def close(self):
        self.stopped = True
        try:
            # Wakes the thread blocked in accept(); close() alone does not,
            # and the port would stay bound.
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()
        self.cut_all()


class Topology:
    """One store set up for a scenario: the servers' options, how many
    servers share it, and its faults."""

    def __init__(self, store, tmp):
        self.store = store
        self.backend = None
        self.proxy = None
        self.servers_count = 2
        self.client_timeout = MONGODB_TIMEOUT if store == "mongodb" else TIMEOUT
        try:
            self._start(tmp)
        except BaseException:
            self.stop()
            raise

    def _start(self, tmp):
        store = self.store
        if store == "redis":
            self.backend = Redis(tmp / "redis")
            self.backend.start()
            self.proxy = FaultProxy(REDIS_PORT)
            uri = f"redis://127.0.0.1:{PROXY_PORT}"
            self.options = {
                "drivers": {"message_store": "redis", "management_store": "redis"},
                "drivers:message_store:redis": {"uri": uri},
                "drivers:management_store:redis": {"uri": uri},
            }
            self.describe = "two servers on one Redis (AOF always) through the fault proxy"
        elif store == "mongodb":
            self.backend = SecantusDB(tmp / "mongodb")
            self.backend.start()
            self.proxy = FaultProxy(MONGODB_PORT)
            # directConnection: the driver talks to the proxy only (with
            # replicaSet= it would connect to the address the server
            # announces, around the proxy); the server still presents
            # itself as a replica set member, so w=majority, j=true hold.
            uri = (f"mongodb://127.0.0.1:{PROXY_PORT}/?directConnection=true"
                   "&socketTimeoutMS=10000&serverSelectionTimeoutMS=5000")
            section = {"uri": uri, "database": "faults"}
            self.options = {
                "drivers": {"message_store": "mongodb", "management_store": "mongodb"},
                "drivers:message_store:mongodb": section,
                "drivers:management_store:mongodb": section,
            }
            self.describe = ("two servers on one SecantusDB database (w=majority, journal) "
                             "through the fault proxy")
        elif store == "sqlite":
            self.servers_count = 1
            self.options = {"drivers": {"message_store": "sqlite",
                                        "management_store": "sqlite"}}
            self.describe = "one server owning its SQLite file"
        elif store in ("sentinel", "sentinel-wait"):
            self.backend = SentinelSet(tmp / "sentinel")
            self.backend.start()
            section = {"uri": self.backend.uri()}
            if store == "sentinel-wait":
                section["wait_replicas"] = "1"
            self.options = {
                "drivers": {"message_store": "redis", "management_store": "redis"},
                "drivers:message_store:redis": section,
                "drivers:management_store:redis": section,
            }
            self.describe = ("two servers on a Redis master + replica (AOF always, "
                             f"replicating {REPLICATION_LAG * 1000:.0f} ms behind at first) "
                             "and three sentinels, wait_replicas = "
                             f"{section.get('wait_replicas', '0')}")
        elif store in ("cluster", "cluster-wait", "cluster-failover"):
            self.backend = RedisCluster(tmp / "cluster")
            self.backend.start()
            section = {"uri": self.backend.uri()}
            if store in ("cluster-wait", "cluster-failover"):
                section["wait_replicas"] = "1"
            self.options = {
                "drivers": {"message_store": "redis", "management_store": "redis"},
                "drivers:message_store:redis": section,
                "drivers:management_store:redis": section,
            }
            self.describe = ("two servers on a Redis Cluster of three masters with one "
                             "replica each (AOF always, node timeout "
                             f"{CLUSTER_NODE_TIMEOUT_MS} ms), wait_replicas = "
                             f"{section.get('wait_replicas', '0')}")
        else:
            raise ValueError(store)

    def inject(self, name, duration, servers):
        if name == KILL_SERVER:
            servers[0].kill()
            time.sleep(duration)
            servers[0].start()
        elif name == KILL_REDIS:
            self.backend.kill()
            time.sleep(duration)
            self.backend.start()
        elif name == KILL_MONGODB:
            self.backend.kill()
            time.sleep(duration)
            self.backend.start()
        elif name == RESTART_MONGODB:
            self.backend.restart_clean()
            time.sleep(duration)
        elif name == LATENCY:
            self.proxy.latency = 0.3
            time.sleep(duration)
            self.proxy.latency = 0.0
        elif name == DROP:
            self.proxy.partition(duration)
        elif name == CUT:
            self.proxy.cut_all()
            time.sleep(duration)
            self.proxy.cut = False
        # These return when the fault itself began (after finding the master).
        elif name == KILL_MASTER:
            return self.backend.kill_master(duration)
        elif name == CRASH_MASTER:
            return self.backend.kill_master(duration, crash=True)
        elif name == PAUSE_MASTER:
            return self.backend.pause_master(duration)
        elif name == MIGRATE_SLOTS:
            return self.backend.migrate_slots(duration)
        elif name == KILL_CLUSTER_MASTER:
            return self.backend.kill_master(duration)
        else:
            raise ValueError(name)

    def stop(self):
        if self.proxy:
            self.proxy.close()
        if self.backend:
            self.backend.stop()


# ---------------------------------------------------------------------------
# the accounting workload
# ---------------------------------------------------------------------------

class Ledger:
    def __init__(self):
        self.lock = threading.Lock()
        self.acked = {}            # id -> queue
        self.acked_at = {}         # id -> seconds since start when the 201 was read
        self.uncertain_posts = 0
        self.claims = {}           # id -> [(claim_id, got_at, live_until, got_at_rel)]
        self.double_claims = []    # (id, earlier claim, its time, later claim, its time)
        self.deleted = {}          # id -> claim_id
        self.deleted_at = {}       # id -> seconds since start of the 204
        self.double_deletes = []
        self.uncertain_deletes = set()  # ids whose delete got no answer
        self.statuses = []         # (t, server, op, status or "error")
        self.events = collections.Counter()  # (second, "posted"|"deleted") -> n

    def note(self, t0, server, op, status):
        with self.lock:
            self.statuses.append((time.time() - t0, server, op, status))


def worker_loop(kind, servers, ledger, t0, stop, index, timeout, pace=0.0):
    session = requests.Session()
    n = 0
    while not stop.is_set():
        n += 1
        if pace:
            time.sleep(pace)
        server = servers[(index + n) % len(servers)]
        base = server.url
        queue = QUEUES[(index + n) % len(QUEUES)]
        try:
            if kind == "producer":
                tag = f"{index}-{n}"
                body = {"messages": [{"body": {"tag": f"{tag}-{k}"}, "ttl": 3600} for k in range(5)]}
                r = session.post(f"{base}/v2/queues/{queue}/messages", json=body,
                                 headers=HEADERS, timeout=timeout)
                ledger.note(t0, server.name, "post", r.status_code)
                if r.status_code == 201:
                    ids = [x.rsplit("/", 1)[1] for x in r.json()["resources"]]
                    now = time.time() - t0
                    with ledger.lock:
                        for i in ids:
                            ledger.acked[i] = queue
                            ledger.acked_at[i] = now
                        ledger.events[(int(now), "posted")] += len(ids)
                else:
                    with ledger.lock:
                        ledger.uncertain_posts += 1
            else:
                started = time.monotonic()
                r = session.post(f"{base}/v2/queues/{queue}/claims?limit=5",
                                 json={"ttl": CLAIM_TTL, "grace": 60},
                                 headers=HEADERS, timeout=timeout)
                got = time.monotonic()
                got_rel = time.time() - t0
                ledger.note(t0, server.name, "claim", r.status_code)
                if r.status_code == 204:
                    time.sleep(0.05)
                    continue
                if r.status_code != 201:
                    continue
                claim_id = r.headers["Location"].rsplit("/", 1)[1]
                messages = r.json()["messages"]
                with ledger.lock:
                    for m in messages:
                        held = ledger.claims.setdefault(m["id"], [])
                        for (other, _, live_until, other_rel) in held:
                            # The earlier claim was surely live until its
                            # request's start plus its TTL.
                            if other != claim_id and got < live_until:
                                ledger.double_claims.append(
                                    (m["id"], other, round(other_rel, 3), claim_id,
                                     round(got_rel, 3)))
                        held.append((claim_id, got, started + CLAIM_TTL, got_rel))
                for m in messages:
                    try:
                        d = session.delete(f"{base}/v2/queues/{queue}/messages/{m['id']}",
                                           params={"claim_id": claim_id}, headers=HEADERS,
                                           timeout=timeout)
                    except requests.RequestException:
                        # It may or may not have been deleted.
                        with ledger.lock:
                            ledger.uncertain_deletes.add(m["id"])
                        raise
                    ledger.note(t0, server.name, "delete", d.status_code)
                    if d.status_code != 204:
                        with ledger.lock:
                            ledger.uncertain_deletes.add(m["id"])
                    if d.status_code == 204:
                        now = time.time() - t0
                        with ledger.lock:
                            prior = ledger.deleted.get(m["id"])
                            if prior is not None and prior != claim_id:
                                ledger.double_deletes.append((m["id"], prior, claim_id))
                            ledger.deleted.setdefault(m["id"], claim_id)
                            ledger.deleted_at.setdefault(m["id"], now)
                            ledger.events[(int(now), "deleted")] += 1
        except requests.RequestException:
            ledger.note(t0, server.name, kind, "error")
            if kind == "producer":
                with ledger.lock:
                    ledger.uncertain_posts += 1
            time.sleep(0.1)


# ---------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------

def healthy(servers):
    """One post and one claim succeed through every server."""
    for srv in servers:
        try:
            q = f"probe-{uuid.uuid4().hex[:8]}"
            r = requests.post(f"{srv.url}/v2/queues/{q}/messages",
                              json={"messages": [{"body": 1}]}, headers=HEADERS, timeout=2)
            if r.status_code != 201:
                return False
            r = requests.post(f"{srv.url}/v2/queues/{q}/claims", json={"ttl": 60, "grace": 60},
                              headers=HEADERS, timeout=2)
            if r.status_code != 201:
                return False
            requests.delete(f"{srv.url}/v2/queues/{q}", headers=HEADERS, timeout=2)
        except requests.RequestException:
            return False
    return True


def list_all(server, queue):
    """Every message left in `queue` (claimed or not), by listing it."""
    ids = set()
    session = requests.Session()
    url = f"{server.url}/v2/queues/{queue}/messages"
    params = {"limit": 20, "echo": "true", "include_claimed": "true"}
    while True:
        r = session.get(url, params=params, headers=HEADERS, timeout=60)
        if r.status_code == 204:
            return ids
        r.raise_for_status()
        body = r.json()
        page = [m["id"] for m in body.get("messages", [])]
        if not page:
            return ids
        ids.update(page)
        nxt = [link["href"] for link in body.get("links", []) if link.get("rel") == "next"]
        if not nxt:
            return ids
        params = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(nxt[0]).query))


def read_by_ids(server, queue, ids):
    present = set()
    for k in range(0, len(ids), 20):
        chunk = ids[k:k + 20]
        r = requests.get(f"{server.url}/v2/queues/{queue}/messages",
                         params={"ids": ",".join(chunk)}, headers=HEADERS, timeout=60)
        if r.status_code == 404:  # none of them
            continue
        r.raise_for_status()
        present.update(m["id"] for m in r.json()["messages"])
    return present


def read_back(servers, ledger):
    """Every message left in the harness' queues: listed, and the acked
    ones neither listed nor deleted looked up by id as well."""
    listed = set()
    for queue in QUEUES:
        listed |= list_all(servers[0], queue)
    missing = collections.defaultdict(list)
    for i, queue in ledger.acked.items():
        if i not in ledger.deleted and i not in listed:
            missing[queue].append(i)
    by_id = set()
    for queue, ids in missing.items():
        by_id |= read_by_ids(servers[0], queue, ids)
    return listed | by_id


class Soak:
    """What the soak adds to a run: a webhook subscriber on the harness'
    queues (a real HTTP receiver, so the notification outbox is busy the
    whole time), and a sample every SOAK_SAMPLE_S seconds of each server's
    RSS and open files and of the outbox depth the servers report."""

    def __init__(self, minutes, pace):
        self.minutes = minutes
        self.pace = pace
        self.samples = []  # (t, server, rss KiB, open files, outbox depth or None)
        self.delivered = 0
        self._stop = threading.Event()
        self._threads = []
        self._receiver = None

    @staticmethod
    def schedule(minutes):
        cycle = [(KILL_SERVER, 55, 5), (KILL_REDIS, 55, 5), (LATENCY, 50, 10), (CUT, 55, 5)]
        out, total = [], 0
        while total < minutes * 60:
            for fault in cycle:
                out.append(fault)
                total += fault[1] + fault[2]
        return out

    @staticmethod
    def configure(options):
        options["metrics"] = {"enabled": "true"}
        options["notification"] = {"allowed_subscriber_networks": "127.0.0.0/8"}

    def start(self, servers, t0):
        import http.server

        soak = self

        class Receiver(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - the stdlib's name
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                soak.delivered += 1
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self._receiver = http.server.ThreadingHTTPServer(("127.0.0.1", RECEIVER_PORT), Receiver)
        self._threads.append(threading.Thread(target=self._receiver.serve_forever, daemon=True))
        for queue in QUEUES:
            r = requests.post(f"{servers[-1].url}/v2/queues/{queue}/subscriptions",
                              json={"subscriber": f"http://127.0.0.1:{RECEIVER_PORT}/{queue}",
                                    "ttl": int(self.minutes * 60 + 3600)},
                              headers=HEADERS, timeout=10)
            assert r.status_code == 201, (r.status_code, r.text)
        self._threads.append(threading.Thread(target=self._sample, args=(servers, t0),
                                              daemon=True))
        for t in self._threads:
            t.start()

    def _sample(self, servers, t0):
        while not self._stop.wait(SOAK_SAMPLE_S):
            for srv in servers:
                pid = srv.proc.pid if srv.running() else None
                if pid is None:
                    continue
                try:
                    status = pathlib.Path(f"/proc/{pid}/status").read_text()
                    rss = int(next(line.split()[1] for line in status.splitlines()
                                   if line.startswith("VmRSS:")))
                    fds = len(os.listdir(f"/proc/{pid}/fd"))
                except (OSError, StopIteration):
                    continue
                depth = None
                try:
                    metrics = requests.get(f"{srv.url}/metrics", timeout=5).text
                    for line in metrics.splitlines():
                        if line.startswith("zaqar_notification_outbox_depth "):
                            depth = int(float(line.split()[1]))
                except requests.RequestException:
                    pass
                self.samples.append((round(time.time() - t0, 1), srv.name, rss, fds, depth))

    def stop(self):
        self._stop.set()
        if self._receiver:
            self._receiver.shutdown()
            self._receiver.server_close()

    def report(self, out_dir):
        """Flat: over the second half of the run, against the first half
        after a warm-up, the never-killed server's RSS grows by under 20 %
        (or 4 MiB), open files stay within 10 of their first-half peak, and
        the outbox depth's median stays under 100 (it drains)."""
        end = max((t for t, *_ in self.samples), default=0)
        steady = [x for x in self.samples if x[0] >= min(300, end / 4)]
        first = [x for x in steady if x[0] < end / 2]
        second = [x for x in steady if x[0] >= end / 2]

        def median(xs):
            xs = sorted(xs)
            return xs[len(xs) // 2] if xs else 0

        kept = "server-b"  # never killed: its process lives the whole run
        rss1 = median([x[2] for x in first if x[1] == kept])
        rss2 = median([x[2] for x in second if x[1] == kept])
        fd1 = max([x[3] for x in first if x[1] == kept], default=0)
        fd2 = max([x[3] for x in second if x[1] == kept], default=0)
        depth2 = median([x[4] for x in second if x[4] is not None])
        rss_flat = rss2 <= max(rss1 * 1.2, rss1 + 4096)
        fds_flat = fd2 <= fd1 + 10
        depth_flat = depth2 < 100
        report = {
            "minutes": self.minutes,
            "samples": len(self.samples),
            "webhook_deliveries": self.delivered,
            "rss_kib_first_half_median": rss1, "rss_kib_second_half_median": rss2,
            "open_files_first_half_max": fd1, "open_files_second_half_max": fd2,
            "outbox_depth_second_half_median": depth2,
            "flat": rss_flat and fds_flat and depth_flat,
        }
        (out_dir / "soak-samples.json").write_text(json.dumps(self.samples))
        rows = [["Minute", "RSS server-a (MiB)", "RSS server-b (MiB)",
                 "Open files a / b", "Outbox depth"]]
        step = 300
        for start in range(0, int(end) + 1, step):
            window = [x for x in self.samples if start <= x[0] < start + step]
            if not window:
                continue
            last = {}
            for x in window:
                last[x[1]] = x
            a, b = last.get("server-a"), last.get("server-b")
            depths = [x[4] for x in window if x[4] is not None]
            rows.append([str(start // 60),
                         f"{a[2] / 1024:.1f}" if a else "-", f"{b[2] / 1024:.1f}" if b else "-",
                         f"{a[3] if a else '-'} / {b[3] if b else '-'}",
                         f"{median(depths)} (max {max(depths)})" if depths else "-"])
        lines = [".. list-table::", "   :header-rows: 1", ""]
        for row in rows:
            lines.append("   * - " + row[0])
            lines.extend(f"     - {cell}" for cell in row[1:])
        (out_dir / "reliability-soak.inc").write_text("\n".join(lines) + "\n")
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
            fig, axes = plt.subplots(3, 1, figsize=(9, 7), sharex=True)
            for name in ("server-a", "server-b"):
                xs = [x for x in self.samples if x[1] == name]
                axes[0].plot([x[0] / 60 for x in xs], [x[2] / 1024 for x in xs], label=name)
                axes[1].plot([x[0] / 60 for x in xs], [x[3] for x in xs], label=name)
            ds = [x for x in self.samples if x[4] is not None and x[1] == kept]
            axes[2].plot([x[0] / 60 for x in ds], [x[4] for x in ds])
            axes[0].set_ylabel("RSS (MiB)")
            axes[1].set_ylabel("open files")
            axes[2].set_ylabel("outbox depth")
            axes[2].set_xlabel("minutes (server-a is killed and restarted once a cycle)")
            axes[0].legend()
            fig.tight_layout()
            fig.savefig(out_dir / "reliability-soak.png", dpi=80)
            plt.close(fig)
        except ImportError:
            pass
        print(f"soak: {json.dumps(report)}", flush=True)
        return report


def run(store, schedule, out_dir, producers, consumers, soak=None):
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f"zaqar-faults-{store}-"))
    print(f"== {store}: {len(schedule)} faults, work dir {tmp}", flush=True)
    topo = Topology(store, tmp)
    if soak:
        soak.configure(topo.options)
    servers = []
    try:
        for k in range(topo.servers_count):
            name = f"server-{'ab'[k]}"
            srv = ZaqarServer(tmp / name, topo.options)
            srv.port, srv.ws_port = SERVER_PORTS + 2 * k, SERVER_PORTS + 2 * k + 1
            srv.name = name
            servers.append(srv.start())
        result = run_load(store, topo, servers, schedule, out_dir, producers, consumers, tmp,
                          soak)
    finally:
        for srv in servers:
            srv.kill()
        topo.stop()
    if result["ok"]:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print(f"{store}: logs and data kept in {tmp}", flush=True)
    return result


def run_load(store, topo, servers, schedule, out_dir, producers, consumers, tmp, soak=None):
    ledger = Ledger()
    stop = threading.Event()
    t0 = time.time()
    if soak:
        soak.start(servers, t0)
    total = sum(before + length for _, before, length in schedule) + 10
    bench_out = tmp / "bench.json"
    # The soak runs for an hour at a gentle pace: zaqar-bench (flat out)
    # stays out of it; the harness' own workers keep the exact account.
    bench = None if soak else subprocess.Popen(
        [str(BENCH_BIN), "-s", servers[-1].url, "--project", PROJECT, "-p", "2", "-c", "2",
         "-o", "1", "-b", "5", "-q", "2", "--queue-prefix", "bench", "-t", str(total),
         "--warmup", "0", "--timeout", str(topo.client_timeout), "--claim-ttl", "60",
         "--json", "--quiet"],
        stdout=open(bench_out, "w"), stderr=open(tmp / "bench.err", "w"))
    threads = [threading.Thread(target=worker_loop, args=(kind, servers, ledger, t0, stop, i,
                                                          topo.client_timeout, soak.pace if soak else 0.0),
                                daemon=True)
               for kind, n in (("producer", producers), ("consumer", consumers))
               for i in range(n)]
    for t in threads:
        t.start()
    windows = []
    try:
        for name, before, length in schedule:
            time.sleep(before)
            start = time.time() - t0
            began = topo.inject(name, length, servers)
            if began is not None:
                start = began - t0
            end = time.time() - t0
            deadline = time.time() + 60
            while not healthy(servers):
                if time.time() > deadline:
                    raise RuntimeError(f"no recovery within 60 s after {name}")
                time.sleep(0.1)
            recovered = time.time() - t0
            windows.append({"fault": name, "start": start, "end": end,
                            "recovery_s": round(recovered - end, 2)})
            print(f"{store}: {name}: {start:.1f}-{end:.1f}s, recovered in "
                  f"{recovered - end:.2f}s", flush=True)
        time.sleep(5)
    finally:
        stop.set()
        for t in threads:
            t.join()
        if soak:
            soak.stop()
    try:
        if bench:
            bench.wait(total + 60)
    except subprocess.TimeoutExpired:
        bench.kill()
        bench.wait()
    present = read_back(servers, ledger)
    for srv in servers:
        srv.stop()
    panicked = [s.name for s in servers if s.panicked()]
    try:
        bench_report = json.loads(bench_out.read_text() or "{}") if bench else {}
    except ValueError:
        bench_report = {}

    # An acked message is accounted for when it was deleted under a claim,
    # is still in its queue, or its claimed delete got no clear answer (a
    # consumer asked to delete it: gone with it, or still present).
    gone_maybe = [i for i in ledger.acked if i not in ledger.deleted and i not in present
                  and i in ledger.uncertain_deletes]
    lost = [i for i in ledger.acked if i not in ledger.deleted and i not in present
            and i not in ledger.uncertain_deletes]
    resurrected = [i for i in ledger.deleted if i in present]
    five = [(t, srv, op, st) for (t, srv, op, st) in ledger.statuses
            if isinstance(st, int) and st >= 500]

    def window_of(t):
        """The fault a status at `t` follows: the latest one started, if
        `t` is within it or its recovery (plus slack)."""
        started = [k for k, w in enumerate(windows) if w["start"] - 0.5 <= t]
        if not started:
            return None
        w = windows[started[-1]]
        return started[-1] if t <= w["end"] + w["recovery_s"] + RECOVERY_SLACK else None

    def near_fault(t):
        """The fault `t` is in or just before: the latest one started by
        `t` + ASYNC_WINDOW, if `t` is before the end of its recovery plus
        ASYNC_WINDOW (None: none)."""
        started = [k for k, w in enumerate(windows) if w["start"] - ASYNC_WINDOW <= t]
        if not started:
            return None
        w = windows[started[-1]]
        return started[-1] if t <= w["end"] + w["recovery_s"] + ASYNC_WINDOW else None

    unexplained = [f for f in five if window_of(f[0]) is None]
    per_window = []
    for k, w in enumerate(windows):
        per_window.append(dict(w, **{
            "5xx": sum(1 for f in five if window_of(f[0]) == k),
            "errors": sum(1 for st in ledger.statuses
                          if st[3] == "error" and window_of(st[0]) == k),
        }))
    # Acknowledged, then undone (lost, deleted and back, claimed twice): for
    # each, when its ack was read and how long before the next fault.
    # Sentinel with asynchronous replication: each must have been
    # acknowledged within ASYNC_WINDOW before a master died.
    undone = ([("lost", i, ledger.acked_at[i]) for i in lost]
              + [("resurrected", i, ledger.deleted_at[i]) for i in resurrected]
              + [("double claim", d[0], d[2]) for d in ledger.double_claims]
              # the first delete's 204 (its message came back, deleted again)
              + [("double delete", d[0], ledger.deleted_at[d[0]])
                 for d in ledger.double_deletes])
    detail = []
    for kind, i, at in undone:
        k = near_fault(at)
        detail.append({"kind": kind, "id": i, "acked_at": round(at, 3), "fault": k,
                       # negative: acknowledged before the fault began
                       "after_fault_start_s": None if k is None
                       else round(at - windows[k]["start"], 3)})
    for k, w in enumerate(per_window):
        w["undone"] = sum(1 for d in detail if d["fault"] == k)
    outside_window = [d for d in detail if d["fault"] is None]
    result = {
        "store": store,
        "topology": topo.describe,
        "schedule": [list(s) for s in schedule],
        "load": f"{producers} producers (batches of 5), {consumers} consumers, through "
                f"{'both servers' if len(servers) > 1 else 'the server'}; "
                "zaqar-bench -p 2 -c 2 -o 1",
        "acknowledged": len(ledger.acked),
        "consumed": sum(1 for i in ledger.acked if i in ledger.deleted),
        # Messages of posts answered 5xx or not at all that had landed.
        "consumed_unacked": sum(1 for i in ledger.deleted if i not in ledger.acked),
        "present_at_end": sum(1 for i in ledger.acked if i in present),
        "lost": len(lost),
        "double_claims": len(ledger.double_claims),
        "double_deletes": len(ledger.double_deletes),
        "resurrected": len(resurrected),
        "uncertain_posts": ledger.uncertain_posts,
        "deleted_unanswered": len(gone_maybe),
        "5xx": len(five),
        "5xx_unexplained": len(unexplained),
        "windows": per_window,
        "undone": detail,
        "bench": {k: bench_report.get(k) for k in ("correct", "ledger", "balance")},
        "panicked": panicked,
        "duration_s": round(time.time() - t0, 1),
    }
    if store.startswith(("sentinel", "cluster")):
        result["failovers"] = [{"killed_port": p, "new_master_named_after_s": s}
                               for p, s in topo.backend.failovers]
    if store.startswith("cluster"):
        result["migrations"] = topo.backend.migrations
    if store in ("sentinel", "cluster"):
        # Asynchronous replication: undone writes are measured; each must
        # lie in a fault window (or ASYNC_WINDOW before it) of a master
        # dying (on Cluster a slot migration loses nothing: undone writes
        # around one fail the run). zaqar-bench's messages are as exposed:
        # its verdict is reported only.
        not_failover = [d for d in detail if d["fault"] is not None
                        and windows[d["fault"]]["fault"] == MIGRATE_SLOTS]
        exact_ok = not outside_window and not not_failover
        bench_ok = True
        result["async_window_s"] = ASYNC_WINDOW
        result["undone_outside_window"] = len(outside_window)
        result["undone_around_migration"] = len(not_failover)
    else:
        exact_ok = not (lost or ledger.double_claims or resurrected or ledger.double_deletes)
        bench_ok = soak is not None or bench_report.get("correct") is True
    ok = exact_ok and not unexplained and not panicked and bench_ok
    if soak:
        result["soak"] = soak.report(out_dir)
        ok = ok and result["soak"]["flat"]
    result["ok"] = ok
    (out_dir / "results.json").write_text(json.dumps(result, indent=2))
    write_table(result, out_dir / f"reliability-table-{store}.inc")
    plot(ledger, windows, out_dir / f"reliability-throughput-{store}.png", store)
    print(json.dumps({k: v for k, v in result.items() if k not in ("windows", "undone")},
                     indent=2))
    for k, w in enumerate(per_window):
        mine = [d for d in detail if d["fault"] == k]
        if mine:
            offsets = [d["after_fault_start_s"] for d in mine]
            print(f"{store}: acknowledged, then undone around {w['fault']}: "
                  f"{dict(collections.Counter(d['kind'] for d in mine))}, acknowledged "
                  f"{min(offsets):+.3f} to {max(offsets):+.3f} s from its start "
                  "(each one in results.json)", flush=True)
    if outside_window:
        print(f"{store}: acknowledged, then undone, away from any fault: "
              f"{json.dumps(outside_window[:20])}", flush=True)
    return result


def write_table(result, path):
    rows = [["Fault", "Window (s)", "5xx", "Connection errors", "Recovery (s)"]]
    for w in result["windows"]:
        rows.append([w["fault"], f"{w['start']:.1f} - {w['end']:.1f}", str(w["5xx"]),
                     str(w["errors"]), f"{w['recovery_s']:.2f}"])
    bench = result["bench"] or {}
    ledger = bench.get("ledger") or {}
    lines = [f".. list-table:: {result['store']}: {result['topology']} "
             "(generated by tests/faults/harness.py)", "   :header-rows: 1", ""]
    for row in rows:
        lines.append(f"   * - {row[0]}")
        lines += [f"     - {c}" for c in row[1:]]
    lines += ["", f".. list-table:: {result['store']}: accounting", "   :header-rows: 1", "",
              "   * - Acknowledged", "     - Consumed", "     - Still present",
              "     - Lost", "     - Double claims", "     - Double deletes",
              "     - Deleted, then back", "     - 5xx (unexplained)",
              f"   * - {result['acknowledged']}",
              f"     - {result['consumed']}", f"     - {result['present_at_end']}",
              f"     - {result['lost']}", f"     - {result['double_claims']}",
              f"     - {result['double_deletes']}", f"     - {result['resurrected']}",
              f"     - {result['5xx']} ({result['5xx_unexplained']})",
              "",
              f"Load: {result['load']}. Posts answered 5xx or not at all: "
              f"{result['uncertain_posts']}; messages of such "
              f"posts that had landed and were consumed: {result['consumed_unacked']}; "
              f"deletes without a clear answer whose message is gone: "
              f"{result['deleted_unanswered']}.",
              ""]
    if "failovers" in result:
        lines += [("Sentinel failovers (seconds from the kill until every sentinel named "
                   "the new master): " if result["store"].startswith("sentinel") else
                   "Cluster failovers (seconds from the kill until every live node served "
                   "the queue's slot from the promoted replica): ")
                  + ", ".join(str(f["new_master_named_after_s"]) for f in result["failovers"])
                  + ".", ""]
    if result.get("migrations"):
        lines += ["Slots moved: " + "; ".join(
            f"slot {m['slot']} from {m['from']} to {m['to']}, {m['keys']} keys in "
            f"{m['batches']} MIGRATE batches over {m['seconds']} s"
            for m in result["migrations"]) + ".", ""]
    if result["undone"]:
        for k, w in enumerate(result["windows"]):
            mine = [d for d in result["undone"] if d["fault"] == k]
            if not mine:
                continue
            offsets = sorted(d["after_fault_start_s"] for d in mine)
            kinds = collections.Counter(d["kind"] for d in mine)
            lines += [f"Acknowledged, then undone around fault {k + 1} ({w['fault']}): "
                      + ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))
                      + f"; acknowledged from {offsets[0]:+.3f} s to {offsets[-1]:+.3f} s "
                      "after the fault began.", ""]
        stray = [d for d in result["undone"] if d["fault"] is None]
        if stray:
            lines += [f"Acknowledged, then undone, away from any fault: {len(stray)}.", ""]
    lines += [f"zaqar-bench's own ledger on its queues: posted {ledger.get('posted')}, "
              f"consumed {ledger.get('consumed')}, double claims {ledger.get('double_claims')}, "
              f"double deletes {ledger.get('double_consumes')}, unanswered requests "
              f"{ledger.get('uncertain_requests')}; verdict: "
              f"{'correct' if bench.get('correct') else 'NOT correct'}.", ""]
    path.write_text("\n".join(lines))


def write_summary(summary, schedule, path):
    lines = [f".. list-table:: Every store, {schedule} schedule (generated by "
             "tests/faults/harness.py)", "   :header-rows: 1", ""]
    heads = ["Store", "Faults", "Acknowledged", "Lost", "Double claims", "Double deletes",
             "Deleted, then back", "5xx (unexplained)", "Slowest recovery (s)", "Verdict"]
    lines.append(f"   * - {heads[0]}")
    lines += [f"     - {h}" for h in heads[1:]]
    for store, r in summary.items():
        if "error" in r:
            cells = [store, "-", "-", "-", "-", "-", "-", "-", "-", "did not run"]
        else:
            cells = [f"``{store}``", r["faults"], r["acknowledged"], r["lost"],
                     r["double_claims"], r["double_deletes"], r["resurrected"],
                     f"{r['5xx']} ({r['5xx_unexplained']})", f"{max(r['recovery_s']):.2f}",
                     ("FAIL" if not r["ok"] else "pass" if not (
                         r["lost"] or r["double_claims"] or r["double_deletes"]
                         or r["resurrected"]) else "pass (undone only around a failover)")]
        lines.append(f"   * - {cells[0]}")
        lines += [f"     - {c}" for c in cells[1:]]
    path.write_text("\n".join(lines) + "\n")


def plot(ledger, windows, path, store):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    last = max([s for (s, _) in ledger.events] + [1])
    xs = list(range(last + 1))
    fig, ax = plt.subplots(figsize=(9, 3.5), dpi=100)
    ax.plot(xs, [ledger.events[(x, "posted")] for x in xs], label="posted (acked) / s")
    ax.plot(xs, [ledger.events[(x, "deleted")] for x in xs], label="deleted under claim / s")
    for w in windows:
        ax.axvspan(w["start"], w["end"], color="red", alpha=0.15)
        ax.text(w["start"], ax.get_ylim()[1] * 0.92, w["fault"], fontsize=7, rotation=90,
                va="top")
    ax.set_xlabel("seconds")
    ax.set_ylabel("messages / s")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(f"{store}: the accounting workload; fault windows shaded", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default="all",
                        help="all, or a comma-separated list of: " + ", ".join(STORES))
    parser.add_argument("--schedule", choices=["short", "long", "soak"], default="short")
    parser.add_argument("--minutes", type=float, default=60,
                        help="how long the soak runs (--schedule soak)")
    parser.add_argument("--out", default=str(ROOT / "target" / "faults"))
    parser.add_argument("--producers", type=int, default=3)
    parser.add_argument("--consumers", type=int, default=3)
    parser.add_argument("--publish", action="store_true",
                        help="copy the tables and plots into doc/source (reliability.rst)")
    args = parser.parse_args()
    stores = ALL_STORES if args.store == "all" else args.store.split(",")
    for s in stores:
        if s not in STORES:
            parser.error(f"unknown store {s}")
    out = pathlib.Path(args.out)
    soak = None
    if args.schedule == "soak":
        if stores != ["redis"]:
            parser.error("the soak runs on --store redis")
        soak = Soak(args.minutes, pace=0.05)
    summary = {}
    for store in stores:
        try:
            schedule = (Soak.schedule(args.minutes) if soak
                        else SCHEDULES[store][args.schedule])
            result = run(store, schedule, out / store, args.producers, args.consumers, soak)
        except Exception as exc:  # noqa: BLE001 - one store's failure is reported, the rest run
            print(f"{store}: FAILED to run: {exc!r}", flush=True)
            traceback.print_exc()
            summary[store] = {"ok": False, "error": repr(exc)}
            continue
        summary[store] = {k: result[k] for k in (
            "ok", "acknowledged", "lost", "double_claims", "double_deletes", "resurrected",
            "5xx", "5xx_unexplained", "duration_s")}
        summary[store]["recovery_s"] = [w["recovery_s"] for w in result["windows"]]
        summary[store]["faults"] = len(result["windows"])
        if args.publish and result["ok"]:
            docs = ROOT / "doc" / "source"
            names = ((f"reliability-table-{store}.inc", f"reliability-throughput-{store}.png")
                     if not soak else ("reliability-soak.inc", "reliability-soak.png"))
            for name in names:
                shutil.copyfile(out / store / name, docs / name)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    write_summary(summary, args.schedule, out / "reliability-summary.inc")
    if args.publish and not soak and stores == ALL_STORES and all(s["ok"] for s in summary.values()):
        shutil.copyfile(out / "reliability-summary.inc",
                        ROOT / "doc" / "source" / "reliability-summary.inc")
    print(json.dumps(summary, indent=2))
    ok = all(s["ok"] for s in summary.values())
    print("RESULT:", "OK" if ok else "FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
