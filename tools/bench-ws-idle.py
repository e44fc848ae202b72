#!/usr/bin/env python3
"""Memory of idle WebSocket connections: starts zaqar-server (release build,
embedded SQLite store), opens N connections that each make one request
(``ping_node``) and then stay idle, and prints the server's RSS before, with
the N connections open, and per connection.

Usage: tools/bench-ws-idle.py [--connections 10000] [--server target/release/zaqar-server]
       [--port-base 23700]

The client side needs N open files: the script raises its own soft limit to
the hard limit, and the server raises its own.
"""

import argparse
import json
import os
import pathlib
import resource
import subprocess
import sys
import tempfile
import time
import uuid

import websocket  # websocket-client, from the test venv

ROOT = pathlib.Path(__file__).resolve().parents[1]


def rss_kib(pid):
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def connect(url, project):
    ws = websocket.create_connection(url, timeout=10)
    ws.send(json.dumps({"action": "ping_node",
                        "headers": {"Client-ID": str(uuid.uuid4()), "X-Project-ID": project}}))
    answer = json.loads(ws.recv())
    status = answer["headers"]["status"]
    if status != 204:
        raise RuntimeError(f"ping_node answered {status}")
    return ws


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--server", default=str(ROOT / "target" / "release" / "zaqar-server"))
    parser.add_argument("--port-base", type=int, default=23700)
    args = parser.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < args.connections + 100:
        sys.exit(f"the open-files hard limit ({hard}) is below {args.connections + 100}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    http_port, ws_port = args.port_base + 1, args.port_base + 2
    with tempfile.TemporaryDirectory() as tmp:
        conf = pathlib.Path(tmp) / "zaqar.conf"
        conf.write_text(f"""[DEFAULT]
log_file = {tmp}/server.log
[drivers]
transport = wsgi, websocket
message_store = sqlite
[drivers:message_store:sqlite]
uri = {tmp}/zaqar.db
[drivers:transport:wsgi]
bind = 127.0.0.1
port = {http_port}
[drivers:transport:websocket]
bind = 127.0.0.1
port = {ws_port}
max_connections = {args.connections + 100}
""")
        server = subprocess.Popen([args.server, "--config-file", str(conf)])
        conns = []
        try:
            url = f"ws://127.0.0.1:{ws_port}/"
            for _ in range(100):
                try:
                    connect(url, "bench").close()
                    break
                except OSError:
                    time.sleep(0.1)
            time.sleep(0.5)
            before = rss_kib(server.pid)
            started = time.monotonic()
            for _ in range(args.connections):
                conns.append(connect(url, "bench"))
            opened = time.monotonic() - started
            time.sleep(2)
            during = rss_kib(server.pid)
            per = (during - before) / args.connections
            print(f"{args.connections} idle WebSocket connections (opened in {opened:.1f} s): "
                  f"server RSS {before / 1024:.1f} MiB -> {during / 1024:.1f} MiB, "
                  f"{per:.1f} KiB per connection")
            fresh = connect(url, "bench")
            fresh.close()
        finally:
            for ws in conns:
                ws.close()
            server.terminate()
            server.wait(30)


if __name__ == "__main__":
    main()
