#!/usr/bin/env python3
"""Shortens the frame names of a folded perf profile for a flame graph.

Reads the output of ``inferno-collapse-perf`` (one stack per line, frames
separated by ``;``, then a count) on stdin and writes the same profile with
the generic arguments dropped from every frame name (``Foo<Bar<Baz>>::poll``
becomes ``Foo::poll``; a trait method keeps its ``<Type as Trait>`` head),
adding up the stacks that become equal. The frames of one function then
read as one function, and the SVG shrinks to a fraction of its size.

Usage: perf script | inferno-collapse-perf | tools/flame-simplify.py \\
           | inferno-flamegraph --minwidth 1 > graph.svg
"""
import collections
import sys


def simplify(frame):
    """`frame` without generic arguments, keeping a leading `<A as B>`."""
    out = []
    depth = 0
    # A frame like `<A<T> as B>::f`: keep the outer brackets (depth 1) of
    # that first group, drop anything nested deeper.
    head = frame.startswith("<")
    head_open = False
    for c in frame:
        if c == "<":
            depth += 1
            if head and depth == 1 and not out:
                head_open = True
                out.append(c)
            continue
        if c == ">":
            if head_open and depth == 1:
                out.append(c)
                head_open = False
                head = False
            depth -= 1
            continue
        if depth == 0 or (head_open and depth == 1):
            out.append(c)
    short = "".join(out).replace("{{closure}}", "{closure}")
    return short or frame


def main():
    stacks = collections.Counter()
    for line in sys.stdin:
        line = line.rstrip("\n")
        if not line:
            continue
        stack, count = line.rsplit(" ", 1)
        stacks[";".join(simplify(f) for f in stack.split(";"))] += int(count)
    for stack, count in stacks.items():
        print(stack, count)


if __name__ == "__main__":
    main()
