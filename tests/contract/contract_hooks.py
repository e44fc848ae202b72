"""Schemathesis hooks for the contract run (loaded through SCHEMATHESIS_HOOKS).

The API has two media types of its own: queue metadata patches are sent as
``application/openstack-messaging-v2.0-json-patch`` (JSON) and the home
document is ``application/json-home`` (JSON).  Both are JSON on the wire.
"""

import json
import os

import schemathesis

PATCH_TYPE = "application/openstack-messaging-v2.0-json-patch"


@schemathesis.serializer(PATCH_TYPE)
def _json_patch(ctx, value):
    return json.dumps(value).encode()


@schemathesis.deserializer("application/json-home")
def _json_home(ctx, response):
    return json.loads(response.content)


@schemathesis.hook
def before_call(ctx, case, kwargs):
    """Long-poll waits are cut to a second. In the stateful run (ZAQAR_CONTRACT_UNDELAYED=1), posted messages are
    never delayed, so that the claims that follow have something to claim
    (a delayed message cannot be claimed before its delay is over)."""
    # Long polling: a valid `wait` is cut to one second, so that a listing
    # or claim on an empty queue does not hold the run for up to 20 s.
    query = case.query if isinstance(case.query, dict) else None
    if query is not None and "wait" in query:
        try:
            if int(query["wait"]) > 1:
                query["wait"] = 1
        except (TypeError, ValueError):
            pass
    if os.environ.get("ZAQAR_CONTRACT_UNDELAYED") != "1":
        return
    if case.method.upper() == "POST" and case.path.endswith("/messages"):
        for body in (case.body, kwargs.get("json")):
            if isinstance(body, dict) and isinstance(body.get("messages"), list):
                for message in body["messages"]:
                    if isinstance(message, dict):
                        message.pop("delay", None)
