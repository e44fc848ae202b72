"""Many consumers, two API servers, one MongoDB: claims never overlap.

Runs only with the MongoDB backend (``ZAQAR_TEST_BACKEND=mongodb`` and
``ZAQAR_TEST_MONGODB_URI``, as run_tests.sh sets them for the third
functional run).  Two zaqar-server processes share one database, so they
serve the same queues; producers post while 16 consumers claim, through
both servers, and delete what they claimed.  Every claim outlives the
test, so a message returned by two claims would have been held by two live
claims at once.  A reader pages through the queue with markers while the
producers post through both servers: it must see every message.
"""

import os
import threading
import time
import uuid

import pytest

from two_servers import each_message_consumed_once
from zaqar_testlib import Api

pytestmark = pytest.mark.skipif(
    os.environ.get("ZAQAR_TEST_BACKEND") != "mongodb",
    reason="needs ZAQAR_TEST_BACKEND=mongodb and ZAQAR_TEST_MONGODB_URI")

CONSUMERS = 16
PRODUCERS = 2
BATCHES = 20      # per producer
BATCH = 10        # messages per post
TOTAL = PRODUCERS * BATCHES * BATCH


def shared_mongodb_options():
    # A claim answered 503 may still have been made, and would then hold its
    # messages past the test: give each operation 30 s (socketTimeoutMS)
    # rather than 10, for test machines that are busy with other work.
    base = os.environ["ZAQAR_TEST_MONGODB_URI"]
    sep = "&" if "?" in base else "?"
    return {"drivers:message_store:mongodb": {
        "uri": f"{base}{sep}socketTimeoutMS=30000",
        "database": f"zqc_{uuid.uuid4().hex[:12]}"}}


def test_consumers_on_two_servers_take_each_message_once(server_factory, project):
    options = shared_mongodb_options()
    each_message_consumed_once([server_factory(options), server_factory(options)], project)

def test_marker_paging_sees_every_message_posted_through_two_servers(server_factory, project):
    options = shared_mongodb_options()
    servers = [server_factory(options), server_factory(options)]
    queue = "paged"
    posted = []
    errors = []
    lock = threading.Lock()
    done = threading.Event()

    def producer(n):
        api = Api(servers[n % 2].url, project)
        try:
            for b in range(BATCHES):
                ids = api.post_messages(queue, [{"body": {"p": n, "b": b}, "ttl": 600}
                                                for _ in range(3)])
                with lock:
                    posted.extend(ids)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(f"producer {n}: {exc!r}")

    producers = [threading.Thread(target=producer, args=(n,)) for n in range(4)]
    for t in producers:
        t.start()
    reader = Api(servers[0].url, project)
    seen = []
    marker = None
    while True:
        params = {"limit": 7, "echo": "true"}
        if marker:
            params["marker"] = marker
        resp = reader.get(f"/v2/queues/{queue}/messages", params=params)
        page = resp.json()["messages"] if resp.status_code == 200 else []
        if page:
            seen.extend(m["id"] for m in page)
            nxt = [link["href"] for link in resp.json()["links"] if link["rel"] == "next"]
            marker = nxt[0].split("marker=")[1].split("&")[0]
            continue
        if done.is_set():
            break
        if not any(t.is_alive() for t in producers):
            done.set()  # one more pass after the last post landed
        else:
            time.sleep(0.05)
    assert not errors, errors
    assert len(seen) == len(set(seen)), "a message was listed twice"
    assert sorted(seen) == sorted(posted), (
        f"{len(set(posted) - set(seen))} of {len(posted)} messages paged past")
