"""Message bodies encrypted at rest, against the real server.

A queue with ``_enable_encrypt_messages`` stores every body sealed with
AES-256-GCM (``[transport] message_encryption_key``): the store holds no
plaintext, every read path (list, get, get by ids, claim, claim get, pop,
WebSocket) and the notifications give the plaintext back; a server without the
key answers 503 and logs the queue; a rotated key list (new key first, old
kept) reads old and new messages.
"""

import json
import os
import sqlite3

import pytest

from receivers import Receiver
from test_websocket import WsClient
from zaqar_testlib import Api, assert_error

pytestmark = pytest.mark.timeout(120)

SQLITE_ONLY = pytest.mark.skipif(os.environ.get("ZAQAR_TEST_BACKEND") not in (None, "", "sqlite"),
                                 reason="reads the SQLite file")


def options(key):
    return {"transport": {"message_encryption_key": key},
            "notification": {"allowed_subscriber_networks": "127.0.0.0/8"},
            "drivers": {"transport": "wsgi, websocket"}}


def stored_bodies(srv):
    with sqlite3.connect(srv.db_path) as db:
        return [row[0] for row in db.execute("SELECT body FROM messages")]


@SQLITE_ONLY
def test_bodies_are_sealed_at_rest_and_open_on_every_read(server_factory, project, qname):
    srv = server_factory(options("first-secret"))
    api = Api(srv.url, project)
    api.create_queue(qname, {"_enable_encrypt_messages": True})
    api.create_queue("plain")
    secret = {"card": "4111-1111", "list": [1, "é"]}
    ids = api.post_messages(qname, [{"body": secret}, {"body": "second secret"},
                                    {"body": "third"}, {"body": "fourth"}])
    api.post_messages("plain", [{"body": "visible"}])
    stored = "\n".join(stored_bodies(srv))
    assert "4111" not in stored and "second secret" not in stored
    assert stored.count('"zqenc1:') == 4 and "visible" in stored

    listed = api.list_messages(qname, echo="true")
    assert [m["body"] for m in listed] == [secret, "second secret", "third", "fourth"]
    assert api.get(f"/v2/queues/{qname}/messages/{ids[0]}").json()["body"] == secret
    many = api.get(f"/v2/queues/{qname}/messages", params={"ids": ",".join(ids[:2])}).json()
    assert sorted(json.dumps(m["body"]) for m in many["messages"]) == sorted(
        [json.dumps(secret), json.dumps("second secret")])
    claim = api.claim(qname, limit=1)
    assert claim.status_code == 201 and claim.json()["messages"][0]["body"] == secret
    assert api.get(claim.headers["Location"]).json()["messages"][0]["body"] == secret
    popped = api.delete(f"/v2/queues/{qname}/messages", params={"pop": 1}).json()
    assert popped["messages"][0]["body"] == "second secret"
    ws = WsClient(srv.ws_url, project)
    try:
        status, body = ws.call("message_get", {"queue_name": qname, "message_id": ids[2]})
        assert status == 200 and body["messages"]["body"] == "third"
    finally:
        ws.close()


@SQLITE_ONLY
def test_a_missing_or_wrong_key_is_a_503_naming_the_queue_in_the_log(server_factory, project, qname):
    srv = server_factory(options("old-secret"))
    api = Api(srv.url, project)
    api.create_queue(qname, {"_enable_encrypt_messages": True})
    [old] = api.post_messages(qname, [{"body": "sealed with the old key"}])

    srv.restart(options("other-secret"))
    resp = api.get(f"/v2/queues/{qname}/messages", params={"echo": "true"}, allow_5xx=True)
    assert_error(resp, 503, "Service temporarily unavailable", "Messages could not be decrypted. Please try again in a few seconds.")
    assert api.post(f"/v2/queues/{qname}/claims", json={}, allow_5xx=True).status_code == 503
    # a pop that cannot open what it took deletes nothing
    assert api.delete(f"/v2/queues/{qname}/messages", params={"pop": 1},
                      allow_5xx=True).status_code == 503
    assert f"queue={qname}" in srv.log_text() or qname in srv.log_text()
    assert "cannot decrypt a message" in srv.log_text()

    srv.restart(options(""))
    assert_error(api.post(f"/v2/queues/{qname}/messages", json={"messages": [{"body": 1}]},
                          allow_5xx=True),
                 503, "Service temporarily unavailable", "Messages could not be enqueued. Please try again in a few seconds.")

    # rotation: the new key seals, the old one still opens
    srv.restart(options("new-secret, old-secret"))
    [new] = api.post_messages(qname, [{"body": "sealed with the new key"}])
    assert [m["body"] for m in api.list_messages(qname, echo="true")] == [
        "sealed with the old key", "sealed with the new key"]
    # the failed claim and pop released the old message at once: claimable now
    claim = api.claim(qname, limit=1)
    assert claim.status_code == 201, claim.text
    assert claim.json()["messages"][0]["body"] == "sealed with the old key"
    srv.restart(options("new-secret"))
    assert api.get(f"/v2/queues/{qname}/messages/{new}").json()["body"] == "sealed with the new key"
    assert api.get(f"/v2/queues/{qname}/messages/{old}", allow_5xx=True).status_code == 503


def test_subscribers_get_the_plaintext(server_factory, project, qname):
    receiver = Receiver()
    try:
        srv = server_factory(options("hook-secret"))
        api = Api(srv.url, project)
        api.create_queue(qname, {"_enable_encrypt_messages": True})
        assert api.post(f"/v2/queues/{qname}/subscriptions",
                        json={"subscriber": receiver.url + "/h", "ttl": 600}).status_code == 201
        api.post_messages(qname, [{"body": {"secret": 1}, "ttl": 300}])
        [got] = receiver.wait_for(1)
        assert json.loads(got["body"])["body"] == {"secret": 1}
    finally:
        receiver.close()
