"""Building blocks of the functional tests: a zaqar-server process, an HTTP helper.

See conftest.py for the fixtures built from them.
"""

import configparser
import copy
import itertools
import os
import pathlib
import re
import signal
import socket
import subprocess
import time
import urllib.parse
import uuid

import requests

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
REQUEST_ID_RE = re.compile(r"^req-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
START_TIMEOUT = float(os.environ.get("ZAQAR_TEST_START_TIMEOUT", "30"))

DEFAULT_OPTIONS = {
    "DEFAULT": {
        "auth_strategy": "",
        "admin_mode": "false",
        "enable_checksum": "false",
    },
    "drivers": {
        "transport": "wsgi",
        "message_store": "sqlite",
        "management_store": "sqlite",
    },
    "transport": {},
}


def server_binary():
    path = pathlib.Path(os.environ.get("ZAQAR_SERVER_BIN", "target/debug/zaqar-server"))
    if not path.is_absolute():
        path = REPO_ROOT / path
    return path


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def merge_options(base, extra):
    merged = copy.deepcopy(base)
    for section, opts in (extra or {}).items():
        merged.setdefault(section, {}).update({k: str(v) for k, v in opts.items()})
    return merged


class ServerStartError(RuntimeError):
    pass


class ZaqarServer:
    """One zaqar-server process with its own config, database and log."""

    _serial = itertools.count(1)

    def __init__(self, workdir, options=None, env=None):
        self.workdir = pathlib.Path(workdir)
        self.extra_env = dict(env or {})  # on top of this process' environment
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.db_path = self.workdir / "zaqar.db"
        self.config_path = self.workdir / "zaqar.conf"
        self.port = free_port()
        self.ws_port = free_port()
        self.options = merge_options(DEFAULT_OPTIONS, options)
        # ZAQAR_TEST_BACKEND=redis: the message store is the Redis at
        # ZAQAR_TEST_REDIS_URL, under a key prefix of this server's own (kept
        # across restarts), so servers sharing one Redis never see each other.
        if os.environ.get("ZAQAR_TEST_BACKEND") == "redis":
            base = os.environ["ZAQAR_TEST_REDIS_URL"]
            sep = "&" if "?" in base else "?"
            self.redis_uri = f"{base}{sep}key_prefix=zqf-{uuid.uuid4().hex[:12]}"
            self.options = merge_options(
                {"drivers": {"message_store": "redis"},
                 "drivers:message_store:redis": {"uri": self.redis_uri}},
                self.options)
            self.options["drivers"]["message_store"] = "redis"
        # ZAQAR_TEST_BACKEND=mongodb: both stores are the MongoDB at
        # ZAQAR_TEST_MONGODB_URI, in databases of this server's own (kept
        # across restarts), so servers sharing one MongoDB never see each other.
        if os.environ.get("ZAQAR_TEST_BACKEND") == "mongodb":
            # socketTimeoutMS: SecantusDB's Python server stores a post of
            # 9000 messages (test_hostile_clients) in more than the default
            # 10 s an operation may take; MongoDB needs a fraction of that.
            base = os.environ["ZAQAR_TEST_MONGODB_URI"]
            sep = "&" if "?" in base else "?"
            self.mongodb_uri = f"{base}{sep}socketTimeoutMS=60000"
            self.mongodb_database = f"zqf_{uuid.uuid4().hex[:12]}"
            self.options = merge_options(
                {"drivers": {"message_store": "mongodb", "management_store": "mongodb"},
                 "drivers:message_store:mongodb": {"uri": self.mongodb_uri,
                                                   "database": self.mongodb_database}},
                self.options)
            # The management store is the message store's database unless a
            # test names another: it keeps the queue records, and with
            # pooling the catalogue.
            self.options.setdefault("drivers:management_store:mongodb",
                                    dict(self.options["drivers:message_store:mongodb"]))
            self.options["drivers"]["message_store"] = "mongodb"
            self.options["drivers"]["management_store"] = "mongodb"
        self.proc = None
        self.log_paths = []
        self.log_path = None

    # -- config -----------------------------------------------------------
    def write_config(self):
        # Comparing with the Python reference (which has no sqlite store): point
        # ZAQAR_SERVER_BIN at its zaqar-server and set ZAQAR_TEST_REDIS_STORE to a
        # redis:// URI; both stores then use that Redis.
        redis_uri = os.environ.get("ZAQAR_TEST_REDIS_STORE")
        if redis_uri:
            self.options = merge_options(self.options, {
                "drivers": {"message_store": "redis", "management_store": "redis"},
                "drivers:message_store:redis": {"uri": redis_uri},
                "drivers:management_store:redis": {"uri": redis_uri},
            })
        cp = configparser.ConfigParser(interpolation=None)
        cp.optionxform = str  # keep option names as written
        for section, opts in self.options.items():
            if section != "DEFAULT" and not cp.has_section(section):
                cp.add_section(section)
            for key, value in opts.items():
                cp.set(section, key, str(value))
        for section, opts in (
            ("drivers:transport:wsgi", {"bind": "127.0.0.1", "port": self.port}),
            ("drivers:transport:websocket", {"bind": "127.0.0.1", "port": self.ws_port}),
            ("drivers:message_store:sqlite", {"uri": str(self.db_path)}),
        ):
            if not cp.has_section(section):
                cp.add_section(section)
            for key, value in opts.items():
                if not cp.has_option(section, key):
                    cp.set(section, key, str(value))
        with open(self.config_path, "w") as f:
            cp.write(f)

    # -- process ----------------------------------------------------------
    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self):
        return f"ws://127.0.0.1:{self.ws_port}/"

    def start(self, timeout=START_TIMEOUT):
        binary = server_binary()
        if not binary.exists():
            raise ServerStartError(
                f"server binary {binary} not found: build it first (./run_tests.sh "
                "or cargo build), or set ZAQAR_SERVER_BIN")
        self.write_config()
        self.log_path = self.workdir / f"server-{next(self._serial)}.log"
        self.log_paths.append(self.log_path)
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "info")
        env.setdefault("RUST_BACKTRACE", "1")
        env.update(self.extra_env)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [str(binary), "--config-file", str(self.config_path)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=self.workdir, env=env)
        deadline = time.monotonic() + timeout
        last_err = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerStartError(
                    f"zaqar-server exited with {self.proc.returncode} during start-up\n"
                    f"--- config ---\n{self.config_path.read_text()}"
                    f"--- log ---\n{self.log_text()}")
            try:
                requests.get(self.url + "/", timeout=1)
                return self
            except requests.RequestException as exc:
                last_err = exc
                time.sleep(0.05)
        self.kill()
        raise ServerStartError(
            f"zaqar-server did not answer GET / within {timeout}s ({last_err})\n"
            f"--- log ---\n{self.log_text()}")

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=15):
        """SIGTERM and wait; returns the exit code (SIGKILLs after timeout)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(
                    f"zaqar-server ignored SIGTERM for {timeout}s\n{self.log_text()}")
        return self.proc.returncode

    def drop_databases(self):
        """With ZAQAR_TEST_BACKEND=mongodb: drops this server's databases
        (its main one and its message partitions) once the test is over, so
        the test MongoDB does not carry thousands of tables by the end of a
        run.  Nothing to do on the other backends."""
        name = getattr(self, "mongodb_database", None)
        if name is None:
            return
        import pymongo  # only the MongoDB runs need it

        with pymongo.MongoClient(self.mongodb_uri, serverSelectionTimeoutMS=5000) as client:
            for db in client.list_database_names():
                if db == name or db.startswith(name + "_part"):
                    client.drop_database(db)

    def kill(self):
        """kill -9: no chance to flush anything."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def restart(self, options=None, graceful=True):
        """Stop (SIGTERM, or SIGKILL with graceful=False) and start on the same DB and port."""
        if graceful:
            self.stop()
        else:
            self.kill()
        if options:
            self.options = merge_options(self.options, options)
        return self.start()

    def log_text(self, tail=200):
        chunks = []
        for p in self.log_paths:
            try:
                lines = p.read_text(errors="replace").splitlines()
            except FileNotFoundError:
                continue
            chunks.append(f"[{p.name}]\n" + "\n".join(lines[-tail:]))
        return "\n".join(chunks)

    def panicked(self):
        return "panicked at" in self.log_text(tail=100000)


# ---------------------------------------------------------------------------
# HTTP helper
# ---------------------------------------------------------------------------

class Api:
    """requests with the Zaqar headers, plus checks every response must pass.

    Every response must carry ``x-openstack-request-id: req-<uuid>`` and no
    response may be a 5xx (no client input may break the server).  Pass a header
    value of ``None`` to drop a default header.
    """

    def __init__(self, base_url, project_id, client_id=None):
        self.base_url = base_url.rstrip("/")
        self.project_id = project_id
        self.client_id = client_id or str(uuid.uuid4())
        self.session = requests.Session()

    def default_headers(self):
        headers = {"Client-ID": self.client_id, "Accept": "application/json"}
        if self.project_id is not None:
            headers["X-Project-ID"] = self.project_id
        return headers

    def request(self, method, path, headers=None, allow_5xx=False, **kwargs):
        hdrs = self.default_headers()
        if kwargs.get("json") is not None or "data" in kwargs:
            hdrs["Content-Type"] = "application/json"
        hdrs.update(headers or {})
        kwargs.setdefault("timeout", 30)
        url = path if path.startswith("http") else self.base_url + path
        params = kwargs.pop("params", None)
        if params:
            # Keep commas literal (ids=a,b) as Zaqar clients and hrefs do: the
            # reference splits lists on literal commas only, not on %2C.
            sep = "&" if "?" in url else "?"
            url += sep + urllib.parse.urlencode(params, doseq=True, safe=",")
        resp = self.session.request(method, url, headers=hdrs, **kwargs)
        check_response(resp, allow_5xx=allow_5xx)
        return resp

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def head(self, path, **kw):
        return self.request("HEAD", path, **kw)

    def put(self, path, **kw):
        return self.request("PUT", path, **kw)

    def post(self, path, **kw):
        return self.request("POST", path, **kw)

    def patch(self, path, **kw):
        return self.request("PATCH", path, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    # -- shortcuts ----------------------------------------------------------
    def create_queue(self, name, metadata=None):
        resp = self.put(f"/v2/queues/{name}", json=metadata)
        assert resp.status_code in (201, 204), resp.text
        return resp

    def post_messages(self, queue, messages):
        resp = self.post(f"/v2/queues/{queue}/messages", json={"messages": messages})
        assert resp.status_code == 201, resp.text
        return [href.rsplit("/", 1)[1] for href in resp.json()["resources"]]

    def list_messages(self, queue, **params):
        resp = self.get(f"/v2/queues/{queue}/messages", params=params)
        assert resp.status_code == 200, resp.text
        return resp.json()["messages"]

    def claim(self, queue, ttl=60, grace=60, limit=None):
        params = {} if limit is None else {"limit": limit}
        return self.post(f"/v2/queues/{queue}/claims", params=params,
                         json={"ttl": ttl, "grace": grace})


def check_response(resp, allow_5xx=False):
    rid = resp.headers.get("x-openstack-request-id")
    assert rid is not None, (
        f"{resp.request.method} {resp.request.url} -> {resp.status_code}: "
        "no x-openstack-request-id header")
    assert REQUEST_ID_RE.match(rid), f"malformed request id {rid!r}"
    if not allow_5xx:
        assert resp.status_code < 500, (
            f"{resp.request.method} {resp.request.url} -> {resp.status_code} {resp.text}")


def assert_error(resp, status, title=None, description=None):
    """Status plus the Zaqar error body {"title", "description"}.

    ``description`` may be a string (exact), a compiled regex (fullmatch) or
    ``None`` (not checked); use ``assert_error(..., description=ABSENT)`` to
    require that there is no description.
    """
    assert resp.status_code == status, (
        f"{resp.request.method} {resp.request.url}: expected {status}, "
        f"got {resp.status_code}: {resp.text}")
    ctype = resp.headers.get("Content-Type", "")
    assert ctype.startswith("application/json"), f"error Content-Type {ctype!r}"
    body = resp.json()
    assert isinstance(body, dict) and "title" in body, body
    if title is not None:
        assert body["title"] == title, body
    if description is ABSENT:
        assert "description" not in body, body
    elif isinstance(description, re.Pattern):
        assert description.fullmatch(body.get("description", "")), body
    elif description is not None:
        assert body.get("description") == description, body
    return body


ABSENT = object()
