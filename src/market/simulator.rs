//! One deterministic simulator for all symbols, in market time.
//!
//! The simulator owns the exchange clock, the price model, every symbol's book and LULD state,
//! and one seeded ChaCha stream (stable across crate versions, unlike `StdRng`). Everything it
//! does is ordered by market time: session changes (pre-market, the opening auction, the closing
//! auction, the daily rollover) and each symbol's next event, kept in one queue. A symbol's
//! events arrive at a rate proportional to its activity (from its average daily volume), the
//! intraday shape and its current volatility, so the same seed and start give the same events in
//! the same order whatever the wall clock does.
//!
//! Feed time (nanoseconds since start, from the caller's clock) maps to market time at `speed`.
//! By default closed time is skipped: when the post-market ends, the clock jumps to the next
//! trading day's pre-market. `--rate` is counted in wall-clock time, so market-time intensities
//! are divided by `speed`; trade sizes scale the other way so that volume per simulated day does
//! not depend on `speed`.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rust_decimal::Decimal;

use super::bars::{Interval, MinuteBar};
use super::book::{spread_ticks, Book, TradeSizes};
use super::clock::{self, MarketMs, SessionState, TradingDay, MINUTE_MS};
use super::events::{
    BarEvent, Conditions, Event, Header, Reason, SessionEvent, Status, StatusEvent, Trade,
    TradeEvent,
};
use super::halts::{Luld, HALT_SECS, LIMIT_STATE_SECS};
use super::price::{ns_of_ms, MarketNs, PriceModel};
use super::scenario::{Applied, Scenario, ScenarioError};
use super::volatility::{IntradayShape, SESSION_SECS};
use super::walk::{self, TickGrid};
use super::{Quote, SymbolSpec};

/// Share of market events that are trades; the rest change the quote (price or size).
pub const TRADE_SHARE: f64 = 0.35;
/// Activity outside the regular session relative to its average.
pub(crate) const EXTENDED_ACTIVITY: f64 = 0.1;
/// Seconds of pre- and post-market together.
pub(crate) const EXTENDED_SECS: f64 = (5.5 + 4.0) * 3600.0;
/// The busiest symbol is at most this many times as active as the quietest.
const ACTIVITY_RANGE: f64 = 10.0;
/// Expected shares of a day's volume in the opening and closing auctions.
pub(crate) const OPENING_AUCTION_SHARE: (f64, f64) = (0.005, 0.015);
pub(crate) const CLOSING_AUCTION_SHARE: (f64, f64) = (0.04, 0.10);
const REOPENING_AUCTION_SHARE: (f64, f64) = (0.002, 0.006);
/// Longest market time between two redraws of a symbol's event rate: the rate follows the
/// intraday shape and volatility even when events are minutes apart (high `--speed`).
const MAX_RATE_HOLD_NS: MarketNs = 300 * 1_000_000_000;
/// Mean of the volatility multiplier (`exp(-sum w^2 / 2)`): activity is divided by it so that
/// the regular session's mean rate is the requested one.
pub(crate) const MEAN_VOL_RATIO: f64 = 0.886;

/// Largest first seq: ids stay below 2^53, the largest integer JavaScript reads exactly, for
/// 2^52 events of a run.
pub const MAX_FIRST_SEQ: u64 = 1 << 52;

/// Settings of a simulation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimConfig {
    /// Seed of every random draw.
    pub seed: u64,
    /// Mean market events per symbol per wall-clock second during the regular session.
    pub rate: f64,
    /// Market seconds per second of feed time.
    pub speed: f64,
    /// Wall-clock time of feed time 0, epoch milliseconds (only used for `ts`).
    pub start_epoch_ms: u64,
    /// Market time at feed time 0.
    pub market_start: MarketMs,
    /// Jump over nights, weekends and holidays instead of waiting them out.
    pub skip_closed: bool,
    /// Seq of the first event (at least 1); every later event takes the next one.
    pub first_seq: u64,
}

/// A bad simulation setting.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SimError {
    #[error("rate must be a number in (0, 100000], got {0}")]
    Rate(f64),
    #[error("speed must be a number in (0, 1000000], got {0}")]
    Speed(f64),
    #[error("symbol {symbol}: {source}")]
    Walk {
        symbol: String,
        #[source]
        source: walk::InvalidWalk,
    },
    #[error("no symbols to simulate")]
    NoSymbols,
    #[error("the first seq must be from 1 to {MAX_FIRST_SEQ}, got {0}")]
    FirstSeq(u64),
}

/// What is due in the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Due {
    /// The symbol's next market event.
    Event,
    /// Its event rate is redrawn (a session boundary or [`MAX_RATE_HOLD_NS`] passed).
    Redraw,
    /// A limit state that began [`LIMIT_STATE_SECS`] ago may turn into a halt.
    LimitCheck,
    /// A halt ends with a reopening auction.
    Reopen,
}

/// A session change of the exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transition {
    PreOpen,
    Open,
    Close,
    PostClose,
}

/// Maps feed time to market time: linear at `speed` within a segment; a new segment starts at
/// each skip over closed time.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Timeline {
    speed: f64,
    feed0: u64,
    market0: MarketNs,
}

impl Timeline {
    fn market_at(&self, feed_ns: u64) -> MarketNs {
        let elapsed = feed_ns.saturating_sub(self.feed0) as f64 * self.speed;
        self.market0
            .saturating_add(elapsed.min(i64::MAX as f64 / 2.0) as i64)
    }

    fn feed_at(&self, market: MarketNs) -> u64 {
        let elapsed = (market - self.market0).max(0) as f64 / self.speed;
        self.feed0.saturating_add(elapsed.ceil() as u64)
    }
}

/// What the simulator remembers about one symbol.
#[derive(Debug, Clone)]
struct SymbolState {
    grid: TickGrid,
    tick: f64,
    spread_bp: f64,
    adv: f64,
    /// Relative activity, mean 1 over symbols.
    activity: f64,
    sizes: TradeSizes,
    depth_lots: f64,
    book: Book,
    luld: Luld,
    /// The official close of the current day, once printed.
    close: Option<Decimal>,
    /// The LULD bands last announced, in ticks `(down, up)`; `None` outside the session.
    bands: Option<(i64, i64)>,
    /// The minute bar being built from this symbol's trades.
    minute: MinuteBar,
    /// Broad index funds stand for "the market" in the circuit breaker.
    is_index: bool,
    /// Market beta, for market-wide shocks.
    beta: f64,
    quote: Quote,
}

/// Where a symbol stood when an earlier run of the same feed stopped (from its last quote).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct Continued {
    pub price: Decimal,
    pub open: Decimal,
    pub high: Decimal,
    pub low: Decimal,
    pub prev_close: Decimal,
    pub volume: u64,
}

/// The market simulator.
#[derive(Debug)]
pub struct Simulator {
    states: Vec<SymbolState>,
    model: PriceModel,
    shape: IntradayShape,
    rng: ChaCha8Rng,
    queue: BinaryHeap<Reverse<(MarketNs, u16, Due)>>,
    day: TradingDay,
    session: SessionState,
    next_transition: (MarketNs, Transition),
    timeline: Timeline,
    /// When the open minute bars close: the end of the minute of the first trade since the
    /// last close, if any.
    bar_due: Option<MarketNs>,
    /// Market-wide circuit breaker levels already triggered today (0 to 3).
    breaker_level: u8,
    seq: u64,
    config: SimConfig,
}

impl Simulator {
    /// Sets up the simulation at `config.market_start` and draws every symbol's first quote
    /// (seq 1..=N, in symbol order): call [`Simulator::opening_quotes`] to take them.
    ///
    /// # Errors
    /// A rate or speed out of range, no symbols, or a symbol with an invalid tick.
    pub fn try_new(specs: &[SymbolSpec], config: SimConfig) -> Result<Self, SimError> {
        if !(config.rate > 0.0 && config.rate <= 100_000.0) {
            return Err(SimError::Rate(config.rate));
        }
        if !(config.speed > 0.0 && config.speed <= 1_000_000.0) {
            return Err(SimError::Speed(config.speed));
        }
        if specs.is_empty() || specs.len() > u16::MAX as usize {
            return Err(SimError::NoSymbols);
        }
        if config.first_seq == 0 || config.first_seq > MAX_FIRST_SEQ {
            return Err(SimError::FirstSeq(config.first_seq));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let mut start = config.market_start;
        let day = TradingDay::current_or_next(start);
        if config.skip_closed && start < day.pre_open {
            start = day.pre_open;
        }
        let start_ns = ns_of_ms(start);
        let mut model = PriceModel::new(specs, start_ns, &mut rng);
        // The night before the first day: prices open away from the CSV's previous close.
        let before = day.prev();
        model.overnight(&before, &day, &mut rng);
        let activity = activities(specs);
        let mut states = Vec::with_capacity(specs.len());
        let session = state_before(&day, start);
        let status = if session == SessionState::Closed {
            Status::Closed
        } else {
            Status::Trading
        };
        for (i, spec) in specs.iter().enumerate() {
            let walk_error = |source| SimError::Walk {
                symbol: spec.symbol.to_string(),
                source,
            };
            let grid = TickGrid::try_new(spec.tick_size).map_err(walk_error)?;
            let tick = grid.tick_f64();
            let prev_close = grid.round(decimal_to_f64(spec.reference_price));
            let price = model.price(i);
            let expected_trades = TRADE_SHARE
                * config.rate
                * activity[i]
                * (SESSION_SECS + EXTENDED_ACTIVITY * EXTENDED_SECS)
                / config.speed;
            let auctions = (OPENING_AUCTION_SHARE.0 + OPENING_AUCTION_SHARE.1) / 2.0
                + (CLOSING_AUCTION_SHARE.0 + CLOSING_AUCTION_SHARE.1) / 2.0;
            let adv = spec.adv as f64;
            let sizes = TradeSizes::with_mean(adv * (1.0 - auctions) / expected_trades);
            let depth_lots = (adv.sqrt() / 1000.0).clamp(1.0, 50.0);
            let mut book = Book::new(price / tick, spread_ticks(price, spec.spread_bp, tick, 1.0));
            book.refresh_sizes(depth_lots, &mut rng);
            let open = if session == SessionState::Open {
                grid.round(price)
            } else {
                prev_close
            };
            let mut quote = Quote {
                symbol: spec.symbol.clone(),
                seq: config.first_seq + i as u64,
                ts: config.start_epoch_ms,
                market_ts: start,
                status,
                limit_up: None,
                limit_down: None,
                price: open,
                bid: Decimal::ZERO,
                ask: Decimal::ZERO,
                bid_size: 0,
                ask_size: 0,
                last_size: 0,
                volume: 0,
                open,
                high: open,
                low: open,
                prev_close,
                change: Decimal::ZERO,
                change_pct: Decimal::ZERO,
            };
            fill_quote(&mut quote, &book, &grid);
            states.push(SymbolState {
                grid,
                tick,
                spread_bp: spec.spread_bp,
                adv,
                activity: activity[i],
                sizes,
                depth_lots,
                book,
                luld: Luld::new(spec.tier.band_fraction(), decimal_to_f64(open), start_ns),
                close: None,
                bands: None,
                minute: MinuteBar::default(),
                is_index: spec.sector.is_index(),
                beta: spec.beta,
                quote,
            });
        }
        let mut sim = Simulator {
            states,
            model,
            shape: IntradayShape::new(),
            rng,
            queue: BinaryHeap::with_capacity(specs.len() * 2),
            day,
            session,
            next_transition: next_transition(&day, start_ns),
            timeline: Timeline {
                speed: config.speed,
                feed0: 0,
                market0: start_ns,
            },
            bar_due: None,
            breaker_level: 0,
            seq: config.first_seq - 1 + specs.len() as u64,
            config,
        };
        if session == SessionState::Open {
            let tau = sim.tau_secs(start_ns);
            for state in &mut sim.states {
                state.bands = Some(state.luld.band(tau, state.tick));
                fill_bands(&mut state.quote, state.bands, &state.grid);
            }
        }
        for index in 0..specs.len() {
            sim.schedule(index as u16, start_ns);
        }
        Ok(sim)
    }

    /// Continues symbol `index` from a quote an earlier run of the same feed published:
    /// its price, the day's open, high, low, volume and previous close. Call before
    /// [`Simulator::opening_quotes`], whose quotes then carry these values (on fresh seqs).
    pub fn continue_from(&mut self, index: usize, last: &Continued) {
        let session = self.session;
        let start_ns = self.timeline.market0;
        let tau = self.tau_secs(start_ns);
        let Some(state) = self.states.get_mut(index) else {
            return;
        };
        let price = decimal_to_f64(last.price);
        if !(price.is_finite() && price > 0.0) {
            return;
        }
        self.model.set_price(index, price);
        state.book = Book::new(
            price / state.tick,
            spread_ticks(price, state.spread_bp, state.tick, 1.0),
        );
        state.book.refresh_sizes(state.depth_lots, &mut self.rng);
        let q = &mut state.quote;
        q.price = last.price;
        q.open = last.open;
        q.high = last.high;
        q.low = last.low;
        q.prev_close = last.prev_close;
        q.volume = last.volume;
        fill_quote(q, &state.book, &state.grid);
        state.luld.reset(price, start_ns);
        if session == SessionState::Open {
            state.bands = Some(state.luld.band(tau, state.tick));
            fill_bands(&mut state.quote, state.bands, &state.grid);
        }
    }

    /// The first quote of every symbol, in symbol order (the first N seqs).
    pub fn opening_quotes(&self) -> Vec<Event> {
        self.states
            .iter()
            .enumerate()
            .map(|(i, s)| Event::Quote(i as u16, s.quote.clone()))
            .collect()
    }

    /// Feed time of the next thing due (an event or a session change), nanoseconds.
    pub fn next_update_ns(&self) -> u64 {
        let next_event = self
            .queue
            .peek()
            .map_or(MarketNs::MAX, |Reverse((at, _, _))| *at);
        let next_bars = self.bar_due.unwrap_or(MarketNs::MAX);
        self.timeline
            .feed_at(next_event.min(self.next_transition.0).min(next_bars))
    }

    /// Market time at feed time `feed_ns`, epoch milliseconds.
    pub fn market_ms_at(&self, feed_ns: u64) -> MarketMs {
        self.timeline.market_at(feed_ns).div_euclid(1_000_000)
    }

    /// Market time at feed time `feed_ns` (at or after the last [`Simulator::advance_to`]) and
    /// how it runs from there.
    pub fn anchor(&self, feed_ns: u64) -> clock::ClockAnchor {
        clock::ClockAnchor {
            market_ms: self.market_ms_at(feed_ns),
            speed: self.config.speed,
            until_ms: self.next_transition.0.div_euclid(1_000_000),
        }
    }

    /// The current session state.
    pub fn session(&self) -> SessionState {
        self.session
    }

    /// Generates, in market-time order, every event due at or before feed time `until_ns`,
    /// appending them to `out`.
    pub fn advance_to(&mut self, until_ns: u64, out: &mut Vec<Event>) {
        loop {
            let target = self.timeline.market_at(until_ns);
            let next_event = self.queue.peek().map(|Reverse(entry)| *entry);
            let event_at = next_event.map_or(MarketNs::MAX, |(at, _, _)| at);
            // Minute bars close before anything else happens at or after the minute's end.
            if let Some(due) = self
                .bar_due
                .filter(|&due| due <= self.next_transition.0 && due <= event_at)
            {
                if due > target {
                    return;
                }
                self.close_bars(due, out);
                continue;
            }
            let transition_first = next_event.is_none_or(|(at, _, _)| self.next_transition.0 <= at);
            if transition_first {
                if self.next_transition.0 > target {
                    return;
                }
                self.transition(out);
            } else if let Some((at, index, due)) = next_event {
                if at > target {
                    return;
                }
                self.queue.pop();
                match due {
                    Due::Event => self.event(index, at, out),
                    Due::Redraw => self.schedule(index, at),
                    Due::LimitCheck => self.limit_check(index, at, out),
                    Due::Reopen => self.reopen(index, at, out),
                }
            }
        }
    }

    /// Moves symbol `index`'s efficient price by `move_pct` percent at once, as news would; the
    /// quotes and trades follow at its next events (and LULD may halt it).
    pub fn news(&mut self, index: usize, move_pct: f64) {
        if index < self.states.len() {
            self.model
                .jump(index, (1.0 + move_pct / 100.0).max(1e-6).ln());
        }
    }

    /// Applies `scenario` at feed time `feed_ns` (call [`Simulator::advance_to`] up to it
    /// first): halts are announced in `out` at once, price moves show in the symbols' next
    /// events. Nothing is drawn from the generator, so a run without scenarios is unchanged.
    ///
    /// # Errors
    /// When the market is closed, or a symbol index is out of range.
    pub fn apply(
        &mut self,
        scenario: &Scenario,
        feed_ns: u64,
        out: &mut Vec<Event>,
    ) -> Result<Applied, ScenarioError> {
        if self.session == SessionState::Closed {
            return Err(ScenarioError::MarketClosed);
        }
        if let Some(&bad) = scenario
            .symbols()
            .iter()
            .find(|&&i| i as usize >= self.states.len())
        {
            return Err(ScenarioError::UnknownSymbol(bad));
        }
        let at = self.timeline.market_at(feed_ns).max(self.last_market_ns());
        let mut applied = Applied {
            market_ts: at.div_euclid(1_000_000),
            halted: Vec::new(),
            circuit_breaker: None,
        };
        match scenario {
            Scenario::Halt { symbols, minutes } => {
                let length = (minutes * 60e9) as MarketNs;
                for &index in symbols {
                    if self.states[index as usize].luld.halted.is_none() {
                        self.halt(index as usize, at, length, Reason::Requested, out);
                        applied.halted.push(index);
                    }
                }
            }
            Scenario::News { symbols, move_pct } => {
                for &index in symbols {
                    self.news(index as usize, *move_pct);
                }
            }
            Scenario::Shock { symbols, move_pct } => {
                for &index in symbols {
                    let beta = self.states[index as usize].beta;
                    self.news(index as usize, move_pct * beta);
                }
                if symbols.len() == self.states.len() {
                    applied.circuit_breaker = self.circuit_breaker(at, out);
                    if applied.circuit_breaker.is_some() {
                        applied.halted = (0..self.states.len() as u16)
                            .filter(|&i| self.states[i as usize].luld.halted.is_some())
                            .collect();
                    }
                }
            }
        }
        Ok(applied)
    }

    /// The market-wide circuit breaker: when the index funds' efficient prices are down 7%,
    /// 13% or 20% from the previous close in the regular session, every symbol halts: 15
    /// minutes for levels 1 and 2 (only before 15:25), the rest of the day for level 3. Each
    /// level trips once a day. Returns the level tripped.
    fn circuit_breaker(&mut self, at: MarketNs, out: &mut Vec<Event>) -> Option<u8> {
        if self.session != SessionState::Open {
            return None;
        }
        let indexes: Vec<usize> = match self.states.iter().any(|s| s.is_index) {
            true => (0..self.states.len())
                .filter(|&i| self.states[i].is_index)
                .collect(),
            false => (0..self.states.len()).collect(),
        };
        let mut decline = 0.0;
        for &i in &indexes {
            let price = self.advance_price(i, at);
            let prev_close = decimal_to_f64(self.states[i].quote.prev_close);
            decline += 1.0 - price / prev_close;
        }
        decline /= indexes.len() as f64;
        let level = match decline {
            d if d >= 0.20 => 3,
            d if d >= 0.13 => 2,
            d if d >= 0.07 => 1,
            _ => 0,
        };
        if level <= self.breaker_level {
            return None;
        }
        self.breaker_level = level;
        let close = ns_of_ms(self.day.close);
        let length = if level == 3 {
            close - at
        } else if at < close - 35 * 60 * 1_000_000_000 {
            15 * 60 * 1_000_000_000
        } else {
            return None;
        };
        for index in 0..self.states.len() {
            let state = &mut self.states[index];
            // A symbol already paused joins the market-wide halt.
            state.luld.halted = None;
            self.halt(index, at, length, Reason::CircuitBreaker, out);
        }
        Some(level)
    }

    /// Market time of the latest thing the simulator did.
    fn last_market_ns(&self) -> MarketNs {
        self.states
            .iter()
            .map(|s| ns_of_ms(s.quote.market_ts))
            .max()
            .unwrap_or(MarketNs::MIN)
    }

    fn transition(&mut self, out: &mut Vec<Event>) {
        let (at, kind) = self.next_transition;
        match kind {
            Transition::PreOpen => {
                self.session = SessionState::Pre;
                self.announce_session(at, out);
                for index in 0..self.states.len() {
                    let price = self.advance_price(index, at);
                    self.requote(index, at, price);
                    self.states[index].quote.status = Status::Trading;
                    self.publish(index, at, None, out);
                    self.announce(index, at, Reason::PreOpen, out);
                }
            }
            Transition::Open => {
                self.session = SessionState::Open;
                self.breaker_level = 0;
                self.announce_session(at, out);
                for index in 0..self.states.len() {
                    self.auction(index, at, Conditions::OPENING, OPENING_AUCTION_SHARE, out);
                    self.announce(index, at, Reason::Open, out);
                }
            }
            Transition::Close => {
                self.session = SessionState::Post;
                self.announce_session(at, out);
                for index in 0..self.states.len() {
                    // A halted symbol is reopened by the closing auction.
                    let state = &mut self.states[index];
                    state.luld.halted = None;
                    state.luld.limit_since = None;
                    state.quote.status = Status::Trading;
                    state.bands = None;
                    self.auction(index, at, Conditions::CLOSING, CLOSING_AUCTION_SHARE, out);
                    self.announce(index, at, Reason::Close, out);
                }
            }
            Transition::PostClose => {
                self.session = SessionState::Closed;
                self.announce_session(at, out);
                for index in 0..self.states.len() {
                    self.rollover(index, at, out);
                    self.announce(index, at, Reason::Closed, out);
                }
                let next = self.day.next();
                self.model.overnight(&self.day, &next, &mut self.rng);
                self.day = next;
                if self.config.skip_closed {
                    let feed = self.timeline.feed_at(at);
                    self.timeline = Timeline {
                        speed: self.config.speed,
                        feed0: feed,
                        market0: ns_of_ms(next.pre_open),
                    };
                }
            }
        }
        self.next_transition = next_transition(&self.day, at + 1);
    }

    /// The daily rollover of one symbol: the close becomes the previous close, the day's
    /// open, high, low and volume start again, and the symbol is closed until the pre-market.
    fn rollover(&mut self, index: usize, at: MarketNs, out: &mut Vec<Event>) {
        let state = &mut self.states[index];
        let close = state.close.take().unwrap_or(state.quote.price);
        let q = &mut state.quote;
        q.prev_close = close;
        q.price = close;
        q.open = close;
        q.high = close;
        q.low = close;
        q.volume = 0;
        q.last_size = 0;
        q.status = Status::Closed;
        self.publish(index, at, None, out);
    }

    /// An auction print of `share` (a range) of the symbol's daily volume at its efficient price.
    fn auction(
        &mut self,
        index: usize,
        at: MarketNs,
        conditions: Conditions,
        share: (f64, f64),
        out: &mut Vec<Event>,
    ) {
        let price = self.advance_price(index, at);
        let size_share = self.rng.random_range(share.0..share.1);
        let state = &mut self.states[index];
        let size = ((state.adv * size_share).round() as u64).max(100);
        let print = state.grid.round(price);
        let q = &mut state.quote;
        if conditions.contains(Conditions::OPENING) {
            q.open = print;
            q.high = print;
            q.low = print;
        }
        if conditions.contains(Conditions::CLOSING) {
            state.close = Some(print);
        }
        state.luld.reset(decimal_to_f64(print), at);
        if self.session == SessionState::Open {
            let tau = self.tau_secs(at);
            let state = &mut self.states[index];
            state.bands = Some(state.luld.band(tau, state.tick));
        }
        self.requote(index, at, price);
        let trade = Trade {
            price: print,
            size,
            conditions,
        };
        self.record_trade(index, &trade);
        self.publish(index, at, Some(trade), out);
    }

    /// One market event of symbol `index`: a trade or a quote change.
    fn event(&mut self, index: u16, at: MarketNs, out: &mut Vec<Event>) {
        let i = index as usize;
        self.schedule(index, at);
        if self.session == SessionState::Closed {
            return;
        }
        let price = self.advance_price(i, at);
        if self.states[i].luld.halted.is_some() {
            return;
        }
        if self.session == SessionState::Open {
            self.watch_band(i, at, price);
        }
        self.requote(i, at, price);
        let trade = if self.rng.random::<f64>() < TRADE_SHARE {
            let state = &mut self.states[i];
            let print = state.book.next_print(&mut self.rng);
            let size = state.sizes.sample(&mut self.rng);
            state
                .book
                .consume(print, size, state.depth_lots, &mut self.rng);
            let mut conditions = Conditions::NONE;
            if size < 100 {
                conditions = conditions.with(Conditions::ODD_LOT);
            }
            if self.session != SessionState::Open {
                conditions = conditions.with(Conditions::EXTENDED);
            }
            let trade = Trade {
                price: state.grid.price_of(print),
                size,
                conditions,
            };
            if self.session == SessionState::Open {
                state.luld.on_trade(print as f64 * state.tick, at);
            }
            self.record_trade(i, &trade);
            Some(trade)
        } else {
            let state = &mut self.states[i];
            state.book.refresh_sizes(state.depth_lots, &mut self.rng);
            None
        };
        // The quote carries the bands that the status event after it announces.
        let bands_moved = self.session == SessionState::Open && self.move_bands(i, at);
        self.publish(i, at, trade, out);
        if bands_moved {
            self.announce(i, at, Reason::Bands, out);
        }
    }

    /// Updates the symbol's LULD bands; true if they moved since they were last announced.
    fn move_bands(&mut self, index: usize, at: MarketNs) -> bool {
        let tau = self.tau_secs(at);
        let state = &mut self.states[index];
        let bands = Some(state.luld.band(tau, state.tick));
        let moved = bands != state.bands;
        state.bands = bands;
        moved
    }

    /// Enters or leaves a limit state; a new one is checked again in [`LIMIT_STATE_SECS`].
    fn watch_band(&mut self, index: usize, at: MarketNs, price: f64) {
        let tau = self.tau_secs(at);
        let state = &mut self.states[index];
        let (down, up) = state.luld.band(tau, state.tick);
        let ticks = price / state.tick;
        if ticks > up as f64 || ticks < down as f64 {
            if state.luld.limit_since.is_none() {
                state.luld.limit_since = Some(at);
                let check = at + (LIMIT_STATE_SECS * 1e9) as MarketNs;
                self.queue
                    .push(Reverse((check, index as u16, Due::LimitCheck)));
            }
        } else {
            state.luld.limit_since = None;
        }
    }

    fn limit_check(&mut self, index: u16, at: MarketNs, out: &mut Vec<Event>) {
        let i = index as usize;
        let began = at - (LIMIT_STATE_SECS * 1e9) as MarketNs;
        if self.session != SessionState::Open || self.states[i].luld.limit_since != Some(began) {
            return;
        }
        let price = self.advance_price(i, at);
        self.watch_band(i, at, price);
        if self.states[i].luld.limit_since != Some(began) {
            return;
        }
        self.halt(i, at, (HALT_SECS * 1e9) as MarketNs, Reason::LuldPause, out);
    }

    /// Halts symbol `index` for `length` of market time.
    fn halt(
        &mut self,
        index: usize,
        at: MarketNs,
        length: MarketNs,
        reason: Reason,
        out: &mut Vec<Event>,
    ) {
        let until = at + length.max(1);
        let state = &mut self.states[index];
        state.luld.halted = Some(until);
        state.luld.limit_since = None;
        state.quote.status = Status::Halted;
        self.queue.push(Reverse((until, index as u16, Due::Reopen)));
        self.publish(index, at, None, out);
        self.announce(index, at, reason, out);
    }

    fn reopen(&mut self, index: u16, at: MarketNs, out: &mut Vec<Event>) {
        let i = index as usize;
        if self.states[i].luld.halted != Some(at) {
            return;
        }
        self.states[i].luld.halted = None;
        self.states[i].quote.status = Status::Trading;
        if self.session == SessionState::Open {
            self.auction(i, at, Conditions::REOPENING, REOPENING_AUCTION_SHARE, out);
        } else {
            self.publish(i, at, None, out);
        }
        self.announce(i, at, Reason::Resumed, out);
    }

    /// Adds a trade to the symbol's day: last price and size, volume, high and low.
    fn record_trade(&mut self, index: usize, trade: &Trade) {
        let q = &mut self.states[index].quote;
        q.price = trade.price;
        q.last_size = trade.size;
        q.volume = q.volume.saturating_add(trade.size);
        q.high = q.high.max(trade.price);
        q.low = q.low.min(trade.price);
    }

    /// Moves the quote toward the efficient `price`, inside the LULD band in the session.
    fn requote(&mut self, index: usize, at: MarketNs, price: f64) {
        let tau = self.tau_secs(at);
        let vol_ratio = self.model.vol_ratio(index);
        let widen = match self.session {
            SessionState::Open => (0.5 + 0.5 * vol_ratio) * (1.0 + (-tau / 600.0).exp()),
            _ => 2.0 * (0.5 + 0.5 * vol_ratio),
        };
        let state = &mut self.states[index];
        let spread = spread_ticks(price, state.spread_bp, state.tick, widen);
        let band = (self.session == SessionState::Open).then(|| state.luld.band(tau, state.tick));
        state
            .book
            .requote(price / state.tick, spread, band, &mut self.rng);
    }

    /// Takes the next seq for an event at market time `at`.
    fn stamp(&mut self, at: MarketNs) -> Header {
        self.seq += 1;
        Header {
            seq: self.seq,
            ts: self.config.start_epoch_ms + self.timeline.feed_at(at) / 1_000_000,
            market_ts: at.div_euclid(1_000_000),
        }
    }

    /// Publishes the trade, if any (and adds it to the symbol's minute bar), then the symbol's
    /// quote summary.
    fn publish(&mut self, index: usize, at: MarketNs, trade: Option<Trade>, out: &mut Vec<Event>) {
        if let Some(trade) = trade {
            let header = self.stamp(at);
            let state = &mut self.states[index];
            let finished = state.minute.add(header.market_ts, trade.price, trade.size);
            debug_assert!(
                finished.is_none(),
                "bars close before the next minute's trades"
            );
            let minute_end = ns_of_ms(Interval::M1.start_of(header.market_ts) + MINUTE_MS);
            self.bar_due = Some(self.bar_due.map_or(minute_end, |due| due.min(minute_end)));
            out.push(Event::Trade(
                index as u16,
                TradeEvent {
                    symbol: state.quote.symbol.clone(),
                    header,
                    trade,
                },
            ));
        }
        let header = self.stamp(at);
        let state = &mut self.states[index];
        let q = &mut state.quote;
        q.seq = header.seq;
        q.ts = header.ts;
        q.market_ts = header.market_ts;
        fill_quote(q, &state.book, &state.grid);
        fill_bands(q, state.bands, &state.grid);
        out.push(Event::Quote(index as u16, q.clone()));
    }

    /// A status event of symbol `index`: its status now, why, and its bands.
    fn announce(&mut self, index: usize, at: MarketNs, reason: Reason, out: &mut Vec<Event>) {
        let header = self.stamp(at);
        let state = &self.states[index];
        out.push(Event::Status(
            index as u16,
            StatusEvent {
                symbol: state.quote.symbol.clone(),
                header,
                status: state.quote.status,
                reason,
                limit_up: state.quote.limit_up,
                limit_down: state.quote.limit_down,
                resumes_at: state.luld.halted.map(|until| until.div_euclid(1_000_000)),
            },
        ));
    }

    /// A session event: the state the market just entered.
    fn announce_session(&mut self, at: MarketNs, out: &mut Vec<Event>) {
        let header = self.stamp(at);
        out.push(Event::Session(SessionEvent {
            header,
            state: self.session,
            next_open: clock::next_open(header.market_ts),
            next_close: clock::next_close(header.market_ts),
        }));
    }

    /// Closes the minute bars of every symbol that traded in the minute ending at `at`.
    fn close_bars(&mut self, at: MarketNs, out: &mut Vec<Event>) {
        self.bar_due = None;
        for index in 0..self.states.len() {
            let Some(bar) = self.states[index].minute.finish() else {
                continue;
            };
            let header = self.stamp(at);
            out.push(Event::Bar(
                index as u16,
                BarEvent {
                    symbol: self.states[index].quote.symbol.clone(),
                    header,
                    interval: Interval::M1.as_str(),
                    bar,
                },
            ));
        }
    }

    /// The symbol's efficient price at `at`.
    fn advance_price(&mut self, index: usize, at: MarketNs) -> f64 {
        self.model.advance(index, &self.day, at, &mut self.rng)
    }

    /// Seconds since the regular open (negative before it).
    fn tau_secs(&self, at: MarketNs) -> f64 {
        (at - ns_of_ms(self.day.open)) as f64 / 1e9
    }

    /// Queues symbol `index`'s next event after `from`, at its current rate; if the rate may
    /// change before then (a session boundary, or [`MAX_RATE_HOLD_NS`]), a redraw instead.
    fn schedule(&mut self, index: u16, from: MarketNs) {
        let i = index as usize;
        let per_wall_sec = self.config.rate * self.states[i].activity * self.activity_now(i, from);
        let boundary = self.next_transition.0.max(from + 1);
        let hold_until = if self.session == SessionState::Closed {
            boundary
        } else {
            (from + MAX_RATE_HOLD_NS).min(boundary)
        };
        let entry = if per_wall_sec > 0.0 {
            let per_market_ns = per_wall_sec / self.config.speed / 1e9;
            let u: f64 = self.rng.random::<f64>().max(1e-300);
            let gap = (-u.ln() / per_market_ns).min(1e18) as MarketNs;
            let at = from.saturating_add(gap.max(1));
            if at < hold_until {
                (at, index, Due::Event)
            } else {
                (hold_until, index, Due::Redraw)
            }
        } else {
            (hold_until, index, Due::Redraw)
        };
        self.queue.push(Reverse(entry));
    }

    /// Activity now, relative to the regular session's mean: the intraday shape and the
    /// symbol's volatility in the session, a tenth outside it, none when closed.
    fn activity_now(&self, index: usize, at: MarketNs) -> f64 {
        match self.session {
            SessionState::Open => {
                let shape = self.shape.at(self.tau_secs(at)) / self.shape.mean();
                shape * self.model.vol_ratio(index) / MEAN_VOL_RATIO
            }
            SessionState::Pre | SessionState::Post => EXTENDED_ACTIVITY,
            SessionState::Closed => 0.0,
        }
    }
}

/// The session change of `day` at or after `from` (or the next day's pre-market).
fn next_transition(day: &TradingDay, from: MarketNs) -> (MarketNs, Transition) {
    let steps = [
        (day.pre_open, Transition::PreOpen),
        (day.open, Transition::Open),
        (day.close, Transition::Close),
        (day.post_close, Transition::PostClose),
    ];
    steps
        .into_iter()
        .map(|(ms, t)| (ns_of_ms(ms), t))
        .find(|(at, _)| *at >= from)
        .unwrap_or((ns_of_ms(day.next().pre_open), Transition::PreOpen))
}

/// The session just before `at` on `day`: a start at exactly 09:30 is still pre-market, so the
/// opening auction happens.
fn state_before(day: &TradingDay, at: MarketMs) -> SessionState {
    day.state_at(at - 1)
}

/// Each symbol's activity: the square root of its average daily volume, within
/// [`ACTIVITY_RANGE`] of the busiest, scaled to mean 1.
fn activities(specs: &[SymbolSpec]) -> Vec<f64> {
    let raw: Vec<f64> = specs.iter().map(|s| (s.adv.max(1) as f64).sqrt()).collect();
    let max = raw.iter().cloned().fold(0.0, f64::max);
    let clamped: Vec<f64> = raw.iter().map(|a| a.max(max / ACTIVITY_RANGE)).collect();
    let mean = clamped.iter().sum::<f64>() / clamped.len() as f64;
    clamped.iter().map(|a| a / mean).collect()
}

/// Sets the quote's LULD bands from `bands` (in ticks).
fn fill_bands(quote: &mut Quote, bands: Option<(i64, i64)>, grid: &TickGrid) {
    (quote.limit_down, quote.limit_up) = match bands {
        Some((down, up)) => (Some(grid.price_of(down)), Some(grid.price_of(up))),
        None => (None, None),
    };
}

/// Sets bid, ask and their sizes from the book, and change and change percent.
fn fill_quote(quote: &mut Quote, book: &Book, grid: &TickGrid) {
    quote.bid = grid.price_of(book.bid);
    quote.ask = grid.price_of(book.ask);
    quote.bid_size = book.bid_size;
    quote.ask_size = book.ask_size;
    quote.change = quote.price - quote.prev_close;
    let mut pct = (quote.change * Decimal::ONE_HUNDRED / quote.prev_close).round_dp(2);
    pct.rescale(2);
    quote.change_pct = pct;
}

fn decimal_to_f64(value: Decimal) -> f64 {
    use rust_decimal::prelude::ToPrimitive;
    value.to_f64().unwrap_or(f64::NAN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::market::clock::et_time;
    use crate::market::facts::correlation;
    use crate::market::symbols;
    use chrono::NaiveDate;

    /// Monday 2024-03-04, 09:30 ET.
    const MONDAY_OPEN: MarketMs = 1_709_562_600_000;
    const SEC: u64 = 1_000_000_000;

    fn specs() -> Vec<SymbolSpec> {
        symbols::built_in().unwrap()
    }

    fn config(seed: u64, rate: f64, speed: f64) -> SimConfig {
        SimConfig {
            seed,
            rate,
            speed,
            start_epoch_ms: 1_700_000_000_000,
            market_start: MONDAY_OPEN,
            skip_closed: true,
            first_seq: 1,
        }
    }

    /// A market event as most tests look at it: the symbol's quote after it, and the trade
    /// it printed, if any.
    #[derive(Debug, Clone)]
    struct Update {
        symbol_index: u16,
        quote: Quote,
        trade: Option<Trade>,
    }

    /// The quotes of `events`, each with the trade just before it.
    fn updates(events: &[Event]) -> Vec<Update> {
        let mut out = Vec::new();
        let mut trade = None;
        for event in events {
            match event {
                Event::Trade(i, t) => trade = Some((*i, t.trade)),
                Event::Quote(i, q) => {
                    out.push(Update {
                        symbol_index: *i,
                        quote: q.clone(),
                        trade: trade.take().filter(|(ti, _)| ti == i).map(|(_, t)| t),
                    });
                }
                _ => {}
            }
        }
        out
    }

    /// Every event of `feed_secs` seconds of feed time, the first quotes included.
    fn run_events(config: SimConfig, feed_secs: u64) -> Vec<Event> {
        let mut sim = Simulator::try_new(&specs(), config).unwrap();
        let mut out = sim.opening_quotes();
        sim.advance_to(feed_secs * SEC, &mut out);
        out
    }

    /// The quotes (with their trades) of `feed_secs` seconds of feed time.
    fn run(config: SimConfig, feed_secs: u64) -> Vec<Update> {
        updates(&run_events(config, feed_secs))
    }

    fn f(d: Decimal) -> f64 {
        decimal_to_f64(d)
    }

    fn day_of(ms: MarketMs) -> TradingDay {
        TradingDay::of(clock::et_date_of(ms)).expect("events happen on trading days")
    }

    #[test]
    fn invariants_hold_over_many_seeds() {
        let specs = specs();
        for seed in [1, 2, 3, 42, 9001] {
            // Two and a half trading days at 1200x.
            let updates = run(config(seed, 10.0, 1200.0), 120);
            assert!(updates.len() > 50_000, "{} updates", updates.len());
            let mut last_ts = 0;
            for u in &updates {
                let q = &u.quote;
                let spec = &specs[u.symbol_index as usize];
                assert_eq!(q.symbol, spec.symbol);
                assert!(q.market_ts >= last_ts, "market time never goes back");
                last_ts = q.market_ts;
                for p in [q.price, q.bid, q.ask, q.open, q.high, q.low, q.prev_close] {
                    assert_eq!(
                        p.scale(),
                        spec.tick_size.scale(),
                        "{p} keeps the tick's decimals"
                    );
                    assert!((p % spec.tick_size).is_zero(), "{p} on the tick grid");
                    assert!(p > Decimal::ZERO, "{p} positive");
                }
                assert!(q.bid < q.ask, "{} < {}", q.bid, q.ask);
                assert!(q.low <= q.price && q.price <= q.high, "{q:?}");
                assert_eq!(q.change, q.price - q.prev_close);
                if let Some(t) = &u.trade {
                    assert_eq!(t.price, q.price);
                    assert!(t.size > 0);
                    if !t.conditions.is_auction() {
                        assert!(q.bid <= t.price && t.price <= q.ask, "{t:?} in {q:?}");
                    }
                    assert_eq!(t.conditions.contains(Conditions::ODD_LOT), t.size < 100);
                }
            }
        }
    }

    #[test]
    fn same_seed_and_start_give_the_same_events_whatever_the_batches() {
        let key = |u: &Update| {
            (
                u.symbol_index,
                u.quote.seq,
                u.quote.market_ts,
                u.quote.price,
                u.quote.bid,
                u.quote.ask,
                u.quote.volume,
                u.trade,
            )
        };
        let a: Vec<_> = run(config(7, 10.0, 600.0), 30).iter().map(key).collect();
        let b: Vec<_> = run(config(7, 10.0, 600.0), 30).iter().map(key).collect();
        let c: Vec<_> = run(config(8, 10.0, 600.0), 30).iter().map(key).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
        let mut sim = Simulator::try_new(&specs(), config(7, 10.0, 600.0)).unwrap();
        let mut stepped = sim.opening_quotes();
        for ms in (0..=30_000).step_by(37) {
            sim.advance_to(ms * 1_000_000, &mut stepped);
        }
        sim.advance_to(30 * SEC, &mut stepped);
        let stepped: Vec<_> = updates(&stepped).iter().map(key).collect();
        let first_difference = a.iter().zip(&stepped).position(|(x, y)| x != y);
        assert_eq!(
            first_difference,
            None,
            "{:?}",
            first_difference.map(|i| (&a[i], &stepped[i]))
        );
        assert_eq!(a.len(), stepped.len());
    }

    #[test]
    fn sessions_auctions_and_rollover() {
        // Three trading days at 3600x: 16 market hours a day take 16 s.
        let updates = run(config(5, 20.0, 3600.0), 50);
        let n = specs().len();
        let mut closes: std::collections::HashMap<(u16, NaiveDate), Decimal> = Default::default();
        let mut days_seen = std::collections::BTreeSet::new();
        let mut last_volume = vec![0u64; n];
        for u in &updates[n..] {
            let q = &u.quote;
            let day = day_of(q.market_ts);
            days_seen.insert(day.date);
            assert!(
                q.market_ts >= day.pre_open && q.market_ts <= day.post_close,
                "no event in closed time"
            );
            if let Some(t) = &u.trade {
                let regular = !t.conditions.contains(Conditions::EXTENDED);
                if regular {
                    assert!(
                        q.market_ts >= day.open && q.market_ts <= day.close,
                        "regular trade at {}",
                        q.market_ts
                    );
                } else {
                    assert!(q.market_ts < day.open || q.market_ts > day.close);
                }
                if t.conditions.contains(Conditions::OPENING) {
                    assert_eq!(q.market_ts, day.open);
                    assert_eq!(q.open, t.price);
                }
                if t.conditions.contains(Conditions::CLOSING) {
                    assert_eq!(q.market_ts, day.close);
                    closes.insert((u.symbol_index, day.date), t.price);
                }
            }
            let i = u.symbol_index as usize;
            if q.status == Status::Closed {
                assert_eq!(q.market_ts, day.post_close, "closed at 20:00");
                assert_eq!(q.volume, 0, "volume resets at the rollover");
                let close = closes[&(u.symbol_index, day.date)];
                assert_eq!(q.prev_close, close, "the close becomes the previous close");
            } else if q.market_ts >= day.pre_open && q.market_ts < day.open && last_volume[i] > 0 {
                assert!(q.volume >= last_volume[i]);
            }
            last_volume[i] = q.volume;
        }
        assert!(days_seen.len() >= 3, "{days_seen:?}");
        // Every symbol printed an opening and a closing auction each full day.
        let closing = updates
            .iter()
            .filter(|u| {
                u.trade
                    .is_some_and(|t| t.conditions.contains(Conditions::CLOSING))
            })
            .count();
        assert_eq!(closing % n, 0);
        assert!(closing >= 2 * n);
        // The first day's previous close is the CSV price; the next day's is the first close.
        let specs = specs();
        assert_eq!(updates[0].quote.prev_close, specs[0].reference_price);
    }

    #[test]
    fn closed_time_is_skipped_by_default_and_kept_on_request() {
        let rollover_gap = |skip: bool| {
            let mut cfg = config(3, 5.0, 3600.0);
            cfg.skip_closed = skip;
            // From Friday's open: the weekend follows its post-market.
            cfg.market_start = et_time(NaiveDate::from_ymd_opt(2024, 3, 8).unwrap(), 9, 30);
            let updates = run(cfg, if skip { 20 } else { 80 });
            let closed = updates
                .iter()
                .find(|u| u.quote.status == Status::Closed)
                .unwrap();
            let reopened = updates
                .iter()
                .find(|u| u.quote.seq > closed.quote.seq && u.quote.status == Status::Trading)
                .unwrap();
            let monday = et_time(NaiveDate::from_ymd_opt(2024, 3, 11).unwrap(), 4, 0);
            assert_eq!(
                reopened.quote.market_ts, monday,
                "Monday's pre-market follows Friday's"
            );
            reopened.quote.ts - closed.quote.ts
        };
        assert!(rollover_gap(true) <= 1, "skipped: no wall time passes");
        // Kept: 56 market hours at 3600x are 56 s.
        let kept = rollover_gap(false);
        assert!((55_000..=57_000).contains(&kept), "{kept} ms");
    }

    #[test]
    fn a_start_in_closed_time_jumps_to_the_next_pre_market() {
        let mut cfg = config(1, 2.0, 60.0);
        cfg.market_start = et_time(NaiveDate::from_ymd_opt(2024, 3, 9).unwrap(), 12, 0);
        let mut sim = Simulator::try_new(&specs(), cfg).unwrap();
        let monday = et_time(NaiveDate::from_ymd_opt(2024, 3, 11).unwrap(), 4, 0);
        assert_eq!(
            sim.opening_quotes()[0].as_quote().unwrap().market_ts,
            monday
        );
        let mut out = Vec::new();
        sim.advance_to(0, &mut out);
        assert_eq!(sim.session(), SessionState::Pre);
        assert_eq!(
            updates(&out).len(),
            specs().len(),
            "the pre-market opens at once"
        );
        cfg.skip_closed = false;
        let sim = Simulator::try_new(&specs(), cfg).unwrap();
        assert_eq!(sim.session(), SessionState::Closed);
        assert_eq!(
            sim.opening_quotes()[0].as_quote().unwrap().status,
            Status::Closed
        );
    }

    #[test]
    fn a_symbol_at_its_band_is_halted_then_reopened_by_an_auction() {
        let specs = specs();
        let aapl = specs
            .iter()
            .position(|s| s.symbol.as_str() == "AAPL")
            .unwrap() as u16;
        let mut cfg = config(11, 50.0, 10.0);
        cfg.market_start = MONDAY_OPEN + 3_600_000;
        let mut sim = Simulator::try_new(&specs, cfg).unwrap();
        let mut out = Vec::new();
        sim.advance_to(SEC, &mut out);
        let news_at = sim.market_ms_at(SEC);
        sim.news(aapl as usize, 15.0);
        let before = out.len();
        sim.advance_to(60 * SEC, &mut out);
        let after = updates(&out[before..]);
        let mine: Vec<&Update> = after.iter().filter(|u| u.symbol_index == aapl).collect();
        let halted = mine
            .iter()
            .position(|u| u.quote.status == Status::Halted)
            .expect("halted");
        let halted_at = mine[halted].quote.market_ts;
        let limit_up = mine[..halted].iter().map(|u| u.quote.ask).max().unwrap();
        // The quote sat at the band (a limit state) for 15 s, then the halt came.
        assert!(mine[..halted]
            .iter()
            .all(|u| u.trade.is_none_or(|t| t.price <= limit_up)));
        let waited = halted_at - news_at;
        assert!(
            (15_000..16_000).contains(&waited),
            "halted {waited} ms after the news"
        );
        let reopen = &mine[halted + 1];
        assert_eq!(
            reopen.quote.market_ts - halted_at,
            300_000,
            "nothing for five minutes"
        );
        let print = reopen.trade.expect("a reopening print");
        assert!(print.conditions.contains(Conditions::REOPENING));
        assert!(
            print.price > limit_up,
            "reopens at the new price: {} > {limit_up}",
            print.price
        );
        assert_eq!(reopen.quote.status, Status::Trading);
        assert!(mine.len() > halted + 10, "trading resumes");
    }

    /// Trades and quotes of ten market minutes of the regular session, dense as at 1x.
    fn session_events(seed: u64) -> Vec<Update> {
        let mut cfg = config(seed, 20.0, 10.0);
        cfg.market_start = MONDAY_OPEN + 3_600_000;
        run(cfg, 60)
            .into_iter()
            .filter(|u| {
                let day = day_of(u.quote.market_ts);
                u.quote.market_ts > day.open && u.quote.market_ts < day.close
            })
            .collect()
    }

    #[test]
    fn trades_bounce_quotes_do_not_and_sizes_look_real() {
        let specs = specs();
        let events = session_events(21);
        let (mut bounce, mut mid) = (Vec::new(), Vec::new());
        let (mut odd, mut trades, mut inside, mut wide) = (0, 0, 0, 0);
        for (i, spec) in specs.iter().enumerate() {
            let mine: Vec<&Update> = events
                .iter()
                .filter(|u| u.symbol_index as usize == i)
                .collect();
            let prices: Vec<f64> = mine
                .iter()
                .filter(|u| u.trade.is_some_and(|t| !t.conditions.is_auction()))
                .map(|u| f(u.quote.price))
                .collect();
            let changes: Vec<f64> = prices.windows(2).map(|w| w[1] - w[0]).collect();
            if changes.len() > 50 {
                bounce.push(correlation(&changes[1..], &changes[..changes.len() - 1]));
            }
            let mids: Vec<f64> = mine.iter().map(|u| f(u.quote.bid + u.quote.ask)).collect();
            let dm: Vec<f64> = mids
                .windows(2)
                .map(|w| w[1] - w[0])
                .filter(|d| *d != 0.0)
                .collect();
            if dm.len() > 50 {
                mid.push(correlation(&dm[1..], &dm[..dm.len() - 1]));
            }
            for u in &mine {
                if let Some(t) = u.trade.filter(|t| !t.conditions.is_auction()) {
                    trades += 1;
                    odd += (t.size < 100) as usize;
                    let tick = spec.tick_size;
                    if u.quote.ask - u.quote.bid >= tick + tick {
                        wide += 1;
                        inside += (t.price > u.quote.bid && t.price < u.quote.ask) as usize;
                    }
                }
            }
        }
        let avg = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let (bounce, mid) = (avg(&bounce), avg(&mid));
        assert!(
            (-0.5..=-0.1).contains(&bounce),
            "trade-to-trade lag-1 {bounce}"
        );
        assert!(mid.abs() < 0.05, "mid-quote lag-1 {mid}");
        let odd_share = odd as f64 / trades as f64;
        assert!((0.40..=0.50).contains(&odd_share), "odd lots {odd_share}");
        let inside_share = inside as f64 / wide as f64;
        assert!(
            (0.10..=0.30).contains(&inside_share),
            "inside the spread {inside_share}"
        );
    }

    #[test]
    fn spreads_follow_each_symbols_typical_spread() {
        let specs = specs();
        let events = session_events(4);
        let mean_bp = |name: &str| {
            let i = specs
                .iter()
                .position(|s| s.symbol.as_str() == name)
                .unwrap();
            let bps: Vec<f64> = events
                .iter()
                .filter(|u| u.symbol_index as usize == i)
                .map(|u| f(u.quote.ask - u.quote.bid) / f(u.quote.bid + u.quote.ask) * 2e4)
                .collect();
            (
                bps.iter().sum::<f64>() / bps.len() as f64,
                specs[i].spread_bp,
            )
        };
        for name in ["SPY", "AAPL", "BKNG", "RIVN", "F"] {
            let (measured, typical) = mean_bp(name);
            assert!(
                measured >= typical * 0.7 && measured <= typical * 2.5 + 1.0,
                "{name}: {measured} bp vs typical {typical}"
            );
        }
        assert!(mean_bp("RIVN").0 > 5.0 * mean_bp("SPY").0);
    }

    #[test]
    fn rate_counts_wall_clock_events_and_activity_follows_volume() {
        let specs = specs();
        let rate = 4.0;
        for speed in [1.0, 60.0] {
            let mut cfg = config(13, rate, speed);
            cfg.market_start = MONDAY_OPEN + 2 * 3_600_000;
            let secs = 300;
            let updates = run(cfg, secs);
            let events = updates.len() - specs.len();
            let per_symbol_sec = events as f64 / specs.len() as f64 / secs as f64;
            // Midday activity is a little under the session's mean (the U-shape).
            assert!(
                (0.6 * rate..=1.3 * rate).contains(&per_symbol_sec),
                "speed {speed}: {per_symbol_sec}/s"
            );
            let count = |name: &str| {
                let i = specs
                    .iter()
                    .position(|s| s.symbol.as_str() == name)
                    .unwrap() as u16;
                updates.iter().filter(|u| u.symbol_index == i).count() as f64
            };
            let ratio = count("NVDA") / count("BKNG");
            assert!((5.0..=20.0).contains(&ratio), "busiest vs quietest {ratio}");
        }
    }

    #[test]
    fn daily_volume_matches_adv_whatever_the_speed() {
        let specs = specs();
        let volumes = |speed: f64, rate: f64| {
            let cfg = config(17, rate, speed);
            // Four trading days.
            let feed_secs = (4.0 * 16.0 * 3600.0 / speed).ceil() as u64;
            let updates = run(cfg, feed_secs);
            let mut total = 0.0;
            let mut days = 0;
            for u in &updates {
                if u.quote.status == Status::Closed {
                    // The quote before the rollover carries the day's volume; sum it instead.
                    days += 1;
                }
                if let Some(t) = u.trade {
                    total += t.size as f64;
                }
            }
            let days = days as f64 / specs.len() as f64;
            let adv: f64 = specs.iter().map(|s| s.adv as f64).sum();
            total / days / adv
        };
        let slow = volumes(600.0, 20.0);
        let fast = volumes(7200.0, 20.0);
        assert!((0.7..=1.3).contains(&slow), "volume / ADV at 600x: {slow}");
        assert!((0.7..=1.3).contains(&fast), "volume / ADV at 7200x: {fast}");
    }

    #[test]
    fn every_event_takes_the_next_seq_and_bars_match_their_trades() {
        let events = run_events(config(3, 10.0, 1200.0), 120);
        for (n, e) in events.iter().enumerate() {
            assert_eq!(e.seq(), n as u64 + 1, "one gapless sequence for every kind");
        }
        let mut bars = 0;
        let mut open: std::collections::HashMap<(u16, MarketMs), Vec<(u64, Trade)>> =
            Default::default();
        for e in &events {
            match e {
                Event::Trade(i, t) => {
                    let minute = Interval::M1.start_of(t.header.market_ts);
                    open.entry((*i, minute))
                        .or_default()
                        .push((t.header.seq, t.trade));
                }
                Event::Bar(i, b) => {
                    bars += 1;
                    let trades = open.remove(&(*i, b.bar.start)).expect("a bar has trades");
                    assert_eq!(
                        b.header.market_ts,
                        b.bar.start + MINUTE_MS,
                        "sent at the close"
                    );
                    assert_eq!(b.interval, "1m");
                    let prices: Vec<Decimal> = trades.iter().map(|(_, t)| t.price).collect();
                    assert_eq!(b.bar.open, prices[0]);
                    assert_eq!(b.bar.close, *prices.last().unwrap());
                    assert_eq!(b.bar.high, *prices.iter().max().unwrap());
                    assert_eq!(b.bar.low, *prices.iter().min().unwrap());
                    assert_eq!(b.bar.trades, trades.len() as u64);
                    assert_eq!(
                        b.bar.volume,
                        trades.iter().map(|(_, t)| t.size).sum::<u64>()
                    );
                    assert!(b.bar.low <= b.bar.vwap && b.bar.vwap <= b.bar.high);
                }
                _ => {}
            }
            // Bars are sent before any event of a later minute.
            if !matches!(e, Event::Bar(..)) {
                let now = Interval::M1.start_of(e.header().market_ts);
                assert!(
                    open.keys().all(|(_, minute)| *minute >= now),
                    "a bar left open past its minute at seq {}",
                    e.seq()
                );
            }
        }
        assert!(bars > 1000, "{bars} bars");
    }

    #[test]
    fn sessions_statuses_and_bands_are_announced() {
        let specs = specs();
        let mut cfg = config(5, 5.0, 3600.0);
        cfg.market_start = MONDAY_OPEN - 2 * 3_600_000;
        // Two trading days: 07:30 Monday to Wednesday's pre-market.
        let events = run_events(cfg, 33);
        let sessions: Vec<&SessionEvent> = events
            .iter()
            .filter_map(|e| match e {
                Event::Session(s) => Some(s),
                _ => None,
            })
            .collect();
        let states: Vec<SessionState> = sessions.iter().map(|s| s.state).collect();
        use SessionState::*;
        assert_eq!(states, [Open, Post, Closed, Pre, Open, Post, Closed, Pre]);
        for s in &sessions {
            assert!(s.next_open > s.header.market_ts && s.next_close > s.header.market_ts);
            assert_eq!(s.next_open, clock::next_open(s.header.market_ts));
        }
        assert_eq!(sessions[0].header.market_ts, MONDAY_OPEN);
        assert_eq!(sessions[0].next_close, MONDAY_OPEN + 390 * MINUTE_MS);
        let statuses: Vec<(u16, &StatusEvent)> = events
            .iter()
            .filter_map(|e| match e {
                Event::Status(i, s) => Some((*i, s)),
                _ => None,
            })
            .collect();
        let count = |reason: Reason| statuses.iter().filter(|(_, s)| s.reason == reason).count();
        assert_eq!(count(Reason::Open), 2 * specs.len());
        assert_eq!(count(Reason::Close), 2 * specs.len());
        assert_eq!(count(Reason::Closed), 2 * specs.len());
        assert_eq!(count(Reason::PreOpen), 2 * specs.len());
        for (i, s) in &statuses {
            let in_session = s.reason != Reason::Close
                && s.reason != Reason::Closed
                && s.reason != Reason::PreOpen;
            assert_eq!(s.limit_up.is_some(), in_session, "{s:?}");
            if let (Some(up), Some(down)) = (s.limit_up, s.limit_down) {
                let tick = specs[*i as usize].tick_size;
                assert!(down < up && (up % tick).is_zero() && (down % tick).is_zero());
            }
        }
        // Bands move on 1% reference moves and at 09:45 and 15:35, not at every trade.
        let bands = count(Reason::Bands) as f64 / specs.len() as f64 / 2.0;
        assert!((2.0..40.0).contains(&bands), "{bands} band moves a day");
        // Each band announcement changes the bands.
        let mut last: std::collections::HashMap<u16, (Option<Decimal>, Option<Decimal>)> =
            Default::default();
        for (i, s) in &statuses {
            let now = (s.limit_down, s.limit_up);
            if s.reason == Reason::Bands {
                assert_ne!(last.get(i), Some(&now), "{s:?}");
            }
            last.insert(*i, now);
        }
        // A status event announces the bands of the symbol's quote just before it.
        let mut quoted: std::collections::HashMap<u16, (Option<Decimal>, Option<Decimal>)> =
            Default::default();
        for e in &events {
            match e {
                Event::Quote(i, q) => {
                    quoted.insert(*i, (q.limit_down, q.limit_up));
                }
                Event::Status(i, s) => {
                    assert_eq!(quoted.get(i), Some(&(s.limit_down, s.limit_up)), "{s:?}");
                }
                _ => {}
            }
        }
    }

    fn scenario_sim(market_start: MarketMs) -> Simulator {
        let mut cfg = config(11, 20.0, 10.0);
        cfg.market_start = market_start;
        Simulator::try_new(&specs(), cfg).unwrap()
    }

    #[test]
    fn a_requested_halt_is_announced_and_ends_with_a_reopening_print() {
        let mut sim = scenario_sim(MONDAY_OPEN + 3_600_000);
        let mut out = Vec::new();
        sim.advance_to(SEC, &mut out);
        let before = out.len();
        let applied = sim
            .apply(
                &Scenario::Halt {
                    symbols: vec![0, 3],
                    minutes: 2.0,
                },
                SEC,
                &mut out,
            )
            .unwrap();
        assert_eq!(applied.halted, [0, 3]);
        assert_eq!(applied.market_ts, sim.market_ms_at(SEC));
        let halts: Vec<&StatusEvent> = out[before..]
            .iter()
            .filter_map(|e| match e {
                Event::Status(_, s) => Some(s),
                _ => None,
            })
            .collect();
        assert_eq!(halts.len(), 2);
        assert!(halts
            .iter()
            .all(|s| s.status == Status::Halted && s.reason == Reason::Requested));
        sim.advance_to(20 * SEC, &mut out);
        let mine: Vec<&Event> = out[before..]
            .iter()
            .filter(|e| e.symbol_index() == 0)
            .collect();
        let resumed = mine
            .iter()
            .position(|e| matches!(e, Event::Status(_, s) if s.reason == Reason::Resumed))
            .expect("resumed");
        let resumed_at = mine[resumed].header().market_ts;
        assert_eq!(resumed_at - applied.market_ts, 120_000, "two minutes");
        // Nothing trades in between; the reopening print comes right before the status.
        let trades: Vec<&TradeEvent> = mine[..resumed]
            .iter()
            .filter_map(|e| match e {
                Event::Trade(_, t) => Some(t),
                _ => None,
            })
            .collect();
        assert_eq!(trades.len(), 1);
        assert!(trades[0].trade.conditions.contains(Conditions::REOPENING));
        assert_eq!(trades[0].header.market_ts, resumed_at);
    }

    #[test]
    fn a_market_wide_shock_trips_the_circuit_breaker() {
        let mut sim = scenario_sim(MONDAY_OPEN + 3_600_000);
        let all: Vec<u16> = (0..specs().len() as u16).collect();
        let mut out = Vec::new();
        sim.advance_to(SEC, &mut out);
        let small = Scenario::Shock {
            symbols: all.clone(),
            move_pct: -2.0,
        };
        let applied = sim.apply(&small, SEC, &mut out).unwrap();
        assert_eq!(applied.circuit_breaker, None);
        let before = out.len();
        // With the day's own fall, the index funds are now down 7-13% from the close.
        let big = Scenario::Shock {
            symbols: all.clone(),
            move_pct: -6.0,
        };
        let applied = sim.apply(&big, 2 * SEC, &mut out).unwrap();
        assert_eq!(applied.circuit_breaker, Some(1));
        assert_eq!(applied.halted.len(), all.len());
        let halted = out[before..]
            .iter()
            .filter(|e| {
                matches!(e, Event::Status(_, s) if s.reason == Reason::CircuitBreaker && s.status == Status::Halted)
            })
            .count();
        assert_eq!(halted, all.len());
        // Fifteen minutes of nothing, then every symbol reopens.
        sim.advance_to(2 * SEC + 89 * SEC, &mut out);
        assert!(out[before + 2 * all.len()..]
            .iter()
            .all(|e| !matches!(e, Event::Trade(..))));
        sim.advance_to(2 * SEC + 91 * SEC, &mut out);
        let resumed = out
            .iter()
            .filter(|e| matches!(e, Event::Status(_, s) if s.reason == Reason::Resumed))
            .count();
        assert_eq!(resumed, all.len());
        // Level 1 trips once a day; a further fall to 13% trips level 2.
        let again = sim.apply(&small, 92 * SEC, &mut out).unwrap();
        assert_eq!(again.circuit_breaker, None);
        let again = sim.apply(&big, 93 * SEC, &mut out).unwrap();
        assert_eq!(again.circuit_breaker, Some(2));
    }

    #[test]
    fn news_moves_a_price_and_closed_markets_refuse_scenarios() {
        let mut sim = scenario_sim(MONDAY_OPEN + 3_600_000);
        let mut out = Vec::new();
        sim.advance_to(SEC, &mut out);
        let before = sim.model.price(2);
        sim.apply(
            &Scenario::News {
                symbols: vec![2],
                move_pct: 8.0,
            },
            SEC,
            &mut out,
        )
        .unwrap();
        assert!((sim.model.price(2) / before - 1.08).abs() < 1e-9);
        let bad = Scenario::News {
            symbols: vec![999],
            move_pct: 1.0,
        };
        assert_eq!(
            sim.apply(&bad, SEC, &mut out),
            Err(ScenarioError::UnknownSymbol(999))
        );
        let mut cfg = config(11, 20.0, 10.0);
        cfg.market_start = et_time(NaiveDate::from_ymd_opt(2024, 3, 9).unwrap(), 12, 0);
        cfg.skip_closed = false;
        let mut closed = Simulator::try_new(&specs(), cfg).unwrap();
        assert_eq!(
            closed.apply(&bad, 0, &mut out),
            Err(ScenarioError::MarketClosed)
        );
    }
}
