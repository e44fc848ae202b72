"""Pools, flavors and the catalogue against the real server.

A pooled server (``[DEFAULT] pooling = true``, admin mode) over pools of
different kinds: SQLite files and Redis servers this module starts on ports
of their own (real ``redis-server`` processes, stopped and restarted to show
a pool going down). What is checked:

- the pool and flavor API as the reference answers it (statuses, texts,
  ``Location``), without its bugs;
- placement follows the pools' weights and flavors, and each queue's
  messages live only on its pool;
- a pool that goes down answers 503 for its own queues only, and recovers
  without a restart;
- data is never stranded: a pool holding queues cannot be deleted, a queue
  holding messages cannot change flavor, a queue and its dead-letter queue
  share a pool.
"""

import json
import os
import shutil
import sqlite3
import subprocess
import time
import uuid

import pytest
import requests

from zaqar_testlib import Api, assert_error, free_port

pytestmark = pytest.mark.timeout(300)

ADMIN = {"X-Roles": "admin"}


class RedisServer:
    """A throw-away redis-server on a port of its own."""

    def __init__(self, workdir):
        self.port = free_port()
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc = None

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}"

    def start(self):
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.dir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                out = subprocess.run(["redis-cli", "-p", str(self.port), "ping"],
                                     capture_output=True, text=True, timeout=5).stdout
                if "PONG" in out:
                    return self
            except subprocess.TimeoutExpired:
                pass
            time.sleep(0.1)
        raise RuntimeError("redis-server did not start")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture
def redis_servers(tmp_path):
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is needed (run_tests.sh installs it)")
    started = []

    def start():
        r = RedisServer(tmp_path / f"redis{len(started)}").start()
        started.append(r)
        return r

    yield start
    for r in started:
        r.stop()


@pytest.fixture
def pooled(server_factory, tmp_path):
    srv = server_factory({"DEFAULT": {"admin_mode": "true", "pooling": "true"},
                          "drivers": {"message_store": "sqlite", "management_store": "sqlite"}},
                         start=False)
    # The catalogue is read back from its SQLite file here, whatever backend
    # the suite runs on (test_mongodb_store.py has pools behind MongoDB).
    srv.options["drivers"].update(message_store="sqlite", management_store="sqlite")
    srv.start()
    srv.management_db = srv.db_path
    return srv


def admin(srv, project=None):
    api = Api(srv.url, project or "p-" + uuid.uuid4().hex)
    base = api.default_headers

    def headers():
        h = base()
        h.update(ADMIN)
        return h

    api.default_headers = headers
    return api


def catalogue(srv):
    with sqlite3.connect(srv.management_db) as db:
        return {(p, q): pool for p, q, pool in db.execute("SELECT project, queue, pool FROM catalogue")}


def sqlite_pool_ids(path):
    with sqlite3.connect(path) as db:
        return {row[0] for row in db.execute("SELECT id FROM messages")}


def test_pool_api_as_the_reference_answers(pooled, tmp_path, redis_servers):
    api = admin(pooled)
    r = redis_servers()
    uri = f"sqlite://{tmp_path / 'a.sqlite'}"
    # the routes exist only for admins
    assert api.get("/v2/pools", headers={"X-Roles": "member"}).status_code == 403
    assert_error(api.put("/v2/pools/a", json={"weight": 10}), 400, "Invalid request body")
    assert_error(api.put("/v2/pools/a", json={"uri": uri}), 400, "Invalid request body")
    assert_error(api.put("/v2/pools/a", json={"uri": uri, "weight": -1}), 400, "Invalid request body")
    assert_error(api.put("/v2/pools/a", json={"uri": uri, "weight": 1, "x": 1}), 400, "Invalid request body")
    assert_error(api.put("/v2/pools/a", json={"uri": "redis://127.0.0.1:1", "weight": 1}), 400,
                 "Invalid request body", "cannot connect to redis://127.0.0.1:1")
    resp = api.put("/v2/pools/a", json={"uri": uri, "weight": 10, "options": {"k": "v"}})
    assert resp.status_code == 201 and resp.headers["Location"].endswith("/v2/pools/a")
    assert api.put("/v2/pools/b", json={"uri": r.url, "weight": 5}).status_code == 201
    # another pool's URI: 409, on PUT and on PATCH (a 500 in the reference)
    assert_error(api.put("/v2/pools/c", json={"uri": uri, "weight": 1}), 409, "Resource conflict")
    assert_error(api.patch("/v2/pools/b", json={"uri": uri}), 409, "Resource conflict")
    got = api.get("/v2/pools/a").json()
    assert got == {"name": "a", "flavor": None, "uri": uri, "weight": 10, "href": "/v2/pools/a"}
    assert api.get("/v2/pools/a", params={"detailed": "true"}).json()["options"] == {"k": "v"}
    assert_error(api.get("/v2/pools/nope"), 404, "Not found", "Pool nope does not exist")
    listing = api.get("/v2/pools", params={"limit": 1}).json()
    assert [p["name"] for p in listing["pools"]] == ["a"]
    assert listing["links"][0]["href"] == "/v2/pools?limit=1&marker=a"
    assert [p["name"] for p in api.get("/v2/pools?marker=a").json()["pools"]] == ["b"]
    assert_error(api.get("/v2/pools", params={"limit": 21}), 400, "Invalid API request")
    # a PUT that replaces a flavor's only pool with another kind of store is
    # refused, as the reference compares it with the pool it replaces
    k_uri = f"sqlite://{tmp_path / 'k.sqlite'}"
    assert api.put("/v2/pools/k", json={"uri": k_uri, "weight": 1, "flavor": "kind"}).status_code == 201
    assert_error(api.put("/v2/pools/k", json={"uri": redis_servers().url, "weight": 1, "flavor": "kind"}),
                 400, "Unable to create pool")
    assert api.put("/v2/pools/k", json={"uri": k_uri, "weight": 2, "flavor": "kind"}).status_code == 201
    assert api.patch("/v2/pools/k", json={"flavor": ""}).status_code == 200
    assert api.delete("/v2/pools/k").status_code == 204
    # PATCH: one known field at least, unknown ones refused (the reference takes them)
    assert_error(api.patch("/v2/pools/b", json={}), 400, "Invalid request body",
                 "One of `uri`, `weight`, `flavor`, or `options` needs to be specified")
    assert_error(api.patch("/v2/pools/b", json={"weight": 2, "bogus": 1}), 400, "Invalid request body")
    patched = api.patch("/v2/pools/b", json={"weight": 7})
    assert patched.status_code == 200 and patched.json()["weight"] == 7
    assert_error(api.patch("/v2/pools/nope", json={"weight": 7}), 404, "Not found")
    assert api.delete("/v2/pools/b").status_code == 204
    assert api.delete("/v2/pools/b").status_code == 204  # missing: still 204
    assert api.get("/v2/pools/b").status_code == 404


def test_flavor_api_as_the_reference_answers(pooled, tmp_path, redis_servers):
    api = admin(pooled)
    r = redis_servers()
    sqlite_uri = f"sqlite://{tmp_path / 'f.sqlite'}"
    assert api.put("/v2/pools/red", json={"uri": r.url, "weight": 10, "flavor": "tasty"}).status_code == 201
    assert api.put("/v2/pools/lite", json={"uri": sqlite_uri, "weight": 10}).status_code == 201
    resp = api.put("/v2/flavors/tasty", json={"pool_list": []})
    assert_error(resp, 400, "Unable to create", "Bad Request")
    assert resp.headers["Location"].endswith("/v2/flavors/tasty")
    assert_error(api.put("/v2/flavors/tasty", json={"pool_list": ["nope"]}), 400, "Unable to create",
                 "Flavor tasty could not be created, error:Pool nope does not exist")
    # the pools of a flavor are of one kind
    assert_error(api.put("/v2/flavors/tasty", json={"pool_list": ["red", "lite"]}), 400, "Unable to create")
    resp = api.put("/v2/flavors/tasty", json={"pool_list": ["red"], "capabilities": {}})
    assert resp.status_code == 201 and resp.headers["Location"].endswith("/v2/flavors/tasty")
    got = api.get("/v2/flavors/tasty").json()
    assert got == {"name": "tasty", "pool_list": ["red"], "capabilities": ["FIFO", "CLAIMS", "AOD",
                   "HIGH_THROUGHPUT"], "href": "/v2/flavors/tasty"}
    # flavors belong to a project, and flavor reads need no admin role
    other = Api(pooled.url, "p-" + uuid.uuid4().hex)
    assert other.get("/v2/flavors").json()["flavors"] == []
    assert other.get("/v2/flavors/tasty").status_code == 404
    assert api.get("/v2/flavors", headers={"X-Roles": "member"}).status_code == 200
    assert api.put("/v2/flavors/x", json={"pool_list": ["red"]}, headers={"X-Roles": "member"}).status_code == 403
    listing = api.get("/v2/flavors", params={"detailed": "true"}).json()
    assert listing["flavors"] == [{"name": "tasty", "pool_list": ["red"],
                                   "capabilities": ["FIFO", "CLAIMS", "AOD", "HIGH_THROUGHPUT"],
                                   "href": "/v2/flavors/tasty"}]
    # PATCH: pool_list required; unknown pool has the title "updatefail"
    assert_error(api.patch("/v2/flavors/tasty", json={}), 400, "Invalid request body",
                 "`pool_list` needs to be specified")
    assert_error(api.patch("/v2/flavors/tasty", json={"pool_list": ["nope"]}), 400, "updatefail")
    assert_error(api.patch("/v2/flavors/none", json={"pool_list": ["red"]}), 404, "Not found")
    # the last pool of a flavor cannot be deleted
    assert_error(api.delete("/v2/pools/red"), 403, "Unable to delete",
                 "This pool is used by flavors tasty; It cannot be deleted.")
    # a re-PUT replaces the pool list (the reference only adds)
    r2 = redis_servers()
    assert api.put("/v2/pools/red2", json={"uri": r2.url, "weight": 1}).status_code == 201
    assert api.put("/v2/flavors/tasty", json={"pool_list": ["red2"]}).status_code == 201
    assert api.get("/v2/flavors/tasty").json()["pool_list"] == ["red2"]
    assert api.get("/v2/pools/red").json()["flavor"] is None
    # deleting the flavor frees its pools
    assert api.delete("/v2/flavors/tasty").status_code == 204
    assert api.get("/v2/pools/red2").json()["flavor"] is None
    assert api.get("/v2/flavors/tasty").status_code == 404


def test_placement_follows_weights_and_flavors(pooled, tmp_path, redis_servers):
    api = admin(pooled)
    r = redis_servers()
    light, heavy = tmp_path / "light.sqlite", tmp_path / "heavy.sqlite"
    assert api.put("/v2/pools/light", json={"uri": f"sqlite://{light}", "weight": 1}).status_code == 201
    assert api.put("/v2/pools/heavy", json={"uri": f"sqlite://{heavy}", "weight": 3}).status_code == 201
    assert api.put("/v2/pools/zero", json={"uri": r.url, "weight": 0}).status_code == 201
    names = [f"q{i}" for i in range(200)]
    for q in names:
        assert api.put(f"/v2/queues/{q}").status_code == 201
    placed = {q: pool for (p, q), pool in catalogue(pooled).items() if p == api.project_id}
    counts = {pool: list(placed.values()).count(pool) for pool in ("light", "heavy", "zero")}
    assert counts["zero"] == 0, counts
    # 3:1 expected (150:50); binomial sd ~6, a wide margin
    assert 120 <= counts["heavy"] <= 180, counts
    # each queue's messages live only on its pool
    for q in names[:20]:
        assert api.post(f"/v2/queues/{q}/messages", json={"messages": [{"body": q}]}).status_code == 201
    on_light, on_heavy = sqlite_pool_ids(light), sqlite_pool_ids(heavy)
    assert not on_light & on_heavy
    for q in names[:20]:
        ids = {m["id"] for m in api.get(f"/v2/queues/{q}/messages", params={"echo": "true"}).json()["messages"]}
        assert len(ids) == 1
        assert ids <= (on_light if placed[q] == "light" else on_heavy), q
    # pools added later do not move existing queues
    assert api.put("/v2/pools/late", json={"uri": f"sqlite://{tmp_path / 'late.sqlite'}",
                                           "weight": 100}).status_code == 201
    assert {q: placed[q] for q in names} == {q: pool for (p, q), pool in catalogue(pooled).items()
                                             if p == api.project_id and q in placed}
    # a flavor's queues go to its pools only
    assert api.put("/v2/pools/red", json={"uri": redis_servers().url, "weight": 1,
                                          "flavor": "fast"}).status_code == 201
    assert api.put("/v2/flavors/fast", json={"pool_list": ["red"]}).status_code == 201
    for i in range(10):
        assert api.put(f"/v2/queues/f{i}", json={"_flavor": "fast"}).status_code == 201
    assert {pool for (p, q), pool in catalogue(pooled).items() if q.startswith("f")} == {"red"}
    assert_error(api.put("/v2/queues/nf", json={"_flavor": "nope"}), 400, "Invalid API request")
    # the health document reports each pool
    health = api.get("/v2/health").json()
    assert health["catalog_reachable"] is True
    assert {"light", "heavy", "zero", "late", "red"} <= set(health)
    assert all(health[p]["storage_reachable"] for p in ("light", "heavy", "red"))


def test_a_pool_down_fails_only_its_queues_and_recovers(pooled, tmp_path, redis_servers):
    api = admin(pooled)
    r = redis_servers()
    assert api.put("/v2/pools/lite", json={"uri": f"sqlite://{tmp_path / 'l.sqlite'}", "weight": 1}).status_code == 201
    assert api.put("/v2/pools/red", json={"uri": r.url, "weight": 1, "flavor": "red"}).status_code == 201
    assert api.put("/v2/flavors/red", json={"pool_list": ["red"]}).status_code == 201
    assert api.put("/v2/queues/onred", json={"_flavor": "red"}).status_code == 201
    assert api.put("/v2/queues/onlite").status_code == 201
    for q in ("onred", "onlite"):
        assert api.post(f"/v2/queues/{q}/messages", json={"messages": [{"body": 1, "ttl": 600}]}).status_code == 201
    r.stop()
    resp = api.post("/v2/queues/onred/messages", json={"messages": [{"body": 2}]}, allow_5xx=True)
    assert resp.status_code == 503, resp.text
    assert resp.json()["title"] == "Service temporarily unavailable"
    assert api.get("/v2/queues/onred/stats", allow_5xx=True).status_code == 503
    # the other pool's queues do not notice
    assert api.post("/v2/queues/onlite/messages", json={"messages": [{"body": 2}]}).status_code == 201
    assert api.get("/v2/queues/onlite/stats").json()["messages"]["total"] == 2
    assert api.get("/v2/queues").status_code == 200
    # back without a restart of zaqar-server, and nothing acknowledged was lost
    r.start()
    deadline = time.monotonic() + 30
    while (resp := api.get("/v2/queues/onred/stats", allow_5xx=True)).status_code == 503:
        assert time.monotonic() < deadline
        time.sleep(0.5)
    assert resp.json()["messages"]["total"] == 1


def test_data_is_never_stranded(pooled, tmp_path, redis_servers):
    api = admin(pooled)
    assert api.put("/v2/pools/a", json={"uri": f"sqlite://{tmp_path / 'a.sqlite'}", "weight": 1}).status_code == 201
    assert api.put("/v2/queues/q").status_code == 201
    assert api.post("/v2/queues/q/messages", json={"messages": [{"body": 1}]}).status_code == 201
    # a pool that holds queues cannot be deleted (the reference orphans them),
    # nor pointed at another store
    assert_error(api.delete("/v2/pools/a"), 403, "Unable to delete")
    assert_error(api.patch("/v2/pools/a", json={"uri": f"sqlite://{tmp_path / 'other.sqlite'}"}),
                 409, "Resource conflict")
    assert api.patch("/v2/pools/a", json={"weight": 5}).status_code == 200
    # a queue holding messages keeps its pool when its flavor changes
    assert api.put("/v2/pools/b", json={"uri": redis_servers().url, "weight": 1, "flavor": "gold"}).status_code == 201
    assert api.put("/v2/flavors/gold", json={"pool_list": ["b"]}).status_code == 201
    patch = [{"op": "add", "path": "/metadata/_flavor", "value": "gold"}]
    ct = {"Content-Type": "application/openstack-messaging-v2.0-json-patch"}
    assert_error(api.patch("/v2/queues/q", data=json.dumps(patch), headers=ct), 409, "Resource conflict")
    assert api.get("/v2/queues/q/stats").json()["messages"]["total"] == 1
    # emptied, it moves
    assert api.post("/v2/queues/q/purge", json={"resource_types": ["messages"]}).status_code == 204
    assert api.patch("/v2/queues/q", data=json.dumps(patch), headers=ct).status_code == 200
    assert catalogue(pooled)[(api.project_id, "q")] == "b"
    # a queue and its dead-letter queue share a pool, so dead letters arrive
    assert api.put("/v2/queues/src", json={"_max_claim_count": 1, "_dead_letter_queue": "dlq"}).status_code == 201
    cat = catalogue(pooled)
    assert cat[(api.project_id, "src")] == cat[(api.project_id, "dlq")]
    assert api.post("/v2/queues/src/messages", json={"messages": [{"body": "x"}]}).status_code == 201
    claim = api.post("/v2/queues/src/claims", json={"ttl": 60, "grace": 60})
    assert claim.status_code == 201
    assert api.delete(claim.headers["Location"]).status_code == 204
    assert api.post("/v2/queues/src/claims", json={"ttl": 60, "grace": 60}).status_code == 204
    dead = api.get("/v2/queues/dlq/messages", params={"echo": "true", "include_claimed": "true"}).json()
    assert [m["body"] for m in dead["messages"]] == ["x"]
    # once its queues are gone, the pool can go
    assert api.delete("/v2/queues/src").status_code == 204
    assert api.delete("/v2/queues/dlq").status_code == 204
    assert api.delete("/v2/pools/a").status_code == 204


def test_without_pools_queues_cannot_be_created_unless_a_virtual_pool(server_factory):
    srv = server_factory({"DEFAULT": {"admin_mode": "true", "pooling": "true"}})
    api = admin(srv)
    assert_error(api.put("/v2/queues/q", allow_5xx=True), 503, "Service temporarily unavailable")
    assert api.get("/v2/queues/q").status_code == 200  # defaults, as the reference
    assert api.post("/v2/queues/q/claims", json={}).status_code == 204
    srv = server_factory({"DEFAULT": {"admin_mode": "true", "pooling": "true"},
                          "pooling:catalog": {"enable_virtual_pool": "true"}})
    api = admin(srv)
    assert api.put("/v2/queues/q").status_code == 201
    assert api.post("/v2/queues/q/messages", json={"messages": [{"body": 1}]}).status_code == 201
    assert api.get("/v2/queues/q/stats").json()["messages"]["total"] == 1


def test_notifications_reach_subscribers_of_queues_on_every_pool(server_factory, tmp_path,
                                                                  redis_servers):
    """The notifier runs once, in front of the pooled driver, and its workers
    read each queue's subscriptions from the queue's own pool: every
    subscriber of queues on a SQLite pool and on a Redis pool gets each
    message once."""
    from receivers import Receiver

    srv = server_factory({"DEFAULT": {"admin_mode": "true", "pooling": "true"},
                          "drivers": {"message_store": "sqlite", "management_store": "sqlite"},
                          "notification": {"allowed_subscriber_networks": "127.0.0.0/8"}})
    api = admin(srv)
    assert api.put("/v2/pools/lite", json={"uri": f"sqlite://{tmp_path / 'lite.sqlite'}",
                                           "weight": 1, "flavor": "lite"}).status_code == 201
    assert api.put("/v2/pools/red", json={"uri": redis_servers().url, "weight": 1,
                                          "flavor": "red"}).status_code == 201
    receiver = Receiver()
    try:
        for flavor in ("lite", "red"):
            assert api.put(f"/v2/flavors/{flavor}", json={"pool_list": [flavor]}).status_code == 201
            q = f"q-{flavor}"
            assert api.put(f"/v2/queues/{q}", json={"_flavor": flavor}).status_code == 201
            for hook in ("a", "b"):
                resp = api.post(f"/v2/queues/{q}/subscriptions",
                                json={"subscriber": f"{receiver.url}/{flavor}/{hook}", "ttl": 600})
                assert resp.status_code == 201, resp.text
            assert api.post(f"/v2/queues/{q}/messages",
                            json={"messages": [{"body": flavor}]}).status_code == 201
        got = receiver.wait_for(4)
        assert sorted(r["path"] for r in got) == ["/lite/a", "/lite/b", "/red/a", "/red/b"]
        for r in got:
            body = json.loads(r["body"])
            flavor = r["path"].split("/")[1]
            assert body["queue_name"] == f"q-{flavor}" and body["body"] == flavor, body
        time.sleep(0.5)
        assert len(receiver.requests) == 4, "each subscriber gets each message once"
    finally:
        receiver.close()
