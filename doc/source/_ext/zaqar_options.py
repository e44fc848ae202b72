"""Sphinx directives that render the server's own declarations.

``.. zaqar-config-options::`` renders every option of ``zaqar.conf`` from
``zaqar-server --sample-config=json`` and ``.. zaqar-sample-policy::`` the
output of ``zaqar-server --sample-policy``: the reference is generated from
the declarations the server reads, at build time, so it cannot drift.

The binary is ``$ZAQAR_SERVER_BIN``, else ``target/debug/zaqar-server`` of
this checkout (``run_tests.sh docs`` and ``tox -e docs`` build it first).
"""

import json
import os
import pathlib
import subprocess

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.errors import ExtensionError
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

REPO = pathlib.Path(__file__).resolve().parents[3]


def _server(*args):
    binary = os.environ.get("ZAQAR_SERVER_BIN") or str(REPO / "target/debug/zaqar-server")
    if not pathlib.Path(binary).exists():
        raise ExtensionError(
            f"{binary} not found: build zaqar-server first (cargo build --bin zaqar-server) "
            "or set ZAQAR_SERVER_BIN")
    out = subprocess.run([binary, *args], capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, RUST_LOG="error"))
    if out.returncode != 0:
        raise ExtensionError(f"{binary} {' '.join(args)} failed: {out.stderr}")
    return out.stdout


def _literal(text):
    return "``" + text + "``" if text else "*(empty)*"


class ConfigOptions(SphinxDirective):
    """Every option, section by section: type, default, help."""

    def run(self):
        options = json.loads(_server("--sample-config=json"))
        lines, section = [], None
        for o in options:
            if o["section"] != section:
                section = o["section"]
                title = f"``[{section}]``"
                lines += ["", title, "~" * len(title), ""]
            lines += [f"``{o['name']}``",
                      f"   *{o['type']}*, default {_literal(o['default'])}.", ""]
            lines += ["   " + ln if ln else "" for ln in o["help"].splitlines()]
            lines.append("")
        node = nodes.section()
        node.document = self.state.document
        nested_parse_with_titles(self.state, StringList(lines, source="zaqar-server"), node)
        return node.children


class SamplePolicy(SphinxDirective):
    """The sample policy.yaml, as a literal block."""

    def run(self):
        text = _server("--sample-policy")
        block = nodes.literal_block(text, text)
        block["language"] = "yaml"
        return [block]


def setup(app):
    app.add_directive("zaqar-config-options", ConfigOptions)
    app.add_directive("zaqar-sample-policy", SamplePolicy)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
