"""Topics against the real zaqar-server, over HTTP and WebSocket.

Covered: the topic routes (create, get, update, list, stats, purge, delete,
messages, subscriptions) with the reference's names rules and texts; a topic
and a queue of the same name are two resources; the ``topics:*`` policy rules;
fan-out of every posted message to a real webhook receiver and, through a
``queue:NAME`` subscriber, into a queue that a worker then claims from; the
WebSocket topic actions, and a WebSocket subscriber of a topic fed by HTTP
posts.
"""

import json
import uuid

import pytest

from receivers import Receiver
from test_websocket import WsClient
from zaqar_testlib import Api, assert_error

pytestmark = pytest.mark.timeout(120)

ALLOW_LOOPBACK = {"notification": {"allowed_subscriber_networks": "127.0.0.0/8"},
                  "drivers": {"transport": "wsgi, websocket"}}
NAME_CHARS = "Topic names may only contain ASCII letters, digits, underscores, and dashes."


@pytest.fixture
def topic():
    return "t-" + uuid.uuid4().hex[:10]


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture(scope="module")
def tserver(tmp_path_factory):
    from zaqar_testlib import ZaqarServer
    srv = ZaqarServer(tmp_path_factory.mktemp("zaqar-topics"), ALLOW_LOOPBACK).start()
    yield srv
    if srv.running():
        srv.stop()
    if srv.panicked():
        pytest.fail(f"zaqar-server panicked:\n{srv.log_text()}")


@pytest.fixture
def tapi(tserver, project):
    return Api(tserver.url, project)


def test_topic_lifecycle(tapi, topic):
    resp = tapi.put(f"/v2/topics/{topic}", json={"description": "news", "_default_message_ttl": 300})
    assert resp.status_code == 201 and resp.headers["Location"] == f"/v2/topics/{topic}"
    assert tapi.put(f"/v2/topics/{topic}", json={}).status_code == 204
    meta = tapi.get(f"/v2/topics/{topic}").json()
    assert meta["description"] == "news" and meta["_default_message_ttl"] == 300
    # A topic shows only the reserved keys that apply to it (no claims, dead
    # letters or encryption), as the reference's topic resource does.
    assert sorted(k for k in meta if k.startswith("_")) == [
        "_default_message_delay", "_default_message_ttl", "_max_messages_post_size"]
    resp = tapi.patch(f"/v2/topics/{topic}",
                      headers={"Content-Type": "application/openstack-messaging-v2.0-json-patch"},
                      data=json.dumps([{"op": "replace", "path": "/metadata/description",
                                        "value": "sports"}]))
    assert resp.status_code == 200 and resp.json()["description"] == "sports"

    ids = tapi.post(f"/v2/topics/{topic}/messages",
                    json={"messages": [{"body": {"n": 1}}, {"body": "two", "ttl": 120}]})
    assert ids.status_code == 201, ids.text
    hrefs = ids.json()["resources"]
    assert all(h.startswith(f"/v2/topics/{topic}/messages/") for h in hrefs)
    listed = tapi.get(f"/v2/topics/{topic}/messages", params={"echo": "true"}).json()
    assert [m["body"] for m in listed["messages"]] == [{"n": 1}, "two"]
    assert listed["messages"][0]["ttl"] == 300, "the topic's default ttl"
    assert all(m["href"].startswith(f"/v2/topics/{topic}/messages/") for m in listed["messages"])
    mid = hrefs[0].rsplit("/", 1)[1]
    assert tapi.get(f"/v2/topics/{topic}/messages/{mid}").json()["body"] == {"n": 1}
    many = tapi.get(f"/v2/topics/{topic}/messages", params={"ids": mid}).json()
    assert [m["id"] for m in many["messages"]] == [mid]
    stats = tapi.get(f"/v2/topics/{topic}/stats").json()["messages"]
    assert stats["total"] == 2 and stats["free"] == 2 and stats["claimed"] == 0
    assert stats["oldest"]["href"].startswith(f"/v2/topics/{topic}/messages/")

    assert tapi.delete(f"/v2/topics/{topic}/messages/{mid}").status_code == 204
    resp = tapi.get(f"/v2/topics/{topic}/messages/{mid}")
    assert_error(resp, 404, "Not found", f"Message {mid} does not exist in topic {topic} for project "
                                         f"{tapi.project_id}")
    assert tapi.post(f"/v2/topics/{topic}/purge", json={"resource_types": ["messages"]}).status_code == 204
    assert tapi.get(f"/v2/topics/{topic}/stats").json()["messages"]["total"] == 0
    assert tapi.delete(f"/v2/topics/{topic}").status_code == 204
    assert tapi.get("/v2/topics").json()["topics"] == []


def test_topics_have_no_claims_nor_share(tapi, topic):
    tapi.put(f"/v2/topics/{topic}", json={})
    assert tapi.post(f"/v2/topics/{topic}/claims", json={}).status_code == 404
    assert tapi.post(f"/v2/topics/{topic}/share", json={}).status_code == 404
    assert tapi.post(f"/v2/topics/{topic}", json={}).status_code == 405


def test_topic_names_are_checked_with_the_reference_texts(tapi):
    assert_error(tapi.put("/v2/topics/bad@name", json={}), 400, "Invalid API request", NAME_CHARS)
    # dots pass, as the reference's pattern lets them
    assert tapi.put("/v2/topics/Service.test_topic", json={}).status_code == 201
    assert_error(tapi.get("/v2/topics/bad%20name/stats"), 400, "Invalid API request", NAME_CHARS)
    assert_error(tapi.put("/v2/topics/" + "a" * 65, json={}), 400, "Invalid API request",
                 "Topic names may not be more than 64 characters long.")
    # what a store keeps a topic under is not a name a client can use
    assert_error(tapi.get("/v2/queues/~topic~x"), 400, "Invalid queue identification")


def test_a_topic_and_a_queue_of_one_name_are_two_resources(tapi, topic):
    tapi.create_queue(topic, {"kind": "queue"})
    tapi.put(f"/v2/topics/{topic}", json={"kind": "topic"})
    tapi.post_messages(topic, [{"body": "to the queue"}])
    tapi.post(f"/v2/topics/{topic}/messages", json={"messages": [{"body": "to the topic"}]})
    assert tapi.get(f"/v2/queues/{topic}").json()["kind"] == "queue"
    assert tapi.get(f"/v2/topics/{topic}").json()["kind"] == "topic"
    assert [m["body"] for m in tapi.list_messages(topic, echo="true")] == ["to the queue"]
    on_topic = tapi.get(f"/v2/topics/{topic}/messages", params={"echo": "true"}).json()
    assert [m["body"] for m in on_topic["messages"]] == ["to the topic"]

    queues = tapi.get("/v2/queues", params={"with_count": "true"}).json()
    assert [q["name"] for q in queues["queues"]] == [topic] and queues["count"] == 1
    topics = tapi.get("/v2/topics", params={"detailed": "true"}).json()
    assert [(t["name"], t["href"], t["metadata"]["kind"]) for t in topics["topics"]] == [
        (topic, f"/v2/topics/{topic}", "topic")]
    assert "_max_messages_post_size" in topics["topics"][0]["metadata"]
    assert "_max_claim_count" not in topics["topics"][0]["metadata"]
    assert topics["links"][0]["rel"] == "next"
    assert tapi.delete(f"/v2/topics/{topic}").status_code == 204
    assert tapi.get(f"/v2/queues/{topic}").json()["kind"] == "queue"


def test_topic_listing_pages(tapi):
    names = [f"t{i:02d}" for i in range(5)]
    for n in names:
        tapi.put(f"/v2/topics/{n}", json={})
        tapi.create_queue(n)
    page = tapi.get("/v2/topics", params={"limit": 2}).json()
    assert [t["name"] for t in page["topics"]] == names[:2]
    nxt = page["links"][0]["href"]
    assert "marker=t01" in nxt
    page = tapi.get(nxt).json()
    assert [t["name"] for t in page["topics"]] == names[2:4]
    page = tapi.get("/v2/topics", params={"marker": "t03"}).json()
    assert [t["name"] for t in page["topics"]] == ["t04"]
    # the queue listing ends with the queues, whatever the limit
    queues = tapi.get("/v2/queues", params={"limit": 20}).json()
    assert [q["name"] for q in queues["queues"]] == names


def test_topic_policy_rules(server_factory, tmp_path, project, topic):
    policy = tmp_path / "topics-policy.yaml"
    policy.write_text('"topics:create": "!"\n"topics:get_all": "role:admin"\n')
    srv = server_factory({"oslo_policy": {"policy_file": str(policy)}})
    api = Api(srv.url, project)
    assert_error(api.put(f"/v2/topics/{topic}", json={}), 403, "Not authorized")
    assert api.put(f"/v2/queues/{topic}", json={}).status_code == 201
    assert api.get("/v2/topics").status_code == 403
    assert api.get("/v2/topics", headers={"X-Roles": "admin"}).status_code == 200


def test_fan_out_to_a_webhook_and_a_queue(tapi, topic, receiver):
    tapi.put(f"/v2/topics/{topic}", json={})
    hook = tapi.post(f"/v2/topics/{topic}/subscriptions",
                     json={"subscriber": receiver.url + "/hook", "ttl": 3600})
    assert hook.status_code == 201, hook.text
    copy = tapi.post(f"/v2/topics/{topic}/subscriptions", json={"subscriber": "queue:jobs", "ttl": 3600})
    assert copy.status_code == 201, copy.text
    subs = tapi.get(f"/v2/topics/{topic}/subscriptions").json()["subscriptions"]
    assert sorted(s["subscriber"] for s in subs) == sorted([receiver.url + "/hook", "queue:jobs"])
    assert all(s["source"] == topic for s in subs)
    sid = copy.json()["subscription_id"]
    got = tapi.get(f"/v2/topics/{topic}/subscriptions/{sid}").json()
    assert got["source"] == topic and got["confirmed"] is True

    tapi.post(f"/v2/topics/{topic}/messages",
              json={"messages": [{"body": {"order": 1}, "ttl": 300}, {"body": {"order": 2}, "ttl": 300}]})
    delivered = receiver.wait_for(2)
    bodies = sorted((json.loads(r["body"]) for r in delivered), key=lambda b: b["body"]["order"])
    assert bodies == [
        {"ttl": 300, "body": {"order": 1}, "Message_Type": "Notification", "topic_name": topic},
        {"ttl": 300, "body": {"order": 2}, "Message_Type": "Notification", "topic_name": topic},
    ]
    # a worker claims the copies from the queue
    claimed = []
    for _ in range(100):
        resp = tapi.claim("jobs", limit=10)
        if resp.status_code == 201:
            claimed.extend(m["body"] for m in resp.json()["messages"])
        if len(claimed) == 2:
            break
        import time
        time.sleep(0.1)
    assert sorted(claimed, key=lambda b: b["order"]) == [{"order": 1}, {"order": 2}]


def test_queue_subscribers_only_on_topics(tapi, qname, topic):
    resp = tapi.post(f"/v2/queues/{qname}/subscriptions", json={"subscriber": "queue:other"})
    assert resp.status_code == 400 and "subscriber type" in resp.json()["description"]
    resp = tapi.post(f"/v2/topics/{topic}/subscriptions", json={"subscriber": "queue:bad.name!"})
    assert resp.status_code == 400 and "queue: subscriber" in resp.json()["description"]


def test_websocket_topic_actions(tserver, project, topic):
    ws = WsClient(tserver.ws_url, project)
    http = Api(tserver.url, project)
    try:
        assert ws.call("topic_create", {"topic_name": topic}) == (201, f"Topic {topic} created.")
        status, body = ws.call("topic_list")
        assert status == 200 and [t["name"] for t in body["topics"]] == [topic]
        assert ws.call("queue_list")[1]["queues"] == []
        # The metadata as stored, as queue_get answers over WebSocket.
        assert ws.call("topic_get", {"topic_name": topic}) == (200, {})
        status, body = ws.call("topic_message_post", {"topic_name": topic,
                                                      "messages": [{"body": "over ws", "ttl": 120}]})
        assert status == 201, body
        [mid] = body["message_ids"]
        status, body = ws.call("topic_message_list", {"topic_name": topic, "echo": True})
        assert status == 200 and [m["id"] for m in body["messages"]] == [mid]
        status, body = ws.call("topic_message_get", {"topic_name": topic, "message_id": mid})
        assert status == 200 and body["messages"]["body"] == "over ws"
        status, body = ws.call("topic_get_stats", {"topic_name": topic})
        assert status == 200 and body["messages"]["total"] == 1
        status, body = ws.call("topic_message_get", {"topic_name": "bad@name", "message_id": mid})
        assert status == 400 and body["description"] == NAME_CHARS

        # the connection subscribes to the topic and receives HTTP posts
        status, body = ws.call("topic_subscription_create", {"topic_name": topic, "ttl": 600})
        assert status == 201, body
        sid = body["subscription_id"]
        status, body = ws.call("topic_subscription_get", {"topic_name": topic, "subscription_id": sid})
        assert status == 200 and body["source"] == topic
        ids = http.post(f"/v2/topics/{topic}/messages",
                        json={"messages": [{"body": {"n": 1}, "ttl": 120}]}).json()["resources"]
        assert len(ids) == 1
        pushed = ws.recv_doc()
        assert pushed == {"body": {"n": 1}, "ttl": 120, "topic_name": topic, "Message_Type": "Notification"}
        assert ws.call("topic_subscription_delete", {"topic_name": topic, "subscription_id": sid})[0] == 204
        assert ws.call("topic_purge", {"topic_name": topic})[0] == 204
        assert ws.call("topic_delete", {"topic_name": topic}) == (204, f"Topic {topic} removed.")
        assert ws.call("topic_list")[1]["topics"] == []
    finally:
        ws.close()


def test_topics_through_pooling(server_factory, tmp_path, project, receiver):
    """With pools, a topic is placed on a pool as a queue is, apart from the
    queue of the same name, and its fan-out (webhook and queue copy) works
    across pools."""
    srv = server_factory({"DEFAULT": {"admin_mode": "true", "pooling": "true"},
                          "drivers": {"message_store": "sqlite", "management_store": "sqlite"},
                          **{k: v for k, v in ALLOW_LOOPBACK.items() if k == "notification"}})
    admin = Api(srv.url, project)
    for name in ("a", "b"):
        resp = admin.put(f"/v2/pools/{name}", headers={"X-Roles": "admin"},
                         json={"uri": f"sqlite://{tmp_path / (name + '.sqlite')}", "weight": 1})
        assert resp.status_code == 201, resp.text
    api = Api(srv.url, project)
    assert api.put("/v2/topics/news", json={}).status_code == 201
    assert api.put("/v2/queues/news", json={}).status_code == 201
    assert api.post("/v2/topics/news/subscriptions",
                    json={"subscriber": receiver.url + "/p", "ttl": 600}).status_code == 201
    assert api.post("/v2/topics/news/subscriptions",
                    json={"subscriber": "queue:work", "ttl": 600}).status_code == 201
    api.post("/v2/topics/news/messages", json={"messages": [{"body": "pooled"}]})
    [delivered] = receiver.wait_for(1)
    assert json.loads(delivered["body"])["topic_name"] == "news"
    assert [t["name"] for t in api.get("/v2/topics").json()["topics"]] == ["news"]
    assert api.list_messages("news", echo="true") == []
    import time
    for _ in range(100):
        got = api.list_messages("work", echo="true")
        if got:
            break
        time.sleep(0.1)
    assert [m["body"] for m in got] == ["pooled"]
