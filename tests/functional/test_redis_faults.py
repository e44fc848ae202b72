"""Redis faults through the HTTP API: Redis killed mid-load, Sentinel failover.

Runs only with the Redis backend (``ZAQAR_TEST_BACKEND=redis``).  Each test
starts Redis topologies of its own with tests/redis/start.sh (free loopback
ports, data under the test's temporary directory) so that killing them
disturbs no other test, and stops them with tests/redis/stop.sh.

- Redis (``appendfsync always``) killed with SIGKILL under load: requests
  answer 503 with a Zaqar error body within the request timeout, the server
  does not panic, ``GET /v2/ping`` says 503; Redis restarted on its data: the
  same server process answers again, and every message whose POST was
  answered 201 is there.
- Sentinel: the master killed under load; once the sentinels promoted the
  replica the same server answers again.  Replication is asynchronous, so
  posts acknowledged by the old master in its last moments may be missing:
  the test counts them (printed); with ``wait_replicas = 1`` none may be
  missing.
"""

import os
import pathlib
import signal
import socket
import subprocess
import threading
import time

import pytest

from zaqar_testlib import REPO_ROOT, Api

pytestmark = pytest.mark.skipif(
    os.environ.get("ZAQAR_TEST_BACKEND") != "redis",
    reason="needs ZAQAR_TEST_BACKEND=redis (and redis-server)")

SCRIPTS = REPO_ROOT / "tests" / "redis"


def free_ports(n):
    """n consecutive free loopback ports (checked, not reserved)."""
    for base in range(21000 + (os.getpid() % 500) * 10, 29000, 17):
        ok = True
        for p in range(base, base + n):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise RuntimeError("no free ports")


class Topology:
    """A tests/redis topology on ports and in a directory of its own."""

    def __init__(self, kind, workdir):
        self.kind = kind
        base = free_ports(5)
        self.env = dict(os.environ,
                        ZAQAR_REDIS_DIR=str(workdir),
                        ZAQAR_REDIS_PORT=str(base),
                        ZAQAR_REDIS_SENTINEL_PORT=str(base),
                        ZAQAR_REDIS_SENTINELS_PORT=str(base + 2))
        self.dir = pathlib.Path(workdir)
        self.port = base
        self.url = None

    def start(self):
        out = subprocess.run(["bash", str(SCRIPTS / "start.sh"), self.kind], env=self.env,
                             check=True, capture_output=True, text=True).stdout
        self.url = out.strip().split("=", 1)[1]
        return self

    def kill_9(self, port=None):
        pid = int((self.dir / str(port or self.port) / "pid").read_text())
        os.kill(pid, signal.SIGKILL)
        while True:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)

    def stop(self):
        subprocess.run(["bash", str(SCRIPTS / "stop.sh"), self.kind], env=self.env,
                       capture_output=True)


@pytest.fixture
def topology(tmp_path):
    started = []

    def make(kind):
        t = Topology(kind, tmp_path / f"redis-{kind}").start()
        started.append(t)
        return t

    yield make
    for t in started:
        t.stop()


class Load:
    """One thread posting single messages as fast as the server answers."""

    def __init__(self, api, queue):
        self.api, self.queue = api, queue
        self.acked, self.statuses, self.bad = [], [], []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run)

    def run(self):
        n = 0
        while not self.stop.is_set():
            n += 1
            t0 = time.monotonic()
            resp = self.api.request("POST", f"/v2/queues/{self.queue}/messages", allow_5xx=True,
                                    json={"messages": [{"body": {"n": n}, "ttl": 3600}]})
            took = time.monotonic() - t0
            self.statuses.append(resp.status_code)
            if resp.status_code == 201:
                self.acked.append(resp.json()["resources"][0].rsplit("/", 1)[1])
            elif resp.status_code == 503:
                body = resp.json()
                if "title" not in body or took > 10:
                    self.bad.append((resp.status_code, took, body))
                time.sleep(0.05)
            else:
                self.bad.append((resp.status_code, took, resp.text))

    def wait_for(self, acked, timeout=30):
        deadline = time.monotonic() + timeout
        while len(self.acked) < acked:
            assert time.monotonic() < deadline, f"only {len(self.acked)} posts acknowledged"
            time.sleep(0.05)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def present(api, queue, ids):
    found = set()
    ids = list(ids)
    for i in range(0, len(ids), 20):
        resp = api.get(f"/v2/queues/{queue}/messages", params={"ids": ",".join(ids[i:i + 20])})
        assert resp.status_code in (200, 404), resp.text
        if resp.status_code == 200:
            found.update(m["id"] for m in resp.json()["messages"])
    return found


def redis_options(url, extra=None):
    sep = "&" if "?" in url else "?"
    opts = {"uri": f"{url}{sep}socket_timeout=0.5&request_timeout=2", "reconnect_sleep": "0.1"}
    opts.update(extra or {})
    return {"drivers:message_store:redis": opts}


def test_redis_killed_mid_load_503_then_recovers_with_every_ack(topology, server_factory, project):
    redis = topology("standalone")
    srv = server_factory(redis_options(redis.url))
    api = Api(srv.url, project)
    with Load(api, "faults") as load:
        load.wait_for(50)
        redis.kill_9()
        killed_at = len(load.statuses)
        time.sleep(3)
        # Down: 503 with a Zaqar error body, quickly; ping says so too.
        down = load.statuses[killed_at:]
        assert 503 in down and set(down) <= {201, 503}, down
        ping = api.request("GET", "/v2/ping", allow_5xx=True)
        assert ping.status_code == 503
        acked_before_restart = len(load.acked)
        redis.start()
        deadline = time.monotonic() + 20
        while len(load.acked) < acked_before_restart + 20:
            assert time.monotonic() < deadline, "the server did not recover without a restart"
            time.sleep(0.05)
    assert not load.bad, load.bad
    assert srv.running()
    assert api.get("/v2/ping").status_code == 204
    # appendfsync always: every 201 survived the kill.
    missing = set(load.acked) - present(api, "faults", load.acked)
    assert not missing, f"{len(missing)} acknowledged messages lost"


@pytest.mark.parametrize("wait_replicas", [0, 1])
def test_sentinel_failover_mid_load(topology, server_factory, project, wait_replicas):
    sentinel = topology("sentinel")
    srv = server_factory(redis_options(sentinel.url, {"wait_replicas": wait_replicas,
                                                      "wait_timeout_ms": 500}))
    api = Api(srv.url, project)
    with Load(api, "failover") as load:
        load.wait_for(100)
        sentinel.kill_9(sentinel.port)          # the master
        acked_at_kill = len(load.acked)
        if wait_replicas:
            # The promoted replica has no replica of its own until the old
            # master comes back (and is turned into its replica).
            time.sleep(4)
            sentinel.start()
        deadline = time.monotonic() + 45
        while len(load.acked) < acked_at_kill + 50:
            assert time.monotonic() < deadline, (
                f"no recovery after failover: {load.statuses[-20:]}")
            time.sleep(0.1)
    assert not load.bad, load.bad
    assert set(load.statuses) <= {201, 503}
    lost = set(load.acked) - present(api, "failover", load.acked)
    print(f"sentinel failover (wait_replicas={wait_replicas}): {len(load.acked)} posts "
          f"acknowledged, {len(lost)} lost, {load.statuses.count(503)} answered 503")
    if wait_replicas:
        assert not lost, f"{len(lost)} acknowledged messages lost despite wait_replicas"
