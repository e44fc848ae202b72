#!/usr/bin/env python3
"""The fault harness: load through two servers on one Redis while faults are
injected on a schedule, then an exact account of every message.

Topology: one Redis (``appendonly yes``, ``appendfsync always``) behind a
small TCP fault proxy (this file: latency, a cut connection); two
zaqar-server processes whose message and management stores are that Redis
through the proxy.  Load: zaqar-bench (producers, consumers, observers) on
queues of its own through the second server, and this harness' own
producers and consumers through both servers, which record every id they
are told about.

Faults, one after the other, each in its window:

* ``kill -9`` of the first server (restarted);
* ``kill -9`` of Redis (restarted on its AOF);
* 300 ms of latency on every Redis packet;
* the Redis connections cut, and new ones refused, for a while.

Accounting (Jepsen style, on the harness' own queues):

* every post answered 201 is either deleted once under a claim or still in
  the queue at the end (read back by id): *lost* counts the others;
* no message is returned by two claims that were live at once
  (*double claims*), and none is deleted under two different claims
  (*double deletes*);
* every 5xx is counted and must fall in a fault window (or the recovery
  that follows it);
* recovery time: from the end of a fault to the first post and claim that
  succeed through both servers.

zaqar-bench's own ledger (its ``correct`` verdict: balance, no double claim,
no double delete) is checked too.

Writes ``results.json``, ``reliability-table.inc`` and
``reliability-throughput.png`` (posts and deletions per second, fault
windows shaded) into ``--out`` (default ``target/faults``); ``--publish``
copies the table and the plot into doc/source for reliability.rst.  Exits non-zero when anything is lost,
duplicated or unexplained.

Usage: tests/faults/harness.py [--schedule short|long] [--out DIR] [--publish]
"""

import argparse
import collections
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "functional"))
os.environ.pop("ZAQAR_TEST_BACKEND", None)

import requests  # noqa: E402
from zaqar_testlib import ZaqarServer  # noqa: E402

PORT_BASE = int(os.environ.get("ZAQAR_TEST_PORT_BASE", "16300"))
REDIS_PORT = int(os.environ.get("ZAQAR_FAULTS_REDIS_PORT", PORT_BASE + 90))
PROXY_PORT = int(os.environ.get("ZAQAR_FAULTS_PROXY_PORT", PORT_BASE + 91))
BENCH_BIN = pathlib.Path(os.environ.get("ZAQAR_BENCH_BIN", ROOT / "target/debug/zaqar-bench"))
PROJECT = "faults"
QUEUES = ["acct-0", "acct-1"]
CLAIM_TTL = 60
CLIENT_ID = str(uuid.uuid4())
HEADERS = {"Client-ID": CLIENT_ID, "X-Project-ID": PROJECT}
TIMEOUT = 5

# (name, seconds of load before it, seconds it lasts)
SCHEDULES = {
    "short": [("kill -9 server", 4, 2), ("kill -9 redis (AOF always)", 4, 2),
              ("latency 300 ms", 4, 3), ("cut connection", 4, 2)],
    "long": [("kill -9 server", 20, 5), ("kill -9 redis (AOF always)", 20, 5),
             ("latency 300 ms", 20, 10), ("cut connection", 20, 5)] * 3,
}
RECOVERY_SLACK = 15.0  # seconds after a fault in which 5xx are still explained


# ---------------------------------------------------------------------------
# Redis and the fault proxy
# ---------------------------------------------------------------------------

class Redis:
    """A redis-server with AOF fsync on every write, restartable on its data."""

    def __init__(self, workdir):
        self.dir = pathlib.Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc = None

    def start(self):
        log = open(self.dir / "redis.log", "a")
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(REDIS_PORT), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "yes", "--appendfsync", "always",
             "--dir", str(self.dir)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", REDIS_PORT), 0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("redis did not start")

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


class FaultProxy:
    """TCP proxy from PROXY_PORT to Redis that can delay or cut traffic."""

    def __init__(self):
        self.latency = 0.0
        self.cut = False
        self.conns = set()
        self.lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", PROXY_PORT), reuse_port=False)
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
                upstream = socket.create_connection(("127.0.0.1", REDIS_PORT), 2)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.conns.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if self.latency:
                    time.sleep(self.latency)
                dst.sendall(data)
        except OSError:
            pass
        finally:
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

    def close(self):
        self.stopped = True
        self.listener.close()
        self.cut_all()


# ---------------------------------------------------------------------------
# the accounting workload
# ---------------------------------------------------------------------------

class Ledger:
    def __init__(self):
        self.lock = threading.Lock()
        self.acked = {}            # id -> queue
        self.uncertain_posts = 0
        self.claims = {}           # id -> [(claim_id, got_at, live_until)]
        self.double_claims = []
        self.deleted = {}          # id -> claim_id
        self.double_deletes = []
        self.uncertain_deletes = set()  # ids whose delete got no answer
        self.statuses = []         # (t, server, op, status or "error")
        self.events = collections.Counter()  # (second, "posted"|"deleted") -> n

    def note(self, t0, server, op, status):
        with self.lock:
            self.statuses.append((time.time() - t0, server, op, status))


def worker_loop(kind, servers, ledger, t0, stop, index):
    session = requests.Session()
    n = 0
    while not stop.is_set():
        n += 1
        server = servers[(index + n) % len(servers)]
        base = server.url
        queue = QUEUES[(index + n) % len(QUEUES)]
        try:
            if kind == "producer":
                tag = f"{index}-{n}"
                body = {"messages": [{"body": {"tag": f"{tag}-{k}"}, "ttl": 3600} for k in range(5)]}
                r = session.post(f"{base}/v2/queues/{queue}/messages", json=body,
                                 headers=HEADERS, timeout=TIMEOUT)
                ledger.note(t0, server.name, "post", r.status_code)
                if r.status_code == 201:
                    ids = [x.rsplit("/", 1)[1] for x in r.json()["resources"]]
                    with ledger.lock:
                        for i in ids:
                            ledger.acked[i] = queue
                        ledger.events[(int(time.time() - t0), "posted")] += len(ids)
                else:
                    with ledger.lock:
                        ledger.uncertain_posts += 1
            else:
                started = time.monotonic()
                r = session.post(f"{base}/v2/queues/{queue}/claims?limit=5",
                                 json={"ttl": CLAIM_TTL, "grace": 60},
                                 headers=HEADERS, timeout=TIMEOUT)
                got = time.monotonic()
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
                        for (other, _, live_until) in held:
                            # The earlier claim was surely live until its
                            # request's start plus its TTL.
                            if other != claim_id and got < live_until:
                                ledger.double_claims.append((m["id"], other, claim_id))
                        held.append((claim_id, got, started + CLAIM_TTL))
                for m in messages:
                    try:
                        d = session.delete(f"{base}/v2/queues/{queue}/messages/{m['id']}",
                                           params={"claim_id": claim_id}, headers=HEADERS,
                                           timeout=TIMEOUT)
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
                        with ledger.lock:
                            prior = ledger.deleted.get(m["id"])
                            if prior is not None and prior != claim_id:
                                ledger.double_deletes.append((m["id"], prior, claim_id))
                            ledger.deleted.setdefault(m["id"], claim_id)
                            ledger.events[(int(time.time() - t0), "deleted")] += 1
        except requests.RequestException:
            ledger.note(t0, server.name, kind, "error")
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


def read_back(servers, ledger):
    """The acked messages still in their queues (claimed or not), by id."""
    present = set()
    pending = [i for i in ledger.acked if i not in ledger.deleted]
    by_queue = collections.defaultdict(list)
    for i in pending:
        by_queue[ledger.acked[i]].append(i)
    for queue, ids in by_queue.items():
        for k in range(0, len(ids), 20):
            chunk = ids[k:k + 20]
            r = requests.get(f"{servers[0].url}/v2/queues/{queue}/messages",
                             params={"ids": ",".join(chunk)}, headers=HEADERS, timeout=30)
            r.raise_for_status()
            present.update(m["id"] for m in r.json()["messages"])
    return present


def inject(name, duration, servers, redis, proxy):
    if name.startswith("kill -9 server"):
        servers[0].kill()
        time.sleep(duration)
        servers[0].start()
    elif name.startswith("kill -9 redis"):
        redis.kill()
        time.sleep(duration)
        redis.start()
    elif name.startswith("latency"):
        proxy.latency = 0.3
        time.sleep(duration)
        proxy.latency = 0.0
    elif name.startswith("cut"):
        proxy.cut_all()
        time.sleep(duration)
        proxy.cut = False
    else:
        raise ValueError(name)


def run(schedule, out_dir, producers, consumers):
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="zaqar-faults-"))
    redis = Redis(tmp / "redis")
    redis.start()
    proxy = FaultProxy()
    uri = f"redis://127.0.0.1:{PROXY_PORT}"
    options = {
        "drivers": {"message_store": "redis", "management_store": "redis"},
        "drivers:message_store:redis": {"uri": uri},
        "drivers:management_store:redis": {"uri": uri},
    }
    servers = []
    for name in ("server-a", "server-b"):
        srv = ZaqarServer(tmp / name, options)
        srv.name = name
        servers.append(srv.start())
    ledger = Ledger()
    stop = threading.Event()
    t0 = time.time()
    total = sum(before + length for _, before, length in schedule) + 10
    bench_out = tmp / "bench.json"
    bench = subprocess.Popen(
        [str(BENCH_BIN), "-s", servers[1].url, "--project", PROJECT, "-p", "2", "-c", "2",
         "-o", "1", "-b", "5", "-q", "2", "--queue-prefix", "bench", "-t", str(total),
         "--warmup", "0", "--timeout", "5", "--claim-ttl", "60", "--json", "--quiet"],
        stdout=open(bench_out, "w"), stderr=open(tmp / "bench.err", "w"))
    threads = [threading.Thread(target=worker_loop, args=(kind, servers, ledger, t0, stop, i),
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
            inject(name, length, servers, redis, proxy)
            end = time.time() - t0
            deadline = time.time() + 60
            while not healthy(servers):
                if time.time() > deadline:
                    raise RuntimeError(f"no recovery within 60 s after {name}")
                time.sleep(0.1)
            recovered = time.time() - t0
            windows.append({"fault": name, "start": start, "end": end,
                            "recovery_s": round(recovered - end, 2)})
            print(f"{name}: {start:.1f}-{end:.1f}s, recovered in {recovered - end:.2f}s", flush=True)
        time.sleep(5)
    finally:
        stop.set()
        for t in threads:
            t.join()
    # Drain: consume what is left through a healthy system, then read back.
    bench.wait(total + 60)
    present = read_back(servers, ledger)
    for srv in servers:
        srv.stop()
    panicked = [s.name for s in servers if s.panicked()]
    proxy.close()
    redis.stop()
    bench_report = json.loads(bench_out.read_text() or "{}")

    # An acked message is accounted for when it was deleted under a claim,
    # is still in its queue, or its claimed delete got no clear answer (a
    # consumer asked to delete it: gone with it, or still present).
    gone_maybe = [i for i in ledger.acked if i not in ledger.deleted and i not in present
                  and i in ledger.uncertain_deletes]
    lost = [i for i in ledger.acked if i not in ledger.deleted and i not in present
            and i not in ledger.uncertain_deletes]
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

    unexplained = [f for f in five if window_of(f[0]) is None]
    per_window = []
    for k, w in enumerate(windows):
        per_window.append(dict(w, **{
            "5xx": sum(1 for f in five if window_of(f[0]) == k),
            "errors": sum(1 for st in ledger.statuses
                          if st[3] == "error" and window_of(st[0]) == k),
        }))
    result = {
        "schedule": [list(s) for s in schedule],
        "load": f"{producers} producers (batches of 5), {consumers} consumers, through both "
                "servers; zaqar-bench -p 2 -c 2 -o 1 through server-b",
        "acknowledged": len(ledger.acked),
        "consumed": sum(1 for i in ledger.acked if i in ledger.deleted),
        # Messages of posts answered 5xx or not at all that had landed.
        "consumed_unacked": sum(1 for i in ledger.deleted if i not in ledger.acked),
        "present_at_end": len(present),
        "lost": len(lost),
        "double_claims": len(ledger.double_claims),
        "double_deletes": len(ledger.double_deletes),
        "uncertain_posts": ledger.uncertain_posts,
        "deleted_unanswered": len(gone_maybe),
        "5xx": len(five),
        "5xx_unexplained": len(unexplained),
        "windows": per_window,
        "bench": {k: bench_report.get(k) for k in ("correct", "ledger", "balance")},
        "panicked": panicked,
        "duration_s": round(time.time() - t0, 1),
    }
    (out_dir / "results.json").write_text(json.dumps(result, indent=2))
    write_table(result, out_dir / "reliability-table.inc")
    plot(ledger, windows, out_dir / "reliability-throughput.png")
    ok = (result["lost"] == 0 and result["double_claims"] == 0
          and result["double_deletes"] == 0 and result["5xx_unexplained"] == 0
          and not panicked and bench_report.get("correct") is True)
    print(json.dumps({k: v for k, v in result.items() if k != "windows"}, indent=2))
    return ok


def write_table(result, path):
    rows = [["Fault", "Window (s)", "5xx", "Connection errors", "Recovery (s)"]]
    for w in result["windows"]:
        rows.append([w["fault"], f"{w['start']:.1f} - {w['end']:.1f}", str(w["5xx"]),
                     str(w["errors"]), f"{w['recovery_s']:.2f}"])
    bench = result["bench"] or {}
    ledger = bench.get("ledger") or {}
    lines = [".. list-table:: Faults (generated by tests/faults/harness.py)",
             "   :header-rows: 1", ""]
    for row in rows:
        lines.append(f"   * - {row[0]}")
        lines += [f"     - {c}" for c in row[1:]]
    lines += ["", ".. list-table:: Accounting", "   :header-rows: 1", "",
              "   * - Load", "     - Acknowledged", "     - Consumed", "     - Still present",
              "     - Lost", "     - Double claims", "     - Double deletes", "     - 5xx (unexplained)",
              f"   * - {result['load']}", f"     - {result['acknowledged']}",
              f"     - {result['consumed']}", f"     - {result['present_at_end']}",
              f"     - {result['lost']}", f"     - {result['double_claims']}",
              f"     - {result['double_deletes']}",
              f"     - {result['5xx']} ({result['5xx_unexplained']})",
              "",
              f"Posts answered 5xx or not at all: {result['uncertain_posts']}; messages of such "
              f"posts that had landed and were consumed: {result['consumed_unacked']}; "
              f"deletes without a clear answer whose message is gone: "
              f"{result['deleted_unanswered']}.",
              "",
              f"zaqar-bench's own ledger on its queues: posted {ledger.get('posted')}, "
              f"consumed {ledger.get('consumed')}, double claims {ledger.get('double_claims')}, "
              f"double deletes {ledger.get('double_consumes')}, unanswered requests "
              f"{ledger.get('uncertain_requests')}; verdict: "
              f"{'correct' if bench.get('correct') else 'NOT correct'}.", ""]
    path.write_text("\n".join(lines))


def plot(ledger, windows, path):
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
    ax.set_title("Accounting workload through two servers on one Redis; fault windows shaded")
    fig.tight_layout()
    fig.savefig(path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schedule", choices=sorted(SCHEDULES), default="short")
    parser.add_argument("--out", default=str(ROOT / "target" / "faults"))
    parser.add_argument("--producers", type=int, default=3)
    parser.add_argument("--consumers", type=int, default=3)
    parser.add_argument("--publish", action="store_true",
                        help="copy the table and plot into doc/source (reliability.rst)")
    args = parser.parse_args()
    out = pathlib.Path(args.out)
    ok = run(SCHEDULES[args.schedule], out, args.producers, args.consumers)
    if ok and args.publish:
        docs = ROOT / "doc" / "source"
        for name in ("reliability-table.inc", "reliability-throughput.png"):
            shutil.copyfile(out / name, docs / name)
    print("RESULT:", "OK" if ok else "FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
