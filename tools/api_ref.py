#!/usr/bin/env python3
"""Generate the API reference (doc/source/api-ref/) from the OpenAPI document.

Starts a zaqar-server (the built binary, $ZAQAR_SERVER_BIN or
target/debug/zaqar-server) in admin mode with pooling, reads the document it
serves at /v2/openapi.json, runs one request of every operation against it
(create a pool and a flavor, a queue, post, claim, delete, subscribe...), and
writes one page per section of the document, in the style of OpenStack's
api-ref pages: each operation with its route, parameters, request body
schema, responses and a request and response sample.  The samples are what
the server answered during this run, so they cannot drift from the code.

run_tests.sh runs this before sphinx-build (the docs step); so does tox -e docs.

Usage: tools/api_ref.py [--out doc/source/api-ref]
"""

import argparse
import re
import http.client
import json
import os
import pathlib
import sys
import tempfile
import uuid

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "functional"))

import requests  # noqa: E402

# The reference is built with the default backend whatever the caller's
# environment says (ZAQAR_TEST_BACKEND picks the store of test servers).
os.environ.pop("ZAQAR_TEST_BACKEND", None)
from zaqar_testlib import ZaqarServer  # noqa: E402

METHODS = ("get", "put", "post", "patch", "delete", "head")
TAG_TEXT = {
    "Versions": "The documents anyone may read: the API versions, and the OpenAPI document "
                "this reference is generated from.",
    "Health": "Whether the node and its store answer.",
    "Queues": "Queues, their metadata and statistics, purging, and pre-signed URLs.",
    "Messages": "Posting, listing, reading and deleting messages.",
    "Claims": "Claiming messages for processing, renewing and releasing claims.",
    "Subscriptions": "Notifications of a queue's messages to webhooks, e-mail and trusts.",
    "Pools": "The stores queues are spread over (admin mode with pooling).",
    "Flavors": "Named sets of pools a queue can ask for (admin mode with pooling).",
}
CLIENT_ID = "3381af92-2b9e-11e3-b191-71861300734c"
PROJECT = "demo"


class Recorder:
    """Sends requests to the server and keeps one exchange per operation."""

    def __init__(self, base):
        self.base = base
        self.samples = {}

    def call(self, kind, method, path, body=None, headers=None, open_route=False,
             content_type="application/json", keep=True):
        sent = {}
        if not open_route:
            sent.update({"Client-ID": CLIENT_ID, "X-Project-ID": PROJECT})
        data = None
        if body is not None:
            data = json.dumps(body)
            sent["Content-Type"] = content_type
        if kind.startswith(("pool_", "flavor_", "check_node_health")):
            # The admin API; without Keystone the roles are what X-Roles says.
            sent["X-Roles"] = "admin"
        sent.update(headers or {})
        resp = requests.request(method, self.base + path, data=data, headers=sent, timeout=30)
        if resp.status_code >= 400 and keep:
            raise SystemExit(f"{method} {path}: {resp.status_code} {resp.text}")
        if keep and kind not in self.samples:
            self.samples[kind] = {"method": method, "path": path, "headers": sent,
                                  "body": body, "response": resp}
        return resp


def scenario(rec, workdir):
    """One request per operation, each using what the previous ones made."""
    c = rec.call
    c("get_versions", "GET", "/", open_route=True)
    c("get_openapi", "GET", "/v2/openapi.json", open_route=True)
    c("get_home_doc", "GET", "/v2/")
    c("ping_node", "GET", "/v2/ping")
    c("check_node_health", "GET", "/v2/health")
    pool_uri = f"sqlite://{workdir}/pool-1.sqlite"
    c("pool_create", "PUT", "/v2/pools/pool-1", {"uri": pool_uri, "weight": 100})
    c("pool_list", "GET", "/v2/pools?detailed=true")
    c("pool_get", "GET", "/v2/pools/pool-1")
    c("pool_update", "PATCH", "/v2/pools/pool-1", {"weight": 50})
    c("flavor_create", "PUT", "/v2/flavors/standard", {"pool_list": ["pool-1"]})
    c("flavor_list", "GET", "/v2/flavors")
    c("flavor_get", "GET", "/v2/flavors/standard")
    c("flavor_update", "PATCH", "/v2/flavors/standard", {"pool_list": ["pool-1"]})
    q = "/v2/queues/jobs"
    c("queue_create", "PUT", q, {"_flavor": "standard", "_default_message_ttl": 3600,
                                  "description": "work items"})
    c("queue_list", "GET", "/v2/queues?detailed=true")
    c("queue_get", "GET", q)
    c("queue_update", "PATCH", q, [{"op": "add", "path": "/metadata/owner", "value": "ops"}],
      content_type="application/openstack-messaging-v2.0-json-patch")
    posted = c("message_post", "POST", f"{q}/messages", {"messages": [
        {"body": {"task": "resize", "image": "a1"}, "ttl": 300},
        {"body": {"task": "thumbnail", "image": "a1"}},
        {"body": "a body can be any JSON", "ttl": 600, "delay": 0},
    ]}).json()
    ids = [r.rsplit("/", 1)[1] for r in posted["resources"]]
    c("message_list", "GET", f"{q}/messages?echo=true&limit=2")
    c("message_get_many", "GET", f"{q}/messages?ids={ids[0]},{ids[1]}")
    c("message_get", "GET", f"{q}/messages/{ids[0]}")
    c("queue_get_stats", "GET", f"{q}/stats")
    claim = c("claim_create", "POST", f"{q}/claims?limit=2", {"ttl": 120, "grace": 60})
    claim_id = claim.headers["Location"].rsplit("/", 1)[1]
    c("claim_get", "GET", f"{q}/claims/{claim_id}")
    c("claim_update", "PATCH", f"{q}/claims/{claim_id}", {"ttl": 300, "grace": 60})
    claimed = claim.json()["messages"][0]["id"]
    c("message_delete", "DELETE", f"{q}/messages/{claimed}?claim_id={claim_id}")
    c("claim_delete", "DELETE", f"{q}/claims/{claim_id}")
    c("message_delete_many", "DELETE", f"{q}/messages?pop=1")
    c("queue_share", "POST", f"{q}/share",
      {"paths": ["messages"], "methods": ["GET", "POST"], "expires": "2099-01-01T00:00:00"})
    sub = c("subscription_create", "POST", f"{q}/subscriptions",
            {"subscriber": "https://hooks.example.invalid/jobs", "ttl": 3600, "options": {}}).json()
    sid = sub["subscription_id"]
    c("subscription_list", "GET", f"{q}/subscriptions")
    c("subscription_get", "GET", f"{q}/subscriptions/{sid}")
    c("subscription_update", "PATCH", f"{q}/subscriptions/{sid}", {"ttl": 7200})
    c("subscription_confirm", "PUT", f"{q}/subscriptions/{sid}/confirm", {"confirmed": True})
    c("subscription_delete", "DELETE", f"{q}/subscriptions/{sid}")
    c("queue_purge", "POST", f"{q}/purge", {"resource_types": ["messages"]})
    c("queue_delete", "DELETE", q)
    t = "/v2/topics/builds"
    c("topic_create", "PUT", t, {"_flavor": "standard", "description": "build events"})
    c("topic_list", "GET", "/v2/topics?detailed=true")
    c("topic_get", "GET", t)
    c("topic_update", "PATCH", t, [{"op": "add", "path": "/metadata/owner", "value": "ci"}],
      content_type="application/openstack-messaging-v2.0-json-patch")
    tsub = c("topic_subscription_create", "POST", f"{t}/subscriptions",
             {"subscriber": "https://hooks.example.invalid/builds", "ttl": 3600,
              "options": {}}).json()
    tsid = tsub["subscription_id"]
    c("topic_subscription_list", "GET", f"{t}/subscriptions")
    c("topic_subscription_get", "GET", f"{t}/subscriptions/{tsid}")
    c("topic_subscription_update", "PATCH", f"{t}/subscriptions/{tsid}", {"ttl": 7200})
    c("topic_subscription_confirm", "PUT", f"{t}/subscriptions/{tsid}/confirm",
      {"confirmed": True})
    tposted = c("topic_message_post", "POST", f"{t}/messages", {"messages": [
        {"body": {"build": 41, "result": "passed"}, "ttl": 300},
        {"body": {"build": 42, "result": "failed"}, "ttl": 300},
        {"body": {"build": 43, "result": "passed"}, "ttl": 300},
    ]}).json()
    tids = [r.rsplit("/", 1)[1] for r in tposted["resources"]]
    c("topic_message_list", "GET", f"{t}/messages?echo=true")
    c("topic_message_get_many", "GET", f"{t}/messages?ids={tids[0]},{tids[1]}")
    c("topic_message_get", "GET", f"{t}/messages/{tids[0]}")
    c("topic_get_stats", "GET", f"{t}/stats")
    c("topic_message_delete", "DELETE", f"{t}/messages/{tids[0]}")
    c("topic_message_delete_many", "DELETE", f"{t}/messages?ids={tids[1]}")
    c("topic_subscription_delete", "DELETE", f"{t}/subscriptions/{tsid}")
    c("topic_purge", "POST", f"{t}/purge", {"resource_types": ["messages"]})
    c("topic_delete", "DELETE", t)
    c("flavor_delete", "DELETE", "/v2/flavors/standard")
    c("pool_delete", "DELETE", "/v2/pools/pool-1")
    # One error, as every error looks.
    rec.error = c("error", "POST", f"{q}/messages", {"messages": [{"body": 1, "ttl": 5}]},
                  keep=False)
    rec.error_request = {"method": "POST", "path": f"{q}/messages",
                         "headers": {"Client-ID": CLIENT_ID, "X-Project-ID": PROJECT,
                                     "Content-Type": "application/json"},
                         "body": {"messages": [{"body": 1, "ttl": 5}]}}


# ---------------------------------------------------------------------------
# rendering
# ---------------------------------------------------------------------------

def rst(text):
    """The document's Markdown code spans as reStructuredText literals."""
    return re.sub(r"(?<!`)`([^`]+)`(?!`)", r"``\1``", text)


def heading(text, char):
    return f"{text}\n{char * len(text)}\n"


def indent(text, n=3):
    pad = " " * n
    return "\n".join(pad + line if line.strip() else "" for line in text.splitlines())


def code(text):
    return ".. code-block:: text\n\n" + indent(text) + "\n"


def pretty(body):
    return json.dumps(body, indent=2, ensure_ascii=False, sort_keys=False)


def shorten(kind, body):
    """The OpenAPI document is long: its sample shows the top of it."""
    if kind == "get_openapi" and isinstance(body, dict):
        return {"openapi": body.get("openapi"), "info": body.get("info"),
                "paths": {p: "..." for p in list(body.get("paths", {}))[:3]},
                "components": "..."}
    return body


def request_text(sample):
    lines = [f"{sample['method']} {sample['path']} HTTP/1.1"]
    lines += [f"{k}: {v}" for k, v in sample["headers"].items()]
    if sample["body"] is not None:
        lines += ["", pretty(sample["body"])]
    return "\n".join(lines)


def response_text(kind, resp):
    reason = http.client.responses.get(resp.status_code, "")
    lines = [f"HTTP/1.1 {resp.status_code} {reason}"]
    for name in ("Content-Type", "Location", "Allow"):
        if name in resp.headers:
            lines.append(f"{name}: {resp.headers[name]}")
    if resp.content:
        try:
            body = shorten(kind, resp.json())
            lines += ["", pretty(body)]
        except ValueError:
            lines += ["", resp.text]
    return "\n".join(lines)


def schema_type(schema):
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[1]
    t = schema.get("type", "any")
    if isinstance(t, list):
        t = " or ".join(t)
    extra = []
    if "format" in schema:
        extra.append(schema["format"])
    if "minimum" in schema or "maximum" in schema:
        extra.append(f"{schema.get('minimum', '')}..{schema.get('maximum', '')}")
    if "enum" in schema:
        extra.append(", ".join(map(str, schema["enum"])))
    return t + (f" ({'; '.join(extra)})" if extra else "")


def cell(text):
    return " ".join(str(text).split()) or "\\-"


def table(title, header, rows):
    out = [f".. list-table:: {title}", "   :header-rows: 1", ""]
    for row in [header] + rows:
        out.append(f"   * - {cell(row[0])}")
        out += [f"     - {cell(c)}" for c in row[1:]]
    return "\n".join(out) + "\n"


def render_operation(path, method, op, samples):
    out = [heading(op["summary"], "-"), f"``{method.upper()} {path}``\n", rst(op["description"]) + "\n"]
    params = op.get("parameters", [])
    if params:
        out.append(table("Parameters", ["Name", "In", "Type", "Required", "Description"], [
            [f"``{p['name']}``", p["in"], schema_type(p.get("schema", {})),
             "yes" if p.get("required") else "no", rst(p.get("description", ""))]
            for p in params]))
    if op.get("security") == []:
        out.append("No authentication.\n")
    body = op.get("requestBody")
    if body:
        media, content = next(iter(body["content"].items()))
        need = "required" if body.get("required") else "optional"
        out.append(f"Request body ({need}, ``{media}``): {rst(body.get('description', ''))}\n")
        out.append(code(pretty(content["schema"])))
    out.append(table("Responses", ["Status", "Meaning"], [
        [status, rst(response["description"])] for status, response in op["responses"].items()]))
    for kind in op.get("x-operation-kinds", []):
        sample = samples.get(kind)
        if sample is None or method == "head":
            continue
        out.append(f"Request sample (``{kind}``):\n")
        out.append(code(request_text(sample)))
        out.append("Response sample:\n")
        out.append(code(response_text(kind, sample["response"])))
    return "\n".join(out)


def render(doc, rec, out_dir):
    out_dir.mkdir(parents=True, exist_ok=True)
    by_tag = {}
    for path, item in doc["paths"].items():
        for method in METHODS:
            if method in item:
                op = item[method]
                by_tag.setdefault(op["tags"][0], []).append((path, method, op))
    tags = [t["name"] for t in doc["tags"]]
    for tag in tags:
        parts = [heading(tag, "="), TAG_TEXT.get(tag, "") + "\n"]
        for path, method, op in by_tag.get(tag, []):
            parts.append(render_operation(path, method, op, rec.samples))
        (out_dir / f"{tag.lower()}.rst").write_text("\n".join(parts))
    index = [
        heading("API reference", "="),
        "Generated by ``tools/api_ref.py`` from the OpenAPI 3.1 document the server serves at "
        "``GET /v2/openapi.json`` (needs no credentials). The samples are the requests this "
        "run made of a server in admin mode with pooling and what it answered; ids, ages and "
        "dates differ from run to run.\n",
        "Every request except the two open documents carries ``Client-ID`` (a UUID) and, "
        "without Keystone, ``X-Project-ID``; with Keystone, ``X-Auth-Token``; a pre-signed "
        "URL is presented as ``URL-Signature``, ``URL-Expires``, ``URL-Methods`` and "
        "``URL-Paths``.\n",
        heading("Errors", "-"),
        "Every error has the body ``{\"title\", \"description\"}`` (``application/json``); "
        "for example:\n",
        code(request_text(rec.error_request)),
        code(response_text("error", rec.error)),
        ".. toctree::\n   :maxdepth: 2\n\n" + "\n".join(f"   {t.lower()}" for t in tags) + "\n",
    ]
    (out_dir / "index.rst").write_text("\n".join(index))
    (out_dir / "openapi.json").write_text(json.dumps(doc, indent=1))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "doc" / "source" / "api-ref"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="zaqar-api-ref-") as tmp:
        srv = ZaqarServer(pathlib.Path(tmp) / "server", {
            "DEFAULT": {"admin_mode": "true", "pooling": "true"},
            "drivers": {"management_store": "sqlite"},
            "drivers:management_store:sqlite": {"uri": f"{tmp}/catalogue.sqlite"},
            "signed_url": {"secret_key": uuid.uuid4().hex},
        }).start()
        try:
            doc = requests.get(f"{srv.url}/v2/openapi.json", timeout=10).json()
            rec = Recorder(srv.url)
            scenario(rec, tmp)
        finally:
            srv.stop()
        if srv.panicked():
            raise SystemExit(srv.log_text())
    missing = sorted(
        kind
        for item in doc["paths"].values()
        for method, op in item.items() if method in METHODS and method != "head"
        for kind in op.get("x-operation-kinds", []) if kind not in rec.samples)
    if missing:
        raise SystemExit(f"no sample for: {', '.join(missing)}")
    render(doc, rec, pathlib.Path(args.out))
    print(f"API reference: {len(rec.samples)} samples written to {args.out}")


if __name__ == "__main__":
    main()
