#!/usr/bin/env python3
"""Compare two result files written by bench/run_bench.py --json.

    python3 bench/compare.py OLD.json NEW.json [--rows twisted-proxy,twisted-web]
                             [--threshold 5]

For every row and figure present in both files, prints the old and new median,
new/old, and "better"/"worse" when the change exceeds --threshold percent in
the figure's good or bad direction (req/s and MiB/s up is better; latency,
CPU and RSS down is better).  Figures without a direction (error counts,
upstream connections per request) are printed without a verdict.

Numbers from different machines, or from runs with other load on the machine,
are not comparable; the ratios inside one run (to direct, to
twisted.web.proxy) are the figures that travel.  Python 3.11 stdlib only.
"""

import argparse
import json
import sys


def load(path):
    with open(path) as f:
        doc = json.load(f)
    if doc.get("schema") != 1:
        raise SystemExit(f"{path}: not a bench/run_bench.py result (schema {doc.get('schema')!r})")
    return doc


def fmt(value):
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.3g}"


def formatTable(headers, rows):
    widths = [max(len(str(r[i])) for r in [headers] + rows) for i in range(len(headers))]
    out = []
    for n, r in enumerate([headers] + rows):
        cells = [
            str(c).ljust(widths[i]) if i < 2 else str(c).rjust(widths[i]) for i, c in enumerate(r)
        ]
        out.append("  ".join(cells).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def main(argv=None):
    p = argparse.ArgumentParser(description="Compare two bench/run_bench.py JSON results.")
    p.add_argument("old")
    p.add_argument("new")
    p.add_argument("--rows", help="only these rows (comma-separated)")
    p.add_argument(
        "--threshold",
        type=float,
        default=5.0,
        help="percent change below which no verdict is printed (default 5)",
    )
    args = p.parse_args(argv)
    old, new = load(args.old), load(args.new)
    meta = {**old.get("figures", {}), **new.get("figures", {})}
    wanted = set(args.rows.split(",")) if args.rows else None
    print(f"old: {args.old} ({old.get('started')}, {' '.join(old.get('command', []))})")
    print(f"new: {args.new} ({new.get('started')}, {' '.join(new.get('command', []))})")
    body = []
    for row, newRes in new["rows"].items():
        oldRes = old["rows"].get(row)
        if wanted and row not in wanted:
            continue
        if not oldRes or not oldRes.get("available") or not newRes.get("available"):
            body.append([row, "(not in both runs)", "-", "-", "-", ""])
            continue
        for key, info in meta.items():
            a, b = oldRes["figures"].get(key), newRes["figures"].get(key)
            if a is None and b is None:
                continue
            ratio = b / a if a not in (None, 0) and b is not None else None
            verdict = ""
            better = info.get("better")
            if ratio is not None and better and abs(ratio - 1) * 100 >= args.threshold:
                up = ratio > 1
                verdict = "better" if up == (better == "higher") else "worse"
            body.append(
                [row, key, fmt(a), fmt(b), f"{ratio:.2f}" if ratio is not None else "-", verdict]
            )
    print(formatTable(["row", "figure", "old", "new", "new/old", ""], body))
    return 0


if __name__ == "__main__":
    sys.exit(main())
