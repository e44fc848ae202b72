"""E-mail with ``[notification] smtp_mode = self_local``: the server speaks
SMTP itself (behaviour notes §7, Mailto row).

The receiver is a real SMTP server on loopback (aiosmtpd) that records each
message: envelope, headers and body.  Two set-ups: plaintext without login
(the server offers no STARTTLS), and STARTTLS with a self-signed certificate
(trusted through ``smtp_cafile``) and a required login.  Implicit TLS (port
465, the reference's ``SMTP_SSL``) needs port 465 and is not run here; the
port decides the mode, see zaqar/src/notification/mailto.rs.
"""

import email
import json
import ssl
import subprocess
import threading
import time

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from receivers import reserve_port
from zaqar_testlib import Api

USER, PASSWORD = "zaqar-mailer", "s3cret-pw"


class Recorder:
    """aiosmtpd handler: keeps every accepted message."""

    def __init__(self):
        self.messages = []
        self.logins = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd naming)
        with self.lock:
            self.messages.append({
                "mail_from": envelope.mail_from,
                "rcpt_tos": list(envelope.rcpt_tos),
                "content": envelope.original_content or envelope.content,
                "tls": session.ssl is not None,
                "login": session.login_data,
            })
        return "250 OK"

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        ok = auth_data.login == USER.encode() and auth_data.password == PASSWORD.encode()
        with self.lock:
            self.logins.append((mechanism, auth_data.login.decode(), ok))
        return AuthResult(success=ok)

    def wait_for(self, count, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self.lock:
                if len(self.messages) >= count:
                    return list(self.messages)
            time.sleep(0.1)
        with self.lock:
            return list(self.messages)


def self_signed(tmp_path):
    cert, key = tmp_path / "smtp-cert.pem", tmp_path / "smtp-key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-addext", "basicConstraints=critical,CA:FALSE"],
        check=True, capture_output=True)
    return cert, key


@pytest.fixture
def smtp_server():
    controllers = []

    def start(**smtp_kwargs):
        recorder = Recorder()
        port = reserve_port()
        if "authenticator" in smtp_kwargs:
            smtp_kwargs["authenticator"] = recorder.authenticate
        controller = Controller(recorder, hostname="127.0.0.1", port=port, **smtp_kwargs)
        controller.start()
        controllers.append(controller)
        return recorder, port

    yield start
    for c in controllers:
        c.stop()


def send_notification(srv, project, qname, subscriber, message):
    api = Api(srv.url, project)
    resp = api.post(f"/v2/queues/{qname}/subscriptions",
                    json={"subscriber": subscriber, "options": {"from": "zaqar@example.com"}})
    assert resp.status_code == 201, resp.text
    api.post_messages(qname, [message])


def check_mail(got, qname, message, subject):
    assert got["rcpt_tos"] == ["ops@example.com"]
    assert got["mail_from"] == "zaqar@example.com"
    mail = email.message_from_bytes(got["content"])
    assert mail["To"] == "ops@example.com"
    assert mail["From"] == "zaqar@example.com"
    assert mail["Subject"] == subject
    assert mail.get_content_type() == "text/plain"
    assert json.loads(mail.get_payload()) == dict(message, Message_Type="Notification", queue_name=qname)


def test_plain_smtp_without_login(server_factory, smtp_server, project, qname):
    recorder, port = smtp_server()
    srv = server_factory({"notification": {
        "smtp_mode": "self_local", "smtp_host": "127.0.0.1", "smtp_port": str(port)}})
    message = {"body": {"alert": "disk"}, "ttl": 300}
    send_notification(srv, project, qname, "mailto:ops@example.com?subject=Queue%20news", message)
    [got] = recorder.wait_for(1)
    assert not got["tls"] and got["login"] is None
    check_mail(got, qname, message, "Queue news")


def test_starttls_with_login(server_factory, smtp_server, project, qname, tmp_path):
    cert, key = self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert), str(key))
    recorder, port = smtp_server(tls_context=context, require_starttls=True,
                                 authenticator=True, auth_require_tls=True)
    srv = server_factory({"notification": {
        "smtp_mode": "self_local", "smtp_host": "127.0.0.1", "smtp_port": str(port),
        "smtp_user_name": USER, "smtp_user_password": PASSWORD, "smtp_cafile": str(cert)}})
    message = {"body": "over TLS", "ttl": 120}
    send_notification(srv, project, qname, "mailto:ops@example.com", message)
    [got] = recorder.wait_for(1)
    assert got["tls"], "the message crossed a plaintext connection"
    assert [(login, ok) for _, login, ok in recorder.logins] == [(USER, True)]
    # No subject in the URI: the reference falls back to options.subject (unset here).
    check_mail(got, qname, message, "")
    assert PASSWORD not in srv.log_text(tail=100000)


def test_login_refused_and_untrusted_certificate_deliver_nothing(server_factory, smtp_server, project,
                                                                  qname, tmp_path):
    cert, key = self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert), str(key))
    recorder, port = smtp_server(tls_context=context, require_starttls=True,
                                 authenticator=True, auth_require_tls=True)
    wrong_password = server_factory({"notification": {
        "smtp_mode": "self_local", "smtp_host": "127.0.0.1", "smtp_port": str(port),
        "smtp_user_name": USER, "smtp_user_password": "wrong", "smtp_cafile": str(cert)}})
    untrusted = server_factory({"notification": {
        "smtp_mode": "self_local", "smtp_host": "127.0.0.1", "smtp_port": str(port),
        "smtp_user_name": USER, "smtp_user_password": PASSWORD}})
    for srv in (wrong_password, untrusted):
        send_notification(srv, project, qname, "mailto:ops@example.com", {"body": 1, "ttl": 60})
    time.sleep(3)
    assert recorder.messages == []
    # The wrong password was tried over TLS and refused; the server with an
    # untrusted certificate never got as far as logging in.
    assert [(login, ok) for _, login, ok in recorder.logins][:1] == [(USER, False)]
    assert all(login == USER and not ok for _, login, ok in recorder.logins)
