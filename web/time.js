// Market time: epoch milliseconds of the simulated market, shown in US Eastern time whatever
// the browser's own time zone, and a clock that runs at the server's speed between updates.

export const MARKET_TZ = 'America/New_York';
export const MINUTE_MS = 60_000;
const HOUR_MS = 3_600_000;
const DAY_MS = 86_400_000;

const partsFmt = new Intl.DateTimeFormat('en-US', {
  timeZone: MARKET_TZ,
  hourCycle: 'h23',
  year: 'numeric',
  month: 'numeric',
  day: 'numeric',
  hour: 'numeric',
  minute: 'numeric',
  second: 'numeric',
});

/**
 * ET's offset from UTC at `ms`, in ms, cached per UTC hour: offsets change only on whole
 * hours, so formatToParts (slow) runs once an hour of market time, not once per label.
 */
const offsets = new Map();
function offsetAt(ms) {
  const hour = Math.floor(ms / HOUR_MS);
  let off = offsets.get(hour);
  if (off === undefined) {
    const p = {};
    for (const { type, value } of partsFmt.formatToParts(new Date(hour * HOUR_MS))) p[type] = Number(value);
    off = Date.UTC(p.year, p.month - 1, p.day, p.hour, p.minute, p.second) - hour * HOUR_MS;
    if (offsets.size > 512) offsets.clear();
    offsets.set(hour, off);
  }
  return off;
}

const WEEKDAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** The ET wall-clock fields of market time `ms`. */
export function et(ms) {
  const d = new Date(ms + offsetAt(ms));
  return {
    year: d.getUTCFullYear(),
    month: d.getUTCMonth() + 1,
    day: d.getUTCDate(),
    weekday: d.getUTCDay(),
    hour: d.getUTCHours(),
    minute: d.getUTCMinutes(),
    second: d.getUTCSeconds(),
  };
}

const two = (n) => String(n).padStart(2, '0');

/** `14:05:09` (ET). */
export function hms(ms) {
  const t = et(ms);
  return `${two(t.hour)}:${two(t.minute)}:${two(t.second)}`;
}

/** `14:05` (ET). */
export function hm(ms) {
  const t = et(ms);
  return `${two(t.hour)}:${two(t.minute)}`;
}

/** `Mar 4` (ET date). */
export function monthDay(ms) {
  const t = et(ms);
  return `${MONTHS[t.month - 1]} ${t.day}`;
}

/** `Mon 09:30` (ET). */
export function weekdayHm(ms) {
  const t = et(ms);
  return `${WEEKDAYS[t.weekday]} ${two(t.hour)}:${two(t.minute)}`;
}

/** Minutes since ET midnight of market time `ms`. */
export function minuteOfDay(ms) {
  const t = et(ms);
  return t.hour * 60 + t.minute;
}

/** Market time of ET midnight starting the day of `ms` (exact across DST changes). */
export function startOfDay(ms) {
  const local = ms + offsetAt(ms);
  const midnightLocal = local - (((local % DAY_MS) + DAY_MS) % DAY_MS);
  let start = midnightLocal - offsetAt(ms);
  // On a DST day midnight's offset differs from the afternoon's.
  start = midnightLocal - offsetAt(start);
  return start;
}

/** Market time of `hh:mm` ET on the day of `ms`. */
export function atTimeOfDay(ms, hh, mm) {
  const day = startOfDay(ms);
  const guess = day + (hh * 60 + mm) * MINUTE_MS;
  // Correct by the offset change between midnight and then (DST days).
  return guess + (offsetAt(day) - offsetAt(guess));
}

/** The bar intervals `/bars` offers, with their length (days vary; 1d is aligned by date). */
export const INTERVALS = Object.freeze({
  '1m': MINUTE_MS,
  '5m': 5 * MINUTE_MS,
  '15m': 15 * MINUTE_MS,
  '1h': HOUR_MS,
  '1d': DAY_MS,
});

/**
 * Start of the `interval` bar holding market time `ms`, as the server aligns them: minutes and
 * hours divide epoch time evenly (ET offsets are whole hours), days start at midnight ET.
 */
export function bucketStart(interval, ms) {
  if (interval === '1d') return startOfDay(ms);
  const len = INTERVALS[interval];
  return ms - (((ms % len) + len) % len);
}

/** `h:mm:ss` or `m:ss` of a duration. */
export function duration(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = two(s % 60);
  return h ? `${h}:${two(m)}:${sec}` : `${m}:${sec}`;
}

/**
 * The market's clock as the page knows it: the latest market time the server told, when it
 * was told (performance.now()), and the speed from GET /clock, so it ticks between updates.
 */
export class MarketClock {
  constructor() {
    this.base = 0; // market ms
    this.baseAt = 0; // performance.now() when `base` was current
    this.speed = 1;
    this.state = '';
    this.nextOpen = 0;
    this.nextClose = 0;
    this.newestEvent = 0; // newest market_ts of any event: never extrapolated
  }

  get known() { return this.base > 0; }

  /** Market time now: the last update moved on at the market's speed. */
  now() {
    if (!this.base) return 0;
    return this.base + (performance.now() - this.baseAt) * this.speed;
  }

  /** A market time the server gave for "now" (GET /clock, heartbeats, session events). */
  set(marketTs) {
    this.base = marketTs;
    this.baseAt = performance.now();
  }

  /**
   * The market time of an event. It happened a little before it arrived (writes are batched),
   * so it only moves the clock forward, never back.
   */
  noteEvent(marketTs) {
    if (marketTs > this.newestEvent) this.newestEvent = marketTs;
    if (!this.base || marketTs > this.now()) this.set(marketTs);
  }

  /** GET /clock's answer. */
  apply(clock) {
    this.set(clock.market_ts);
    if (clock.speed > 0) this.speed = clock.speed;
    this.state = clock.state;
    this.nextOpen = clock.next_open;
    this.nextClose = clock.next_close;
  }

  /** A `session` event. */
  session(ev) {
    this.set(ev.market_ts);
    this.noteEvent(ev.market_ts);
    this.state = ev.state;
    this.nextOpen = ev.next_open;
    this.nextClose = ev.next_close;
  }
}
