"""Fixtures that run the real zaqar-server binary and talk to it over HTTP.

Nothing is built here: run_tests.sh (or tox) builds the binary first.  The binary
is ``$ZAQAR_SERVER_BIN`` (default ``target/debug/zaqar-server`` under the repo
root), started as ``zaqar-server --config-file <tmp>/zaqar.conf`` with a
generated INI config, on free loopback ports, with its output captured to a log
file that is shown when a test fails.

Fixtures:
  server          one server shared by the whole session (default options)
  server_factory  start servers with extra options; restart them on the same DB
  project         a fresh project id per test (so tests never see each other)
  api             an ``Api`` on ``server`` for ``project``
  make_api        build more ``Api`` objects (other project, client id, server)
  qname           a fresh queue name
"""

import itertools
import uuid

import pytest

from zaqar_testlib import Api, ZaqarServer

# ---------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------

def _report_and_check(servers, request):
    failed = getattr(request.node, "rep_call", None)
    for srv in servers:
        if srv.running():
            try:
                srv.stop()
            except AssertionError as exc:  # ignored SIGTERM
                print(exc)
        if failed is not None and failed.failed:
            print(f"--- zaqar-server log ({srv.workdir}) ---\n{srv.log_text()}")
    for srv in servers:
        if srv.panicked():
            pytest.fail(f"zaqar-server panicked:\n{srv.log_text()}")
    for srv in servers:
        if not srv.running():
            srv.drop_databases()


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    srv = ZaqarServer(tmp_path_factory.mktemp("zaqar-shared")).start()
    yield srv
    if srv.running():
        srv.stop()
    if srv.panicked():
        pytest.fail(f"shared zaqar-server panicked:\n{srv.log_text()}")
    srv.drop_databases()


@pytest.fixture
def server_factory(tmp_path, request):
    """``server_factory(options)`` starts a server; options like
    ``{"transport": {"client_id_uuid_safe": "off"}, "DEFAULT": {"enable_checksum": True}}``;
    ``env`` adds environment variables for the server process only.
    """
    servers = []
    counter = itertools.count()

    def factory(options=None, start=True, env=None):
        srv = ZaqarServer(tmp_path / f"srv{next(counter)}", options, env)
        servers.append(srv)
        return srv.start() if start else srv

    yield factory
    _report_and_check(servers, request)


@pytest.fixture(autouse=True)
def _shared_server_log_on_failure(request):
    yield
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed and "server" in request.fixturenames:
        srv = request.getfixturevalue("server")
        print(f"--- shared zaqar-server log (tail) ---\n{srv.log_text(tail=60)}")


@pytest.fixture
def project():
    return "proj-" + uuid.uuid4().hex[:12]


@pytest.fixture
def qname():
    return "q-" + uuid.uuid4().hex[:10]


@pytest.fixture
def make_api(server):
    def make(project_id=None, client_id=None, srv=None):
        project_id = project_id if project_id is not None else "proj-" + uuid.uuid4().hex[:12]
        return Api((srv or server).url, project_id, client_id)
    return make


@pytest.fixture
def api(server, project):
    return Api(server.url, project)
