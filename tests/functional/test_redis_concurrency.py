"""Many consumers, two API servers, one Redis: claims never overlap.

Runs only with the Redis backend (``ZAQAR_TEST_BACKEND=redis`` and
``ZAQAR_TEST_REDIS_URL``, as run_tests.sh sets them for the second
functional run).  Two zaqar-server processes share one key prefix in that
Redis, so they serve the same queues; producers post while 16 consumers
claim, through both servers, and delete what they claimed.  Every claim
outlives the test, so a message returned by two claims would have been held
by two live claims at once.  A metadata change made through one server
decides the other's next post or claim at once (each keeps the metadata it
posts and claims against in memory, checked by the script).
"""

import json
import os
import uuid

import pytest

from two_servers import each_message_consumed_once
from zaqar_testlib import Api

pytestmark = pytest.mark.skipif(
    os.environ.get("ZAQAR_TEST_BACKEND") != "redis",
    reason="needs ZAQAR_TEST_BACKEND=redis and ZAQAR_TEST_REDIS_URL")

def shared_redis_options():
    base = os.environ["ZAQAR_TEST_REDIS_URL"]
    sep = "&" if "?" in base else "?"
    uri = f"{base}{sep}key_prefix=zqc-{uuid.uuid4().hex[:12]}"
    return {"drivers:message_store:redis": {"uri": uri}}


def test_consumers_on_two_servers_take_each_message_once(server_factory, project):
    options = shared_redis_options()
    each_message_consumed_once([server_factory(options), server_factory(options)], project)



JSON_PATCH = "application/openstack-messaging-v2.0-json-patch"


def test_a_metadata_change_through_one_server_holds_at_once_on_the_other(server_factory,
                                                                         project):
    """A server keeps a queue's metadata in memory for its posts; the post
    script checks it is still current. So a change made through another
    server decides the very next post: a new size limit, a new default
    ttl, the queue deleted."""
    options = shared_redis_options()
    a = Api(server_factory(options).url, project)
    b = Api(server_factory(options).url, project)
    queue = "meta-" + uuid.uuid4().hex[:8]
    a.create_queue(queue)
    body = {"text": "x" * 200}
    a.post_messages(queue, [{"ttl": 300, "body": body}])  # A now holds the metadata

    def patch(ops):
        resp = b.patch(f"/v2/queues/{queue}", data=json.dumps(ops),
                       headers={"Content-Type": JSON_PATCH})
        assert resp.status_code == 200, resp.text

    patch([{"op": "add", "path": "/metadata/_max_messages_post_size", "value": 100}])
    resp = a.post(f"/v2/queues/{queue}/messages", json={"messages": [{"ttl": 300, "body": body}]})
    assert resp.status_code == 400, resp.text
    assert "max size for current queue is 100" in resp.json()["description"]

    patch([{"op": "remove", "path": "/metadata/_max_messages_post_size"},
           {"op": "add", "path": "/metadata/_default_message_ttl", "value": 77}])
    [mid] = a.post_messages(queue, [{"body": body}])
    assert b.get(f"/v2/queues/{queue}/messages/{mid}").json()["ttl"] == 77

    assert b.delete(f"/v2/queues/{queue}").status_code == 204
    [fresh] = a.post_messages(queue, [{"body": body}])  # re-creates the queue
    listed = b.list_messages(queue, echo="true")
    assert [m["id"] for m in listed] == [fresh]
    assert listed[0]["ttl"] != 77, "the deleted queue's default ttl must not survive it"


def test_a_delay_policy_changed_through_one_server_holds_at_once_for_listings_on_the_other(
        server_factory, project):
    """Listings take the delay policy (a queue with a default delay hides
    its delayed messages unless asked for them; any other queue lists
    them) from the metadata a server keeps in memory, checked by the list
    script like a post's. A change made through another server counts from
    the very next listing."""
    options = shared_redis_options()
    a = Api(server_factory(options).url, project)
    b = Api(server_factory(options).url, project)
    queue = "dlist-" + uuid.uuid4().hex[:8]
    resp = a.put(f"/v2/queues/{queue}", json={"_default_message_delay": 300})
    assert resp.status_code == 201, resp.text
    [mid] = a.post_messages(queue, [{"ttl": 600, "body": "later"}])
    # A now holds the metadata of a delay queue: the message is hidden.
    assert a.list_messages(queue, echo="true") == []
    resp = b.patch(f"/v2/queues/{queue}", data=json.dumps([
        {"op": "remove", "path": "/metadata/_default_message_delay"}]),
        headers={"Content-Type": JSON_PATCH})
    assert resp.status_code == 200, resp.text
    assert [m["id"] for m in a.list_messages(queue, echo="true")] == [mid]
    # The queue deleted through B: A lists nothing, at once.
    assert b.delete(f"/v2/queues/{queue}").status_code == 204
    assert a.list_messages(queue, echo="true") == []


def test_a_dead_letter_policy_set_through_one_server_holds_at_once_for_claims_on_the_other(
        server_factory, project):
    """Claims take the dead-letter policy from the metadata a server keeps
    in memory, checked by the claim script like a post's. A policy set
    through another server counts from the very next claim: a message
    claimed once under it moves to the dead-letter queue on the claim
    after (a claim under the old, policy-less metadata would not have
    counted, and the message would be handed out again)."""
    options = shared_redis_options()
    a = Api(server_factory(options).url, project)
    b = Api(server_factory(options).url, project)
    queue = "dlp-" + uuid.uuid4().hex[:8]
    dlq = queue + "-dlq"
    a.create_queue(queue)
    [mid] = a.post_messages(queue, [{"ttl": 600, "body": "poison"}])

    def claim_and_release():
        resp = a.claim(queue)
        assert resp.status_code == 201, resp.text
        assert [m["id"] for m in resp.json()["messages"]] == [mid]
        assert a.delete(resp.headers["Location"]).status_code == 204

    claim_and_release()  # A now holds the metadata, without a policy
    resp = b.patch(f"/v2/queues/{queue}", data=json.dumps([
        {"op": "add", "path": "/metadata/_max_claim_count", "value": 1},
        {"op": "add", "path": "/metadata/_dead_letter_queue", "value": dlq}]),
        headers={"Content-Type": JSON_PATCH})
    assert resp.status_code == 200, resp.text
    claim_and_release()  # counted under the new policy
    resp = a.claim(queue)
    assert resp.status_code == 204, resp.text
    assert [m["body"] for m in b.list_messages(dlq, echo="true")] == ["poison"]
