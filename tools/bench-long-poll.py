#!/usr/bin/env python3
"""Long polling against plain polling: 16 consumers claim from one queue
while one producer posts a message every 50 ms; reports the post-to-claim
latency (p50/p99) and the requests made per consumed message.

    tools/bench-long-poll.py http://127.0.0.1:8888 [messages] [poll_interval_s]

Plain polling: a consumer that finds nothing sleeps ``poll_interval_s`` (1 s
by default, python-zaqarclient users' usual loop) and claims again. Long
polling: the consumer claims with ``wait=20`` and never sleeps.
"""

import statistics
import sys
import threading
import time
import uuid

import requests

CONSUMERS = 16


def run(base, messages, mode, interval):
    project = "bench-" + uuid.uuid4().hex[:8]
    queue = "lp-" + mode
    headers = {"Client-ID": str(uuid.uuid4()), "X-Project-ID": project}
    requests.put(f"{base}/v2/queues/{queue}", headers=headers, json={}).raise_for_status()
    latencies, lock = [], threading.Lock()
    requests_made = [0]
    stop = threading.Event()

    def consumer():
        s = requests.Session()
        h = {"Client-ID": str(uuid.uuid4()), "X-Project-ID": project}
        params = {"limit": 1}
        if mode == "long":
            params["wait"] = 20
        while not stop.is_set():
            r = s.post(f"{base}/v2/queues/{queue}/claims", headers=h, params=params,
                       json={"ttl": 60, "grace": 60})
            with lock:
                requests_made[0] += 1
            if r.status_code == 201:
                now = time.time()
                for m in r.json()["messages"]:
                    with lock:
                        latencies.append(now - m["body"]["t"])
                    s.delete(f"{base}{m['href']}", headers=h)
            elif mode == "plain":
                stop.wait(interval)

    threads = [threading.Thread(target=consumer, daemon=True) for _ in range(CONSUMERS)]
    for t in threads:
        t.start()
    time.sleep(1)
    p = requests.Session()
    for _ in range(messages):
        p.post(f"{base}/v2/queues/{queue}/messages", headers=headers,
               json={"messages": [{"body": {"t": time.time()}}]}).raise_for_status()
        time.sleep(0.05)
    deadline = time.time() + 30
    while len(latencies) < messages and time.time() < deadline:
        time.sleep(0.1)
    stop.set()
    got = sorted(latencies)
    q = statistics.quantiles(got, n=100) if len(got) > 1 else got * 99
    print(f"{mode:5}: consumed {len(got)}/{messages}, post-to-claim p50 {q[49]*1000:.0f} ms, "
          f"p99 {q[98]*1000:.0f} ms, claim requests per message {requests_made[0] / max(len(got), 1):.1f}")


if __name__ == "__main__":
    base = sys.argv[1].rstrip("/")
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    interval = float(sys.argv[3]) if len(sys.argv) > 3 else 1.0
    run(base, n, "plain", interval)
    run(base, n, "long", interval)
