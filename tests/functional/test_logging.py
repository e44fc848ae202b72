"""Every log line of a request can be found by its request id.

The server opens a span per request (HTTP) and per frame (WebSocket) that
carries ``request_id`` (the ``x-openstack-request-id`` it answers with) and,
when the caller sent one, ``global_request_id`` (oslo's name for the id of
the request on whose behalf a service calls).
"""

import uuid

from zaqar_testlib import Api


def test_log_lines_carry_the_request_and_global_request_ids(server_factory):
    srv = server_factory(env={"RUST_LOG": "debug"})
    api = Api(srv.url, "p-" + uuid.uuid4().hex)
    global_id = f"req-{uuid.uuid4()}"
    resp = api.put("/v2/queues/logged", headers={"X-OpenStack-Request-ID": global_id})
    assert resp.status_code == 201
    request_id = resp.headers["x-openstack-request-id"]
    assert request_id != global_id
    lines = [line for line in srv.log_text(tail=10_000).splitlines() if request_id in line]
    assert lines, srv.log_text()
    assert all(global_id in line for line in lines), lines
    # an id that is not of the req-<uuid> form is not echoed into the logs
    resp = api.get("/v2/queues", headers={"X-OpenStack-Request-ID": "evil\u00e9"})
    assert "evil" not in srv.log_text(tail=10_000)
