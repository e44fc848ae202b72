"""zaqar-server behind a REAL Keystone (issue 4, "In the server").

Tenancy by token, python-zaqarclient with Keystone password auth, 401s with
WWW-Authenticate (invalid, missing, revoked), Keystone down and back, one
Keystone call for 50 concurrent requests, forged identity headers, admin
routes and policy files, pre-signed URLs beside Keystone, the WebSocket
``authenticate`` action, and a WebSocket closed with 4003 when its token
expires (against a second Keystone with 20-second tokens).
"""

import concurrent.futures
import datetime
import json
import re
import time
import uuid

import pytest
import requests
import websocket

pytestmark = pytest.mark.timeout(300)


def call(srv, method, path, token=None, headers=None, **kwargs):
    hdrs = {"Client-ID": str(uuid.uuid4()), "Accept": "application/json"}
    if token is not None:
        hdrs["X-Auth-Token"] = token
    hdrs.update(headers or {})
    resp = requests.request(method, srv.url + path, headers=hdrs, timeout=60, **kwargs)
    assert resp.status_code < 500 or resp.status_code == 503, (resp.status_code, resp.text)
    return resp


def metric(srv, name):
    text = requests.get(srv.url + "/metrics", timeout=10).text
    match = re.search(rf"^{re.escape(name)} (\d+)$", text, re.M)
    assert match, text
    return int(match.group(1))


def assert_401(resp, ks):
    assert resp.status_code == 401, resp.text
    assert resp.headers["WWW-Authenticate"] == f'Keystone uri="{ks.url}"'
    body = resp.json()
    assert body["title"] == "Unauthorized" and body["description"], body


def qname():
    return "q-" + uuid.uuid4().hex[:12]


# ---------------------------------------------------------------------------
# tenancy
# ---------------------------------------------------------------------------

def test_a_token_reaches_its_project_and_never_another(ks, ks_server, alice, bob):
    srv = ks_server()
    q = qname()
    assert call(srv, "PUT", f"/v2/queues/{q}", alice).status_code == 201
    assert call(srv, "POST", f"/v2/queues/{q}/messages", alice,
                json={"messages": [{"body": "for A", "ttl": 300}]}).status_code == 201
    # alice sees her queue, without X-Project-ID and with her own
    for extra in ({}, {"X-Project-ID": ks.proj_a}):
        names = [x["name"] for x in call(srv, "GET", "/v2/queues", alice, extra).json()["queues"]]
        assert q in names
    # bob's token never reaches A, whatever his headers say
    assert call(srv, "GET", "/v2/queues", bob).json()["queues"] == []
    for forged in ({"X-Project-ID": ks.proj_a}, {"X-Project-Id": ks.proj_a, "X-Tenant-Id": ks.proj_a}):
        resp = call(srv, "GET", f"/v2/queues/{q}/messages", bob, forged)
        assert resp.status_code == 403, resp.text
        assert resp.json()["title"] == "Project mismatch"
    resp = call(srv, "GET", f"/v2/queues/{q}/messages", bob, {"X-Tenant-Id": ks.proj_a, "X-Roles": "admin"})
    assert resp.status_code in (200, 204) and not (resp.content and resp.json().get("messages")), resp.text
    stats = call(srv, "GET", f"/v2/queues/{q}/stats", bob).json()
    assert stats["messages"]["total"] == 0
    # alice naming B is refused too, and A's message is still there
    assert call(srv, "GET", f"/v2/queues/{q}/messages", alice, {"X-Project-ID": ks.proj_b}).status_code == 403
    msgs = call(srv, "GET", f"/v2/queues/{q}/messages?echo=true", alice).json()["messages"]
    assert [m["body"] for m in msgs] == ["for A"]


def test_python_zaqarclient_with_keystone_password_auth(ks, ks_server):
    from zaqarclient.queues.v2 import client as zclient

    srv = ks_server()
    conf = {"auth_opts": {"backend": "keystone", "options": ks.password_auth("alice")}}
    cli = zclient.Client(srv.url, version=2, conf=conf)
    q = cli.queue(qname())
    q.post([{"body": {"n": i}, "ttl": 300} for i in range(3)])
    assert q.stats["messages"]["total"] == 3
    claim = q.claim(ttl=60, grace=60, limit=10)
    bodies = []
    for msg in claim:
        bodies.append(msg.body["n"])
        msg.delete()
    assert sorted(bodies) == [0, 1, 2]
    assert q.stats["messages"]["total"] == 0
    names = [x.name for x in cli.queues()[0]]
    assert q.name in names
    q.delete()
    # bob's client does not see alice's queues
    bob_conf = {"auth_opts": {"backend": "keystone", "options": ks.password_auth("bob")}}
    assert q.name not in [x.name for x in zclient.Client(srv.url, version=2, conf=bob_conf).queues()[0]]


# ---------------------------------------------------------------------------
# 401s
# ---------------------------------------------------------------------------

def test_missing_and_invalid_tokens_get_401_with_www_authenticate(ks, ks_server):
    srv = ks_server()
    assert_401(call(srv, "GET", "/v2/queues"), ks)
    assert_401(call(srv, "GET", "/v2/queues", "gAAAAABnot-a-real-token"), ks)
    assert_401(call(srv, "GET", "/v2/queues", "x" * 10000), ks)
    assert_401(call(srv, "GET", "/v2/no/such/route", "gAAAAABnot-a-real-token"), ks)
    # the home document of the versions stays open, as in the reference
    assert call(srv, "GET", "/").status_code == 300


def test_revoked_token_stops_within_token_cache_time(ks, ks_server):
    cache_time = 3
    srv = ks_server(token_cache_time=cache_time)
    token = ks.token("alice")
    assert call(srv, "GET", "/v2/queues", token).status_code == 200  # now cached
    ks.revoke(token)
    revoked_at = time.monotonic()
    while call(srv, "GET", "/v2/queues", token).status_code == 200:
        assert time.monotonic() - revoked_at < cache_time + 2, "revoked token still accepted"
        time.sleep(0.2)
    assert_401(call(srv, "GET", "/v2/queues", token), ks)


# ---------------------------------------------------------------------------
# Keystone down and back
# ---------------------------------------------------------------------------

def test_keystone_down_cached_tokens_work_new_ones_503_then_recovery(ks, ks_server):
    srv = ks_server(token_cache_time=300)
    cached, fresh = ks.token("alice"), ks.token("bob")
    assert call(srv, "GET", "/v2/queues", cached).status_code == 200
    ks.stop()
    try:
        assert call(srv, "GET", "/v2/queues", cached).status_code == 200
        resp = call(srv, "GET", "/v2/queues", fresh)
        assert resp.status_code == 503, resp.text
        assert resp.json()["title"] == "Service temporarily unavailable"
    finally:
        ks.start()
    # no restart of zaqar-server: the next request asks Keystone again
    deadline = time.monotonic() + 30
    while (status := call(srv, "GET", "/v2/queues", fresh).status_code) == 503:
        assert time.monotonic() < deadline
        time.sleep(0.5)
    assert status == 200
    assert call(srv, "GET", "/v2/queues", cached).status_code == 200


# ---------------------------------------------------------------------------
# one validation for many concurrent requests
# ---------------------------------------------------------------------------

def test_50_concurrent_requests_with_a_new_token_make_one_keystone_call(ks, ks_server):
    srv = ks_server()
    call(srv, "GET", "/v2/queues", ks.token("bob"))  # service token fetched, cache warm
    before = metric(srv, "zaqar_keystone_validations_total")
    misses = metric(srv, "zaqar_keystone_token_cache_misses_total")
    token = ks.token("alice")
    with concurrent.futures.ThreadPoolExecutor(50) as pool:
        statuses = list(pool.map(lambda _: call(srv, "GET", "/v2/queues", token).status_code, range(50)))
    assert statuses == [200] * 50
    assert metric(srv, "zaqar_keystone_validations_total") - before == 1
    assert metric(srv, "zaqar_keystone_token_cache_misses_total") - misses == 1
    text = requests.get(srv.url + "/metrics", timeout=10).text
    assert 'zaqar_http_responses_total{code="200"}' in text


# ---------------------------------------------------------------------------
# identity headers, admin routes, policy
# ---------------------------------------------------------------------------

FORGED = {
    "X-Roles": "admin",
    "X-Role": "admin",
    "X-Identity-Status": "Confirmed",
    "X-User-Id": "someone-else",
    "X-Is-Admin-Project": "True",
    "X-Service-Roles": "admin",
}


def test_forged_identity_headers_are_ignored_and_admin_routes_need_admin(ks, ks_server, alice, admin):
    srv = ks_server()
    resp = call(srv, "GET", "/v2/health", alice, FORGED)
    assert resp.status_code == 403, resp.text
    assert resp.json() == {"title": "Not authorized",
                           "description": "You are not authorized to complete this action."}
    assert call(srv, "GET", "/v2/health", alice).status_code == 403
    resp = call(srv, "GET", "/v2/health", admin)
    assert resp.status_code == 200, resp.text
    # a forged header never replaces the token's identity on data routes either
    q = qname()
    assert call(srv, "PUT", f"/v2/queues/{q}", alice, FORGED).status_code == 201
    assert q in [x["name"] for x in call(srv, "GET", "/v2/queues", alice).json()["queues"]]


def test_policy_file_next_to_the_config_overrides_a_default(ks, ks_server, alice, admin):
    srv = ks_server(files={"policy.yaml": '"queues:delete": "role:admin"\n'})
    q = qname()
    assert call(srv, "PUT", f"/v2/queues/{q}", alice).status_code == 201
    resp = call(srv, "DELETE", f"/v2/queues/{q}", alice)
    assert resp.status_code == 403, resp.text
    assert resp.json()["title"] == "Not authorized"
    assert call(srv, "PUT", f"/v2/queues/{q}", admin).status_code == 201
    assert call(srv, "DELETE", f"/v2/queues/{q}", admin).status_code == 204


def test_invalid_policy_file_stops_the_server_naming_the_rule(ks_options, tmp_path):
    from zaqar_testlib import ServerStartError, ZaqarServer

    srv = ZaqarServer(tmp_path / "bad", ks_options())
    (srv.workdir / "policy.yaml").write_text('"queues:delete": "role:admin or"\n')
    with pytest.raises(ServerStartError) as err:
        srv.start(timeout=10)
    assert "queues:delete" in str(err.value)


# ---------------------------------------------------------------------------
# pre-signed URLs beside Keystone
# ---------------------------------------------------------------------------

def test_presigned_requests_bypass_keystone_and_grant_no_roles(ks, ks_server, alice):
    srv = ks_server()
    q = qname()
    assert call(srv, "PUT", f"/v2/queues/{q}", alice).status_code == 201
    grant = call(srv, "POST", f"/v2/queues/{q}/share", alice, json={"methods": ["GET", "POST"]}).json()
    assert grant["project"] == ks.proj_a
    signed = {
        "URL-Signature": grant["signature"], "URL-Expires": grant["expires"],
        "URL-Methods": ",".join(grant["methods"]), "URL-Paths": ",".join(grant["paths"]),
        "X-Project-ID": grant["project"],
    }
    resp = call(srv, "POST", f"/v2/queues/{q}/messages", headers=signed,
                json={"messages": [{"body": "signed", "ttl": 60}]})
    assert resp.status_code == 201, resp.text
    resp = call(srv, "GET", f"/v2/queues/{q}/messages?echo=true", headers=signed)
    assert [m["body"] for m in resp.json()["messages"]] == ["signed"]
    # a bad signature is a bare 404, never a way around Keystone
    assert call(srv, "GET", f"/v2/queues/{q}/messages", headers=dict(signed, **{"URL-Signature": "0" * 64})
                ).status_code == 404
    # a signed URL does not make its holder admin
    resp = call(srv, "GET", "/v2/health", headers=dict(signed, **{"X-Roles": "admin"}))
    assert resp.status_code == 404  # /v2/health is not a signed path


@pytest.mark.parametrize("secret_key", ["test-secret", ""])
def test_a_signature_that_does_not_verify_never_bypasses_keystone(ks, ks_server, alice, secret_key):
    """Issue 11, defect 1: a URL-Signature whose value was not visible ASCII
    (one 0xff byte) skipped token validation AND the signature check, with or
    without a secret key: any project's queues could be listed, read, written
    and deleted without a token. Every such request is now a bare 404."""
    srv = ks_server(extra={"signed_url": {"secret_key": secret_key}})
    q = qname()
    assert call(srv, "PUT", f"/v2/queues/{q}", alice).status_code == 201
    assert call(srv, "POST", f"/v2/queues/{q}/messages", alice,
                json={"messages": [{"body": "secret", "ttl": 600}]}).status_code == 201
    for signature in [b"\xff", b"\xfe\xff", "0" * 64]:
        forged = {"URL-Signature": signature, "X-Project-ID": ks.proj_a,
                  "URL-Methods": "GET,POST,PUT,DELETE", "URL-Paths": f"/v2/queues/{q}",
                  "URL-Expires": "2099-01-01T00:00:00"}
        for method, path, body in [
            ("GET", "/v2/queues", None),
            ("GET", f"/v2/queues/{q}/messages?echo=true", None),
            ("POST", f"/v2/queues/{q}/messages", {"messages": [{"body": "evil", "ttl": 60}]}),
            ("DELETE", f"/v2/queues/{q}", None),
        ]:
            resp = call(srv, method, path, headers=forged, json=body)
            assert resp.status_code == 404, (signature, method, path, resp.status_code, resp.text)
            assert "secret" not in resp.text
    # nothing was written or deleted
    resp = call(srv, "GET", f"/v2/queues/{q}/messages?echo=true", alice)
    assert [m["body"] for m in resp.json()["messages"]] == ["secret"]
    # a WebSocket frame with a signature that does not verify passes no more
    ws = Ws(srv)
    try:
        for signature in ["\u00ff", 5, "0" * 64]:
            forged = {"URL-Signature": signature, "X-Project-ID": ks.proj_a, "URL-Methods": ["GET"],
                      "URL-Paths": [f"/v2/queues/{q}/messages"], "URL-Expires": "2099-01-01T00:00:00"}
            status, body = ws.call("message_list", forged, {"queue_name": q, "echo": True})
            assert status == 404, (signature, status, body)
            assert ws.call("queue_delete", forged, {"queue_name": q})[0] == 404
    finally:
        ws.ws.close()
    assert call(srv, "GET", f"/v2/queues/{q}/stats", alice).json()["messages"]["total"] == 1


# ---------------------------------------------------------------------------
# WebSocket
# ---------------------------------------------------------------------------

class Ws:
    def __init__(self, srv):
        self.ws = websocket.create_connection(srv.ws_url, timeout=30)
        self.client_id = str(uuid.uuid4())

    def call(self, action, headers=None, body=None):
        hdrs = {"Client-ID": self.client_id}
        hdrs.update(headers or {})
        self.ws.send(json.dumps({"action": action, "headers": hdrs, "body": body or {}}))
        resp = json.loads(self.ws.recv())
        return resp["headers"]["status"], resp["body"]


def test_websocket_authenticate_then_access_and_project_mismatch(ks, ks_server, alice, bob):
    srv = ks_server()
    ws = Ws(srv)
    try:
        a = {"X-Project-ID": ks.proj_a}
        assert ws.call("queue_list", a) == (403, {"error": "Not authentified."})
        status, body = ws.call("authenticate", dict(a, **{"X-Auth-Token": "gAAAAABbogus"}))
        assert (status, body) == (401, {"error": "Authentication failed."})
        assert ws.call("queue_list", a)[0] == 403
        # bob's token with A's project is refused
        assert ws.call("authenticate", {"X-Project-ID": ks.proj_a, "X-Auth-Token": bob})[0] == 403
        assert ws.call("authenticate", dict(a, **{"X-Auth-Token": alice})) == (200, {"message": "Authentified."})
        q = qname()
        assert ws.call("queue_create", a, {"queue_name": q})[0] == 201
        status, body = ws.call("queue_list", a)
        assert status == 200 and q in [x["name"] for x in body["queues"]]
        # later frames must name the token's project: refused as HTTP refuses it
        status, body = ws.call("queue_list", {"X-Project-ID": ks.proj_b})
        assert status == 403 and body["title"] == "Project mismatch", body
        assert ws.call("queue_list", dict(a, **{"X-Roles": "admin"}))[0] == 200
    finally:
        ws.ws.close()


def test_websocket_presigned_frames_pass_without_a_token(ks, ks_server, alice):
    srv = ks_server()
    q = qname()
    assert call(srv, "PUT", f"/v2/queues/{q}", alice).status_code == 201
    grant = call(srv, "POST", f"/v2/queues/{q}/share", alice, json={"methods": ["GET", "POST"]}).json()
    signed = {"URL-Signature": grant["signature"], "URL-Expires": grant["expires"],
              "URL-Methods": grant["methods"], "URL-Paths": grant["paths"], "X-Project-ID": grant["project"]}
    ws = Ws(srv)
    try:
        status, body = ws.call("message_post", signed, {"queue_name": q, "messages": [{"body": 1, "ttl": 60}]})
        assert status == 201, body
        status, body = ws.call("message_list", signed, {"queue_name": q, "echo": True})
        assert status == 200 and [m["body"] for m in body["messages"]] == [1]
        # what the signature does not cover is refused as over HTTP (a bare 404)
        assert ws.call("message_list", signed, {"queue_name": qname()})[0] == 404  # another queue
        assert ws.call("queue_list", signed)[0] == 404  # not a signed path
        assert ws.call("message_delete_many", signed, {"queue_name": q, "pop": 1})[0] == 404  # not signed
        # a frame without signature or session is still refused
        assert ws.call("queue_list", {"X-Project-ID": grant["project"]}) == (403, {"error": "Not authentified."})
    finally:
        ws.ws.close()


def test_websocket_closes_with_4003_when_the_token_expires(short_expiry_ks, tmp_path, request):
    """A second Keystone issues tokens that live ~20 s: the connection
    authenticated with one is closed with 4003 "Authentication expired." when
    the token's expires_at comes, not before, not much later."""
    from conftest import _report_and_stop, keystone_options
    from zaqar_testlib import ZaqarServer

    ks = short_expiry_ks
    srv = ZaqarServer(tmp_path / "srv", keystone_options(ks)).start()
    try:
        token, expires_at = ks.token_and_expiry("alice")
        expires = datetime.datetime.fromisoformat(expires_at.replace("Z", "+00:00")).timestamp()
        left = expires - time.time()
        assert 5 < left <= 25, (expires_at, left)
        ws = Ws(srv)
        try:
            a = {"X-Project-ID": ks.proj_a}
            assert ws.call("authenticate", dict(a, **{"X-Auth-Token": token})) == (200, {"message": "Authentified."})
            assert ws.call("queue_list", a)[0] == 200
            ws.ws.settimeout(left + 15)
            opcode, data = ws.ws.recv_data(control_frame=True)
            closed_at = time.time()
            assert opcode == websocket.ABNF.OPCODE_CLOSE, (opcode, data)
            code = int.from_bytes(data[:2], "big")
            print(f"\ntoken expires_at {expires_at}; connection closed {closed_at - expires:+.2f} s from it "
                  f"with {code} {data[2:].decode()!r}")
            assert (code, data[2:].decode()) == (4003, "Authentication expired.")
            # Keystone writes expires_at to the second (truncated)
            assert expires - 1.5 <= closed_at <= expires + 5, (expires_at, closed_at)
        finally:
            ws.ws.close()
    finally:
        _report_and_stop([srv], request)
