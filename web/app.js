// tickcast dashboard: watchlist, chart, time and sales, market clock and halts, fed by one
// EventSource.
//
// Events only change state (the latest quote, bounded histories, the chart's bars) and mark
// what changed; the DOM and the canvases are written once per animation frame, for what
// changed. Nothing in the render path reads layout, so a frame costs the same at 2 or 2,000
// events per second.

import { Feed, State } from './feed.js';
import { Series, setupCanvas, drawSpark, drawChart } from './chart.js';
import { BarSeries } from './bars.js';
import { MarketClock, INTERVALS, MINUTE_MS, atTimeOfDay, duration, hm, hms, monthDay, weekdayHm } from './time.js';
import { createPicker } from './picker.js';

const DEFAULT_SYMBOLS = ['AAPL', 'MSFT', 'NVDA', 'AMZN', 'GOOGL', 'META', 'TSLA', 'JPM', 'V', 'NFLX', 'AMD', 'SPY'];
const STORAGE_KEY = 'tickcast.watchlist';
const SPARK_W = 112;
const SPARK_H = 28;
/** Sparklines keep one point per market minute: a whole day (16 h) fits in the ring. */
const SPARK_POINTS = 1024;
const SPARK_BUCKET_MS = MINUTE_MS;
/** Sparkline history comes as 5-minute bars: a day of all 120 symbols in one small answer. */
const SPARK_HISTORY_INTERVAL = '5m';
/** Bars of history the chart asks for (the screen shows what fits). */
const CHART_HISTORY_BARS = 600;
/** The chart leaves room for this many bars before it starts to scroll. */
const CHART_MIN_SLOTS = 60;
const CHART_MIN_BAR_PX = 6;
/** Trades kept per symbol, and rows of the time-and-sales table. */
const TAPE_ROWS = 40;
/** A LULD trading pause lasts five minutes of market time. */
const LULD_PAUSE_MS = 5 * MINUTE_MS;
const FLASH_GAP_MS = 250;

const $ = (sel) => document.querySelector(sel);
const el = {
  conn: $('#conn'),
  connLabel: $('#conn-label'),
  connAge: $('#conn-age'),
  connRate: $('#conn-rate'),
  clock: $('#clock'),
  clockState: $('#clock-state'),
  clockTime: $('#clock-time'),
  clockNext: $('#clock-next'),
  tbody: $('#quotes-body'),
  empty: $('#empty'),
  count: $('#watch-count'),
  rowTemplate: $('#row-template'),
  streamUrl: $('#stream-url'),
  chart: $('#chart'),
  chartBox: document.querySelector('.chart-box'),
  chartSymbol: $('#chart-symbol'),
  chartName: $('#chart-name'),
  chartPrice: $('#chart-price'),
  chartChange: $('#chart-change'),
  chartHalt: $('#chart-halt'),
  chartHaltReason: $('#chart-halt-reason'),
  chartHaltTime: $('#chart-halt-time'),
  tapeSymbol: $('#tape-symbol'),
  tapeBody: $('#tape-body'),
  tapeEmpty: $('#tape-empty'),
  announcer: $('#announcer'),
  stat: {
    open: $('#stat-open'),
    prev: $('#stat-prev'),
    high: $('#stat-high'),
    low: $('#stat-low'),
    bid: $('#stat-bid'),
    ask: $('#stat-ask'),
    vol: $('#stat-vol'),
    band: $('#stat-band'),
  },
};

const intFmt = new Intl.NumberFormat('en-US');

const HALT_REASONS = {
  luld_pause: 'LULD pause',
  circuit_breaker: 'Circuit breaker',
  requested: 'Requested halt',
};

const CONDITIONS = {
  O: 'Opening print',
  C: 'Closing print',
  R: 'Reopening print after a halt',
  I: 'Odd lot, under 100 shares',
  T: 'Extended hours',
};

const SESSION_LABEL = {
  pre: 'Pre-market',
  open: 'Market open',
  post: 'After hours',
  closed: 'Market closed',
};

// ---- state ---------------------------------------------------------------------------------

/** symbol -> {symbol, name, ...} from GET /symbols. */
let catalog = new Map();
/** The watchlist, in display order. */
let watchlist = [];
/** symbol -> Row (state and DOM of one table row). */
const rows = new Map();
/** Rows changed since the last frame. */
const dirty = new Set();
let selected = '';
let chartMode = 'candles';
let chartInterval = '1m';
/** The bars of the selected symbol at the chosen interval. */
let chartBars = null;
/** The previous bars, shown while `chartBars` loads if they are of the same chart. */
let chartPrev = null;
let chartDirty = true;
let tapeDirty = true;
let frameRequested = false;
let chartSize = { w: 0, h: 0 };
let colors = readColors();
let ignored = 0;
let applied = 0;
let renders = 0;
const clock = new MarketClock();
/** Whether the current EventSource has delivered its snapshot: history loaded from then on
 * joins the stream without a gap. */
let streamReady = false;
let streamSource = 0;
let sparkWindow = [0, 0];
let sparkLoads = 0;
/** Times the page dropped its histories for a server on an earlier market time. */
let resets = 0;

function num(s) {
  return s === null || s === undefined ? NaN : parseFloat(s);
}

class Row {
  constructor(symbol) {
    this.symbol = symbol;
    this.q = null;
    this.last = NaN;
    this.dir = 0;
    this.flip = 0;
    this.flashClass = '';
    this.flashAt = -Infinity;
    this.spark = new Series(SPARK_POINTS);
    this.sparkLoaded = false;
    this.decimals = 2;
    this.status = '';
    /** {reason, since, until}: market times; `until` only when the length is known. */
    this.halt = null;
    this.bands = { up: NaN, down: NaN };
    /** The latest trades, as the JSON text they came in (parsed only when shown). */
    this.trades = [];
    this.shown = {}; // what the DOM currently shows, so unchanged cells are not written

    const tr = el.rowTemplate.content.firstElementChild.cloneNode(true);
    tr.dataset.symbol = symbol;
    const meta = catalog.get(symbol);
    this.label = `${symbol}${meta ? ', ' + meta.name : ''}`;
    tr.querySelector('.sym-code').textContent = symbol;
    tr.querySelector('.sym-name').textContent = meta ? meta.name : '';
    const symBtn = tr.querySelector('.sym-btn');
    symBtn.setAttribute('aria-label', `${this.label}: show chart`);
    tr.querySelector('.remove').setAttribute('aria-label', `Remove ${symbol} from the watchlist`);
    tr.querySelector('.remove').title = `Remove ${symbol}`;
    this.tr = tr;
    this.symBtn = symBtn;
    this.haltBadge = tr.querySelector('.halt-badge');
    this.cells = {
      last: tr.querySelector('.c-last'),
      arrow: tr.querySelector('.arrow'),
      chg: tr.querySelector('.chg-text'),
      pct: tr.querySelector('.c-pct'),
      bid: tr.querySelector('td.c-bid'),
      ask: tr.querySelector('td.c-ask'),
      vol: tr.querySelector('td.c-vol'),
      lo: tr.querySelector('.range-lo'),
      hi: tr.querySelector('.range-hi'),
      dot: tr.querySelector('.range-dot'),
    };
    this.sparkCanvas = tr.querySelector('canvas.spark');
    this.sparkCtx = setupCanvas(this.sparkCanvas, SPARK_W, SPARK_H);
  }
}

// ---- events --------------------------------------------------------------------------------

/** The one handler behind every event: live ones from the EventSource and replayed ones. */
function handleEvent(type, data) {
  switch (type) {
    case 'quote':
      applyQuote(JSON.parse(data), false);
      break;
    case 'trade':
      applyTrade(data);
      break;
    case 'bar':
      applyBar(data);
      break;
    case 'status':
      applyStatus(JSON.parse(data));
      break;
    case 'session':
      clock.session(JSON.parse(data));
      break;
    case 'snapshot': {
      // A symbol's market time never goes back on one server: if it did, this is another
      // server (restarted) on another timeline, and what was drawn on the old one must go.
      let back = false;
      for (const q of JSON.parse(data)) {
        const row = rows.get(q.symbol);
        if (row && row.q && q.market_ts < row.q.market_ts) back = true;
        applyQuote(q, true);
      }
      onSnapshot(back);
      break;
    }
    case 'heartbeat': {
      const hb = JSON.parse(data);
      if (hb.market_ts) clock.set(Math.max(hb.market_ts, clock.newestEvent));
      break;
    }
    default:
      return;
  }
  scheduleRender();
}

/**
 * The symbol of a trade, bar or status event without parsing it all: the server writes
 * `symbol` first. Trades and bars of symbols that are not charted need nothing more.
 */
function symbolOf(data) {
  if (data.startsWith('{"symbol":"')) return data.slice(11, data.indexOf('"', 11));
  return JSON.parse(data).symbol;
}

function applyQuote(q, fromSnapshot) {
  const row = rows.get(q.symbol);
  if (!row) {
    ignored++;
    return;
  }
  applied++;
  const p = parseFloat(q.price);
  if (row.q && !(fromSnapshot && row.q.price === q.price)) {
    row.dir = p > row.last ? 1 : p < row.last ? -1 : 0;
    row.flash = true;
  }
  if (!row.q || row.q.price.length !== q.price.length) {
    const dot = q.price.indexOf('.');
    row.decimals = dot < 0 ? 0 : q.price.length - dot - 1;
  }
  row.q = q;
  row.last = p;
  if (q.market_ts) {
    clock.noteEvent(q.market_ts);
    row.spark.update(q.market_ts, p, SPARK_BUCKET_MS);
  }
  if (q.status) setStatus(row, q.status, null, q.market_ts);
  if ('limit_up' in q) row.bands = { up: num(q.limit_up), down: num(q.limit_down) };
  dirty.add(row);
  if (q.symbol === selected) chartDirty = true;
}

function applyTrade(data) {
  const row = rows.get(symbolOf(data));
  if (!row) {
    ignored++;
    return;
  }
  row.trades.push(data);
  if (row.trades.length > 2 * TAPE_ROWS) row.trades.splice(0, row.trades.length - TAPE_ROWS);
  if (row.symbol !== selected) return;
  const t = JSON.parse(data);
  clock.noteEvent(t.market_ts);
  if (chartBars) chartBars.trade(t.market_ts, parseFloat(t.price), t.size);
  chartDirty = true;
  tapeDirty = true;
}

function applyBar(data) {
  if (!chartBars || symbolOf(data) !== chartBars.symbol) return;
  chartBars.bar(JSON.parse(data));
  chartDirty = true;
}

function applyStatus(s) {
  const row = rows.get(s.symbol);
  if (!row) {
    ignored++;
    return;
  }
  clock.noteEvent(s.market_ts);
  setStatus(row, s.status, s.reason, s.market_ts, s.resumes_at);
  row.bands = { up: num(s.limit_up), down: num(s.limit_down) };
  dirty.add(row);
  if (s.symbol === selected) chartDirty = true;
}

/**
 * A symbol's trading status, from a quote (no reason) or a status event (with one, and when
 * the halt ends: `resumes_at`). A halt keeps when it began and when it ends, if known; anything
 * but `halted` clears it.
 */
function setStatus(row, status, reason, marketTs, resumesAt) {
  row.status = status;
  if (status === 'halted') {
    if (row.halt && (!reason || row.halt.reason === reason)) return;
    const since = row.halt && !row.halt.reason ? row.halt.since : marketTs;
    row.halt = {
      reason,
      since,
      until: resumesAt ?? (reason === 'luld_pause' ? since + LULD_PAUSE_MS : null),
    };
    if (row.symbol === selected) announce(`${row.symbol} trading halted${reason ? ': ' + HALT_REASONS[reason] : ''}.`);
  } else if (row.halt) {
    row.halt = null;
    if (row.symbol === selected) announce(`${row.symbol} trading resumed.`);
  }
}

function announce(text) {
  el.announcer.textContent = text;
}

/**
 * A snapshot starts a stream: the charted bars load (again) from here, so nothing is lost
 * between the history and the live events, and the clock is asked again (the server may have
 * restarted, at another speed). `timeWentBack`: the market time of the snapshot is earlier than
 * what the page had, so the histories of the old timeline are dropped.
 */
function onSnapshot(timeWentBack) {
  streamReady = true;
  if (timeWentBack) resetHistories();
  loadChart();
  syncClock().then(() => backfillSparks());
}

// ---- history over HTTP ---------------------------------------------------------------------

/**
 * The access token from the page's own URL (`/?token=...`), for a server started with
 * --jwt-secret or --jwt-public-key: sent as a bearer token with every fetch and as `?token=` on
 * the EventSource (which cannot set headers). Empty when the server needs none.
 */
const TOKEN = new URLSearchParams(location.search).get('token') || '';

async function getJson(path, params) {
  const url = new URL(path, document.baseURI);
  for (const [k, v] of Object.entries(params || {})) url.searchParams.set(k, v);
  const headers = { accept: 'application/json' };
  if (TOKEN) headers.authorization = `Bearer ${TOKEN}`;
  const response = await fetch(url, { headers });
  if (!response.ok) throw new Error(`GET ${url.pathname}: HTTP ${response.status}`);
  return response.json();
}

function getBars(symbols, interval, extra) {
  return getJson('bars', { symbols: symbols.join(','), interval, ...extra });
}

/** GET /clock: the market's time, session and speed. */
async function syncClock() {
  let answer;
  try {
    answer = await getJson('clock');
  } catch {
    return; // the stream's own events keep the clock going; the next snapshot asks again
  }
  clock.apply(answer);
  scheduleRender();
}

/** Forgets what was drawn on the old market time: sparklines, trades, halts, the clock. */
function resetHistories() {
  let newest = 0;
  for (const row of rows.values()) {
    row.spark.clear();
    row.sparkLoaded = false;
    row.trades = [];
    if (row.q) {
      row.spark.update(row.q.market_ts, row.last, SPARK_BUCKET_MS);
      newest = Math.max(newest, row.q.market_ts);
      row.halt = row.q.status === 'halted' ? { reason: null, since: row.q.market_ts, until: null } : null;
    }
    dirty.add(row);
  }
  clock.newestEvent = newest;
  clock.set(newest);
  resets++;
  tapeShown = '';
  tapeDirty = true;
}

/** Fills the sparklines of rows that have none yet with today's 5-minute closes. */
async function backfillSparks() {
  const now = clock.now();
  const wanted = [...rows.values()].filter((r) => !r.sparkLoaded);
  if (!now || !wanted.length) return;
  for (const r of wanted) r.sparkLoaded = true;
  const len = INTERVALS[SPARK_HISTORY_INTERVAL];
  let answer;
  try {
    answer = await getBars(wanted.map((r) => r.symbol), SPARK_HISTORY_INTERVAL, {
      start: atTimeOfDay(now, 4, 0),
      limit: 200,
    });
  } catch {
    for (const r of wanted) r.sparkLoaded = false;
    return;
  }
  sparkLoads++;
  for (const [symbol, bars] of Object.entries(answer)) {
    const row = rows.get(symbol);
    if (!row || !bars.length) continue;
    const live = [];
    for (let k = 0; k < row.spark.len; k++) live.push([row.spark.timeAt(k), row.spark.valueAt(k)]);
    row.spark.clear();
    for (const b of bars) row.spark.push(Math.min(b.start + len, clock.now()), parseFloat(b.close));
    const end = row.spark.lastTime();
    for (const [t, v] of live) if (t > end) row.spark.update(t, v, SPARK_BUCKET_MS);
    dirty.add(row);
  }
  scheduleRender();
}

/**
 * Starts the chart of the selected symbol at the chosen interval: its history loads once the
 * stream is ready (events that arrive meanwhile wait in the series and follow the history).
 */
function loadChart() {
  chartDirty = true;
  scheduleRender();
  if (!selected) {
    chartBars = null;
    return;
  }
  // Until the new history is in, the chart keeps showing the old bars of the same series.
  if (chartBars && chartBars.ready) chartPrev = chartBars;
  const series = new BarSeries(selected, chartInterval);
  chartBars = series;
  if (!streamReady) return;
  (async () => {
    const answer = await getBars([series.symbol], series.interval, { limit: CHART_HISTORY_BARS });
    const bars = answer[series.symbol] || [];
    let minutes = [];
    const open = bars[bars.length - 1];
    if (series.interval !== '1m' && open && open.partial) {
      // The open bar is rebuilt from its minutes, so the next minutes can join it exactly.
      minutes = (await getBars([series.symbol], '1m', { start: open.start, limit: 10_000 }))[series.symbol] || [];
    }
    if (series === chartBars) series.load(bars, minutes);
  })()
    .catch((err) => {
      if (series === chartBars) series.fail(String(err.message || err));
    })
    .finally(() => {
      if (series === chartBars) {
        chartDirty = true;
        scheduleRender();
      }
    });
}

// ---- rendering -----------------------------------------------------------------------------

function scheduleRender() {
  if (frameRequested) return;
  frameRequested = true;
  requestAnimationFrame(render);
}

function render() {
  frameRequested = false;
  renders++;
  const now = clock.now();
  const win = daySpan(now);
  if (win[0] !== sparkWindow[0] || win[1] !== sparkWindow[1]) {
    sparkWindow = win;
    for (const row of rows.values()) dirty.add(row);
  }
  for (const row of dirty) renderRow(row);
  dirty.clear();
  if (chartDirty) renderChart();
  if (tapeDirty) renderTape();
}

/**
 * The sparklines' span of market time: today (from 04:00 ET) up to now, rounded up to about a
 * pixel of the widest span so that the lines are redrawn when they would move, not each frame.
 * Each line starts at its own first point of the day.
 */
function daySpan(now) {
  if (!now) return [0, 1];
  const t0 = atTimeOfDay(now, 4, 0);
  const step = Math.max(MINUTE_MS, Math.ceil((now - t0) / SPARK_W / MINUTE_MS) * MINUTE_MS);
  return [t0, Math.ceil(now / step) * step];
}

function signed(s) {
  if (s.startsWith('-')) return '−' + s.slice(1);
  return /^0*\.?0*$/.test(s) ? s : '+' + s;
}

function direction(change) {
  if (change.startsWith('-')) return -1;
  return /^0*\.?0*$/.test(change) ? 0 : 1;
}

const ARROWS = { '-1': '▼', 0: '■', 1: '▲' };

function setText(row, key, node, text) {
  if (row.shown[key] !== text) {
    row.shown[key] = text;
    node.textContent = text;
  }
}

function renderRow(row) {
  const q = row.q;
  if (!q) return;
  const c = row.cells;
  setText(row, 'last', c.last, q.price);
  const d = direction(q.change);
  if (row.shown.dir !== d) {
    row.shown.dir = d;
    row.tr.classList.toggle('up', d > 0);
    row.tr.classList.toggle('down', d < 0);
    c.arrow.textContent = ARROWS[d];
  }
  setText(row, 'chg', c.chg, signed(q.change));
  setText(row, 'pct', c.pct, signed(q.change_pct) + '%');
  setText(row, 'bid', c.bid, q.bid);
  setText(row, 'ask', c.ask, q.ask);
  setText(row, 'vol', c.vol, intFmt.format(q.volume));
  setText(row, 'lo', c.lo, q.low);
  setText(row, 'hi', c.hi, q.high);
  const lo = parseFloat(q.low);
  const hi = parseFloat(q.high);
  const pos = hi > lo ? (row.last - lo) / (hi - lo) : 0.5;
  const posText = pos.toFixed(3);
  if (row.shown.pos !== posText) {
    row.shown.pos = posText;
    c.dot.style.setProperty('--pos', posText);
  }
  const halted = row.halt ? (HALT_REASONS[row.halt.reason] || 'Trading halted') : '';
  if (row.shown.halt !== halted) {
    row.shown.halt = halted;
    row.haltBadge.hidden = !halted;
    row.haltBadge.title = halted;
    row.tr.classList.toggle('halted', !!halted);
    row.symBtn.setAttribute('aria-label', `${row.label}${halted ? ', trading halted' : ''}: show chart`);
  }
  // A flash per tick, but at most one new one per row every FLASH_GAP_MS: at high rates the
  // cell would flash continuously anyway, and each restart costs style work.
  const t = performance.now();
  if (row.flash && t - row.flashAt >= FLASH_GAP_MS) {
    row.flash = false;
    row.flashAt = t;
    // Alternating between two identical animations restarts it without forcing a reflow.
    const name = `flash-${row.dir > 0 ? 'up' : row.dir < 0 ? 'down' : 'flat'}-${(row.flip ^= 1)}`;
    // The class goes on the cell itself, so only that cell's style is invalidated.
    if (row.flashClass) c.last.classList.remove(row.flashClass);
    c.last.classList.add(name);
    row.flashClass = name;
  }
  const first = row.spark.firstAtOrAfter(sparkWindow[0]);
  const t0 = first < row.spark.len ? row.spark.timeAt(first) : sparkWindow[0];
  drawSpark(row.sparkCtx, row.spark, t0, Math.max(sparkWindow[1], t0 + MINUTE_MS), SPARK_W, SPARK_H, colors, d, parseFloat(q.prev_close));
  if (row.symbol === selected) renderChartHeader(row);
}

function renderChartHeader(row) {
  const q = row.q;
  const meta = catalog.get(row.symbol);
  el.chartSymbol.textContent = row.symbol;
  el.chartName.textContent = meta ? meta.name : '';
  renderHalt(row);
  if (!q) {
    for (const node of [el.chartPrice, el.chartChange, ...Object.values(el.stat)]) node.textContent = '—';
    el.chartChange.textContent = '';
    return;
  }
  const d = direction(q.change);
  el.chartPrice.textContent = q.price;
  el.chartChange.textContent = `${ARROWS[d]} ${signed(q.change)} (${signed(q.change_pct)}%)`;
  el.chartChange.dataset.dir = String(d);
  el.stat.open.textContent = q.open;
  el.stat.prev.textContent = q.prev_close;
  el.stat.high.textContent = q.high;
  el.stat.low.textContent = q.low;
  el.stat.bid.textContent = `${q.bid} × ${intFmt.format(q.bid_size)}`;
  el.stat.ask.textContent = `${q.ask} × ${intFmt.format(q.ask_size)}`;
  el.stat.vol.textContent = intFmt.format(q.volume);
  const { up, down } = row.bands;
  el.stat.band.textContent = Number.isFinite(up) && Number.isFinite(down)
    ? `${down.toFixed(row.decimals)} – ${up.toFixed(row.decimals)}`
    : 'none';
}

/** The chart's HALTED banner: why, and a countdown to the resumption when its time is known
 * (a LULD pause), the time since the halt otherwise. Both in market time. */
function renderHalt(row) {
  const h = row && row.halt;
  if (el.chartHalt.hidden !== !h) el.chartHalt.hidden = !h;
  if (!h) return;
  const reason = HALT_REASONS[h.reason] || 'Trading halted';
  if (el.chartHaltReason.textContent !== reason) el.chartHaltReason.textContent = reason;
  const now = clock.now() || h.since;
  let time;
  if (h.until) time = h.until > now ? `resumes in ${duration(h.until - now)}` : 'resuming…';
  else time = `for ${duration(now - h.since)}`;
  if (el.chartHaltTime.textContent !== time) el.chartHaltTime.textContent = time;
}

let lastChartLabel = '';

// The chart is drawn off-screen and handed to the visible canvas as a bitmap. A canvas in the
// document resolves its font and text direction against the page's style, which would force
// a style recalculation in the middle of each frame; an OffscreenCanvas has no such tie.
const chartSurface = typeof OffscreenCanvas === 'function' ? new OffscreenCanvas(1, 1) : el.chart;
let chartBitmap = null;
/** What the chart showed when it was first drawn with bars, for tests. */
let chartFirstPaint = null;

function presentChart() {
  if (chartSurface === el.chart) return;
  chartBitmap ||= el.chart.getContext('bitmaprenderer');
  chartBitmap.transferFromImageBitmap(chartSurface.transferToImageBitmap());
}

function renderChart() {
  chartDirty = false;
  const { w, h } = chartSize;
  if (!w || !h) return;
  const ctx = setupCanvas(chartSurface, w, h);
  const row = rows.get(selected);
  if (!row || !chartBars) {
    ctx.clearRect(0, 0, w, h);
    presentChart();
    return;
  }
  let series = chartBars;
  if (!series.ready && chartPrev && chartPrev.symbol === series.symbol && chartPrev.interval === series.interval) {
    series = chartPrev;
  }
  const plotW = w - 74;
  const fits = Math.max(10, Math.floor(plotW / CHART_MIN_BAR_PX));
  const bars = series.ready ? series.last(fits) : [];
  const q = row.q;
  const range = drawChart(ctx, {
    bars,
    slots: Math.max(bars.length, Math.min(fits, CHART_MIN_SLOTS)),
    mode: chartMode,
    interval: chartInterval,
    w,
    h,
    colors,
    decimals: row.decimals,
    last: q ? q.price : '',
    lastValue: q ? row.last : NaN,
    prevClose: q ? parseFloat(q.prev_close) : NaN,
    bands: row.bands,
    halted: !!row.halt,
    message: !series.ready ? 'Loading bars…' : series.failed ? `No history (${series.failed})` : 'Waiting for trades…',
    font: colors.font,
  });
  presentChart();
  if (range && !chartFirstPaint) {
    chartFirstPaint = {
      symbol: row.symbol,
      interval: chartInterval,
      bars: bars.length,
      historyBars: series.historyBars,
      liveBars: series.liveBars,
    };
  }
  // A text alternative for the canvas; it changes with each new bar, not with each tick.
  const newest = bars[bars.length - 1];
  const what = `${row.symbol} ${chartInterval} ${chartMode === 'line' ? 'line chart of closes' : 'candle chart'}`;
  const label = range && q
    ? `${what}: ${bars.length === 1 ? `1 bar, ${barTime(newest.t)}` : `${bars.length} bars from ${barTime(bars[0].t)} to ${barTime(newest.t)}`} ET, last ${q.price}, day range ${q.low} to ${q.high}${row.halt ? ', trading halted' : ''}`
    : `${what}: ${series.ready ? 'waiting for trades' : 'loading'}`;
  if (label !== lastChartLabel) {
    lastChartLabel = label;
    el.chart.setAttribute('aria-label', label);
  }
}

function barTime(t) {
  return chartInterval === '1d' ? monthDay(t) : `${monthDay(t)} ${hm(t)}`;
}

/** The time-and-sales table of the selected symbol: new trades on top, at most TAPE_ROWS. */
let tapeShown = '';
let tapeNewest = '';

function renderTape() {
  tapeDirty = false;
  const row = rows.get(selected);
  const trades = row ? row.trades : [];
  if (tapeShown !== selected) {
    tapeShown = selected;
    tapeNewest = '';
    el.tapeBody.replaceChildren();
    el.tapeSymbol.textContent = selected;
  }
  // The trades after the newest one shown: all that are kept on a fresh table, or when the
  // newest shown was trimmed away meanwhile.
  let from = trades.length;
  while (from > 0 && trades[from - 1] !== tapeNewest) from--;
  from = Math.max(from, trades.length - TAPE_ROWS);
  if (from < trades.length) {
    const frag = document.createDocumentFragment();
    const incremental = el.tapeBody.childElementCount > 0;
    let prev = from > 0 ? JSON.parse(trades[from - 1]) : null;
    const made = [];
    for (let i = from; i < trades.length; i++) {
      const t = JSON.parse(trades[i]);
      made.push(tapeRow(t, prev, incremental));
      prev = t;
    }
    for (let i = made.length - 1; i >= 0; i--) frag.append(made[i]);
    el.tapeBody.prepend(frag);
    tapeNewest = trades[trades.length - 1];
    while (el.tapeBody.childElementCount > TAPE_ROWS) el.tapeBody.lastElementChild.remove();
  }
  el.tapeEmpty.hidden = el.tapeBody.childElementCount > 0;
}

function tapeRow(t, prev, fresh) {
  const tr = document.createElement('tr');
  tr.dataset.seq = String(t.seq);
  const p = parseFloat(t.price);
  const tick = prev ? Math.sign(p - parseFloat(prev.price)) : 0;
  if (tick > 0) tr.className = 'uptick';
  else if (tick < 0) tr.className = 'downtick';
  if (fresh) tr.classList.add('fresh');
  const time = document.createElement('td');
  time.textContent = hms(t.market_ts);
  const price = document.createElement('td');
  price.className = 'c-num';
  price.textContent = t.price;
  const size = document.createElement('td');
  size.className = 'c-num';
  size.textContent = intFmt.format(t.size);
  const cond = document.createElement('td');
  cond.className = 'cond';
  for (const code of t.conditions || []) {
    const abbr = document.createElement('abbr');
    abbr.title = CONDITIONS[code] || code;
    abbr.textContent = code;
    abbr.dataset.code = code;
    cond.append(abbr);
  }
  tr.append(time, price, size, cond);
  return tr;
}

function readColors() {
  const s = getComputedStyle(document.documentElement);
  const v = (name) => s.getPropertyValue(name).trim();
  return {
    up: v('--up'),
    down: v('--down'),
    upFill: v('--up-fill'),
    downFill: v('--down-fill'),
    grid: v('--grid'),
    axis: v('--line'),
    muted: v('--muted'),
    text: v('--text'),
    surface: v('--surface'),
    volume: v('--volume'),
    warn: v('--warn'),
    onAccent: v('--on-accent'),
    font: getComputedStyle(document.body).fontFamily,
  };
}

function redrawAll() {
  colors = readColors();
  for (const row of rows.values()) dirty.add(row);
  chartDirty = true;
  scheduleRender();
}

// ---- connection indicator and market clock -------------------------------------------------

const STATE_LABEL = {
  [State.IDLE]: 'Idle',
  [State.CONNECTING]: 'Connecting…',
  [State.LIVE]: 'Live',
  [State.RECONNECTING]: 'Reconnecting…',
};

function onState(state, detail) {
  el.conn.dataset.state = state;
  let label = STATE_LABEL[state] || state;
  if (state === State.RECONNECTING && detail.retryInMs) label = `Reconnecting in ${Math.round(detail.retryInMs / 1000)} s…`;
  el.connLabel.textContent = label;
}

function formatAge(ms) {
  if (!Number.isFinite(ms)) return 'no events yet';
  if (ms < 10_000) return `${(ms / 1000).toFixed(1)} s ago`;
  if (ms < 120_000) return `${Math.round(ms / 1000)} s ago`;
  return `${Math.round(ms / 60_000)} min ago`;
}

function setIfChanged(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

/** The market clock: session, ET time and the next open or close, all in market time. */
function renderClock() {
  const now = clock.now();
  if (!now) return;
  const state = clock.state;
  if (el.clock.dataset.state !== state) el.clock.dataset.state = state;
  setIfChanged(el.clockState, SESSION_LABEL[state] || 'Market');
  setIfChanged(el.clockTime, hms(now));
  let next = '';
  if (state === 'open' && clock.nextClose) next = `closes in ${duration(clock.nextClose - now)}`;
  else if (clock.nextOpen) {
    const left = clock.nextOpen - now;
    next = left < 12 * 3_600_000 ? `opens in ${duration(left)}` : `opens ${weekdayHm(clock.nextOpen)}`;
  }
  setIfChanged(el.clockNext, next);
}

function tick() {
  const age = feed.age();
  el.connAge.textContent = formatAge(age);
  el.conn.classList.toggle('stale', feed.state === State.LIVE && age > 20_000);
  const rate = feed.rate();
  el.connRate.textContent = rate >= 100 ? intFmt.format(Math.round(rate)) : rate.toFixed(rate < 10 ? 1 : 0);
  renderClock();
  const row = rows.get(selected);
  renderHalt(row);
  const title = row && row.q ? `${row.symbol} ${row.q.price} ${ARROWS[direction(row.q.change)]} · tickcast` : 'tickcast · live market';
  if (document.title !== title) document.title = title;
  scheduleRender();
}

// ---- watchlist -----------------------------------------------------------------------------

const feed = new Feed({ base: document.baseURI, token: TOKEN, onEvent: handleEvent, onState });
let resubscribeTimer = 0;

function normalise(list) {
  const out = [];
  const unknown = [];
  for (const raw of list) {
    const s = String(raw).trim().toUpperCase();
    if (!s) continue;
    if (!catalog.has(s)) unknown.push(s);
    else if (!out.includes(s)) out.push(s);
  }
  return { list: out, unknown };
}

/** Makes `list` the watchlist: rows, URL, localStorage and the (one) subscription. */
function setWatchlist(list, { immediate = false } = {}) {
  const next = normalise(list).list;
  for (const [symbol, row] of rows) {
    if (!next.includes(symbol)) {
      row.tr.remove();
      rows.delete(symbol);
      dirty.delete(row);
    }
  }
  const frag = document.createDocumentFragment();
  for (const symbol of next) {
    let row = rows.get(symbol);
    if (!row) {
      row = new Row(symbol);
      rows.set(symbol, row);
    }
    frag.append(row.tr); // moves existing rows into the new order
  }
  el.tbody.append(frag);
  watchlist = next;
  el.count.textContent = String(next.length);
  el.empty.hidden = next.length > 0;
  if (!rows.has(selected)) select(next[0] || '');
  persist();
  clearTimeout(resubscribeTimer);
  // Coalesce quick edits (several adds in a row) into one reconnection.
  const go = () => {
    feed.subscribe(watchlist);
    if (feed.sources !== streamSource) {
      // A new EventSource: history waits for its snapshot.
      streamSource = feed.sources;
      streamReady = false;
    }
    el.streamUrl.textContent = feed.url || '(not connected)';
  };
  if (immediate) go();
  else resubscribeTimer = setTimeout(go, 150);
  picker?.refresh();
}

function persist() {
  const params = new URLSearchParams(location.search);
  for (const key of ['symbols', 'chart', 'interval']) params.delete(key);
  let query = params.toString();
  const parts = [];
  if (watchlist.length) parts.push('symbols=' + watchlist.map(encodeURIComponent).join(','));
  if (selected && selected !== watchlist[0]) parts.push('chart=' + encodeURIComponent(selected));
  if (chartInterval !== '1m') parts.push('interval=' + chartInterval);
  if (query) parts.unshift(query);
  query = parts.join('&');
  const url = location.pathname + (query ? '?' + query : '') + location.hash;
  if (url !== location.pathname + location.search + location.hash) history.replaceState(null, '', url);
  try {
    localStorage.setItem(STORAGE_KEY, JSON.stringify({ symbols: watchlist, chart: selected, interval: chartInterval }));
  } catch {
    // Private mode or quota: the URL still holds the selection.
  }
}

function select(symbol) {
  const old = rows.get(selected);
  if (old) {
    old.tr.classList.remove('selected');
    old.symBtn.removeAttribute('aria-current');
  }
  const changed = symbol !== selected;
  selected = symbol;
  const row = rows.get(symbol);
  if (row) {
    row.tr.classList.add('selected');
    row.symBtn.setAttribute('aria-current', 'true');
    renderChartHeader(row);
  } else {
    el.chartSymbol.textContent = '—';
    el.chartName.textContent = '';
    el.chartPrice.textContent = '—';
    el.chartChange.textContent = '';
    renderHalt(null);
  }
  if (changed || !chartBars) loadChart();
  tapeDirty = true;
  chartDirty = true;
  scheduleRender();
}

function setInterval_(interval) {
  if (!(interval in INTERVALS) || interval === chartInterval) return;
  chartInterval = interval;
  const input = document.querySelector(`input[name="chart-interval"][value="${interval}"]`);
  if (input && !input.checked) input.checked = true;
  loadChart();
  persist();
}

function setMode(mode) {
  if (mode !== 'candles' && mode !== 'line') return;
  chartMode = mode;
  const input = document.querySelector(`input[name="chart-mode"][value="${mode}"]`);
  if (input && !input.checked) input.checked = true;
  chartDirty = true;
  scheduleRender();
}

function addSymbol(symbol) {
  setWatchlist([...watchlist, symbol]);
}

function removeSymbol(symbol) {
  setWatchlist(watchlist.filter((s) => s !== symbol));
}

let picker = null;

function initialList() {
  const params = new URLSearchParams(location.search);
  const fromUrl = params.getAll('symbols').join(',');
  let chart = params.get('chart') || '';
  let interval = params.get('interval') || '';
  let list = null;
  if (fromUrl) list = fromUrl.split(',');
  if (!list) {
    try {
      const saved = JSON.parse(localStorage.getItem(STORAGE_KEY) || 'null');
      if (saved && Array.isArray(saved.symbols)) {
        list = saved.symbols;
        chart = chart || saved.chart || '';
        interval = interval || saved.interval || '';
      }
    } catch {
      // Unreadable storage: fall back to the defaults.
    }
  }
  return { list: list || DEFAULT_SYMBOLS, chart: chart.toUpperCase(), interval: interval.toLowerCase() };
}

async function loadCatalog() {
  for (let attempt = 0; ; attempt++) {
    try {
      return await getJson('symbols');
    } catch (err) {
      const delay = Math.min(10_000, 500 * 2 ** attempt);
      onState(State.CONNECTING, {});
      el.connLabel.textContent = `Waiting for server… (${err.message || err})`;
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }
}

// ---- wiring --------------------------------------------------------------------------------

function wire() {
  el.tbody.addEventListener('click', (e) => {
    const tr = e.target.closest('tr');
    if (!tr) return;
    if (e.target.closest('.remove')) {
      const next = tr.nextElementSibling || tr.previousElementSibling;
      removeSymbol(tr.dataset.symbol);
      (next ? next.querySelector('.sym-btn') : document.querySelector('#picker-input')).focus();
      return;
    }
    select(tr.dataset.symbol);
    persist();
  });
  // Arrow keys move between rows; Delete removes the focused row.
  el.tbody.addEventListener('keydown', (e) => {
    const tr = e.target.closest('tr');
    if (!tr || !e.target.classList.contains('sym-btn')) return;
    if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
      const to = e.key === 'ArrowDown' ? tr.nextElementSibling : tr.previousElementSibling;
      if (to) {
        e.preventDefault();
        to.querySelector('.sym-btn').focus();
        select(to.dataset.symbol);
        persist();
      }
    } else if (e.key === 'Delete') {
      e.preventDefault();
      tr.querySelector('.remove').click();
    }
  });
  for (const input of document.querySelectorAll('input[name="chart-mode"]')) {
    input.addEventListener('change', () => setMode(input.value));
  }
  for (const input of document.querySelectorAll('input[name="chart-interval"]')) {
    input.addEventListener('change', () => setInterval_(input.value));
  }
  $('#add-all').addEventListener('click', () => setWatchlist([...catalog.keys()]));
  $('#reset').addEventListener('click', () => setWatchlist(DEFAULT_SYMBOLS));
  new ResizeObserver((entries) => {
    const box = entries[0].contentBoxSize?.[0];
    const w = box ? box.inlineSize : entries[0].contentRect.width;
    const h = box ? box.blockSize : entries[0].contentRect.height;
    chartSize = { w: Math.floor(w), h: Math.floor(h) };
    chartDirty = true;
    scheduleRender();
  }).observe(el.chartBox);
  matchMedia('(prefers-color-scheme: dark)').addEventListener('change', redrawAll);
  addEventListener('online', () => { if (feed.state === State.RECONNECTING) feed.subscribe(watchlist); });
  setInterval(tick, 250);
}

async function main() {
  wire();
  onState(State.CONNECTING, {});
  const symbols = await loadCatalog();
  catalog = new Map(symbols.map((s) => [s.symbol, s]));
  const { list, chart, interval } = initialList();
  if (interval in INTERVALS) setInterval_(interval);
  const { unknown } = normalise(list);
  picker = createPicker({
    form: $('#picker'),
    input: $('#picker-input'),
    list: $('#picker-list'),
    hint: $('#picker-hint'),
    symbols,
    isAdded: (s) => rows.has(s),
    onAdd: addSymbol,
  });
  if (unknown.length) $('#picker-hint').textContent = `Unknown symbol${unknown.length > 1 ? 's' : ''} ignored: ${unknown.join(', ')}.`;
  setWatchlist(list, { immediate: true });
  if (chart && rows.has(chart)) select(chart);
  persist();
  syncClock();
}

// ---- API for tests and embedding -----------------------------------------------------------

/**
 * Applies recorded events through the same handler the EventSource uses, then renders at once.
 * Each item is `{event: 'quote'|'trade'|..., data: '<json text>'}` (or a bare quote object).
 * With `chunk`, renders after every `chunk` events, as frames would. Returns timings.
 */
function applyEvents(events, { chunk = 0 } = {}) {
  const t0 = performance.now();
  const before = applied;
  let renderCount = 0;
  for (let i = 0; i < events.length; i++) {
    const item = events[i];
    if (typeof item === 'string') handleEvent('quote', item);
    else if (item && typeof item.data === 'string') handleEvent(item.event || item.type || 'quote', item.data);
    else handleEvent('quote', JSON.stringify(item));
    if (chunk && (i + 1) % chunk === 0) { render(); renderCount++; }
  }
  render();
  renderCount++;
  return { ms: performance.now() - t0, events: events.length, applied: applied - before, renders: renderCount };
}

function chartInfo() {
  const s = chartBars;
  const newest = s && s.ready ? s.newest() : null;
  return {
    symbol: s ? s.symbol : '',
    interval: chartInterval,
    mode: chartMode,
    ready: !!(s && s.ready),
    failed: s ? s.failed : '',
    bars: s && s.ready ? s.count() : 0,
    historyBars: s ? s.historyBars : 0,
    liveBars: s ? s.liveBars : 0,
    liveTrades: s ? s.liveTrades : 0,
    barsAtFirstLiveBar: s ? s.barsAtFirstLiveBar : -1,
    newestStart: newest ? newest.t : null,
    firstPaint: chartFirstPaint,
    bands: rows.get(selected)?.bands || null,
    label: el.chart.getAttribute('aria-label'),
  };
}

window.tickcast = Object.freeze({
  applyEvents,
  render,
  state: () => ({
    status: feed.state,
    url: feed.url,
    lastEventId: feed.lastEventId,
    received: feed.total,
    sources: feed.sources,
    opens: feed.opens,
    watchlist: [...watchlist],
    selected,
    rows: rows.size,
    applied,
    ignored,
    renders,
    chartMode,
    interval: chartInterval,
    sparkLoads,
    resets,
  }),
  quotes: () => Object.fromEntries([...rows].filter(([, r]) => r.q).map(([s, r]) => [s, r.q])),
  chart: chartInfo,
  /** The chart's last `n` bars as drawn: {t, o, h, l, c, v, n, vwap, final}. */
  bars: (n = 50) => (chartBars && chartBars.ready ? chartBars.last(n).map((b) => ({ ...b })) : []),
  clock: () => ({ marketTs: clock.now(), state: clock.state, speed: clock.speed, nextOpen: clock.nextOpen, nextClose: clock.nextClose }),
  halts: () => Object.fromEntries([...rows].filter(([, r]) => r.halt).map(([s, r]) => [s, { ...r.halt }])),
  setWatchlist: (list) => setWatchlist(list, { immediate: true }),
  setInterval: setInterval_,
  setMode,
  addSymbol,
  removeSymbol,
  select,
});

main().catch((err) => {
  console.error('tickcast dashboard failed to start', err);
  el.connLabel.textContent = 'Error: ' + (err.message || err);
});
