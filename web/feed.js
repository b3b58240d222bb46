// The page's only connection to the server: ONE EventSource on /quotes?symbols=...
//
// Browsers allow six HTTP/1.1 connections per origin, so the page never opens one stream per
// symbol: changing the watchlist closes the current EventSource and opens a new one for the
// whole list. Reconnection after a dropped stream is EventSource's own (it waits the server's
// `retry:` delay and sends Last-Event-ID, so the server replays what was missed or sends a
// fresh snapshot). Only when the browser gives up for good (readyState CLOSED, e.g. after an
// HTTP error status) or the stream goes silent does the feed open a new EventSource itself,
// passing the last id as `lastEventId` in the query.

/** The named events of the server contract. */
export const EVENT_TYPES = Object.freeze(['snapshot', 'quote', 'trade', 'bar', 'status', 'session', 'heartbeat']);

/** Connection states shown by the indicator. */
export const State = Object.freeze({
  IDLE: 'idle',
  CONNECTING: 'connecting',
  LIVE: 'live',
  RECONNECTING: 'reconnecting',
});

const RATE_WINDOW_S = 5;
const DEFAULT_STALE_MS = 45_000;
const MAX_BACKOFF_MS = 15_000;

export class Feed {
  /**
   * @param {object} options
   * @param {string} options.base URL the stream path is resolved against.
   * @param {string} [options.token] access token, sent as `?token=` (not shown in `url`).
   * @param {(type: string, data: string, id: string) => void} options.onEvent every event.
   * @param {(state: string, detail: object) => void} options.onState state changes.
   */
  constructor({ base, token = '', onEvent, onState }) {
    this.base = base;
    this.token = token;
    this.onEvent = onEvent;
    this.onState = onState;
    this.es = null;
    this.symbols = [];
    this.url = '';
    this.state = State.IDLE;
    this.lastEventId = '';
    this.lastEventAt = 0; // performance.now() of the newest event, 0 before any
    this.total = 0; // events received over the network
    this.opens = 0; // successful (re)connections of the current subscription
    this.sources = 0; // EventSource objects created over the page's life
    this.manualRetries = 0;
    this.retryTimer = 0;
    this.heartbeatGapMs = 0;
    this.lastHeartbeatAt = 0;
    this.buckets = new Uint32Array(RATE_WINDOW_S + 1);
    this.bucketSecond = 0;
    this.firstSecond = undefined;
    this.listeners = EVENT_TYPES.map((type) => [type, (e) => this.#receive(type, e)]);
    this.watchdog = setInterval(() => this.#checkStale(), 1000);
  }

  /** Streams `symbols` (replacing the current subscription); an empty list disconnects. */
  subscribe(symbols) {
    const list = [...symbols];
    if (list.join(',') === this.symbols.join(',') && this.es) return;
    this.symbols = list;
    this.lastEventId = ''; // ids of the old subscription must not be replayed into the new one
    this.opens = 0;
    this.manualRetries = 0;
    this.#open(State.CONNECTING);
  }

  /** Events per second over the last few seconds. */
  rate() {
    if (this.firstSecond === undefined) return 0;
    const now = Math.floor(Date.now() / 1000);
    this.#roll(now);
    let sum = 0;
    for (let s = now - RATE_WINDOW_S; s < now; s++) {
      if (s >= this.firstSecond) sum += this.buckets[s % this.buckets.length];
    }
    return sum / Math.min(RATE_WINDOW_S, Math.max(1, now - this.firstSecond));
  }

  /** Milliseconds since the last event, or Infinity before the first. */
  age() {
    return this.lastEventAt ? performance.now() - this.lastEventAt : Infinity;
  }

  /** Closes the stream for good. */
  close() {
    this.#teardown();
    clearInterval(this.watchdog);
    this.#setState(State.IDLE);
  }

  #open(state) {
    this.#teardown();
    if (this.symbols.length === 0) {
      this.url = '';
      this.#setState(State.IDLE);
      return;
    }
    const url = new URL('quotes', this.base);
    url.search = 'symbols=' + this.symbols.map(encodeURIComponent).join(',');
    this.url = url.pathname + url.search;
    if (this.lastEventId) url.searchParams.set('lastEventId', this.lastEventId);
    if (this.token) url.searchParams.set('token', this.token);
    const es = new EventSource(url);
    this.sources++;
    this.es = es;
    es.addEventListener('open', () => {
      if (es !== this.es) return;
      this.opens++;
      this.manualRetries = 0;
      this.lastEventAt = performance.now();
      this.#setState(State.LIVE);
    });
    es.addEventListener('error', () => {
      if (es !== this.es) return;
      if (es.readyState === EventSource.CLOSED) {
        // The browser gave up (HTTP error, wrong content type): retry ourselves, with backoff.
        this.#scheduleManualRetry();
      } else {
        // EventSource reconnects by itself after the server's retry: delay.
        this.#setState(this.opens > 0 ? State.RECONNECTING : State.CONNECTING);
      }
    });
    for (const [type, fn] of this.listeners) es.addEventListener(type, fn);
    this.#setState(state);
  }

  #teardown() {
    clearTimeout(this.retryTimer);
    this.retryTimer = 0;
    if (this.es) {
      for (const [type, fn] of this.listeners) this.es.removeEventListener(type, fn);
      this.es.close();
      this.es = null;
    }
  }

  #scheduleManualRetry() {
    const es = this.es;
    if (es) {
      for (const [type, fn] of this.listeners) es.removeEventListener(type, fn);
      es.close();
      this.es = null;
    }
    const delay = Math.min(MAX_BACKOFF_MS, 1000 * 2 ** this.manualRetries);
    this.manualRetries++;
    this.#setState(State.RECONNECTING, { retryInMs: delay });
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.#open(State.RECONNECTING), delay);
  }

  #receive(type, e) {
    if (e.target !== this.es) return;
    const now = performance.now();
    if (e.lastEventId) this.lastEventId = e.lastEventId;
    this.lastEventAt = now;
    this.total++;
    const second = Math.floor(Date.now() / 1000);
    this.#roll(second);
    this.buckets[second % this.buckets.length]++;
    if (type === 'heartbeat') {
      if (this.lastHeartbeatAt) this.heartbeatGapMs = now - this.lastHeartbeatAt;
      this.lastHeartbeatAt = now;
    }
    if (this.state !== State.LIVE) this.#setState(State.LIVE);
    this.onEvent(type, e.data, e.lastEventId);
  }

  #roll(second) {
    if (this.firstSecond === undefined) {
      this.firstSecond = second;
      this.bucketSecond = second;
      return;
    }
    // Clear the buckets of the seconds that passed without events.
    const n = this.buckets.length;
    for (let s = Math.max(this.bucketSecond + 1, second - n + 1); s <= second; s++) {
      this.buckets[s % n] = 0;
    }
    if (second > this.bucketSecond) this.bucketSecond = second;
  }

  #checkStale() {
    if (this.state !== State.LIVE || !this.es) return;
    // Heartbeats arrive every --heartbeat-secs; three missed ones mean the stream is dead even
    // if the TCP connection looks open (a sleeping laptop, a proxy that dropped it).
    const limit = this.heartbeatGapMs ? Math.max(5000, 3 * this.heartbeatGapMs) : DEFAULT_STALE_MS;
    if (this.age() > limit) this.#scheduleManualRetry();
  }

  #setState(state, detail = {}) {
    if (state === this.state && !detail.retryInMs) return;
    this.state = state;
    this.onState(state, detail);
  }
}
