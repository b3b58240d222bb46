// Canvas drawing: a sparkline per row (the day so far) and the large chart of the selected
// symbol (candles or a line of closes, from server bars). Both are drawn on market time.

import { hm, monthDay, minuteOfDay, et, INTERVALS } from './time.js';

/** Fixed-capacity ring of (time, price) points: memory stays bounded however long the page runs. */
export class Series {
  constructor(capacity = 1024) {
    this.t = new Float64Array(capacity);
    this.v = new Float64Array(capacity);
    this.cap = capacity;
    this.start = 0;
    this.len = 0;
  }

  push(t, v) {
    if (this.len > 0) {
      const last = this.lastTime();
      if (t < last) t = last; // keep time monotonic (events a little out of order)
    }
    const i = (this.start + this.len) % this.cap;
    this.t[i] = t;
    this.v[i] = v;
    if (this.len < this.cap) this.len++;
    else this.start = (this.start + 1) % this.cap;
  }

  /**
   * Adds a point, or moves the newest one if it is in the same `bucket` ms of time: one point
   * per bucket, however many ticks, so a day of minutes fits in the ring.
   */
  update(t, v, bucket) {
    if (this.len > 0) {
      const k = (this.start + this.len - 1) % this.cap;
      const last = this.t[k];
      if (t <= last || Math.floor(t / bucket) === Math.floor(last / bucket)) {
        if (t > last) this.t[k] = t;
        this.v[k] = v;
        return;
      }
    }
    this.push(t, v);
  }

  clear() {
    this.start = 0;
    this.len = 0;
  }

  /** Index (0..len) of the first point at or after time `t`. */
  firstAtOrAfter(t) {
    let lo = 0;
    let hi = this.len;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.t[(this.start + mid) % this.cap] < t) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  timeAt(k) { return this.t[(this.start + k) % this.cap]; }
  valueAt(k) { return this.v[(this.start + k) % this.cap]; }
  lastTime() { return this.len ? this.timeAt(this.len - 1) : 0; }
}

/** Sizes a canvas's backing store for the device pixel ratio; returns the 2D context. */
export function setupCanvas(canvas, cssWidth, cssHeight, dpr = window.devicePixelRatio || 1) {
  const w = Math.max(1, Math.round(cssWidth * dpr));
  const h = Math.max(1, Math.round(cssHeight * dpr));
  if (canvas.width !== w) canvas.width = w;
  if (canvas.height !== h) canvas.height = h;
  const ctx = canvas.getContext('2d');
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  return ctx;
}

/**
 * Sets the context's font only when it differs from the last one set: assigning `font` (and
 * text with an inherited direction) makes the browser bring the whole page's style up to date
 * at once, which would undo the batching of DOM writes into one frame. A resized canvas resets
 * its state, so the font is tracked per backing-store size.
 */
function useFont(ctx, font) {
  const key = `${font}|${ctx.canvas.width}x${ctx.canvas.height}`;
  if (ctx.tickcastFont === key) return;
  ctx.font = font;
  ctx.direction = 'ltr';
  ctx.tickcastFont = key;
}

/**
 * Draws a sparkline of `series` between `t0` and `t1`, with the previous close `base` as a
 * faint dashed line inside the range. Its colour is `dir`, the sign of the day's change, so it
 * always agrees with the change shown beside it.
 */
export function drawSpark(ctx, series, t0, t1, w, h, colors, dir, base) {
  ctx.clearRect(0, 0, w, h);
  const from = series.firstAtOrAfter(t0);
  const n = series.len - from;
  if (n < 1) {
    ctx.strokeStyle = colors.grid;
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.moveTo(2, h / 2 + 0.5);
    ctx.lineTo(w - 2, h / 2 + 0.5);
    ctx.stroke();
    return;
  }
  let lo = Number.isFinite(base) ? base : Infinity;
  let hi = Number.isFinite(base) ? base : -Infinity;
  for (let k = from; k < series.len; k++) {
    const v = series.valueAt(k);
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  if (hi - lo < 1e-9) { hi += 0.5; lo -= 0.5; }
  const pad = 3;
  const span = Math.max(1, t1 - t0);
  const x = (t) => pad + ((Math.min(Math.max(t, t0), t1) - t0) / span) * (w - 2 * pad);
  const y = (v) => pad + (1 - (v - lo) / (hi - lo)) * (h - 2 * pad);
  const color = dir > 0 ? colors.up : dir < 0 ? colors.down : colors.muted;

  if (Number.isFinite(base)) {
    const yy = Math.round(y(base)) + 0.5;
    ctx.setLineDash([2, 3]);
    ctx.strokeStyle = colors.muted;
    ctx.globalAlpha = 0.6;
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.moveTo(pad, yy);
    ctx.lineTo(w - pad, yy);
    ctx.stroke();
    ctx.setLineDash([]);
    ctx.globalAlpha = 1;
  }

  const startX = x(series.timeAt(from));
  const endX = x(series.timeAt(series.len - 1));
  const endY = y(series.valueAt(series.len - 1));
  ctx.beginPath();
  ctx.moveTo(startX, y(series.valueAt(from)));
  for (let k = from + 1; k < series.len; k++) ctx.lineTo(x(series.timeAt(k)), y(series.valueAt(k)));
  ctx.lineJoin = 'round';
  ctx.lineWidth = 1.5;
  ctx.strokeStyle = color;
  ctx.stroke();
  ctx.lineTo(endX, h);
  ctx.lineTo(startX, h);
  ctx.closePath();
  ctx.globalAlpha = 0.14;
  ctx.fillStyle = color;
  ctx.fill();
  ctx.globalAlpha = 1;
  ctx.beginPath();
  ctx.arc(endX, endY, 2, 0, Math.PI * 2);
  ctx.fill();
}

const NICE = [1, 2, 2.5, 5, 10];

/** A round step near `raw` (1, 2, 2.5 or 5 times a power of ten). */
export function niceStep(raw) {
  if (!(raw > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(raw));
  const f = raw / p;
  return NICE.find((m) => m >= f - 1e-9) * p;
}

/** Minutes between time labels, tried in order until labels are far enough apart. */
const LABEL_MINUTES = [1, 2, 5, 10, 15, 30, 60, 120, 180, 240, 480];
const LABEL_GAP_PX = 76;

/**
 * Which bars get a time label (and a grid line): round times of day, the first bar of each day
 * (labelled with its date), and for daily bars the first of each week or month.
 */
function timeLabels(bars, interval, slotW) {
  const out = [];
  if (!bars.length) return out;
  const perLabel = Math.ceil(LABEL_GAP_PX / slotW); // bars between labels, at least
  let lastX = -Infinity;
  if (interval === '1d') {
    const rule = perLabel <= 1 ? 'day' : perLabel <= 5 ? 'week' : perLabel <= 22 ? 'month' : 'quarter';
    let prev = null;
    bars.forEach((b, i) => {
      const d = et(b.t);
      let mark = rule === 'day' || i === 0;
      if (prev) {
        if (rule === 'week') mark = d.weekday < prev.weekday || b.t - bars[i - 1].t > 4 * 86_400_000;
        if (rule === 'month') mark = d.month !== prev.month;
        if (rule === 'quarter') mark = d.month !== prev.month && (d.month - 1) % 3 === 0;
      }
      prev = d;
      if (mark && i - lastX >= perLabel) {
        out.push([i, monthDay(b.t)]);
        lastX = i;
      }
    });
    return out;
  }
  const barMin = INTERVALS[interval] / 60_000;
  // Minutes a slot stands for: more than a bar's length when bars are missing (no trades in
  // that minute), which is common in a quiet market or at a high --speed.
  const span = bars.length > 1 ? (bars[bars.length - 1].t - bars[0].t) / 60_000 / (bars.length - 1) : barMin;
  const slotMin = Math.max(barMin, Math.min(span, 24 * 60));
  const every = LABEL_MINUTES.find((m) => m >= barMin && (m / slotMin) * slotW >= LABEL_GAP_PX) || 1440;
  // A label on the first bar of each round period, named after the period (12:00 marks the
  // first bar at or after 12:00), and on the first bar of each day, with its date.
  let prevDay = '';
  let prevPeriod = NaN;
  bars.forEach((b, i) => {
    const day = monthDay(b.t);
    const period = Math.floor(minuteOfDay(b.t) / every);
    const newDay = prevDay && day !== prevDay;
    const newPeriod = i === 0 ? minuteOfDay(b.t) % every === 0 : period !== prevPeriod;
    prevDay = day;
    prevPeriod = period;
    if (i - lastX < perLabel) return;
    if (newDay) {
      out.push([i, day]);
      lastX = i;
    } else if (newPeriod) {
      out.push([i, hm(b.t - (minuteOfDay(b.t) % every) * 60_000)]);
      lastX = i;
    }
  });
  return out;
}

/**
 * The large chart: bars in slots from the left (market time, sessions back to back, no gaps
 * for nights), price axis on the right, time labels in ET below, volume bars, the previous
 * close, the LULD bands and the last price tagged on the axis. `opts`:
 *   bars ({t, o, h, l, c, v}, oldest first), slots, mode ('candles' | 'line'), interval,
 *   w, h, colors, decimals, last (string, as sent), lastValue, prevClose, bands {up, down},
 *   halted, message (shown when there are no bars), font
 * Returns the price range drawn, or null when there was nothing to draw.
 */
export function drawChart(ctx, opts) {
  const { bars, mode, w, h, colors, decimals } = opts;
  ctx.clearRect(0, 0, w, h);
  const font = opts.font || 'system-ui, sans-serif';
  const padL = 8;
  const padR = 66;
  const padT = 12;
  const padB = 24;
  const plotW = Math.max(10, w - padL - padR);
  const plotH = Math.max(10, h - padT - padB);
  const volH = Math.round(plotH * 0.16);
  const priceH = plotH - volH - 6;
  useFont(ctx, `12px ${font}`);
  ctx.textBaseline = 'middle';

  let lo = Infinity;
  let hi = -Infinity;
  for (const b of bars) {
    if (b.l < lo) lo = b.l;
    if (b.h > hi) hi = b.h;
  }
  const lastV = Number.isFinite(opts.lastValue) ? opts.lastValue : bars[bars.length - 1]?.c;
  if (bars.length && Number.isFinite(lastV)) {
    if (lastV < lo) lo = lastV;
    if (lastV > hi) hi = lastV;
  }
  if (!Number.isFinite(lo)) {
    ctx.fillStyle = colors.muted;
    ctx.textAlign = 'center';
    ctx.fillText(opts.message || 'Waiting for trades…', padL + plotW / 2, padT + plotH / 2);
    return null;
  }
  const mid = (hi + lo) / 2;
  const minSpan = Math.max(Math.abs(mid) * 0.002, 10 ** -decimals * 4);
  if (hi - lo < minSpan) { hi = mid + minSpan / 2; lo = mid - minSpan / 2; }
  // The LULD bands join the range when that keeps the bars readable; otherwise they are tagged
  // at the edge they lie beyond.
  const bands = opts.bands || {};
  const dataSpan = hi - lo;
  for (const b of [bands.up, bands.down]) {
    if (!Number.isFinite(b)) continue;
    const nlo = Math.min(lo, b);
    const nhi = Math.max(hi, b);
    if (nhi - nlo <= dataSpan * 2.5) { lo = nlo; hi = nhi; }
  }
  const margin = (hi - lo) * 0.08;
  hi += margin;
  lo -= margin;
  const step = niceStep((hi - lo) / Math.max(2, Math.floor(priceH / 46)));
  const labelDecimals = Math.max(decimals, Math.min(6, Math.max(0, -Math.floor(Math.log10(step) + 1e-9))));
  const slots = Math.max(opts.slots || bars.length, bars.length, 1);
  const slotW = plotW / slots;
  const x = (i) => padL + (i + 0.5) * slotW;
  const y = (v) => padT + (1 - (v - lo) / (hi - lo)) * priceH;

  const tagY = Number.isFinite(lastV)
    ? Math.round(Math.min(Math.max(y(lastV), padT + 8), padT + priceH)) + 0.5
    : -Infinity;

  // Grid and price labels (except where the last-price tag will sit).
  ctx.lineWidth = 1;
  ctx.strokeStyle = colors.grid;
  ctx.fillStyle = colors.muted;
  ctx.textAlign = 'left';
  ctx.beginPath();
  for (let v = Math.ceil(lo / step) * step; v <= hi; v += step) {
    const yy = Math.round(y(v)) + 0.5;
    ctx.moveTo(padL, yy);
    ctx.lineTo(padL + plotW, yy);
    if (Math.abs(yy - tagY) > 14) ctx.fillText(v.toFixed(labelDecimals), padL + plotW + 8, yy);
  }
  // Time grid and labels, in ET.
  ctx.textAlign = 'center';
  ctx.textBaseline = 'top';
  for (const [i, label] of timeLabels(bars, opts.interval, slotW)) {
    const xx = Math.round(x(i)) + 0.5;
    ctx.moveTo(xx, padT);
    ctx.lineTo(xx, padT + plotH);
    const tw = ctx.measureText(label).width / 2;
    ctx.fillText(label, Math.min(Math.max(xx, padL + tw), padL + plotW - tw), padT + plotH + 7);
  }
  ctx.stroke();
  ctx.strokeStyle = colors.axis;
  ctx.beginPath();
  ctx.moveTo(padL, padT + plotH + 0.5);
  ctx.lineTo(padL + plotW, padT + plotH + 0.5);
  ctx.stroke();

  ctx.save();
  ctx.beginPath();
  ctx.rect(padL, padT, plotW, plotH);
  ctx.clip();

  // Volume bars, at the bottom of the plot.
  let vmax = 0;
  for (const b of bars) if (b.v > vmax) vmax = b.v;
  if (vmax > 0) {
    ctx.fillStyle = colors.volume;
    bars.forEach((b, i) => {
      const bh = (b.v / vmax) * volH;
      ctx.fillRect(x(i) - slotW * 0.3, padT + plotH - bh, Math.max(1, slotW * 0.6), bh);
    });
  }

  // Previous close, dashed, when it falls inside the range.
  ctx.textAlign = 'left';
  ctx.textBaseline = 'bottom';
  if (Number.isFinite(opts.prevClose) && opts.prevClose > lo && opts.prevClose < hi) {
    const yy = Math.round(y(opts.prevClose)) + 0.5;
    ctx.setLineDash([2, 4]);
    ctx.strokeStyle = colors.muted;
    ctx.beginPath();
    ctx.moveTo(padL, yy);
    ctx.lineTo(padL + plotW, yy);
    ctx.stroke();
    ctx.setLineDash([]);
    ctx.fillStyle = colors.muted;
    ctx.fillText('prev close', padL + 6, yy - 3);
  }

  // LULD bands: a line when in range, otherwise a tag at the edge they lie beyond.
  for (const [value, name] of [[bands.up, 'limit up'], [bands.down, 'limit down']]) {
    if (!Number.isFinite(value)) continue;
    const label = `${name} ${value.toFixed(decimals)}`;
    ctx.fillStyle = colors.warn;
    if (value > lo && value < hi) {
      const yy = Math.round(y(value)) + 0.5;
      ctx.setLineDash([6, 4]);
      ctx.strokeStyle = colors.warn;
      ctx.beginPath();
      ctx.moveTo(padL, yy);
      ctx.lineTo(padL + plotW, yy);
      ctx.stroke();
      ctx.setLineDash([]);
      ctx.textBaseline = value > lastV ? 'top' : 'bottom';
      ctx.fillText(label, padL + 6, value > lastV ? yy + 3 : yy - 3);
    } else {
      const above = value >= hi;
      ctx.textBaseline = above ? 'top' : 'bottom';
      ctx.fillText(`${above ? '↑' : '↓'} ${label}`, padL + 6, above ? padT + 2 : padT + priceH - 2);
    }
  }

  const lastUp = Number.isFinite(opts.prevClose) ? lastV >= opts.prevClose : true;
  if (mode === 'candles') {
    const bw = Math.max(1, Math.min(16, slotW * 0.64));
    bars.forEach((b, i) => {
      const cx = Math.round(x(i)) + 0.5;
      const up = b.c >= b.o;
      const color = up ? colors.up : colors.down;
      ctx.strokeStyle = color;
      ctx.fillStyle = color;
      ctx.lineWidth = 1;
      ctx.beginPath();
      ctx.moveTo(cx, y(b.h));
      ctx.lineTo(cx, y(b.l));
      ctx.stroke();
      const top = y(Math.max(b.o, b.c));
      const bh = Math.max(1, y(Math.min(b.o, b.c)) - top);
      // Rising candles hollow, falling ones filled: readable without colour.
      if (up) {
        ctx.fillStyle = colors.surface;
        ctx.fillRect(cx - bw / 2, top, bw, bh);
        ctx.strokeRect(cx - bw / 2, top, bw, bh);
      } else {
        ctx.fillRect(cx - bw / 2, top, bw, bh);
      }
    });
  } else {
    const color = lastUp ? colors.up : colors.down;
    const n = bars.length;
    ctx.beginPath();
    ctx.moveTo(x(0), y(bars[0].c));
    for (let i = 1; i < n; i++) ctx.lineTo(x(i), y(bars[i].c));
    const endX = x(n - 1);
    ctx.lineTo(endX, y(lastV)); // the open bar ends at the last price
    ctx.lineJoin = 'round';
    ctx.lineWidth = 2;
    ctx.strokeStyle = color;
    ctx.stroke();
    ctx.lineTo(endX, padT + priceH);
    ctx.lineTo(x(0), padT + priceH);
    ctx.closePath();
    const g = ctx.createLinearGradient(0, padT, 0, padT + priceH);
    g.addColorStop(0, colors[lastUp ? 'upFill' : 'downFill']);
    g.addColorStop(1, 'rgba(0,0,0,0)');
    ctx.fillStyle = g;
    ctx.fill();
    ctx.fillStyle = color;
    ctx.beginPath();
    ctx.arc(endX, y(lastV), 3.5, 0, Math.PI * 2);
    ctx.fill();
  }

  if (opts.halted) {
    ctx.fillStyle = colors.warn;
    ctx.textAlign = 'right';
    ctx.textBaseline = 'top';
    ctx.fillText('Trading halted', padL + plotW - 6, padT + 4);
  }
  ctx.restore();

  // The last price: a dotted line and a tag on the price axis, with the price exactly as sent.
  if (Number.isFinite(lastV)) {
    const yy = tagY;
    const color = lastUp ? colors.up : colors.down;
    ctx.setLineDash([1, 3]);
    ctx.strokeStyle = color;
    ctx.beginPath();
    ctx.moveTo(padL, yy);
    ctx.lineTo(padL + plotW, yy);
    ctx.stroke();
    ctx.setLineDash([]);
    const label = opts.last || lastV.toFixed(decimals);
    const tw = ctx.measureText(label).width + 12;
    ctx.fillStyle = color;
    roundRect(ctx, padL + plotW + 2, yy - 10, Math.min(tw, padR - 4), 20, 4);
    ctx.fill();
    ctx.fillStyle = colors.onAccent;
    ctx.textAlign = 'left';
    ctx.textBaseline = 'middle';
    ctx.fillText(label, padL + plotW + 8, yy + 0.5);
  }
  return { lo, hi };
}

function roundRect(ctx, x, y, w, h, r) {
  ctx.beginPath();
  ctx.moveTo(x + r, y);
  ctx.arcTo(x + w, y, x + w, y + h, r);
  ctx.arcTo(x + w, y + h, x, y + h, r);
  ctx.arcTo(x, y + h, x, y, r);
  ctx.arcTo(x, y, x + w, y, r);
  ctx.closePath();
}
