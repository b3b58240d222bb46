// The candles of the chart: history from GET /bars, then live from `bar` and `trade` events.
//
// A series of interval X is kept as two parts:
//   closed   finished X bars from the server, exact, older than `from`;
//   minutes  one-minute bars from `from` on: the server's closed minutes (from /bars and `bar`
//            events, which are the authority) and the open minute, built here from trades.
// The X bars from `from` on are aggregated from the minutes the way the server does it (first
// open, highest high, lowest low, last close, summed volume and trades, volume-weighted VWAP),
// so they match what /bars would answer; an open minute that the page saw only part of (it
// loaded mid-minute) is set right by its `bar` event when the minute closes.

import { bucketStart, MINUTE_MS } from './time.js';

/** Closed bars kept per series; older ones are dropped. */
const MAX_CLOSED = 2000;
/** Minutes kept before whole buckets are folded into `closed`. */
const MAX_MINUTES = 1500;

/** A bar of /bars or a `bar` event, with numbers for drawing. */
export function parseBar(b) {
  return {
    t: b.start,
    o: parseFloat(b.open),
    h: parseFloat(b.high),
    l: parseFloat(b.low),
    c: parseFloat(b.close),
    v: b.volume,
    n: b.trades,
    vwap: parseFloat(b.vwap),
    final: !b.partial,
  };
}

function copy(b, t = b.t) {
  return { t, o: b.o, h: b.h, l: b.l, c: b.c, v: b.v, n: b.n, vwap: b.vwap, final: b.final };
}

function merge(into, next) {
  const v = into.v + next.v;
  if (v > 0) into.vwap = (into.vwap * into.v + next.vwap * next.v) / v;
  if (next.h > into.h) into.h = next.h;
  if (next.l < into.l) into.l = next.l;
  into.c = next.c;
  into.v = v;
  into.n += next.n;
  into.final = into.final && next.final;
}

/** Minute bars (ascending) merged into bars of `interval`. */
function aggregate(minutes, interval) {
  const out = [];
  for (const m of minutes) {
    const start = interval === '1m' ? m.t : bucketStart(interval, m.t);
    const last = out[out.length - 1];
    if (last && last.t === start) merge(last, m);
    else out.push(copy(m, start));
  }
  return out;
}

export class BarSeries {
  constructor(symbol, interval) {
    this.symbol = symbol;
    this.interval = interval;
    this.closed = [];
    this.minutes = [];
    this.from = Infinity;
    this.ready = false;
    this.failed = '';
    /** Events that arrived while the history was loading, applied once it is in. */
    this.pending = [];
    this.version = 0;
    this.aggVersion = -1;
    this.agg = [];
    /** For tests and the text alternative: how many bars came from history, and when live
     * data arrived. */
    this.historyBars = 0;
    this.liveBars = 0;
    this.liveTrades = 0;
    this.barsAtFirstLiveBar = -1;
  }

  /**
   * The history: `xBars` of this series' interval from /bars (ascending, the still-open one
   * marked partial), and for intervals longer than a minute the one-minute bars from the
   * start of that open bar on.
   */
  load(xBars, minuteBars = []) {
    const bars = xBars.map(parseBar);
    const partial = bars.length && !bars[bars.length - 1].final ? bars[bars.length - 1] : null;
    if (partial) this.from = partial.t;
    else this.from = bars.length ? bars[bars.length - 1].t + 1 : -Infinity;
    this.closed = bars.filter((b) => b.t < this.from).slice(-MAX_CLOSED);
    if (this.interval === '1m') this.minutes = partial ? [partial] : [];
    else this.minutes = minuteBars.map(parseBar).filter((m) => m.t >= this.from);
    this.ready = true;
    this.version++;
    this.historyBars = this.count();
    const pending = this.pending;
    this.pending = [];
    for (const [kind, a, b, c] of pending) {
      if (kind === 'bar') this.bar(a);
      else this.trade(a, b, c);
    }
  }

  /** Loading failed; the series still follows live data. */
  fail(message) {
    this.failed = message;
    this.load([]);
  }

  /** A `bar` event: a closed one-minute bar, which replaces what the trades built. */
  bar(raw) {
    if (!this.ready) {
      this.pending.push(['bar', raw]);
      return;
    }
    if (this.barsAtFirstLiveBar < 0) this.barsAtFirstLiveBar = this.count();
    this.liveBars++;
    const m = parseBar(raw);
    m.final = true;
    if (m.t < this.from) return;
    const minutes = this.minutes;
    let i = minutes.length - 1;
    while (i >= 0 && minutes[i].t > m.t) i--;
    if (i >= 0 && minutes[i].t === m.t) minutes[i] = m;
    else minutes.splice(i + 1, 0, m);
    this.#changed();
  }

  /** A `trade` event: extends the open minute, or opens the next one. */
  trade(marketTs, price, size) {
    if (!this.ready) {
      this.pending.push(['trade', marketTs, price, size]);
      return;
    }
    this.liveTrades++;
    const t = marketTs - (((marketTs % MINUTE_MS) + MINUTE_MS) % MINUTE_MS);
    if (t < this.from) return;
    const last = this.minutes[this.minutes.length - 1];
    if (last && last.t === t) {
      if (last.final) return; // its bar event came already and counted it
      if (price > last.h) last.h = price;
      if (price < last.l) last.l = price;
      last.c = price;
      last.vwap = (last.vwap * last.v + price * size) / (last.v + size || 1);
      last.v += size;
      last.n++;
    } else if (!last || t > last.t) {
      this.minutes.push({ t, o: price, h: price, l: price, c: price, v: size, n: 1, vwap: price, final: false });
    } else {
      return; // later than a newer minute: already in that minute's bar
    }
    this.#changed();
  }

  /** Number of bars of the series. */
  count() {
    return this.closed.length + this.#aggregated().length;
  }

  /** The last `n` bars, oldest first. */
  last(n) {
    const agg = this.#aggregated();
    if (agg.length >= n) return agg.slice(agg.length - n);
    const k = Math.min(this.closed.length, n - agg.length);
    return this.closed.slice(this.closed.length - k).concat(agg);
  }

  /** The newest bar, if any. */
  newest() {
    const agg = this.#aggregated();
    return agg[agg.length - 1] || this.closed[this.closed.length - 1];
  }

  #aggregated() {
    if (this.aggVersion !== this.version) {
      this.agg = aggregate(this.minutes, this.interval);
      this.aggVersion = this.version;
    }
    return this.agg;
  }

  #changed() {
    this.version++;
    if (this.minutes.length > MAX_MINUTES) this.#compact();
  }

  /** Folds the minutes of finished buckets into `closed`: memory stays bounded. */
  #compact() {
    const keepFrom = this.minutes.length - Math.floor(MAX_MINUTES / 2);
    const cut = this.interval === '1m'
      ? this.minutes[keepFrom].t
      : bucketStart(this.interval, this.minutes[keepFrom].t);
    const old = this.minutes.filter((m) => m.t < cut);
    if (!old.length) return;
    this.minutes = this.minutes.filter((m) => m.t >= cut);
    this.closed.push(...aggregate(old, this.interval));
    if (this.closed.length > MAX_CLOSED) this.closed.splice(0, this.closed.length - MAX_CLOSED);
    this.from = cut;
    this.version++;
  }
}
