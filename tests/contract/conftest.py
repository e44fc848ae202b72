"""The contract suite: the OpenAPI document the server serves, checked by a
validator, and the server's answers checked against it by schemathesis.

Servers are started as in tests/functional (its zaqar_testlib), so
ZAQAR_TEST_BACKEND=redis runs the same suite on Redis.
"""

import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "functional"))

from zaqar_testlib import ZaqarServer  # noqa: E402


@pytest.fixture
def server_factory(tmp_path):
    servers = []

    def factory(options=None):
        srv = ZaqarServer(tmp_path / f"srv{len(servers)}", options).start()
        servers.append(srv)
        return srv

    yield factory
    for srv in servers:
        if srv.running():
            srv.stop()
        if srv.panicked():
            pytest.fail(f"zaqar-server panicked:\n{srv.log_text()}")
