"""The OpenAPI document: served without credentials, valid OpenAPI 3.1 (checked
by openapi-spec-validator), and describing the server it comes from."""

import requests
from openapi_spec_validator import validate

OPERATIONS = {"get", "put", "post", "patch", "delete", "head"}


def fetch(srv, headers=None):
    resp = requests.get(f"{srv.url}/v2/openapi.json", headers=headers or {}, timeout=10)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "application/json"
    return resp.json()


def operation_ids(doc):
    return {
        op["operationId"]
        for item in doc["paths"].values()
        for method, op in item.items()
        if method in OPERATIONS
    }


def test_document_is_valid_openapi_31(server_factory):
    doc = fetch(server_factory())
    assert doc["openapi"] == "3.1.0"
    validate(doc)
    # No admin routes on a server without admin mode.
    assert "/v2/health" not in doc["paths"] and "/v2/pools" not in doc["paths"]
    assert {"queue_create", "message_post", "claim_create", "claim_delete",
            "subscription_confirm", "get_openapi", "ping_node_head"} <= operation_ids(doc)


def test_document_needs_no_credentials(server_factory):
    # Keystone is unreachable (nothing listens on port 9): the document must
    # not need it.
    unreachable = "http://127.0.0.1:9/v3"
    srv = server_factory({"DEFAULT": {"auth_strategy": "keystone"},
                          "keystone_authtoken": {
                              "www_authenticate_uri": unreachable, "auth_url": unreachable,
                              "auth_type": "password", "username": "zaqar", "password": "x",
                              "project_name": "service", "user_domain_name": "Default",
                              "project_domain_name": "Default",
                              "http_request_max_retries": "0"}})
    # Without a token, or with a signature that is no good, the document is
    # still served; every other route asks for credentials.
    doc = fetch(srv)
    fetch(srv, {"URL-Signature": "nope", "URL-Expires": "2000-01-01T00:00:00",
                "X-Auth-Token": "bad"})
    assert requests.get(f"{srv.url}/v2/queues", timeout=10).status_code == 401
    validate(doc)
    params = {p["name"]: p for p in doc["paths"]["/v2/queues"]["get"]["parameters"]}
    assert params["X-Project-ID"]["required"] is False
    assert doc["paths"]["/v2/queues"]["get"]["security"][0] == {"keystone": []}


def test_admin_document(server_factory):
    srv = server_factory({"DEFAULT": {"admin_mode": "true"},
                          "transport": {"max_messages_per_page": "7"}})
    doc = fetch(srv)
    validate(doc)
    assert "get" in doc["paths"]["/v2/health"]
    params = {p["name"]: p for p in doc["paths"]["/v2/queues/{queue_name}/messages"]["get"]["parameters"]}
    assert params["limit"]["schema"]["maximum"] == 7


def test_every_documented_error_has_the_error_body(server_factory):
    doc = fetch(server_factory())
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method not in OPERATIONS or method == "head":
                continue
            for status, response in op["responses"].items():
                if int(status) >= 400 and "content" in response:
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Error"}, (path, method, status)
