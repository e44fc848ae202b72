"""Checks of tests/devstack/run.sh: what the devstack plugin's phases left.

    check.py keystone-forget          remove the messaging services (and their
                                      endpoints) from the test's Keystone
    check.py keystone-registered      the services, endpoints and service user
                                      that `stack post-config` must create
    check.py conf                     the zaqar.conf `stack post-config` wrote
    check.py zaqarclient              a few of python-zaqarclient's functional
                                      tests, as its devstack job runs them
                                      (cloud devstack-admin of devstack's
                                      clouds.yaml)
    check.py tempest                  a small subset of zaqar-tempest-plugin,
                                      with the tempest.conf that `stack
                                      test-config` completed

Run by run.sh with the Python of the reference suites' venv (.venv-tempest:
keystoneauth, the client's test dependencies, tempest and its plugin), with
the variables run.sh exports (ZAQAR_DEVSTACK_*, the KEYSTONE_* of
tests/keystone/setup.sh). Exits non-zero, saying why, when a check fails.
"""

import argparse
import configparser
import os
import pathlib
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "tests" / "reference_suites"))

import run_suites  # noqa: E402

VENV_BIN = pathlib.Path(sys.executable).parent
SERVICE_TYPES = ("messaging", "messaging-websocket")


def env(name):
    value = os.environ.get(name)
    if not value:
        sys.exit(f"check.py: {name} is not set (run by tests/devstack/run.sh)")
    return value


class Failures:
    def __init__(self, what):
        self.what = what
        self.failed = []

    def check(self, name, ok, detail=""):
        print(f"  {'ok  ' if ok else 'FAIL'}  {name}" + ("" if ok else f": {detail}"), flush=True)
        if not ok:
            self.failed.append(name)

    def done(self):
        if self.failed:
            sys.exit(f"{self.what}: {len(self.failed)} check(s) failed: {', '.join(self.failed)}")
        print(f"{self.what}: OK")


def keystone_forget(ks):
    admin = run_suites.KeystoneAdmin(ks)
    for service_type in SERVICE_TYPES:
        _, _, body = admin.call("GET", f"/services?type={service_type}")
        for service in body["services"]:
            print(f"removing {service_type} service {service['name']} ({service['id']})")
            admin.unregister(service["id"])


def keystone_registered(ks):
    admin = run_suites.KeystoneAdmin(ks)
    f = Failures("keystone")
    region = ks.get("KEYSTONE_REGION", "RegionOne")
    expected = {
        "messaging": ("zaqar", env("ZAQAR_DEVSTACK_URL")),
        "messaging-websocket": ("zaqar-websocket", env("ZAQAR_DEVSTACK_WS_URL")),
    }
    for service_type, (name, url) in expected.items():
        _, _, body = admin.call("GET", f"/services?type={service_type}")
        services = body["services"]
        f.check(f"one {service_type} service", len(services) == 1, services)
        if len(services) != 1:
            continue
        f.check(f"{service_type} service is named {name}", services[0]["name"] == name,
                services[0]["name"])
        _, _, body = admin.call("GET", f"/endpoints?service_id={services[0]['id']}")
        endpoints = {(e["interface"], e["region_id"], e["url"]) for e in body["endpoints"]}
        f.check(f"{service_type} public endpoint {url}",
                endpoints == {("public", region, url)}, sorted(endpoints))
    # create_service_user: the zaqar user has the service role on 'service'.
    _, _, body = admin.call("GET", "/users?name=zaqar")
    users = body["users"]
    f.check("user zaqar", len(users) == 1, users)
    _, _, body = admin.call("GET", "/roles?name=service")
    roles = body["roles"]
    if users and roles:
        _, _, body = admin.call(
            "GET", f"/role_assignments?user.id={users[0]['id']}&role.id={roles[0]['id']}"
                   f"&scope.project.id={ks['KEYSTONE_SERVICE_PROJECT_ID']}")
        f.check("zaqar has the service role on project service",
                len(body["role_assignments"]) == 1, body["role_assignments"])
    f.done()


def conf(ks):
    path = pathlib.Path(env("ZAQAR_DEVSTACK_CONF"))
    f = Failures(str(path))
    if not path.is_file():
        sys.exit(f"no {path}")
    c = configparser.ConfigParser(interpolation=None)
    c.read(path)

    def get(section, option):
        return c.get(section, option, fallback=None)

    f.check("auth_strategy keystone", get("DEFAULT", "auth_strategy") == "keystone",
            get("DEFAULT", "auth_strategy"))
    f.check("admin_mode", get("DEFAULT", "admin_mode") == "True", get("DEFAULT", "admin_mode"))
    f.check("transports", get("drivers", "transport") == "wsgi,websocket",
            get("drivers", "transport"))
    f.check("wsgi port", get("drivers:transport:wsgi", "port") == env("ZAQAR_DEVSTACK_PORT"),
            get("drivers:transport:wsgi", "port"))
    f.check("websocket port",
            get("drivers:transport:websocket", "port") == env("ZAQAR_DEVSTACK_WS_PORT"),
            get("drivers:transport:websocket", "port"))
    redis_uri = env("ZAQAR_DEVSTACK_REDIS_URI")
    for store in ("message_store", "management_store"):
        f.check(f"{store} redis", get("drivers", store) == "redis", get("drivers", store))
        f.check(f"{store} uri", get(f"drivers:{store}:redis", "uri") == redis_uri,
                get(f"drivers:{store}:redis", "uri"))
    auth = "keystone_authtoken"
    f.check("authtoken auth_url", get(auth, "auth_url") == ks["KEYSTONE_URL"],
            get(auth, "auth_url"))
    f.check("authtoken www_authenticate_uri",
            get(auth, "www_authenticate_uri") == ks["KEYSTONE_URL"],
            get(auth, "www_authenticate_uri"))
    f.check("authtoken user zaqar", get(auth, "username") == "zaqar", get(auth, "username"))
    f.check("authtoken password", get(auth, "password") == ks["KEYSTONE_SERVICE_PASSWORD"])
    f.check("no cafile (devstack's bundle does not exist)", get(auth, "cafile") is None,
            get(auth, "cafile"))
    f.check("trustee", get("trustee", "username") == "zaqar"
            and get("trustee", "auth_url") == ks["KEYSTONE_URL"], dict(c["trustee"])
            if c.has_section("trustee") else None)
    f.check("signed_url secret_key", bool(get("signed_url", "secret_key")))
    f.done()


def zaqarclient(ks):
    """As the client's devstack job: its functional tests, authenticated as
    the cloud devstack-admin of devstack's clouds.yaml."""
    sdist = pathlib.Path(env("ZAQARCLIENT_SDIST"))
    work = pathlib.Path(env("ZAQAR_DEVSTACK_WORK")) / "zaqarclient"
    subprocess.run(["rm", "-rf", str(work)], check=True)
    subprocess.run(["cp", "-a", str(sdist), str(work)], check=True)
    run_env = dict(os.environ, ZAQARCLIENT_AUTH_FUNCTIONAL="1",
                   ZAQAR_ENDPOINT=env("ZAQAR_DEVSTACK_URL"),
                   OS_CLIENT_CONFIG_FILE=env("ZAQAR_DEVSTACK_CLOUDS_YAML"))
    for name in list(run_env):
        if name.startswith("OS_") and name != "OS_CLIENT_CONFIG_FILE":
            run_env.pop(name)
    results = run_suites.run_stestr(
        [str(VENV_BIN / "stestr"), "--test-path", "./tests/functional", "--top-dir", "./",
         "run", "--concurrency", "1", env("ZAQAR_DEVSTACK_ZAQARCLIENT_REGEX")],
        cwd=work, env=run_env)
    return judge("zaqarclient", results)


def tempest(ks):
    """zaqar-tempest-plugin against the catalogue devstack's phases filled."""
    work = pathlib.Path(env("ZAQAR_DEVSTACK_WORK"))
    ws = pathlib.Path(env("ZAQAR_DEVSTACK_TEMPEST_DIR"))
    conf_path = ws / "etc" / "tempest.conf"
    c = configparser.ConfigParser(interpolation=None)
    c.read(conf_path)
    zaqar = c.get("service_available", "zaqar", fallback=None)
    if zaqar != "True":
        sys.exit(f"{conf_path}: [service_available] zaqar is {zaqar!r}, "
                 "not True (stack test-config sets it)")
    results = run_suites.run_stestr(
        [str(VENV_BIN / "tempest"), "run", "--workspace-path", str(work / "workspace.yaml"),
         "--regex", env("ZAQAR_DEVSTACK_TEMPEST_REGEX"), "--concurrency", "1"],
        cwd=ws, env=dict(os.environ))
    return judge("tempest", results)


def tempest_init(ks):
    """A tempest workspace whose tempest.conf is everything but the line
    `stack test-config` must add ([service_available] zaqar)."""
    work = pathlib.Path(env("ZAQAR_DEVSTACK_WORK"))
    ws = pathlib.Path(env("ZAQAR_DEVSTACK_TEMPEST_DIR"))
    subprocess.run([str(VENV_BIN / "tempest"), "init", "--workspace-path",
                    str(work / "workspace.yaml"), str(ws)], check=True, capture_output=True)
    c = configparser.ConfigParser(interpolation=None)
    c.read_string(run_suites.tempest_conf(ks, ws / "logs"))
    c.remove_option("service_available", "zaqar")
    with open(ws / "etc" / "tempest.conf", "w") as out:
        c.write(out)


def judge(suite, results):
    failed = sorted(t for t, s in results.items() if s not in ("success", "xfail"))
    print(f"== {suite}: {len(results)} tests, {len(failed)} not passed")
    for t in failed:
        print(f"  FAILED  {t} ({results[t]})")
    return bool(results) and not failed


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("keystone-forget", "keystone-registered", "conf",
                                         "zaqarclient", "tempest-init", "tempest"))
    args = parser.parse_args()
    ks = run_suites.keystone_env()
    result = {
        "keystone-forget": keystone_forget,
        "keystone-registered": keystone_registered,
        "conf": conf,
        "zaqarclient": zaqarclient,
        "tempest-init": tempest_init,
        "tempest": tempest,
    }[args.what](ks)
    if result is False:
        sys.exit(1)


if __name__ == "__main__":
    main()
