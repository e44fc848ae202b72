"""[cors] as oslo.middleware's CORS filter, and /healthcheck as its
healthcheck (with disable_by_file_path), against the real binary."""

import uuid

import requests

from zaqar_testlib import Api

ORIGIN = "https://horizon.example"


def test_cors_preflight_and_actual_requests(server_factory):
    srv = server_factory({"cors": {"allowed_origin": ORIGIN, "max_age": "600"}})
    url = srv.url + "/v2/queues/q1/messages"
    # a preflight is answered before authentication
    pre = requests.options(url, headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "Client-ID, X-Auth-Token, Content-Type"})
    assert pre.status_code == 200
    assert pre.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert pre.headers["Access-Control-Allow-Methods"] == "POST"
    assert pre.headers["Access-Control-Max-Age"] == "600"
    assert pre.headers["Access-Control-Allow-Credentials"] == "true"
    assert "X-Auth-Token" in pre.headers["Access-Control-Allow-Headers"]
    # a method or a header not allowed: no CORS headers
    for extra in ({"Access-Control-Request-Method": "TRACE"},
                  {"Access-Control-Request-Method": "GET",
                   "Access-Control-Request-Headers": "X-Not-Allowed"}):
        r = requests.options(url, headers={"Origin": ORIGIN, **extra})
        assert "Access-Control-Allow-Origin" not in r.headers
    # an actual request from the origin: its response carries the headers
    api = Api(srv.url, "p-" + uuid.uuid4().hex[:8])
    r = api.put("/v2/queues/q1", headers={"Origin": ORIGIN})
    assert r.status_code == 201
    assert r.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "X-OpenStack-Request-ID" in r.headers["Access-Control-Expose-Headers"]
    # even an error does
    r = api.get("/v2/queues/q1/messages/nope", headers={"Origin": ORIGIN})
    assert r.status_code == 404 and r.headers["Access-Control-Allow-Origin"] == ORIGIN
    # another origin gets nothing
    r = api.get("/v2/queues", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in r.headers
    pre = requests.options(url, headers={"Origin": "https://evil.example",
                                         "Access-Control-Request-Method": "GET"})
    assert "Access-Control-Allow-Origin" not in pre.headers


def test_without_allowed_origin_cors_does_nothing(server_factory):
    srv = server_factory()
    api = Api(srv.url, "p-" + uuid.uuid4().hex[:8])
    r = api.get("/v2/queues", headers={"Origin": ORIGIN})
    assert "Access-Control-Allow-Origin" not in r.headers


def test_healthcheck_and_disable_by_file(server_factory, tmp_path):
    flag = tmp_path / "maintenance"
    srv = server_factory({"healthcheck": {"disable_by_file_path": str(flag)}})
    r = requests.get(srv.url + "/healthcheck")
    assert (r.status_code, r.text) == (200, "OK")
    assert requests.head(srv.url + "/healthcheck").status_code == 204
    r = requests.get(srv.url + "/healthcheck", headers={"Accept": "application/json"})
    assert r.json() == {"detailed": False, "reasons": ["OK"]}
    flag.write_text("")
    r = requests.get(srv.url + "/healthcheck")
    assert (r.status_code, r.text) == (503, "DISABLED BY FILE")
    assert requests.head(srv.url + "/healthcheck").status_code == 503
    flag.unlink()
    assert requests.get(srv.url + "/healthcheck").status_code == 200
