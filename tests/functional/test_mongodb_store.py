"""The MongoDB store through HTTP: what only it does.

Runs only with the MongoDB backend (``ZAQAR_TEST_BACKEND=mongodb``).

- ``GET /v2/health`` reports ``message_volume`` (free, claimed, total), as
  the reference's MongoDB driver does.
- ``management_store = mongodb`` with another message store keeps queue
  records in MongoDB: two servers with SQLite files of their own and one
  management database list the same queues.
"""

import os
import uuid

import pytest

from zaqar_testlib import Api

pytestmark = pytest.mark.skipif(
    os.environ.get("ZAQAR_TEST_BACKEND") != "mongodb",
    reason="needs ZAQAR_TEST_BACKEND=mongodb and ZAQAR_TEST_MONGODB_URI")


def test_health_reports_message_volume(server_factory, project):
    srv = server_factory({"DEFAULT": {"admin_mode": "true"}})
    api = Api(srv.url, project)
    api.post_messages("vol", [{"body": i, "ttl": 300} for i in range(5)])
    claim = api.claim("vol", limit=2)
    assert claim.status_code == 201
    health = api.get("/v2/health", headers={"X-Roles": "admin"})
    assert health.status_code == 200, health.text
    doc = health.json()
    assert doc["storage_reachable"] is True
    assert all(op["succeeded"] for op in doc["operation_status"].values()), doc
    # The probe's own messages are gone again; ours remain.
    assert doc["message_volume"] == {"free": 3, "claimed": 2, "total": 5}


def test_management_store_on_mongodb_beside_another_message_store(server_factory, project):
    management = {"uri": os.environ["ZAQAR_TEST_MONGODB_URI"],
                  "database": f"zqm_{uuid.uuid4().hex[:12]}"}
    options = {"drivers": {"message_store": "sqlite", "management_store": "mongodb"},
               "drivers:management_store:mongodb": management}
    servers = []
    for _ in range(2):
        srv = server_factory(options, start=False)
        # The test library points message_store at MongoDB for this backend:
        # back to SQLite (each server has a file of its own).
        srv.options["drivers"]["message_store"] = "sqlite"
        servers.append(srv.start())
    first, second = servers
    Api(first.url, project).create_queue("shared-record", {"owner": "first"})
    listed = Api(second.url, project).get("/v2/queues", params={"detailed": "true"}).json()
    assert [(q["name"], q["metadata"]["owner"]) for q in listed["queues"]] == [
        ("shared-record", "first")]
    # Messages stay in each server's own SQLite file.
    Api(first.url, project).post_messages("shared-record", [{"body": 1}])
    mine = Api(first.url, project).list_messages("shared-record")
    theirs = Api(second.url, project).list_messages("shared-record")
    assert (len(mine), len(theirs)) == (1, 0)


def test_pools_of_three_kinds_behind_a_mongodb_catalogue(server_factory, project, tmp_path):
    """``pooling = true`` with the catalogue on MongoDB (the layout most
    reference deployments run) and one pool of each kind: SQLite, a real
    redis-server and MongoDB. A second server on the same management
    database finds every queue on the pool the first one placed it on."""
    from test_pooling import RedisServer

    base = os.environ["ZAQAR_TEST_MONGODB_URI"]
    management = {"uri": base, "database": f"zqm_{uuid.uuid4().hex[:12]}"}
    options = {"DEFAULT": {"admin_mode": "true", "pooling": "true"},
               "drivers": {"message_store": "sqlite", "management_store": "mongodb"},
               "drivers:management_store:mongodb": management}
    redis = RedisServer(tmp_path / "redis").start()
    try:
        servers = []
        for _ in range(2):
            srv = server_factory(options, start=False)
            srv.options["drivers"]["message_store"] = "sqlite"
            servers.append(srv.start())
        first, second = servers
        admin = {"X-Roles": "admin"}
        api = Api(first.url, project)
        pools = {
            "lite": {"uri": f"sqlite://{tmp_path / 'lite.sqlite'}"},
            "red": {"uri": redis.url},
            "mongo": {"uri": base, "options": {"database": f"zqp_{uuid.uuid4().hex[:12]}"}},
        }
        for name, body in pools.items():
            r = api.put(f"/v2/pools/{name}", json={**body, "weight": 1, "flavor": name},
                        headers=admin)
            assert r.status_code == 201, r.text
            r = api.put(f"/v2/flavors/{name}", json={"pool_list": [name]}, headers=admin)
            assert r.status_code == 201, r.text
        listed = api.get("/v2/pools", params={"detailed": "true"}, headers=admin).json()
        assert {p["name"]: p["uri"] for p in listed["pools"]} == {
            n: b["uri"] for n, b in pools.items()}
        for name in pools:
            assert api.put(f"/v2/queues/q-{name}", json={"_flavor": name}).status_code == 201
            api.post_messages(f"q-{name}", [{"body": {"on": name, "i": i}} for i in range(3)])
        other = Api(second.url, project)
        for name in pools:
            q = f"q-{name}"
            # the second server reads the catalogue and reaches the same pool
            bodies = sorted(m["body"]["i"] for m in other.list_messages(q)
                            if m["body"]["on"] == name)
            assert bodies == [0, 1, 2], (name, bodies)
            claim = other.claim(q, limit=3)
            assert claim.status_code == 201, claim.text
            for m in claim.json()["messages"]:
                assert other.delete(m["href"]).status_code == 204
            stats = api.get(f"/v2/queues/{q}/stats").json()["messages"]
            assert stats["total"] == 0, (name, stats)
        # a pool holding queues cannot be deleted; its health is reported
        assert api.delete("/v2/pools/mongo", headers=admin).status_code == 403
        health = api.get("/v2/health", headers=admin).json()
        assert health["catalog_reachable"] is True
        assert all(health[n]["storage_reachable"] for n in pools), health
    finally:
        redis.stop()
