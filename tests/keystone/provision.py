"""Create the test tenants in a running Keystone and write the env file.

Run by setup.sh with the venv's Python; stdlib only. Every step is a
get-or-create, so running it again against the same Keystone is harmless.
"""

import json
import os
import sys
import urllib.error
import urllib.request

URL = os.environ["KEYSTONE_URL"].rstrip("/")
ADMIN_PASSWORD = os.environ["KEYSTONE_ADMIN_PASSWORD"]
SERVICE_PASSWORD = os.environ["KEYSTONE_SERVICE_PASSWORD"]
ALICE_PASSWORD = os.environ["KEYSTONE_ALICE_PASSWORD"]
BOB_PASSWORD = os.environ["KEYSTONE_BOB_PASSWORD"]
ENV_FILE = os.environ["KEYSTONE_ENV_FILE"]


class Admin:
    """The admin's token, issued again when Keystone refuses it: the
    short-expiry Keystone's tokens live 20 s, and provisioning (password
    hashing included) can take longer than that on a loaded machine."""

    def __init__(self):
        self.token = admin_token()

    def renew(self):
        self.token = admin_token()


def call(method, path, token=None, body=None, expect=(200, 201, 204)):
    """One request; `token` is an `Admin` (renewed and tried once more on
    a 401) or None."""
    status, headers, raw = send(method, path, token and token.token, body)
    if status == 401 and token is not None:
        token.renew()
        status, headers, raw = send(method, path, token.token, body)
    if status not in expect:
        sys.exit(f"provision: {method} {path} -> {status}: {raw[:500]!r}")
    return status, headers, (json.loads(raw) if raw else None)


def send(method, path, token, body):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(URL + path, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("X-Auth-Token", token)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            raw = resp.read()
            headers = resp.headers
            status = resp.status
    except urllib.error.HTTPError as err:
        raw, headers, status = err.read(), err.headers, err.code
    return status, headers, raw


def admin_token():
    body = {"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": "admin", "domain": {"id": "default"},
            "password": ADMIN_PASSWORD}}},
        "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}}
    _, headers, _ = call("POST", "/v3/auth/tokens?nocatalog", body=body)
    return headers["X-Subject-Token"]


def password_works(name, password):
    body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": name, "domain": {"id": "default"}, "password": password}}}}}
    status, _, _ = call("POST", "/v3/auth/tokens?nocatalog", body=body,
                        expect=(201, 401))
    return status == 201


def find(token, collection, name):
    _, _, body = call("GET", f"/v3/{collection}?name={name}", token)
    items = body[collection]
    return items[0] if items else None


def get_or_create(token, collection, singular, attrs):
    found = find(token, collection, attrs["name"])
    if found:
        if "password" in attrs and not password_works(attrs["name"], attrs["password"]):
            # Keep the password in step with the env file.  Only when it
            # differs: a password change revokes the user's tokens, and a
            # restart (setup.sh stop; setup.sh start) must not.
            call("PATCH", f"/v3/{collection}/{found['id']}", token,
                 {singular: {"password": attrs["password"]}})
        return found["id"]
    _, _, body = call("POST", f"/v3/{collection}", token, {singular: attrs})
    return body[singular]["id"]


def grant(token, project_id, user_id, role_id):
    call("PUT", f"/v3/projects/{project_id}/users/{user_id}/roles/{role_id}",
         token)


def main():
    token = Admin()
    roles = {name: get_or_create(token, "roles", "role", {"name": name})
             for name in ("admin", "member", "reader", "service")}
    projects = {}
    for name in ("service", "proj-a", "proj-b"):
        projects[name] = get_or_create(token, "projects", "project", {
            "name": name, "domain_id": "default",
            "description": f"zaqar test project {name}"})
    _, _, body = call("GET", "/v3/projects?name=admin", token)
    projects["admin"] = body["projects"][0]["id"]

    users = {}
    for name, password, project in (
            ("zaqar", SERVICE_PASSWORD, "service"),
            ("alice", ALICE_PASSWORD, "proj-a"),
            ("bob", BOB_PASSWORD, "proj-b")):
        users[name] = get_or_create(token, "users", "user", {
            "name": name, "domain_id": "default", "password": password,
            "default_project_id": projects[project], "enabled": True})
    users["admin"] = find(token, "users", "admin")["id"]

    # As devstack does: the service user is admin (and service) on 'service'.
    grant(token, projects["service"], users["zaqar"], roles["admin"])
    grant(token, projects["service"], users["zaqar"], roles["service"])
    grant(token, projects["proj-a"], users["alice"], roles["member"])
    grant(token, projects["proj-b"], users["bob"], roles["member"])

    values = {
        "KEYSTONE_URL": URL,
        "KEYSTONE_AUTH_URL": URL + "/v3",
        "KEYSTONE_REGION": "RegionOne",
        "KEYSTONE_ADMIN_USER": "admin",
        "KEYSTONE_ADMIN_USER_ID": users["admin"],
        "KEYSTONE_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "KEYSTONE_ADMIN_PROJECT": "admin",
        "KEYSTONE_ADMIN_PROJECT_ID": projects["admin"],
        "KEYSTONE_SERVICE_USER": "zaqar",
        "KEYSTONE_SERVICE_USER_ID": users["zaqar"],
        "KEYSTONE_SERVICE_PASSWORD": SERVICE_PASSWORD,
        "KEYSTONE_SERVICE_PROJECT": "service",
        "KEYSTONE_SERVICE_PROJECT_ID": projects["service"],
        "KEYSTONE_PROJ_A": "proj-a",
        "KEYSTONE_PROJ_A_ID": projects["proj-a"],
        "KEYSTONE_PROJ_B": "proj-b",
        "KEYSTONE_PROJ_B_ID": projects["proj-b"],
        "KEYSTONE_ALICE_USER": "alice",
        "KEYSTONE_ALICE_USER_ID": users["alice"],
        "KEYSTONE_ALICE_PASSWORD": ALICE_PASSWORD,
        "KEYSTONE_BOB_USER": "bob",
        "KEYSTONE_BOB_USER_ID": users["bob"],
        "KEYSTONE_BOB_PASSWORD": BOB_PASSWORD,
        "KEYSTONE_DOMAIN_ID": "default",
    }
    tmp = ENV_FILE + ".tmp"
    with open(tmp, "w") as out:
        out.write("# Written by tests/keystone/setup.sh; source with `set -a`.\n")
        for key, value in values.items():
            out.write(f"{key}={value}\n")
    os.replace(tmp, ENV_FILE)


if __name__ == "__main__":
    main()
