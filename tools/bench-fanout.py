#!/usr/bin/env python3
"""Cost of webhook fan-out: one queue with 0, 1, 100 and 1,000 webhook
subscribers, each pointing at a real HTTP receiver on loopback that this
script starts; ours (release build) on the embedded SQLite store and on a
private Redis.

For each number of subscribers N the script creates a fresh queue, subscribes
N webhooks (``http://127.0.0.1:PORT/s/<i>``), posts M messages (one per
request, ``--posters`` connections, each body carrying its sequence number
and its post time) and waits until every subscriber has every message (or
until nothing arrives for ``--settle`` seconds). M is ``--deliveries`` / N,
bounded by ``--min-posts`` and ``--max-posts``.

It reports, per store and N:

- the post's own latency (p50/p99 of the ``POST .../messages`` requests): the
  notifier stage writes one fan-out row per post (none when nobody is to be
  notified), which a delivery worker expands into one row per (message,
  subscriber);
- deliveries per second (N * M over the time from the first post to the last
  arrival);
- the delay from a message's post to its arrival at a subscriber (p50/p99
  over every delivery), and from a post to its last delivery (p50/max over
  the messages);
- the accounting: deliveries expected, received, missing (a subscriber that
  never got a message) and duplicates (delivery is at least once, so
  duplicates are allowed but counted). A missing delivery fails the run
  (exit status 1).

The receiver is a small asyncio HTTP/1.1 server (keep-alive, ``204`` to every
POST) in a process of its own, so that its Python time does not slow the
posting clients; it counts POSTs per subscriber path and stamps arrivals.

Server settings (written to the configuration the script starts the server
with): ``[notification] allowed_subscriber_networks = 127.0.0.0/8`` (loopback
subscribers are refused otherwise), ``require_confirmation = false`` (the
default: no confirmation round), ``max_notifier_workers`` and
``max_notifier_workers_per_project`` = ``--workers`` (one project here, so
the per-project cap would otherwise halve them).

Usage:
    tools/bench-fanout.py [--subscribers 0,1,100,1000] [--stores sqlite,redis]
        [--deliveries 50000] [--posters 4] [--workers 64] [--unconfirmed]
        [--confirmed K]
        [--port-base 27000] [--bin-dir DIR] [--out DIR]

Ports: server on BASE+1, receiver on BASE+2, Redis on BASE+379 (loopback).
Binaries: ``--bin-dir`` (or ``BENCH_BIN_DIR``) holding ``zaqar-server``;
otherwise ``target/release`` after ``cargo build --release``.
"""

import argparse
import asyncio
import http.client
import json
import os
import subprocess
import sys
import threading
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
from benchlib import CLK, Processes, cpu_ticks, load_average, pct, stores_section  # noqa: E402


# --- the receiver (runs in its own process: ``--receiver PORT``) -------------

def receiver_main(port):
    """Counts every POST by path; ``GET /_dump`` returns them and forgets."""
    records = []

    async def handle(reader, writer):
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                parts = line.decode("latin-1").split(" ")
                method, path = parts[0], parts[1] if len(parts) > 1 else "/"
                length = 0
                while True:
                    h = await reader.readline()
                    if h in (b"\r\n", b"\n", b""):
                        break
                    name, _, value = h.decode("latin-1").partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value.strip())
                body = await reader.readexactly(length) if length else b""
                now = time.time()
                if method == "POST":
                    records.append((path, body, now))
                    writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
                elif path == "/_count":
                    out = str(len(records)).encode()
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(out), out))
                elif path == "/_dump":
                    out = json.dumps([dump(r) for r in records]).encode()
                    records.clear()
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                 b"Content-Length: %d\r\n\r\n" % len(out) + out)
                else:
                    writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    def dump(record):
        path, body, arrived = record
        try:
            doc = json.loads(body)
            inner = doc.get("body") or {}
            return [path, doc.get("Message_Type"), doc.get("queue_name"),
                    inner.get("seq"), inner.get("t"), arrived]
        except (ValueError, AttributeError):
            return [path, None, None, None, None, arrived]

    async def serve():
        server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
        async with server:
            await server.serve_forever()

    asyncio.run(serve())


# --- helpers -------------------------------------------------------------------

def wait_http(url, what, headers=None, timeout=20):
    import requests
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if requests.get(url, headers=headers, timeout=2).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{what} did not come up at {url}")


class Bench(Processes):
    def __init__(self, args):
        super().__init__()
        import requests
        self.requests = requests
        self.args = args
        base = args.port_base
        self.server_port, self.receiver_port, self.redis_port = base + 1, base + 2, base + 379
        self.url = f"http://127.0.0.1:{self.server_port}"
        self.recv = f"http://127.0.0.1:{self.receiver_port}"
        self.project = "fanout-" + uuid.uuid4().hex[:8]
        self.headers = {"Client-ID": str(uuid.uuid4()), "X-Project-ID": self.project}

    def start_receiver(self):
        self.receiver = self.spawn([sys.executable, os.path.abspath(__file__), "--receiver", str(self.receiver_port)],
                   os.path.join(self.args.out, "receiver.log"))
        wait_http(self.recv + "/_count", "the receiver")

    def start_redis(self):
        self.redis = super().start_redis(self.redis_port, self.args.out)

    def start_server(self, store):
        out = self.args.out
        stores = stores_section(store, out, self.redis_port)
        w = self.args.workers
        conf = os.path.join(out, f"{store}.conf")
        with open(conf, "w") as f:
            f.write(f"[drivers]\ntransport = wsgi\n{stores}"
                    f"[drivers:transport:wsgi]\nbind = 127.0.0.1\nport = {self.server_port}\n"
                    f"[notification]\nallowed_subscriber_networks = 127.0.0.0/8\n"
                    f"require_confirmation = {str(self.args.unconfirmed).lower()}\n"
                    f"max_notifier_workers = {w}\nmax_notifier_workers_per_project = {w}\n"
                    f"[signed_url]\nsecret_key = {uuid.uuid4().hex}\n")
        env = dict(os.environ, RUST_LOG="warn")
        p = subprocess.Popen([self.args.server, "--config-file", conf],
                             stdout=open(os.path.join(out, f"{store}.log"), "w"),
                             stderr=subprocess.STDOUT, env=env)
        self.procs.append(p)
        self.server = p
        wait_http(self.url + "/v2/ping", f"zaqar-server ({store})", self.headers)
        return p

    # one point
    def subscribe(self, queue, n):
        self.requests.put(f"{self.url}/v2/queues/{queue}", headers=self.headers, json={}).raise_for_status()
        todo = list(range(n))
        lock = threading.Lock()
        errors = []

        def worker():
            sess = self.requests.Session()
            while True:
                with lock:
                    if not todo:
                        return
                    i = todo.pop()
                r = sess.post(f"{self.url}/v2/queues/{queue}/subscriptions", headers=self.headers,
                              json={"subscriber": f"{self.recv}/s/{i}", "ttl": 3600})
                if r.status_code != 201:
                    errors.append(f"{r.status_code} {r.text}")
                elif i < self.args.confirmed:
                    sid = r.json()["subscription_id"]
                    c = sess.put(f"{self.url}/v2/queues/{queue}/subscriptions/{sid}/confirm",
                                 headers=self.headers, json={"confirmed": True})
                    if c.status_code != 204:
                        errors.append(f"confirm: {c.status_code} {c.text}")
        threads = [threading.Thread(target=worker) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise SystemExit(f"subscribing failed: {errors[0]}")

    def post_all(self, queue, m):
        """Posts m messages from --posters connections; returns latencies (s)
        and the first post's start."""
        latencies, lock = [], threading.Lock()
        seqs = list(range(m))
        failures = []
        start = time.time()

        def poster():
            # http.client: a keep-alive connection with less client time per
            # request than requests' sessions.
            conn = http.client.HTTPConnection("127.0.0.1", self.server_port)
            headers = dict(self.headers, **{"Content-Type": "application/json"})
            path = f"/v2/queues/{queue}/messages"
            while True:
                with lock:
                    if not seqs:
                        return
                    k = seqs.pop(0)
                t0 = time.time()
                body = json.dumps({"messages": [{"ttl": 3600, "body": {"seq": k, "t": t0}}]})
                conn.request("POST", path, body=body, headers=headers)
                r = conn.getresponse()
                text = r.read()
                dt = time.time() - t0
                with lock:
                    if r.status == 201:
                        latencies.append(dt)
                    else:
                        failures.append(f"{r.status} {text[:200]!r}")
        threads = [threading.Thread(target=poster) for _ in range(self.args.posters)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return latencies, start, time.time(), failures

    def count(self):
        return int(self.requests.get(self.recv + "/_count").text)

    def run_point(self, store, n):
        a = self.args
        # With --unconfirmed, only the first --confirmed subscribers are to
        # be notified.
        notified = min(n, a.confirmed) if a.unconfirmed else n
        m = a.max_posts if notified == 0 else max(a.min_posts, min(a.max_posts, a.deliveries // notified))
        queue = f"fan-{store}-{n}"
        self.requests.get(self.recv + "/_dump")  # forget anything earlier
        self.subscribe(queue, n)
        watched = {"server": self.server, "receiver": self.receiver}
        if store == "redis":
            watched["redis"] = self.redis
        ticks = {k: cpu_ticks(p.pid) for k, p in watched.items()}
        latencies, first, last_post, failures = self.post_all(queue, m)
        # Unconfirmed subscribers (--unconfirmed) get a confirmation request
        # each and no notification.
        expected = notified * m
        # Wait for every delivery, or until nothing arrives for --settle s.
        seen, quiet_since = -1, time.time()
        while True:
            c = self.count()
            # (with require_confirmation each subscriber also got a
            # confirmation request)
            if expected > 0 and c >= expected + (n if a.unconfirmed else 0):
                # a little longer, to catch duplicates in flight
                time.sleep(0.3)
                break
            if c != seen:
                seen, quiet_since = c, time.time()
            elif time.time() - quiet_since > (a.settle if expected else 1.0):
                break
            time.sleep(0.05)
        waited = time.time() - first
        cpu = {k: (cpu_ticks(p.pid) - ticks[k]) / CLK / waited * 100 for k, p in watched.items()}
        records = self.requests.get(self.recv + "/_dump").json()
        got = {}
        delays = []
        last_by_msg = {}
        last_arrival = first
        other = 0
        for path, mtype, qname, seq, t, arrived in records:
            if mtype != "Notification" or qname != queue or seq is None:
                other += 1
                continue
            key = (path, seq)
            got[key] = got.get(key, 0) + 1
            delays.append(arrived - t)
            last_by_msg[seq] = max(last_by_msg.get(seq, 0), arrived - t)
            last_arrival = max(last_arrival, arrived)
        wanted = {key for key in got if key[0].startswith("/s/") and int(key[0][3:]) < notified}
        unique = sum(1 for k in wanted if 0 <= k[1] < m)
        dups = sum(c - 1 for c in got.values())
        missing = expected - unique
        # Unconfirmed subscribers must get no notification at all.
        unwanted = sum(c for k, c in got.items() if k not in wanted) if a.unconfirmed else 0
        span = last_arrival - first
        row = {
            "store": store, "subscribers": n, "posts": m, "post_failures": len(failures),
            "post_p50_ms": pct(latencies, 50) * 1000, "post_p99_ms": pct(latencies, 99) * 1000,
            "posts_per_s": len(latencies) / max(1e-9, last_post - first),
            "expected": expected, "received": len(records) - other, "missing": missing,
            "duplicates": dups, "other": other, "unwanted": unwanted,
            "deliveries_per_s": (expected - missing) / span if expected and span > 0 else 0.0,
            "delay_p50_ms": pct(delays, 50) * 1000, "delay_p99_ms": pct(delays, 99) * 1000,
            "last_p50_ms": pct(list(last_by_msg.values()), 50) * 1000,
            "last_max_ms": max(last_by_msg.values(), default=float("nan")) * 1000,
            "span_s": span if n else last_post - first,
            "cpu": "/".join(f"{cpu[k]:.0f}" for k in ("server", "receiver", "redis") if k in cpu),
            "load": load_average(3),
        }
        if failures:
            print(f"   post failures: {failures[:3]}", file=sys.stderr)
        self.requests.delete(f"{self.url}/v2/queues/{queue}", headers=self.headers)
        return row


def fmt(v, digits=1):
    if isinstance(v, float):
        if v != v:
            return "-"
        return f"{v:,.{digits}f}"
    return f"{v:,}"


def table(rows):
    cols = [("store", "store", 0), ("subs", "subscribers", 0), ("posts", "posts", 0),
            ("post p50 ms", "post_p50_ms", 2), ("post p99 ms", "post_p99_ms", 2),
            ("posts/s", "posts_per_s", 0), ("deliv/s", "deliveries_per_s", 0),
            ("delay p50 ms", "delay_p50_ms", 1), ("delay p99 ms", "delay_p99_ms", 1),
            ("last p50 ms", "last_p50_ms", 1), ("last max ms", "last_max_ms", 1),
            ("expected", "expected", 0), ("missing", "missing", 0), ("dups", "duplicates", 0),
            ("CPU %", "cpu", 0)]
    cells = [[h for h, _, _ in cols]]
    for r in rows:
        cells.append([fmt(r[k], d) if isinstance(r[k], float) else fmt(r[k]) if isinstance(r[k], int)
                      else str(r[k]) for _, k, d in cols])
    widths = [max(len(c[i]) for c in cells) for i in range(len(cols))]
    lines = []
    for j, c in enumerate(cells):
        lines.append("  ".join(x.ljust(w) if i == 0 else x.rjust(w) for i, (x, w) in enumerate(zip(c, widths))))
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--receiver":
        receiver_main(int(sys.argv[2]))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--subscribers", default="0,1,100,1000")
    ap.add_argument("--stores", default="sqlite,redis")
    ap.add_argument("--deliveries", type=int, default=50000,
                    help="deliveries per point: messages = this / subscribers (bounded)")
    ap.add_argument("--min-posts", type=int, default=50)
    ap.add_argument("--max-posts", type=int, default=1000)
    ap.add_argument("--posters", type=int, default=4)
    ap.add_argument("--workers", type=int, default=64, help="max_notifier_workers (and per project)")
    ap.add_argument("--unconfirmed", action="store_true",
                    help="require_confirmation = true and subscriptions left unconfirmed: the post "
                         "reads the subscriptions but queues no delivery (the cost of the lookup alone)")
    ap.add_argument("--confirmed", type=int, default=0,
                    help="with --unconfirmed, confirm the first K subscribers of each point: only "
                         "they are notified")
    ap.add_argument("--settle", type=float, default=15.0,
                    help="give up waiting after this many seconds without an arrival")
    ap.add_argument("--port-base", type=int, default=int(os.environ.get("BENCH_PORT_BASE", 27000)))
    ap.add_argument("--bin-dir", default=os.environ.get("BENCH_BIN_DIR"))
    ap.add_argument("--out", default=os.path.join(ROOT, "target", "bench-fanout"))
    args = ap.parse_args()
    args.unconfirmed = args.unconfirmed or args.confirmed > 0
    os.makedirs(args.out, exist_ok=True)
    if not args.bin_dir:
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "zaqar", "--bin", "zaqar-server"],
                       cwd=ROOT, check=True)
        args.bin_dir = os.path.join(ROOT, "target", "release")
    args.server = os.path.join(args.bin_dir, "zaqar-server")
    counts = [int(x) for x in args.subscribers.split(",")]
    bench = Bench(args)
    rows = []
    try:
        bench.start_receiver()
        for store in args.stores.split(","):
            if store == "redis":
                bench.start_redis()
            server = bench.start_server(store)
            for n in counts:
                print(f"== {store}: {n} subscribers", file=sys.stderr)
                row = bench.run_point(store, n)
                rows.append(row)
                print(f"   {json.dumps(row)}", file=sys.stderr)
            bench.stop(server)
    finally:
        bench.stop_all()
    with open(os.path.join(args.out, "report.json"), "w") as f:
        json.dump(rows, f, indent=1)
    cpu = os.cpu_count()
    print(f"Fan-out: one queue, webhook subscribers on a loopback receiver; {args.posters} posting "
          f"connections, 1 message per post; {args.workers} notifier workers; {cpu} cores; "
          f"load average at each point's end: {', '.join(r['load'].split()[0] for r in rows)}")
    print("CPU %: of one core, server/receiver[/redis], from the first post until the last arrival")
    print(table(rows))
    bad = [r for r in rows if r["missing"] or r["post_failures"] or r["unwanted"]]
    print(("Checks (every confirmed subscriber got every message, no notification to an "
           "unconfirmed one): " if args.unconfirmed and args.confirmed else
           "Checks (no notification to an unconfirmed subscriber): " if args.unconfirmed else
           "Checks (every subscriber got every message; duplicates counted): ")
          + ("all OK" if not bad else "FAILED: " + ", ".join(
              f"{r['store']}/{r['subscribers']}: {r['missing']} missing, {r['post_failures']} failed posts, "
              f"{r['unwanted']} notifications to unconfirmed subscribers"
              for r in bad)))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
