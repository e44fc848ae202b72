"""Issue 11: what a hostile tenant or a broken client could do, each tried
against the real server (and failing on the code before the fix).

- slow clients: connections that never finish a request head, idle
  keep-alive connections and bodies that never arrive are closed after
  ``header_read_timeout`` / ``keepalive_timeout``, and no more than
  ``max_connections`` are held at once, so other clients are still served;
- a malformed chunked body is a 400, not a 503;
- an ``X-Project-ID`` past 256 characters is refused on every route;
- ``_dead_letter_queue`` must be a queue name, ``_max_claim_count`` not negative;
- bodies nested deeper than the server can read back are refused at post, and
  the deepest accepted ones come back intact over HTTP and WebSocket;
- a bulk post of thousands of messages answers a ``Location`` clients accept;
- a WebSocket connection holds a bounded number of subscriptions.
"""

import json
import os
import socket
import time
import uuid

import pytest
import requests
import websocket

from zaqar_testlib import Api, assert_error

pytestmark = pytest.mark.timeout(300)

CLIENT = "3381af92-2b9e-11e3-b191-71861300734c"
BAD_QUEUE = ("Invalid queue identification",
             "The format of the submitted queue name or project id is not valid.")

SLOW = {"drivers:transport:wsgi": {"header_read_timeout": 2, "keepalive_timeout": 3,
                                   "max_connections": 40}}


def open_fds(srv):
    return len(os.listdir(f"/proc/{srv.proc.pid}/fd"))


def partial_head(port):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET /v2/queues HTTP/1.1\r\nHost: x\r\nClient-ID: " + CLIENT.encode())
    return s


def closed_by_server(sock, within=30):
    """Waits (up to ``within`` s) for the server to close ``sock``."""
    sock.settimeout(within)
    try:
        return sock.recv(1024) == b""
    except (ConnectionResetError, socket.timeout):
        return False
    finally:
        sock.close()


def test_connections_that_never_finish_a_request_are_closed(server_factory):
    srv = server_factory(SLOW)
    baseline = open_fds(srv)
    slow = [partial_head(srv.port) for _ in range(200)]
    # never more than max_connections held: the rest wait in the backlog
    time.sleep(0.5)
    assert open_fds(srv) <= baseline + 40 + 5, open_fds(srv) - baseline
    # and another client is served all the same (once slow ones time out)
    api = Api(srv.url, "p-" + uuid.uuid4().hex)
    resp = requests.get(srv.url + "/v2/queues", headers=api.default_headers(), timeout=60)
    assert resp.status_code == 200
    assert all(closed_by_server(s) for s in slow[:40])
    for s in slow[40:]:
        s.close()


def test_idle_keepalive_connections_and_missing_bodies_are_closed(server_factory):
    srv = server_factory(SLOW)
    # idle after one answered request
    s = socket.create_connection(("127.0.0.1", srv.port))
    s.sendall(f"GET /v2/ping HTTP/1.1\r\nHost: x\r\nClient-ID: {CLIENT}\r\n"
              "X-Project-ID: p\r\n\r\n".encode())
    s.settimeout(30)
    assert s.recv(1024).startswith(b"HTTP/1.1 204")
    assert closed_by_server(s)
    # a head promising a body that never comes: 400, then closed
    s = socket.create_connection(("127.0.0.1", srv.port))
    s.sendall(f"PUT /v2/queues/q HTTP/1.1\r\nHost: x\r\nClient-ID: {CLIENT}\r\n"
              "X-Project-ID: p\r\nContent-Length: 100\r\n\r\n{".encode())
    s.settimeout(30)
    answer = s.recv(4096)
    assert answer.startswith(b"HTTP/1.1 400"), answer
    assert b"Request body could not be read." in answer
    s.close()


def read_answer(sock):
    """One HTTP/1.1 answer with a Content-Length body: (status, body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError(f"closed by the server after {data!r}")
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed by the server mid-answer")
        rest += chunk
    return int(head.split(b" ")[1]), rest


@pytest.mark.parametrize("method,path", [("POST", "/v2/nothing-here"),
                                         ("POST", "/v2/topics/t/claims"),
                                         ("POST", "/v2/queues/q/stats")])
def test_an_error_answered_before_the_body_keeps_the_connection(server, method, path):
    """A 404 or 405 is decided before the body is read. If the body has
    not fully arrived then, hyper used to close the connection after the
    answer, so a client reusing it (python-requests does) got a reset on
    its next request: a flaky ``RemoteDisconnected`` in the functional
    tests. The body now arrives late on purpose."""
    s = socket.create_connection(("127.0.0.1", server.port))
    s.settimeout(30)
    body = b'{"a": 1}'
    s.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\nClient-ID: {CLIENT}\r\n"
              f"X-Project-ID: p\r\nContent-Type: application/json\r\n"
              f"Content-Length: {len(body)}\r\n\r\n".encode())
    time.sleep(0.3)
    s.sendall(body)
    status, _ = read_answer(s)
    assert status in (404, 405), status
    s.sendall(f"GET /v2/queues HTTP/1.1\r\nHost: x\r\nClient-ID: {CLIENT}\r\n"
              "X-Project-ID: p\r\n\r\n".encode())
    status, _ = read_answer(s)
    assert status in (200, 204), status
    s.close()


def test_malformed_chunked_body_is_a_400(server):
    s = socket.create_connection(("127.0.0.1", server.port))
    s.sendall(f"POST /v2/queues/q/messages HTTP/1.1\r\nHost: x\r\nClient-ID: {CLIENT}\r\n"
              "X-Project-ID: p\r\nContent-Type: application/json\r\n"
              "Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n".encode())
    s.settimeout(30)
    answer = s.recv(4096)
    s.close()
    assert answer.startswith(b"HTTP/1.1 400"), answer


WS = {"drivers": {"transport": "wsgi, websocket"}}


@pytest.fixture
def ws_server(server_factory):
    return server_factory(WS)


def test_project_ids_past_256_characters_are_refused_everywhere(ws_server):
    server = ws_server
    for length, ok in [(256, True), (257, False), (60000, False)]:
        api = Api(server.url, "p" * length)
        for path in ["/v2/queues", "/v2/queues/q", "/v2/ping", "/v2/"]:
            resp = api.get(path)
            if ok:
                assert resp.status_code in (200, 204), (length, path, resp.text)
            else:
                assert_error(resp, 400, *BAD_QUEUE)
    ws = websocket.create_connection(server.ws_url, timeout=30)
    try:
        ws.send(json.dumps({"action": "queue_list",
                            "headers": {"Client-ID": CLIENT, "X-Project-ID": "p" * 257}}))
        resp = json.loads(ws.recv())
        assert resp["headers"]["status"] == 400, resp
        assert resp["body"]["title"] == BAD_QUEUE[0], resp
    finally:
        ws.close()


def test_reserved_dead_letter_keys_are_checked(api, qname):
    for value in ["", "a b", "x" * 65, "q/../x", 5, ["q"], {"q": 1}]:
        resp = api.put(f"/v2/queues/{qname}", json={"_dead_letter_queue": value})
        assert_error(resp, 400, "Invalid API request")
    for value in [-1, -(2**63), 10**9]:
        resp = api.put(f"/v2/queues/{qname}", json={"_max_claim_count": value})
        assert_error(resp, 400, "Invalid API request")
    resp = api.put(f"/v2/queues/{qname}", json={"_dead_letter_queue": "dlq.1-x",
                                                "_max_claim_count": 0})
    assert resp.status_code == 201, resp.text


def nested(depth):
    return "[" * depth + "]" * depth


def test_nesting_past_what_can_be_read_back_is_refused(ws_server, qname):
    server = ws_server
    api = Api(server.url, "p-" + uuid.uuid4().hex)
    # the post document adds three levels ({"messages": [{"body": ...}]})
    deepest = nested(124)
    resp = api.post(f"/v2/queues/{qname}/messages",
                    data='{"messages": [{"ttl": 60, "body": %s}]}' % deepest,
                    headers={"Content-Type": "application/json"})
    assert resp.status_code == 201, resp.text
    got = api.get(f"/v2/queues/{qname}/messages", params={"echo": "true"}).json()
    assert json.dumps(got["messages"][0]["body"]).replace(" ", "") == deepest
    ws = websocket.create_connection(server.ws_url, timeout=30)
    try:
        ws.send(json.dumps({"action": "message_list", "headers": {"Client-ID": CLIENT,
                            "X-Project-ID": api.project_id},
                            "body": {"queue_name": qname, "echo": True}}))
        body = json.loads(ws.recv())["body"]
        assert json.dumps(body["messages"][0]["body"]).replace(" ", "") == deepest
    finally:
        ws.close()
    resp = api.post(f"/v2/queues/{qname}/messages",
                    data='{"messages": [{"ttl": 60, "body": %s}]}' % nested(125),
                    headers={"Content-Type": "application/json"})
    assert_error(resp, 400, "Invalid request body")


def test_bulk_post_location_stays_readable(api, qname):
    messages = [{"body": i, "ttl": 60} for i in range(9000)]
    resp = api.post(f"/v2/queues/{qname}/messages", json={"messages": messages})
    assert resp.status_code == 201, resp.text
    assert len(resp.json()["resources"]) == 9000
    assert len(resp.headers["Location"]) <= 8192
    assert resp.headers["Location"].endswith(f"/v2/queues/{qname}/messages")
    # a small post keeps the reference's Location with the ids
    resp = api.post(f"/v2/queues/{qname}/messages", json={"messages": messages[:2]})
    ids = [r.rsplit("/", 1)[1] for r in resp.json()["resources"]]
    assert resp.headers["Location"].endswith("?ids=" + ",".join(ids))


def test_websocket_subscriptions_per_connection_are_bounded(ws_server):
    server = ws_server
    project = "p-" + uuid.uuid4().hex
    ws = websocket.create_connection(server.ws_url, timeout=30)
    try:
        def subscribe(q):
            ws.send(json.dumps({"action": "subscription_create",
                                "headers": {"Client-ID": CLIENT, "X-Project-ID": project},
                                "body": {"queue_name": q, "ttl": 3600}}))
            resp = json.loads(ws.recv())
            return resp["headers"]["status"], resp["body"]
        for i in range(100):
            assert subscribe(f"q{i}")[0] == 201
        status, body = subscribe("one-more")
        assert status == 400 and "at most 100" in body["description"], body
        # the same queue again is no new subscription (the reference's 409)
        assert subscribe("q0")[0] == 409
    finally:
        ws.close()
