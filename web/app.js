// tickcast dashboard: watchlist, charts and connection status, fed by one EventSource.
//
// Events only change state (the latest quote, the bounded histories) and mark rows dirty; the
// DOM and the canvases are written once per animation frame, for the rows that changed. Nothing
// in the render path reads layout, so a frame costs the same at 2 or 2,000 events per second.

import { Feed, State } from './feed.js';
import { Series, Candles, setupCanvas, drawSpark, drawChart } from './chart.js';
import { createPicker } from './picker.js';

const DEFAULT_SYMBOLS = ['AAPL', 'MSFT', 'NVDA', 'AMZN', 'GOOGL', 'META', 'TSLA', 'JPM', 'V', 'NFLX', 'AMD', 'SPY'];
const STORAGE_KEY = 'tickcast.watchlist';
const SPARK_WINDOW_MS = 2 * 60_000;
const CHART_WINDOW_MS = 5 * 60_000;
const SPARK_W = 112;
const SPARK_H = 28;
const HISTORY_POINTS = 1024;
const CANDLE_MS = 5000;
const FLASH_GAP_MS = 250;

const $ = (sel) => document.querySelector(sel);
const el = {
  conn: $('#conn'),
  connLabel: $('#conn-label'),
  connAge: $('#conn-age'),
  connRate: $('#conn-rate'),
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
  stat: {
    open: $('#stat-open'),
    prev: $('#stat-prev'),
    high: $('#stat-high'),
    low: $('#stat-low'),
    bid: $('#stat-bid'),
    ask: $('#stat-ask'),
    vol: $('#stat-vol'),
  },
};

const intFmt = new Intl.NumberFormat('en-US');

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
let chartMode = 'line';
let chartDirty = true;
let frameRequested = false;
let lastChartDraw = 0;
let chartSize = { w: 0, h: 0 };
let colors = readColors();
let ignored = 0;
let applied = 0;
let renders = 0;
/** Server time: the newest `ts` seen, and when (performance.now()) it was seen. */
let serverTs = 0;
let serverTsAt = 0;

function serverNow() {
  return serverTs ? serverTs + (performance.now() - serverTsAt) : Date.now();
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
    this.series = new Series(HISTORY_POINTS);
    this.candles = new Candles(CANDLE_MS, Math.ceil(CHART_WINDOW_MS / CANDLE_MS) + 6);
    this.decimals = 2;
    this.shown = {}; // what the DOM currently shows, so unchanged cells are not written

    const tr = el.rowTemplate.content.firstElementChild.cloneNode(true);
    tr.dataset.symbol = symbol;
    const meta = catalog.get(symbol);
    tr.querySelector('.sym-code').textContent = symbol;
    tr.querySelector('.sym-name').textContent = meta ? meta.name : '';
    const symBtn = tr.querySelector('.sym-btn');
    symBtn.setAttribute('aria-label', `${symbol}${meta ? ', ' + meta.name : ''}: show chart`);
    tr.querySelector('.remove').setAttribute('aria-label', `Remove ${symbol} from the watchlist`);
    tr.querySelector('.remove').title = `Remove ${symbol}`;
    this.tr = tr;
    this.symBtn = symBtn;
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
    this.spark = tr.querySelector('canvas.spark');
    this.sparkCtx = setupCanvas(this.spark, SPARK_W, SPARK_H);
  }
}

// ---- events --------------------------------------------------------------------------------

/** The one handler behind every event: live ones from the EventSource and replayed ones. */
function handleEvent(type, data) {
  switch (type) {
    case 'quote':
      applyQuote(JSON.parse(data), false);
      break;
    case 'snapshot':
      for (const q of JSON.parse(data)) applyQuote(q, true);
      break;
    case 'heartbeat': {
      const hb = JSON.parse(data);
      noteServerTime(hb.ts);
      break;
    }
    default:
      return;
  }
  scheduleRender();
}

function noteServerTime(ts) {
  if (ts > serverTs || serverTs - ts > 60_000) { // later, or a server whose clock went back
    serverTs = ts;
    serverTsAt = performance.now();
  }
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
  noteServerTime(q.ts);
  row.series.push(q.ts, p);
  row.candles.push(q.ts, p, q.volume);
  dirty.add(row);
  if (q.symbol === selected) chartDirty = true;
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
  const now = serverNow();
  for (const row of dirty) renderRow(row, now);
  dirty.clear();
  if (chartDirty || performance.now() - lastChartDraw > 1000) renderChart();
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

function renderRow(row, now) {
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
  drawSpark(row.sparkCtx, row.series, windowStart(row.series, now, SPARK_WINDOW_MS, 10_000), now, SPARK_W, SPARK_H, colors);
  if (row.symbol === selected) renderChartHeader(row);
}

/**
 * Where a chart's time axis starts: `span` before `now`, or later while the history is still
 * shorter than that (a fresh page), so that a few seconds of data fill the chart, not a sliver.
 */
function windowStart(series, now, span, minSpan) {
  if (series.len === 0) return now - span;
  const first = series.timeAt(0);
  return Math.max(now - span, Math.min(first, now - minSpan));
}

function renderChartHeader(row) {
  const q = row.q;
  const meta = catalog.get(row.symbol);
  el.chartSymbol.textContent = row.symbol;
  el.chartName.textContent = meta ? meta.name : '';
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
}

let lastChartLabel = 0;

// The chart is drawn off-screen and handed to the visible canvas as a bitmap. A canvas in the
// document resolves its font and text direction against the page's style, which would force
// a style recalculation in the middle of each frame; an OffscreenCanvas has no such tie.
const chartSurface = typeof OffscreenCanvas === 'function' ? new OffscreenCanvas(1, 1) : el.chart;
let chartBitmap = null;

function presentChart() {
  if (chartSurface === el.chart) return;
  chartBitmap ||= el.chart.getContext('bitmaprenderer');
  chartBitmap.transferFromImageBitmap(chartSurface.transferToImageBitmap());
}

function renderChart() {
  chartDirty = false;
  lastChartDraw = performance.now();
  const { w, h } = chartSize;
  if (!w || !h) return;
  const ctx = setupCanvas(chartSurface, w, h);
  const row = rows.get(selected);
  if (!row) {
    ctx.clearRect(0, 0, w, h);
    presentChart();
    return;
  }
  const now = serverNow();
  const range = drawChart(ctx, {
    series: row.series,
    candles: row.candles,
    mode: chartMode,
    t0: windowStart(row.series, now, CHART_WINDOW_MS, 20_000),
    t1: now,
    w,
    h,
    colors,
    decimals: row.decimals,
    last: row.q ? row.q.price : '',
    prevClose: row.q ? parseFloat(row.q.prev_close) : NaN,
    font: colors.font,
  });
  presentChart();
  // A text alternative for the canvas, refreshed every few seconds rather than every frame.
  if (lastChartDraw - lastChartLabel > 5000 || !range) {
    lastChartLabel = lastChartDraw;
    el.chart.setAttribute(
      'aria-label',
      range && row.q
        ? `${row.symbol} ${chartMode === 'line' ? 'line chart' : '5-second candle chart'} of recent prices: last ${row.q.price}, day range ${row.q.low} to ${row.q.high}`
        : `${row.symbol} chart: waiting for quotes`,
    );
  }
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

// ---- connection indicator ------------------------------------------------------------------

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

function tick() {
  const age = feed.age();
  el.connAge.textContent = formatAge(age);
  el.conn.classList.toggle('stale', feed.state === State.LIVE && age > 20_000);
  const rate = feed.rate();
  el.connRate.textContent = rate >= 100 ? intFmt.format(Math.round(rate)) : rate.toFixed(rate < 10 ? 1 : 0);
  // Keep the charts sliding with time even when no quote arrives.
  chartDirty = true;
  scheduleRender();
  const row = rows.get(selected);
  const title = row && row.q ? `${row.symbol} ${row.q.price} ${ARROWS[direction(row.q.change)]} · tickcast` : 'tickcast · live market';
  if (document.title !== title) document.title = title;
}

// ---- watchlist -----------------------------------------------------------------------------

const feed = new Feed({ base: document.baseURI, onEvent: handleEvent, onState });
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
    el.streamUrl.textContent = feed.url || '(not connected)';
  };
  if (immediate) go();
  else resubscribeTimer = setTimeout(go, 150);
  picker?.refresh();
}

function persist() {
  const params = new URLSearchParams(location.search);
  params.delete('symbols');
  params.delete('chart');
  let query = params.toString();
  const parts = [];
  if (watchlist.length) parts.push('symbols=' + watchlist.map(encodeURIComponent).join(','));
  if (selected && selected !== watchlist[0]) parts.push('chart=' + encodeURIComponent(selected));
  if (query) parts.unshift(query);
  query = parts.join('&');
  const url = location.pathname + (query ? '?' + query : '') + location.hash;
  if (url !== location.pathname + location.search + location.hash) history.replaceState(null, '', url);
  try {
    localStorage.setItem(STORAGE_KEY, JSON.stringify({ symbols: watchlist, chart: selected }));
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
  }
  lastChartLabel = 0;
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
  let list = null;
  if (fromUrl) list = fromUrl.split(',');
  if (!list) {
    try {
      const saved = JSON.parse(localStorage.getItem(STORAGE_KEY) || 'null');
      if (saved && Array.isArray(saved.symbols)) {
        list = saved.symbols;
        chart = chart || saved.chart || '';
      }
    } catch {
      // Unreadable storage: fall back to the defaults.
    }
  }
  return { list: list || DEFAULT_SYMBOLS, chart: chart.toUpperCase() };
}

async function loadCatalog() {
  for (let attempt = 0; ; attempt++) {
    try {
      const response = await fetch(new URL('symbols', document.baseURI), { headers: { accept: 'application/json' } });
      if (!response.ok) throw new Error(`GET /symbols: HTTP ${response.status}`);
      return await response.json();
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
    input.addEventListener('change', () => {
      chartMode = input.value;
      lastChartLabel = 0;
      chartDirty = true;
      scheduleRender();
    });
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
  const { list, chart } = initialList();
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
}

// ---- API for tests and embedding -----------------------------------------------------------

/**
 * Applies recorded events through the same handler the EventSource uses, then renders at once.
 * Each item is `{event: 'quote'|'snapshot'|'heartbeat', data: '<json text>'}` (or a bare quote
 * object). With `chunk`, renders after every `chunk` events, as frames would. Returns timings.
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
  }),
  quotes: () => Object.fromEntries([...rows].filter(([, r]) => r.q).map(([s, r]) => [s, r.q])),
  setWatchlist: (list) => setWatchlist(list, { immediate: true }),
  addSymbol,
  removeSymbol,
  select,
});

main().catch((err) => {
  console.error('tickcast dashboard failed to start', err);
  el.connLabel.textContent = 'Error: ' + (err.message || err);
});
