"""Durability: whatever the server acknowledged survives kill -9.

A message whose POST was answered 201 (and a claim answered 201, a delete
answered 204) must be there (or gone) after the process is killed with SIGKILL
and restarted on the same database.
"""

import threading
import time

import requests

from zaqar_testlib import Api


def fetch_ids(api, queue, ids):
    """The subset of ``ids`` the server has, fetched 20 at a time by id."""
    found = set()
    ids = list(ids)
    for i in range(0, len(ids), 20):
        resp = api.get(f"/v2/queues/{queue}/messages", params={"ids": ",".join(ids[i:i + 20])})
        if resp.status_code == 200:
            found.update(m["id"] for m in resp.json()["messages"])
        else:
            assert resp.status_code == 404, resp.text
    return found


def all_messages(api, queue):
    out = []
    href = f"/v2/queues/{queue}/messages?echo=true&include_claimed=true&limit=20"
    for _ in range(10000):
        body = api.get(href).json()
        if not body["messages"]:
            return out
        out += body["messages"]
        href = body["links"][0]["href"]
    raise AssertionError("listing did not end")


def test_acknowledged_messages_survive_kill_9(server_factory, project):
    srv = server_factory()
    api = Api(srv.url, project)
    acked = []
    for batch in range(40):
        ids = api.post_messages("durable", [{"body": {"b": batch, "i": i}, "ttl": 3600}
                                            for i in range(10)])
        acked += ids
    # also an acknowledged claim and an acknowledged delete
    claim = api.claim("durable", ttl=600, grace=60, limit=5)
    assert claim.status_code == 201
    claimed = [m["id"] for m in claim.json()["messages"]]
    assert claimed == acked[:5]
    assert api.delete(f"/v2/queues/durable/messages/{acked[-1]}").status_code == 204
    api.create_queue("meta-q", {"kept": True})

    srv.kill()
    srv.start()

    live = acked[:-1]
    assert fetch_ids(api, "durable", live) == set(live)
    assert fetch_ids(api, "durable", [acked[-1]]) == set()
    listed = all_messages(api, "durable")
    assert [m["id"] for m in listed] == live  # order survives too
    assert listed[0]["body"] == {"b": 0, "i": 0}
    # the claim survived: still there, its messages still held
    got = api.get(claim.headers["Location"])
    assert got.status_code == 200
    assert sorted(m["id"] for m in got.json()["messages"]) == sorted(claimed)
    nxt = api.claim("durable", limit=5)
    assert [m["id"] for m in nxt.json()["messages"]] == acked[5:10]
    assert api.get("/v2/queues/meta-q").json()["kept"] is True


def test_kill_9_during_concurrent_posts(server_factory, project):
    srv = server_factory()
    acked = []
    lock = threading.Lock()
    stop = threading.Event()
    errors = []

    def producer(n):
        api = Api(srv.url, project)
        i = 0
        while not stop.is_set():
            try:
                resp = api.session.post(
                    f"{srv.url}/v2/queues/crash/messages",
                    headers=api.default_headers(),
                    json={"messages": [{"body": [n, i, j]} for j in range(5)]},
                    timeout=10)
            except requests.RequestException:
                return  # the server is gone
            if resp.status_code == 201:
                with lock:
                    acked.extend(h.rsplit("/", 1)[1] for h in resp.json()["resources"])
            else:
                errors.append((resp.status_code, resp.text))
                return
            i += 1

    threads = [threading.Thread(target=producer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    time.sleep(2.0)
    srv.kill()
    stop.set()
    for t in threads:
        t.join(15)
    assert not errors, errors[:3]
    assert len(acked) > 0, "nothing was acknowledged before the kill"

    srv.start()
    api = Api(srv.url, project)
    found = fetch_ids(api, "crash", acked)
    missing = set(acked) - found
    assert not missing, f"{len(missing)} of {len(acked)} acknowledged messages lost"
    # and the store is usable after recovery
    assert api.post_messages("crash", [{"body": "after"}])


def test_sigterm_is_graceful(server_factory, project):
    srv = server_factory()
    api = Api(srv.url, project)
    acked = []
    results = []

    def producer():
        a = Api(srv.url, project)
        while True:
            try:
                resp = a.session.post(f"{srv.url}/v2/queues/term/messages",
                                      headers=a.default_headers(),
                                      json={"messages": [{"body": "x"}]}, timeout=10)
            except requests.RequestException:
                return
            results.append(resp.status_code)
            if resp.status_code != 201:
                return
            acked.append(resp.json()["resources"][0].rsplit("/", 1)[1])

    t = threading.Thread(target=producer)
    t.start()
    time.sleep(1.0)
    rc = srv.stop(timeout=15)
    t.join(15)
    assert rc == 0, f"exit code {rc} after SIGTERM\n{srv.log_text()}"
    assert all(s == 201 for s in results), [s for s in results if s != 201][:5]
    srv.start()
    assert fetch_ids(api, "term", acked) == set(acked)
