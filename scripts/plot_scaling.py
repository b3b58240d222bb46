#!/usr/bin/env python3
"""Plot the results of scripts/scaling.sh (python3 standard library only).

Reads the JSON lines written by scaling.sh, writes an SVG with two panels -- delivered
events/s and p99 latency (ms) against the client count, one line per role and --flush-ms
setting -- and prints a Markdown table of the runs on stdout.

    python3 scripts/plot_scaling.py [target/scaling.jsonl] [--out docs/scaling.svg]
"""

import argparse
import json
import math
import sys
from collections import defaultdict
from xml.sax.saxutils import escape

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf"]
MARKERS = ["circle", "square", "diamond", "triangle"]

WIDTH, HEIGHT = 960, 450
PANEL_W, PANEL_H = 380, 290
MARGIN_LEFT, MARGIN_TOP = 80, 60
PANEL_GAP = 100


def load(path):
    runs = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                run = json.loads(line)
            except json.JSONDecodeError as e:
                sys.exit(f"plot_scaling.py: {path}:{n}: not JSON: {e}")
            if "clients" not in run or "flush_ms" not in run:
                sys.exit(f"plot_scaling.py: {path}:{n}: missing clients or flush_ms")
            runs.append(run)
    if not runs:
        sys.exit(f"plot_scaling.py: {path} holds no runs")
    return runs


def p99(run):
    lat = run.get("latency_ms") or {}
    return lat.get("p99")


def nice_step(span, ticks=5):
    """A 1/2/5 x 10^k step giving about `ticks` intervals over `span`."""
    if span <= 0:
        return 1.0
    raw = span / ticks
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def axis(max_value):
    """Ticks from 0 to a round number at or above `max_value`."""
    if not max_value or max_value <= 0:
        max_value = 1.0
    step = nice_step(max_value)
    top = math.ceil(max_value / step) * step
    count = int(round(top / step))
    return top, [i * step for i in range(count + 1)]


def fmt_num(v):
    """Short tick labels: 1.5M, 200k, 2.5."""
    a = abs(v)
    if a >= 1e6:
        s = f"{v / 1e6:.2f}".rstrip("0").rstrip(".") + "M"
    elif a >= 1e3:
        s = f"{v / 1e3:.1f}".rstrip("0").rstrip(".") + "k"
    elif a == int(a):
        s = str(int(v))
    else:
        s = f"{v:.2f}".rstrip("0").rstrip(".")
    return s


def marker(shape, x, y, color):
    if shape == "square":
        return f'<rect x="{x - 4:.1f}" y="{y - 4:.1f}" width="8" height="8" fill="{color}"/>'
    if shape == "diamond":
        return (f'<polygon points="{x:.1f},{y - 5:.1f} {x + 5:.1f},{y:.1f} '
                f'{x:.1f},{y + 5:.1f} {x - 5:.1f},{y:.1f}" fill="{color}"/>')
    if shape == "triangle":
        return (f'<polygon points="{x:.1f},{y - 5:.1f} {x + 5:.1f},{y + 4:.1f} '
                f'{x - 5:.1f},{y + 4:.1f}" fill="{color}"/>')
    return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{color}"/>'


def panel(x0, y0, title, ylabel, series, x_top, x_ticks, value):
    """One chart: `series` is [(label, color, shape, runs)], `value(run)` the y value."""
    ys = [value(r) for _, _, _, runs in series for r in runs if value(r) is not None]
    y_top, y_ticks = axis(max(ys) if ys else 1.0)
    sx = lambda v: x0 + v / x_top * PANEL_W  # noqa: E731
    sy = lambda v: y0 + PANEL_H - v / y_top * PANEL_H  # noqa: E731
    out = ['<g class="panel">',
           f'<text x="{x0 + PANEL_W / 2}" y="{y0 - 14}" text-anchor="middle" '
           f'font-size="15" font-weight="bold">{escape(title)}</text>',
           f'<rect x="{x0}" y="{y0}" width="{PANEL_W}" height="{PANEL_H}" '
           f'fill="none" stroke="#333"/>']
    for t in y_ticks:
        y = sy(t)
        out.append(f'<line x1="{x0}" y1="{y:.1f}" x2="{x0 + PANEL_W}" y2="{y:.1f}" '
                   f'stroke="#ddd"/>')
        out.append(f'<line x1="{x0 - 5}" y1="{y:.1f}" x2="{x0}" y2="{y:.1f}" stroke="#333"/>')
        out.append(f'<text x="{x0 - 8}" y="{y + 4:.1f}" text-anchor="end" '
                   f'font-size="12">{fmt_num(t)}</text>')
    for t in x_ticks:
        x = sx(t)
        out.append(f'<line x1="{x:.1f}" y1="{y0}" x2="{x:.1f}" y2="{y0 + PANEL_H}" '
                   f'stroke="#eee"/>')
        out.append(f'<line x1="{x:.1f}" y1="{y0 + PANEL_H}" x2="{x:.1f}" '
                   f'y2="{y0 + PANEL_H + 5}" stroke="#333"/>')
        out.append(f'<text x="{x:.1f}" y="{y0 + PANEL_H + 20}" text-anchor="middle" '
                   f'font-size="12">{fmt_num(t)}</text>')
    out.append(f'<text x="{x0 + PANEL_W / 2}" y="{y0 + PANEL_H + 42}" text-anchor="middle" '
               f'font-size="13">clients</text>')
    ly = y0 + PANEL_H / 2
    out.append(f'<text x="{x0 - 58}" y="{ly}" text-anchor="middle" font-size="13" '
               f'transform="rotate(-90 {x0 - 58} {ly})">{escape(ylabel)}</text>')
    for label, color, shape, runs in series:
        pts = [(sx(r["clients"]), sy(value(r))) for r in runs if value(r) is not None]
        if len(pts) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
            out.append(f'<polyline points="{path}" fill="none" stroke="{color}" '
                       f'stroke-width="2"><title>{escape(label)}</title></polyline>')
        for x, y in pts:
            out.append(marker(shape, x, y, color))
    out.append("</g>")
    return out


def role(run):
    return run.get("role", "all")


def svg(runs, subtitle):
    by_series = defaultdict(list)
    for r in runs:
        by_series[(role(r), r["flush_ms"])].append(r)
    several_roles = len({role(r) for r in runs}) > 1
    series = []
    for i, (node, flush) in enumerate(sorted(by_series)):
        label = f"--role {node}, --flush-ms {flush}" if several_roles else f"--flush-ms {flush}"
        pts = sorted(by_series[(node, flush)], key=lambda r: r["clients"])
        series.append((label, COLORS[i % len(COLORS)], MARKERS[i % len(MARKERS)], pts))
    x_top, x_ticks = axis(max(r["clients"] for r in runs))

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
           f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="Helvetica, Arial, sans-serif">',
           f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
           f'<text x="{WIDTH / 2}" y="22" text-anchor="middle" font-size="17" '
           f'font-weight="bold">tickcast scaling</text>',
           f'<text x="{WIDTH / 2}" y="40" text-anchor="middle" font-size="12" '
           f'fill="#555">{escape(subtitle)}</text>']
    x_left = MARGIN_LEFT
    x_right = MARGIN_LEFT + PANEL_W + PANEL_GAP
    y_panel = MARGIN_TOP + 10
    out += panel(x_left, y_panel, "Delivered events/s", "events/s", series, x_top, x_ticks,
                 lambda r: r.get("events_per_s"))
    out += panel(x_right, y_panel, "Latency p99", "p99 latency (ms)", series, x_top,
                 x_ticks, p99)
    # Legend, below the panels.
    lx = MARGIN_LEFT
    ly = HEIGHT - 12
    for label, color, shape, _ in series:
        out.append(f'<line x1="{lx}" y1="{ly - 4}" x2="{lx + 24}" y2="{ly - 4}" '
                   f'stroke="{color}" stroke-width="2"/>')
        out.append(marker(shape, lx + 12, ly - 4, color))
        out.append(f'<text x="{lx + 30}" y="{ly}" font-size="12">{escape(label)}</text>')
        lx += 40 + 7 * len(label)
    out.append("</svg>")
    return "\n".join(out) + "\n"


def cell(v, fmt="{:,.0f}"):
    return "-" if v is None else fmt.format(v)


def table(runs):
    delays = any(r.get("upstream_delay_ms") for r in runs)
    head = ("| role | clients | flush ms | connected | failed | events/s | MB/s | p50 ms "
            "| p90 ms | p99 ms | max ms | order errors | server RSS MiB |")
    columns = 13
    if delays:
        head += " publish to edge p50 ms | publish to edge p99 ms |"
        columns += 2
    rows = [head, "|---|" + "---:|" * (columns - 1)]
    for r in sorted(runs, key=lambda r: (r["flush_ms"], r["clients"], role(r))):
        lat = r.get("latency_ms") or {}
        bps = r.get("bytes_per_s")
        rss = r.get("rss_kib")
        delay = r.get("upstream_delay_ms") or {}
        extra = [cell(delay.get("p50_ms"), "{:.2f}"), cell(delay.get("p99_ms"), "{:.2f}")]
        rows.append("| " + " | ".join([
            role(r),
            f"{r['clients']:,}",
            str(r["flush_ms"]),
            cell(r.get("connected")),
            cell(r.get("failed")),
            cell(r.get("events_per_s")),
            cell(None if bps is None else bps / 1e6, "{:,.1f}"),
            cell(lat.get("p50"), "{:.1f}"),
            cell(lat.get("p90"), "{:.1f}"),
            cell(lat.get("p99"), "{:.1f}"),
            cell(lat.get("max"), "{:.1f}"),
            cell(r.get("order_errors")),
            cell(None if rss is None else rss / 1024, "{:,.0f}"),
        ] + (extra if delays else [])) + " |")
    return "\n".join(rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("input", nargs="?", default="target/scaling.jsonl",
                    help="JSON lines from scripts/scaling.sh [target/scaling.jsonl]")
    ap.add_argument("--out", default="docs/scaling.svg", help="SVG to write [docs/scaling.svg]")
    args = ap.parse_args()
    runs = load(args.input)
    rates = sorted({r.get("rate") for r in runs if r.get("rate") is not None})
    durations = sorted({r.get("duration_s") for r in runs if r.get("duration_s")})
    subtitle = "scripts/scaling.sh"
    if rates:
        subtitle += "; --rate " + ", ".join(str(x) for x in rates)
    if durations:
        lo, hi = round(min(durations)), round(max(durations))
        subtitle += f"; steady window {lo} s" if lo == hi else f"; steady window {lo}-{hi} s"
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(svg(runs, subtitle))
    print(table(runs))
    print(f"\nwrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
