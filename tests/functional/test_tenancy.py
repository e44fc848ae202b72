"""Two projects with the same queue name never see each other's data.

In noauth mode X-Project-ID scopes everything.  The reference leaks messages
across projects (a message can be read or deleted by id through any queue of
any project) and confuses dotted names (project "p.sub" + queue "zq" vs project
"p" + queue "sub.zq"); ours must do neither.
"""

import uuid

import pytest

from zaqar_testlib import Api


@pytest.fixture
def pair(make_api):
    """Two projects (A, B) plus a second client of A."""
    tag = uuid.uuid4().hex[:8]
    a = make_api(project_id=f"tenant-a-{tag}")
    b = make_api(project_id=f"tenant-b-{tag}")
    return a, b


Q = "shared-name"


def test_queues_are_per_project(pair):
    a, b = pair
    a.create_queue(Q, {"owner": "a"})
    assert b.get("/v2/queues").json() == {"queues": [], "links": []}
    assert "owner" not in b.get(f"/v2/queues/{Q}").json()
    assert b.put(f"/v2/queues/{Q}", json={"owner": "b"}).status_code == 201
    assert a.get(f"/v2/queues/{Q}").json()["owner"] == "a"
    assert b.get(f"/v2/queues/{Q}").json()["owner"] == "b"
    assert a.get("/v2/queues", params={"with_count": "true"}).json()["count"] == 1
    # B deleting its queue leaves A's alone
    assert b.delete(f"/v2/queues/{Q}").status_code == 204
    assert a.get(f"/v2/queues/{Q}").json()["owner"] == "a"
    assert [q["name"] for q in a.get("/v2/queues").json()["queues"]] == [Q]


def test_metadata_patch_is_per_project(pair):
    a, b = pair
    a.create_queue(Q, {"k": "a"})
    resp = b.patch(f"/v2/queues/{Q}", data='[{"op": "replace", "path": "/metadata/k", "value": 1}]',
                   headers={"Content-Type": "application/openstack-messaging-v2.0-json-patch"})
    assert resp.status_code == 404
    assert a.get(f"/v2/queues/{Q}").json()["k"] == "a"


def test_messages_are_per_project(pair):
    a, b = pair
    ids = a.post_messages(Q, [{"body": "secret-a"}, {"body": "secret-a2"}])
    b.post_messages(Q, [{"body": "b's"}])

    # listing
    assert [m["body"] for m in b.list_messages(Q, echo="true")] == ["b's"]
    assert [m["body"] for m in b.list_messages(Q, echo="true", include_claimed="true")] == ["b's"]
    # by id, through the same queue name
    for mid in ids:
        resp = b.get(f"/v2/queues/{Q}/messages/{mid}")
        assert resp.status_code == 404, resp.text
    resp = b.get(f"/v2/queues/{Q}/messages", params={"ids": ",".join(ids)})
    assert resp.status_code == 404
    # by id, through another queue name of the other project
    b.create_queue("elsewhere")
    assert b.get(f"/v2/queues/elsewhere/messages/{ids[0]}").status_code == 404
    assert b.get("/v2/queues/elsewhere/messages", params={"ids": ids[0]}).status_code == 404
    # by id, through another queue of the same project
    a.create_queue("other-q")
    assert a.get(f"/v2/queues/other-q/messages/{ids[0]}").status_code == 404
    assert a.get("/v2/queues/other-q/messages", params={"ids": ids[0]}).status_code == 404

    # deletes through the other project (or another queue) do nothing
    assert b.delete(f"/v2/queues/{Q}/messages/{ids[0]}").status_code == 204
    assert b.delete(f"/v2/queues/{Q}/messages", params={"ids": ",".join(ids)}).status_code == 204
    assert b.delete(f"/v2/queues/elsewhere/messages/{ids[0]}").status_code == 204
    assert a.delete(f"/v2/queues/other-q/messages/{ids[1]}").status_code == 204
    assert a.delete("/v2/queues/other-q/messages", params={"ids": ids[0]}).status_code == 204
    assert [m["id"] for m in a.list_messages(Q, echo="true")] == ids

    # pop, purge and delete of B's queue leave A's messages alone
    popped = b.delete(f"/v2/queues/{Q}/messages", params={"pop": 20}).json()["messages"]
    assert [m["body"] for m in popped] == ["b's"]
    assert b.post(f"/v2/queues/{Q}/purge").status_code == 204
    assert b.delete(f"/v2/queues/{Q}").status_code == 204
    assert [m["id"] for m in a.list_messages(Q, echo="true")] == ids


def test_stats_are_per_project(pair):
    a, b = pair
    a.post_messages(Q, [{"body": i} for i in range(3)])
    b.post_messages(Q, [{"body": 1}])
    assert a.get(f"/v2/queues/{Q}/stats").json()["messages"]["total"] == 3
    assert b.get(f"/v2/queues/{Q}/stats").json()["messages"]["total"] == 1


def test_claims_are_per_project(pair):
    a, b = pair
    [mid] = a.post_messages(Q, [{"body": "a"}])
    b.create_queue(Q)
    # B cannot claim A's message
    assert b.claim(Q).status_code == 204
    resp = a.claim(Q)
    assert resp.status_code == 201
    loc = resp.headers["Location"]
    cid = loc.rsplit("/", 1)[1]
    # B cannot see, renew or release A's claim
    assert b.get(loc).status_code == 404
    assert b.patch(loc, json={"ttl": 500}).status_code == 404
    assert b.delete(loc).status_code == 204
    claim = a.get(loc)
    assert claim.status_code == 200
    assert claim.json()["ttl"] == 60
    assert a.list_messages(Q, echo="true") == []  # still claimed
    # nor delete A's claimed message with A's claim id
    b.delete(f"/v2/queues/{Q}/messages/{mid}", params={"claim_id": cid})
    assert a.get(f"/v2/queues/{Q}/messages/{mid}").status_code == 200


def test_claim_through_other_queue_of_same_project(pair):
    a, _ = pair
    a.post_messages(Q, [{"body": 1}])
    loc = a.claim(Q).headers["Location"]
    cid = loc.rsplit("/", 1)[1]
    a.create_queue("q2")
    assert a.get(f"/v2/queues/q2/claims/{cid}").status_code == 404
    assert a.patch(f"/v2/queues/q2/claims/{cid}", json={"ttl": 100}).status_code == 404
    assert a.delete(f"/v2/queues/q2/claims/{cid}").status_code == 204
    assert a.get(loc).status_code == 200


def test_dotted_names_do_not_collide(make_api):
    tag = uuid.uuid4().hex[:6]
    p = make_api(project_id=f"p{tag}")
    p_sub = make_api(project_id=f"p{tag}.sub")
    p.post_messages("sub.zq", [{"body": "from p / sub.zq"}])
    p_sub.post_messages("zq", [{"body": "from p.sub / zq"}])
    assert [q["name"] for q in p.get("/v2/queues").json()["queues"]] == ["sub.zq"]
    assert [q["name"] for q in p_sub.get("/v2/queues").json()["queues"]] == ["zq"]
    assert [m["body"] for m in p.list_messages("sub.zq", echo="true")] == ["from p / sub.zq"]
    assert [m["body"] for m in p_sub.list_messages("zq", echo="true")] == ["from p.sub / zq"]
    assert p.list_messages("zq", echo="true") == []
    assert p_sub.list_messages("sub.zq", echo="true") == []


def test_odd_project_ids(make_api):
    # project ids are opaque strings: separators and unicode must not confuse the store
    tag = uuid.uuid4().hex[:6]
    for pid in ("a/b", "a:b", "x y", "..", "%", "a\\b", "a.b.c", "'; --"):
        pid = f"{pid}-{tag}"
        api = make_api(project_id=pid)
        api.post_messages("q", [{"body": pid}])
        assert [m["body"] for m in api.list_messages("q", echo="true")] == [pid]


def test_project_ids_are_case_sensitive(make_api):
    tag = uuid.uuid4().hex[:6]
    upper, lower = make_api(project_id=f"P{tag}"), make_api(project_id=f"p{tag}")
    upper.post_messages("q", [{"body": 1}])
    assert lower.list_messages("q", echo="true") == []
    assert lower.get("/v2/queues").json()["queues"] == []


def test_same_project_other_client_shares(server, project):
    a1 = Api(server.url, project)
    a2 = Api(server.url, project)
    a1.post_messages(Q, [{"body": 1}])
    assert [m["body"] for m in a2.list_messages(Q)] == [1]
