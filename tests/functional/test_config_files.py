"""The operator's view of the command line: which configuration files are read
(oslo.config's search paths, repeatable --config-file, --config-dir), the
options accepted but ignored, --version, the generated samples and
``zaqar-status upgrade check``.

Every server here gets a HOME of its own, so no file of the machine's user is
found; /etc/zaqar is assumed absent on a test machine.
"""

import configparser
import json
import os
import pathlib
import re
import sqlite3
import subprocess
import time

import pytest
import requests

from zaqar_testlib import free_port, server_binary


def status_binary():
    return server_binary().with_name("zaqar-status")


def run(args, home, binary=None, timeout=60):
    env = dict(os.environ, HOME=str(home), RUST_LOG="info")
    return subprocess.run([str(binary or server_binary()), *args], capture_output=True,
                          text=True, env=env, timeout=timeout)


class Proc:
    """A zaqar-server started with the given arguments and HOME."""

    def __init__(self, args, home, port, cwd):
        self.port = port
        self.log = pathlib.Path(cwd) / f"server-{port}.log"
        env = dict(os.environ, HOME=str(home), RUST_LOG="info")
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen([str(server_binary()), *args], stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=env, cwd=cwd)

    def wait_up(self, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.text()
            try:
                return requests.get(f"http://127.0.0.1:{self.port}/v2/queues",
                                    headers={"Client-ID": "8a1b8d2e-6a5f-4f43-9a3e-6bb2b9f3c0de",
                                             "X-Project-ID": "p"}, timeout=1)
            except requests.RequestException:
                time.sleep(0.05)
        raise AssertionError(f"no answer on {self.port}\n{self.text()}")

    def text(self):
        return self.log.read_text(errors="replace")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def procs():
    started = []
    yield started
    for p in started:
        p.stop()


def listener_conf(path, port, db):
    path.write_text(
        "[drivers]\ntransport = wsgi\n"
        f"[drivers:transport:wsgi]\nbind = 127.0.0.1\nport = {port}\n"
        f"[drivers:message_store:sqlite]\nuri = {db}\n")


def test_without_config_file_the_oslo_search_path_is_used(tmp_path, procs):
    home = tmp_path / "home"
    (home / ".zaqar" / "zaqar.conf.d").mkdir(parents=True)
    port = free_port()
    listener_conf(home / ".zaqar" / "zaqar.conf", port, tmp_path / "z.db")
    # ~/zaqar.conf comes after ~/.zaqar/zaqar.conf in the search: not read.
    (home / "zaqar.conf").write_text("[transport]\nmax_messages_per_page = 1\n")
    (home / ".zaqar" / "zaqar.conf.d" / "10-limits.conf").write_text(
        "[transport]\nmax_queues_per_page = 3\n")
    (home / ".zaqar" / "zaqar.conf.d" / "20-limits.conf").write_text(
        "[transport]\nmax_queues_per_page = 4\n")
    p = Proc([], home, port, tmp_path)
    procs.append(p)
    p.wait_up()
    log = p.text()
    assert f"{home}/.zaqar/zaqar.conf" in log
    assert f"{home}/.zaqar/zaqar.conf.d/20-limits.conf" in log
    assert f"{home}/zaqar.conf" not in log.replace(f"{home}/zaqar.conf.d", "")
    headers = {"Client-ID": "8a1b8d2e-6a5f-4f43-9a3e-6bb2b9f3c0de", "X-Project-ID": "p"}
    # the conf.d files were read in name order: 4 is the limit, 5 is refused
    url = f"http://127.0.0.1:{port}/v2/queues"
    assert requests.get(url, params={"limit": 4}, headers=headers).status_code == 200
    assert requests.get(url, params={"limit": 5}, headers=headers).status_code == 400


def test_repeated_config_files_override_in_order_and_ignored_options_are_listed(
        tmp_path, procs):
    port = free_port()
    base = tmp_path / "base.conf"
    listener_conf(base, 1, tmp_path / "z.db")
    over = tmp_path / "over.conf"
    over.write_text(f"[drivers:transport:wsgi]\nport = {port}\n"
                    "[cache]\nenabled = true\n[DEFAULT]\nsharding = false\n")
    p = Proc(["--config-file", str(base), "--config-file", str(over)], tmp_path, port, tmp_path)
    procs.append(p)
    p.wait_up()
    log = p.text()
    assert log.index(str(base)) < log.index(str(over))
    assert "accepted but ignored: [cache] enabled" in log
    assert "accepted but ignored: [DEFAULT] sharding" in log


def test_a_named_file_that_is_missing_stops_the_server(tmp_path):
    r = run(["--config-file", str(tmp_path / "nope.conf")], tmp_path)
    assert r.returncode == 2
    assert "nope.conf" in r.stderr


def test_version():
    r = run(["--version"], "/nonexistent")
    assert r.returncode == 0
    assert r.stdout.startswith("zaqar-server ")
    r = run(["--version"], "/nonexistent", binary=status_binary())
    assert r.returncode == 0 and r.stdout.startswith("zaqar-status ")


def test_the_sample_config_runs_as_it_is(tmp_path, procs):
    r = run(["--sample-config"], tmp_path)
    assert r.returncode == 0, r.stderr
    sample = r.stdout
    assert "#max_messages_post_size = 262144" in sample
    # uncommented, every option at its default is a valid configuration
    declared, section, lines = set(), None, []
    for ln in sample.splitlines():
        if ln.startswith("["):
            section = ln.strip("[]")
        m = re.match(r"#([\w-]+) = ", ln)
        if m:
            declared.add((section, m.group(1)))
            ln = ln[1:]
        lines.append(ln)
    uncommented = tmp_path / "sample.conf"
    uncommented.write_text("\n".join(lines) + "\n")
    cp = configparser.ConfigParser(interpolation=None)
    cp.read(uncommented)
    assert cp.get("transport", "max_messages_per_page") == "20"
    # the JSON form carries the same declarations
    options = json.loads(run(["--sample-config=json"], tmp_path).stdout)
    assert {(o["section"], o["name"]) for o in options} == declared
    assert all(o["help"] for o in options)
    port = free_port()
    local = tmp_path / "local.conf"
    listener_conf(local, port, tmp_path / "z.db")
    p = Proc(["--config-file", str(uncommented), "--config-file", str(local)],
             tmp_path, port, tmp_path)
    procs.append(p)
    assert p.wait_up().status_code in (200, 204)
    assert "unknown configuration option" not in p.text()


def test_the_sample_policy_is_a_valid_policy_file(tmp_path, procs):
    r = run(["--sample-policy"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert '#"pools:create": "role:admin"' in r.stdout
    policy = tmp_path / "policy.yaml"
    policy.write_text("\n".join(ln[1:] if ln.startswith('#"') else ln
                                for ln in r.stdout.splitlines()) + "\n")
    port = free_port()
    conf = tmp_path / "zaqar.conf"
    listener_conf(conf, port, tmp_path / "z.db")
    p = Proc(["--config-file", str(conf)], tmp_path, port, tmp_path)
    procs.append(p)
    p.wait_up()
    assert "policy rules loaded" in p.text()


def test_upgrade_check(tmp_path):
    conf = tmp_path / "zaqar.conf"
    db = tmp_path / "z.db"
    listener_conf(conf, 1, db)
    r = run(["--config-file", str(conf), "upgrade", "check"], tmp_path, binary=status_binary())
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Check: Message store schema" in r.stdout and "does not exist yet" in r.stdout
    # an older schema: a warning; a newer one: a failure
    with sqlite3.connect(db) as c:
        c.execute("PRAGMA user_version = 1")
    r = run(["--config-file", str(conf), "upgrade", "check"], tmp_path, binary=status_binary())
    assert r.returncode == 1, r.stdout
    with sqlite3.connect(db) as c:
        c.execute("PRAGMA user_version = 999")
    r = run(["--config-file", str(conf), "upgrade", "check"], tmp_path, binary=status_binary())
    assert r.returncode == 2, r.stdout
    assert "newer than this release supports" in r.stdout
    # a configuration that cannot be used fails the check
    bad = tmp_path / "bad.conf"
    bad.write_text("[transport]\nmax_claim_ttl = soon\n")
    r = run(["--config-file", str(bad), "upgrade", "check"], tmp_path, binary=status_binary())
    assert r.returncode == 2 and "max_claim_ttl" in r.stdout
    # nothing found: the defaults (HOME has no zaqar.conf)
    empty = tmp_path / "empty-home"
    empty.mkdir()
    r = run(["upgrade", "check"], empty, binary=status_binary())
    assert "no configuration file: the defaults" in r.stdout, r.stdout
