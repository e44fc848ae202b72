"""The WebSocket API against the real zaqar-server.

One server per module serves HTTP and WebSocket side by side
(``[drivers] transport = wsgi, websocket``), so the tests can compare the two
transports and post over one while listening on the other.

Covered: python-zaqarclient's own WebSocket transport (a queue, message and
claim cycle), a raw client in JSON and MessagePack for every action of the
reference's schema, every framing error, an HTTP/WebSocket error-parity table,
WebSocket subscriptions fed by HTTP posts, policy, keystone mode without a
validator, frame-size limit, 1,000 idle connections with bounded RSS, a slow
reader cut off, and shutdown closing connections with 1001.
"""

import concurrent.futures
import json
import resource
import socket
import time
import uuid

import msgpack
import pytest
import requests
import websocket

from zaqar_testlib import Api, ZaqarServer

pytestmark = pytest.mark.timeout(300)

WS_OPTIONS = {"drivers": {"transport": "wsgi, websocket"}}


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

class WsClient:
    """A raw WebSocket client speaking JSON (text) or MessagePack (binary)."""

    def __init__(self, url, project=None, encoding="json", client_id=None, **kwargs):
        self.url = url
        self.ws = websocket.create_connection(url, timeout=30, **kwargs)
        self.encoding = encoding
        self.headers = {"Client-ID": client_id or str(uuid.uuid4())}
        if project is not None:
            self.headers["X-Project-ID"] = project

    def send_doc(self, doc):
        if self.encoding == "json":
            self.ws.send(json.dumps(doc))
        else:
            self.ws.send_binary(msgpack.packb(doc))

    def recv_doc(self):
        opcode, data = self.ws.recv_data()
        if self.encoding == "json":
            assert opcode == websocket.ABNF.OPCODE_TEXT, opcode
            return json.loads(data)
        assert opcode == websocket.ABNF.OPCODE_BINARY, opcode
        return msgpack.unpackb(data)

    def call(self, action, body=None, headers=None, omit_body=False):
        hdrs = dict(self.headers)
        hdrs.update(headers or {})
        doc = {"action": action, "headers": {k: v for k, v in hdrs.items() if v is not None}}
        if not omit_body:
            doc["body"] = body if body is not None else {}
        self.send_doc(doc)
        resp = self.recv_doc()
        assert resp["request"]["action"] == action, resp
        assert resp["request"]["api"] == "v2", resp
        assert resp["headers"]["status"] < 500 or resp["headers"]["status"] == 501, resp
        return resp["headers"]["status"], resp["body"]

    def raw(self, data, binary=False):
        if binary:
            self.ws.send_binary(data)
        else:
            self.ws.send(data)
        opcode, payload = self.ws.recv_data()
        return json.loads(payload) if opcode == websocket.ABNF.OPCODE_TEXT else msgpack.unpackb(payload)

    def close(self):
        self.ws.close()


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def recv_until_closed(ws, limit=100000):
    """Reads frames until the connection closes; returns (frames, close code)."""
    frames = 0
    ws.settimeout(30)
    for _ in range(limit):
        try:
            opcode, data = ws.recv_data(control_frame=True)
        except (websocket.WebSocketConnectionClosedException, ConnectionError, OSError):
            return frames, None
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            code = int.from_bytes(data[:2], "big") if len(data) >= 2 else None
            return frames, code
        if opcode in (websocket.ABNF.OPCODE_TEXT, websocket.ABNF.OPCODE_BINARY):
            frames += 1
    raise AssertionError("connection never closed")


@pytest.fixture(scope="module")
def wsserver(tmp_path_factory):
    srv = ZaqarServer(tmp_path_factory.mktemp("zaqar-ws"), WS_OPTIONS).start()
    yield srv
    if srv.running():
        srv.stop()
    if srv.panicked():
        pytest.fail(f"zaqar-server panicked:\n{srv.log_text()}")


@pytest.fixture
def proj():
    return "proj-" + uuid.uuid4().hex[:12]


@pytest.fixture
def q():
    return "q-" + uuid.uuid4().hex[:10]


@pytest.fixture(params=["json", "msgpack"])
def ws(request, wsserver, proj):
    client = WsClient(wsserver.ws_url, proj, request.param)
    yield client
    client.close()


@pytest.fixture
def http(wsserver, proj):
    return Api(wsserver.url, proj)


# ---------------------------------------------------------------------------
# python-zaqarclient's WebSocket transport
# ---------------------------------------------------------------------------

def test_zaqarclient_websocket_transport_cycle(wsserver, proj, q):
    from zaqarclient import transport
    from zaqarclient.transport import errors as zerrors
    from zaqarclient.transport import request as zrequest

    conf = {"auth_opts": {"options": {"os_auth_token": "unused-in-noauth", "os_project_id": proj}}}
    endpoint = wsserver.ws_url
    with transport.get_transport_for(endpoint, options=conf) as trans:
        assert type(trans).__name__ == "WebsocketTransport"

        def send(op, **body):
            req = zrequest.Request(endpoint, op, content=json.dumps(body))
            resp = trans.send(req)
            return resp.status_code, json.loads(resp.content)

        assert send("queue_create", queue_name=q) == (201, f"Queue {q} created.")
        status, body = send("message_post", queue_name=q,
                            messages=[{"body": {"n": i}, "ttl": 300} for i in range(3)])
        assert status == 201 and len(body["message_ids"]) == 3
        ids = body["message_ids"]
        status, body = send("message_list", queue_name=q, echo=True)
        assert status == 200
        assert [m["body"] for m in body["messages"]] == [{"n": 0}, {"n": 1}, {"n": 2}]
        status, body = send("message_get", queue_name=q, message_id=ids[0])
        assert status == 200 and body["messages"]["id"] == ids[0]
        status, claim = send("claim_create", queue_name=q, ttl=120, grace=60, limit=2)
        assert status == 201 and len(claim["messages"]) == 2
        cid = claim["claim_id"]
        assert all(m["claim_id"] == cid for m in claim["messages"])
        status, body = send("claim_get", queue_name=q, claim_id=cid)
        assert status == 200 and body["ttl"] == 120 and len(body["messages"]) == 2
        assert send("claim_update", queue_name=q, claim_id=cid, ttl=200)[0] == 204
        assert send("claim_get", queue_name=q, claim_id=cid)[1]["ttl"] == 200
        claimed = claim["messages"][0]["id"]
        # Deleting a claimed message without its claim is refused (403 -> ForbiddenError).
        with pytest.raises(zerrors.ForbiddenError):
            send("message_delete", queue_name=q, message_id=claimed)
        assert send("message_delete", queue_name=q, message_id=claimed, claim_id=cid)[0] == 204
        assert send("claim_delete", queue_name=q, claim_id=cid)[0] == 204
        with pytest.raises(zerrors.ResourceNotFound):
            send("claim_get", queue_name=q, claim_id=cid)
        status, stats = send("queue_get_stats", queue_name=q)
        assert status == 200 and stats["messages"]["total"] == 2
        # A validation error reaches the client with the api core's text.
        with pytest.raises(zerrors.MalformedRequest) as err:
            send("claim_create", queue_name=q, ttl=5)
        assert "The TTL for a claim may not exceed" in str(err.value)
        assert send("queue_delete", queue_name=q) == (204, f"Queue {q} removed.")
        status, body = send("queue_list")
        assert status == 200 and q not in [x["name"] for x in body["queues"]]


# ---------------------------------------------------------------------------
# every action, JSON and MessagePack
# ---------------------------------------------------------------------------

def test_queue_actions(ws, q):
    assert ws.call("queue_create", {"queue_name": q, "metadata": {"color": "blue"}}) == (201, f"Queue {q} created.")
    assert ws.call("queue_create", {"queue_name": q})[0] == 204
    # a null metadata is none, as the reference reads it
    assert ws.call("queue_create", {"queue_name": q + "-n", "metadata": None}) == (201, f"Queue {q}-n created.")
    assert ws.call("queue_create", {"queue_name": q + "-e", "metadata": []}) == (201, f"Queue {q}-e created.")
    # As the reference's WebSocket API: the metadata as stored, without the
    # reserved defaults HTTP shows (here and in a detailed listing).
    assert ws.call("queue_get", {"queue_name": q}) == (200, {"color": "blue"})
    assert ws.call("queue_get", {"queue_name": q + "-missing"}) == (200, {})
    status, body = ws.call("queue_list", {"detailed": True, "limit": 20})
    assert status == 200
    assert {"name": q, "metadata": {"color": "blue"}} in body["queues"]
    status, body = ws.call("queue_list", omit_body=True)
    assert status == 200 and body["queues"][0]["name"] == q and "metadata" not in body["queues"][0]
    assert ws.call("queue_get_stats", {"queue_name": q}) == (
        200, {"messages": {"claimed": 0, "free": 0, "total": 0}})
    # A missing queue's zero stats come with 404, as the reference's.
    assert ws.call("queue_get_stats", {"queue_name": q + "-missing"}) == (
        404, {"messages": {"claimed": 0, "free": 0, "total": 0}})
    ws.call("message_post", {"queue_name": q, "messages": [{"body": 1}, {"body": 2}]})
    status, stats = ws.call("queue_get_stats", {"queue_name": q})
    assert stats["messages"]["total"] == 2 and set(stats["messages"]["oldest"]) == {"id", "age", "created"}
    assert ws.call("queue_purge", {"queue_name": q, "resource_types": ["messages"]}) == (204, {})
    assert ws.call("queue_get_stats", {"queue_name": q})[1]["messages"]["total"] == 0
    assert ws.call("queue_purge", {"queue_name": q}) == (204, {})
    assert ws.call("queue_delete", {"queue_name": q}) == (204, f"Queue {q} removed.")
    assert q not in [x["name"] for x in ws.call("queue_list", {})[1]["queues"]]


def test_message_actions(ws, q):
    status, body = ws.call("message_post", {"queue_name": q, "messages": [
        {"body": {"z": 1, "a": [1, 2]}, "ttl": 120}, {"body": "two"}, {"body": None}]})
    assert status == 201
    ids = body["message_ids"]
    assert len(ids) == 3
    # own messages are hidden unless echo
    assert ws.call("message_list", {"queue_name": q})[1] == {"messages": []}
    status, body = ws.call("message_list", {"queue_name": q, "echo": True, "limit": 2})
    assert status == 200 and [m["id"] for m in body["messages"]] == ids[:2]
    m = body["messages"][0]
    assert set(m) == {"id", "claim_id", "ttl", "age", "body"}
    assert m["body"] == {"z": 1, "a": [1, 2]} and list(m["body"]) == ["z", "a"] and m["ttl"] == 120
    other = WsClient(ws.url, ws.headers["X-Project-ID"], ws.encoding)
    try:
        assert len(other.call("message_list", {"queue_name": q})[1]["messages"]) == 3
    finally:
        other.close()
    status, body = ws.call("message_get", {"queue_name": q, "message_id": ids[1]})
    assert status == 200 and body["messages"]["body"] == "two"
    status, body = ws.call("message_get_many", {"queue_name": q, "message_ids": ids[:2]})
    assert status == 200 and sorted(x["id"] for x in body["messages"]) == sorted(ids[:2])
    assert ws.call("message_delete", {"queue_name": q, "message_id": ids[0]}) == (204, {})
    assert ws.call("message_get", {"queue_name": q, "message_id": ids[0]})[0] == 404
    assert ws.call("message_delete_many", {"queue_name": q, "message_ids": [ids[1]]}) == (204, {})
    status, body = ws.call("message_delete_many", {"queue_name": q, "pop": 5})
    assert status == 200 and [x["id"] for x in body["messages"]] == [ids[2]]
    assert body["messages"][0]["body"] is None
    assert ws.call("message_list", {"queue_name": q, "echo": True})[1] == {"messages": []}


def test_claim_actions(ws, q):
    assert ws.call("claim_create", {"queue_name": q}) == (204, {"claim_id": None})
    ws.call("message_post", {"queue_name": q, "messages": [{"body": i} for i in range(3)]})
    status, claim = ws.call("claim_create", {"queue_name": q, "limit": 2, "ttl": 60, "grace": 60})
    assert status == 201 and len(claim["messages"]) == 2
    cid = claim["claim_id"]
    status, body = ws.call("claim_get", {"queue_name": q, "claim_id": cid})
    assert status == 200 and set(body) == {"age", "ttl", "messages"} and body["ttl"] == 60
    assert ws.call("claim_update", {"queue_name": q, "claim_id": cid, "ttl": 90}) == (204, f"Claim {cid} updated.")
    assert ws.call("claim_get", {"queue_name": q, "claim_id": cid})[1]["ttl"] == 90
    status, body = ws.call("message_list", {"queue_name": q, "echo": True, "include_claimed": True})
    assert sum(1 for m in body["messages"] if m["claim_id"] == cid) == 2
    mid = claim["messages"][0]["id"]
    status, body = ws.call("message_delete", {"queue_name": q, "message_id": mid})
    assert status == 403 and body["description"].startswith("This message is claimed")
    assert ws.call("message_delete", {"queue_name": q, "message_id": mid, "claim_id": cid}) == (204, {})
    assert ws.call("claim_delete", {"queue_name": q, "claim_id": cid}) == (204, f"Claim {cid} deleted.")
    status, body = ws.call("claim_get", {"queue_name": q, "claim_id": cid})
    # The reference's endpoint text in `error`, its exception's in `exception`.
    assert status == 404 and body["error"] == f"Claim {cid} does not exist."
    assert body["exception"] == (
        f"Claim {cid} does not exist in queue {q} for project {ws.headers['X-Project-ID']}")


def test_node_and_auth_actions(ws):
    assert ws.call("ping_node", omit_body=True) == (204, {})
    status, home = ws.call("get_home_doc", omit_body=True)
    assert status == 200 and "rel/queues" in home["resources"]
    status, body = ws.call("authenticate", headers={"X-Auth-Token": "anything"}, omit_body=True)
    assert status == 200 and "not required" in body["message"]
    # health exists only in admin mode, as over HTTP (issue 12: the action
    # once ran the write probe for an admin of a server without admin_mode)
    for headers in [{}, {"X-Roles": "admin"}]:
        status, body = ws.call("check_node_health", headers=headers, omit_body=True)
        assert status == 404, (status, body)


def test_health_in_admin_mode_is_for_admins(server_factory):
    srv = server_factory(dict(WS_OPTIONS, DEFAULT={"admin_mode": "true"}))
    ws = WsClient(srv.ws_url, project="p-" + uuid.uuid4().hex)
    try:
        status, body = ws.call("check_node_health", omit_body=True)
        assert status == 403 and body["title"] == "Not authorized"
        status, body = ws.call("check_node_health", headers={"X-Roles": "admin"}, omit_body=True)
        assert status == 200 and body["storage_reachable"] is True
    finally:
        ws.close()


@pytest.mark.parametrize("action,body,admin_only", [
    ("pool_list", {"pool_name": "p"}, True),
    ("pool_create", {"pool_name": "p", "weight": 1, "uri": "redis://x"}, True),
    ("pool_update", {"pool_name": "p", "weight": 2}, True),
    ("pool_get", {"pool_name": "p"}, True),
    ("pool_delete", {"pool_name": "p"}, True),
    ("flavor_list", {"flavor_name": "f"}, False),
    ("flavor_create", {"flavor_name": "f", "pool_list": ["p"]}, True),
    ("flavor_update", {"flavor_name": "f"}, True),
    ("flavor_get", {"flavor_name": "f"}, False),
    ("flavor_delete", {"flavor_name": "f"}, True),
])
def test_pool_and_flavor_actions_are_not_served_without_pooling(ws, action, body, admin_only):
    # as their HTTP routes: a server without pooling does not have them
    for headers in [{}, {"X-Roles": "admin"}]:
        status, resp = ws.call(action, body, headers=headers)
        assert status == 404, (status, resp)


def test_subscription_actions(ws, q):
    status, body = ws.call("subscription_create", {"queue_name": q, "ttl": 3600})
    assert status == 201 and body["message"] == f"Subscription {q} created."
    sid = body["subscription_id"]
    # subscribing twice on one connection keeps one subscription: the second
    # is refused with the reference's 409 and words
    assert ws.call("subscription_create", {"queue_name": q}) == (409, f"Subscription {q} not created.")
    # an empty subscriber is no subscriber: the connection (as the reference)
    assert ws.call("subscription_create", {"queue_name": q, "subscriber": ""})[0] == 409
    status, sub = ws.call("subscription_get", {"queue_name": q, "subscription_id": sid})
    assert status == 200 and sub["id"] == sid and sub["source"] == q and sub["ttl"] == 3600
    status, body = ws.call("subscription_list", {"queue_name": q})
    assert status == 200 and [s["id"] for s in body["subscriptions"]] == [sid]
    # the paging fields read as the reference reads them (its int())
    assert ws.call("subscription_list", {"queue_name": q, "limit": "1"})[0] == 200
    status, body = ws.call("subscription_list", {"queue_name": q, "limit": "x"})
    assert status == 400 and body["exception"] == "invalid literal for int() with base 10: 'x'"
    status, body = ws.call("subscription_list", {"queue_name": q, "limit": 21})
    assert status == 400 and "Limit must be at least 1" in body["exception"], body
    assert ws.call("subscription_delete", {"queue_name": q, "subscription_id": sid}) == (
        204, f"Subscription {sid} removed.")
    assert ws.call("subscription_get", {"queue_name": q, "subscription_id": sid})[0] == 404
    status, body = ws.call("subscription_create", {"queue_name": q, "ttl": 10})
    assert status == 400 and body["description"] == "The TTL for a subscription must be at least 60 seconds long."
    # over WebSocket a refused subscription creates no queue (the reference
    # checks the document first there; over HTTP it creates the queue first)
    assert ws.call("subscription_create", {"queue_name": q + "-none", "ttl": 10})[0] == 400
    assert q + "-none" not in [x["name"] for x in ws.call("queue_list", {"limit": 20})[1]["queues"]]
    # a subscription with a subscriber is stored through the api core, as over HTTP
    status, body = ws.call("subscription_create", {"queue_name": q, "subscriber": "mailto:ops@example.com",
                                                   "ttl": 600, "options": {"from": "zaqar@example.com"}})
    assert status == 201, body
    sid = body["subscription_id"]
    status, sub = ws.call("subscription_get", {"queue_name": q, "subscription_id": sid})
    assert status == 200 and sub["subscriber"] == "mailto:ops@example.com" and sub["ttl"] == 600
    assert [s["id"] for s in ws.call("subscription_list", {"queue_name": q})[1]["subscriptions"]] == [sid]
    assert ws.call("subscription_delete", {"queue_name": q, "subscription_id": sid})[0] == 204
    status, body = ws.call("subscription_get", {"queue_name": q, "subscription_id": sid})
    assert status == 404 and body["exception"] == f"Subscription {sid} does not exist"
    assert body["error"] == f"Subscription {sid} for queue {q} does not exist."
    status, body = ws.call("subscription_create", {"queue_name": q, "subscriber": "gopher://x"})
    assert status == 400 and "subscriber type" in body["description"], body


def test_reference_wording_of_message_actions(ws, q):
    # ids that name no message: an empty list, not HTTP's 404
    assert ws.call("message_get_many", {"queue_name": q + "-none", "message_ids": ["a", "b"]}) == (
        200, {"messages": []})
    # a field's error reads as the reference's BadRequest: "Bad request. ..."
    status, body = ws.call("message_post", {"queue_name": q, "messages": [{"body": 1, "ttl": "200"}]})
    assert status == 400
    assert body["exception"] == 'Bad request. The value of the "ttl" field must be a int.'
    status, body = ws.call("message_post", {"queue_name": q, "messages": [{"ttl": 200}]})
    assert (status, body["exception"]) == (400, 'Bad request. Missing "body" field.')
    # as over HTTP, the description has no prefix
    assert body["description"] == 'Missing "body" field.'


# ---------------------------------------------------------------------------
# framing errors
# ---------------------------------------------------------------------------

def test_framing_errors(wsserver, proj):
    c = WsClient(wsserver.ws_url, proj)
    try:
        r = c.raw("{not json")
        assert r["headers"] == {"status": 400}
        assert r["body"]["error"].startswith("Can't decode text (JSON) request. ")
        assert r["request"] == {"action": None, "body": {}, "headers": {}, "api": "v2"}
        r = c.raw(b"\xc1\xc1", binary=True)
        assert r["headers"] == {"status": 400}
        assert r["body"]["error"].startswith("Can't decode binary (MessagePack) request. ")
        # one document, then bytes: undecodable, as for the reference's unpackb
        r = c.raw(b"123", binary=True)
        assert r["body"] == {"error": "Can't decode binary (MessagePack) request. "
                                      "ExtraData: unpack(b) received extra data."}
        for text in ("[1, 2]", "42", '"x"', "null"):
            r = c.raw(text)
            assert r["headers"] == {"status": 400}
            assert r["body"] == {"error": "Unexpected body type. Expected dict or dict like."}
        r = c.raw(msgpack.packb([1]), binary=True)
        assert r["body"] == {"error": "Unexpected body type. Expected dict or dict like."}
        r = c.raw(json.dumps({"action": "nope", "headers": c.headers}))
        assert r["headers"] == {"status": 400} and r["body"] == {"error": "nope is not a valid action"}
        assert r["request"]["action"] == "nope"
        r = c.raw(json.dumps({"headers": c.headers}))
        assert r["body"] == {"error": "None is not a valid action"}
        r = c.raw(msgpack.packb({"action": "topic_claim_create", "headers": c.headers}), binary=True)
        assert r["body"] == {"error": "topic_claim_create is not a valid action"}
        schema_invalid = [
            {"action": "queue_list"},                                     # no headers
            {"action": "queue_list", "headers": {"Client-ID": c.headers["Client-ID"]}},  # no project
            {"action": "queue_get", "headers": c.headers},                # no body
            {"action": "queue_get", "headers": c.headers, "body": {}},    # no queue_name
            {"action": "queue_get", "headers": c.headers, "body": {"queue_name": 5}},
            {"action": "queue_list", "headers": c.headers, "body": {"limit": "5"}},
            {"action": "message_post", "headers": c.headers, "body": {"queue_name": "q", "messages": {}}},
            {"action": "claim_create", "headers": c.headers, "body": {"queue_name": "q", "ttl": 1.5}},
            {"action": "queue_list", "headers": dict(c.headers, **{"X-Project-ID": 7})},
            {"action": "authenticate", "headers": {"X-Project-ID": "p"}},
        ]
        for doc in schema_invalid:
            r = c.raw(json.dumps(doc))
            assert r["headers"] == {"status": 400}, doc
            assert r["body"] == {"error": "Schema validation failed."}, doc
        # the connection survives every framing error
        assert c.call("queue_list")[0] == 200
    finally:
        c.close()


def test_oversized_frame_closes_with_1009(wsserver, proj):
    c = WsClient(wsserver.ws_url, proj)
    try:
        try:
            c.ws.send("x" * (2 * 1024 * 1024))
        except (ConnectionError, websocket.WebSocketConnectionClosedException):
            # The server may close (1009, then a reset) while the client is
            # still writing the frame: refused all the same.
            frames, code = 0, None
        else:
            frames, code = recv_until_closed(c.ws)
        assert frames == 0 and code in (1009, None)
    finally:
        c.close()
    c = WsClient(wsserver.ws_url, proj)  # the server goes on
    try:
        assert c.call("queue_list")[0] == 200
    finally:
        c.close()


# ---------------------------------------------------------------------------
# HTTP / WebSocket error parity
# ---------------------------------------------------------------------------

BAD_CLIENT = "not-a-uuid"
LONG_Q = "a" * 65


QUEUE_CHARS = "Queue names may only contain ASCII letters, digits, underscores, and dashes."

# Where the reference's WebSocket endpoints word a refusal their own way:
# case name -> (exception, error). HTTP masks why a name is refused.
WS_WORDING = {
    "queue name too long": ("Queue names may not be more than 64 characters long.",) * 2,
    "queue name chars": (QUEUE_CHARS,) * 2,
    "long project": ("Project ids may not be more than 256 characters long.",) * 2,
}


def parity_cases(q):
    ids21 = [uuid.uuid4().hex for _ in range(21)]
    return [
        # (name, ws action, ws body, ws header overrides, http method, http path, http kwargs)
        ("queue name too long", "queue_create", {"queue_name": LONG_Q}, {}, "PUT", f"/v2/queues/{LONG_Q}", {}),
        ("queue name chars", "queue_get", {"queue_name": "a@b"}, {}, "GET", "/v2/queues/a@b", {}),
        ("queue list limit", "queue_list", {"limit": 0}, {}, "GET", "/v2/queues", {"params": {"limit": 0}}),
        ("queue list limit high", "queue_list", {"limit": 21}, {}, "GET", "/v2/queues", {"params": {"limit": 21}}),
        ("metadata ttl", "queue_create", {"queue_name": q, "metadata": {"_default_message_ttl": 10}}, {},
         "PUT", f"/v2/queues/{q}", {"json": {"_default_message_ttl": 10}}),
        ("metadata post size type", "queue_create", {"queue_name": q, "metadata": {"_max_messages_post_size": "x"}}, {},
         "PUT", f"/v2/queues/{q}", {"json": {"_max_messages_post_size": "x"}}),
        ("metadata not object", "queue_create", {"queue_name": q, "metadata": [1]}, {},
         "PUT", f"/v2/queues/{q}", {"json": [1]}),
        ("purge types", "queue_purge", {"queue_name": q, "resource_types": ["x"]}, {},
         "POST", f"/v2/queues/{q}/purge", {"json": {"resource_types": ["x"]}}),
        ("post ttl", "message_post", {"queue_name": q, "messages": [{"body": 1, "ttl": 10}]}, {},
         "POST", f"/v2/queues/{q}/messages", {"json": {"messages": [{"body": 1, "ttl": 10}]}}),
        ("post empty", "message_post", {"queue_name": q, "messages": []}, {},
         "POST", f"/v2/queues/{q}/messages", {"json": {"messages": []}}),
        ("post no body", "message_post", {"queue_name": q, "messages": [{"ttl": 60}]}, {},
         "POST", f"/v2/queues/{q}/messages", {"json": {"messages": [{"ttl": 60}]}}),
        ("post not object", "message_post", {"queue_name": q, "messages": [1]}, {},
         "POST", f"/v2/queues/{q}/messages", {"json": {"messages": [1]}}),
        ("post ttl type", "message_post", {"queue_name": q, "messages": [{"body": 1, "ttl": "x"}]}, {},
         "POST", f"/v2/queues/{q}/messages", {"json": {"messages": [{"body": 1, "ttl": "x"}]}}),
        ("post huge integer", "message_post", {"queue_name": q, "messages": [{"body": 1, "ttl": 10**30}]}, {},
         "POST", f"/v2/queues/{q}/messages",
         {"data": '{"messages": [{"body": 1, "ttl": 1000000000000000000000000000000}]}'}),
        ("post too large", "message_post", {"queue_name": q, "messages": [{"body": "x" * 262200}]}, {},
         "POST", f"/v2/queues/{q}/messages", {"json": {"messages": [{"body": "x" * 262200}]}}),
        ("list limit", "message_list", {"queue_name": q, "limit": 21}, {},
         "GET", f"/v2/queues/{q}/messages", {"params": {"limit": 21}}),
        ("get many too many", "message_get_many", {"queue_name": q, "message_ids": ids21}, {},
         "GET", f"/v2/queues/{q}/messages", {"params": {"ids": ",".join(ids21)}}),
        ("get missing", "message_get", {"queue_name": q, "message_id": ids21[0]}, {},
         "GET", f"/v2/queues/{q}/messages/{ids21[0]}", {}),
        ("delete many nothing", "message_delete_many", {"queue_name": q}, {},
         "DELETE", f"/v2/queues/{q}/messages", {}),
        ("delete many both", "message_delete_many", {"queue_name": q, "message_ids": ["a"], "pop": 1}, {},
         "DELETE", f"/v2/queues/{q}/messages", {"params": {"ids": "a", "pop": 1}}),
        ("pop zero", "message_delete_many", {"queue_name": q, "pop": 0}, {},
         "DELETE", f"/v2/queues/{q}/messages", {"params": {"pop": 0}}),
        ("pop high", "message_delete_many", {"queue_name": q, "pop": 21}, {},
         "DELETE", f"/v2/queues/{q}/messages", {"params": {"pop": 21}}),
        ("delete ids too many", "message_delete_many", {"queue_name": q, "message_ids": ids21}, {},
         "DELETE", f"/v2/queues/{q}/messages", {"params": {"ids": ",".join(ids21)}}),
        ("claim ttl", "claim_create", {"queue_name": q, "ttl": 10}, {},
         "POST", f"/v2/queues/{q}/claims", {"json": {"ttl": 10}}),
        ("claim grace", "claim_create", {"queue_name": q, "grace": 10}, {},
         "POST", f"/v2/queues/{q}/claims", {"json": {"grace": 10}}),
        ("claim limit", "claim_create", {"queue_name": q, "limit": 21}, {},
         "POST", f"/v2/queues/{q}/claims", {"params": {"limit": 21}, "json": {}}),
        ("claim missing", "claim_get", {"queue_name": q, "claim_id": ids21[0]}, {},
         "GET", f"/v2/queues/{q}/claims/{ids21[0]}", {}),
        ("claim update ttl", "claim_update", {"queue_name": q, "claim_id": ids21[0], "ttl": 10}, {},
         "PATCH", f"/v2/queues/{q}/claims/{ids21[0]}", {"json": {"ttl": 10}}),
        ("claim update missing", "claim_update", {"queue_name": q, "claim_id": ids21[0], "ttl": 100}, {},
         "PATCH", f"/v2/queues/{q}/claims/{ids21[0]}", {"json": {"ttl": 100}}),
        ("bad client id", "queue_list", {}, {"Client-ID": BAD_CLIENT},
         "GET", "/v2/queues", {"headers": {"Client-ID": BAD_CLIENT}}),
        ("empty project", "queue_list", {}, {"X-Project-ID": ""},
         "GET", "/v2/queues", {"headers": {"X-Project-ID": ""}}),
        ("long project", "queue_get", {"queue_name": q}, {"X-Project-ID": "p" * 257},
         "GET", f"/v2/queues/{q}", {"headers": {"X-Project-ID": "p" * 257}}),
    ]


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
def test_http_websocket_error_parity(wsserver, proj, q, encoding):
    http = Api(wsserver.url, proj)
    ws = WsClient(wsserver.ws_url, proj, encoding, client_id=http.client_id)
    try:
        # a message to delete with a bogus claim (400) exists in both views
        mid = http.post_messages(q + "-m", [{"body": 1, "ttl": 60}])[0]
        cases = parity_cases(q) + [
            ("claim on unclaimed message", "message_delete",
             {"queue_name": q + "-m", "message_id": mid, "claim_id": uuid.uuid4().hex}, {},
             "DELETE", f"/v2/queues/{q}-m/messages/{mid}", {"params": {"claim_id": uuid.uuid4().hex}}),
        ]
        mismatches = []
        for name, action, body, hdrs, method, path, kwargs in cases:
            if encoding == "msgpack" and name == "post huge integer":
                continue  # MessagePack cannot carry an integer beyond 64 bits
            resp = http.request(method, path, **kwargs)
            status, wbody = ws.call(action, body, headers=hdrs)
            hbody = resp.json()
            got = (status, wbody.get("title"), wbody.get("description"))
            want = (resp.status_code, hbody.get("title"), hbody.get("description"))
            if got != want:
                mismatches.append((name, want, got))
            else:
                # `exception` as the reference's exception text, `error` its
                # endpoint's where it has one, else the same (the
                # reference's null would show as "None" in the client)
                text = hbody.get("description") or hbody["title"]
                expected = WS_WORDING.get(name, (text, text))
                if text.startswith(('Missing "', 'The value of the "')):
                    expected = ("Bad request. " + text, text)  # the reference's BadRequest
                if action in ("claim_get", "claim_update") and status == 404:
                    expected = (text, f"Claim {body['claim_id']} does not exist.")
                assert (wbody["exception"], wbody["error"]) == expected, (name, wbody)
        assert not mismatches, "\n".join(map(str, mismatches))
    finally:
        ws.close()


# ---------------------------------------------------------------------------
# WebSocket subscriptions fed by HTTP posts
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("encoding", ["json", "msgpack"])
def test_websocket_subscriber_receives_http_posts(wsserver, proj, q, encoding):
    http = Api(wsserver.url, proj)
    sub = WsClient(wsserver.ws_url, proj, encoding)
    other = WsClient(wsserver.ws_url, "other-" + proj, encoding)
    try:
        status, body = sub.call("subscription_create", {"queue_name": q})
        assert status == 201
        sid = body["subscription_id"]
        assert other.call("subscription_create", {"queue_name": q})[0] == 201
        ids = http.post_messages(q, [{"body": {"n": i}, "ttl": 120} for i in range(3)])
        http.post_messages(q + "-other", [{"body": "not for you"}])
        assert len(ids) == 3
        got = [sub.recv_doc() for _ in range(3)]
        # exactly the reference's notification: no id, href or age
        assert got == [{"body": {"n": i}, "ttl": 120, "queue_name": q, "Message_Type": "Notification"}
                       for i in range(3)]
        # the same queue name in another project delivers nothing to `other`
        other.ws.settimeout(0.5)
        with pytest.raises(websocket.WebSocketTimeoutException):
            other.ws.recv()
        other.ws.settimeout(30)
        # after unsubscribing, nothing more arrives (the next frame is our own reply)
        assert sub.call("subscription_delete", {"queue_name": q, "subscription_id": sid})[0] == 204
        http.post_messages(q, [{"body": "late"}])
        assert sub.call("queue_list")[0] == 200
    finally:
        sub.close()
        other.close()


def test_subscription_ends_with_its_connection(wsserver, proj, q):
    http = Api(wsserver.url, proj)
    sub = WsClient(wsserver.ws_url, proj)
    assert sub.call("subscription_create", {"queue_name": q})[0] == 201
    sub.close()
    time.sleep(0.2)
    # posting after the listener left works and nobody is hurt
    http.post_messages(q, [{"body": 1}])
    c = WsClient(wsserver.ws_url, proj)
    try:
        assert c.call("subscription_list", {"queue_name": q}) == (200, {"subscriptions": []})
    finally:
        c.close()


# ---------------------------------------------------------------------------
# limits
# ---------------------------------------------------------------------------

def nofile_limits(pid):
    """(soft, hard) "Max open files" of a process, from /proc/<pid>/limits."""
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max open files"):
                soft, hard = line.split()[3:5]
                return soft, hard
    raise AssertionError("no Max open files")


def raise_own_nofile_limit(need):
    """Raises this process's soft open-files limit to its hard limit; skips
    the test when even the hard limit is below ``need``."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, need)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < need:
        pytest.skip(f"the open files hard limit ({hard}) is below {need}")


def test_many_idle_connections_bounded_rss(wsserver, proj):
    """1,000 idle connections held at once: the server raised its own
    open-files limit, still answers a fresh connection, and its RSS grows by
    a bounded amount (printed per connection)."""
    n = 1000
    raise_own_nofile_limit(n + 200)
    pid = wsserver.proc.pid
    soft, hard = nofile_limits(pid)
    assert soft == hard, f"zaqar-server did not raise its open-files soft limit: {soft} < {hard}"
    warm = WsClient(wsserver.ws_url, proj)
    warm.call("queue_list")
    warm.close()
    time.sleep(0.2)
    before = rss_kib(pid)
    conns = []

    def open_one(_):
        c = WsClient(wsserver.ws_url, proj)
        assert c.call("ping_node", omit_body=True)[0] == 204
        return c

    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=50) as pool:
            futures = [pool.submit(open_one, i) for i in range(n)]
            for f in futures:
                try:
                    conns.append(f.result())
                except Exception:
                    pass
            for f in futures:
                f.result()  # re-raises the first failure, once all are collected
        assert len(conns) == n
        time.sleep(1)
        during = rss_kib(pid)
        per_conn = (during - before) / n
        print(f"\nRSS with {n} idle websocket connections: {before} KiB -> {during} KiB "
              f"(+{during - before} KiB, {per_conn:.1f} KiB per connection)")
        assert during - before < 300 * 1024, (before, during)
        # a fresh connection is served while they are held
        fresh = WsClient(wsserver.ws_url, proj)
        try:
            assert fresh.call("queue_list")[0] == 200
        finally:
            fresh.close()
        # and the held ones still answer
        for c in conns[::50]:
            assert c.call("queue_list")[0] == 200
    finally:
        for c in conns:
            c.close()


def test_slow_reader_is_cut_off(wsserver, proj, q):
    http = Api(wsserver.url, proj)
    pid = wsserver.proc.pid
    slow = WsClient(wsserver.ws_url, proj, sockopt=((socket.SOL_SOCKET, socket.SO_RCVBUF, 4096),))
    assert slow.call("subscription_create", {"queue_name": q})[0] == 201
    before = rss_kib(pid)
    body = "x" * (200 * 1024)
    total = 120  # ~24 MiB of deliveries, more than socket buffers plus the send queue
    for _ in range(total):
        http.post_messages(q, [{"body": body}])
    after = rss_kib(pid)
    print(f"\nRSS while a slow reader was being fed {total} x 200 KiB: {before} KiB -> {after} KiB")
    frames, code = recv_until_closed(slow.ws)
    slow.close()
    assert frames < total, "the slow reader got everything: it was not cut off"
    assert code in (1008, None), code
    assert after - before < 96 * 1024
    # the server and other listeners are fine
    c = WsClient(wsserver.ws_url, proj)
    try:
        assert c.call("queue_get_stats", {"queue_name": q})[1]["messages"]["total"] == total
    finally:
        c.close()


# ---------------------------------------------------------------------------
# auth modes and shutdown (servers of their own)
# ---------------------------------------------------------------------------

def test_keystone_mode_refuses_unauthenticated_frames(server_factory, proj):
    # Keystone itself is exercised by tests/functional_keystone; here it is
    # unreachable (nothing listens on port 9).
    unreachable = "http://127.0.0.1:9/v3"
    srv = server_factory({"drivers": {"transport": "wsgi, websocket"},
                          "DEFAULT": {"auth_strategy": "keystone"},
                          "keystone_authtoken": {
                              "www_authenticate_uri": unreachable, "auth_url": unreachable,
                              "auth_type": "password", "username": "zaqar", "password": "x",
                              "project_name": "service", "user_domain_name": "Default",
                              "project_domain_name": "Default", "http_request_max_retries": "0"}})
    c = WsClient(srv.ws_url, proj)
    try:
        status, body = c.call("queue_list")
        assert (status, body) == (403, {"error": "Not authentified."})
        # Keystone cannot be asked: authenticate fails cleanly with 503
        c.send_doc({"action": "authenticate", "headers": dict(c.headers, **{"X-Auth-Token": "t"})})
        resp = c.recv_doc()
        assert (resp["headers"]["status"], resp["body"]) == (503, {"error": "Authentication failed."}), resp
        assert c.call("queue_list")[0] == 403
    finally:
        c.close()


def test_websocket_can_be_turned_off(server_factory, proj):
    srv = server_factory({"drivers": {"transport": "wsgi"}})
    with pytest.raises((ConnectionError, OSError, websocket.WebSocketException)):
        websocket.create_connection(srv.ws_url, timeout=2)
    assert requests.get(srv.url + "/", timeout=5).status_code == 300


def test_http_can_be_turned_off(tmp_path, proj):
    srv = ZaqarServer(tmp_path / "wsonly", {"drivers": {"transport": "websocket"}})
    srv.write_config()
    # the harness waits for HTTP; start it by hand and wait for the WebSocket port
    import subprocess
    from zaqar_testlib import server_binary
    log = open(srv.workdir / "server.log", "wb")
    proc = subprocess.Popen([str(server_binary()), "--config-file", str(srv.config_path)],
                            stdout=log, stderr=subprocess.STDOUT, cwd=srv.workdir)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                c = WsClient(srv.ws_url, proj)
                break
            except (ConnectionError, OSError):
                assert time.monotonic() < deadline, (srv.workdir / "server.log").read_text()
                time.sleep(0.05)
        assert c.call("queue_list")[0] == 200
        c.close()
        with pytest.raises(requests.ConnectionError):
            requests.get(srv.url + "/", timeout=2)
    finally:
        proc.terminate()
        assert proc.wait(15) == 0
        log.close()


def test_shutdown_closes_connections_with_1001(server_factory, proj):
    srv = server_factory(WS_OPTIONS)
    conns = [WsClient(srv.ws_url, proj) for _ in range(5)]
    for c in conns:
        assert c.call("queue_list")[0] == 200
    t0 = time.monotonic()
    srv.proc.terminate()
    for c in conns:
        frames, code = recv_until_closed(c.ws)
        assert (frames, code) == (0, 1001), conns.index(c)
        c.close()
    assert srv.proc.wait(15) == 0
    assert time.monotonic() - t0 < 10


def test_websocket_port_refuses_what_is_not_an_upgrade(wsserver):
    """The WebSocket port answers a plain HTTP request, or an upgrade that
    lacks a part of the handshake, with 400 and says what it expects; a
    complete handshake gets 101 with the accept key of RFC 6455."""
    base = wsserver.ws_url.replace("ws://", "http://")
    plain = requests.get(base, timeout=5)
    assert plain.status_code == 400
    assert "WebSocket upgrade" in plain.text
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    handshake = {"Connection": "Upgrade", "Upgrade": "websocket",
                 "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": key}
    for missing in handshake:
        headers = {k: v for k, v in handshake.items() if k != missing}
        assert requests.get(base, headers=headers, timeout=5).status_code == 400, missing
    assert requests.post(base, headers=handshake, timeout=5).status_code == 400
    with socket.create_connection(("127.0.0.1", int(base.rsplit(":", 1)[1].strip("/"))), 5) as s:
        s.sendall(("GET / HTTP/1.1\r\nHost: localhost\r\n"
                   + "".join(f"{k}: {v}\r\n" for k, v in handshake.items()) + "\r\n").encode())
        answer = s.recv(4096).decode()
    assert answer.startswith("HTTP/1.1 101"), answer
    # The accept key of the sample handshake in RFC 6455, section 1.3.
    assert "\r\nsec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in answer, answer
