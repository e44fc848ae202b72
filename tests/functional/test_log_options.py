"""oslo.log's options, the one line per request, and what SIGHUP reloads
(log levels, the policy file) without dropping connections; the policy
file is also re-read when it changes on disk."""

import json
import signal
import time
import uuid

import requests

from zaqar_testlib import Api

# RUST_LOG, when set, overrides the configuration's levels: these servers
# run without it.
NO_RUST_LOG = {"RUST_LOG": ""}


def wait_until(check, timeout=20, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_log_file_in_json_with_one_line_per_request(server_factory, tmp_path):
    log = tmp_path / "logs" / "z.log"
    srv = server_factory({"DEFAULT": {"log_dir": str(tmp_path / "logs"), "log_file": "z.log",
                                      "use_json": "true", "use_syslog": "true"}},
                         env=NO_RUST_LOG)
    api = Api(srv.url, "p-" + uuid.uuid4().hex[:8])
    resp = api.get("/v2/queues")
    assert resp.status_code == 200
    request_id = resp.headers["x-openstack-request-id"]

    def access_lines():
        if not log.exists():
            return []
        docs = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        return [d for d in docs if d.get("target") == "zaqar::access"]

    wait_until(lambda: access_lines(), what="the access line")
    lines = [d for d in access_lines() if d["span"]["request_id"] == request_id]
    assert len(lines) == 1, access_lines()
    assert lines[0]["level"] == "INFO"
    assert lines[0]["fields"]["message"].startswith('"GET /v2/queues" status: 200 time: ')
    text = log.read_text()
    assert "accepted but ignored: [DEFAULT] use_syslog" in text
    assert "configuration file read" in text


def test_default_log_levels_and_sighup_reload_without_dropping_connections(server_factory):
    srv = server_factory({"DEFAULT": {"default_log_levels": "zaqar.access=WARN"}},
                         env=NO_RUST_LOG)
    api = Api(srv.url, "p-" + uuid.uuid4().hex[:8])
    session = requests.Session()
    headers = api.default_headers()
    assert session.get(srv.url + "/v2/queues", headers=headers).status_code == 200
    time.sleep(0.3)
    assert '"GET /v2/queues" status: 200' not in srv.log_text(tail=10_000)
    # the same file, access lines at INFO and debug on: SIGHUP reloads the levels
    text = srv.config_path.read_text().replace("zaqar.access=WARN", "zaqar.access=INFO")
    srv.config_path.write_text(text.replace("[DEFAULT]", "[DEFAULT]\ndebug = true", 1))
    srv.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "log levels reloaded" in srv.log_text(tail=10_000), what="the reload")
    # the kept-alive connection still serves, and the request is logged now
    assert session.get(srv.url + "/v2/queues", headers=headers).status_code == 200
    wait_until(lambda: '"GET /v2/queues" status: 200' in srv.log_text(tail=10_000),
               what="the access line")
    assert srv.proc.poll() is None


def test_the_policy_file_is_reread_on_change_and_on_sighup(server_factory):
    srv = server_factory(start=False)
    policy = srv.config_path.parent / "policy.yaml"
    policy.write_text('"queues:get_all": ""\n')
    srv.start()
    api = Api(srv.url, "p-" + uuid.uuid4().hex[:8])
    assert api.get("/v2/queues").status_code == 200
    policy.write_text('"queues:get_all": "!"\n# changed\n')
    wait_until(lambda: api.get("/v2/queues").status_code == 403, what="the new rule")
    # an invalid file leaves the rules in force
    policy.write_text('"queues:get_all": "rule:nope"\n')
    wait_until(lambda: "policy not reloaded" in srv.log_text(tail=10_000), what="the refusal")
    assert api.get("/v2/queues").status_code == 403
    # SIGHUP reads it again too
    policy.write_text('"queues:get_all": ""\n')
    srv.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: api.get("/v2/queues").status_code == 200, what="the SIGHUP reload")
    assert srv.proc.poll() is None
