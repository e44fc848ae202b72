#!/usr/bin/env python3
"""Cost as the number of queues grows: 10, 1,000, 10,000 and 100,000 queues
in one project, ours (release build) on the embedded SQLite store and on a
private Redis.

The queues (``q-0`` ... ``q-<N-1>``) are created with ``PUT /v2/queues/{q}``
over 16 keep-alive connections, adding to those of the previous point. At
each point, each load for ``--duration`` seconds:

- ``list first``: ``GET /v2/queues?limit=20`` (4 connections);
- ``list last``: the same from a marker 20 names before the end of the
  project's queue names (4 connections);
- ``walk``: every page of ``GET /v2/queues?limit=1000`` from the start
  (one connection; ``[transport] max_queues_per_page = 1000`` in the
  server's configuration), timed; every queue must be listed exactly once;
- ``stats``: ``GET /v2/queues/q-0/stats`` (4 connections; ``q-0`` stays
  empty, so that its depth does not change from point to point);
- ``post spread``: ``POST /v2/queues/{q}/messages`` of one message to a queue
  drawn at random from ``q-1`` ... ``q-<N-1>`` (16 connections); with many
  queues most of these are the first post to an empty queue;
- ``post again``: the same, to a queue drawn from those the previous load
  reached (each holds messages already); after each of the two, every queue
  posted to must hold exactly the messages posted to it (``stats``);
- ``post 16q``: zaqar-bench, 16 producers on 16 queues of the project
  (``zb-0`` ... ``zb-15``, so 16 queues beyond N), with its checks (nothing
  lost, nothing twice);
- ``idle``: the server's (and Redis') CPU over 2 s without requests, and the
  server's RSS: a background task that walks every queue would show here;
  ``store MiB``: the SQLite files (database and WAL) or Redis'
  ``used_memory``, messages included.

The load generator (asyncio, HTTP/1.1 on raw sockets) runs in this process,
on the same machine; its own CPU bounds the Python loads.

Usage:
    tools/bench-queues.py [--counts 10,1000,10000,100000] [--stores sqlite,redis]
        [--duration 3] [--port-base 27100] [--bin-dir DIR] [--out DIR]

Ports: server on BASE+1, Redis on BASE+379 (loopback). Binaries: ``--bin-dir``
(or ``BENCH_BIN_DIR``) with ``zaqar-server`` and ``zaqar-bench``; otherwise
``target/release`` after ``cargo build --release``. Exit status 1 when a
check fails.
"""

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
from benchlib import CLK, Processes, cpu_ticks, load_average, pct, rss_mib, stores_section  # noqa: E402
PROJECT = "queues-" + uuid.uuid4().hex[:8]
HEADERS = f"Client-ID: {uuid.uuid4()}\r\nX-Project-ID: {PROJECT}\r\n"


class Conn:
    """One keep-alive HTTP/1.1 connection."""

    def __init__(self, port):
        self.port = port
        self.reader = self.writer = None

    async def request(self, method, path, body=None):
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        data = b"" if body is None else json.dumps(body).encode()
        head = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{HEADERS}"
                f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n")
        self.writer.write(head.encode() + data)
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("closed")
        status = int(status_line.split()[1])
        length, chunked, close = 0, False, False
        while True:
            h = await self.reader.readline()
            if h in (b"\r\n", b""):
                break
            name, _, value = h.decode("latin-1").partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding" and "chunked" in value:
                chunked = True
            elif name == "connection" and "close" in value.lower():
                close = True
        if chunked:
            parts = []
            while True:
                size = int((await self.reader.readline()).strip(), 16)
                if size == 0:
                    await self.reader.readline()
                    break
                parts.append(await self.reader.readexactly(size))
                await self.reader.readline()
            payload = b"".join(parts)
        else:
            payload = await self.reader.readexactly(length) if length else b""
        if close:
            self.writer.close()
            self.writer = None
        return status, payload


async def timed_load(port, connections, duration, make_request, expect, on_done=None):
    """Runs make_request() -> (method, path, body) on every connection until
    duration ends; returns (count, latencies, errors, elapsed). on_done is
    called with (path, payload) of every answer with an expected status."""
    lat, errors = [], []
    deadline = time.perf_counter() + duration

    async def worker():
        c = Conn(port)
        while time.perf_counter() < deadline:
            method, path, body = make_request()
            t0 = time.perf_counter()
            status, payload = await c.request(method, path, body)
            lat.append(time.perf_counter() - t0)
            if status not in expect:
                errors.append(f"{method} {path}: {status} {payload[:200]!r}")
            elif on_done:
                on_done(path, payload)
    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    return len(lat), lat, errors, time.perf_counter() - start


class Bench(Processes):
    def __init__(self, args):
        super().__init__()
        self.args = args
        self.port = args.port_base + 1
        self.redis_port = args.port_base + 379
        self.failures = []

    def start_redis(self):
        return super().start_redis(self.redis_port, self.args.out)

    def server_extra(self):
        """Configuration sections added to the server's."""
        return "[transport]\nmax_queues_per_page = 1000\n"

    def start_server(self, store):
        out = self.args.out
        stores = stores_section(store, out, self.redis_port)
        conf = os.path.join(out, f"{store}.conf")
        with open(conf, "w") as f:
            f.write(f"[drivers]\ntransport = wsgi\n{stores}"
                    f"[drivers:transport:wsgi]\nbind = 127.0.0.1\nport = {self.port}\n"
                    f"{self.server_extra()}")
        p = self.spawn([self.args.server, "--config-file", conf], os.path.join(out, f"{store}.log"),
                       env=dict(os.environ, RUST_LOG="warn"))
        for _ in range(200):
            try:
                status, _ = asyncio.run(Conn(self.port).request("GET", "/v2/ping"))
                if status == 204:
                    return p
            except OSError:
                pass
            time.sleep(0.1)
        raise SystemExit(f"zaqar-server ({store}) did not come up")

    def store_mib(self, store):
        """SQLite: the database and its WAL on disk; Redis: used_memory."""
        if store == "sqlite":
            data = os.path.join(self.args.out, "sqlite-data")
            return sum(os.path.getsize(os.path.join(data, f)) for f in os.listdir(data)) / 2**20
        info = subprocess.run(["redis-cli", "-p", str(self.redis_port), "info", "memory"],
                              capture_output=True, text=True).stdout
        used = next(line for line in info.splitlines() if line.startswith("used_memory:"))
        return int(used.split(":")[1]) / 2**20

    def check(self, ok, what):
        if not ok:
            self.failures.append(what)
            print(f"   CHECK FAILED: {what}", file=sys.stderr)

    async def create(self, start, end):
        todo = iter(range(start, end))
        errors = []

        async def worker():
            c = Conn(self.port)
            for i in todo:
                status, payload = await c.request("PUT", f"/v2/queues/q-{i}", {})
                if status not in (201, 204):
                    errors.append(f"PUT q-{i}: {status} {payload[:200]!r}")
        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(16)))
        self.check(not errors, f"queue creation: {errors[:2]}")
        return time.perf_counter() - t0

    async def walk(self, expected):
        c = Conn(self.port)
        seen, pages, marker = [], 0, None
        t0 = time.perf_counter()
        while True:
            path = "/v2/queues?limit=1000" + (f"&marker={marker}" if marker else "")
            status, payload = await c.request("GET", path)
            pages += 1
            if status == 204 or not payload:
                break
            self.check(status == 200, f"walk: {status}")
            names = [q["name"] for q in json.loads(payload)["queues"]]
            if not names:
                break
            seen.extend(names)
            marker = names[-1]
            if len(names) < 1000:
                break
        elapsed = time.perf_counter() - t0
        self.check(len(seen) == len(set(seen)), f"walk listed {len(seen) - len(set(seen))} queues twice")
        self.check(set(seen) == expected,
                   f"walk: {len(expected - set(seen))} queues missing, {len(set(seen) - expected)} unexpected")
        self.check(seen == sorted(seen), "walk: names out of order")
        return elapsed, pages, sorted(seen)

    async def point(self, store, n, names, posted, server, redis):
        d = self.args.duration
        row = {"store": store, "queues": n}
        loads = {}

        async def load(name, conns, make, expect=(200,)):
            count, lat, errors, elapsed = await timed_load(self.port, conns, d, make, expect)
            self.check(not errors, f"{store}/{n}/{name}: {len(errors)} errors, e.g. {errors[:1]}")
            loads[name] = (count / elapsed, pct(lat, 50) * 1000, pct(lat, 99) * 1000)

        await load("list_first", 4, lambda: ("GET", "/v2/queues?limit=20", None))
        marker = names[max(0, len(names) - 21)]
        await load("list_last", 4, lambda: ("GET", f"/v2/queues?limit=20&marker={marker}", None))
        await load("stats", 4, lambda: ("GET", "/v2/queues/q-0/stats", None))

        # posts spread over every queue, then again over the queues the
        # first pass reached (which then hold messages already): each post
        # accounted for
        touched_first = []
        for label, pick in (("post_spread", lambda: random.randrange(1, n)),
                            ("post_again", lambda: random.choice(touched_first))):
            target = {}

            def make_post(pick=pick):
                q = pick()
                q = q if isinstance(q, str) else f"q-{q}"
                return ("POST", f"/v2/queues/{q}/messages", {"messages": [{"ttl": 3600, "body": {"n": 1}}]})

            def on_done(path, payload, target=target):
                q = path.split("/")[3]
                target[q] = target.get(q, 0) + len(json.loads(payload)["resources"])
            count, lat, errors, elapsed = await timed_load(self.port, 16, d, make_post, (201,), on_done)
            self.check(not errors, f"{store}/{n}/{label}: {len(errors)} errors, e.g. {errors[:1]}")
            loads[label] = (count / elapsed, pct(lat, 50) * 1000, pct(lat, 99) * 1000)
            for q, k in target.items():
                posted[q] = posted.get(q, 0) + k
            if label == "post_spread":
                touched_first = sorted(target)
            # every queue posted to holds what was posted to it
            touched = iter(sorted(target))
            wrong = []

            async def verify():
                c = Conn(self.port)
                for q in touched:
                    status, payload = await c.request("GET", f"/v2/queues/{q}/stats")
                    total = json.loads(payload)["messages"]["total"] if status == 200 else -1
                    if total != posted[q]:
                        wrong.append(f"{q}: {total} != {posted[q]}")
            await asyncio.gather(*(verify() for _ in range(8)))
            self.check(not wrong, f"{store}/{n}/{label}: {len(wrong)} queues hold other counts, e.g. {wrong[:2]}")
            row[f"{label}_queues"] = len(target)

        # zaqar-bench: 16 producers on 16 queues of this project
        report = os.path.join(self.args.out, f"{store}.{n}.zaqar-bench.json")
        rc = subprocess.run([self.args.bench, "--url", f"http://127.0.0.1:{self.port}", "--project", PROJECT,
                             "--queue-prefix", "zb", "--queues", "16", "--producers", "16",
                             "--duration", str(d), "--warmup", "1", "--quiet", "--json"],
                            stdout=open(report, "w"), stderr=subprocess.PIPE, text=True)
        zb = json.load(open(report))
        self.check(rc.returncode == 0, f"{store}/{n}/zaqar-bench exited {rc.returncode}: {rc.stderr[-300:]}")
        op = next(o for o in zb["ops"] if o["op"] == "post")
        loads["post_16q"] = (op["messages_per_s"], op["latency_ms"]["p50"], op["latency_ms"]["p99"])
        self.check(zb["correct"] and not op["errors"],
                   f"{store}/{n}/zaqar-bench: correct={zb['correct']} errors={op['errors']}")

        # idle cost
        t_server, t_redis = cpu_ticks(server.pid), cpu_ticks(redis.pid) if redis else 0
        time.sleep(2)
        row["idle_server_pct"] = (cpu_ticks(server.pid) - t_server) / CLK / 2 * 100
        row["idle_redis_pct"] = (cpu_ticks(redis.pid) - t_redis) / CLK / 2 * 100 if redis else float("nan")
        row["rss_mib"] = rss_mib(server.pid)
        row["store_mib"] = self.store_mib(store)
        row["loads"] = loads
        row["load"] = load_average()
        return row


LOADS = [("list first", "list_first"), ("list last", "list_last"), ("stats", "stats"),
         ("post spread", "post_spread"), ("post again", "post_again"), ("post 16q", "post_16q")]


def table(rows):
    head = ["store", "queues", "create/s", "walk s", "pages"]
    for label, _ in LOADS:
        head += [f"{label} /s", "p50 ms", "p99 ms"]
    head += ["idle CPU %", "RSS MiB", "store MiB"]
    cells = [head]
    for r in rows:
        line = [r["store"], f"{r['queues']:,}", f"{r['create_per_s']:,.0f}", f"{r['walk_s']:.3f}",
                f"{r['pages']:,}"]
        for _, key in LOADS:
            rate, p50, p99 = r["loads"][key]
            line += [f"{rate:,.0f}", f"{p50:.2f}", f"{p99:.2f}"]
        idle = f"{r['idle_server_pct']:.1f}"
        if r["idle_redis_pct"] == r["idle_redis_pct"]:
            idle += f" + {r['idle_redis_pct']:.1f}"
        line += [idle, f"{r['rss_mib']:.1f}", f"{r['store_mib']:.1f}"]
        cells.append(line)
    widths = [max(len(c[i]) for c in cells) for i in range(len(head))]
    out = []
    for j, c in enumerate(cells):
        out.append("  ".join(x.ljust(w) if i == 0 else x.rjust(w) for i, (x, w) in enumerate(zip(c, widths))))
        if j == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--counts", default="10,1000,10000,100000")
    ap.add_argument("--stores", default="sqlite,redis")
    ap.add_argument("--duration", type=float, default=3.0, help="seconds per load and point")
    ap.add_argument("--port-base", type=int, default=int(os.environ.get("BENCH_PORT_BASE", 27100)))
    ap.add_argument("--bin-dir", default=os.environ.get("BENCH_BIN_DIR"))
    ap.add_argument("--out", default=os.path.join(ROOT, "target", "bench-queues"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    if not args.bin_dir:
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "zaqar", "--bin", "zaqar-server"],
                       cwd=ROOT, check=True)
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "zaqar-bench"], cwd=ROOT, check=True)
        args.bin_dir = os.path.join(ROOT, "target", "release")
    args.server = os.path.join(args.bin_dir, "zaqar-server")
    args.bench = os.path.join(args.bin_dir, "zaqar-bench")
    counts = sorted(int(x) for x in args.counts.split(","))
    bench = Bench(args)
    rows = []
    try:
        for store in args.stores.split(","):
            redis = bench.start_redis() if store == "redis" else None
            server = bench.start_server(store)
            made, posted = 0, {}
            extra = set()
            for n in counts:
                print(f"== {store}: {n:,} queues", file=sys.stderr)
                took = asyncio.run(bench.create(made, n))
                create_rate = (n - made) / took if n > made else float("nan")
                made = n
                expected = {f"q-{i}" for i in range(n)} | extra
                walk_s, pages, names = asyncio.run(bench.walk(expected))
                row = asyncio.run(bench.point(store, n, names, posted, server, redis))
                extra = {f"zb-{i}" for i in range(16)}
                row.update(create_per_s=create_rate, walk_s=walk_s, pages=pages)
                rows.append(row)
                print(f"   {json.dumps(row)}", file=sys.stderr)
            bench.stop(server)
            if redis:
                bench.stop(redis)
    finally:
        bench.stop_all()
    with open(os.path.join(args.out, "report.json"), "w") as f:
        json.dump(rows, f, indent=1)
    print(f"Queue count: one project, {args.duration:g}s per load; list 4 conn (limit=20), walk 1 conn "
          f"(limit=1000), stats 4 conn, post spread and again 16 conn (Python), post 16q zaqar-bench 16 producers; "
          f"{os.cpu_count()} cores; load average at each point's end: {', '.join(r['load'] for r in rows)}")
    print(table(rows))
    print("Checks (walk lists every queue once, in order; every post accounted for; zaqar-bench's checks): "
          + ("all OK" if not bench.failures else "FAILED: " + "; ".join(bench.failures)))
    return 1 if bench.failures else 0


if __name__ == "__main__":
    sys.exit(main())
