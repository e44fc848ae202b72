"""Bad input -> the reference's status and {"title", "description"}.

Every request goes through ``Api``, which also fails the test on any 5xx and on a
missing x-openstack-request-id.  Rows marked ERRATA are reference bugs (500/503
there) where we assert the sane answer: a 400.
"""

import http.client
import json
import re
import uuid
from collections import namedtuple

import pytest
import requests

from zaqar_testlib import Api, assert_error

BAD_BODY = "Invalid request body"
BAD_API = "Invalid API request"
BAD_PARAM = "Invalid parameter"
BAD_QUEUE = ("Invalid queue identification",
             "The format of the submitted queue name or project id is not valid.")
JSON_PATCH = "application/openstack-messaging-v2.0-json-patch"

MSG_TTL = ("The TTL for a message may not exceed 1209600 seconds, "
           "and must be at least 60 seconds long.")
CLAIM_TTL = ("The TTL for a claim may not exceed 43200 seconds, "
             "and must be at least 60 seconds long.")
CLAIM_GRACE = ("The grace for a claim may not exceed 43200 seconds, "
               "and must be at least 60 seconds long.")
MSG_LIMIT = "Limit must be at least 1 and may not be greater than 20."
QUEUE_LIMIT = "Limit must be at least 1 and no greater than 20."
POP_LIMIT = "Pop value must be at least 1 and may not be greater than 20."
IDS_LIMIT = "ids parameter should have at least 1 and not greater than 20 values."
ANY = None  # description not checked

Case = namedtuple("Case", "id method path kw status title description",
                  defaults=(ANY,))


def bad_bool(name):
    return (f'The "{name}" parameter is invalid. The value of the parameter must be '
            '"true" or "false".')


def bad_int(name):
    return f'The "{name}" parameter is invalid. The value must be an integer.'


def body(obj):
    return {"data": json.dumps(obj)}


def ids(n):
    return ",".join(str(uuid.uuid4()) for _ in range(n))


M = "/v2/queues/{q}/messages"
C = "/v2/queues/{q}/claims"

CASES = [
    # -- query parameters ---------------------------------------------------
    Case("queues-limit-0", "GET", "/v2/queues", {"params": {"limit": 0}}, 400, BAD_API, QUEUE_LIMIT),
    Case("queues-limit-21", "GET", "/v2/queues", {"params": {"limit": 21}}, 400, BAD_API, QUEUE_LIMIT),
    Case("queues-limit-nan", "GET", "/v2/queues", {"params": {"limit": "abc"}}, 400, BAD_PARAM,
         bad_int("limit")),
    Case("queues-detailed-bad", "GET", "/v2/queues", {"params": {"detailed": "maybe"}}, 400,
         BAD_PARAM, bad_bool("detailed")),
    Case("queues-with-count-bad", "GET", "/v2/queues", {"params": {"with_count": "2"}}, 400,
         BAD_PARAM, bad_bool("with_count")),
    Case("messages-limit-0", "GET", M, {"params": {"limit": 0}}, 400, BAD_API, MSG_LIMIT),
    Case("messages-limit-21", "GET", M, {"params": {"limit": 21}}, 400, BAD_API, MSG_LIMIT),
    Case("messages-limit-nan", "GET", M, {"params": {"limit": "x"}}, 400, BAD_PARAM, bad_int("limit")),
    # An integer past 64 bits is still an integer (the reference's have no
    # size): out of range, not malformed.
    Case("messages-limit-huge", "GET", M, {"params": {"limit": "9" * 25}}, 400, BAD_API, MSG_LIMIT),
    Case("queues-limit-huge-negative", "GET", "/v2/queues", {"params": {"limit": "-" + "9" * 25}},
         400, BAD_API, QUEUE_LIMIT),
    Case("messages-echo-bad", "GET", M, {"params": {"echo": "maybe"}}, 400, BAD_PARAM, bad_bool("echo")),
    Case("messages-include-claimed-bad", "GET", M, {"params": {"include_claimed": "x"}}, 400,
         BAD_PARAM, bad_bool("include_claimed")),
    Case("get-21-ids", "GET", M, {"params": {"ids": ids(21)}}, 400, BAD_API, MSG_LIMIT),
    Case("delete-21-ids", "DELETE", M, {"params": {"ids": ids(21)}}, 400, BAD_API, IDS_LIMIT),
    Case("pop-0", "DELETE", M, {"params": {"pop": 0}}, 400, BAD_API, POP_LIMIT),
    Case("pop-21", "DELETE", M, {"params": {"pop": 21}}, 400, BAD_API, POP_LIMIT),
    Case("pop-nan", "DELETE", M, {"params": {"pop": "x"}}, 400, BAD_PARAM, bad_int("pop")),
    Case("pop-and-ids", "DELETE", M, {"params": {"pop": 1, "ids": ids(1)}}, 400, BAD_API,
         "pop and id params cannot be present together in the delete request."),
    Case("delete-neither", "DELETE", M, {}, 400, BAD_API,
         'The request should have either "ids" or "pop" parameter in the request, '
         'to be able to delete.'),
    Case("claim-limit-0", "POST", C, {"params": {"limit": 0}}, 400, BAD_API, MSG_LIMIT),
    Case("claim-limit-21", "POST", C, {"params": {"limit": 21}}, 400, BAD_API, MSG_LIMIT),

    # -- message bodies -----------------------------------------------------
    Case("post-ttl-59", "POST", M, {"json": {"messages": [{"body": 1, "ttl": 59}]}}, 400,
         BAD_API, MSG_TTL),
    Case("post-ttl-too-big", "POST", M, {"json": {"messages": [{"body": 1, "ttl": 1209601}]}},
         400, BAD_API, MSG_TTL),
    Case("post-ttl-string", "POST", M, {"json": {"messages": [{"body": 1, "ttl": "60"}]}}, 400,
         BAD_BODY, 'The value of the "ttl" field must be a int.'),
    Case("post-ttl-float", "POST", M, {"json": {"messages": [{"body": 1, "ttl": 60.5}]}}, 400,
         BAD_BODY, 'The value of the "ttl" field must be a int.'),
    Case("post-no-body-field", "POST", M, {"json": {"messages": [{"ttl": 60}]}}, 400, BAD_BODY,
         'Missing "body" field.'),
    Case("post-empty-list", "POST", M, {"json": {"messages": []}}, 400, BAD_API,
         "No messages to enqueu."),
    Case("post-no-messages-key", "POST", M, {"json": {"msgs": []}}, 400, BAD_API,
         "No messages were found in the request body."),
    Case("post-top-level-array", "POST", M, {"json": [{"body": 1}]}, 400, BAD_API,
         "No messages were found in the request body."),
    Case("post-messages-object", "POST", M, {"json": {"messages": {"body": 1}}}, 400, BAD_BODY,
         "Document type not supported."),
    # ERRATA: a non-object item is a 500 in the reference
    Case("post-non-object-item", "POST", M, {"json": {"messages": [1]}}, 400, BAD_BODY,
         "Document type not supported."),
    Case("post-null-item", "POST", M, {"json": {"messages": [{"body": 1}, None]}}, 400, BAD_BODY,
         "Document type not supported."),
    Case("post-nested-list-item", "POST", M, {"json": {"messages": [[{"body": 1}]]}}, 400,
         BAD_BODY, "Document type not supported."),
    # ERRATA: a bare integer / nested lists document
    Case("post-integer-document", "POST", M, {"data": "5"}, 400, BAD_BODY,
         "Request body could not be parsed."),
    Case("post-nested-lists-document", "POST", M, {"data": "[[1]]"}, 400, BAD_API,
         "No messages were found in the request body."),
    Case("post-malformed-json", "POST", M, {"data": '{"messages": [{"body": 1}'}, 400, BAD_BODY,
         "Request body could not be parsed."),
    Case("post-invalid-utf8", "POST", M, {"data": b'{"messages": [{"body": "\xff\xfe"}]}'}, 400,
         BAD_BODY, "Request body could not be parsed."),
    # ERRATA: the reference accepts NaN
    Case("post-nan", "POST", M, {"data": '{"messages": [{"body": NaN}]}'}, 400, BAD_BODY,
         "Request body could not be parsed."),
    Case("post-int-over-64-bits", "POST", M,
         {"data": '{"messages": [{"body": 18446744073709551616}]}'}, 400, BAD_BODY,
         "JSON contains integer that is too large."),
    Case("post-int-under-64-bits", "POST", M,
         {"data": '{"messages": [{"body": {"a": [-9223372036854775809]}}]}'}, 400, BAD_BODY,
         "JSON contains integer that is too large."),
    Case("post-ttl-over-64-bits", "POST", M,
         {"data": '{"messages": [{"body": 1, "ttl": 99999999999999999999}]}'}, 400, BAD_BODY,
         "JSON contains integer that is too large."),
    Case("post-too-large", "POST", M,
         {"json": {"messages": [{"body": "x" * 262144}]}}, 400, BAD_API,
         "Message collection size is too large. Max size 262144"),
    Case("post-empty-body", "POST", M, {"data": ""}, 400, BAD_BODY, ANY),

    # -- claims -------------------------------------------------------------
    Case("claim-ttl-59", "POST", C, {"json": {"ttl": 59}}, 400, BAD_API, CLAIM_TTL),
    Case("claim-ttl-too-big", "POST", C, {"json": {"ttl": 43201}}, 400, BAD_API, CLAIM_TTL),
    Case("claim-grace-59", "POST", C, {"json": {"ttl": 60, "grace": 59}}, 400, BAD_API,
         CLAIM_GRACE),
    Case("claim-grace-too-big", "POST", C, {"json": {"grace": 43201}}, 400, BAD_API, CLAIM_GRACE),
    Case("claim-ttl-string", "POST", C, {"json": {"ttl": "100"}}, 400, BAD_BODY,
         'The value of the "ttl" field must be a int.'),
    Case("claim-body-array", "POST", C, {"json": [60]}, 400, BAD_BODY,
         "Document type not supported."),
    Case("claim-malformed", "POST", C, {"data": "{ttl: 60}"}, 400, BAD_BODY,
         "Request body could not be parsed."),
    Case("claim-int-overflow", "POST", C, {"data": '{"ttl": 1e400}'}, 400, BAD_BODY, ANY),

    # -- queue metadata -----------------------------------------------------
    Case("put-metadata-too-large", "PUT", "/v2/queues/{q}",
         {"json": {"k": "x" * 65536}}, 400, BAD_API, "Queue metadata is too large. Max size: 65536"),
    Case("put-malformed", "PUT", "/v2/queues/{q}", {"data": "{"}, 400, BAD_BODY,
         "Request body could not be parsed."),
    Case("put-array", "PUT", "/v2/queues/{q}", {"json": [1]}, 400, BAD_BODY,
         "Document type not supported."),
    Case("put-int-overflow", "PUT", "/v2/queues/{q}", {"data": '{"a": 9223372036854775808}'},
         400, BAD_BODY, "JSON contains integer that is too large."),
    Case("reserved-ttl-string", "PUT", "/v2/queues/{q}", {"json": {"_default_message_ttl": "a"}},
         400, BAD_API, "_default_message_ttl must be integer."),
    Case("reserved-ttl-59", "PUT", "/v2/queues/{q}", {"json": {"_default_message_ttl": 59}},
         400, BAD_API,
         "_default_message_ttl can not exceed 1209600 seconds, and must be at least 60 "
         "seconds long."),
    Case("reserved-post-size-0", "PUT", "/v2/queues/{q}",
         {"json": {"_max_messages_post_size": 0}}, 400, BAD_API,
         "_max_messages_post_size can not exceed 262144,  and must be at least greater than 0."),
    Case("reserved-post-size-big", "PUT", "/v2/queues/{q}",
         {"json": {"_max_messages_post_size": 262145}}, 400, BAD_API,
         "_max_messages_post_size can not exceed 262144,  and must be at least greater than 0."),
    Case("reserved-post-size-string", "PUT", "/v2/queues/{q}",
         {"json": {"_max_messages_post_size": "1"}}, 400, BAD_API,
         "_max_messages_post_size must be integer."),
    Case("reserved-claim-count-string", "PUT", "/v2/queues/{q}",
         {"json": {"_max_claim_count": "2"}}, 400, BAD_API, "_max_claim_count must be integer."),
    Case("reserved-dlq-ttl-string", "PUT", "/v2/queues/{q}",
         {"json": {"_dead_letter_queue_messages_ttl": "x"}}, 400, BAD_API,
         "_dead_letter_queue_messages_ttl must be integer."),
    Case("reserved-dlq-ttl-59", "PUT", "/v2/queues/{q}",
         {"json": {"_dead_letter_queue_messages_ttl": 59}}, 400, BAD_API, MSG_TTL),
    Case("reserved-delay-string", "PUT", "/v2/queues/{q}",
         {"json": {"_default_message_delay": "x"}}, 400, BAD_API,
         "_default_message_delay must be integer."),
    Case("reserved-delay-901", "PUT", "/v2/queues/{q}",
         {"json": {"_default_message_delay": 901}}, 400, BAD_API,
         "The TTL can not exceed 900 seconds, and must be at least 0 seconds long."),
    Case("reserved-delay-negative", "PUT", "/v2/queues/{q}",
         {"json": {"_default_message_delay": -1}}, 400, BAD_API,
         "The TTL can not exceed 900 seconds, and must be at least 0 seconds long."),
    Case("reserved-encrypt-string", "PUT", "/v2/queues/{q}",
         {"json": {"_enable_encrypt_messages": "yes"}}, 400, BAD_API,
         "_enable_encrypt_messages must be boolean."),
    # Ours: every _retry_policy field is bounded (the reference accepts any
    # integer; a maximum_delay near 2**63 then exhausted the notifier's memory).
    Case("retry-policy-huge-maximum-delay", "PUT", "/v2/queues/{q}",
         {"json": {"_retry_policy": {"maximum_delay": 9 * 10 ** 18}}}, 400, BAD_API,
         "Retry policy: maximum_delay can not exceed 86400 seconds, and must be at least 0 "
         "seconds long."),
    Case("retry-policy-negative-minimum-delay", "PUT", "/v2/queues/{q}",
         {"json": {"_retry_policy": {"minimum_delay": -30}}}, 400, BAD_API,
         "Retry policy: minimum_delay can not exceed 86400 seconds, and must be at least 0 "
         "seconds long."),
    Case("retry-policy-huge-retries", "PUT", "/v2/queues/{q}",
         {"json": {"_retry_policy": {"retries_with_no_delay": 9 * 10 ** 18}}}, 400, BAD_API,
         "Retry policy: retries_with_no_delay can not exceed 1000, and must be at least 0."),
    Case("retry-policy-float-retries", "PUT", "/v2/queues/{q}",
         {"json": {"_retry_policy": {"minimum_delay_retries": 1.5}}}, 400, BAD_API,
         "Retry policy: minimum_delay_retries must be a integer."),
    Case("retry-policy-empty-string-retries", "PUT", "/v2/queues/{q}",
         {"json": {"_retry_policy": {"maximum_delay_retries": ""}}}, 400, BAD_API,
         "Retry policy: maximum_delay_retries must be a integer."),
    # ERRATA: "", [] and {} for a reserved integer key are 500s in the reference
    Case("reserved-ttl-empty-string", "PUT", "/v2/queues/{q}",
         {"json": {"_default_message_ttl": ""}}, 400, BAD_API, re.compile(r"_default_message_ttl .*")),
    Case("reserved-ttl-empty-list", "PUT", "/v2/queues/{q}",
         {"json": {"_default_message_ttl": []}}, 400, BAD_API, re.compile(r"_default_message_ttl .*")),
    Case("reserved-post-size-empty-object", "PUT", "/v2/queues/{q}",
         {"json": {"_max_messages_post_size": {}}}, 400, BAD_API,
         re.compile(r"_max_messages_post_size .*")),
    Case("reserved-delay-empty-string", "PUT", "/v2/queues/{q}",
         {"json": {"_default_message_delay": ""}}, 400, BAD_API,
         re.compile(r"_default_message_delay .*")),
    Case("reserved-dlq-ttl-empty-list", "PUT", "/v2/queues/{q}",
         {"json": {"_dead_letter_queue_messages_ttl": []}}, 400, BAD_API,
         re.compile(r"_dead_letter_queue_messages_ttl .*")),

    # -- purge ----------------------------------------------------------------
    Case("purge-no-key", "POST", "/v2/queues/{q}/purge", {"json": {"types": []}}, 400, BAD_API,
         'Post body must contain key "resource_types".'),
    Case("purge-bad-type", "POST", "/v2/queues/{q}/purge",
         {"json": {"resource_types": ["messages", "claims"]}}, 400, BAD_API,
         re.compile(r"Resource types must be a sub set of \{'(messages|subscriptions)', "
                    r"'(messages|subscriptions)'\}\.")),
    # ERRATA: null is a 500 in the reference
    Case("purge-null", "POST", "/v2/queues/{q}/purge", {"json": {"resource_types": None}}, 400,
         BAD_API, ANY),
    Case("purge-string", "POST", "/v2/queues/{q}/purge", {"json": {"resource_types": "messages"}},
         400, BAD_API, ANY),
    # a list body has no "resource_types" key: the reference's text
    Case("purge-list-body", "POST", "/v2/queues/{q}/purge", {"json": ["messages"]}, 400, BAD_API,
         'Post body must contain key "resource_types".'),

    # -- content negotiation ------------------------------------------------
    Case("form-urlencoded", "POST", M,
         {"data": "messages=1", "headers": {"Content-Type": "application/x-www-form-urlencoded"}},
         400, "Invalid Content-Type",
         "Endpoint does not accept `application/x-www-form-urlencoded` content; currently "
         "supported media type is `application/json`; specify proper client-side media type "
         'with the "Content-Type" header.'),
    Case("form-urlencoded-put", "PUT", "/v2/queues/{q}",
         {"data": "a=1", "headers": {"Content-Type": "application/x-www-form-urlencoded"}},
         400, "Invalid Content-Type", ANY),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(api, qname, case):
    kw = dict(case.kw)
    resp = api.request(case.method, case.path.format(q=qname), **kw)
    assert_error(resp, case.status, case.title, case.description)


def test_limits_accept_the_boundaries(api, qname):
    """The edges of every range are accepted."""
    assert api.get("/v2/queues", params={"limit": 20}).status_code == 200
    assert api.get("/v2/queues", params={"limit": 1}).status_code == 200
    resp = api.post(f"/v2/queues/{qname}/messages", json={"messages": [
        {"body": 1, "ttl": 60}, {"body": 2, "ttl": 1209600},
        {"body": 9223372036854775807}, {"body": -9223372036854775808}]})
    assert resp.status_code == 201, resp.text
    got = api.list_messages(qname, echo="true")
    assert [m["body"] for m in got] == [1, 2, 9223372036854775807, -9223372036854775808]
    assert api.get(f"/v2/queues/{qname}/messages", params={"limit": 20}).status_code == 200
    assert api.claim(qname, ttl=60, grace=60, limit=20).status_code == 201
    api.post_messages(qname, [{"body": 3}])
    assert api.claim(qname, ttl=43200, grace=43200, limit=1).status_code == 201
    assert api.delete(f"/v2/queues/{qname}/messages", params={"pop": 20}).status_code == 200
    resp = api.put(f"/v2/queues/{qname}-2", json={
        "_default_message_ttl": 60, "_max_messages_post_size": 262144,
        "_default_message_delay": 900, "_dead_letter_queue_messages_ttl": 1209600,
        "_max_claim_count": 5, "_dead_letter_queue": "x", "_enable_encrypt_messages": False,
        "_default_message_delay_null": None})
    assert resp.status_code == 201, resp.text
    # 65536 bytes of metadata exactly is allowed
    filler = "x" * (65536 - len(json.dumps({"k": ""})))
    resp = api.put(f"/v2/queues/{qname}-3", data=json.dumps({"k": filler}))
    assert resp.status_code == 201, resp.text


def test_post_size_boundary(api, qname):
    base = json.dumps({"messages": [{"body": ""}]})
    exact = json.dumps({"messages": [{"body": "x" * (262144 - len(base))}]})
    assert len(exact) == 262144
    assert api.post(f"/v2/queues/{qname}/messages", data=exact).status_code == 201
    over = json.dumps({"messages": [{"body": "x" * (262145 - len(base))}]})
    assert_error(api.post(f"/v2/queues/{qname}/messages", data=over), 400, BAD_API,
                 "Message collection size is too large. Max size 262144")


def _raw_request(api, method, path, headers, first_bytes, rest=None, timeout=15):
    """Send a request over a raw connection: headers, then ``first_bytes`` of the
    body, then (optionally) the iterable ``rest``; return (status, body) or None
    when the server closed the connection before an answer could be read."""
    host, port = api.base_url.split("//", 1)[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    conn.putrequest(method, path, skip_accept_encoding=True)
    hdrs = {**api.default_headers(), "Content-Type": "application/json", **headers}
    for k, v in hdrs.items():
        conn.putheader(k, v)
    conn.endheaders()
    try:
        conn.send(first_bytes)
        for chunk in rest or ():
            conn.send(chunk)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server stopped reading: fine, if it answered
    try:
        resp = conn.getresponse()
        return resp.status, resp.read(), resp.getheader("x-openstack-request-id")
    except (ConnectionResetError, http.client.RemoteDisconnected, BrokenPipeError):
        return None
    finally:
        conn.close()


def test_huge_body_is_refused_from_content_length(api, qname):
    # 8 MiB announced, 64 KiB sent: the size check is made on Content-Length, so
    # the answer must come without the server reading (or waiting for) the rest.
    size = 8 << 20
    got = _raw_request(api, "POST", f"/v2/queues/{qname}/messages",
                       {"Content-Length": str(size)}, b'{"messages": [{"body": "' + b"x" * 65536)
    assert got is not None, "connection closed without an answer"
    status, raw, rid = got
    assert status == 400, raw
    assert json.loads(raw) == {"title": BAD_API,
                               "description": "Message collection size is too large. "
                                              "Max size 262144"}
    assert rid and rid.startswith("req-")
    got = _raw_request(api, "PUT", f"/v2/queues/{qname}",
                       {"Content-Length": str(size)}, b'{"k": "' + b"x" * 65536)
    assert got is not None and got[0] == 400, got
    assert api.get("/v2/ping").status_code == 204


def test_huge_chunked_body_is_refused(api, qname):
    # No Content-Length (chunked), 8 MiB: refused with a 400 (the reference says
    # "Request body can not be empty"; a size error is as good), never a 5xx, and
    # the server stays healthy.  A reset before the answer counts as a refusal.
    piece = b"x" * (256 << 10)
    chunk = b"%x\r\n%s\r\n" % (len(piece), piece)
    head = b'{"messages": [{"body": "'
    first = b"%x\r\n%s\r\n" % (len(head), head)
    tail = b'"}]}'
    rest = [chunk] * 32 + [b"%x\r\n%s\r\n0\r\n\r\n" % (len(tail), tail)]
    got = _raw_request(api, "POST", f"/v2/queues/{qname}/messages",
                       {"Transfer-Encoding": "chunked"}, first, rest)
    if got is not None:
        assert got[0] == 400, got[:2]
    assert api.get("/v2/ping").status_code == 204
    assert api.list_messages(qname, echo="true") == []


def test_huge_metadata_patch_is_refused(api, qname):
    api.create_queue(qname)
    ops = [{"op": "add", "path": "/metadata/k", "value": "x" * 70000}]
    resp = api.patch(f"/v2/queues/{qname}", data=json.dumps(ops),
                     headers={"Content-Type": JSON_PATCH})
    assert_error(resp, 400, BAD_BODY, "Queue metadata is too large. Max size: 65536")


# ---------------------------------------------------------------------------
# headers: Client-ID and X-Project-ID
# ---------------------------------------------------------------------------

MISSING_CLIENT = ("Missing header value", 'The "Client-Id" header is required.')
BAD_UUID = ("Wrong UUID value", "Malformed hexadecimal UUID.")
ROUTES = [("GET", "/v2/queues"), ("GET", "/v2/ping"), ("GET", "/v2/"),
          ("PUT", "/v2/queues/hq"), ("GET", "/v2/queues/hq/messages"),
          ("POST", "/v2/queues/hq/claims"), ("GET", "/v2/queues/hq/stats")]


@pytest.mark.parametrize("method,path", ROUTES)
def test_missing_client_id(api, method, path):
    resp = api.request(method, path, headers={"Client-ID": None})
    assert_error(resp, 400, *MISSING_CLIENT)


def test_head_ping_needs_client_id(api):
    # errata 3: HEAD /v2/ping checks Client-ID too (no body on HEAD)
    resp = api.head("/v2/ping", headers={"Client-ID": None})
    assert resp.status_code == 400


@pytest.mark.parametrize("client_id", ["not-a-uuid", "12345", "g" * 32,
                                       "123e4567-e89b-12d3-a456-42661417400",
                                       ""])
def test_malformed_client_id(api, client_id):
    resp = api.get("/v2/queues", headers={"Client-ID": client_id})
    if client_id == "":
        # an empty header is as good as none (verify: reference may say either)
        assert resp.status_code == 400
        return
    assert_error(resp, 400, *BAD_UUID)


@pytest.mark.parametrize("client_id", [
    "123e4567-e89b-12d3-a456-426614174000",
    "123E4567-E89B-12D3-A456-426614174000",
    "123e4567e89b12d3a456426614174000",        # python-zaqarclient sends this form
    "{123e4567-e89b-12d3-a456-426614174000}",
    "urn:uuid:123e4567-e89b-12d3-a456-426614174000",
])
def test_uuid_forms_accepted(api, qname, client_id):
    resp = api.post(f"/v2/queues/{qname}/messages", json={"messages": [{"body": 1}]},
                    headers={"Client-ID": client_id})
    assert resp.status_code == 201, resp.text
    assert api.get("/v2/queues", headers={"Client-ID": client_id}).status_code == 200


def test_client_id_off_mode(server_factory, project, qname):
    srv = server_factory({"transport": {"client_id_uuid_safe": "off"}})
    # The notes read "Length of client id must be ..." from validation.py, but the
    # running reference wraps that error like a bad UUID (its hook catches
    # ValueError): 400 {"title": "Wrong UUID value", ...}.
    for cid in ("short", "x" * 9, "y" * 37):
        resp = Api(srv.url, project, client_id=cid).get("/v2/queues")
        assert_error(resp, 400, *BAD_UUID)
    # any 10..36 character string is fine, posting included (the reference's
    # Redis driver breaks on non-UUID ids; ours must not)
    for cid in ("x" * 10, "my-client-is-not-a-uuid", "z" * 36):
        a = Api(srv.url, project, client_id=cid)
        resp = a.post(f"/v2/queues/{qname}/messages", json={"messages": [{"body": cid}]})
        assert resp.status_code == 201, resp.text
        assert a.list_messages(qname, echo="true")
    # echo=false hides a client's own messages by this id too
    a = Api(srv.url, project, client_id="x" * 10)
    assert "x" * 10 not in [m["body"] for m in a.list_messages(qname)]


@pytest.mark.parametrize("method,path", ROUTES)
def test_missing_project_id(api, method, path):
    resp = api.request(method, path, headers={"X-Project-ID": None})
    assert_error(resp, 400, "Project-Id Missing", "The header X-PROJECT-ID was missing")


@pytest.mark.parametrize("method,path", ROUTES)
def test_empty_project_id(api, method, path):
    resp = api.request(method, path, headers={"X-Project-ID": ""})
    assert_error(resp, 400, "Empty project header not allowed",
                 "X-PROJECT-ID cannot be an empty string. Specify the right header "
                 "X-PROJECT-ID and retry.")


def test_project_id_length(api, qname):
    resp = api.put(f"/v2/queues/{qname}", headers={"X-Project-ID": "p" * 257})
    assert_error(resp, 400, *BAD_QUEUE)
    resp = api.put(f"/v2/queues/{qname}", headers={"X-Project-ID": "p" * 256})
    assert resp.status_code == 201


def test_versions_need_no_headers(server):
    resp = requests.get(server.url + "/", headers={"Accept": "application/json"}, timeout=10)
    assert resp.status_code == 300


# ---------------------------------------------------------------------------
# queue names
# ---------------------------------------------------------------------------

BAD_NAMES = ["x" * 65, "a$b", "a%20b", "a%25b", "%C3%BCber", "a~b", "a:b", "a@b", "a,b"]
QUEUE_ROUTES = [("PUT", "/v2/queues/{}"), ("GET", "/v2/queues/{}"),
                ("DELETE", "/v2/queues/{}"), ("GET", "/v2/queues/{}/stats"),
                ("POST", "/v2/queues/{}/messages"), ("GET", "/v2/queues/{}/messages"),
                ("POST", "/v2/queues/{}/claims"), ("POST", "/v2/queues/{}/purge")]


@pytest.mark.parametrize("name", BAD_NAMES)
@pytest.mark.parametrize("method,template", QUEUE_ROUTES)
def test_bad_queue_name(api, name, method, template):
    url = api.base_url + template.format(name)
    kw = {"json": {"messages": [{"body": 1}]}} if template.endswith("/messages") \
        and method == "POST" else {}
    resp = api.request(method, url, **kw)
    assert_error(resp, 400, *BAD_QUEUE)


def test_queues_trailing_slash(api):
    # errata 1: GET /v2/queues/ is a bad queue name, not a 404
    resp = api.get("/v2/queues/")
    assert_error(resp, 400, BAD_QUEUE[0])


def test_bad_name_not_created(api):
    api.put("/v2/queues/" + "x" * 65)
    assert api.get("/v2/queues").json()["queues"] == []


def test_paths_are_percent_decoded_before_routing(api, qname):
    # As the reference's WSGI server hands the path on: an escaped letter
    # is that letter, and an escaped "/" routes as a "/".
    escaped = "%" + format(ord(qname[0]), "02X") + qname[1:]
    assert api.put("/v2/queues/" + escaped).status_code == 201
    assert [q["name"] for q in api.get("/v2/queues").json()["queues"]] == [qname]
    assert api.put("/v2/queues/" + qname).status_code == 204
    resp = api.get("/v2/queues/" + qname + "%2Fstats")
    assert resp.status_code == 200 and resp.json()["messages"]["total"] == 0
    resp = api.get("/v2/queues/a%2Fb")
    assert resp.status_code == 404 and resp.json() == {"title": "404 Not Found"}


@pytest.mark.parametrize("query", ["limit=x", "include_claimed=nah", "echo=maybe"])
def test_queue_name_is_checked_before_parameters(api, query):
    resp = api.get("/v2/queues/a%20b/messages?" + query)
    assert_error(resp, 400, *BAD_QUEUE)
    # and the Client-ID before both
    resp = api.get("/v2/queues/a%20b/messages?" + query, headers={"Client-ID": None})
    assert_error(resp, 400, "Missing header value")


# ---------------------------------------------------------------------------
# PATCH of queue metadata
# ---------------------------------------------------------------------------

def jp(api, q, payload, raw=False):
    data = payload if raw else json.dumps(payload)
    return api.patch(f"/v2/queues/{q}", data=data, headers={"Content-Type": JSON_PATCH})


PATCH_CASES = [
    ("empty-body", "", True, "PATCH body could not be empty for update."),
    ("malformed", "[{", True, "Request body could not be parsed."),
    ("int-overflow", '[{"op": "add", "path": "/metadata/a", "value": 99999999999999999999}]',
     True, "JSON contains integer that is too large."),
    ("op-not-object", [1], False, "Operations must be JSON objects."),
    ("no-op", [{"path": "/metadata/a", "value": 1}], False,
     "Unable to find `op` in JSON Schema change. It must be one of the following: "
     "add, remove, replace."),
    ("bad-op", [{"op": "move", "path": "/metadata/a", "value": 1}], False,
     "Invalid operation: `move`. It must be one of the following: add, remove, replace."),
    ("no-path", [{"op": "add", "value": 1}], False, "Unable to find 'path' in JSON Schema change"),
    ("path-no-slash", [{"op": "add", "path": "metadata/a", "value": 1}], False,
     'Pointer `metadata/a` does not start with "/".'),
    ("path-adjacent-slash", [{"op": "add", "path": "/metadata//a", "value": 1}], False,
     'Pointer `/metadata//a` contains adjacent "/".'),
    ("path-trailing-slash", [{"op": "add", "path": "/metadata/a/", "value": 1}], False,
     'Pointer `/metadata/a/` end with "/".'),
    ("path-bad-escape", [{"op": "add", "path": "/metadata/a~2", "value": 1}], False,
     'Pointer `/metadata/a~2` contains "~" not part of a recognized escape sequence.'),
    ("path-three-tokens", [{"op": "add", "path": "/metadata/a/b", "value": 1}], False,
     "Invalid JSON pointer for this resource: '/metadata/a/b, e.g /metadata/key'"),
    ("path-one-token", [{"op": "add", "path": "/metadata", "value": 1}], False,
     "Invalid JSON pointer for this resource: '/metadata, e.g /metadata/key'"),
    ("root-not-metadata", [{"op": "add", "path": "/data/a", "value": 1}], False,
     "The root of path must be metadata, e.g /metadata/key."),
    ("add-no-value", [{"op": "add", "path": "/metadata/a"}], False,
     'Operation "add" requires a member named "value".'),
    ("replace-no-value", [{"op": "replace", "path": "/metadata/a"}], False,
     'Operation "replace" requires a member named "value".'),
    ("reserved-invalid", [{"op": "add", "path": "/metadata/_default_message_ttl", "value": 10}],
     False, "_default_message_ttl can not exceed 1209600 seconds, and must be at least "
     "60 seconds long."),
    ("reserved-retry-policy-unbounded",
     [{"op": "add", "path": "/metadata/_retry_policy", "value": {"maximum_delay_retries": 10 ** 18}}],
     False, "Retry policy: maximum_delay_retries can not exceed 1000, and must be at least 0."),
    # ERRATA: object body and non-string path are 500/503 in the reference
    ("object-body", {"op": "add", "path": "/metadata/a", "value": 1}, False,
     re.compile(r"Document type not supported\.|Request body must be a JSON array of "
                r"operation objects\.")),
    ("path-not-string", [{"op": "add", "path": 5, "value": 1}], False, ANY),
    ("op-not-string", [{"op": ["add"], "path": "/metadata/a", "value": 1}], False, ANY),
    ("reserved-empty-list", [{"op": "add", "path": "/metadata/_max_claim_count", "value": []}],
     False, ANY),
]


@pytest.mark.parametrize("payload,raw,description",
                         [c[1:] for c in PATCH_CASES], ids=[c[0] for c in PATCH_CASES])
def test_bad_patch(api, qname, payload, raw, description):
    api.create_queue(qname, {"a": 1})
    resp = jp(api, qname, payload, raw)
    assert_error(resp, 400, BAD_BODY, description)
    assert api.get(f"/v2/queues/{qname}").json()["a"] == 1


def test_remove_with_foreign_root_is_refused(api, qname):
    # ERRATA: the reference ignores the root on remove and deletes /metadata/a;
    # a remove of /other/a must not touch the metadata.
    api.create_queue(qname, {"a": 1})
    resp = jp(api, qname, [{"op": "remove", "path": "/other/a"}])
    assert_error(resp, 400, BAD_BODY, "The root of path must be metadata, e.g /metadata/key.")
    assert api.get(f"/v2/queues/{qname}").json()["a"] == 1


# ---------------------------------------------------------------------------
# routing
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/v2/nothing", "/v3/queues", "/v1.1/queues", "/v2",
                                  "/v2/queues/q/messages/m/extra", "/v2/queues/q/claims/c/x",
                                  "/favicon.ico"])
def test_unknown_route_is_404(api, path):
    resp = api.get(path)
    assert resp.status_code == 404
    assert resp.json()["title"]


@pytest.mark.parametrize("method,path", [
    ("POST", "/v2/queues"), ("DELETE", "/v2/queues"), ("PUT", "/v2/queues"),
    ("POST", "/v2/queues/q"), ("PUT", "/v2/queues/q/messages"),
    ("PATCH", "/v2/queues/q/messages"), ("POST", "/v2/queues/q/messages/m"),
    ("PUT", "/v2/queues/q/claims"), ("GET", "/v2/queues/q/claims"),
    ("POST", "/v2/queues/q/claims/c"), ("GET", "/v2/queues/q/purge"),
    ("POST", "/v2/ping"), ("DELETE", "/v2/ping"), ("POST", "/"),
])
def test_wrong_method_is_405(api, method, path):
    resp = api.request(method, path)
    assert resp.status_code == 405, resp.text
    # As the reference lists them: its methods in order, then OPTIONS.
    allowed = resp.headers["Allow"].split(", ")
    assert allowed[-1] == "OPTIONS" and method not in allowed, allowed
    assert allowed[:-1] == sorted(allowed[:-1]), allowed


@pytest.mark.parametrize("path,allowed", [
    ("/v2/queues", "GET"), ("/v2/queues/q", "DELETE, GET, PATCH, PUT"),
    ("/v2/queues/q/messages", "DELETE, GET, POST"), ("/v2/queues/q/claims", "POST"),
    ("/v2/queues/q/claims/c", "DELETE, GET, PATCH"), ("/v2/ping", "GET, HEAD"),
])
def test_options_lists_the_methods_of_a_route(api, path, allowed):
    resp = api.request("OPTIONS", path, headers={"Accept": "text/xml"})
    assert resp.status_code == 200, resp.text
    assert resp.headers["Allow"] == allowed
    assert resp.content == b""
    assert api.request("OPTIONS", "/v2/nope").status_code == 404


@pytest.mark.parametrize("accept", ["text/xml", "text/plain", "image/png", "application/xml"])
def test_unacceptable_accept_is_406(api, accept):
    resp = api.get("/v2/queues", headers={"Accept": accept})
    # errata 4: the body depends on the Accept header; match the status
    assert resp.status_code == 406


@pytest.mark.parametrize("accept", ["*/*", "application/*", "application/json",
                                    "text/html, application/json;q=0.9"])
def test_acceptable_accept(api, accept):
    assert api.get("/v2/queues", headers={"Accept": accept}).status_code == 200
    resp = api.get("/v2/queues", headers={"Accept": None})
    assert resp.status_code == 200


def test_include_claimed_without_marker_works(api, qname):
    # ERRATA: a 503 in the reference
    api.post_messages(qname, [{"body": 1}])
    api.claim(qname)
    resp = api.get(f"/v2/queues/{qname}/messages",
                   params={"include_claimed": "true", "echo": "true"})
    assert resp.status_code == 200
    assert len(resp.json()["messages"]) == 1


def test_claim_update_validation(api, qname):
    api.post_messages(qname, [{"body": 1}])
    loc = api.claim(qname, limit=1).headers["Location"]
    api.post_messages(qname, [{"body": 2}])
    assert_error(api.patch(loc, json={"ttl": 30}), 400, BAD_API, CLAIM_TTL)
    # Issue 11, defect 3: the reference does not range-check grace on
    # renewal; a grace of 9e18 kept messages forever on SQLite and deleted
    # the whole queue on Redis. Grace is bounded as on creation.
    for grace in [9 * 10**18, 2**63 - 1, 43201, 59, -1, 0]:
        assert_error(api.patch(loc, json={"ttl": 60, "grace": grace}), 400, BAD_API, CLAIM_GRACE)
    assert api.patch(loc, json={"ttl": 60, "grace": 43200}).status_code == 204
    assert_error(api.patch(loc, json={"ttl": "x"}), 400, BAD_BODY,
                 'The value of the "ttl" field must be a int.')
    assert_error(api.patch(loc, data="{"), 400, BAD_BODY, "Request body could not be parsed.")
    # nothing was lost to the refused renewals
    stats = api.get(f"/v2/queues/{qname}/stats").json()["messages"]
    assert (stats["claimed"], stats["free"]) == (1, 1), stats


def test_message_ids_with_bad_ids(api, qname):
    api.post_messages(qname, [{"body": 1}])
    # ids that are not ids of ours at all: not found, never a 5xx
    resp = api.get(f"/v2/queues/{qname}/messages", params={"ids": "x,%00,'"})
    assert resp.status_code == 404
    assert api.get(f"/v2/queues/{qname}/messages/not-an-id").status_code == 404
    assert api.delete(f"/v2/queues/{qname}/messages/not-an-id").status_code == 204
    assert api.get(f"/v2/queues/{qname}/claims/not-an-id").status_code == 404
    assert api.patch(f"/v2/queues/{qname}/claims/not-an-id",
                     json={"ttl": 60}).status_code == 404
    assert api.delete(f"/v2/queues/{qname}/claims/not-an-id").status_code == 204
