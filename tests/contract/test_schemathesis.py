"""Every answer of the server against the OpenAPI document it serves, by
schemathesis (PyPI, 4.x), with the checks not_a_server_error,
status_code_conformance, content_type_conformance and
response_schema_conformance.

Two runs per server:

* stateless (examples, coverage, fuzzing phases; positive and negative data,
  generated headers included), and
* stateful, along the document's links (create queue -> post -> claim ->
  delete message / release claim, subscriptions ...), in one project and
  with one Client-ID so that each step finds what the previous one made.

Short by default (CI).  A long run on demand::

    ZAQAR_CONTRACT_EXAMPLES=1000 ZAQAR_CONTRACT_MAX_TIME=1800 \\
        ./run_tests.sh contract contract-redis

(ZAQAR_CONTRACT_SEED fixes the seed; the seed of every run is printed.)
"""

import os
import pathlib
import subprocess
import sys
import uuid

HERE = pathlib.Path(__file__).resolve().parent
CHECKS = ",".join([
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
])
EXAMPLES = os.environ.get("ZAQAR_CONTRACT_EXAMPLES", "25")
# Stateful scenarios are cheap and short; more of them reach deeper chains.
STATEFUL_EXAMPLES = os.environ.get("ZAQAR_CONTRACT_STATEFUL_EXAMPLES", str(4 * int(EXAMPLES)))
MAX_TIME = os.environ.get("ZAQAR_CONTRACT_MAX_TIME")


def schemathesis(srv, *args, env=None, examples=EXAMPLES):
    """Runs `st run` against `srv` (in the server's work directory, where
    schemathesis keeps its state); fails on any problem it reports."""
    st = pathlib.Path(sys.executable).parent / "st"
    cmd = [
        str(st), "--config-file", str(HERE / "schemathesis.toml"),
        "run", f"{srv.url}/v2/openapi.json",
        "--checks", CHECKS,
        "--max-examples", examples,
        # One worker: with two, hypothesis's lambda descriptions call
        # ast.parse from two threads, which CPython 3.11.7 can fail with
        # "AST constructor recursion depth mismatch" (fixed in 3.11.8).
        "--workers", "1",
        "--request-timeout", "30",
        "--output-truncate", "false",
        "--report", "ndjson", "--report-dir", str(srv.workdir / "schemathesis"),
        *args,
    ]
    if MAX_TIME:
        cmd += ["--max-time", MAX_TIME]
    if os.environ.get("ZAQAR_CONTRACT_SEED"):
        cmd += ["--seed", os.environ["ZAQAR_CONTRACT_SEED"]]
    run_env = dict(os.environ)
    run_env.update({
        "SCHEMATHESIS_HOOKS": "contract_hooks",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), run_env.get("PYTHONPATH")])),
    })
    run_env.update(env or {})
    proc = subprocess.run(cmd, env=run_env, cwd=srv.workdir, capture_output=True, text=True,
                          timeout=3600)
    print(proc.stdout[-20000:])
    print(proc.stderr[-5000:])
    assert proc.returncode == 0, f"schemathesis found problems (exit {proc.returncode}):\n{proc.stdout[-8000:]}"
    assert not srv.panicked(), srv.log_text()
    return proc.stdout


def test_stateless(server_factory):
    srv = server_factory()
    out = schemathesis(srv, "--phases", "examples,coverage,fuzzing")
    assert "Serialization not possible" not in out


def test_stateful(server_factory):
    srv = server_factory()
    out = schemathesis(
        srv, "--phases", "stateful", "--mode", "positive",
        "--header", "X-Project-ID: contract",
        "--header", f"Client-ID: {uuid.uuid4()}",
        env={"ZAQAR_CONTRACT_UNDELAYED": "1"},
        examples=STATEFUL_EXAMPLES,
    )
    assert "Scenarios:" in out


def test_stateless_admin(server_factory):
    """The admin routes (health) of a server in admin mode."""
    srv = server_factory({"DEFAULT": {"admin_mode": "true"}})
    schemathesis(srv, "--phases", "examples,coverage,fuzzing", "--include-tag", "Health")
