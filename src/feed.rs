//! The feed: latest events, recent history and the wake-up signal that client streams read.
//!
//! The publisher is the only writer. Under one write lock it appends a batch to the history and
//! keeps each symbol's latest event of each kind; then it announces the newest seq on the
//! `newest` channel, which wakes every client once per batch. Readers take the read lock, so a
//! snapshot (newest seq + latest quotes) and the history always agree: an event is never both
//! in a snapshot and replayed after it, nor missing from both.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::watch;

use crate::market::clock::{ClockAnchor, MarketMs};
use crate::market::events::MARKET_WIDE;
use crate::market::{Kind, Symbol, SymbolSpec};
use crate::metrics::Metrics;
use crate::sse::{Batch, FrameIndex};

/// Below this share of the runtime's time spent working, clients are written at once.
const IDLE_BELOW: f64 = 0.65;
/// From this share on, clients wait the whole flush window between writes.
const BUSY_FROM: f64 = 0.85;

/// Largest chunk a client is handed in one write while catching up from history. A client far
/// behind gets several chunks in a row; this bounds what the HTTP layer buffers per client.
pub const MAX_CHUNK_BYTES: usize = 64 * 1024;

/// The latest event of one kind for one symbol, already encoded.
#[derive(Debug, Clone, Default)]
pub struct Latest {
    /// Seq of this event; 0 before the first one.
    pub seq: u64,
    /// How many events of this kind the symbol has had, this one included.
    pub nth: u64,
    /// The whole frame (shares the batch's memory).
    pub frame: Bytes,
    /// The event's JSON (shares the batch's memory).
    pub json: Bytes,
}

/// One latest event of a feed published elsewhere, as [`Feed::replace`] takes it.
#[derive(Debug, Clone)]
pub struct Restored {
    pub symbol: u16,
    pub kind: Kind,
    pub seq: u64,
    /// The whole frame, and the event's JSON inside it.
    pub frame: Bytes,
    pub json: Bytes,
}

/// Which symbols a client receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Symbols {
    /// Every symbol.
    All,
    /// A subset, as a bitmask over symbol indexes plus the sorted list of those indexes.
    Some { mask: Vec<u64>, list: Vec<u16> },
}

impl Symbols {
    /// The given symbol indexes (duplicates ignored).
    pub fn some(indexes: impl IntoIterator<Item = u16>) -> Self {
        let mut list: Vec<u16> = indexes.into_iter().collect();
        list.sort_unstable();
        list.dedup();
        let words = list.last().map_or(0, |&max| max as usize / 64 + 1);
        let mut mask = vec![0u64; words];
        for &i in &list {
            mask[i as usize / 64] |= 1 << (i % 64);
        }
        Symbols::Some { mask, list }
    }

    /// Whether symbol `index` is included (market-wide events concern everyone).
    pub fn contains(&self, index: u16) -> bool {
        match self {
            Symbols::All => true,
            Symbols::Some { mask, .. } => {
                index == MARKET_WIDE
                    || mask
                        .get(index as usize / 64)
                        .is_some_and(|w| w & (1 << (index % 64)) != 0)
            }
        }
    }
}

/// A set of event kinds. Session events are always in it: they concern every client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Kinds(u8);

/// A `?events=` value that names no kind, or an unknown one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KindsError {
    #[error("events must list at least one of quote, trade, bar, status")]
    Empty,
    #[error("unknown event kind '{0}': events may list quote, trade, bar, status")]
    Unknown(String),
}

impl Kinds {
    /// Every kind.
    pub const ALL: Kinds = Kinds(0b1_1111);
    /// The kinds a client may choose (session events always come).
    pub const SELECTABLE: [Kind; 4] = [Kind::Quote, Kind::Trade, Kind::Bar, Kind::Status];

    /// The given kinds, and session events.
    pub fn of(kinds: impl IntoIterator<Item = Kind>) -> Kinds {
        kinds
            .into_iter()
            .fold(Kinds(1 << Kind::Session as u8), |k, kind| {
                Kinds(k.0 | 1 << kind as u8)
            })
    }

    /// Whether `kind` is in the set.
    pub fn contains(self, kind: Kind) -> bool {
        self.0 & (1 << kind as u8) != 0
    }

    /// The kinds in the set, in the order of their numbers.
    pub fn iter(self) -> impl Iterator<Item = Kind> {
        Kind::ALL.into_iter().filter(move |&k| self.contains(k))
    }
}

impl FromStr for Kinds {
    type Err = KindsError;

    /// A comma-separated, case-insensitive list of kinds (quote, trade, bar, status).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut kinds = Vec::new();
        for name in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let kind = Kinds::SELECTABLE
                .into_iter()
                .find(|k| k.as_str().eq_ignore_ascii_case(name))
                .ok_or_else(|| KindsError::Unknown(name.chars().take(32).collect()))?;
            kinds.push(kind);
        }
        if kinds.is_empty() {
            return Err(KindsError::Empty);
        }
        Ok(Kinds::of(kinds))
    }
}

impl fmt::Display for Kinds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.iter().map(Kind::as_str).collect();
        f.write_str(&names.join(","))
    }
}

/// What a client receives: which symbols, and which kinds of event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub symbols: Symbols,
    pub kinds: Kinds,
}

impl Subscription {
    /// Every event of every symbol: such clients share whole batches without copying.
    pub const ALL: Subscription = Subscription {
        symbols: Symbols::All,
        kinds: Kinds::ALL,
    };

    /// Every kind of event of the given symbol indexes (duplicates ignored).
    pub fn some(indexes: impl IntoIterator<Item = u16>) -> Self {
        Subscription {
            symbols: Symbols::some(indexes),
            kinds: Kinds::ALL,
        }
    }

    /// The same symbols, only `kinds`.
    pub fn with_kinds(self, kinds: Kinds) -> Self {
        Subscription { kinds, ..self }
    }

    /// Whether the frame concerns this client.
    pub fn wants(&self, frame: &FrameIndex) -> bool {
        self.kinds.contains(frame.kind) && self.symbols.contains(frame.symbol)
    }

    /// Whether the client takes every frame (and so whole batches, without copying).
    pub fn is_everything(&self) -> bool {
        self.symbols == Symbols::All && self.kinds == Kinds::ALL
    }
}

/// Events per kind, indexed by `Kind as usize`.
pub type KindCounts = [u64; Kind::ALL.len()];

/// Adds `more` to `total`, kind by kind.
pub fn add_counts(total: &mut KindCounts, more: &KindCounts) {
    for (t, m) in total.iter_mut().zip(more) {
        *t += m;
    }
}

/// What one call to [`Feed::collect`] produced for a client.
#[derive(Debug, Default)]
pub struct Collected {
    /// Frames to write, in ascending seq, as pieces of the shared batch buffers (one write,
    /// no copy, for clients of every event); empty if nothing new concerned the client.
    pub parts: Vec<Bytes>,
    /// Events in `parts`, by kind.
    pub counts: KindCounts,
    /// Bytes of those events, by kind.
    pub bytes: KindCounts,
    /// Events of the client's subscription skipped by conflation.
    pub conflated: u64,
}

impl Collected {
    /// Events in `parts`.
    pub fn events(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The parts as one buffer (copied only if there are several), or `None` if empty.
    pub fn chunk(&self) -> Option<Bytes> {
        match self.parts.as_slice() {
            [] => None,
            [one] => Some(one.clone()),
            many => Some(concat(many)),
        }
    }
}

/// A client's position: the last seq it was sent, plus the running count of its symbols'
/// updates up to that point (to count exactly what conflation skips). Two integers: nothing
/// is queued per client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cursor {
    pub seq: u64,
    accounted: u64,
}

/// Recent batches, for replay and catch-up, and the latest event of each kind per symbol.
#[derive(Debug, Default)]
struct History {
    batches: VecDeque<Arc<Batch>>,
    /// Events held in `batches`.
    held: usize,
    /// Seq of the newest event published.
    newest: u64,
    /// Seq of the run's first event; 0 before the first publish.
    first_seq: u64,
    /// Latest event per symbol and kind, at `slot(symbol, kind)`; session events last.
    latest: Vec<Latest>,
}

/// Kinds kept per symbol in [`History::latest`].
const SYMBOL_KINDS: usize = 4;

/// Index of `(symbol, kind)` in [`History::latest`], or `None` for a pair no event can have
/// (a symbol outside the table, a session event of one symbol): a batch from upstream that
/// names one must not overwrite another symbol's slot.
fn slot(symbol: u16, kind: Kind, symbols: usize) -> Option<usize> {
    match kind {
        Kind::Session => (symbol == MARKET_WIDE).then_some(symbols * SYMBOL_KINDS),
        _ if (symbol as usize) < symbols => Some(symbol as usize * SYMBOL_KINDS + kind as usize),
        _ => None,
    }
}

impl History {
    /// Appends `batch` (contiguous with `newest`) and keeps the latest events; events at or
    /// below `counted_through` were counted before (a rebuild replaying them) and are not
    /// counted again.
    fn append(&mut self, batch: Arc<Batch>, symbols: usize, limit: usize, counted_through: u64) {
        for (i, f) in batch.frames.iter().enumerate() {
            let Some(latest) = slot(f.symbol, f.kind, symbols).and_then(|i| self.latest.get_mut(i))
            else {
                continue;
            };
            let seq = batch.first_seq + i as u64;
            latest.seq = seq;
            if seq > counted_through {
                latest.nth += 1;
            }
            latest.frame = batch.frame(i);
            latest.json = batch.json(i);
        }
        self.held += batch.len();
        self.newest = batch.last_seq();
        self.batches.push_back(batch);
        // Drop whole batches that lie entirely outside the window.
        while let Some(front) = self.batches.front() {
            if self.held - front.len() >= limit {
                self.held -= front.len();
                self.batches.pop_front();
            } else {
                break;
            }
        }
    }

    /// The batches holding updates after `seq`, each with how many of its frames come at or
    /// before `seq` (to skip).
    fn after(&self, seq: u64) -> impl Iterator<Item = (&Batch, usize)> {
        let first = self.batches.partition_point(|b| b.last_seq() <= seq);
        self.batches.range(first..).map(move |batch| {
            let skip = (seq + 1).saturating_sub(batch.first_seq) as usize;
            (&**batch, skip)
        })
    }
}

#[derive(Debug)]
struct Shared {
    specs: Vec<SymbolSpec>,
    by_symbol: HashMap<Symbol, u16>,
    history: RwLock<History>,
    /// How many updates replay may go back: the history window, counted globally.
    history_limit: usize,
    newest: watch::Sender<u64>,
    heartbeat: watch::Sender<Bytes>,
    /// Market time at the last publish (and when that was), for readers between publishes.
    clock: watch::Sender<(tokio::time::Instant, ClockAnchor)>,
    clients: AtomicUsize,
    metrics: Metrics,
    started: tokio::time::Instant,
    /// Share of time the runtime's workers were busy lately, in millionths: the measure of
    /// load that [`Feed::write_gap`] paces by.
    busy_ppm: AtomicU64,
    /// See [`Feed::resume_wait`], milliseconds.
    resume_wait_ms: AtomicU64,
}

/// Cheap handle to the shared feed state.
#[derive(Debug, Clone)]
pub struct Feed {
    shared: Arc<Shared>,
}

impl Feed {
    /// An empty feed for `specs`, keeping the last `history_limit` updates for replay.
    pub fn new(specs: Vec<SymbolSpec>, history_limit: usize) -> Feed {
        let by_symbol = specs
            .iter()
            .enumerate()
            .map(|(i, s)| (s.symbol.clone(), i as u16))
            .collect();
        let history = History {
            latest: vec![Latest::default(); specs.len() * SYMBOL_KINDS + 1],
            ..History::default()
        };
        Feed {
            shared: Arc::new(Shared {
                specs,
                by_symbol,
                history: RwLock::new(history),
                history_limit,
                newest: watch::Sender::new(0),
                heartbeat: watch::Sender::new(Bytes::new()),
                clock: watch::Sender::new((
                    tokio::time::Instant::now(),
                    ClockAnchor {
                        market_ms: 0,
                        speed: 1.0,
                        until_ms: 0,
                    },
                )),
                clients: AtomicUsize::new(0),
                metrics: Metrics::default(),
                started: tokio::time::Instant::now(),
                busy_ppm: AtomicU64::new(0),
                resume_wait_ms: AtomicU64::new(0),
            }),
        }
    }

    /// The symbol table, in index order.
    pub fn specs(&self) -> &[SymbolSpec] {
        &self.shared.specs
    }

    /// Index of `symbol`, if it is simulated.
    pub fn index_of(&self, symbol: &Symbol) -> Option<u16> {
        self.shared.by_symbol.get(symbol).copied()
    }

    /// Service counters.
    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// Time since the feed was created.
    pub fn uptime(&self) -> Duration {
        self.shared.started.elapsed()
    }

    /// Records where market time stands now (the market task does, at each publish).
    pub fn set_clock(&self, anchor: ClockAnchor) {
        self.shared
            .clock
            .send_replace((tokio::time::Instant::now(), anchor));
    }

    /// Market time now, epoch ms, and the market's speed.
    pub fn market_now(&self) -> (MarketMs, f64) {
        let (at, anchor) = *self.shared.clock.borrow();
        (anchor.after(at.elapsed()), anchor.speed)
    }

    /// Seq of the run's first event (0 before anything is published).
    pub fn first_seq(&self) -> u64 {
        self.read_history().first_seq
    }

    /// Seq of the newest published event.
    pub fn newest_seq(&self) -> u64 {
        *self.shared.newest.borrow()
    }

    /// Events currently available for replay.
    pub fn history_len(&self) -> usize {
        let h = self.read_history();
        h.held.min(self.shared.history_limit)
    }

    /// Wakes once per published batch; the value is the newest seq.
    pub fn subscribe_newest(&self) -> watch::Receiver<u64> {
        self.shared.newest.subscribe()
    }

    /// Wakes on every heartbeat; the value is the encoded heartbeat frame.
    pub fn subscribe_heartbeat(&self) -> watch::Receiver<Bytes> {
        self.shared.heartbeat.subscribe()
    }

    /// Publishes a heartbeat frame to every stream.
    pub fn publish_heartbeat(&self, frame: Bytes) {
        self.shared.heartbeat.send_replace(frame);
    }

    /// Publishes one batch: history, latest events, then the wake-up.
    pub fn publish(&self, batch: Batch) {
        let last_seq = batch.last_seq();
        let count = batch.len();
        let batch = Arc::new(batch);
        {
            let mut h = self
                .shared
                .history
                .write()
                .unwrap_or_else(|e| e.into_inner());
            if h.first_seq == 0 {
                // The run's first batch: ids start wherever the run says.
                h.first_seq = batch.first_seq;
                h.newest = batch.first_seq - 1;
            }
            debug_assert_eq!(batch.first_seq, h.newest + 1, "batches are contiguous");
            h.append(batch, self.shared.specs.len(), self.shared.history_limit, 0);
        }
        let metrics = &self.shared.metrics;
        metrics
            .updates_generated
            .fetch_add(count as u64, Ordering::Relaxed);
        metrics.batches_published.fetch_add(1, Ordering::Relaxed);
        self.shared.newest.send_replace(last_seq);
    }

    /// Replaces the history and the latest events at once, as a node that follows a feed
    /// published elsewhere does when it (re)builds its state: `latest` is the publisher's
    /// latest event per symbol and kind as of some seq, `batches` (contiguous, ascending) run
    /// from at or before that seq to `newest` or beyond. Clients whose cursor the new history
    /// still covers go on without a break; the others fall out of the window and take the
    /// conflation path, counted as usual. `first_seq` is the seq of the run's first event
    /// (what `Last-Event-ID: 0` replays from).
    pub fn replace(&self, first_seq: u64, newest: u64, latest: Vec<Restored>, batches: Vec<Batch>) {
        let symbols = self.shared.specs.len();
        let limit = self.shared.history_limit;
        let mut h = self
            .shared
            .history
            .write()
            .unwrap_or_else(|e| e.into_inner());
        // Counts of events per symbol and kind carry over, so conflation keeps counting
        // exactly what it skipped across the rebuild.
        let counted_through = h.newest;
        let mut fresh = History {
            latest: h
                .latest
                .iter()
                .map(|l| Latest {
                    nth: l.nth,
                    ..Latest::default()
                })
                .collect(),
            first_seq,
            newest,
            ..History::default()
        };
        for r in latest {
            let Some(l) = slot(r.symbol, r.kind, symbols).and_then(|i| fresh.latest.get_mut(i))
            else {
                continue;
            };
            if r.seq > counted_through {
                l.nth += 1;
            }
            l.seq = r.seq;
            l.frame = r.frame;
            l.json = r.json;
        }
        // Only a contiguous run of batches can be replayed: keep the one that ends last.
        let mut run_start = 0;
        for i in 1..batches.len() {
            if batches[i].first_seq != batches[i - 1].last_seq() + 1 {
                run_start = i;
            }
        }
        for batch in batches.into_iter().skip(run_start) {
            fresh.newest = batch.first_seq - 1;
            fresh.append(Arc::new(batch), symbols, limit, counted_through);
        }
        fresh.newest = fresh.newest.max(newest);
        let newest = fresh.newest;
        *h = fresh;
        drop(h);
        self.shared.newest.send_replace(newest);
    }

    /// How long a client resuming with an id beyond the newest event waits for it to arrive
    /// before it gets a snapshot: zero for a feed published here (such an id is not ours),
    /// about a second on a node that follows a feed published elsewhere, which another node
    /// may have delivered a moment earlier.
    pub fn resume_wait(&self) -> Duration {
        Duration::from_millis(self.shared.resume_wait_ms.load(Ordering::Relaxed))
    }

    /// Sets [`Feed::resume_wait`].
    pub fn set_resume_wait(&self, wait: Duration) {
        self.shared
            .resume_wait_ms
            .store(wait.as_millis() as u64, Ordering::Relaxed);
    }

    /// Current quotes of the subscribed symbols and the seq they are consistent with.
    /// The seq is the global newest; every quote returned has a seq at or below it.
    pub fn snapshot(&self, sub: &Subscription) -> (u64, Vec<Latest>, Cursor) {
        let h = self.read_history();
        let symbols = self.shared.specs.len();
        let quotes: Vec<Latest> = self
            .indexes(&sub.symbols)
            .filter_map(|i| slot(i, Kind::Quote, symbols).map(|s| h.latest[s].clone()))
            .filter(|l| l.seq > 0)
            .collect();
        let cursor = Cursor {
            seq: h.newest,
            accounted: self.total(&h, sub),
        };
        (h.newest, quotes, cursor)
    }

    /// How many events of `sub` have been published so far.
    fn total(&self, h: &History, sub: &Subscription) -> u64 {
        self.slots(sub).map(|s| h.latest[s].nth).sum()
    }

    /// The slots of [`History::latest`] that `sub` covers.
    fn slots<'a>(&'a self, sub: &'a Subscription) -> impl Iterator<Item = usize> + 'a {
        let symbols = self.shared.specs.len();
        let per_symbol = self.indexes(&sub.symbols).flat_map(move |i| {
            sub.kinds
                .iter()
                .filter(|&k| k != Kind::Session)
                .filter_map(move |k| slot(i, k, symbols))
        });
        per_symbol.chain(slot(MARKET_WIDE, Kind::Session, symbols))
    }

    /// A cursor at `last_event_id` if the history holds every event after it, so the client
    /// can resume losslessly; `None` if the id is older than the window (another run's, for
    /// one) or in the future. Id 0 means the start of this run.
    pub fn resume_from(&self, last_event_id: u64, sub: &Subscription) -> Option<Cursor> {
        let h = self.read_history();
        let last_event_id = match last_event_id {
            0 => h.first_seq.saturating_sub(1),
            id => id,
        };
        if last_event_id > h.newest || last_event_id + 1 < self.window_start(&h) {
            return None;
        }
        // Count the subscribed events after the id, to know the running total at the id.
        let mut after = 0;
        for (batch, skip) in h.after(last_event_id) {
            after += batch.frames[skip..].iter().filter(|f| sub.wants(f)).count() as u64;
        }
        Some(Cursor {
            seq: last_event_id,
            accounted: self.total(&h, sub) - after,
        })
    }

    /// Everything after `cursor` for `sub`, in at most about [`MAX_CHUNK_BYTES`], and moves
    /// the cursor past it. Lossless while the cursor is inside the history window; once it has
    /// fallen out, the client gets the latest quote, status and bar of each of its symbols and
    /// the latest session event instead (conflation), and the skipped events are counted.
    pub fn collect(&self, cursor: &mut Cursor, sub: &Subscription) -> Collected {
        let h = self.read_history();
        if cursor.seq >= h.newest {
            return Collected::default();
        }
        if cursor.seq + 1 < self.window_start(&h) {
            return self.conflate(&h, cursor, sub);
        }
        let mut parts: Vec<Bytes> = Vec::new();
        let mut size = 0;
        let mut counts = KindCounts::default();
        let mut bytes = KindCounts::default();
        let mut copy = BytesMut::new();
        let everything = sub.is_everything();
        for (batch, skip) in h.after(cursor.seq) {
            if everything {
                let part = batch.frames_from(skip);
                size += part.len();
                if skip == 0 {
                    add_counts(&mut counts, &batch.kind_events);
                    add_counts(&mut bytes, &batch.kind_bytes);
                } else {
                    for f in &batch.frames[skip..] {
                        counts[f.kind as usize] += 1;
                        bytes[f.kind as usize] += u64::from(f.end - f.start);
                    }
                }
                parts.push(part);
                cursor.seq = batch.last_seq();
            } else {
                for (i, f) in batch.frames.iter().enumerate().skip(skip) {
                    if sub.wants(f) {
                        copy.extend_from_slice(&batch.bytes[f.start as usize..f.end as usize]);
                        counts[f.kind as usize] += 1;
                        bytes[f.kind as usize] += u64::from(f.end - f.start);
                    }
                    cursor.seq = batch.first_seq + i as u64;
                    if copy.len() >= MAX_CHUNK_BYTES {
                        break;
                    }
                }
                size = copy.len();
            }
            if size >= MAX_CHUNK_BYTES {
                break;
            }
        }
        cursor.accounted += counts.iter().sum::<u64>();
        if !copy.is_empty() {
            parts.push(copy.freeze());
        }
        Collected {
            parts,
            counts,
            bytes,
            conflated: 0,
        }
    }

    fn conflate(&self, h: &History, cursor: &mut Cursor, sub: &Subscription) -> Collected {
        let symbols = self.shared.specs.len();
        let total = self.total(h, sub);
        // Trades are not resent: a late trade is history, not state.
        let mut latest: Vec<(Kind, &Latest)> = self
            .slots(sub)
            .map(|s| (slot_kind(s, symbols), &h.latest[s]))
            .filter(|(kind, l)| *kind != Kind::Trade && l.seq > cursor.seq)
            .collect();
        latest.sort_unstable_by_key(|(_, l)| l.seq);
        let mut counts = KindCounts::default();
        let mut bytes = KindCounts::default();
        for (kind, l) in &latest {
            counts[*kind as usize] += 1;
            bytes[*kind as usize] += l.frame.len() as u64;
        }
        let sent: u64 = counts.iter().sum();
        let conflated = total.saturating_sub(cursor.accounted + sent);
        let frames: Vec<Bytes> = latest.into_iter().map(|(_, l)| l.frame.clone()).collect();
        cursor.seq = h.newest;
        cursor.accounted = total;
        self.shared
            .metrics
            .updates_conflated
            .fetch_add(conflated, Ordering::Relaxed);
        Collected {
            parts: if frames.is_empty() {
                Vec::new()
            } else {
                vec![concat(&frames)]
            },
            counts,
            bytes,
            conflated,
        }
    }

    /// Records the share of time (0 to 1) the runtime's workers spent working lately.
    pub fn set_busy(&self, share: f64) {
        let ppm = (share.clamp(0.0, 1.0) * 1e6) as u64;
        self.shared.busy_ppm.store(ppm, Ordering::Relaxed);
    }

    /// How long a client should wait after a write before the next one: nothing while the
    /// server has time to spare (busy under [`IDLE_BELOW`]), then growing with the load up to
    /// `max` (`--flush-ms`) from [`BUSY_FROM`] on. Idle, every event goes out as soon as it is
    /// published; busy, writes batch up, which bounds writes per client per second and so the
    /// CPU, so that the server keeps up with every client instead of falling behind them all.
    pub fn write_gap(&self, max: Duration) -> Duration {
        let busy = self.shared.busy_ppm.load(Ordering::Relaxed) as f64 / 1e6;
        let share = ((busy - IDLE_BELOW) / (BUSY_FROM - IDLE_BELOW)).clamp(0.0, 1.0);
        max.mul_f64(share)
    }

    /// First seq of the replay window: the last `history_limit` events, if held.
    fn window_start(&self, h: &History) -> u64 {
        let available = h.held.min(self.shared.history_limit) as u64;
        h.newest + 1 - available
    }

    fn indexes<'a>(&'a self, symbols: &'a Symbols) -> Box<dyn Iterator<Item = u16> + 'a> {
        match symbols {
            Symbols::All => Box::new(0..self.shared.specs.len() as u16),
            Symbols::Some { list, .. } => Box::new(list.iter().copied()),
        }
    }

    fn read_history(&self) -> RwLockReadGuard<'_, History> {
        // A panic while holding the lock cannot leave History half-updated in a way readers
        // care about (fields are updated together at the end), so poisoning is ignored.
        self.shared
            .history
            .read()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Registers an SSE client unless `max` are already connected. A refusal is not counted
    /// here: the HTTP layer counts it when it answers 503, once per request.
    pub fn try_register_client(&self, max: usize) -> Option<ClientGuard> {
        let clients = &self.shared.clients;
        let mut current = clients.load(Ordering::Relaxed);
        loop {
            if current >= max {
                return None;
            }
            match clients.compare_exchange_weak(
                current,
                current + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(actual) => current = actual,
            }
        }
        self.shared
            .metrics
            .streams_opened
            .fetch_add(1, Ordering::Relaxed);
        Some(ClientGuard { feed: self.clone() })
    }

    /// Open SSE streams.
    pub fn clients(&self) -> usize {
        self.shared.clients.load(Ordering::Relaxed)
    }
}

/// The kind kept at slot `s` of [`History::latest`].
fn slot_kind(s: usize, symbols: usize) -> Kind {
    if s == symbols * SYMBOL_KINDS {
        Kind::Session
    } else {
        Kind::ALL[s % SYMBOL_KINDS]
    }
}

fn concat(parts: &[Bytes]) -> Bytes {
    let mut buf = BytesMut::with_capacity(parts.iter().map(Bytes::len).sum());
    for part in parts {
        buf.extend_from_slice(part);
    }
    buf.freeze()
}

/// Holds one slot of `--max-clients`; the slot frees when the stream is dropped.
#[derive(Debug)]
pub struct ClientGuard {
    feed: Feed,
}

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.feed.shared.clients.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::market::simulator::{SimConfig, Simulator};
    use crate::market::{symbols, Event};
    use std::path::Path;

    fn setup(history: usize) -> (Feed, Simulator) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/symbols.csv");
        let specs = symbols::load(&path).unwrap();
        let sim = Simulator::try_new(
            &specs,
            SimConfig {
                seed: 1,
                rate: 5.0,
                speed: 1.0,
                start_epoch_ms: 0,
                // Monday 2024-03-04 10:30 ET: mid-session, no opening-auction burst.
                market_start: 1_709_566_200_000,
                skip_closed: true,
                first_seq: 1,
            },
        )
        .unwrap();
        let feed = Feed::new(specs, history);
        feed.publish(Batch::encode(&sim.opening_quotes()));
        (feed, sim)
    }

    fn step(feed: &Feed, sim: &mut Simulator, until_ms: u64) -> Vec<Event> {
        let mut out = Vec::new();
        sim.advance_to(until_ms * 1_000_000, &mut out);
        if !out.is_empty() {
            feed.publish(Batch::encode(&out));
        }
        out
    }

    fn ids(chunk: &[u8]) -> Vec<u64> {
        std::str::from_utf8(chunk)
            .unwrap()
            .lines()
            .filter_map(|l| l.strip_prefix("id: "))
            .map(|v| v.parse().unwrap())
            .collect()
    }

    #[test]
    fn only_real_symbol_and_kind_pairs_have_a_latest_slot() {
        let symbols = 3;
        assert_eq!(slot(0, Kind::Quote, symbols), Some(0));
        assert_eq!(
            slot(2, Kind::Bar, symbols),
            Some(2 * SYMBOL_KINDS + Kind::Bar as usize)
        );
        assert_eq!(slot(MARKET_WIDE, Kind::Session, symbols), Some(12));
        // A frame naming the symbol one past the table must not land on the session slot.
        assert_eq!(slot(3, Kind::Quote, symbols), None);
        assert_eq!(slot(MARKET_WIDE, Kind::Quote, symbols), None);
        assert_eq!(slot(1, Kind::Session, symbols), None);
    }

    #[test]
    fn all_subscription_gets_every_update_in_order() {
        let (feed, mut sim) = setup(100_000);
        let (seq, quotes, mut cursor) = feed.snapshot(&Subscription::ALL);
        assert_eq!(quotes.len(), feed.specs().len());
        assert_eq!(seq, feed.specs().len() as u64);
        step(&feed, &mut sim, 100);
        step(&feed, &mut sim, 200);
        let got = feed.collect(&mut cursor, &Subscription::ALL);
        let expected: Vec<u64> = (seq + 1..=feed.newest_seq()).collect();
        assert_eq!(ids(&got.chunk().unwrap()), expected);
        assert_eq!(cursor.seq, feed.newest_seq());
        assert!(feed
            .collect(&mut cursor, &Subscription::ALL)
            .chunk()
            .is_none());
    }

    #[test]
    fn subset_gets_only_its_symbols() {
        let (feed, mut sim) = setup(100_000);
        let sub = Subscription::some([0, 3]);
        let (_, quotes, mut cursor) = feed.snapshot(&sub);
        assert_eq!(quotes.len(), 2);
        let updates = step(&feed, &mut sim, 2000);
        let expected: Vec<u64> = updates
            .iter()
            .filter(|e| sub.symbols.contains(e.symbol_index()))
            .map(Event::seq)
            .collect();
        let mut got = Vec::new();
        loop {
            let c = feed.collect(&mut cursor, &sub);
            match c.chunk() {
                Some(chunk) => got.extend(ids(&chunk)),
                None if cursor.seq == feed.newest_seq() => break,
                None => {}
            }
        }
        assert_eq!(got, expected);
    }

    #[test]
    fn resume_replays_exactly_the_missed_updates() {
        let (feed, mut sim) = setup(100_000);
        step(&feed, &mut sim, 500);
        let id = feed.newest_seq() - 37;
        let mut cursor = feed.resume_from(id, &Subscription::ALL).unwrap();
        let got = feed.collect(&mut cursor, &Subscription::ALL);
        assert_eq!(
            ids(&got.chunk().unwrap()),
            (id + 1..=feed.newest_seq()).collect::<Vec<_>>()
        );
        assert!(feed
            .resume_from(feed.newest_seq() + 1, &Subscription::ALL)
            .is_none());
        assert!(
            feed.resume_from(0, &Subscription::ALL).is_some(),
            "history holds seq 1"
        );
    }

    #[test]
    fn a_client_outside_the_window_is_conflated_and_counted() {
        let (feed, mut sim) = setup(50);
        let sub = Subscription::some([1, 2]).with_kinds(Kinds::of([Kind::Quote]));
        let (_, _, mut cursor) = feed.snapshot(&sub);
        let mut updates = Vec::new();
        for ms in (100..=3000).step_by(100) {
            updates.extend(step(&feed, &mut sim, ms));
        }
        assert!(feed.resume_from(cursor.seq, &sub).is_none());
        let got = feed.collect(&mut cursor, &sub);
        let mine = updates
            .iter()
            .filter(|e| e.kind() == Kind::Quote && sub.symbols.contains(e.symbol_index()))
            .count() as u64;
        assert_eq!(got.events(), 2, "latest quote of each symbol");
        assert_eq!(got.counts[Kind::Quote as usize], 2);
        assert_eq!(got.conflated, mine - 2);
        assert_eq!(cursor.seq, feed.newest_seq());
        let chunk = got.chunk().unwrap();
        let got_ids = ids(&chunk);
        assert!(got_ids.windows(2).all(|w| w[0] < w[1]), "ascending ids");
    }

    /// The `event:` names and ids of a chunk.
    fn frames(chunk: &[u8]) -> Vec<(String, u64)> {
        let text = std::str::from_utf8(chunk).unwrap();
        text.split("\n\n")
            .filter(|f| !f.is_empty())
            .map(|f| {
                let mut lines = f.lines();
                let name = lines.next().unwrap().strip_prefix("event: ").unwrap();
                let id = lines.next().unwrap().strip_prefix("id: ").unwrap();
                (name.to_string(), id.parse().unwrap())
            })
            .collect()
    }

    #[test]
    fn kinds_select_frames_live_and_in_replay() {
        let (feed, mut sim) = setup(1_000_000);
        let start = feed.newest_seq();
        let mut events = Vec::new();
        // Past 10:31, so a minute's bars are in the window.
        for ms in (1000..=70_000).step_by(1000) {
            events.extend(step(&feed, &mut sim, ms));
        }
        let trades_and_bars = Subscription::ALL.with_kinds("TRADE,bar".parse().unwrap());
        let mut cursor = feed.resume_from(start, &trades_and_bars).unwrap();
        let mut got = Vec::new();
        while let Some(chunk) = feed.collect(&mut cursor, &trades_and_bars).chunk() {
            got.extend(frames(&chunk));
        }
        let expected: Vec<(String, u64)> = events
            .iter()
            .filter(|e| matches!(e.kind(), Kind::Trade | Kind::Bar | Kind::Session))
            .map(|e| (e.kind().as_str().to_string(), e.seq()))
            .collect();
        assert!(
            expected.iter().any(|(k, _)| k == "bar"),
            "bars in the window"
        );
        assert!(expected.iter().any(|(k, _)| k == "trade"));
        assert_eq!(got, expected);
        // Every kind, every symbol: the whole feed, contiguous.
        let mut cursor = feed.resume_from(start, &Subscription::ALL).unwrap();
        let mut all = Vec::new();
        while let Some(chunk) = feed.collect(&mut cursor, &Subscription::ALL).chunk() {
            all.extend(ids(&chunk));
        }
        assert_eq!(all, (start + 1..=feed.newest_seq()).collect::<Vec<_>>());
    }

    #[test]
    fn kind_lists_parse_case_insensitively_and_refuse_junk() {
        let k: Kinds = " Quote,STATUS ".parse().unwrap();
        assert!(k.contains(Kind::Quote) && k.contains(Kind::Status));
        assert!(k.contains(Kind::Session), "session events always come");
        assert!(!k.contains(Kind::Trade) && !k.contains(Kind::Bar));
        assert_eq!(k.to_string(), "quote,status,session");
        assert_eq!("".parse::<Kinds>(), Err(KindsError::Empty));
        assert_eq!(",".parse::<Kinds>(), Err(KindsError::Empty));
        assert_eq!(
            "quote,trades".parse::<Kinds>(),
            Err(KindsError::Unknown("trades".into()))
        );
        assert_eq!(
            "session".parse::<Kinds>(),
            Err(KindsError::Unknown("session".into()))
        );
        assert_eq!("quote,trade,bar,status".parse::<Kinds>(), Ok(Kinds::ALL));
    }

    #[test]
    fn catch_up_is_split_into_bounded_chunks() {
        let (feed, mut sim) = setup(1_000_000);
        let start = feed.newest_seq();
        for ms in (100..=3000).step_by(100) {
            step(&feed, &mut sim, ms);
        }
        let mut cursor = feed.resume_from(start, &Subscription::ALL).unwrap();
        let mut chunks = 0;
        let mut got = Vec::new();
        while let Some(chunk) = feed.collect(&mut cursor, &Subscription::ALL).chunk() {
            assert!(chunk.len() < MAX_CHUNK_BYTES * 2);
            got.extend(ids(&chunk));
            chunks += 1;
        }
        assert!(chunks > 1);
        assert_eq!(got, (start + 1..=feed.newest_seq()).collect::<Vec<_>>());
    }

    #[test]
    fn the_write_gap_follows_the_load_up_to_the_flush_window() {
        let (feed, _) = setup(10);
        let flush = Duration::from_millis(20);
        assert_eq!(feed.write_gap(flush), Duration::ZERO, "idle: write at once");
        feed.set_busy(0.6);
        assert_eq!(feed.write_gap(flush), Duration::ZERO, "time to spare");
        feed.set_busy(0.75);
        let half = feed.write_gap(flush);
        assert!(
            half > Duration::from_millis(9) && half < Duration::from_millis(11),
            "{half:?}"
        );
        feed.set_busy(1.0);
        assert_eq!(feed.write_gap(flush), flush, "busy: the whole window");
        feed.set_busy(0.1);
        assert_eq!(feed.write_gap(flush), Duration::ZERO, "and back");
    }

    #[test]
    fn a_replaced_history_continues_covered_cursors_and_conflates_the_others() {
        let (feed, mut sim) = setup(100_000);
        let mut batches = Vec::new();
        for ms in (100..=3000).step_by(100) {
            let mut out = Vec::new();
            sim.advance_to(ms * 1_000_000, &mut out);
            if !out.is_empty() {
                batches.push(Batch::encode(&out));
            }
        }
        let (_, _, mut old) = feed.snapshot(&Subscription::ALL);
        for b in &batches[..5] {
            feed.publish(b.clone());
        }
        let mut covered = feed
            .resume_from(feed.newest_seq(), &Subscription::ALL)
            .unwrap();
        // As a node that follows the feed rebuilds: only the last batches are left.
        let keep = batches.len() - 10;
        let first_kept = batches[keep].first_seq;
        let newest = batches.last().unwrap().last_seq();
        feed.replace(1, newest, Vec::new(), batches[keep..].to_vec());
        assert_eq!(feed.newest_seq(), newest);
        assert_eq!(feed.first_seq(), 1);
        assert!(feed
            .resume_from(first_kept - 1, &Subscription::ALL)
            .is_some());
        assert!(feed
            .resume_from(first_kept - 2, &Subscription::ALL)
            .is_none());
        // A cursor inside the new window goes on without a break...
        covered.seq = first_kept - 1;
        let got = feed.collect(&mut covered, &Subscription::ALL);
        assert_eq!(ids(&got.chunk().unwrap())[0], first_kept);
        // ...one before it is conflated to the latest events, and that is counted.
        let got = feed.collect(&mut old, &Subscription::ALL);
        assert!(got.conflated > 0);
        assert_eq!(old.seq, newest);
    }

    #[test]
    fn client_slots_are_limited_and_freed() {
        let (feed, _) = setup(10);
        let a = feed.try_register_client(2).unwrap();
        let _b = feed.try_register_client(2).unwrap();
        assert!(feed.try_register_client(2).is_none());
        drop(a);
        assert_eq!(feed.clients(), 1);
        assert!(feed.try_register_client(2).is_some());
    }
}
