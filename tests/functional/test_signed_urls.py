"""Pre-signed URLs (behaviour notes §10): share, and requests authorised by
URL-Signature, including python-zaqarclient's ``signed-url`` auth backend."""

import datetime
import hashlib
import hmac
import re

import pytest
from zaqarclient.queues.v2 import client as zclient

from zaqar_testlib import Api, assert_error

KEY = "functional-test-secret"


@pytest.fixture(scope="module")
def signed_server(tmp_path_factory):
    from zaqar_testlib import ZaqarServer
    srv = ZaqarServer(tmp_path_factory.mktemp("zaqar-signed"), {"signed_url": {"secret_key": KEY}}).start()
    yield srv
    srv.stop()
    assert not srv.panicked(), srv.log_text()


@pytest.fixture
def sapi(signed_server, project):
    return Api(signed_server.url, project)


def reference_signature(paths, methods, project, expires):
    text = r"%s\n%s\n%s\n%s" % (",".join(sorted(paths)), ",".join(sorted(methods)), project, expires)
    return hmac.new(KEY.encode(), text.encode(), hashlib.sha256).hexdigest()


def share(api, q, **body):
    resp = api.post(f"/v2/queues/{q}/share", json=body)
    assert resp.status_code == 200, resp.text
    return resp.json()


def signed_headers(grant, project=None):
    return {
        "URL-Signature": grant["signature"],
        "URL-Expires": grant["expires"],
        "URL-Methods": ",".join(grant["methods"]),
        "URL-Paths": ",".join(grant["paths"]),
        "X-Project-ID": project or grant["project"],
    }


def test_share_defaults(sapi, qname):
    grant = share(sapi, qname)
    assert grant["paths"] == [f"/v2/queues/{qname}/messages"]
    assert grant["methods"] == ["GET"]
    assert grant["project"] == sapi.project_id
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", grant["expires"])
    expires = datetime.datetime.strptime(grant["expires"], "%Y-%m-%dT%H:%M:%S")
    ahead = expires - datetime.datetime.utcnow()
    assert datetime.timedelta(hours=23) < ahead <= datetime.timedelta(days=1)
    # The reference's algorithm, computed here independently.
    assert grant["signature"] == reference_signature(grant["paths"], grant["methods"], sapi.project_id,
                                                     grant["expires"])


def test_share_sorted_paths_and_methods(sapi, qname):
    grant = share(sapi, qname, paths=["subscriptions", "messages", "claims"], methods=["POST", "GET"],
                  expires="2099-01-01T10:00:00+02:00")
    assert grant["paths"] == [f"/v2/queues/{qname}/{p}" for p in ("claims", "messages", "subscriptions")]
    assert grant["methods"] == ["GET", "POST"]
    assert grant["expires"] == "2099-01-01T08:00:00"


@pytest.mark.parametrize("body, description", [
    ({"paths": ["messages"], "nope": 1}, "Unknown keys: {'nope'}"),
    ({"paths": ["queues"]}, "Invalid paths: {'queues'}"),
    ({"methods": "GET"}, "`methods` should be a list"),
    ({"expires": "2001-01-01T00:00:00"}, "`expires` is lower than the current time"),
    ({"expires": 1234},
     "`expires` should be date format, for example 2016-01-01T00:00:00, not integer value: 1234"),
])
def test_share_errors(sapi, qname, body, description):
    assert_error(sapi.post(f"/v2/queues/{qname}/share", json=body), 400, "Invalid API request", description)


def test_share_without_secret_key(api, qname):
    assert_error(api.post(f"/v2/queues/{qname}/share", json={}), 400, "Invalid API request",
                 "The `key` can't be None")


def test_signed_request_reads_messages(sapi, signed_server, qname):
    sapi.post_messages(qname, [{"body": "hello", "ttl": 300}])
    grant = share(sapi, qname, methods=["GET"])
    # No X-Project-ID default of the helper: only the signed headers.
    other = Api(signed_server.url, None)
    resp = other.get(f"/v2/queues/{qname}/messages", params={"echo": "true"}, headers=signed_headers(grant))
    assert resp.status_code == 200, resp.text
    assert [m["body"] for m in resp.json()["messages"]] == ["hello"]
    mid = resp.json()["messages"][0]["id"]
    one = other.get(f"/v2/queues/{qname}/messages/{mid}", headers=signed_headers(grant))
    assert one.status_code == 200


@pytest.mark.parametrize("tamper", ["signature", "method", "path", "project", "expires", "paths"])
def test_signed_request_refused(sapi, signed_server, qname, tamper):
    grant = share(sapi, qname, methods=["GET"])
    headers = signed_headers(grant)
    method, path = "GET", f"/v2/queues/{qname}/messages"
    if tamper == "signature":
        headers["URL-Signature"] = "0" * 64
    elif tamper == "method":
        method = "POST"
    elif tamper == "path":
        path = f"/v2/queues/{qname}/subscriptions"
    elif tamper == "project":
        headers["X-Project-ID"] = "someone-else"
    elif tamper == "expires":
        headers["URL-Expires"] = "2099-01-01T00:00:00"
    elif tamper == "paths":
        headers["URL-Paths"] = f"/v2/queues/{qname}/messages,/v2/queues/{qname}/claims"
    other = Api(signed_server.url, None)
    kwargs = {"json": {"messages": [{"body": 1}]}} if method == "POST" else {}
    resp = other.request(method, path, headers=headers, **kwargs)
    assert resp.status_code == 404, resp.text
    assert resp.json() == {"title": "404 Not Found"}


def test_expired_signature_refused(sapi, signed_server, qname):
    expires = "2001-01-01T00:00:00"
    paths = [f"/v2/queues/{qname}/messages"]
    headers = {"URL-Signature": reference_signature(paths, ["GET"], sapi.project_id, expires),
               "URL-Expires": expires, "URL-Methods": "GET", "URL-Paths": paths[0],
               "X-Project-ID": sapi.project_id}
    resp = Api(signed_server.url, None).get(paths[0], headers=headers)
    assert resp.status_code == 404 and resp.json() == {"title": "404 Not Found"}


def test_python_zaqarclient_signed_url(signed_server, project, qname):
    conf = {"auth_opts": {"backend": "noauth", "options": {"os_project_id": project}}}
    client = zclient.Client(signed_server.url, version=2, conf=conf)
    queue = client.queue(qname)
    queue.post([{"ttl": 300, "body": "Post It!"}])
    signature = queue.signed_url(ttl_seconds=600, methods=["GET", "POST"])
    opts = {
        "paths": signature["paths"],
        "expires": signature["expires"],
        "methods": signature["methods"],
        "signature": signature["signature"],
        "os_project_id": signature["project"],
    }
    signed = zclient.Client(signed_server.url, version=2,
                            conf={"auth_opts": {"backend": "signed-url", "options": opts}})
    squeue = signed.queue(qname, auto_create=False)
    [message] = list(squeue.messages(echo=True))
    assert message.body == "Post It!"
    squeue.post([{"ttl": 300, "body": "via signature"}])
    bodies = sorted(m.body for m in squeue.messages(echo=True))
    assert bodies == ["Post It!", "via signature"]
