"""The v2 HTTP API route by route, as Zaqar 23.0.1 answers it (plain requests).

Expected values come from the reference behaviour notes
(shared/reference/zaqar-23-behaviour.md); where we deliberately differ from a
reference bug, the test asserts the sane answer and says so.
"""

import hashlib
import json
import re
import time
import urllib.parse
import uuid


from zaqar_testlib import Api, assert_error

RESERVED_DEFAULTS = {
    "_max_messages_post_size": 262144,
    "_default_message_ttl": 3600,
    "_default_message_delay": 0,
    "_dead_letter_queue": None,
    "_dead_letter_queue_messages_ttl": None,
    "_max_claim_count": None,
    "_enable_encrypt_messages": False,
}

VERSIONS = {
    "versions": [{
        "id": "2",
        "status": "CURRENT",
        "updated": "2014-9-24T04:06:47Z",
        "media-types": [{
            "base": "application/json",
            "type": "application/vnd.openstack.messaging-v2+json",
        }],
        "links": [{"href": "/v2/", "rel": "self"}],
    }]
}

JSON_PATCH = "application/openstack-messaging-v2.0-json-patch"
CREATED_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


def is_json(resp):
    return resp.headers.get("Content-Type", "").startswith("application/json")


def split_href(href):
    parsed = urllib.parse.urlsplit(href)
    return parsed.path, dict(urllib.parse.parse_qsl(parsed.query, keep_blank_values=True))


def patch(api, queue, ops, content_type=JSON_PATCH):
    return api.patch(f"/v2/queues/{queue}", data=json.dumps(ops),
                     headers={"Content-Type": content_type})


def assert_message(msg, queue, body=None, claim_id=None):
    assert {"id", "href", "ttl", "age", "body"} <= set(msg), msg
    expected_href = f"/v2/queues/{queue}/messages/{msg['id']}"
    if claim_id:
        expected_href += f"?claim_id={claim_id}"
    assert msg["href"] == expected_href
    assert isinstance(msg["ttl"], int) and isinstance(msg["age"], int)
    assert msg["age"] >= 0
    if body is not None:
        assert msg["body"] == body


# ---------------------------------------------------------------------------
# versions, home, ping
# ---------------------------------------------------------------------------

class TestVersionsHomePing:

    def test_versions_document_is_300_without_any_header(self, server):
        import requests
        resp = requests.get(server.url + "/", timeout=10)
        assert resp.status_code == 300
        assert is_json(resp)
        assert resp.json() == VERSIONS
        assert resp.headers.get("x-openstack-request-id", "").startswith("req-")

    def test_versions_document_with_headers(self, api):
        resp = api.get("/")
        assert resp.status_code == 300
        assert resp.json() == VERSIONS

    def test_home_document(self, api):
        resp = api.get("/v2/")
        assert resp.status_code == 200
        assert resp.headers["Content-Type"].startswith("application/json-home")
        assert "max-age=86400" in resp.headers.get("Cache-Control", "")
        res = resp.json()["resources"]
        for rel in ("rel/queues", "rel/queue", "rel/queue_stats", "rel/queue_purge",
                    "rel/messages", "rel/post_messages", "rel/messages_delete",
                    "rel/message_delete", "rel/message_get", "rel/claim",
                    "rel/post_claim", "rel/patch_claim", "rel/delete_claim", "rel/ping"):
            assert rel in res, rel
        assert res["rel/queues"]["href-template"] == "/v2/queues{?marker,limit,detailed}"
        assert res["rel/queues"]["hints"]["allow"] == ["GET"]
        assert "application/json" in res["rel/queues"]["hints"]["formats"]
        assert res["rel/queue"]["href-template"] == "/v2/queues/{queue_name}"
        assert set(res["rel/queue"]["hints"]["allow"]) == {"GET", "PUT", "DELETE", "PATCH"}
        assert res["rel/messages"]["href-template"] == \
            "/v2/queues/{queue_name}/messages{?marker,limit,echo,include_claimed}"
        assert "href-template" in res["rel/ping"]
        # admin-only relations are absent without admin_mode
        for rel in ("rel/pools", "rel/flavors", "rel/health"):
            assert rel not in res

    def test_v2_without_trailing_slash_is_404(self, api):
        resp = api.get("/v2")
        assert resp.status_code == 404

    def test_ping(self, api):
        resp = api.get("/v2/ping")
        assert resp.status_code == 204
        assert resp.content == b""
        resp = api.head("/v2/ping")
        assert resp.status_code == 204
        assert resp.content == b""

    def test_request_ids_are_unique(self, api):
        ids = {api.get("/v2/ping").headers["x-openstack-request-id"] for _ in range(5)}
        assert len(ids) == 5

    def test_health_not_routed_without_admin_mode(self, api):
        resp = api.get("/v2/health", headers={"X-Roles": "admin"})
        assert resp.status_code in (404, 405)


# ---------------------------------------------------------------------------
# queues
# ---------------------------------------------------------------------------

class TestQueues:

    def test_create_201_then_204_with_location(self, api, qname):
        resp = api.put(f"/v2/queues/{qname}")
        assert resp.status_code == 201
        assert resp.content == b""
        assert resp.headers["Location"] == f"/v2/queues/{qname}"
        resp = api.put(f"/v2/queues/{qname}")
        assert resp.status_code == 204
        assert resp.headers["Location"] == f"/v2/queues/{qname}"

    def test_create_with_metadata_and_get(self, api, qname):
        meta = {"type": "Bank Accounts", "n": 3, "nested": {"a": [1, 2]}, "ü": "ö"}
        api.create_queue(qname, meta)
        resp = api.get(f"/v2/queues/{qname}")
        assert resp.status_code == 200
        assert is_json(resp)
        assert resp.json() == {**meta, **RESERVED_DEFAULTS}

    def test_recreate_does_not_replace_metadata(self, api, qname):
        api.create_queue(qname, {"a": 1})
        resp = api.put(f"/v2/queues/{qname}", json={"b": 2})
        assert resp.status_code == 204
        assert api.get(f"/v2/queues/{qname}").json() == {"a": 1, **RESERVED_DEFAULTS}

    def test_get_missing_queue_returns_defaults(self, api, qname):
        resp = api.get(f"/v2/queues/{qname}")
        assert resp.status_code == 200
        assert resp.json() == RESERVED_DEFAULTS

    def test_reserved_metadata_stored_values_shown(self, api, qname):
        api.create_queue(qname, {"_default_message_ttl": 120, "_max_messages_post_size": 1000})
        body = api.get(f"/v2/queues/{qname}").json()
        assert body["_default_message_ttl"] == 120
        assert body["_max_messages_post_size"] == 1000
        assert body["_default_message_delay"] == 0

    def test_empty_list(self, api):
        resp = api.get("/v2/queues")
        assert resp.status_code == 200
        assert resp.json() == {"queues": [], "links": []}
        resp = api.get("/v2/queues", params={"with_count": "true"})
        # count is omitted when it is zero
        assert resp.json() == {"queues": [], "links": []}

    def test_list_paging_with_next_links(self, api):
        names = sorted(f"pq-{i:02d}-{uuid.uuid4().hex[:4]}" for i in range(5))
        for n in names:
            api.create_queue(n, {"i": n})
        resp = api.get("/v2/queues", params={"limit": 2})
        assert resp.status_code == 200
        body = resp.json()
        assert [q["name"] for q in body["queues"]] == names[:2]
        for q in body["queues"]:
            assert q == {"name": q["name"], "href": f"/v2/queues/{q['name']}"}
        assert len(body["links"]) == 1 and body["links"][0]["rel"] == "next"
        path, query = split_href(body["links"][0]["href"])
        assert path == "/v2/queues"
        assert query == {"limit": "2", "marker": names[1]}

        seen = []
        href = "/v2/queues?limit=2"
        for _ in range(10):
            body = api.get(href).json()
            if not body["queues"]:
                assert body["links"] == []
                break
            seen += [q["name"] for q in body["queues"]]
            href = body["links"][0]["href"]
        assert seen == names

    def test_list_default_limit_is_10(self, api):
        for i in range(12):
            api.create_queue(f"d{i:02d}")
        body = api.get("/v2/queues").json()
        assert len(body["queues"]) == 10
        body = api.get("/v2/queues", params={"limit": 20}).json()
        assert len(body["queues"]) == 12

    def test_list_marker_is_exclusive(self, api):
        for n in ("a1", "a2", "a3"):
            api.create_queue(n)
        body = api.get("/v2/queues", params={"marker": "a1"}).json()
        assert [q["name"] for q in body["queues"]] == ["a2", "a3"]

    def test_list_detailed_and_count(self, api):
        api.create_queue("det-a", {"x": 1})
        api.create_queue("det-b")
        resp = api.get("/v2/queues", params={"detailed": "true", "with_count": "true"})
        body = resp.json()
        assert body["count"] == 2
        by_name = {q["name"]: q for q in body["queues"]}
        assert by_name["det-a"]["metadata"] == {"x": 1, **RESERVED_DEFAULTS}
        assert by_name["det-b"]["metadata"] == RESERVED_DEFAULTS
        assert by_name["det-a"]["href"] == "/v2/queues/det-a"
        _, query = split_href(body["links"][0]["href"])
        assert query["detailed"] == "true" and query["with_count"] == "true"
        assert query["marker"] == "det-b"

    def test_list_detailed_false_has_no_metadata(self, api):
        api.create_queue("nd-a", {"x": 1})
        for params in ({"detailed": "false"}, {}):
            q = api.get("/v2/queues", params=params).json()["queues"][0]
            assert "metadata" not in q

    def test_bare_detailed_counts_as_false(self, api):
        # errata 2: a bare ?detailed (no value) is dropped
        api.create_queue("bare-a", {"x": 1})
        resp = api.get("/v2/queues?detailed")
        assert resp.status_code == 200
        assert "metadata" not in resp.json()["queues"][0]

    def test_delete_queue(self, api, qname):
        api.create_queue(qname, {"a": 1})
        api.post_messages(qname, [{"body": 1}])
        resp = api.delete(f"/v2/queues/{qname}")
        assert resp.status_code == 204
        assert resp.content == b""
        assert api.get(f"/v2/queues/{qname}").json() == RESERVED_DEFAULTS
        assert api.get("/v2/queues").json()["queues"] == []
        # its messages are gone with it
        assert api.list_messages(qname, echo="true") == []
        # deleting a missing queue is fine
        assert api.delete(f"/v2/queues/{qname}").status_code == 204

    def test_head_queue_is_405(self, api, qname):
        api.create_queue(qname)
        resp = api.head(f"/v2/queues/{qname}")
        assert resp.status_code == 405

    def test_listing_filters_by_name_and_metadata(self, api):
        # As the reference's MongoDB store: `name` is a part of the name,
        # every other parameter a metadata value (an integer when it reads
        # as one); the filters are not carried into the next link.
        api.create_queue("q1", {"node": 31})
        api.create_queue("q2", {"node": 32, "colour": "red"})
        api.create_queue("other", {"node": 31, "colour": "red"})

        def names(**params):
            doc = api.get("/v2/queues", params=params).json()
            return [q["name"] for q in doc["queues"]], doc["links"]

        assert names(name="q")[0] == ["q1", "q2"]
        assert names(node=31)[0] == ["other", "q1"]
        assert names(node=31, colour="red")[0] == ["other"]
        assert names(node="32")[0] == ["q2"]
        assert names(node=99) == ([], [])
        # 16 filters at most: a 17th (here one no queue passes) is ignored
        many = {f"f{i:02d}": "x" for i in range(15)}
        api.patch("/v2/queues/other", headers={"Content-Type": "application/openstack-messaging-v2.0-json-patch"},
                  json=[{"op": "add", "path": f"/metadata/{k}", "value": "x"} for k in many])
        assert names(node=31, **many)[0] == ["other"]
        assert names(node=31, **many, zz="nope")[0] == ["other"]
        assert names(node=31, zz="nope")[0] == []
        listed, links = names(node=31, limit=1)
        assert listed == ["other"]
        assert links[0]["href"] == "/v2/queues?limit=1&marker=other"
        doc = api.get("/v2/queues", params={"colour": "red", "detailed": "true"}).json()
        assert [(q["name"], q["metadata"]["node"]) for q in doc["queues"]] == [("other", 31), ("q2", 32)]

    def test_dotted_queue_names_allowed(self, api):
        api.create_queue("a.b.c")
        names = [q["name"] for q in api.get("/v2/queues").json()["queues"]]
        assert names == ["a.b.c"]

    def test_max_length_queue_name(self, api):
        name = "x" * 64
        assert api.put(f"/v2/queues/{name}").status_code == 201


class TestQueuePatch:

    def test_add_replace_remove(self, api, qname):
        api.create_queue(qname, {"keep": 1, "old": "x"})
        resp = patch(api, qname, [
            {"op": "add", "path": "/metadata/new", "value": {"k": [1]}},
            {"op": "replace", "path": "/metadata/old", "value": "y"},
            {"op": "remove", "path": "/metadata/keep"},
        ])
        assert resp.status_code == 200, resp.text
        expected = {"new": {"k": [1]}, "old": "y", **RESERVED_DEFAULTS}
        assert resp.json() == expected
        assert api.get(f"/v2/queues/{qname}").json() == expected

    def test_replace_and_remove_reserved(self, api, qname):
        api.create_queue(qname)
        resp = patch(api, qname, [
            {"op": "replace", "path": "/metadata/_default_message_ttl", "value": 300}])
        assert resp.status_code == 200, resp.text
        assert resp.json()["_default_message_ttl"] == 300
        # removing a reserved key that is not stored is silently ignored
        resp = patch(api, qname, [
            {"op": "remove", "path": "/metadata/_max_claim_count"},
            {"op": "remove", "path": "/metadata/_default_message_ttl"}])
        assert resp.status_code == 200, resp.text
        assert resp.json() == RESERVED_DEFAULTS

    def test_root_is_case_insensitive(self, api, qname):
        api.create_queue(qname)
        resp = patch(api, qname, [{"op": "add", "path": "/METADATA/k", "value": 1}])
        assert resp.status_code == 200, resp.text
        assert resp.json()["k"] == 1

    def test_escaped_pointer(self, api, qname):
        api.create_queue(qname)
        resp = patch(api, qname, [{"op": "add", "path": "/metadata/a~1b~0c", "value": 1}])
        assert resp.status_code == 200, resp.text
        assert resp.json()["a/b~c"] == 1

    def test_wrong_content_type_is_415(self, api, qname):
        api.create_queue(qname)
        for ctype in ("application/json", "application/json-patch+json"):
            resp = patch(api, qname, [{"op": "add", "path": "/metadata/a", "value": 1}],
                         content_type=ctype)
            assert_error(resp, 415, description=(
                "Accepted media type for PATCH: "
                "{'Accept-Patch': 'application/openstack-messaging-v2.0-json-patch'}."))

    def test_replace_missing_is_409(self, api, qname):
        api.create_queue(qname)
        resp = patch(api, qname, [{"op": "replace", "path": "/metadata/nope", "value": 1}])
        assert_error(resp, 409, "Resource conflict", "Can't replace non-existent object nope.")

    def test_remove_missing_is_409(self, api, qname):
        api.create_queue(qname)
        resp = patch(api, qname, [{"op": "remove", "path": "/metadata/nope"}])
        assert_error(resp, 409, "Resource conflict", "Can't remove non-existent object nope.")

    def test_failed_patch_changes_nothing(self, api, qname):
        api.create_queue(qname, {"a": 1})
        resp = patch(api, qname, [{"op": "add", "path": "/metadata/b", "value": 2},
                                  {"op": "remove", "path": "/metadata/nope"}])
        assert resp.status_code == 409
        assert api.get(f"/v2/queues/{qname}").json() == {"a": 1, **RESERVED_DEFAULTS}

    def test_missing_queue_is_404(self, api, qname):
        resp = patch(api, qname, [{"op": "add", "path": "/metadata/a", "value": 1}])
        assert_error(resp, 404, "Not found",
                     f"Queue {qname} does not exist for project {api.project_id}")


# ---------------------------------------------------------------------------
# stats and purge
# ---------------------------------------------------------------------------

class TestStatsPurge:

    def test_stats_missing_and_empty(self, api, qname):
        resp = api.get(f"/v2/queues/{qname}/stats")
        assert resp.status_code == 200
        assert resp.json() == {"messages": {"claimed": 0, "free": 0, "total": 0}}
        api.create_queue(qname)
        assert api.get(f"/v2/queues/{qname}/stats").json() == \
            {"messages": {"claimed": 0, "free": 0, "total": 0}}

    def test_stats_counts_and_oldest_newest(self, api, make_api, qname):
        ids = api.post_messages(qname, [{"body": i, "ttl": 300} for i in range(3)])
        api.claim(qname, limit=1)
        stats = api.get(f"/v2/queues/{qname}/stats").json()["messages"]
        assert (stats["claimed"], stats["free"], stats["total"]) == (1, 2, 3)
        for key, mid in (("oldest", ids[0]), ("newest", ids[-1])):
            entry = stats[key]
            assert entry["href"] == f"/v2/queues/{qname}/messages/{mid}"
            assert isinstance(entry["age"], int) and entry["age"] >= 0
            assert CREATED_RE.match(entry["created"]), entry

    def test_purge_messages(self, api, qname):
        api.post_messages(qname, [{"body": i} for i in range(5)])
        api.claim(qname, limit=2)
        resp = api.post(f"/v2/queues/{qname}/purge", json={"resource_types": ["messages"]})
        assert resp.status_code == 204
        assert resp.content == b""
        # errata: the reference leaves claimed messages behind; ours purges them too
        assert api.list_messages(qname, echo="true", include_claimed="true") == []
        stats = api.get(f"/v2/queues/{qname}/stats").json()["messages"]
        assert stats["total"] == 0
        # the queue itself survives a purge
        assert [q["name"] for q in api.get("/v2/queues").json()["queues"]] == [qname]

    def test_purge_without_body_and_with_both_types(self, api, qname):
        api.post_messages(qname, [{"body": 1}])
        assert api.post(f"/v2/queues/{qname}/purge").status_code == 204
        assert api.list_messages(qname, echo="true") == []
        api.post_messages(qname, [{"body": 1}])
        resp = api.post(f"/v2/queues/{qname}/purge",
                        json={"resource_types": ["messages", "subscriptions"]})
        assert resp.status_code == 204
        assert api.list_messages(qname, echo="true") == []

    def test_purge_subscriptions_only_keeps_messages(self, api, qname):
        api.post_messages(qname, [{"body": 1}])
        resp = api.post(f"/v2/queues/{qname}/purge",
                        json={"resource_types": ["subscriptions"]})
        assert resp.status_code == 204
        assert len(api.list_messages(qname, echo="true")) == 1


# ---------------------------------------------------------------------------
# messages
# ---------------------------------------------------------------------------

class TestMessages:

    def test_post_batch(self, api, qname):
        msgs = [{"ttl": 300, "body": {"event": "a"}}, {"body": "two"},
                {"ttl": 60, "body": None}, {"body": [1, 2, {"x": "ü"}], "extra": 1}]
        resp = api.post(f"/v2/queues/{qname}/messages", json={"messages": msgs})
        assert resp.status_code == 201
        assert is_json(resp)
        resources = resp.json()["resources"]
        assert len(resources) == 4
        ids = []
        for href in resources:
            assert href.startswith(f"/v2/queues/{qname}/messages/")
            ids.append(href.rsplit("/", 1)[1])
        assert len(set(ids)) == 4
        assert resp.headers["Location"] == f"/v2/queues/{qname}/messages?ids={','.join(ids)}"
        # queue auto-created
        assert [q["name"] for q in api.get("/v2/queues").json()["queues"]] == [qname]

        got = {m["id"]: m for m in api.get(f"/v2/queues/{qname}/messages",
                                           params={"ids": ",".join(ids)}).json()["messages"]}
        assert got[ids[0]]["ttl"] == 300 and got[ids[0]]["body"] == {"event": "a"}
        assert got[ids[1]]["ttl"] == 3600  # [transport] default_message_ttl
        assert got[ids[2]]["body"] is None and got[ids[2]]["ttl"] == 60
        assert got[ids[3]]["body"] == [1, 2, {"x": "ü"}]
        assert "extra" not in got[ids[3]]

    def test_location_resolves(self, api, qname):
        resp = api.post(f"/v2/queues/{qname}/messages",
                        json={"messages": [{"body": 1}, {"body": 2}]})
        got = api.get(resp.headers["Location"])
        assert got.status_code == 200
        assert sorted(m["body"] for m in got.json()["messages"]) == [1, 2]
        for href in resp.json()["resources"]:
            assert api.get(href).status_code == 200

    def test_list_echo(self, api, make_api, qname):
        api.post_messages(qname, [{"body": i} for i in range(3)])
        # own messages are hidden unless echo=true
        assert api.list_messages(qname) == []
        assert len(api.list_messages(qname, echo="true")) == 3
        other_client = make_api(project_id=api.project_id)
        assert [m["body"] for m in other_client.list_messages(qname)] == [0, 1, 2]

    def test_list_representation_and_order(self, api, qname):
        bodies = [{"n": i} for i in range(5)]
        ids = api.post_messages(qname, [{"body": b, "ttl": 120} for b in bodies])
        resp = api.get(f"/v2/queues/{qname}/messages", params={"echo": "true"})
        assert resp.status_code == 200
        assert is_json(resp)
        msgs = resp.json()["messages"]
        assert [m["id"] for m in msgs] == ids
        for m, b in zip(msgs, bodies):
            assert_message(m, qname, body=b)
            assert m["ttl"] == 120
            assert "checksum" not in m

    def test_list_paging(self, api, qname):
        ids = api.post_messages(qname, [{"body": i} for i in range(7)])
        resp = api.get(f"/v2/queues/{qname}/messages", params={"echo": "true", "limit": 3})
        body = resp.json()
        assert [m["id"] for m in body["messages"]] == ids[:3]
        assert len(body["links"]) == 1 and body["links"][0]["rel"] == "next"
        path, query = split_href(body["links"][0]["href"])
        assert path == f"/v2/queues/{qname}/messages"
        assert query["limit"] == "3" and query["echo"] == "true" and "marker" in query
        # the reference forces include_delayed=true into the link for a non-delay queue
        assert query.get("include_delayed") == "true"

        seen = []
        href = f"/v2/queues/{qname}/messages?echo=true&limit=3"
        for _ in range(10):
            body = api.get(href).json()
            if not body["messages"]:
                assert body["links"] == []
                break
            seen += [m["id"] for m in body["messages"]]
            href = body["links"][0]["href"]
        assert seen == ids

    def test_list_default_limit_10(self, api, qname):
        api.post_messages(qname, [{"body": i} for i in range(12)])
        assert len(api.list_messages(qname, echo="true")) == 10
        assert len(api.list_messages(qname, echo="true", limit=20)) == 12

    def test_list_missing_queue_is_empty(self, api, qname):
        resp = api.get(f"/v2/queues/{qname}/messages")
        assert resp.status_code == 200
        assert resp.json() == {"messages": [], "links": []}

    def test_include_claimed(self, api, qname):
        ids = api.post_messages(qname, [{"body": i} for i in range(3)])
        claim = api.claim(qname, limit=2)
        assert claim.status_code == 201
        cid = claim.headers["Location"].rsplit("/", 1)[1]
        visible = api.list_messages(qname, echo="true")
        assert [m["id"] for m in visible] == ids[2:]
        # errata: include_claimed=true without a marker is a 503 in the reference
        every = api.list_messages(qname, echo="true", include_claimed="true")
        assert [m["id"] for m in every] == ids
        for m in every[:2]:
            assert_message(m, qname, claim_id=cid)
        assert_message(every[2], qname)

    def test_get_by_ids(self, api, qname):
        ids = api.post_messages(qname, [{"body": i} for i in range(3)])
        resp = api.get(f"/v2/queues/{qname}/messages", params={"ids": ",".join(ids[:2])})
        assert resp.status_code == 200
        body = resp.json()
        assert set(body) == {"messages"}
        assert sorted(m["id"] for m in body["messages"]) == sorted(ids[:2])
        for m in body["messages"]:
            assert_message(m, qname)
        # unknown ids are skipped
        resp = api.get(f"/v2/queues/{qname}/messages",
                       params={"ids": f"{ids[2]},{uuid.uuid4()}"})
        assert [m["id"] for m in resp.json()["messages"]] == [ids[2]]

    def test_ids_as_repeated_parameters(self, api, qname):
        # python-zaqarclient sends ids=a&ids=b (get many, delete many)
        ids = api.post_messages(qname, [{"body": i} for i in range(3)])
        resp = api.get(f"/v2/queues/{qname}/messages", params={"ids": ids[:2]})
        assert resp.status_code == 200
        assert sorted(m["id"] for m in resp.json()["messages"]) == sorted(ids[:2])
        resp = api.delete(f"/v2/queues/{qname}/messages", params={"ids": ids[:2]})
        assert resp.status_code == 204
        assert [m["id"] for m in api.list_messages(qname, echo="true")] == ids[2:]

    def test_get_by_ids_none_found_is_404(self, api, qname):
        api.post_messages(qname, [{"body": 1}])
        a, b = str(uuid.uuid4()), str(uuid.uuid4())
        resp = api.get(f"/v2/queues/{qname}/messages", params={"ids": f"{a},{b}"})
        assert_error(resp, 404, "Not found",
                     f"No messages with IDs: ['{a}', '{b}'] found in the queue "
                     f"{qname} for project {api.project_id}.")

    def test_get_one(self, api, qname):
        [mid] = api.post_messages(qname, [{"body": {"a": "é"}, "ttl": 200}])
        resp = api.get(f"/v2/queues/{qname}/messages/{mid}")
        assert resp.status_code == 200
        assert is_json(resp)
        m = resp.json()
        assert m["id"] == mid and m["ttl"] == 200 and m["body"] == {"a": "é"}
        assert_message(m, qname)

    def test_get_one_missing(self, api, qname):
        api.create_queue(qname)
        mid = str(uuid.uuid4())
        resp = api.get(f"/v2/queues/{qname}/messages/{mid}")
        assert_error(resp, 404, "Not found",
                     f"Message {mid} does not exist in queue {qname} "
                     f"for project {api.project_id}")

    def test_get_one_in_missing_queue(self, api, qname):
        resp = api.get(f"/v2/queues/{qname}/messages/{uuid.uuid4()}")
        # errata 6: the reference names the queue in this case
        assert_error(resp, 404, "Not found",
                     f"Queue {qname} does not exist for project {api.project_id}")

    def test_bulk_delete(self, api, qname):
        ids = api.post_messages(qname, [{"body": i} for i in range(4)])
        resp = api.delete(f"/v2/queues/{qname}/messages", params={"ids": ",".join(ids[:3])})
        assert resp.status_code == 204
        assert resp.content == b""
        assert [m["id"] for m in api.list_messages(qname, echo="true")] == ids[3:]
        # unknown ids and missing queues are ignored
        resp = api.delete(f"/v2/queues/{qname}/messages", params={"ids": str(uuid.uuid4())})
        assert resp.status_code == 204
        resp = api.delete("/v2/queues/nothere/messages", params={"ids": ids[3]})
        assert resp.status_code == 204

    def test_pop(self, api, qname):
        ids = api.post_messages(qname, [{"body": i, "ttl": 100} for i in range(3)])
        resp = api.delete(f"/v2/queues/{qname}/messages", params={"pop": 2})
        assert resp.status_code == 200
        assert is_json(resp)
        popped = resp.json()["messages"]
        assert [m["id"] for m in popped] == ids[:2]
        for m, i in zip(popped, range(2)):
            assert m["body"] == i and m["ttl"] == 100
            assert "age" in m
            assert "href" not in m  # pop returns storage records, no href
        assert [m["id"] for m in api.list_messages(qname, echo="true")] == ids[2:]
        # pop on an empty queue
        api.delete(f"/v2/queues/{qname}/messages", params={"pop": 5})
        resp = api.delete(f"/v2/queues/{qname}/messages", params={"pop": 5})
        assert resp.status_code == 200
        assert resp.json() == {"messages": []}

    def test_pop_skips_claimed(self, api, qname):
        ids = api.post_messages(qname, [{"body": i} for i in range(3)])
        api.claim(qname, limit=1)
        popped = api.delete(f"/v2/queues/{qname}/messages", params={"pop": 5}).json()
        assert [m["id"] for m in popped["messages"]] == ids[1:]

    def test_delete_one(self, api, qname):
        [mid] = api.post_messages(qname, [{"body": 1}])
        resp = api.delete(f"/v2/queues/{qname}/messages/{mid}")
        assert resp.status_code == 204
        assert resp.content == b""
        assert api.get(f"/v2/queues/{qname}/messages/{mid}").status_code == 404
        # already gone, and missing queue: still 204
        assert api.delete(f"/v2/queues/{qname}/messages/{mid}").status_code == 204
        assert api.delete(f"/v2/queues/nothere/messages/{mid}").status_code == 204

    def test_delete_claimed_message_rules(self, api, qname):
        ids = api.post_messages(qname, [{"body": i} for i in range(3)])
        c1 = api.claim(qname, limit=1)
        cid1 = c1.headers["Location"].rsplit("/", 1)[1]
        c2 = api.claim(qname, limit=1)
        cid2 = c2.headers["Location"].rsplit("/", 1)[1]
        assert cid1 != cid2
        m1, m2, m3 = ids
        assert c1.json()["messages"][0]["id"] == m1

        # claimed, no claim id -> 403
        resp = api.delete(f"/v2/queues/{qname}/messages/{m1}")
        assert_error(resp, 403, "Unable to delete",
                     "This message is claimed; it cannot be deleted without a valid claim ID.")
        # claimed by another live claim -> 403
        resp = api.delete(f"/v2/queues/{qname}/messages/{m1}", params={"claim_id": cid2})
        assert_error(resp, 403, "Unable to delete",
                     "This message is claimed; it cannot be deleted without a valid claim ID.")
        # a claim id that does not exist -> 400
        resp = api.delete(f"/v2/queues/{qname}/messages/{m1}",
                          params={"claim_id": str(uuid.uuid4())})
        assert_error(resp, 400, "Unable to delete",
                     "The specified claim does not exist or has expired.")
        # a malformed claim id -> 400 as well
        resp = api.delete(f"/v2/queues/{qname}/messages/{m1}", params={"claim_id": "bogus"})
        assert_error(resp, 400, "Unable to delete",
                     "The specified claim does not exist or has expired.")
        # unclaimed message with a claim id -> 400
        resp = api.delete(f"/v2/queues/{qname}/messages/{m3}", params={"claim_id": cid1})
        assert_error(resp, 400, "Unable to delete",
                     "A claim was specified, but the message is not currently claimed.")
        # ...but a malformed claim id names no claim, claimed message or not
        resp = api.delete(f"/v2/queues/{qname}/messages/{m3}", params={"claim_id": "bogus"})
        assert_error(resp, 400, "Unable to delete",
                     "The specified claim does not exist or has expired.")
        assert api.get(f"/v2/queues/{qname}/messages/{m3}").status_code == 200
        # the right claim -> 204, and the message leaves the claim
        resp = api.delete(f"/v2/queues/{qname}/messages/{m1}", params={"claim_id": cid1})
        assert resp.status_code == 204
        claim = api.get(f"/v2/queues/{qname}/claims/{cid1}")
        if claim.status_code == 200:
            assert claim.json()["messages"] == []
        else:
            assert claim.status_code == 404
        assert api.get(f"/v2/queues/{qname}/messages/{m1}").status_code == 404
        assert api.get(f"/v2/queues/{qname}/messages/{m2}").status_code == 200
        # a message that is gone (or a queue that is) is deleted already,
        # whatever the claim id, as in the reference
        for path in (f"/v2/queues/{qname}/messages/{m1}", f"/v2/queues/{qname}-none/messages/{m2}"):
            resp = api.delete(path, params={"claim_id": "bogus"})
            assert resp.status_code == 204, resp.text


# ---------------------------------------------------------------------------
# claims
# ---------------------------------------------------------------------------

class TestClaims:

    def test_claim_lifecycle(self, api, qname):
        ids = api.post_messages(qname, [{"body": i, "ttl": 300} for i in range(3)])
        resp = api.post(f"/v2/queues/{qname}/claims", params={"limit": 2},
                        json={"ttl": 100, "grace": 60})
        assert resp.status_code == 201
        assert is_json(resp)
        loc = resp.headers["Location"]
        assert loc.startswith(f"/v2/queues/{qname}/claims/")
        cid = loc.rsplit("/", 1)[1]
        msgs = resp.json()["messages"]
        assert [m["id"] for m in msgs] == ids[:2]
        for m in msgs:
            assert_message(m, qname, claim_id=cid)

        got = api.get(loc)
        assert got.status_code == 200
        assert is_json(got)
        body = got.json()
        assert set(body) == {"age", "ttl", "messages", "href"}
        assert body["href"] == loc
        assert body["ttl"] == 100
        assert body["age"] >= 0
        assert sorted(m["id"] for m in body["messages"]) == sorted(ids[:2])
        for m in body["messages"]:
            assert_message(m, qname, claim_id=cid)

        # the message itself shows its claim in the href
        m0 = api.get(f"/v2/queues/{qname}/messages/{ids[0]}").json()
        assert m0["href"] == f"/v2/queues/{qname}/messages/{ids[0]}?claim_id={cid}"

        # renew
        resp = api.patch(loc, json={"ttl": 200, "grace": 60})
        assert resp.status_code == 204
        assert resp.content == b""
        assert api.get(loc).json()["ttl"] == 200

        # release
        resp = api.delete(loc)
        assert resp.status_code == 204
        assert_error(api.get(loc), 404, "Not found",
                     f"Claim {cid} does not exist in queue {qname} for project {api.project_id}")
        assert [m["id"] for m in api.list_messages(qname, echo="true")] == ids
        # released messages can be claimed again
        again = api.claim(qname, limit=5)
        assert again.status_code == 201
        assert [m["id"] for m in again.json()["messages"]] == ids
        # deleting a released/missing claim is still 204
        assert api.delete(loc).status_code == 204

    def test_claim_defaults(self, api, qname):
        api.post_messages(qname, [{"body": i} for i in range(12)])
        resp = api.post(f"/v2/queues/{qname}/claims")
        assert resp.status_code == 201
        assert len(resp.json()["messages"]) == 10  # storage default limit
        claim = api.get(resp.headers["Location"]).json()
        assert claim["ttl"] == 300  # default_claim_ttl

    def test_claim_empty_body_object(self, api, qname):
        api.post_messages(qname, [{"body": 1}])
        resp = api.post(f"/v2/queues/{qname}/claims", json={})
        assert resp.status_code == 201
        assert api.get(resp.headers["Location"]).json()["ttl"] == 300

    def test_claim_empty_and_missing_queue_is_204(self, api, qname):
        resp = api.claim(qname)
        assert resp.status_code == 204
        assert resp.content == b""
        api.create_queue(qname)
        resp = api.claim(qname)
        assert resp.status_code == 204
        assert resp.content == b""

    def test_claims_are_exclusive(self, api, qname):
        ids = api.post_messages(qname, [{"body": i} for i in range(4)])
        a = api.claim(qname, limit=3).json()["messages"]
        b = api.claim(qname, limit=3).json()["messages"]
        assert [m["id"] for m in a] == ids[:3]
        assert [m["id"] for m in b] == ids[3:]
        assert api.claim(qname).status_code == 204

    def test_claim_extends_short_lived_messages(self, api, qname):
        [mid] = api.post_messages(qname, [{"body": 1, "ttl": 60}])
        api.claim(qname, ttl=120, grace=60)
        m = api.get(f"/v2/queues/{qname}/messages/{mid}").json()
        # the message would expire before the claim: extended to claim ttl + grace
        assert m["ttl"] >= 180

    def test_update_missing_claim_is_404(self, api, qname):
        api.create_queue(qname)
        cid = str(uuid.uuid4())
        resp = api.patch(f"/v2/queues/{qname}/claims/{cid}", json={"ttl": 100})
        assert_error(resp, 404, "Not found")

    def test_get_missing_claim_is_404(self, api, qname):
        api.create_queue(qname)
        cid = str(uuid.uuid4())
        resp = api.get(f"/v2/queues/{qname}/claims/{cid}")
        assert_error(resp, 404, "Not found",
                     f"Claim {cid} does not exist in queue {qname} for project {api.project_id}")

    def test_claim_of_other_queue_is_404(self, api, qname):
        api.post_messages(qname, [{"body": 1}])
        cid = api.claim(qname).headers["Location"].rsplit("/", 1)[1]
        api.create_queue("other")
        assert api.get(f"/v2/queues/other/claims/{cid}").status_code == 404


# ---------------------------------------------------------------------------
# reserved queue metadata
# ---------------------------------------------------------------------------

class TestReservedMetadata:

    def test_default_message_ttl(self, api, qname):
        api.create_queue(qname, {"_default_message_ttl": 120})
        [a, b] = api.post_messages(qname, [{"body": 1}, {"body": 2, "ttl": 500}])
        assert api.get(f"/v2/queues/{qname}/messages/{a}").json()["ttl"] == 120
        assert api.get(f"/v2/queues/{qname}/messages/{b}").json()["ttl"] == 500

    def test_max_messages_post_size(self, api, qname):
        api.create_queue(qname, {"_max_messages_post_size": 100})
        resp = api.post(f"/v2/queues/{qname}/messages",
                        json={"messages": [{"body": "x" * 200}]})
        assert_error(resp, 400, "Invalid API request", (
            "Message collection size is too large. The max size for current queue is 100. "
            "It is calculated by max size = min(max_messages_post_size_config: 262144, "
            "max_messages_post_size_queue: 100)."))
        assert api.post_messages(qname, [{"body": "ok"}])

    def test_delay_queue(self, api, make_api, qname):
        api.create_queue(qname, {"_default_message_delay": 2})
        reader = make_api(project_id=api.project_id)
        [delayed] = api.post_messages(qname, [{"body": "later"}])
        [now] = api.post_messages(qname, [{"body": "now", "delay": 0}])
        assert [m["id"] for m in reader.list_messages(qname)] == [now]
        every = reader.list_messages(qname, include_delayed="true")
        assert [m["id"] for m in every] == [delayed, now]
        # a claim does not take the delayed message
        claim = reader.claim(qname, limit=5)
        assert claim.status_code == 201
        assert [m["id"] for m in claim.json()["messages"]] == [now]
        time.sleep(2.5)
        assert [m["id"] for m in reader.list_messages(qname)] == [delayed]
        claim = reader.claim(qname, limit=5)
        assert claim.status_code == 201
        assert [m["id"] for m in claim.json()["messages"]] == [delayed]

    def test_delay_ignored_on_normal_queue(self, api, make_api, qname):
        api.create_queue(qname)
        [mid] = api.post_messages(qname, [{"body": 1, "delay": 600}])
        reader = make_api(project_id=api.project_id)
        assert [m["id"] for m in reader.list_messages(qname)] == [mid]
        assert reader.claim(qname).status_code == 201

    def test_delay_bounds(self, api, qname):
        api.create_queue(qname, {"_default_message_delay": 10})
        resp = api.post(f"/v2/queues/{qname}/messages",
                        json={"messages": [{"body": 1, "delay": 901}]})
        assert_error(resp, 400, "Invalid API request",
                     "The Delay TTL for a message may not exceed 900 seconds,"
                     "and must be at least 0 seconds long.")

    def test_dead_letter_queue(self, api, make_api, qname):
        dlq = qname + "-dlq"
        api.create_queue(qname, {"_max_claim_count": 2, "_dead_letter_queue": dlq,
                                 "_dead_letter_queue_messages_ttl": 120})
        [mid] = api.post_messages(qname, [{"body": "poison", "ttl": 600}])
        for _ in range(2):
            resp = api.claim(qname)
            assert resp.status_code == 201
            assert [m["id"] for m in resp.json()["messages"]] == [mid]
            assert api.delete(resp.headers["Location"]).status_code == 204
        # third claim: the message has been claimed max times -> moved, nothing claimed
        resp = api.claim(qname)
        assert resp.status_code == 204
        assert api.list_messages(qname, echo="true", include_claimed="true") == []
        moved = api.list_messages(dlq, echo="true", include_claimed="true")
        assert len(moved) == 1
        assert moved[0]["body"] == "poison"
        assert moved[0]["ttl"] == 120
        # errata: the reference leaves it claimed in the DLQ; ours is free to consume
        assert "claim_id" not in moved[0]["href"]
        resp = api.claim(dlq)
        assert resp.status_code == 201
        assert [m["body"] for m in resp.json()["messages"]] == ["poison"]

    def test_no_dead_letter_without_both_keys(self, api, qname):
        api.create_queue(qname, {"_max_claim_count": 1})
        api.post_messages(qname, [{"body": 1}])
        for _ in range(3):
            resp = api.claim(qname)
            assert resp.status_code == 201
            api.delete(resp.headers["Location"])


# ---------------------------------------------------------------------------
# configuration-dependent behaviour
# ---------------------------------------------------------------------------

class TestConfig:

    def test_enable_checksum(self, server_factory, project, qname):
        srv = server_factory({"DEFAULT": {"enable_checksum": "true"}})
        api = Api(srv.url, project)
        bodies = [{"key": "value", "n": 1}, "é", [1, 2.5, None, True]]
        ids = api.post_messages(qname, [{"body": b} for b in bodies])

        def md5(body):  # Python json.dumps defaults: ", " / ": ", ASCII escapes
            return "MD5:" + hashlib.md5(json.dumps(body).encode()).hexdigest()

        for mid, body in zip(ids, bodies):
            m = api.get(f"/v2/queues/{qname}/messages/{mid}").json()
            assert m["checksum"] == md5(body), (body, m)
        listed = api.list_messages(qname, echo="true")
        assert [m["checksum"] for m in listed] == [md5(b) for b in bodies]
        claimed = api.claim(qname, limit=3).json()["messages"]
        assert [m["checksum"] for m in claimed] == [md5(b) for b in bodies]

    def test_transport_limits_from_config(self, server_factory, project, qname):
        srv = server_factory({"transport": {"max_messages_per_page": 5,
                                            "max_queues_per_page": 3,
                                            "default_message_ttl": 120}})
        api = Api(srv.url, project)
        [mid] = api.post_messages(qname, [{"body": 1}])
        assert api.get(f"/v2/queues/{qname}/messages/{mid}").json()["ttl"] == 120
        resp = api.get(f"/v2/queues/{qname}/messages", params={"limit": 6})
        assert_error(resp, 400, "Invalid API request",
                     "Limit must be at least 1 and may not be greater than 5.")
        resp = api.get("/v2/queues", params={"limit": 4})
        assert_error(resp, 400, "Invalid API request",
                     "Limit must be at least 1 and no greater than 3.")

    def test_message_delete_with_claim_id(self, server_factory, project, qname):
        srv = server_factory({"transport": {"message_delete_with_claim_id": "true"}})
        api = Api(srv.url, project)
        ids = api.post_messages(qname, [{"body": 1}, {"body": 2}])
        resp = api.delete(f"/v2/queues/{qname}/messages", params={"ids": ids[0]})
        assert_error(resp, 400, "Invalid API request",
                     'The request should have both "ids" and "claim_ids" parameter in the '
                     'request when message_delete_with_claim_id is True.')
        claim = api.claim(qname, limit=2)
        cid = claim.headers["Location"].rsplit("/", 1)[1]
        resp = api.delete(f"/v2/queues/{qname}/messages",
                          params={"ids": ",".join(ids), "claim_ids": cid})
        assert resp.status_code == 204
        assert api.list_messages(qname, echo="true", include_claimed="true") == []

    def test_restart_keeps_everything(self, server_factory, project, qname):
        srv = server_factory()
        api = Api(srv.url, project)
        api.create_queue(qname, {"a": 1})
        ids = api.post_messages(qname, [{"body": i} for i in range(3)])
        cid = api.claim(qname, limit=1).headers["Location"].rsplit("/", 1)[1]
        assert srv.stop() == 0, "graceful SIGTERM shutdown should exit 0"
        srv.start()
        assert api.get(f"/v2/queues/{qname}").json()["a"] == 1
        every = api.list_messages(qname, echo="true", include_claimed="true")
        assert [m["id"] for m in every] == ids
        assert api.get(f"/v2/queues/{qname}/claims/{cid}").status_code == 200


class TestAdminMode:

    def test_health_needs_admin_role(self, server_factory, project):
        srv = server_factory({"DEFAULT": {"admin_mode": "true"}})
        api = Api(srv.url, project)
        assert_error(api.get("/v2/health"), 403, "Not authorized",
                     "You are not authorized to complete this action.")
        resp = api.get("/v2/health", headers={"X-Roles": "admin"})
        assert resp.status_code == 200
        assert is_json(resp)
        body = resp.json()
        assert body["storage_reachable"] is True
        ops = body["operation_status"]
        for op in ("create_queue", "post_messages", "claim_messages", "list_messages",
                   "delete_messages", "delete_claim", "bulk_delete_messages", "delete_queue"):
            assert ops[op]["succeeded"] is True, (op, ops[op])
            assert isinstance(ops[op]["seconds"], (int, float))
        # the probe cleans up after itself: nothing left in the caller's project
        assert api.get("/v2/queues").json()["queues"] == []

    def test_home_document_in_admin_mode(self, server_factory, project):
        srv = server_factory({"DEFAULT": {"admin_mode": "true"}})
        res = Api(srv.url, project).get("/v2/").json()["resources"]
        assert res["rel/health"]["href"] == "/v2/health"
        assert "rel/queues" in res

    def test_ping_still_open_in_admin_mode(self, server_factory, project):
        srv = server_factory({"DEFAULT": {"admin_mode": "true"}})
        assert Api(srv.url, project).get("/v2/ping").status_code == 204
