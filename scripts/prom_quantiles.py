#!/usr/bin/env python3
"""Quantiles of a Prometheus histogram between two scrapes of /metrics (standard library only).

    python3 scripts/prom_quantiles.py BEFORE AFTER NAME [--quantiles 0.5,0.99]

BEFORE and AFTER are /metrics pages saved to files (BEFORE may be /dev/null: from zero); NAME
is the histogram (e.g. tickcast_upstream_delay_seconds). Prints one JSON object: the count of
observations between the scrapes and each quantile in milliseconds, interpolated linearly
inside its bucket as Prometheus' histogram_quantile() does. A quantile that falls in the +Inf
bucket is reported as the largest finite bound.
"""

import argparse
import json
import re
import sys


def buckets(path, name):
    """{upper bound (float, inf for +Inf): cumulative count} of histogram `name` in `path`."""
    pattern = re.compile(r'^' + re.escape(name) + r'_bucket\{le="([^"]+)"\}\s+(\S+)$')
    out = {}
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                m = pattern.match(line.strip())
                if m:
                    le = float("inf") if m.group(1) == "+Inf" else float(m.group(1))
                    out[le] = float(m.group(2))
    except OSError as e:
        sys.exit(f"prom_quantiles.py: cannot read {path}: {e.strerror}")
    return out


def quantile(q, bounds, counts):
    """histogram_quantile(q) of cumulative `counts` at ascending `bounds`."""
    total = counts[-1]
    if total <= 0:
        return None
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in zip(bounds, counts):
        if count >= rank:
            if bound == float("inf"):
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return lower_bound


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("name")
    ap.add_argument("--quantiles", default="0.5,0.99")
    args = ap.parse_args()
    try:
        qs = [float(q) for q in args.quantiles.split(",")]
    except ValueError:
        sys.exit(f"prom_quantiles.py: --quantiles must be numbers, got {args.quantiles!r}")
    if any(not 0 <= q <= 1 for q in qs):
        sys.exit("prom_quantiles.py: quantiles must be between 0 and 1")
    after = buckets(args.after, args.name)
    if not after:
        sys.exit(f"prom_quantiles.py: no histogram {args.name} in {args.after}")
    before = buckets(args.before, args.name)
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    result = {"count": int(counts[-1])}
    for q in qs:
        v = quantile(q, bounds, counts)
        key = "p" + f"{q * 100:g}".replace(".", "_")
        result[key + "_ms"] = None if v is None else round(v * 1000, 3)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
