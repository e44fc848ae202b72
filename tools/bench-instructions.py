#!/usr/bin/env python3
"""Cost per request counted in instructions, of Redis (``--count redis``,
the default) or of the server (``--count server``): that process runs
under valgrind's callgrind (user-space instructions, nearly the same count
for the same binaries and requests whatever else the machine is doing:
timings on a shared 2-core box move by 40 % between runs), one
zaqar-server per build named on the command line in front of a private
Redis, and each load below is sent one request at a time, with callgrind
counting only while that load runs.

Loads (each on a queue of its own, prefilled before counting starts):

- ``post1``: ``POST .../messages`` of one message;
- ``post10``: the same with ten messages;
- ``stats``: ``GET .../stats`` on a queue of 1,000 messages;
- ``list``: ``GET .../messages?echo=true`` (ten messages) on that queue;
- ``claim+delete``: a claim of ten messages, then one
  ``DELETE .../messages?ids=...&claim_id=...`` of them (the pair counts as
  one request), on a queue deep enough for every claim;
- ``claim empty``: a claim on a queue that has no message (a consumer
  polling an idle queue).

Every request must succeed (each claim must take ten messages), or the run
fails. Wall-clock time under valgrind means nothing; the instructions do.

Usage:
    tools/bench-instructions.py NAME=SERVER-BINARY[,KEY=VALUE...] [...]
        [--count redis|server] [--requests 2000] [--port-base 27400] [--out DIR]

``KEY=VALUE`` pairs after a binary go to its ``[drivers:message_store:redis]``
section: ``evalsha=target/release/zaqar-server,lua_functions=false`` runs
the scripts as ``EVALSHA`` instead of the function library.

Needs valgrind (callgrind_control). The server's count includes what its
background tasks do over the same time; its logging is at
``warn``, as in the other benchmarks. Ports: server on BASE+1, Redis on
BASE+379 (loopback).
"""

import argparse
import http.client
import json
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import Processes  # noqa: E402

HEADERS = {"Client-ID": "3381af92-2b9e-11e3-b191-71861300734c", "X-Project-ID": "cost",
           "Content-Type": "application/json"}
LOADS = ["post1", "post10", "stats", "list", "claim+delete", "claim empty"]


class Client:
    """One keep-alive HTTP connection to the server."""

    def __init__(self, port):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def call(self, method, path, body=None, want=(200, 201, 204)):
        data = None if body is None else json.dumps(body)
        self.conn.request(method, path, body=data, headers=HEADERS)
        r = self.conn.getresponse()
        payload = r.read()
        if r.status not in want:
            raise SystemExit(f"{method} {path}: {r.status} {payload[:300]!r}")
        return json.loads(payload) if payload else None

    def post(self, queue, n, i=0):
        msgs = [{"ttl": 3600, "body": {"n": i, "k": k}} for k in range(n)]
        self.call("POST", f"/v2/queues/{queue}/messages", {"messages": msgs})


def callgrind(pid, *args):
    subprocess.run(["callgrind_control", *args, str(pid)], check=True,
                   capture_output=True, timeout=120)


def instructions(out, pid, before):
    """The instructions of the dumps callgrind wrote since `before`."""
    total = 0
    for name in sorted(os.listdir(out)):
        path = os.path.join(out, name)
        if not name.startswith(f"callgrind.out.{pid}.") or path in before:
            continue
        with open(path) as f:
            for line in f:
                m = re.match(r"(summary|totals): (\d+)", line)
                if m:
                    total = max(total, int(m.group(2)))
        before.add(path)
    return total


def measure(name, server, args, redis_options=""):
    out = os.path.join(args.out, args.count, name)
    os.makedirs(out, exist_ok=True)
    for f in os.listdir(out):
        if f.startswith("callgrind.out"):
            os.remove(os.path.join(out, f))
    procs = Processes()
    redis_port, port = args.port_base + 379, args.port_base + 1
    grind = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
             f"--callgrind-out-file={out}/callgrind.out.%p"]
    try:
        redis = procs.spawn(
            (grind if args.count == "redis" else []) +
            ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", out], os.path.join(out, "redis.log"))
        for _ in range(300):
            if subprocess.run(["redis-cli", "-p", str(redis_port), "ping"],
                              capture_output=True).returncode == 0:
                break
            time.sleep(0.2)
        uri = f"redis://127.0.0.1:{redis_port}?dbid=0"
        conf = os.path.join(out, "zaqar.conf")
        with open(conf, "w") as f:
            f.write(f"[drivers]\ntransport = wsgi\nmessage_store = redis\n"
                    f"management_store = redis\n[drivers:message_store:redis]\nuri = {uri}\n"
                    f"{redis_options}"
                    f"[drivers:management_store:redis]\nuri = {uri}\n"
                    f"[drivers:transport:wsgi]\nbind = 127.0.0.1\nport = {port}\n")
        zaqar = procs.spawn((grind if args.count == "server" else []) +
                            [server, "--config-file", conf], os.path.join(out, "server.log"),
                            env=dict(os.environ, RUST_LOG="warn"))
        counted = redis if args.count == "redis" else zaqar
        c = None
        for _ in range(300):
            try:
                c = Client(port)
                c.call("GET", "/v2/ping")
                break
            except (OSError, http.client.HTTPException):
                c = None
                time.sleep(0.2)
        if c is None:
            raise SystemExit(f"{name}: the server did not answer")
        n = args.requests
        for q in ["post1", "post10", "stats", "claim", "empty"]:
            c.call("PUT", f"/v2/queues/{q}", {})
        for i in range(100):
            c.post("stats", 10, i)
        for i in range(n + 1):
            c.post("claim", 10, i)
        # Every script is loaded, every queue's keys exist.
        c.post("post1", 1)
        c.post("post10", 10)
        c.call("GET", "/v2/queues/stats/stats")
        c.call("GET", "/v2/queues/stats/messages?echo=true")
        c.call("POST", "/v2/queues/empty/claims?limit=10", {"ttl": 300, "grace": 60},
               want=(204,))
        seen = set()
        results = {}
        for load in LOADS:
            callgrind(counted.pid, "--zero")
            instructions(out, counted.pid, seen)
            callgrind(counted.pid, "--instr=on")
            for i in range(n):
                if load == "post1":
                    c.post("post1", 1, i)
                elif load == "post10":
                    c.post("post10", 10, i)
                elif load == "stats":
                    c.call("GET", "/v2/queues/stats/stats")
                elif load == "list":
                    c.call("GET", "/v2/queues/stats/messages?echo=true")
                elif load == "claim+delete":
                    claimed = c.call("POST", "/v2/queues/claim/claims?limit=10",
                                     {"ttl": 300, "grace": 60}, want=(201,))
                    msgs = claimed["messages"]
                    if len(msgs) != 10:
                        raise SystemExit(f"claim {i} took {len(msgs)} messages")
                    cid = msgs[0]["href"].split("claim_id=")[1]
                    ids = ",".join(m["id"] for m in msgs)
                    c.call("DELETE", f"/v2/queues/claim/messages?ids={ids}&claim_id={cid}")
                else:
                    c.call("POST", "/v2/queues/empty/claims?limit=10",
                           {"ttl": 300, "grace": 60}, want=(204,))
            callgrind(counted.pid, "--instr=off")
            callgrind(counted.pid, "--dump")
            results[load] = instructions(out, counted.pid, seen) / n
        return results
    finally:
        procs.stop_all()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("servers", nargs="+", metavar="NAME=SERVER-BINARY")
    ap.add_argument("--count", choices=["redis", "server"], default="redis")
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--port-base", type=int, default=27400)
    ap.add_argument("--out", default=os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "target", "bench-instructions"))
    args = ap.parse_args()
    table = {}
    for spec in args.servers:
        name, _, server = spec.partition("=")
        server, *options = server.split(",")
        table[name] = measure(name, server, args, "".join(o + "\n" for o in options))
    names = list(table)
    print(f"{args.count} instructions per request ({args.requests} requests per load)")
    print(f"{'load':<14}" + "".join(f"{n:>14}" for n in names)
          + ("".join(f"{n + '/' + names[0]:>16}" for n in names[1:])))
    for load in LOADS:
        row = [table[n][load] for n in names]
        print(f"{load:<14}" + "".join(f"{v:14,.0f}" for v in row)
              + "".join(f"{v / row[0]:16.2f}" for v in row[1:]))


if __name__ == "__main__":
    main()
