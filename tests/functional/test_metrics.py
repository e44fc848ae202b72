"""GET /metrics, scraped as Prometheus would, after real traffic on both
transports and a real webhook delivery."""

import json
import os
import re
import time
import uuid

import requests
import websocket

from receivers import Receiver
from zaqar_testlib import Api

OPTIONS = {
    "metrics": {"enabled": "true"},
    "drivers": {"transport": "wsgi, websocket"},
    "notification": {"allowed_subscriber_networks": "127.0.0.0/8"},
}


def scrape(srv):
    resp = requests.get(srv.url + "/metrics", timeout=10)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for line in resp.text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_labels, value = line.rsplit(" ", 1)
        samples[name_labels] = float(value)
    return resp.text, samples


def value(samples, name, **labels):
    """The sample `name` whose labels include `labels` (summed over the rest)."""
    total, found = 0.0, False
    for key, v in samples.items():
        m = re.match(r"^([a-z_:]+)(?:\{(.*)\})?$", key)
        if m.group(1) != name:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if all(have.get(k) == v_ for k, v_ in labels.items()):
            total, found = total + v, True
    return total if found else None


def test_metrics_after_http_websocket_and_notification_traffic(server_factory):
    srv = server_factory(OPTIONS)
    receiver = Receiver()
    try:
        api = Api(srv.url, "p-" + uuid.uuid4().hex[:8])
        q = "metered"
        assert api.put(f"/v2/queues/{q}").status_code == 201
        sub = api.post(f"/v2/queues/{q}/subscriptions",
                       json={"subscriber": receiver.url + "/hook", "ttl": 3600})
        assert sub.status_code == 201, sub.text
        api.post_messages(q, [{"body": {"n": 1}, "ttl": 300}])
        api.claim(q, ttl=60, grace=60)
        assert api.get("/v2/queues/nope/messages/xyz").status_code == 404
        receiver.wait_for(1)

        ws = websocket.create_connection(srv.ws_url, timeout=10)
        ws.send(json.dumps({"action": "queue_list", "body": {},
                            "headers": {"Client-ID": str(uuid.uuid4()),
                                        "X-Project-ID": api.project_id}}))
        assert json.loads(ws.recv())["headers"]["status"] == 200

        deadline = time.monotonic() + 15
        while True:
            text, samples = scrape(srv)
            delivered = value(samples, "zaqar_notification_deliveries_total",
                              kind="webhook", result="delivered")
            if delivered or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert delivered == 1, text
        # request latency by transport, operation and status
        assert value(samples, "zaqar_request_duration_seconds_count", transport="http",
                     operation="message_post", status="201") == 1, text
        assert value(samples, "zaqar_request_duration_seconds_count", transport="http",
                     operation="claim_create", status="201") == 1, text
        assert value(samples, "zaqar_request_duration_seconds_count", transport="http",
                     operation="message_get", status="404") == 1, text
        assert value(samples, "zaqar_request_duration_seconds_count", transport="websocket",
                     operation="queue_list", status="200") == 1, text
        assert value(samples, "zaqar_request_duration_seconds_bucket", transport="http",
                     operation="message_post", status="201", le="+Inf") == 1, text
        assert value(samples, "zaqar_http_responses_total", code="201") >= 3, text
        # storage latency by driver (the store these tests run on)
        driver = os.environ.get("ZAQAR_TEST_BACKEND") or "sqlite"
        assert value(samples, "zaqar_storage_operation_duration_seconds_count", driver=driver,
                     operation="message_post", outcome="ok") == 1, text
        assert value(samples, "zaqar_storage_operation_duration_seconds_count", driver=driver,
                     operation="claim_create", outcome="ok") == 1, text
        # WebSocket connections and frames
        assert value(samples, "zaqar_websocket_connections") == 1, text
        assert value(samples, "zaqar_websocket_frames_total", direction="in") == 1, text
        assert value(samples, "zaqar_websocket_frames_total", direction="out") == 1, text
        # the outbox is empty once the delivery is done, on every store
        depth = value(samples, "zaqar_notification_outbox_depth")
        assert depth == 0, text
        assert value(samples, "zaqar_notification_outbox_oldest_due_seconds") == 0, text
        # process metrics
        assert value(samples, "process_resident_memory_bytes") > 0, text
        assert value(samples, "process_open_fds") > 0, text
        ws.close()
        deadline = time.monotonic() + 10
        while value(scrape(srv)[1], "zaqar_websocket_connections") != 0:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        # a client cannot make up label values: unknown actions are "none"
        ws = websocket.create_connection(srv.ws_url, timeout=10)
        ws.send(json.dumps({"action": "evil" + uuid.uuid4().hex, "body": {}, "headers": {}}))
        ws.recv()
        ws.close()
        assert "evil" not in scrape(srv)[0]
    finally:
        receiver.close()


def test_metrics_are_off_by_default(server_factory):
    srv = server_factory()
    assert requests.get(srv.url + "/metrics", timeout=10).status_code == 404


def test_the_grafana_dashboard_queries_exported_metrics(server_factory):
    """Every metric contrib/grafana/zaqar.json queries is one the server
    exports (a labelled family with no sample yet, and the Keystone ones
    without Keystone, are not in a fresh server's scrape: those must be
    declared in metrics.rs)."""
    from zaqar_testlib import REPO_ROOT
    dashboard = json.loads((REPO_ROOT / "contrib/grafana/zaqar.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    names = {n for e in exprs for n in re.findall(r"\b((?:zaqar|process)_[a-z_]+)", e)}
    srv = server_factory({"metrics": {"enabled": "true"}, "drivers": {"transport": "wsgi, websocket"}})
    text, _ = scrape(srv)
    source = (REPO_ROOT / "zaqar/src/metrics.rs").read_text()
    assert len(names) > 10, names
    for name in sorted(names):
        base = re.sub(r"_(bucket|count|sum)$", "", name)
        assert (re.search(rf"^# TYPE {base} ", text, re.M) or f'"{base}"' in source), name


def test_storage_latency_is_labelled_by_pool(server_factory, tmp_path):
    srv = server_factory({"DEFAULT": {"admin_mode": "true", "pooling": "true"},
                          "drivers": {"message_store": "sqlite", "management_store": "sqlite"},
                          "metrics": {"enabled": "true"}})
    api = Api(srv.url, "p-" + uuid.uuid4().hex[:8])
    admin_headers = {**api.default_headers(), "X-Roles": "admin"}
    uri = f"sqlite://{tmp_path / 'pool-a.sqlite'}"
    resp = requests.put(srv.url + "/v2/pools/pool-a", json={"uri": uri, "weight": 10},
                        headers=admin_headers)
    assert resp.status_code == 201, resp.text
    assert api.put("/v2/queues/pq").status_code == 201
    api.post_messages("pq", [{"body": 1, "ttl": 300}])
    text, samples = scrape(srv)
    assert value(samples, "zaqar_storage_operation_duration_seconds_count", driver="sqlite",
                 pool="pool-a", operation="message_post", outcome="ok") == 1, text
