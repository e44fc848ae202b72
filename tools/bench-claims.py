#!/usr/bin/env python3
"""Cost of claiming from a queue whose head is blocked (delayed or claimed
messages) against a queue of free messages only; ours (release build) on
the embedded SQLite store and on a private Redis.

For each head size B (``--blocked``, default 5,000 and 50,000: 9% and 50%
of the queue at the start) three queues are prepared, in one project:

- ``free``: F free messages (``--free``, default 50,000), no head;
- ``delayed``: a delay queue (``_default_message_delay`` = 1 in its
  metadata: a message's ``delay`` counts only in a queue whose default is
  not 0, as in the reference; every message here gives its own, 0 or 900),
  B messages posted with ``delay`` = 900 s (the largest the default
  ``[transport] max_message_delay`` allows), then F free ones;
- ``claimed``: B messages, all claimed (``ttl`` 3600 s) by claims of 500,
  then F free ones.

Messages are posted 500 per request over 16 connections (``[transport]
max_messages_per_page`` and ``max_messages_per_claim_or_pop`` are 500 in
the server's configuration, for the preparation; the measured claims ask
for 10). Then zaqar-bench runs 16 consumers on each queue for
``--duration`` seconds after ``--warmup`` (claim 10, delete them with one
bulk ``DELETE``), keeping the queue as it is (``--no-reset``), with its
checks (no message claimed twice, none deleted twice, before + posted =
consumed + after). The table gives the claim's requests/s, p50/p99, the
messages consumed per second, the claims that found nothing, and the free
messages left; a row whose free messages ran out measured claims that found
nothing too, and the script says so.

Usage:
    tools/bench-claims.py [--blocked 5000,50000] [--free 50000] [--stores sqlite,redis]
        [--duration 1.5] [--warmup 0.5] [--port-base 27200] [--bin-dir DIR] [--out DIR]

Ports: server on BASE+1, Redis on BASE+379 (loopback). Exit status 1 when a
check fails.
"""

import argparse
import asyncio
import importlib.util
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
_spec = importlib.util.spec_from_file_location("bench_queues", os.path.join(HERE, "bench-queues.py"))
bq = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bq)
Conn = bq.Conn

PER_REQUEST = 500


class Bench(bq.Bench):
    def server_extra(self):
        return (f"[transport]\nmax_messages_per_page = {PER_REQUEST}\n"
                f"max_messages_per_claim_or_pop = {PER_REQUEST}\n")

    async def post(self, queue, count, delay=0):
        left = [count]
        errors = []

        async def worker():
            c = Conn(self.port)
            while left[0] > 0:
                k = min(PER_REQUEST, left[0])
                left[0] -= k
                msgs = [{"ttl": 3600, "delay": delay, "body": {"pad": "x" * 80}} for _ in range(k)]
                status, payload = await c.request("POST", f"/v2/queues/{queue}/messages", {"messages": msgs})
                if status != 201:
                    errors.append(f"{status} {payload[:200]!r}")
        await asyncio.gather(*(worker() for _ in range(16)))
        self.check(not errors, f"post to {queue}: {errors[:1]}")

    async def claim_all(self, queue, count):
        claimed = set()
        errors = []

        async def worker():
            c = Conn(self.port)
            while len(claimed) < count and not errors:
                status, payload = await c.request(
                    "POST", f"/v2/queues/{queue}/claims?limit={PER_REQUEST}", {"ttl": 3600, "grace": 60})
                if status == 204:
                    return
                if status != 201:
                    errors.append(f"{status} {payload[:200]!r}")
                    return
                for m in json.loads(payload)["messages"]:
                    mid = m["href"].split("/messages/")[1].split("?")[0]
                    self.check(mid not in claimed, f"{queue}: message {mid} claimed twice")
                    claimed.add(mid)
        await asyncio.gather(*(worker() for _ in range(4)))
        self.check(not errors, f"claims on {queue}: {errors[:1]}")
        self.check(len(claimed) == count, f"{queue}: {len(claimed)} claimed of {count}")

    async def stats(self, queue):
        status, payload = await Conn(self.port).request("GET", f"/v2/queues/{queue}/stats")
        return json.loads(payload)["messages"]

    def prepare(self, kind, blocked):
        free = self.args.free
        queue = f"{kind}-{blocked}"
        name = f"{queue}-0"  # zaqar-bench's name for its only queue
        t0 = time.perf_counter()

        async def go():
            # A message's delay counts only in a delay queue (one with a
            # non-zero _default_message_delay), as in the reference; every
            # message here gives its own delay (0 or 900).
            meta = {"_default_message_delay": 1} if kind == "delayed" else {}
            status, _ = await Conn(self.port).request("PUT", f"/v2/queues/{name}", meta)
            self.check(status == 201, f"PUT {name}: {status}")
            if kind == "delayed":
                await self.post(name, blocked, delay=900)
            elif kind == "claimed":
                await self.post(name, blocked)
                await self.claim_all(name, blocked)
            await self.post(name, free)
            return await self.stats(name)
        st = asyncio.run(go())
        want_claimed = blocked if kind == "claimed" else 0
        self.check(st["claimed"] == want_claimed and st["total"] == free + (0 if kind == "free" else blocked),
                   f"{name} prepared with {st}, wanted {want_claimed} claimed of {free + blocked}")
        print(f"   {name}: {st} in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
        return queue, name, free

    def consume(self, store, kind, blocked):
        queue, name, free = self.prepare(kind, blocked)
        report = os.path.join(self.args.out, f"{store}.{queue}.json")
        rc = subprocess.run([self.args.bench, "--url", f"http://127.0.0.1:{self.port}", "--project", bq.PROJECT,
                             "--queue-prefix", queue, "--queues", "1", "--no-reset", "--consumers", "16",
                             "--claim-limit", "10", "--delete-mode", "bulk", "--duration", str(self.args.duration),
                             "--warmup", str(self.args.warmup), "--quiet", "--json"],
                            stdout=open(report, "w"), stderr=subprocess.PIPE, text=True)
        zb = json.load(open(report))
        self.check(rc.returncode == 0 and zb["correct"],
                   f"{store}/{queue}: zaqar-bench exited {rc.returncode}, correct={zb['correct']}")
        ops = {o["op"]: o for o in zb["ops"]}
        claim = ops["claim"]
        for o in zb["ops"]:
            self.check(not o["errors"], f"{store}/{queue}: {o['op']} errors {o['errors']}")
        # Free messages left: what a claim of everything would still get is
        # total - claimed - delayed; the blocked head is still there.
        left = asyncio.run(self.stats(name))
        left["free"] = left["total"] - (0 if kind == "free" else blocked)
        asyncio.run(Conn(self.port).request("DELETE", f"/v2/queues/{name}"))
        return {
            "store": store, "queue": kind, "blocked": 0 if kind == "free" else blocked, "free": free,
            "claims_per_s": claim["requests_per_s"], "claim_p50_ms": claim["latency_ms"]["p50"],
            "claim_p99_ms": claim["latency_ms"]["p99"], "consumed_per_s": zb["consumed_per_s"],
            "empty": claim["empty"], "free_left": left["free"], "load": bq.load_average(),
        }


def table(rows):
    head = ["store", "queue", "blocked", "free", "claims/s", "claim p50 ms", "claim p99 ms",
            "consumed/s", "empty claims", "free left"]
    cells = [head]
    for r in rows:
        cells.append([r["store"], r["queue"], f"{r['blocked']:,}", f"{r['free']:,}", f"{r['claims_per_s']:,.0f}",
                      f"{r['claim_p50_ms']:.2f}", f"{r['claim_p99_ms']:.2f}", f"{r['consumed_per_s']:,.0f}",
                      f"{r['empty']:,}", f"{r['free_left']:,}"])
    widths = [max(len(c[i]) for c in cells) for i in range(len(head))]
    out = []
    for j, c in enumerate(cells):
        out.append("  ".join(x.ljust(w) if i < 2 else x.rjust(w) for i, (x, w) in enumerate(zip(c, widths))))
        if j == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--blocked", default="5000,50000", help="sizes of the blocked head")
    ap.add_argument("--free", type=int, default=50000, help="free messages behind the head")
    ap.add_argument("--warmup", type=float, default=0.5)
    ap.add_argument("--stores", default="sqlite,redis")
    ap.add_argument("--duration", type=float, default=1.5)
    ap.add_argument("--port-base", type=int, default=int(os.environ.get("BENCH_PORT_BASE", 27200)))
    ap.add_argument("--bin-dir", default=os.environ.get("BENCH_BIN_DIR"))
    ap.add_argument("--out", default=os.path.join(ROOT, "target", "bench-claims"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    if not args.bin_dir:
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "zaqar", "--bin", "zaqar-server"],
                       cwd=ROOT, check=True)
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "zaqar-bench"], cwd=ROOT, check=True)
        args.bin_dir = os.path.join(ROOT, "target", "release")
    args.server = os.path.join(args.bin_dir, "zaqar-server")
    args.bench = os.path.join(args.bin_dir, "zaqar-bench")
    bench = Bench(args)
    rows = []
    try:
        for store in args.stores.split(","):
            redis = bench.start_redis() if store == "redis" else None
            server = bench.start_server(store)
            for blocked in (int(b) for b in args.blocked.split(",")):
                for kind in ("free", "delayed", "claimed"):
                    print(f"== {store}: {kind}, head of {blocked:,}", file=sys.stderr)
                    row = bench.consume(store, kind, blocked)
                    rows.append(row)
                    print(f"   {json.dumps(row)}", file=sys.stderr)
            bench.stop(server)
            if redis:
                bench.stop(redis)
    finally:
        bench.stop_all()
    with open(os.path.join(args.out, "report.json"), "w") as f:
        json.dump(rows, f, indent=1)
    print(f"Claims behind a blocked head: 16 consumers (claim 10, bulk delete), {args.duration:g}s after "
          f"{args.warmup:g}s warm-up; {os.cpu_count()} cores; load average at each row's end: "
          f"{', '.join(r['load'] for r in rows)}")
    print(table(rows))
    dry = [f"{r['store']}/{r['queue']}/{r['blocked']}" for r in rows if r["free_left"] == 0]
    if dry:
        print("Ran out of free messages (claims on an empty head measured too): " + ", ".join(dry))
    print("Checks (zaqar-bench's: no double claim or delete, balance; preparation counts): "
          + ("all OK" if not bench.failures else "FAILED: " + "; ".join(bench.failures)))
    return 1 if bench.failures else 0


if __name__ == "__main__":
    sys.exit(main())
