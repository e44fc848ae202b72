"""Listing compatibility with the reference's Redis store: a message id works
as a listing marker (continuing after that message; one that names no
message gives an empty page, as on its MongoDB store), next links stay valid
across a restart, and bodies posted with ``\\u`` escapes come back as UTF-8."""

import json

from zaqar_testlib import Api


def test_a_message_id_is_a_marker(api, qname):
    ids = api.post_messages(qname, [{"body": i} for i in range(5)])
    page = api.list_messages(qname, echo="true", marker=ids[1])
    assert [m["id"] for m in page] == ids[2:]
    # an id that names no message of the queue gives an empty page, as the
    # reference's MongoDB store answers (its Redis store started over from
    # the first message: errata 10)
    assert api.list_messages(qname, echo="true", marker="0123abcdef") == []
    # the sequence markers of our next links still work
    first = api.get(f"/v2/queues/{qname}/messages", params={"echo": "true", "limit": 2}).json()
    nxt = api.get(first["links"][0]["href"]).json()
    assert [m["id"] for m in nxt["messages"]] == ids[2:4]


def test_next_links_survive_a_restart(server_factory, project, qname):
    srv = server_factory()
    api = Api(srv.url, project)
    ids = api.post_messages(qname, [{"body": i} for i in range(4)])
    first = api.get(f"/v2/queues/{qname}/messages", params={"echo": "true", "limit": 2}).json()
    srv.restart()
    nxt = api.get(first["links"][0]["href"]).json()
    assert [m["id"] for m in nxt["messages"]] == ids[2:]
    assert [m["id"] for m in api.list_messages(qname, echo="true", marker=ids[2])] == ids[3:]


def test_unicode_escapes_come_back_as_utf8(api, qname):
    raw = '{"messages": [{"body": {"name": "caf\\u00e9 \\ud83d\\ude00", "q": "\\u0022"}, "ttl": 300}]}'
    resp = api.post(f"/v2/queues/{qname}/messages", data=raw,
                    headers={"Content-Type": "application/json"})
    assert resp.status_code == 201, resp.text
    listed = api.get(f"/v2/queues/{qname}/messages", params={"echo": "true"})
    assert "café 😀" in listed.content.decode("utf-8")
    assert "\\u00e9" not in listed.text
    assert listed.json()["messages"][0]["body"] == {"name": "café 😀", "q": '"'}
    assert json.loads(listed.content)["messages"][0]["body"]["q"] == '"'
