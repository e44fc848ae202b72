"""Long polling (``wait=N`` on claims and message listings) against the real
server: a waiting claim or listing answers with the message posted while it
waited, over HTTP and WebSocket; ``wait`` is bounded by ``[transport]
max_long_poll_wait``; shutdown answers waiting requests; and across two
server processes on one Redis, a post on one wakes a claim waiting on the
other (through Redis pub/sub, which both processes are shown to subscribe to,
and which carries wake-ups only for queues a request waits for).
"""

import concurrent.futures
import os
import subprocess
import time
import uuid

import pytest

from test_pooling import RedisServer
from test_websocket import WsClient
from zaqar_testlib import Api, assert_error

pytestmark = pytest.mark.timeout(120)

WAIT_TEXT = "The wait of a request may not exceed {} seconds, and must be at least 0 seconds long."


def in_background(fn, *args, **kwargs):
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    future = pool.submit(fn, *args, **kwargs)
    pool.shutdown(wait=False)
    return future


def wait_for_claimer(api, queue):
    """Gives the waiting request a moment to reach the server (it is correct
    either way: a post before the claim arrives is found by its first look)."""
    time.sleep(0.3)


def test_a_waiting_claim_gets_the_message_posted_meanwhile(api, qname):
    api.create_queue(qname)
    claim = in_background(api.post, f"/v2/queues/{qname}/claims", params={"wait": 15, "limit": 5},
                          json={"ttl": 60, "grace": 60})
    wait_for_claimer(api, qname)
    assert not claim.done()
    [mid] = api.post_messages(qname, [{"body": "late", "ttl": 120}])
    resp = claim.result(timeout=30)
    assert resp.status_code == 201, resp.text
    assert [m["body"] for m in resp.json()["messages"]] == ["late"]
    assert resp.json()["messages"][0]["href"].split("?")[0].endswith(mid)


def test_a_waiting_listing_gets_the_message_posted_meanwhile(api, qname):
    listing = in_background(api.get, f"/v2/queues/{qname}/messages", params={"wait": 15, "echo": "true"})
    wait_for_claimer(api, qname)
    api.post_messages(qname, [{"body": {"n": 1}}])
    resp = listing.result(timeout=30)
    assert resp.status_code == 200, resp.text
    assert [m["body"] for m in resp.json()["messages"]] == [{"n": 1}]


def test_a_released_claim_wakes_a_waiting_claim(api, qname):
    api.post_messages(qname, [{"body": "once"}])
    first = api.claim(qname)
    assert first.status_code == 201
    second = in_background(api.post, f"/v2/queues/{qname}/claims", params={"wait": 15}, json={})
    wait_for_claimer(api, qname)
    assert api.delete(first.headers["Location"]).status_code == 204
    resp = second.result(timeout=30)
    assert resp.status_code == 201 and resp.json()["messages"][0]["body"] == "once"


def test_without_wait_nothing_changes_and_wait_is_bounded(api, qname):
    api.create_queue(qname)
    assert api.claim(qname).status_code == 204
    assert api.post(f"/v2/queues/{qname}/claims", params={"wait": 0}, json={}).status_code == 204
    assert api.get(f"/v2/queues/{qname}/messages", params={"wait": 0}).json()["messages"] == []
    for bad in (21, -1):
        assert_error(api.post(f"/v2/queues/{qname}/claims", params={"wait": bad}, json={}),
                     400, "Invalid API request", WAIT_TEXT.format(20))
        assert_error(api.get(f"/v2/queues/{qname}/messages", params={"wait": bad}),
                     400, "Invalid API request", WAIT_TEXT.format(20))
    resp = api.post(f"/v2/queues/{qname}/claims", params={"wait": "soon"}, json={})
    assert resp.status_code == 400


def test_max_long_poll_wait_is_configurable(server_factory, project, qname):
    srv = server_factory({"transport": {"max_long_poll_wait": 2}})
    api = Api(srv.url, project)
    assert_error(api.post(f"/v2/queues/{qname}/claims", params={"wait": 3}, json={}),
                 400, "Invalid API request", WAIT_TEXT.format(2))
    api.create_queue(qname)
    # an empty queue answers 204 once the wait is over
    assert api.post(f"/v2/queues/{qname}/claims", params={"wait": 1}, json={}).status_code == 204


def test_websocket_claim_and_listing_wait(server_factory, project, qname):
    srv = server_factory({"drivers": {"transport": "wsgi, websocket"}})
    http = Api(srv.url, project)
    http.create_queue(qname)
    ws = WsClient(srv.ws_url, project)
    try:
        ws.send_doc({"action": "claim_create", "headers": ws.headers,
                     "body": {"queue_name": qname, "wait": 15, "ttl": 60}})
        time.sleep(0.3)
        http.post_messages(qname, [{"body": "over http"}])
        resp = ws.recv_doc()
        assert resp["headers"]["status"] == 201, resp
        assert [m["body"] for m in resp["body"]["messages"]] == ["over http"]
        status, body = ws.call("message_list", {"queue_name": qname, "wait": 21})
        assert status == 400 and body["description"] == WAIT_TEXT.format(20)
    finally:
        ws.close()


def test_shutdown_answers_waiting_requests(server_factory, project, qname):
    srv = server_factory()
    api = Api(srv.url, project)
    api.create_queue(qname)
    claim = in_background(api.post, f"/v2/queues/{qname}/claims", params={"wait": 20}, json={})
    time.sleep(0.5)
    srv.stop()
    resp = claim.result(timeout=30)
    assert resp.status_code == 204


@pytest.fixture
def shared_redis(tmp_path):
    url = os.environ.get("ZAQAR_TEST_REDIS_URL")
    if url:
        yield url, None
        return
    r = RedisServer(tmp_path / "redis").start()
    yield r.url, r
    r.stop()


def test_a_post_on_one_process_wakes_a_claim_waiting_on_another(server_factory, project, qname,
                                                                 shared_redis):
    if os.environ.get("ZAQAR_TEST_BACKEND") == "mongodb":
        pytest.skip("ZAQAR_TEST_BACKEND=mongodb replaces the Redis stores this test is about")
    url, _ = shared_redis
    prefix = "zqlp" + uuid.uuid4().hex[:10]
    sep = "&" if "?" in url else "?"
    options = {"drivers": {"message_store": "redis", "management_store": "redis"},
               "drivers:message_store:redis": {"uri": f"{url}{sep}key_prefix={prefix}"},
               "drivers:management_store:redis": {"uri": f"{url}{sep}key_prefix={prefix}"}}
    one, two = server_factory(options), server_factory(options)
    port = url.rsplit(":", 1)[1].split("/")[0].split("?")[0]
    # both processes listen for wake-ups
    for _ in range(50):
        out = subprocess.run(["redis-cli", "-p", port, "PUBSUB", "NUMSUB", f"{prefix}:wake"],
                             capture_output=True, text=True).stdout.split()
        if out[-1] == "2":
            break
        time.sleep(0.1)
    assert out[-1] == "2", out
    a, b = Api(one.url, project), Api(two.url, project)
    a.create_queue(qname)

    def polled_keys():
        out = subprocess.run(["redis-cli", "-p", port, "--scan", "--pattern", f"{prefix}:*:polled"],
                             capture_output=True, text=True, check=True).stdout.split()
        return [k for k in out if f":{qname}}}" in k]

    # Posts publish wake-ups only for queues a request waits for: nothing
    # waits yet, so nothing is announced.
    a.post_messages(qname, [{"body": "before"}])
    assert polled_keys() == []
    b.post(f"/v2/queues/{qname}/claims", json={"ttl": 60})  # takes "before"
    claim = in_background(b.post, f"/v2/queues/{qname}/claims", params={"wait": 15}, json={"ttl": 60})
    for _ in range(50):
        if polled_keys():
            break
        time.sleep(0.1)
    assert len(polled_keys()) == 1, "the waiting claim announced itself"
    a.post_messages(qname, [{"body": "from the other process"}])
    resp = claim.result(timeout=30)
    assert resp.status_code == 201, resp.text
    assert [m["body"] for m in resp.json()["messages"]] == ["from the other process"]
