"""Real notification receivers for the functional tests.

``Receiver`` is a small HTTP server on loopback (its own thread) that records
every request it gets (method, path, headers, body) and answers with a status
taken from a script: ``Receiver(statuses=[503, 503])`` answers 503 twice, then
200.  ``BlackHole`` accepts connections and never answers (a subscriber
that hangs until the webhook timeout).  ``mail_recorder(tmp_path)`` writes an
executable ``smtp_command`` that appends each message it reads on stdin to a
file.
"""

import http.server
import json
import os
import socket
import stat
import threading
import time


class Receiver:
    def __init__(self, statuses=None, port=0):
        self.requests = []
        self.statuses = list(statuses or [])
        self._lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server naming)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with outer._lock:
                    status = outer.statuses.pop(0) if outer.statuses else 200
                    outer.requests.append({
                        "path": self.path,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "body": body.decode("utf-8", "replace"),
                        "status": status,
                    })
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def delivered(self):
        """Requests answered 2xx, in arrival order."""
        with self._lock:
            return [r for r in self.requests if 200 <= r["status"] < 300]

    def json_bodies(self):
        return [json.loads(r["body"]) for r in self.delivered()]

    def wait_for(self, count, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.delivered()) >= count:
                return self.delivered()
            time.sleep(0.05)
        raise AssertionError(
            f"expected {count} deliveries within {timeout}s, got {len(self.delivered())}: {self.requests}")

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class BlackHole:
    """A subscriber that hangs: accepts TCP connections, reads the request,
    never answers.  Counts the connections it accepted and those the client
    gave up on (closed), so a test can tell requests are still hanging."""

    def __init__(self):
        self.accepted = 0
        self.closed = 0
        self._lock = threading.Lock()
        self._conns = []
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(128)
        self.port = self._sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def _accept(self):
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with self._lock:
                self.accepted += 1
                self._conns.append(conn)
            threading.Thread(target=self._drain, args=(conn,), daemon=True).start()

    def _drain(self, conn):
        try:
            while conn.recv(65536):
                pass
        except OSError:
            pass
        with self._lock:
            self.closed += 1

    def hanging(self):
        with self._lock:
            return self.accepted - self.closed

    def wait_for_hanging(self, count, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.hanging() >= count:
                return
            time.sleep(0.05)
        raise AssertionError(f"expected {count} hanging requests within {timeout}s, got {self.hanging()}")

    def close(self):
        self._sock.close()
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()


def reserve_port():
    """A loopback port nobody listens on (for a receiver started later)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mail_recorder(directory):
    """Writes an smtp_command script; returns (command, path of the mailbox)."""
    script = directory / "record-mail.sh"
    mailbox = directory / "mailbox"
    script.write_text(
        "#!/bin/sh\n"
        f"{{ cat; printf '\\n--END--\\n'; }} >> '{mailbox}'\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return str(script), mailbox


def read_mails(mailbox, count, timeout=30):
    deadline = time.monotonic() + timeout
    mails = []
    while time.monotonic() < deadline:
        if os.path.exists(mailbox):
            mails = [m.strip("\n") for m in mailbox.read_text().split("--END--") if m.strip()]
            if len(mails) >= count:
                return mails
        time.sleep(0.05)
    raise AssertionError(f"expected {count} mails within {timeout}s, got {mails}")
