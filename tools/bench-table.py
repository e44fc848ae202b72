#!/usr/bin/env python3
"""Prints the comparison table of tools/bench-compare.sh from its JSON reports.

Usage: bench-table.py OUT_DIR LOADS MACHINE_LINE
"""
import json
import os
import sys

SERVERS = [("ref", "reference"), ("redis", "ours/Redis"), ("sqlite", "ours/SQLite"),
           ("ref-mongodb", "reference/MongoDB"), ("mongodb", "ours/MongoDB")]

# The run each of ours is compared with: the reference on the same store.
BASELINE = {"redis": "ref", "sqlite": "ref", "mongodb": "ref-mongodb"}

# (load, label, op or None for end-to-end consumed, value field)
ROWS = {
    "post1": [("POST 1 msg, 16 conn", "post", "messages_per_s")],
    "post10": [("POST 10 msgs, 16 conn", "post", "messages_per_s")],
    "claim": [("claim+delete, 16 conn", None, "consumed_per_s"),
              ("  claim requests", "claim", "requests_per_s"),
              ("  delete requests", "delete", "requests_per_s")],
    "mixed": [("mixed 6p/6c/4o: posted", "post", "messages_per_s"),
              ("mixed: consumed", None, "consumed_per_s"),
              ("mixed: listed", "list", "messages_per_s")],
    "stats": [("GET stats, 16 conn", "stats", "requests_per_s")],
}


def load(out, server, name):
    path = os.path.join(out, f"{server}.{name}.json")
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def op_of(report, op):
    for o in report["ops"]:
        if o["op"] == op:
            return o
    return None


def p99_of(report, op):
    o = op_of(report, op or "claim")
    return o["latency_ms"]["p99"] if o else None


def value_of(report, op, field):
    if op is None:
        return report[field]
    o = op_of(report, op)
    return o[field] if o else None


def fmt(v, digits=0):
    if v is None:
        return "-"
    return f"{v:,.{digits}f}"


def ratio(a, b, invert=False):
    if a is None or b is None or a == 0 or b == 0:
        return "-"
    return f"{(b / a) if invert else (a / b):.1f}x"


def read_rss(out, server, name):
    try:
        with open(os.path.join(out, f"{server}.{name}.rss")) as f:
            return [int(x) for x in f.read().split()]
    except (OSError, ValueError):
        return None


def read_cpu(out, server, name):
    """(wall s, Zaqar server CPU s, database server CPU s) of one load, or None."""
    try:
        with open(os.path.join(out, f"{server}.{name}.cpu")) as f:
            wall, srv, db = (float(x) for x in f.read().split())
            return wall, srv, db
    except (OSError, ValueError):
        return None


def main():
    out, loads, machine = sys.argv[1], sys.argv[2].split(","), sys.argv[3]
    servers = [(s, label) for s, label in SERVERS
               if any(load(out, s, l) for l in loads)]
    present = {s for s, _ in servers}

    def compared(s):
        """The baseline of server s when that baseline ran, else None."""
        b = BASELINE.get(s)
        return b if b in present else None

    head = ["load", "metric/s"]
    for s, label in servers:
        head.append(label)
        if compared(s):
            head.append("ratio")
    for s, label in servers:
        head.append(f"p99 ms {label}")
        if compared(s):
            head.append("p99 ratio")
    rows = [head]
    failures = []
    for name in loads:
        reports = {s: load(out, s, name) for s, _ in servers}
        for s, r in reports.items():
            if r is not None and not r.get("correct", False):
                failures.append(f"{s}/{name}")
            if r is not None:
                errs = sum(sum(o["errors"].values()) for o in r["ops"])
                if errs:
                    failures.append(f"{s}/{name}: {errs} failed requests")
        for label, op, field in ROWS.get(name, []):
            row = [label, field.replace("_per_s", "")]
            vals = {s: (value_of(r, op, field) if r else None) for s, r in reports.items()}
            p99s = {s: (p99_of(r, op) if r else None) for s, r in reports.items()}
            for s, _ in servers:
                row.append(fmt(vals[s]))
                if compared(s):
                    row.append(ratio(vals[s], vals.get(compared(s))))
            for s, _ in servers:
                row.append(fmt(p99s[s], 2))
                if compared(s):
                    row.append(ratio(p99s[s], p99s.get(compared(s)), invert=True))
            rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    print(f"Machine: {machine}")
    for i, r in enumerate(rows):
        print("  ".join(c.ljust(widths[j]) if j == 0 else c.rjust(widths[j]) for j, c in enumerate(r)))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    print()
    print("RSS (MiB; the reference: uWSGI master, router and workers together)")
    for s, label in servers:
        idle = read_rss(out, s, "idle")
        peaks = [read_rss(out, s, l) for l in loads]
        mids = [p[0] for p in peaks if p]
        hwm = [p[2] for p in peaks if p]
        print(f"  {label:<12} idle {fmt(idle[0] / 1024 if idle else None, 1):>7}"
              f"  under load (mid-run, max over loads) {fmt(max(mids) / 1024 if mids else None, 1):>7}"
              f"  peak (VmHWM) {fmt(max(hwm) / 1024 if hwm else None, 1):>7}")
    print()
    print("Bench CPU (% of one core, per load): " + "; ".join(
        f"{label}: " + " ".join(
            f"{l}={load(out, s, l)['bench_cpu']['percent_of_one_core']:.0f}"
            for l in loads if load(out, s, l))
        for s, label in servers))
    cpu_lines = []
    for s, label in servers:
        parts = []
        for name in loads:
            c = read_cpu(out, s, name)
            if c and c[0] > 0:
                parts.append(f"{name} {c[1] / c[0] * 100:.0f}/{c[2] / c[0] * 100:.0f}")
        if parts:
            cpu_lines.append(f"  {label:<18} " + "; ".join(parts))
    if cpu_lines:
        print("Zaqar server / database server CPU (% of one core, over each load's whole run:"
              " prefill, warm-up and measured time)")
        print("\n".join(cpu_lines))
    print("Checks (no double claim, before + posted = consumed + left): "
          + ("all OK" if not failures else "FAILED: " + ", ".join(failures)))


if __name__ == "__main__":
    main()
