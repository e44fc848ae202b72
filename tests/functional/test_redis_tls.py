"""The Redis store over TLS (``rediss://``), against a real redis-server
listening with TLS only, its certificate signed by a CA of the test's own.

Runs only with the Redis backend (``ZAQAR_TEST_BACKEND=redis``) and needs the
``openssl`` command (to make the certificates).

- The server trusts the CA named by ``SSL_CERT_FILE`` (read with the system
  roots' loader, as an operator would add a private CA): messages go in and
  come back out.
- Without it the certificate is refused: requests answer 503 with a Zaqar
  error body, never a plaintext fallback or a hang.
"""

import os
import shutil
import socket
import subprocess
import time

import pytest

from zaqar_testlib import Api

pytestmark = [
    pytest.mark.skipif(os.environ.get("ZAQAR_TEST_BACKEND") != "redis",
                       reason="needs ZAQAR_TEST_BACKEND=redis (and redis-server)"),
    pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command"),
]


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def tls_redis(tmp_path):
    """A redis-server speaking TLS only; yields (url, ca file)."""
    d = tmp_path / "tls"
    d.mkdir()
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=zaqar test CA", "-keyout", "ca.key", "-out", "ca.pem", cwd=d)
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
            "-keyout", "redis.key", "-out", "redis.csr", cwd=d)
    (d / "san.ext").write_text("subjectAltName = IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "redis.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", "redis.pem", cwd=d)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        ["redis-server", "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
         "--tls-cert-file", "redis.pem", "--tls-key-file", "redis.key",
         "--tls-ca-cert-file", "ca.pem", "--tls-auth-clients", "no",
         "--save", "", "--appendonly", "no", "--dir", str(d)],
        cwd=d, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert proc.poll() is None, "redis-server (TLS) exited"
            assert time.monotonic() < deadline, "redis-server (TLS) did not listen"
            time.sleep(0.05)
    yield f"rediss://127.0.0.1:{port}", d / "ca.pem"
    proc.kill()
    proc.wait()


def options(url):
    return {"drivers:message_store:redis": {"uri": url}}


def test_messages_travel_over_tls(server_factory, tls_redis, project, qname):
    url, ca = tls_redis
    srv = server_factory(options(url), env={"SSL_CERT_FILE": str(ca)})
    api = Api(srv.url, project)
    assert api.put(f"/v2/queues/{qname}").status_code == 201
    [mid] = api.post_messages(qname, [{"body": {"over": "tls"}, "ttl": 300}])
    got = api.get(f"/v2/queues/{qname}/messages/{mid}")
    assert got.status_code == 200, got.text
    assert got.json()["body"] == {"over": "tls"}


def test_an_untrusted_certificate_is_refused(server_factory, tls_redis, project, qname):
    url, _ = tls_redis
    srv = server_factory(options(url), env={"SSL_CERT_FILE": os.devnull})
    api = Api(srv.url, project)
    resp = api.request("POST", f"/v2/queues/{qname}/messages", allow_5xx=True,
                       json={"messages": [{"body": 1, "ttl": 300}]})
    assert resp.status_code == 503, resp.text
    assert "title" in resp.json()
