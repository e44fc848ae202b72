"""Notifications delivered by the real binary to real receivers.

Every server here allows 127.0.0.0/8 as subscriber network explicitly
(``[notification] allowed_subscriber_networks``); by default such subscribers
are refused (see test_subscriptions.py).  Receivers are small HTTP servers on
loopback (receivers.py); e-mail goes through an ``smtp_command`` script that
records what it reads, the mechanism the reference uses.
"""

import json
import re
import time

import pytest
import requests

from receivers import BlackHole, Receiver, mail_recorder, read_mails, reserve_port
from zaqar_testlib import Api, assert_error

ALLOW_LOOPBACK = {"notification": {"allowed_subscriber_networks": "127.0.0.0/8"}}
FAST_RETRIES = {"retries_with_no_delay": 0, "minimum_delay_retries": 120, "minimum_delay": 1,
                "maximum_delay": 11, "maximum_delay_retries": 0}


def merged(*dicts):
    out = {}
    for d in dicts:
        for section, opts in d.items():
            out.setdefault(section, {}).update(opts)
    return out


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def subscribe(api, q, subscriber, **extra):
    resp = api.post(f"/v2/queues/{q}/subscriptions", json={"subscriber": subscriber, **extra})
    assert resp.status_code == 201, resp.text
    return resp.json()["subscription_id"]


def test_every_posted_message_arrives(server_factory, receiver, project, qname):
    srv = server_factory(ALLOW_LOOPBACK)
    api = Api(srv.url, project)
    subscribe(api, qname, receiver.url + "/hook")
    api.post_messages(qname, [{"body": {"n": 1}, "ttl": 300}, {"body": "two", "ttl": 400}])
    api.post_messages(qname, [{"body": [3], "ttl": 500}])
    got = receiver.wait_for(3)
    assert all(r["path"] == "/hook" for r in got)
    assert all(r["headers"]["content-type"] == "application/json" for r in got)
    bodies = sorted(receiver.json_bodies(), key=lambda b: b["ttl"])
    assert bodies == [
        {"ttl": 300, "body": {"n": 1}, "Message_Type": "Notification", "queue_name": qname},
        {"ttl": 400, "body": "two", "Message_Type": "Notification", "queue_name": qname},
        {"ttl": 500, "body": [3], "Message_Type": "Notification", "queue_name": qname},
    ]
    time.sleep(0.5)
    assert len(receiver.requests) == 3, "each message is delivered once"


def test_post_data_and_post_headers(server_factory, receiver, project, qname):
    srv = server_factory(ALLOW_LOOPBACK)
    api = Api(srv.url, project)
    subscribe(api, qname, receiver.url + "/custom", options={
        "post_data": '{"wrapped": "$zaqar_message$", "static": 1}',
        "post_headers": {"X-Custom": "yes", "Content-Type": "application/vnd.test+json"},
    })
    api.post_messages(qname, [{"body": "payload", "ttl": 300}])
    [req] = receiver.wait_for(1)
    assert req["headers"]["x-custom"] == "yes"
    assert req["headers"]["content-type"] == "application/vnd.test+json"
    sent = json.loads(req["body"])
    assert sent["static"] == 1
    assert sent["wrapped"]["body"] == "payload" and sent["wrapped"]["queue_name"] == qname


def test_5xx_answers_are_retried(server_factory, project, qname):
    # The reference retries only on connection errors; we retry 5xx too.
    receiver = Receiver(statuses=[503, 503])
    try:
        srv = server_factory(ALLOW_LOOPBACK)
        api = Api(srv.url, project)
        subscribe(api, qname, receiver.url + "/flaky")
        api.post_messages(qname, [{"body": "persist", "ttl": 300}])
        [ok] = receiver.wait_for(1)
        assert [r["status"] for r in receiver.requests] == [503, 503, 200]
        assert json.loads(ok["body"])["body"] == "persist"
    finally:
        receiver.close()


def test_4xx_answers_are_final(server_factory, project, qname):
    receiver = Receiver(statuses=[404])
    try:
        srv = server_factory(ALLOW_LOOPBACK)
        api = Api(srv.url, project)
        subscribe(api, qname, receiver.url + "/gone")
        api.post_messages(qname, [{"body": 1, "ttl": 300}])
        deadline = time.monotonic() + 10
        while not receiver.requests and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.5)
        assert [r["status"] for r in receiver.requests] == [404]
    finally:
        receiver.close()


def test_receiver_down_across_a_server_restart(server_factory, project, qname):
    port = reserve_port()
    srv = server_factory(ALLOW_LOOPBACK)
    api = Api(srv.url, project)
    api.create_queue(qname, {"_retry_policy": FAST_RETRIES})
    subscribe(api, qname, f"http://127.0.0.1:{port}/late")
    api.post_messages(qname, [{"body": "survives", "ttl": 300}])
    time.sleep(1.5)  # a few failed attempts while the receiver is down
    srv.restart(graceful=False)
    receiver = Receiver(port=port)
    try:
        [req] = receiver.wait_for(1, timeout=40)
        assert json.loads(req["body"])["body"] == "survives"
        time.sleep(1.5)
        assert len(receiver.delivered()) == 1
    finally:
        receiver.close()


def test_mailto_through_smtp_command(server_factory, tmp_path, project, qname):
    command, mailbox = mail_recorder(tmp_path)
    srv = server_factory(merged(ALLOW_LOOPBACK, {"notification": {"smtp_command": command}}))
    api = Api(srv.url, project)
    subscribe(api, qname, "mailto:ops@example.com?subject=Queue%20news",
              options={"from": "zaqar@example.com"})
    api.post_messages(qname, [{"body": {"alert": "disk"}, "ttl": 300}])
    [mail] = read_mails(mailbox, 1)
    headers, _, body = mail.partition("\n\n")
    lines = headers.splitlines()
    assert "to: ops@example.com" in lines
    assert "from: zaqar@example.com" in lines
    assert "subject: Queue news" in lines
    assert json.loads(body) == {"ttl": 300, "body": {"alert": "disk"}, "Message_Type": "Notification",
                                "queue_name": qname}


def test_confirmation_flow(server_factory, receiver, project, qname):
    srv = server_factory(merged(ALLOW_LOOPBACK, {
        "notification": {"require_confirmation": "true"},
        "signed_url": {"secret_key": "confirm-secret"},
        "metrics": {"enabled": "true"},
    }))

    def fanouts():
        """Posts expanded for their subscribers so far (see monitoring.rst)."""
        text = requests.get(srv.url + "/metrics", timeout=10).text
        found = re.findall(r'^zaqar_notification_deliveries_total\{kind="fanout",result="delivered"\} (\S+)$',
                           text, re.M)
        return float(found[0]) if found else 0.0

    api = Api(srv.url, project)
    sid = subscribe(api, qname, receiver.url + "/confirm-me")
    [req] = receiver.wait_for(1)
    conf = json.loads(req["body"])
    assert conf["Message_Type"] == "SubscriptionConfirmation"
    assert conf["Message"] == f"You have chosen to subscribe to the queue: {qname}"
    assert conf["URL-Methods"] == "PUT"
    assert conf["URL-Paths"] == f"/v2/queues/{qname}/subscriptions/{sid}/confirm"
    assert conf["X-Project-ID"] == project
    assert conf["SubscribeBody"] == {"confirmed": True}

    # Unconfirmed: nothing is delivered, and the post queued nothing for the
    # workers to expand (its store call said nobody confirmed is subscribed).
    api.post_messages(qname, [{"body": "not yet", "ttl": 300}])
    time.sleep(1.5)
    assert len(receiver.requests) == 1
    assert fanouts() == 0

    # The subscriber confirms through the signed URL alone (no other credentials).
    headers = {"URL-Signature": conf["URL-Signature"], "URL-Methods": conf["URL-Methods"],
               "URL-Paths": conf["URL-Paths"], "URL-Expires": conf["URL-Expires"],
               "X-Project-ID": conf["X-Project-ID"], "Client-ID": "3381af92-2b9e-11e3-b191-71861300734c",
               "Content-Type": "application/json"}
    tampered = dict(headers, **{"URL-Signature": "0" * 64})
    bad = requests.put(srv.url + conf["URL-Paths"], headers=tampered, data=json.dumps(conf["SubscribeBody"]))
    assert bad.status_code == 404 and bad.json() == {"title": "404 Not Found"}
    ok = requests.put(srv.url + conf["URL-Paths"], headers=headers, data=json.dumps(conf["SubscribeBody"]))
    assert ok.status_code == 204, ok.text
    assert api.get(f"/v2/queues/{qname}/subscriptions/{sid}").json()["confirmed"] is True

    api.post_messages(qname, [{"body": "now", "ttl": 300}])
    got = receiver.wait_for(2)
    assert json.loads(got[1]["body"])["body"] == "now"
    deadline = time.monotonic() + 5  # counted just after the expansion
    while fanouts() < 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert fanouts() == 1

    # Unconfirming sends an UnsubscribeConfirmation, and posts reach nobody.
    api.put(f"/v2/queues/{qname}/subscriptions/{sid}/confirm", json={"confirmed": False})
    got = receiver.wait_for(3)
    assert json.loads(got[2]["body"])["Message_Type"] == "UnsubscribeConfirmation"
    api.post_messages(qname, [{"body": "gone", "ttl": 300}])
    time.sleep(1.5)
    assert len(receiver.requests) == 3
    assert fanouts() == 1


def test_tutorial_example_stage(server_factory, project, qname):
    srv = server_factory({
        "storage": {"message_pipeline": "zaqar.stages.example.max_body_size"},
        "stages:max_body_size": {"max_body_bytes": "64"},
    })
    api = Api(srv.url, project)
    big = api.post(f"/v2/queues/{qname}/messages", json={"messages": [{"body": "x" * 100, "ttl": 300}]})
    assert_error(big, 400, "Invalid API request", "Message body is larger than 64 bytes.")
    assert api.list_messages(qname, echo="true") == []
    api.post_messages(qname, [{"body": "small", "ttl": 300}])
    assert [m["body"] for m in api.list_messages(qname, echo="true")] == ["small"]


def test_notifier_named_in_the_pipeline_is_accepted(server_factory, receiver, project, qname):
    srv = server_factory(merged(ALLOW_LOOPBACK,
                                {"storage": {"message_pipeline": "zaqar.notification.notifier"}}))
    api = Api(srv.url, project)
    subscribe(api, qname, receiver.url)
    api.post_messages(qname, [{"body": 1, "ttl": 300}])
    receiver.wait_for(1)
    time.sleep(0.5)
    assert len(receiver.requests) == 1, "named and default notifier must not both run"


PROXY_VARIABLES = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")


def wait_for_log(srv, *needles, timeout=30):
    """Waits until one line of the server's log holds every needle."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in srv.log_text(tail=100000).splitlines():
            if all(n in line for n in needles):
                return line
        time.sleep(0.05)
    raise AssertionError(f"no log line with {needles} within {timeout}s:\n{srv.log_text()}")


def test_webhooks_ignore_proxy_variables(server_factory, receiver, project, qname):
    # Defect: the delivery client honoured HTTP_PROXY & co., so the proxy
    # resolved subscriber names and the address guard never saw where they
    # led. The "proxy" is a real HTTP server that records what it is sent.
    proxy = Receiver()
    try:
        env = {v: proxy.url for v in PROXY_VARIABLES}
        env.update(NO_PROXY="", no_proxy="")
        srv = server_factory(ALLOW_LOOPBACK, env=env)
        api = Api(srv.url, project)
        # .invalid never resolves (RFC 6761): accepted at subscription time,
        # then refused by the guard at each delivery. A proxy would have
        # been handed the name to resolve itself.
        hidden = subscribe(api, qname, "http://subscriber.invalid/hook")
        subscribe(api, qname, receiver.url + "/direct")
        api.post_messages(qname, [{"body": "direct", "ttl": 300}])
        [req] = receiver.wait_for(1)
        assert req["path"] == "/direct"
        assert json.loads(req["body"])["body"] == "direct"
        line = wait_for_log(srv, f"subscription={hidden}", "notification will be retried")
        assert "subscriber.invalid" in line, line
        assert proxy.requests == []
    finally:
        proxy.close()


def test_webhook_proxy_option(server_factory, project, qname):
    # With [notification] webhook_proxy, deliveries go through that proxy
    # (which is then the guard): the subscriber's name reaches it unresolved.
    proxy = Receiver()
    try:
        srv = server_factory({"notification": {"webhook_proxy": proxy.url}})
        api = Api(srv.url, project)
        subscribe(api, qname, "http://subscriber.invalid:8080/hook?x=1")
        api.post_messages(qname, [{"body": "proxied", "ttl": 300}])
        [req] = proxy.wait_for(1)
        assert req["path"] == "http://subscriber.invalid:8080/hook?x=1"
        assert req["headers"]["host"] == "subscriber.invalid:8080"
        assert json.loads(req["body"])["body"] == "proxied"
    finally:
        proxy.close()


def test_subscriber_secrets_stay_out_of_the_log(server_factory, project, qname):
    # Defect: subscriber URLs (credentials, tokens in the query) were logged
    # whole at WARN. Both the "dropped" line (a 4xx) and the "retried" line
    # (a connection error, whose text used to embed the URL) are checked.
    receiver = Receiver(statuses=[404])
    try:
        srv = server_factory(ALLOW_LOOPBACK)
        api = Api(srv.url, project)
        host = receiver.url.removeprefix("http://")
        dropped = subscribe(api, qname, f"http://alice:pa55word@{host}/hook?token=t0ps3cret#frag")
        refused = subscribe(api, qname, f"http://bob:hunter2@127.0.0.1:{reserve_port()}/x?sig=s1gnature")
        api.post_messages(qname, [{"body": 1, "ttl": 300}])
        line = wait_for_log(srv, f"subscription={dropped}", "notification dropped")
        assert f"http://***@{host}/hook?***#***" in line, line
        line = wait_for_log(srv, f"subscription={refused}", "notification will be retried")
        assert "http://***@127.0.0.1:" in line and "/x?***" in line, line
        log = srv.log_text(tail=100000)
        for secret in ("alice", "pa55word", "t0ps3cret", "frag", "bob", "hunter2", "s1gnature"):
            assert secret not in log
    finally:
        receiver.close()


def test_one_projects_hanging_subscribers_delay_no_other(server_factory, project, qname):
    # Defect: 30 subscriptions of one project to an endpoint that accepts and
    # never answers held every delivery worker until the webhook timeout, so
    # another project's notification waited 30 s. Now a project has at most
    # max_notifier_workers_per_project deliveries in flight and the projects
    # take turns. Asserted by order: Y's notification arrives while every
    # request to X's subscribers still hangs (none has timed out).
    hole = BlackHole()
    receiver = Receiver()
    try:
        srv = server_factory(merged(ALLOW_LOOPBACK, {"notification": {
            "max_notifier_workers": 4, "max_notifier_workers_per_project": 2, "webhook_timeout": 30}}))
        x = Api(srv.url, project + "-x")
        y = Api(srv.url, project + "-y")
        for i in range(10):
            subscribe(x, qname, f"{hole.url}/x{i}")
        x.post_messages(qname, [{"body": "x", "ttl": 300}])
        hole.wait_for_hanging(2)
        subscribe(y, qname, receiver.url + "/y")
        y.post_messages(qname, [{"body": "y", "ttl": 300}])
        [req] = receiver.wait_for(1, timeout=150)
        assert json.loads(req["body"])["body"] == "y"
        assert hole.closed == 0, "Y's notification waited for X's requests to time out"
        assert hole.accepted == 2, "X had more than its share of the workers"
    finally:
        hole.close()
        receiver.close()
