"""zaqar-server with ``auth_strategy = keystone`` against a REAL Keystone.

Keystone is started by ``tests/keystone/setup.sh`` (run_tests.sh does it, on
its own port and state directory).  The suite reads what setup.sh wrote:
the variables of ``$KEYSTONE_STATE_DIR/env`` (``KEYSTONE_URL``, ids,
passwords), from the environment when ``KEYSTONE_URL`` is set there, else
from that file.  Without either, every test is skipped with the reason.

Tests that stop and restart Keystone call setup.sh with the same
``KEYSTONE_PORT`` and ``KEYSTONE_STATE_DIR``; they restart it in a
``finally`` so later tests find it running.

Fixtures:
  ks            the Keystone facts (URLs, users, projects) + token helpers
  ks_options    the zaqar.conf options of a keystone-mode server
  ks_server     start a keystone-mode zaqar-server: ks_server(token_cache_time=.., extra options)
  alice, bob, admin   fresh project-scoped tokens (proj-a member, proj-b member, admin)
"""

import os
import pathlib
import socket
import subprocess
import sys
import urllib.parse

import pytest
import requests

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "tests" / "functional"))

from zaqar_testlib import ZaqarServer  # noqa: E402

SETUP_SH = ROOT / "tests" / "keystone" / "setup.sh"


def _state_dir():
    return pathlib.Path(os.environ.get("KEYSTONE_STATE_DIR", ROOT / "tests" / "keystone" / ".state"))


def _read_env():
    if os.environ.get("KEYSTONE_URL"):
        return dict(os.environ)
    env_file = _state_dir() / "env"
    if not env_file.exists():
        return None
    values = {}
    for line in env_file.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            k, v = line.split("=", 1)
            values[k] = v
    return values


class Keystone:
    """What setup.sh provisioned, and helpers to get, revoke and stop."""

    def __init__(self, env):
        self.env = env
        self.url = env["KEYSTONE_URL"]
        self.auth_url = env["KEYSTONE_AUTH_URL"]
        self.proj_a = env["KEYSTONE_PROJ_A_ID"]
        self.proj_b = env["KEYSTONE_PROJ_B_ID"]
        self.admin_project = env["KEYSTONE_ADMIN_PROJECT_ID"]
        self.users = {
            "alice": (env["KEYSTONE_ALICE_USER"], env["KEYSTONE_ALICE_PASSWORD"], env["KEYSTONE_PROJ_A"]),
            "bob": (env["KEYSTONE_BOB_USER"], env["KEYSTONE_BOB_PASSWORD"], env["KEYSTONE_PROJ_B"]),
            "admin": (env["KEYSTONE_ADMIN_USER"], env["KEYSTONE_ADMIN_PASSWORD"], env["KEYSTONE_ADMIN_PROJECT"]),
        }

    def password_auth(self, who):
        user, password, project = self.users[who]
        return {
            "os_auth_url": self.auth_url,
            "os_username": user,
            "os_password": password,
            "os_project_name": project,
            "os_user_domain_name": "Default",
            "os_project_domain_name": "Default",
        }

    def token(self, who):
        """A new project-scoped token for alice, bob or admin."""
        return self.token_and_expiry(who)[0]

    def token_and_expiry(self, who):
        """(token, its ``expires_at`` as Keystone wrote it) for alice, bob or admin."""
        user, password, project = self.users[who]
        body = {"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": user, "domain": {"name": "Default"}, "password": password}}},
            "scope": {"project": {"name": project, "domain": {"name": "Default"}}},
        }}
        resp = requests.post(self.auth_url + "/auth/tokens", json=body, timeout=30)
        assert resp.status_code == 201, resp.text
        return resp.headers["X-Subject-Token"], resp.json()["token"]["expires_at"]

    def revoke(self, token):
        resp = requests.delete(self.auth_url + "/auth/tokens",
                               headers={"X-Auth-Token": token, "X-Subject-Token": token}, timeout=30)
        assert resp.status_code == 204, resp.text

    def authtoken_options(self, token_cache_time=300):
        env = self.env
        return {
            "www_authenticate_uri": self.url,
            "auth_url": self.url,
            "auth_type": "password",
            "username": env["KEYSTONE_SERVICE_USER"],
            "password": env["KEYSTONE_SERVICE_PASSWORD"],
            "project_name": env["KEYSTONE_SERVICE_PROJECT"],
            "user_domain_name": "Default",
            "project_domain_name": "Default",
            "token_cache_time": str(token_cache_time),
            # Generous: a loaded machine (parallel builds) makes Keystone slow;
            # a stopped Keystone still fails at once (connection refused).
            "http_connect_timeout": "10",
            "http_request_max_retries": "1",
        }

    def _setup(self, action):
        port = urllib.parse.urlparse(self.url).port
        env = dict(os.environ, KEYSTONE_PORT=str(port), KEYSTONE_STATE_DIR=str(_state_dir()))
        subprocess.run(["bash", str(SETUP_SH), action], env=env, check=True, timeout=300,
                       stdout=subprocess.DEVNULL)

    def stop(self):
        self._setup("stop")

    def start(self):
        self._setup("start")


def _missing(reason):
    """Skips, unless run_tests.sh said Keystone is required (then fails)."""
    if "keystone" in os.environ.get("ZAQAR_TEST_REQUIRE", "").split(","):
        pytest.fail(f"Keystone is required (ZAQAR_TEST_REQUIRE) but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def ks():
    env = _read_env()
    if env is None or "KEYSTONE_URL" not in env:
        _missing("no Keystone: run tests/keystone/setup.sh (run_tests.sh does) "
                 f"so that {_state_dir() / 'env'} exists")
    k = Keystone(env)
    try:
        requests.get(k.auth_url, timeout=5).raise_for_status()
    except requests.RequestException as exc:
        _missing(f"Keystone at {k.url} does not answer: {exc}")
    return k


SHORT_TOKEN_EXPIRATION = 20


@pytest.fixture(scope="session")
def short_expiry_ks(ks):
    """A SECOND Keystone whose tokens live SHORT_TOKEN_EXPIRATION seconds
    (``[token] expiration``, global to a Keystone, so the shared one is left
    alone).  Started by setup.sh on a free loopback port with its own state
    directory inside the shared one's; stopped at the end of the session.
    Costs ~30 s the first time (bootstrap), less later (the state is kept)."""
    state = _state_dir() / "short-expiry"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, KEYSTONE_PORT=str(port), KEYSTONE_STATE_DIR=str(state),
               KEYSTONE_TOKEN_EXPIRATION=str(SHORT_TOKEN_EXPIRATION))
    for key in [k for k in env if k.startswith("KEYSTONE_") and k.endswith("_URL")]:
        del env[key]
    try:
        subprocess.run(["bash", str(SETUP_SH), "stop"], env=env, check=True, timeout=60,
                       stdout=subprocess.DEVNULL)
        subprocess.run(["bash", str(SETUP_SH), "start"], env=env, check=True, timeout=300,
                       stdout=subprocess.DEVNULL)
        values = {}
        for line in (state / "env").read_text().splitlines():
            if line and not line.startswith("#") and "=" in line:
                k, v = line.split("=", 1)
                values[k] = v
        assert values["KEYSTONE_URL"] == f"http://127.0.0.1:{port}", values["KEYSTONE_URL"]
        yield Keystone(values)
    finally:
        subprocess.run(["bash", str(SETUP_SH), "stop"], env=env, timeout=60,
                       stdout=subprocess.DEVNULL)


def _report_and_stop(servers, request):
    failed = getattr(request.node, "rep_call", None)
    for srv in servers:
        if srv.running():
            srv.stop()
        if failed is not None and failed.failed:
            print(f"--- zaqar-server log ({srv.workdir}) ---\n{srv.log_text()}")
    for srv in servers:
        if srv.panicked():
            pytest.fail(f"zaqar-server panicked:\n{srv.log_text()}")


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def keystone_options(ks, token_cache_time=300, extra=None):
    options = {
        "DEFAULT": {"auth_strategy": "keystone", "admin_mode": "true"},
        "drivers": {"transport": "wsgi, websocket"},
        "keystone_authtoken": ks.authtoken_options(token_cache_time),
        "metrics": {"enabled": "true"},
        "signed_url": {"secret_key": "test-secret"},
    }
    for section, opts in (extra or {}).items():
        options.setdefault(section, {}).update(opts)
    return options


@pytest.fixture
def ks_options(ks):
    """``ks_options(token_cache_time=300, extra=None)``: the options of a keystone-mode server."""
    return lambda token_cache_time=300, extra=None: keystone_options(ks, token_cache_time, extra)


@pytest.fixture
def ks_server(ks, tmp_path, request):
    """``ks_server(token_cache_time=300, extra=None, files=None)``: a
    keystone-mode server; ``files`` are written next to its zaqar.conf."""
    servers = []

    def start(token_cache_time=300, extra=None, files=None):
        srv = ZaqarServer(tmp_path / f"srv{len(servers)}", keystone_options(ks, token_cache_time, extra))
        for name, text in (files or {}).items():
            (srv.workdir / name).write_text(text)
        servers.append(srv)
        return srv.start()

    yield start
    _report_and_stop(servers, request)


@pytest.fixture
def alice(ks):
    return ks.token("alice")


@pytest.fixture
def bob(ks):
    return ks.token("bob")


@pytest.fixture
def admin(ks):
    return ks.token("admin")
