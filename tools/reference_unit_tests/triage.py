"""Sorts the failures of a reference-unit-tests run: internals or not."""

import re
import sys

# A test whose own code touches these could only pass inside the
# reference (it patches the reference's storage, or reads its protocol's
# attributes).
INTERNAL = re.compile(
    r"self\.boot\.storage|self\.boot\.control\.[a-z_]+_controller|_handler|proto_id"
    r"|notify_in_binary|_lazy_factory|self\.app\b|self\.transport\.factory\(\)\."
    r"|mock\.patch\.object\((?!self\.protocol)")

log = open(sys.argv[1]).read()
tests_dir = sys.argv[2] if len(sys.argv) > 2 else None
sources = {}
if tests_dir:
    import os
    for root, _, files in os.walk(tests_dir):
        for f in files:
            if f.startswith("test_") and f.endswith(".py"):
                sources[os.path.join(root, f)] = open(os.path.join(root, f)).read()


def test_source(name):
    """The source of test `Class.method` (ddt's suffixes dropped)."""
    method = name.split(".")[-1]
    for text in sources.values():
        for candidate in (method, re.sub(r"_\d+(_.*)?$", "", method)):
            m = re.search(r"(?:\n    @[^\n]*)*\n    def %s\(.*?(?=\n    (?:def |@)|\Z)"
                          % re.escape(candidate), text, re.S)
            if m:
                return m.group(0)
    return ""


# Tests that assert a reference bug we do not copy (doc/source/differences.rst).
KNOWN = {
    "TestPoolsMongoDB.test_patch_works_with_extra_fields":
        "pool PATCH refuses unknown fields next to known ones",
}

parts = re.split(r"\n_{3,} (.+?) _{3,}\n", log)
internal, known, other = [], [], []
for name, body in zip(parts[1::2], parts[2::2]):
    if name in KNOWN:
        known.append(name)
    elif INTERNAL.search(test_source(name)) or INTERNAL.search(body):
        internal.append(name)
    else:
        why = [l.strip() for l in body.splitlines()
               if "Error" in l or l.startswith(("reference", "actual"))]
        other.append((name, why[-3:]))
summary = log.strip().splitlines()[-1] if log.strip() else "no output"
print(summary)
print("%d failures reach into the reference's internals (cannot run elsewhere)" % len(internal))
for name in known:
    print("known difference: %s (%s)" % (name, KNOWN[name]))
print("%d other failures:" % len(other))
for name, why in other:
    print("  " + name)
    for line in why:
        print("      " + line[:240])
print("log: " + sys.argv[1])
