"""MongoDB faults through the HTTP API: the database killed mid-load.

Runs only with the MongoDB backend (``ZAQAR_TEST_BACKEND=mongodb``).  The
test starts a SecantusDB of its own with tests/mongodb/start.sh (a free
loopback port, data under the test's temporary directory), so that killing
it disturbs no other test, and stops it with tests/mongodb/stop.sh.

SecantusDB killed with SIGKILL under load: requests answer 503 with the
reference's Zaqar error body within the operation time limit, the server
does not panic, ``GET /v2/ping`` says 503; SecantusDB restarted on its
data: the same server process answers again, and every message whose POST
was answered 201 is there (write concern majority + journal).
"""

import os
import signal
import subprocess
import time

import pytest

from zaqar_testlib import REPO_ROOT, Api, free_port

pytestmark = pytest.mark.skipif(
    os.environ.get("ZAQAR_TEST_BACKEND") != "mongodb",
    reason="needs ZAQAR_TEST_BACKEND=mongodb (and tests/mongodb/start.sh)")

SCRIPTS = REPO_ROOT / "tests" / "mongodb"


class Database:
    """A tests/mongodb SecantusDB on a port and in a directory of its own."""

    def __init__(self, workdir):
        self.dir = workdir
        self.port = free_port()
        self.env = dict(os.environ, ZAQAR_MONGODB_PORT=str(self.port),
                        ZAQAR_MONGODB_DIR=str(workdir))
        self.uri = None

    def start(self):
        out = subprocess.run(["bash", str(SCRIPTS / "start.sh")], env=self.env,
                             check=True, capture_output=True, text=True).stdout
        line = next(x for x in out.splitlines() if "ZAQAR_TEST_MONGODB_URI=" in x)
        self.uri = line.split("=", 1)[1]
        return self

    def kill_9(self):
        pid = int((self.dir / "pid").read_text())
        os.kill(pid, signal.SIGKILL)
        while True:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)

    def stop(self):
        subprocess.run(["bash", str(SCRIPTS / "stop.sh")], env=self.env, capture_output=True)


@pytest.fixture
def database(tmp_path):
    db = Database(tmp_path / "mongodb").start()
    yield db
    db.stop()


def post(api, queue, n):
    return api.request("POST", f"/v2/queues/{queue}/messages", allow_5xx=True,
                       json={"messages": [{"body": {"n": n}, "ttl": 3600}]})


def present(api, queue, ids):
    found = set()
    ids = list(ids)
    for i in range(0, len(ids), 20):
        resp = api.get(f"/v2/queues/{queue}/messages", params={"ids": ",".join(ids[i:i + 20])})
        assert resp.status_code in (200, 404), resp.text
        if resp.status_code == 200:
            found.update(m["id"] for m in resp.json()["messages"])
    return found


def test_mongodb_killed_mid_load_503_then_recovers_with_every_ack(database, server_factory,
                                                                   project):
    uri = database.uri + "&serverSelectionTimeoutMS=1000&connectTimeoutMS=1000"
    srv = server_factory({"drivers:message_store:mongodb": {
        "uri": uri, "database": "faults", "reconnect_sleep": "0.1"}})
    api = Api(srv.url, project)
    acked = []
    for n in range(30):
        resp = post(api, "faults", n)
        assert resp.status_code == 201, resp.text
        acked.append(resp.json()["resources"][0].rsplit("/", 1)[1])

    database.kill_9()
    for n in range(3):
        t0 = time.monotonic()
        resp = post(api, "faults", 100 + n)
        took = time.monotonic() - t0
        assert resp.status_code == 503, resp.text
        assert resp.json() == {
            "title": "Service temporarily unavailable",
            "description": "Messages could not be enqueued. Please try again in a few seconds.",
        }
        assert took < 12, took
    listed = api.request("GET", "/v2/queues/faults/messages", allow_5xx=True)
    assert listed.status_code == 503
    assert listed.json()["description"].startswith("Messages could not be listed.")
    assert api.request("GET", "/v2/ping", allow_5xx=True).status_code == 503

    database.start()
    deadline = time.monotonic() + 60
    while True:
        resp = post(api, "faults", 200)
        if resp.status_code == 201:
            acked.append(resp.json()["resources"][0].rsplit("/", 1)[1])
            break
        assert resp.status_code == 503, resp.text
        assert time.monotonic() < deadline, "the server did not recover without a restart"
        time.sleep(0.2)
    assert srv.running()
    assert api.get("/v2/ping").status_code == 204
    missing = set(acked) - present(api, "faults", acked)
    assert not missing, f"{len(missing)} acknowledged messages lost"
