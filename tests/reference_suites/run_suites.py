"""Run the reference implementation's own test suites against zaqar-server.

    run_suites.py zaqarclient   python-zaqarclient 4.7.0's functional tests
                                (tests/functional/queues/v2 of its sdist), noauth,
                                admin_mode on, project my-project
    run_suites.py zaqarclient-keystone
                                the same with Keystone and the admin's credentials,
                                as the client's tox 'functional' job runs them
    run_suites.py tempest       zaqar-tempest-plugin 4.3.0 with a real Keystone
    run_suites.py osc           the `openstack messaging pool|flavor` commands
                                (python-openstackclient + the client's plugin) against a
                                pooled keystone-mode server, as an operator runs them

Run by run.sh with the Python of the reference venv (tempest, the plugin, the
client and their test dependencies); run.sh also unpacks the client's sdist and
passes its path in ZAQARCLIENT_SDIST.  Each suite gets a zaqar-server of its own
(tests/functional/zaqar_testlib.py: $ZAQAR_SERVER_BIN, a fresh SQLite database;
ZAQAR_TEST_BACKEND=redis for the Redis store), started and stopped here.

A test that fails against the reference Zaqar 23.0.1 too is listed with its reason in
expected-failures-<suite>.txt.  The run fails on any other failure, and on a
listed test that passes (the list must stay true).
"""

import argparse
import csv
import io
import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import textwrap
import urllib.error
import urllib.request

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "tests" / "functional"))

from zaqar_testlib import ZaqarServer  # noqa: E402

VENV_BIN = pathlib.Path(sys.executable).parent
# The [signed_url] key the suites' pre-signed URL tests need (devstack sets one).
SECRET_KEY = "reference-suites-secret"


def log(msg):
    print(f"reference-suites: {msg}", flush=True)


def normalise(test_id):
    """tempest ids carry '[id-<uuid>,smoke]' attributes: match without them."""
    return re.sub(r"\[.*\]$", "", test_id)


def load_expected(suite):
    """{test id: reason} from expected-failures-<suite>.txt ('id  # reason')."""
    expected = {}
    path = HERE / f"expected-failures-{suite}.txt"
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        test_id, _, reason = line.partition("#")
        expected[test_id.strip()] = reason.strip()
    return expected


def run_stestr(argv, cwd, env):
    """Run a stestr-driven command, then read its last run back as {id: status}."""
    log(f"running {' '.join(argv)} (in {cwd})")
    subprocess.run(argv, cwd=cwd, env=env, check=False)
    stream = subprocess.run([str(VENV_BIN / "stestr"), "last", "--subunit"], cwd=cwd,
                            env=env, check=True, capture_output=True).stdout
    # subunit2csv exits 1 when the stream holds a failure: that is not an error here.
    rows = subprocess.run([str(VENV_BIN / "subunit2csv")], input=stream, check=False,
                          capture_output=True).stdout.decode()
    results = {}
    for row in csv.DictReader(io.StringIO(rows)):
        results[normalise(row["test"])] = row["status"]
    return results


def judge(suite, results):
    """Print the outcome against the expected failures; True when it is as expected."""
    expected = load_expected(suite)
    counts = {}
    for status in results.values():
        counts[status] = counts.get(status, 0) + 1
    # subunit2csv says success, failure, error, skip, xfail or uxsuccess.  A
    # skip counts as a failure: these suites skip only when misconfigured.
    failed = {t for t, s in results.items() if s not in ("success", "xfail")}
    unexpected = sorted(failed - set(expected))
    stale = sorted(t for t in expected if results.get(t) == "success")
    missing = sorted(t for t in expected if t not in results)
    print()
    print(f"== {suite}: {len(results)} tests: "
          + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    for t in sorted(failed & set(expected)):
        print(f"  expected failure  {t}  ({expected[t]})")
    for t in unexpected:
        print(f"  FAILED            {t}")
    for t in stale:
        print(f"  PASSED, but listed as an expected failure: {t} (update the list)")
    for t in missing:
        print(f"  not run, but listed as an expected failure: {t}")
    ok = not unexpected and not stale and not missing and bool(results)
    print(f"== {suite}: {'OK' if ok else 'FAILED'} "
          f"({len(failed) - len(unexpected)} expected failures, {len(unexpected)} unexpected)")
    return ok


# -- python-zaqarclient -------------------------------------------------------

def run_zaqarclient(workdir, keystone=False):
    """noauth (project my-project), or with keystone=True as the client's own
    tox 'functional' job runs them: Keystone, the admin's credentials."""
    sdist = pathlib.Path(os.environ["ZAQARCLIENT_SDIST"])
    # Pooled, as the client's own gate runs the reference: its pool and
    # flavor tests register mongodb://127.0.0.1:27017, and the server checks
    # that a pool answers before it registers it. The other tests' queues go
    # to the virtual pool (the configured message store).
    options = {
        "DEFAULT": {"admin_mode": "true", "pooling": "true"},
        "pooling:catalog": {"enable_virtual_pool": "true"},
        "signed_url": {"secret_key": SECRET_KEY},
    }
    stop_pool_store = ensure_pool_mongodb(workdir)
    env = dict(os.environ, ZAQARCLIENT_TEST_FUNCTIONAL="1")
    env.pop("ZAQARCLIENT_AUTH_FUNCTIONAL", None)
    if keystone:
        ks = keystone_env()
        options = dict(options, **keystone_server_options(ks))
        options["DEFAULT"]["auth_strategy"] = "keystone"
        # The tests read their cloud with os-client-config: the admin, from the
        # environment only (no clouds.yaml of this machine's).
        env.update(ZAQARCLIENT_AUTH_FUNCTIONAL="1", OS_CLIENT_CONFIG_FILE="/dev/null",
                   OS_AUTH_URL=ks["KEYSTONE_AUTH_URL"], OS_USERNAME=ks["KEYSTONE_ADMIN_USER"],
                   OS_PASSWORD=ks["KEYSTONE_ADMIN_PASSWORD"],
                   OS_PROJECT_NAME=ks["KEYSTONE_ADMIN_PROJECT"],
                   OS_USER_DOMAIN_ID="default", OS_PROJECT_DOMAIN_ID="default")
    server = ZaqarServer(workdir / "server", options).start()
    try:
        env["ZAQAR_ENDPOINT"] = server.url
        # The stestr repository goes into the work dir, not into the sdist.
        tree = workdir / "zaqarclient"
        subprocess.run(["cp", "-a", str(sdist), str(tree)], check=True)
        # The claims tests last: they post into 'test_queue' and never
        # delete it, and the message one of them leaves claimed (claim ttl
        # 120 s, grace 120 s) shows again when the claim expires. All tests
        # share one project (the admin's, or my-project), so on a slow run
        # the queue tests' listings of 'test_queue' would count it.
        stestr = [str(VENV_BIN / "stestr"), "--test-path", "./tests/functional",
                  "--top-dir", "./", "run", "--concurrency", "1"]
        claims = r"\.test_claims\."
        results = run_stestr(stestr + ["--exclude-regex", claims], cwd=tree, env=env)
        results.update(run_stestr(stestr + [claims], cwd=tree, env=env))
    finally:
        server.stop()
        stop_pool_store()
    return judge("zaqarclient-keystone" if keystone else "zaqarclient", results)


POOL_MONGODB_PORT = 27017


def ensure_pool_mongodb(workdir):
    """A MongoDB-wire server on 127.0.0.1:27017, the pool URI the client's
    tests hard-code: the one already there (a real mongod), else SecantusDB
    started by tests/mongodb/start.sh for this run. Returns the function
    that stops what was started here."""
    env = dict(os.environ, ZAQAR_MONGODB_PORT=str(POOL_MONGODB_PORT),
               ZAQAR_MONGODB_DIR=str(workdir / "pool-mongodb"))
    started = subprocess.run(["bash", str(ROOT / "tests" / "mongodb" / "start.sh")], env=env,
                             stdout=subprocess.DEVNULL, check=False)
    if started.returncode != 0:
        raise SystemExit("no MongoDB-wire server on 127.0.0.1:27017 for the pool tests")

    def stop():
        # stop.sh stops only a server whose pid file this run wrote.
        subprocess.run(["bash", str(ROOT / "tests" / "mongodb" / "stop.sh")], env=env,
                       stdout=subprocess.DEVNULL, check=False)
    return stop


# -- tempest ------------------------------------------------------------------

def keystone_env():
    """The KEYSTONE_* facts tests/keystone/setup.sh wrote (environment first)."""
    if os.environ.get("KEYSTONE_URL"):
        return dict(os.environ)
    state = pathlib.Path(os.environ.get("KEYSTONE_STATE_DIR",
                                        ROOT / "tests" / "keystone" / ".state"))
    env_file = state / "env"
    if not env_file.exists():
        sys.exit(f"no Keystone: set KEYSTONE_URL or start one with "
                 f"tests/keystone/setup.sh (no {env_file})")
    values = {}
    for line in env_file.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            k, v = line.strip().split("=", 1)
            values[k] = v
    return values


class KeystoneAdmin:
    """Just enough of Keystone's v3 API to put our server in the catalogue."""

    def __init__(self, ks):
        self.url = ks["KEYSTONE_AUTH_URL"].rstrip("/")
        body = {"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": ks["KEYSTONE_ADMIN_USER"], "domain": {"id": "default"},
                "password": ks["KEYSTONE_ADMIN_PASSWORD"]}}},
            "scope": {"project": {"name": ks["KEYSTONE_ADMIN_PROJECT"],
                                  "domain": {"id": "default"}}}}}
        self.token = None
        _, headers, _ = self.call("POST", "/auth/tokens?nocatalog", body)
        self.token = headers["X-Subject-Token"]

    def call(self, method, path, body=None):
        req = urllib.request.Request(
            self.url + path, method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Content-Type": "application/json",
                     **({"X-Auth-Token": self.token} if self.token else {})})
        with urllib.request.urlopen(req, timeout=60) as resp:
            raw = resp.read()
            return resp.status, resp.headers, (json.loads(raw) if raw else None)

    def register_messaging(self, url, region):
        """Service type 'messaging' with public/internal/admin endpoints at url."""
        _, _, body = self.call("GET", "/services?type=messaging")
        if body["services"]:
            service_id = body["services"][0]["id"]
        else:
            _, _, body = self.call("POST", "/services", {"service": {
                "type": "messaging", "name": "zaqar", "enabled": True,
                "description": "zaqar-server under the reference suites"}})
            service_id = body["service"]["id"]
        self.unregister_endpoints(service_id)
        for interface in ("public", "internal", "admin"):
            self.call("POST", "/endpoints", {"endpoint": {
                "service_id": service_id, "interface": interface,
                "region_id": region, "url": url}})
        return service_id

    def unregister_endpoints(self, service_id):
        _, _, body = self.call("GET", f"/endpoints?service_id={service_id}")
        for endpoint in body["endpoints"]:
            self.call("DELETE", f"/endpoints/{endpoint['id']}")

    def unregister(self, service_id):
        self.unregister_endpoints(service_id)
        self.call("DELETE", f"/services/{service_id}")


def tempest_conf(ks, log_dir):
    return textwrap.dedent(f"""\
        [DEFAULT]
        log_dir = {log_dir}
        log_file = tempest.log

        [auth]
        admin_username = {ks["KEYSTONE_ADMIN_USER"]}
        admin_password = {ks["KEYSTONE_ADMIN_PASSWORD"]}
        admin_project_name = {ks["KEYSTONE_ADMIN_PROJECT"]}
        admin_domain_name = Default
        use_dynamic_credentials = true
        create_isolated_networks = false

        [identity]
        uri_v3 = {ks["KEYSTONE_AUTH_URL"]}
        auth_version = v3
        region = {ks.get("KEYSTONE_REGION", "RegionOne")}

        [identity-feature-enabled]
        api_v2 = false

        [service_available]
        zaqar = true
        nova = false
        neutron = false
        cinder = false
        glance = false
        swift = false

        [messaging]
        catalog_type = messaging
        max_queues_per_page = 20
        max_queue_metadata = 65536
        max_messages_per_page = 20
        max_message_size = 262144
        max_messages_per_claim = 20
        max_message_ttl = 1209600
        max_claim_ttl = 43200
        max_claim_grace = 43200
        """)


def keystone_server_options(ks):
    """zaqar.conf sections of a keystone-mode server, as devstack writes them."""
    service_user = {
        "auth_url": ks["KEYSTONE_URL"],
        "auth_type": "password",
        "username": ks["KEYSTONE_SERVICE_USER"],
        "password": ks["KEYSTONE_SERVICE_PASSWORD"],
        "user_domain_name": "Default",
    }
    return {
        "keystone_authtoken": dict(service_user,
                                   www_authenticate_uri=ks["KEYSTONE_URL"],
                                   project_name=ks["KEYSTONE_SERVICE_PROJECT"],
                                   project_domain_name="Default"),
        # trust+ subscriptions: trusts go to the service user.
        "trustee": service_user,
    }


def run_tempest(workdir, concurrency):
    ks = keystone_env()
    server = ZaqarServer(workdir / "server", {
        "DEFAULT": {"auth_strategy": "keystone"},
        **keystone_server_options(ks),
        # test_trust_subscription subscribes our own endpoint, on loopback:
        # refused by default (doc/source/differences.rst, SSRF).
        "notification": {"allowed_subscriber_networks": "127.0.0.0/8"},
        "signed_url": {"secret_key": SECRET_KEY},
    }).start()
    admin = service_id = None
    try:
        admin = KeystoneAdmin(ks)
        service_id = admin.register_messaging(server.url, ks.get("KEYSTONE_REGION", "RegionOne"))
        ws = workdir / "tempest"
        subprocess.run([str(VENV_BIN / "tempest"), "init", "--workspace-path",
                        str(workdir / "workspace.yaml"), str(ws)],
                       check=True, capture_output=True)
        (ws / "etc" / "tempest.conf").write_text(tempest_conf(ks, ws / "logs"))
        results = run_stestr(
            [str(VENV_BIN / "tempest"), "run", "--workspace-path", str(workdir / "workspace.yaml"),
             "--regex", r"^zaqar_tempest_plugin\.", "--concurrency", str(concurrency)],
            cwd=ws, env=dict(os.environ))
    finally:
        if admin is not None and service_id is not None:
            try:
                admin.unregister(service_id)
            except (urllib.error.URLError, OSError) as exc:
                log(f"could not remove the messaging service from Keystone: {exc}")
        server.stop()
    return judge("tempest", results)


# -- openstack messaging pool / flavor ------------------------------------------

def run_osc(workdir):
    """The operator's commands, each checked by what the next one shows."""
    ks = keystone_env()
    server = ZaqarServer(workdir / "server", {
        "DEFAULT": {"auth_strategy": "keystone", "admin_mode": "true", "pooling": "true"},
        **keystone_server_options(ks),
    }).start()
    admin = service_id = None
    env = dict(os.environ, OS_CLIENT_CONFIG_FILE="/dev/null",
               OS_AUTH_URL=ks["KEYSTONE_AUTH_URL"], OS_USERNAME=ks["KEYSTONE_ADMIN_USER"],
               OS_PASSWORD=ks["KEYSTONE_ADMIN_PASSWORD"], OS_PROJECT_NAME=ks["KEYSTONE_ADMIN_PROJECT"],
               OS_USER_DOMAIN_ID="default", OS_PROJECT_DOMAIN_ID="default",
               OS_IDENTITY_API_VERSION="3", OS_REGION_NAME=ks.get("KEYSTONE_REGION", "RegionOne"))
    checks = []

    def osc(*args, parse=True):
        argv = [str(VENV_BIN / "openstack"), "messaging", *args] + (["-f", "json"] if parse else [])
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed: {proc.stderr.strip()}")
        return json.loads(proc.stdout) if parse and proc.stdout.strip() else None

    def check(name, ok, detail=""):
        checks.append((name, ok))
        print(f"  {'ok  ' if ok else 'FAIL'}  {name}  {detail if not ok else ''}", flush=True)

    try:
        admin = KeystoneAdmin(ks)
        service_id = admin.register_messaging(server.url, ks.get("KEYSTONE_REGION", "RegionOne"))
        uri = f"sqlite://{workdir / 'pool-a.sqlite'}"
        created = osc("pool", "create", "pool-a", uri, "10")
        check("pool create", created.get("Name") == "pool-a" and created.get("Weight") == 10, created)
        listed = osc("pool", "list")
        check("pool list", [p["Name"] for p in listed] == ["pool-a"], listed)
        shown = osc("pool", "show", "pool-a")
        check("pool show", shown.get("URI") == uri and shown.get("Weight") == 10, shown)
        osc("pool", "update", "pool-a", "--pool_weight", "20", parse=False)
        check("pool update", osc("pool", "show", "pool-a").get("Weight") == 20)
        made = osc("flavor", "create", "gold", "--pool_list", "pool-a")
        check("flavor create", made.get("Name") == "gold", made)
        shown = osc("flavor", "show", "gold")
        check("flavor show", shown.get("Name") == "gold" and "pool-a" in str(shown.get("Pool list")), shown)
        check("flavor list", [f["Name"] for f in osc("flavor", "list")] == ["gold"])
        osc("flavor", "update", "gold", "--pool_list", "pool-a", parse=False)
        check("flavor update", "pool-a" in str(osc("flavor", "show", "gold").get("Pool list")))
        osc("flavor", "delete", "gold", parse=False)
        check("flavor delete", osc("flavor", "list") == [])
        osc("pool", "delete", "pool-a", parse=False)
        check("pool delete", osc("pool", "list") == [])
    except AssertionError as exc:
        check("commands ran", False, str(exc))
    finally:
        if admin is not None and service_id is not None:
            try:
                admin.unregister(service_id)
            except (urllib.error.URLError, OSError) as exc:
                log(f"could not remove the messaging service from Keystone: {exc}")
        server.stop()
    ok = bool(checks) and all(ok for _, ok in checks)
    print(f"== osc: {len(checks)} checks: {'OK' if ok else 'FAILED'}")
    return ok


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("suite", choices=("zaqarclient", "zaqarclient-keystone", "tempest", "osc"))
    parser.add_argument("--concurrency", type=int, default=2,
                        help="tempest workers (Keystone has one request thread)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    workdir = pathlib.Path(tempfile.mkdtemp(prefix=f"zaqar-ref-{args.suite}-"))
    ok = False
    try:
        if args.suite.startswith("zaqarclient"):
            ok = run_zaqarclient(workdir, keystone=args.suite == "zaqarclient-keystone")
        elif args.suite == "osc":
            ok = run_osc(workdir)
        else:
            ok = run_tempest(workdir, args.concurrency)
    finally:
        if args.keep or not ok:
            log(f"work directory (server logs, stestr results) kept: {workdir}")
        else:
            subprocess.run(["rm", "-rf", str(workdir)], check=False)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
