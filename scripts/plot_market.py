#!/usr/bin/env python3
"""Plot the stylized facts measured by tickcast-facts (python3 standard library only).

Reads the JSON report of `tickcast-facts` and writes three SVGs:

- market-returns.svg:  density of the standardised, deseasonalised 5-minute returns on a log
  axis, against the standard normal density (heavy tails);
- market-acf.svg:      autocorrelation of |r| at lags 1..200 with the +-3/sqrt(n) band, and of
  r at lags 1..10 (volatility clustering without linear predictability);
- market-intraday.svg: mean |r| per 5-minute slot relative to the day's mean, 09:30..16:00
  (the intraday U-shape).

    python3 scripts/plot_market.py [target/market-facts.json] [--out-dir docs]
"""

import argparse
import json
import math
import os
import sys
from xml.sax.saxutils import escape

from plot_scaling import nice_step  # same axis steps as the scaling chart

BLUE, RED, GREEN, GREY = "#1f77b4", "#d62728", "#2ca02c", "#777"
WIDTH, HEIGHT = 760, 460
# Plot area inside the SVG.
LEFT, TOP, PLOT_W, PLOT_H = 90, 70, 620, 300


def load(path):
    try:
        with open(path, encoding="utf-8") as f:
            report = json.load(f)
    except OSError as e:
        sys.exit(f"plot_market.py: cannot read {path}: {e.strerror}")
    except json.JSONDecodeError as e:
        sys.exit(f"plot_market.py: {path} is not JSON: {e}")
    # The report nests the statistics under "facts"; accept a bare Facts object too.
    facts = report.get("facts", report)
    for key in ("return_histogram", "acf_abs_curve", "intraday_shape"):
        if not isinstance(facts.get(key), list):
            sys.exit(f"plot_market.py: {path} has no {key} (not written by tickcast-facts?)")
    return report, facts


def finite(v):
    return isinstance(v, (int, float)) and math.isfinite(v)


def linear_ticks(lo, hi, ticks=5):
    """Round limits enclosing [lo, hi] and the ticks between them."""
    if hi <= lo:
        hi = lo + 1.0
    step = nice_step(hi - lo, ticks)
    lo = math.floor(lo / step + 1e-9) * step
    hi = math.ceil(hi / step - 1e-9) * step
    count = int(round((hi - lo) / step))
    return lo, hi, [lo + i * step for i in range(count + 1)]


def fmt_num(v):
    if abs(v) < 1e-12:
        return "0"
    if v == int(v) and abs(v) < 1e6:
        return str(int(v))
    return f"{v:.3f}".rstrip("0").rstrip(".")


def fmt_pow10(v):
    e = int(round(math.log10(v)))
    return "1" if e == 0 else f"1e{e}"


class Axes:
    """A plot area with linear x and a linear or log10 y axis."""

    def __init__(self, xlim, ylim, ylog=False):
        self.xlim, self.ylim, self.ylog = xlim, ylim, ylog

    def sx(self, v):
        lo, hi = self.xlim
        return LEFT + (v - lo) / (hi - lo) * PLOT_W

    def sy(self, v):
        lo, hi = self.ylim
        if self.ylog:
            v, lo, hi = math.log10(max(v, lo)), math.log10(lo), math.log10(hi)
        v = min(max(v, lo), hi)
        return TOP + PLOT_H - (v - lo) / (hi - lo) * PLOT_H

    def frame(self, xticks, yticks, xlabel, ylabel, xfmt=fmt_num, yfmt=fmt_num):
        out = [f'<rect x="{LEFT}" y="{TOP}" width="{PLOT_W}" height="{PLOT_H}" '
               f'fill="none" stroke="#333"/>']
        for t in yticks:
            y = self.sy(t)
            out.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + PLOT_W}" y2="{y:.1f}" '
                       f'stroke="#e4e4e4"/>')
            out.append(f'<line x1="{LEFT - 5}" y1="{y:.1f}" x2="{LEFT}" y2="{y:.1f}" '
                       f'stroke="#333"/>')
            out.append(f'<text x="{LEFT - 8}" y="{y + 4:.1f}" text-anchor="end" '
                       f'font-size="12">{escape(yfmt(t))}</text>')
        for t in xticks:
            x = self.sx(t)
            out.append(f'<line x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{TOP + PLOT_H}" '
                       f'stroke="#f0f0f0"/>')
            out.append(f'<line x1="{x:.1f}" y1="{TOP + PLOT_H}" x2="{x:.1f}" '
                       f'y2="{TOP + PLOT_H + 5}" stroke="#333"/>')
            out.append(f'<text x="{x:.1f}" y="{TOP + PLOT_H + 20}" text-anchor="middle" '
                       f'font-size="12">{escape(xfmt(t))}</text>')
        out.append(f'<text x="{LEFT + PLOT_W / 2}" y="{TOP + PLOT_H + 42}" '
                   f'text-anchor="middle" font-size="13">{escape(xlabel)}</text>')
        ly = TOP + PLOT_H / 2
        out.append(f'<text x="{LEFT - 62}" y="{ly}" text-anchor="middle" font-size="13" '
                   f'transform="rotate(-90 {LEFT - 62} {ly})">{escape(ylabel)}</text>')
        return out

    def polyline(self, points, color, width=2, dash=None, title=None):
        pts = [(x, y) for x, y in points if finite(x) and finite(y)]
        if self.ylog:
            pts = [(x, y) for x, y in pts if y > 0]
        if len(pts) < 2:
            return []
        path = " ".join(f"{self.sx(x):.1f},{self.sy(y):.1f}" for x, y in pts)
        extra = f' stroke-dasharray="{dash}"' if dash else ""
        tip = f"<title>{escape(title)}</title>" if title else ""
        return [f'<polyline points="{path}" fill="none" stroke="{color}" '
                f'stroke-width="{width}"{extra}>{tip}</polyline>']


def document(title, subtitle, body, legend):
    """The whole SVG: title, subtitle, plot elements and a legend."""
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
           f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="Helvetica, Arial, sans-serif">',
           f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
           f'<text x="{WIDTH / 2}" y="26" text-anchor="middle" font-size="17" '
           f'font-weight="bold">{escape(title)}</text>',
           f'<text x="{WIDTH / 2}" y="46" text-anchor="middle" font-size="12" '
           f'fill="#555">{escape(subtitle)}</text>']
    out += body
    # The legend runs along the bottom, clear of the data.
    lx, ly = LEFT, HEIGHT - 14
    for label, color, kind in legend:
        if kind == "box":
            out.append(f'<rect x="{lx}" y="{ly - 9}" width="22" height="10" fill="{color}" '
                       f'fill-opacity="0.35" stroke="{color}"/>')
        elif kind == "dot":
            out.append(f'<circle cx="{lx + 11}" cy="{ly - 4}" r="4" fill="{color}"/>')
        else:
            dash = ' stroke-dasharray="5,4"' if kind == "dash" else ""
            out.append(f'<line x1="{lx}" y1="{ly - 4}" x2="{lx + 22}" y2="{ly - 4}" '
                       f'stroke="{color}" stroke-width="2"{dash}/>')
        out.append(f'<text x="{lx + 30}" y="{ly}" font-size="12">{escape(label)}</text>')
        lx += 50 + 7 * len(label)
    out.append("</svg>")
    return "\n".join(out) + "\n"


def num(v, digits=2):
    return f"{v:.{digits}f}" if finite(v) else "n/a"


def sample_note(report, facts):
    days = facts.get("days", 0)
    symbols = facts.get("symbols", 0)
    return f"{symbols} symbols x {days} days, n = {facts.get('five_min_returns', 0):,} 5-min returns"


def returns_svg(report, facts):
    bins = [(c, d) for c, d in facts["return_histogram"] if finite(c) and finite(d)]
    width = facts.get("return_histogram_bin_width") or (bins[1][0] - bins[0][0] if len(bins) > 1 else 0.2)
    positive = [d for _, d in bins if d > 0]
    limit = max((abs(c) for c, _ in bins), default=8.0) + width / 2
    y_lo = 10 ** math.floor(math.log10(min(positive))) if positive else 1e-5
    y_lo = min(y_lo, 1e-4)
    y_hi = 1.0
    ax = Axes((-limit, limit), (y_lo, y_hi), ylog=True)
    xticks = [v for v in range(-int(limit), int(limit) + 1, 2)]
    yticks = [10.0 ** e for e in range(int(round(math.log10(y_lo))), 1)]
    body = ax.frame(xticks, yticks, "standardised, deseasonalised 5-min return (sd)",
                    "density (log scale)", yfmt=fmt_pow10)
    for c, d in bins:
        if d <= 0:
            continue
        x0, x1 = ax.sx(c - width / 2), ax.sx(c + width / 2)
        y = ax.sy(d)
        body.append(f'<rect x="{x0:.1f}" y="{y:.1f}" width="{x1 - x0:.1f}" '
                    f'height="{TOP + PLOT_H - y:.1f}" fill="{BLUE}" fill-opacity="0.35" '
                    f'stroke="{BLUE}" stroke-width="0.6"/>')
    steps = 400
    normal = [(-limit + 2 * limit * i / steps,
               math.exp(-0.5 * (-limit + 2 * limit * i / steps) ** 2) / math.sqrt(2 * math.pi))
              for i in range(steps + 1)]
    body += ax.polyline([(x, y) for x, y in normal if y >= y_lo], RED, title="N(0, 1)")
    outside = (facts.get("returns_below_histogram") or 0) + (facts.get("returns_above_histogram") or 0)
    subtitle = (f"{sample_note(report, facts)}; excess kurtosis 5 min "
                f"{num(facts.get('kurtosis_5m'))}, 65 min {num(facts.get('kurtosis_65m'))}, "
                f"daily {num(facts.get('kurtosis_daily'))}")
    if outside:
        subtitle += f"; {outside} beyond +-{fmt_num(round(limit, 6))}"
    legend = [("measured", BLUE, "box"), ("standard normal", RED, "line")]
    return document("5-minute returns: heavy tails", subtitle, body, legend)


def acf_svg(report, facts):
    curve = facts["acf_abs_curve"]
    lags = list(range(1, len(curve) + 1))
    small = facts.get("acf_5m_curve") or []
    bound = facts.get("acf_bound")
    values = [v for v in curve + small if finite(v)]
    if finite(bound):
        values += [bound, -bound]
    lo, hi, yticks = linear_ticks(min(values + [0.0]), max(values + [0.05]))
    ax = Axes((0, max(lags + [10])), (lo, hi))
    xticks = [t for t in range(0, max(lags + [10]) + 1, 25)]
    body = ax.frame(xticks, yticks, "lag (5-minute intervals; 78 = one session)",
                    "autocorrelation")
    if finite(bound):
        y0, y1 = ax.sy(bound), ax.sy(-bound)
        body.append(f'<rect x="{LEFT}" y="{y0:.1f}" width="{PLOT_W}" height="{y1 - y0:.1f}" '
                    f'fill="{GREY}" fill-opacity="0.25"/>')
    body.append(f'<line x1="{LEFT}" y1="{ax.sy(0):.1f}" x2="{LEFT + PLOT_W}" '
                f'y2="{ax.sy(0):.1f}" stroke="#333" stroke-width="0.8"/>')
    for day in (78, 156):
        if day <= len(curve):
            x = ax.sx(day)
            body.append(f'<line x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{TOP + PLOT_H}" '
                        f'stroke="{GREY}" stroke-dasharray="3,3"/>')
            body.append(f'<text x="{x + 4:.1f}" y="{TOP + 14}" font-size="11" '
                        f'fill="{GREY}">{day // 78} day{"s" if day > 78 else ""}</text>')
    body += ax.polyline(list(zip(lags, curve)), BLUE, title="acf of |r|")
    for lag, v in enumerate(small, 1):
        if finite(v):
            body.append(f'<circle cx="{ax.sx(lag):.1f}" cy="{ax.sy(v):.1f}" r="3.5" '
                        f'fill="{RED}"><title>lag {lag}: {v:.4f}</title></circle>')
    subtitle = (f"{sample_note(report, facts)}; acf |r| lag 1 {num(facts.get('acf_abs_5m_lag1'), 3)},"
                f" lag 78 {num(facts.get('acf_abs_5m_lag78'), 3)}")
    legend = [("acf of |r|, lags 1-200", BLUE, "line")]
    if small:
        legend.append(("acf of r, lags 1-10", RED, "dot"))
    if finite(bound):
        legend.append((f"+-3/sqrt(n) = +-{bound:.4f}", GREY, "box"))
    return document("Volatility clustering: autocorrelation of 5-minute returns", subtitle,
                    body, legend)


def clock(minutes):
    """Minutes after 09:30 as HH:MM."""
    t = 9 * 60 + 30 + int(round(minutes))
    return f"{t // 60:02d}:{t % 60:02d}"


def intraday_svg(report, facts):
    shape = facts["intraday_shape"]
    values = [v for v in shape if finite(v)]
    _, hi, yticks = linear_ticks(0.0, 1.05 * max(values + [1.5]))
    span = 5 * len(shape)
    ax = Axes((0, span), (0.0, hi))
    xticks = [0] + [m for m in range(30, span + 1, 60)]
    if span not in xticks:
        xticks.append(span)
    body = ax.frame(xticks, yticks, "time of day (New York)",
                    "mean |r| / mean over the day", xfmt=clock)
    x0, x1 = ax.sx(150), ax.sx(240)
    body.append(f'<rect x="{x0:.1f}" y="{TOP}" width="{x1 - x0:.1f}" height="{PLOT_H}" '
                f'fill="{GREEN}" fill-opacity="0.10"/>')
    for slot, v in enumerate(shape):
        if not finite(v):
            continue
        left, right = ax.sx(5 * slot + 0.4), ax.sx(5 * slot + 4.6)
        y = ax.sy(v)
        body.append(f'<rect x="{left:.1f}" y="{y:.1f}" width="{right - left:.1f}" '
                    f'height="{ax.sy(0) - y:.1f}" fill="{BLUE}" fill-opacity="0.6">'
                    f'<title>{clock(5 * slot)}-{clock(5 * slot + 5)}: {v:.3f}</title></rect>')
    body.append(f'<line x1="{LEFT}" y1="{ax.sy(1):.1f}" x2="{LEFT + PLOT_W}" '
                f'y2="{ax.sy(1):.1f}" stroke="{RED}" stroke-dasharray="5,4" stroke-width="1.5"/>')
    subtitle = (f"{sample_note(report, facts)}; first slot / midday {num(facts.get('u_first'))},"
                f" last slot / midday {num(facts.get('u_last'))}")
    legend = [("mean |r| per 5-min slot", BLUE, "box"), ("day mean", RED, "dash"),
              ("midday 12:00-13:30", GREEN, "box")]
    return document("Intraday U-shape of 5-minute volatility", subtitle, body, legend)


def main():
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="Writes market-returns.svg, market-acf.svg and market-intraday.svg.")
    ap.add_argument("input", nargs="?", default="target/market-facts.json",
                    help="JSON report from tickcast-facts [target/market-facts.json]")
    ap.add_argument("--out-dir", default="docs", help="directory for the SVGs [docs]")
    args = ap.parse_args()
    report, facts = load(args.input)
    os.makedirs(args.out_dir, exist_ok=True)
    for name, draw in (("market-returns.svg", returns_svg), ("market-acf.svg", acf_svg),
                       ("market-intraday.svg", intraday_svg)):
        path = os.path.join(args.out_dir, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(draw(report, facts))
        print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
