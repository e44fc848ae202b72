"""The two-server consumption check shared by the Redis and MongoDB
concurrency suites: producers post while 16 consumers claim through two
servers on one store and delete what they claimed; every claim outlives the
run, so a message returned by two claims was held by two live claims at
once."""

import collections
import threading
import time

from zaqar_testlib import Api

CONSUMERS = 16
PRODUCERS = 2
BATCHES = 20      # per producer
BATCH = 10        # messages per post
TOTAL = PRODUCERS * BATCHES * BATCH


def each_message_consumed_once(servers, project):
    """Runs the load through `servers` (two, sharing one store) and asserts
    that every posted message was claimed by one claim and deleted once."""
    queue = "busy"
    Api(servers[0].url, project).create_queue(queue)

    posted = []
    claimed_by = collections.defaultdict(list)   # message id -> [claim ids]
    deleted = []
    errors = []
    lock = threading.Lock()
    producers_done = threading.Event()

    def producer(n):
        api = Api(servers[n % 2].url, project)
        try:
            for b in range(BATCHES):
                ids = api.post_messages(queue, [{"body": {"p": n, "b": b, "i": i}, "ttl": 600}
                                                for i in range(BATCH)])
                with lock:
                    posted.extend(ids)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(f"producer {n}: {exc!r}")

    def consumer(n):
        api = Api(servers[n % 2].url, project)
        deadline = time.monotonic() + 120
        try:
            while time.monotonic() < deadline:
                resp = api.claim(queue, ttl=300, grace=60, limit=5)
                if resp.status_code == 204:
                    with lock:
                        if producers_done.is_set() and len(deleted) >= TOTAL:
                            return
                    time.sleep(0.02)
                    continue
                assert resp.status_code == 201, resp.text
                claim_id = resp.headers["Location"].rsplit("/", 1)[1].split("?")[0]
                ids = [m["id"] for m in resp.json()["messages"]]
                with lock:
                    for mid in ids:
                        claimed_by[mid].append(claim_id)
                for mid in ids:
                    d = api.delete(f"/v2/queues/{queue}/messages/{mid}",
                                   params={"claim_id": claim_id})
                    assert d.status_code == 204, d.text
                with lock:
                    deleted.extend(ids)
            errors.append(f"consumer {n}: timed out")
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(f"consumer {n}: {exc!r}")

    producers = [threading.Thread(target=producer, args=(n,)) for n in range(PRODUCERS)]
    consumers = [threading.Thread(target=consumer, args=(n,)) for n in range(CONSUMERS)]
    for t in consumers + producers:
        t.start()
    for t in producers:
        t.join()
    producers_done.set()
    for t in consumers:
        t.join()

    assert not errors, errors
    assert len(posted) == TOTAL
    twice = {m: c for m, c in claimed_by.items() if len(c) > 1}
    assert not twice, f"messages returned by two live claims: {twice}"
    assert sorted(claimed_by) == sorted(posted), "every message consumed"
    assert sorted(deleted) == sorted(posted), "every message deleted exactly once"
    for srv in servers:
        stats = Api(srv.url, project).get(f"/v2/queues/{queue}/stats").json()
        assert stats["messages"]["total"] == 0, stats
