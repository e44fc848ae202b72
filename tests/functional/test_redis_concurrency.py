"""Many consumers, two API servers, one Redis: claims never overlap.

Runs only with the Redis backend (``ZAQAR_TEST_BACKEND=redis`` and
``ZAQAR_TEST_REDIS_URL``, as run_tests.sh sets them for the second
functional run).  Two zaqar-server processes share one key prefix in that
Redis, so they serve the same queues; producers post while 16 consumers
claim, through both servers, and delete what they claimed.  Every claim
outlives the test, so a message returned by two claims would have been held
by two live claims at once.
"""

import os
import uuid

import pytest

from two_servers import each_message_consumed_once

pytestmark = pytest.mark.skipif(
    os.environ.get("ZAQAR_TEST_BACKEND") != "redis",
    reason="needs ZAQAR_TEST_BACKEND=redis and ZAQAR_TEST_REDIS_URL")

def shared_redis_options():
    base = os.environ["ZAQAR_TEST_REDIS_URL"]
    sep = "&" if "?" in base else "?"
    uri = f"{base}{sep}key_prefix=zqc-{uuid.uuid4().hex[:12]}"
    return {"drivers:message_store:redis": {"uri": uri}}


def test_consumers_on_two_servers_take_each_message_once(server_factory, project):
    options = shared_redis_options()
    each_message_consumed_once([server_factory(options), server_factory(options)], project)

