// Bounded price history and the two canvas charts: a sparkline per row and the large chart
// of the selected symbol (line, or 5-second candles aggregated here in the browser).

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
      const last = this.t[(this.start + this.len - 1) % this.cap];
      if (t < last) t = last; // keep time monotonic (a restarted server, a skewed clock)
    }
    const i = (this.start + this.len) % this.cap;
    this.t[i] = t;
    this.v[i] = v;
    if (this.len < this.cap) this.len++;
    else this.start = (this.start + 1) % this.cap;
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

/** OHLC candles of a fixed width, built incrementally from ticks; a bounded ring too. */
export class Candles {
  constructor(widthMs = 5000, capacity = 90) {
    this.width = widthMs;
    this.cap = capacity;
    this.items = []; // {t, o, h, l, c, v}; at most `cap`, oldest first
    this.lastVolume = -1;
  }

  push(ts, price, volume) {
    const t = Math.floor(ts / this.width) * this.width;
    const delta = this.lastVolume >= 0 && volume >= this.lastVolume ? volume - this.lastVolume : 0;
    this.lastVolume = volume;
    const last = this.items[this.items.length - 1];
    if (last && t <= last.t) {
      // Same bucket (or a late tick): fold into the newest candle.
      if (price > last.h) last.h = price;
      if (price < last.l) last.l = price;
      last.c = price;
      last.v += delta;
      return;
    }
    if (this.items.length >= this.cap) this.items.shift();
    this.items.push({ t, o: last ? last.c : price, h: price, l: price, c: price, v: delta });
    const made = this.items[this.items.length - 1];
    if (made.o > made.h) made.h = made.o;
    if (made.o < made.l) made.l = made.o;
  }
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
 * Draws a sparkline of `series` between `t0` and `t1`: green/up if the window ends higher than
 * it started, red/down otherwise, with a faint fill and a dot on the newest point.
 */
export function drawSpark(ctx, series, t0, t1, w, h, colors) {
  ctx.clearRect(0, 0, w, h);
  const from = Math.max(0, series.firstAtOrAfter(t0) - 1);
  const n = series.len - from;
  if (n < 2) {
    ctx.strokeStyle = colors.grid;
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.moveTo(2, h / 2 + 0.5);
    ctx.lineTo(w - 2, h / 2 + 0.5);
    ctx.stroke();
    return;
  }
  let lo = Infinity;
  let hi = -Infinity;
  for (let k = from; k < series.len; k++) {
    const v = series.valueAt(k);
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  if (hi - lo < 1e-9) { hi += 0.5; lo -= 0.5; }
  const pad = 3;
  const span = t1 - t0;
  const x = (t) => pad + ((Math.max(t, t0) - t0) / span) * (w - 2 * pad);
  const y = (v) => pad + (1 - (v - lo) / (hi - lo)) * (h - 2 * pad);
  const up = series.valueAt(series.len - 1) >= series.valueAt(from);
  const color = up ? colors.up : colors.down;

  ctx.beginPath();
  ctx.moveTo(x(series.timeAt(from)), y(series.valueAt(from)));
  for (let k = from + 1; k < series.len; k++) ctx.lineTo(x(series.timeAt(k)), y(series.valueAt(k)));
  const endX = x(series.timeAt(series.len - 1));
  const endY = y(series.valueAt(series.len - 1));
  ctx.lineJoin = 'round';
  ctx.lineWidth = 1.5;
  ctx.strokeStyle = color;
  ctx.stroke();
  ctx.lineTo(endX, h);
  ctx.lineTo(x(series.timeAt(from)), h);
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

const TIME_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600].map((s) => s * 1000);

function timeLabel(t, stepMs) {
  const d = new Date(t);
  const hh = String(d.getHours()).padStart(2, '0');
  const mm = String(d.getMinutes()).padStart(2, '0');
  if (stepMs >= 60_000) return `${hh}:${mm}`;
  return `${hh}:${mm}:${String(d.getSeconds()).padStart(2, '0')}`;
}

/**
 * The large chart: price axis on the right, time axis below, volume bars, the previous close
 * and the last price marked. `opts`:
 *   series, candles, mode ('line' | 'candles'), t0, t1, w, h, colors, decimals,
 *   last (string, as sent), prevClose (number), font
 */
export function drawChart(ctx, opts) {
  const { series, candles, mode, t0, t1, w, h, colors, decimals } = opts;
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

  // Visible data and its range.
  const from = Math.max(0, series.firstAtOrAfter(t0) - 1);
  const visCandles = candles.items.filter((c) => c.t + candles.width > t0);
  let lo = Infinity;
  let hi = -Infinity;
  if (mode === 'candles') {
    for (const c of visCandles) { if (c.l < lo) lo = c.l; if (c.h > hi) hi = c.h; }
  } else {
    for (let k = from; k < series.len; k++) {
      const v = series.valueAt(k);
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
  }
  useFont(ctx, `12px ${font}`);
  ctx.textBaseline = 'middle';
  if (!Number.isFinite(lo)) {
    ctx.fillStyle = colors.muted;
    ctx.textAlign = 'center';
    ctx.fillText('Waiting for quotes…', padL + plotW / 2, padT + plotH / 2);
    return null;
  }
  const mid = (hi + lo) / 2;
  const minSpan = Math.max(Math.abs(mid) * 0.002, 10 ** -decimals * 4);
  if (hi - lo < minSpan) { hi = mid + minSpan / 2; lo = mid - minSpan / 2; }
  const margin = (hi - lo) * 0.08;
  hi += margin;
  lo -= margin;
  const step = niceStep((hi - lo) / Math.max(2, Math.floor(priceH / 46)));
  const labelDecimals = Math.max(decimals, Math.min(6, Math.max(0, -Math.floor(Math.log10(step) + 1e-9))));
  const x = (t) => padL + ((t - t0) / (t1 - t0)) * plotW;
  const y = (v) => padT + (1 - (v - lo) / (hi - lo)) * priceH;

  const lastV = series.len ? series.valueAt(series.len - 1) : visCandles.at(-1)?.c;
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
  // Time grid and labels.
  const tStep = TIME_STEPS.find((s) => (s / (t1 - t0)) * plotW >= 84) || TIME_STEPS[TIME_STEPS.length - 1];
  ctx.textAlign = 'center';
  ctx.textBaseline = 'top';
  for (let t = Math.ceil(t0 / tStep) * tStep; t <= t1; t += tStep) {
    const xx = Math.round(x(t)) + 0.5;
    ctx.moveTo(xx, padT);
    ctx.lineTo(xx, padT + plotH);
    if (xx > padL + 24 && xx < padL + plotW - 24) ctx.fillText(timeLabel(t, tStep), xx, padT + plotH + 7);
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

  // Volume bars per candle, at the bottom of the plot.
  let vmax = 0;
  for (const c of visCandles) if (c.v > vmax) vmax = c.v;
  const cw = (candles.width / (t1 - t0)) * plotW;
  if (vmax > 0) {
    ctx.fillStyle = colors.volume;
    for (const c of visCandles) {
      const bh = (c.v / vmax) * volH;
      ctx.fillRect(x(c.t) + cw * 0.2, padT + plotH - bh, Math.max(1, cw * 0.6), bh);
    }
  }

  // Previous close, dashed, when it falls inside the range.
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
    ctx.textAlign = 'left';
    ctx.textBaseline = 'bottom';
    ctx.fillText('prev close', padL + 6, yy - 3);
  }

  const lastUp = Number.isFinite(opts.prevClose) ? lastV >= opts.prevClose : true;
  if (mode === 'candles') {
    const bw = Math.max(1, Math.min(14, cw * 0.62));
    for (const c of visCandles) {
      const cx = Math.round(x(c.t + candles.width / 2)) + 0.5;
      const up = c.c >= c.o;
      const color = up ? colors.up : colors.down;
      ctx.strokeStyle = color;
      ctx.fillStyle = color;
      ctx.lineWidth = 1;
      ctx.beginPath();
      ctx.moveTo(cx, y(c.h));
      ctx.lineTo(cx, y(c.l));
      ctx.stroke();
      const top = y(Math.max(c.o, c.c));
      const bh = Math.max(1, y(Math.min(c.o, c.c)) - top);
      // Rising candles hollow, falling ones filled: readable without colour.
      if (up) {
        ctx.fillStyle = colors.surface;
        ctx.fillRect(cx - bw / 2, top, bw, bh);
        ctx.strokeRect(cx - bw / 2, top, bw, bh);
      } else {
        ctx.fillRect(cx - bw / 2, top, bw, bh);
      }
    }
  } else if (series.len - from >= 1) {
    const color = lastUp ? colors.up : colors.down;
    ctx.beginPath();
    ctx.moveTo(x(series.timeAt(from)), y(series.valueAt(from)));
    for (let k = from + 1; k < series.len; k++) ctx.lineTo(x(series.timeAt(k)), y(series.valueAt(k)));
    const endX = x(series.timeAt(series.len - 1));
    ctx.lineTo(endX, y(lastV)); // hold the last price flat up to now
    ctx.lineTo(padL + plotW, y(lastV));
    ctx.lineJoin = 'round';
    ctx.lineWidth = 2;
    ctx.strokeStyle = color;
    ctx.stroke();
    ctx.lineTo(padL + plotW, padT + priceH);
    ctx.lineTo(x(series.timeAt(from)), padT + priceH);
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
