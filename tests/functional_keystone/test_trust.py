"""trust+ subscriptions against a REAL Keystone (issue 6, "Trust").

The zaqar-tempest-plugin 4.3.0 scenario (test_trust_subscription): a
``trust+http`` subscription on queue A whose subscriber is this server's own
``/v2/queues/B/messages``, with ``post_data`` wrapping the notification in a
message and ``post_headers`` naming the project and a Client-ID.  Creating it
makes a Keystone trust from the caller to the ``[trustee]`` user (the zaqar
service user); posting to A makes the notification appear in B, posted with a
token obtained from the trust.  Also: the trust's attributes, a trust id of
someone else refused, and a server without ``[trustee]``.
"""

import json
import time
import uuid

import pytest
import requests

from test_keystone import call, qname

pytestmark = pytest.mark.timeout(300)

ALLOW_LOOPBACK = {"notification": {"allowed_subscriber_networks": "127.0.0.0/8"}}


def trustee_options(ks):
    env = ks.env
    return {"trustee": {
        "auth_url": ks.auth_url,
        "username": env["KEYSTONE_SERVICE_USER"],
        "password": env["KEYSTONE_SERVICE_PASSWORD"],
        "user_domain_name": "Default",
    }}


def trust_server(ks, ks_server, with_trustee=True):
    extra = dict(ALLOW_LOOPBACK)
    if with_trustee:
        extra.update(trustee_options(ks))
    return ks_server(extra=extra)


def subscribe(srv, token, project, source, target, ttl=1200, options=None):
    subscriber = f"trust+{srv.url}/v2/queues/{target}/messages"
    post_body = json.dumps({"messages": [{"body": "$zaqar_message$", "ttl": 60}]})
    body = {"ttl": ttl, "subscriber": subscriber, "options": {
        "post_data": post_body,
        "post_headers": {"X-Project-ID": project, "Client-ID": str(uuid.uuid4())},
        **(options or {}),
    }}
    return call(srv, "POST", f"/v2/queues/{source}/subscriptions", token, json=body)


def get_trust(ks, trust_id):
    admin = ks.token("admin")
    resp = requests.get(f"{ks.auth_url}/OS-TRUST/trusts/{trust_id}",
                        headers={"X-Auth-Token": admin}, timeout=30)
    assert resp.status_code == 200, resp.text
    return resp.json()["trust"]


def wait_for_messages(srv, token, queue, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        resp = call(srv, "GET", f"/v2/queues/{queue}/messages?echo=true", token)
        if resp.status_code == 200 and resp.json().get("messages"):
            return resp.json()["messages"]
        time.sleep(0.3)
    return []


def test_tempest_trust_subscription(ks, ks_server, alice):
    srv = trust_server(ks, ks_server)
    source, target = qname(), qname()
    resp = subscribe(srv, alice, ks.proj_a, source, target)
    assert resp.status_code == 201, resp.text
    sid = resp.json()["subscription_id"]

    sub = call(srv, "GET", f"/v2/queues/{source}/subscriptions/{sid}", alice).json()
    trust_id = sub["options"]["trust_id"]
    trust = get_trust(ks, trust_id)
    env = ks.env
    assert trust["trustor_user_id"] == env["KEYSTONE_ALICE_USER_ID"]
    assert trust["trustee_user_id"] == env["KEYSTONE_SERVICE_USER_ID"]
    assert trust["project_id"] == ks.proj_a
    assert trust["impersonation"] is True
    assert "member" in {r["name"] for r in trust["roles"]}
    assert trust["expires_at"] is not None

    message = {"body": {"event": "BackupStarted", "n": 1}, "ttl": 300}
    assert call(srv, "POST", f"/v2/queues/{source}/messages", alice,
                json={"messages": [message]}).status_code == 201
    got = wait_for_messages(srv, alice, target)
    assert got, srv.log_text()
    expected = dict(message, queue_name=source, Message_Type="Notification")
    notifications = [m for m in got if m["body"].get("Message_Type") == "Notification"]
    assert [m["body"] for m in notifications] == [expected]
    # The message the notifier posted into B lives 60 s, as post_data asks.
    assert notifications[0]["ttl"] == 60
    # Never the caller's token in the log.
    assert alice not in srv.log_text(tail=100000)


def test_a_given_trust_id_must_be_the_callers(ks, ks_server, alice, bob):
    srv = trust_server(ks, ks_server)
    source, target = qname(), qname()
    resp = subscribe(srv, alice, ks.proj_a, source, target)
    assert resp.status_code == 201, resp.text
    sid = resp.json()["subscription_id"]
    alice_trust = call(srv, "GET", f"/v2/queues/{source}/subscriptions/{sid}",
                       alice).json()["options"]["trust_id"]
    # bob names alice's trust: Keystone does not show it to him.
    resp = subscribe(srv, bob, ks.proj_b, qname(), qname(), options={"trust_id": alice_trust})
    assert resp.status_code == 400, resp.text
    assert "trust" in resp.json()["description"]
    # alice may name her own.
    resp = subscribe(srv, alice, ks.proj_a, qname(), target, options={"trust_id": alice_trust})
    assert resp.status_code == 201, resp.text


def test_duplicate_unconfirmed_subscription_makes_no_second_trust(ks, ks_server, alice):
    srv = trust_server(ks, ks_server)
    source, target = qname(), qname()
    first = subscribe(srv, alice, ks.proj_a, source, target)
    again = subscribe(srv, alice, ks.proj_a, source, target)
    assert first.status_code == again.status_code == 201, (first.text, again.text)
    assert first.json() == again.json()


def test_without_trustee_credentials(ks, ks_server, alice):
    srv = trust_server(ks, ks_server, with_trustee=False)
    resp = subscribe(srv, alice, ks.proj_a, qname(), qname())
    assert resp.status_code == 503, resp.text
    assert "[trustee]" in resp.json()["description"]
