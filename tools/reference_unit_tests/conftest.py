"""Runs the reference's own transport unit tests against our server.

Zaqar 23.0.1 ships its HTTP and WebSocket unit tests in the package
(zaqar/tests/unit/transport/{wsgi/v2_0,websocket/v2}): the best record of
its behaviour, request by request. They drive the reference in-process (a
falcon app, an autobahn protocol object). This plugin replaces only those
two entry points: each test gets a fresh server of ours (embedded SQLite,
no auth, admin mode, the test's own [transport] limits), `simulate_request`
sends real HTTP to it, and a protocol's `onMessage` sends a real WebSocket
frame and hands the answer to `sendMessage`, which the tests mock to check
it. Tests that reach into the reference's storage or internals (`self.boot`)
cannot run against another server and error out; the runner reports them
apart. See tools/reference-unit-tests.sh.
"""

import http.client
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.parse

import pytest

OURS = os.environ.get("ZAQAR_SERVER", "target/debug/zaqar-server")

# [transport] options the tests may set in their config files; passed on.
LIMITS = [
    "max_queues_per_page", "max_messages_per_page", "max_subscriptions_per_page",
    "max_messages_per_claim_or_pop", "max_queue_metadata", "max_messages_post_size",
    "max_message_ttl", "max_message_delay", "max_claim_ttl", "max_claim_grace",
    "default_message_ttl", "default_claim_ttl", "default_claim_grace",
    "default_message_delay", "subscriber_types", "max_flavors_per_page",
    "max_pools_per_page", "message_delete_with_claim_id", "client_id_uuid_safe",
    "min_length_client_id", "max_length_client_id", "default_subscription_ttl",
    "max_subscription_ttl",
]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class OurServer:
    """A fresh server of ours for one test."""

    def __init__(self, conf, pooled=False):
        self.dir = tempfile.mkdtemp(prefix="zaqar-refunit-")
        self.port, self.ws_port = free_port(), free_port()
        lines = []
        try:
            tcfg = conf["transport"]
            for name in LIMITS:
                try:
                    value = tcfg[name]
                except Exception:
                    continue
                if isinstance(value, list):
                    value = ",".join(value)
                lines.append("%s = %s" % (name, str(value).lower() if isinstance(value, bool) else value))
        except Exception:
            pass
        # The pool and flavor tests: pooling on, the catalogue in SQLite,
        # pools on the MongoDB at ZAQAR_TEST_MONGODB_URL (SecantusDB here).
        pooling = ("pooling = true\nunreliable = true\n[pooling:catalog]\n"
                   "enable_virtual_pool = true\n" if pooled else "")
        # ZAQAR_REFUNIT_STORE=mongodb: our MongoDB store, on
        # ZAQAR_TEST_MONGODB_URL (databases of the test's own); =redis: our
        # Redis store on ZAQAR_TEST_REDIS_URL (a key prefix of its own).
        store = os.environ.get("ZAQAR_REFUNIT_STORE")
        if store == "redis":
            uri = "%s?key_prefix=%s" % (os.environ["ZAQAR_TEST_REDIS_URL"],
                                        "ru" + os.path.basename(self.dir).replace("-", ""))
            stores = ("message_store = redis\nmanagement_store = redis\n"
                      "[drivers:message_store:redis]\nuri = %s\n"
                      "[drivers:management_store:redis]\nuri = %s\n" % (uri, uri))
        elif store == "mongodb":
            uri = os.environ["ZAQAR_TEST_MONGODB_URL"]
            db = "refunit_" + os.path.basename(self.dir).replace("-", "_")
            stores = ("message_store = mongodb\nmanagement_store = mongodb\n"
                      "[drivers:message_store:mongodb]\nuri = %s\ndatabase = %s\n"
                      "[drivers:management_store:mongodb]\nuri = %s\ndatabase = %s_m\n"
                      % (uri, db, uri, db))
            pooling = pooling or "unreliable = true\n"
        else:
            stores = ("message_store = sqlite\nmanagement_store = sqlite\n"
                      "[drivers:message_store:sqlite]\nuri = %s/zaqar.sqlite\n" % self.dir)
        with open(os.path.join(self.dir, "zaqar.conf"), "w") as f:
            f.write("[DEFAULT]\nadmin_mode = true\n" + pooling +
                    "[drivers]\ntransport = wsgi, websocket\n" + stores +
                    "[drivers:transport:wsgi]\nbind = 127.0.0.1\nport = %d\n"
                    "[drivers:transport:websocket]\nbind = 127.0.0.1\nport = %d\n"
                    "[signed_url]\nsecret_key = test\n"
                    "[notification]\nallowed_subscriber_networks = 0.0.0.0/8, 127.0.0.0/8\n"
                    "[transport]\n%s\n" % (self.port, self.ws_port, "\n".join(lines)))
        self.proc = subprocess.Popen([OURS, "--config-file", os.path.join(self.dir, "zaqar.conf")],
                                     stdout=open(os.path.join(self.dir, "log"), "w"),
                                     stderr=subprocess.STDOUT, env=dict(os.environ, RUST_LOG="warn"))
        for _ in range(200):
            if self.proc.poll() is not None:
                raise RuntimeError(open(os.path.join(self.dir, "log")).read())
            try:
                socket.create_connection(("127.0.0.1", self.ws_port), timeout=0.2).close()
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("our server did not start")

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def live_request(self, path, project_id=None, **kwargs):
    """`simulate_request`, over HTTP to our server."""
    headers = dict(kwargs.get("headers", self.headers))
    project_id = "518b51ea133c4facadae42c328d6b77b" if project_id is None else project_id
    if kwargs.get("need_project_id", True):
        headers["X-Project-ID"] = headers.get("X-Project-ID", project_id)
    try:
        path.encode("latin1").decode("utf-8", "replace")
    except UnicodeEncodeError:
        # As the reference's simulate_request: no such path on the wire.
        self.srmock.status = "400 Bad Request"
        return None
    method = kwargs.get("method", "GET")
    query = kwargs.get("query_string")
    if isinstance(query, dict):
        query = urllib.parse.urlencode(query)
    # falcon's simulated requests take any text as the path; on the wire
    # it is percent-encoded UTF-8.
    url = urllib.parse.quote(path, safe="/:@!$&'()*+,;=-._~") + ("?" + query if query else "")
    body = kwargs.get("body")
    if isinstance(body, str):
        body = body.encode()
    conn = http.client.HTTPConnection("127.0.0.1", self._ours.port, timeout=60)
    try:
        conn.putrequest(method, url, skip_accept_encoding=True)
        for k, v in headers.items():
            conn.putheader(k, v)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        try:
            conn.endheaders(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # answered (and closed) before the whole body was read
        resp = conn.getresponse()
        data = resp.read()
        self.srmock.status = "%d %s" % (resp.status, resp.reason)
        self.srmock.headers = [(k.lower(), v) for k, v in resp.getheaders()]
        from falcon.util import CaseInsensitiveDict

        self.srmock.headers_dict = CaseInsensitiveDict(self.srmock.headers)
    finally:
        conn.close()
    return [data] if data else []


class LiveProtocol:
    """What the WebSocket tests use of a protocol object, over a real
    connection to our server."""

    def __init__(self, port):
        import websocket

        self.ws = websocket.create_connection("ws://127.0.0.1:%d/" % port, timeout=60)

    def onMessage(self, payload, isBinary):  # noqa: N802 (the reference's name)
        if isBinary:
            self.ws.send_binary(payload)
        else:
            self.ws.send(payload if isinstance(payload, str) else payload.decode())
        answer = self.ws.recv()
        if isinstance(answer, str):
            answer = answer.encode()
        self.sendMessage(answer, isBinary)

    def sendMessage(self, payload, isBinary=False):  # noqa: N802
        pass


class LiveTransport:
    def __init__(self, port):
        self.port = port

    def factory(self):
        return LiveProtocol(self.port)


def _start(self):
    from falcon import testing as ftest
    from oslo_utils import uuidutils

    self.conf.unreliable = True
    self.conf.admin_mode = True
    # Our server runs one embedded store: no pools for the tests to add,
    # but for the pool and flavor tests themselves.
    pooled = bool(self.conf.pooling) and type(self).__name__.startswith(("TestPools", "TestFlavors"))
    self.conf.set_override("pooling", False)
    # What the tests read of the reference's bootstrap: its defaults (real
    # values), and its storage for tearDown's clean-up (a stand-in that
    # accepts anything: our server is thrown away instead). A test that
    # patches the reference's storage to inject a fault cannot work here;
    # triage.py counts those apart.
    from unittest import mock

    from zaqar.transport import base as transport_base

    self.boot = mock.MagicMock()
    self.boot.transport._defaults = transport_base.ResourceDefaults(self.conf)
    self._pooled = pooled
    self._ours = OurServer(self.conf, pooled)
    self.addCleanup(lambda: self._ours.stop())
    # A test that changes an option at run time gets a server started with
    # it (a fresh one: what the test stored before is gone, so only tests
    # that change options first can pass).
    plain_override = self.conf.set_override

    def set_override(name, value, group=None):
        plain_override(name, value, group)
        self._ours.stop()
        self._ours = OurServer(self.conf, pooled)

    self.conf.set_override = set_override
    self.srmock = ftest.StartResponseMock()
    self.headers = {
        "Client-ID": uuidutils.generate_uuid(),
        "X-ROLES": "admin",
        "X-USER-ID": "a12d157c7d0d41999096639078fd11fc",
        "X-TENANT-ID": "abb69142168841fcaa2785791b92467f",
    }


def _setup(self, transport_opts):
    """The reference's TestBase.setUp up to its bootstrap: the test's
    config with the transport's options registered; then our server.
    Returns the transport driver's option group."""
    from zaqar.conf import default, transport
    from zaqar import tests as testing

    testing.TestBase.setUp(self)
    if not self.config_file:
        self.skipTest("No config specified")
    self.conf.register_opts(default.ALL_OPTS)
    self.conf.register_opts(transport.ALL_OPTS, group=transport.GROUP_NAME)
    self.transport_cfg = self.conf[transport.GROUP_NAME]
    self.conf.register_opts(transport_opts.ALL_OPTS, group=transport_opts.GROUP_NAME)
    _start(self)
    return self.conf[transport_opts.GROUP_NAME]


def wsgi_setup(self):
    from zaqar.conf import drivers_transport_wsgi

    self.wsgi_cfg = _setup(self, drivers_transport_wsgi)


def ws_setup(self):
    from unittest import mock

    from zaqar.conf import drivers_transport_websocket

    self.ws_cfg = _setup(self, drivers_transport_websocket)
    self.transport = LiveTransport(self._ours.ws_port)
    self.api = mock.MagicMock()
    self.api.get_defaults.return_value = self.boot.transport._defaults


def no_teardown(self):
    from zaqar import tests as testing

    # The reference's tearDown drops every pool and the catalogue, behind
    # the API's back: a fresh server is the same clean slate.
    if getattr(self, "_pooled", False):
        self._ours.stop()
        self._ours = OurServer(self.conf, True)
    testing.TestBase.tearDown(self)


def pytest_configure(config):
    from zaqar.tests.unit.transport.websocket import base as ws_base
    from zaqar.tests.unit.transport.wsgi import base as wsgi_base

    wsgi_base.TestBase.setUp = wsgi_setup
    wsgi_base.TestBase.tearDown = no_teardown
    wsgi_base.TestBase.simulate_request = live_request
    ws_base.TestBase.setUp = ws_setup
    ws_base.TestBase.tearDown = no_teardown
