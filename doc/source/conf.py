# Sphinx configuration of the Zaqar-in-Rust documentation.
#
# Build: sphinx-build -W -b html doc/source doc/build/html
# Only Sphinx itself is needed (doc/requirements.txt): no extension that
# reaches the network, and the built-in alabaster theme.

project = "Zaqar in Rust"
author = "the Zaqar in Rust contributors"
copyright = "the Zaqar in Rust contributors"
release = "0.1.0"
version = release

extensions = []

root_doc = "index"
source_suffix = {".rst": "restructuredtext"}
exclude_patterns = []
templates_path = []

# Code blocks are ini, shell, json...: no default guessing.
highlight_language = "none"
pygments_style = "sphinx"

html_theme = "alabaster"
html_theme_options = {
    "description": "OpenStack Zaqar v2, in one Rust process",
    "fixed_sidebar": True,
    "show_relbars": True,
}
html_static_path = []
html_title = "Zaqar in Rust"
html_show_sourcelink = False

# Warnings are errors in the build (-W); keep cross references strict.
nitpicky = False

# The API reference (api-ref/) is generated from the server's OpenAPI document
# by tools/api_ref.py, which run_tests.sh (docs step) and tox -e docs run first.
import pathlib as _pathlib

if not (_pathlib.Path(__file__).parent / "api-ref" / "index.rst").exists():
    raise RuntimeError(
        "doc/source/api-ref/ is missing: run tools/api_ref.py first "
        "(it starts the built zaqar-server; ./run_tests.sh docs does both)")
