//! The efficient price: market, sector and own factors, each with its own volatility, plus jumps.
//!
//! A symbol's log price moves by `beta * dM + dS + dO`: the market factor `M` shared by all, its
//! sector's factor `S` (none for broad index funds) and its own factor `O`. The symbol's variance
//! is split once from its CSV volatility and beta: the market takes `beta^2 * MARKET_VOL^2`, the
//! rest is idiosyncratic (at least [`IDIO_FLOOR`] of the total), of which [`SECTOR_SHARE`] goes
//! to the sector factor, so pairwise correlations are what betas and sectors imply.
//!
//! Every factor spreads its daily variance over the day by a fixed budget ([`Budget`]): most in
//! the regular session along the intraday shape, a little in pre- and post-market, some in the
//! overnight gap, and (market and own factors) some in jumps: rare market-wide ones and more
//! frequent own ones (news; earnings nights widen the own gap). Each factor's volatility is its
//! own [`LogVol`], so calm and storm cluster per stock and per market, and the slow components
//! carry the leverage effect. Because shares and multipliers average to one, the realised
//! volatility over many days is the CSV's.
//!
//! Factors are advanced lazily, each from its own last time to the time asked: the event-level
//! simulator advances a symbol at each of its events and the coarse test path on a fixed grid,
//! through the same code.

use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

use super::clock::{MarketMs, TradingDay};
use super::symbols::SymbolSpec;
use super::volatility::{IntradayShape, LogVol, OVERNIGHT_TRADING_SECS, SESSION_SECS};
use super::walk::Shocks;

/// Annual volatility of the market factor (a broad index's long-run average).
pub const MARKET_VOL: f64 = 0.16;
/// Share of a stock's idiosyncratic variance that its sector shares with its peers.
pub const SECTOR_SHARE: f64 = 0.35;
/// Least idiosyncratic share of a symbol's variance, when beta alone would explain it all: small,
/// so funds that track the same index correlate above 0.99 as they do.
pub const IDIO_FLOOR: f64 = 0.002;
/// Trading days in a year: annual volatilities refer to this.
pub const TRADING_DAYS: f64 = 252.0;
/// Nanoseconds per millisecond of market time.
const NS_PER_MS: i64 = 1_000_000;
/// Seconds of pre-market (04:00-09:30) and post-market (16:00-20:00) together.
const EXTENDED_SECS: f64 = (5.5 + 4.0) * 3600.0;
/// Own jumps (news) per trading day, per stock.
const OWN_JUMPS_PER_DAY: f64 = 0.08;
/// Market-wide jumps per trading day: rarer than any one stock's news.
const MARKET_JUMPS_PER_DAY: f64 = 0.02;
/// Nights with an earnings release, as a share of all nights (four a year).
const EARNINGS_SHARE: f64 = 4.0 / TRADING_DAYS;
/// An earnings gap's standard deviation relative to an ordinary night's.
const EARNINGS_GAP_RATIO: f64 = 5.0;

/// Market time in nanoseconds since the epoch: events of busy symbols are closer than a
/// millisecond, so the simulator keeps time finer than the wire's milliseconds.
pub type MarketNs = i64;

/// `ms` in nanoseconds.
pub fn ns_of_ms(ms: MarketMs) -> MarketNs {
    ms.saturating_mul(NS_PER_MS)
}

/// How a factor spreads a day's variance: shares of the regular session, extended hours, the
/// overnight gap and jumps, summing to 1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    pub regular: f64,
    pub extended: f64,
    pub gap: f64,
    pub jumps: f64,
}

impl Budget {
    const MARKET: Budget = Budget {
        regular: 0.75,
        extended: 0.05,
        gap: 0.15,
        jumps: 0.05,
    };
    const SECTOR: Budget = Budget {
        regular: 0.80,
        extended: 0.05,
        gap: 0.15,
        jumps: 0.0,
    };
    const OWN: Budget = Budget {
        regular: 0.69,
        extended: 0.05,
        gap: 0.20,
        jumps: 0.06,
    };
}

/// The part of a span of market time that falls in each kind of session of one trading day.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Span {
    /// Seconds of regular session: the clock of the volatility components.
    pub trading_secs: f64,
    /// Share of a regular session's variance (the intraday shape squared, integrated).
    pub regular_var: f64,
    /// Share of a day's extended-hours variance.
    pub extended_var: f64,
}

impl Span {
    /// The span `[from, to]` of `day`, cut to the day's sessions. `cum_from` and `cum_to` are
    /// [`cumulative_shape`] at `from` and `to`: callers compute the one at `to` once for all the
    /// factors they advance to the same time.
    pub fn of(day: &TradingDay, from: MarketNs, to: MarketNs, cum_from: f64, cum_to: f64) -> Span {
        if to <= from {
            return Span::default();
        }
        let overlap = |a: MarketMs, b: MarketMs| -> f64 {
            let (a, b) = (ns_of_ms(a), ns_of_ms(b));
            (to.min(b) - from.max(a)).max(0) as f64 / 1e9
        };
        let extended_secs = overlap(day.pre_open, day.open) + overlap(day.close, day.post_close);
        Span {
            trading_secs: overlap(day.open, day.close),
            regular_var: (cum_to - cum_from).max(0.0) / SESSION_SECS,
            extended_var: extended_secs / EXTENDED_SECS,
        }
    }
}

/// `integral of s^2` from the open of `day` to `at` (0 before the open, the whole session's
/// after the close).
pub fn cumulative_shape(day: &TradingDay, shape: &IntradayShape, at: MarketNs) -> f64 {
    let tau = (at - ns_of_ms(day.open)) as f64 / 1e9;
    if tau <= 0.0 {
        0.0
    } else {
        shape.sq_integral(0.0, tau)
    }
}

/// One factor: a log level, its volatility state, and the last time it was advanced.
#[derive(Debug, Clone)]
struct Factor {
    level: f64,
    vol: LogVol,
    /// Variance of one day, all parts together.
    daily_var: f64,
    budget: Budget,
    jumps_per_day: f64,
    /// Standard deviation of one jump, so that jumps carry `budget.jumps` of the variance.
    jump_sd: f64,
    /// Log drift per second of regular session.
    drift_per_sec: f64,
    /// [`cumulative_shape`] at `last`.
    last_cum: f64,
    /// Whether some nights are earnings nights with a wider gap (a stock's own factor).
    earnings_nights: bool,
    last: MarketNs,
}

impl Factor {
    fn new<R: Rng + ?Sized>(
        annual_var: f64,
        budget: Budget,
        jumps_per_day: f64,
        start: MarketNs,
        rng: &mut R,
    ) -> Factor {
        let daily_var = annual_var / TRADING_DAYS;
        let jump_sd = if jumps_per_day > 0.0 {
            (budget.jumps * daily_var / jumps_per_day).sqrt()
        } else {
            0.0
        };
        Factor {
            level: 0.0,
            vol: LogVol::stationary(rng),
            daily_var,
            budget,
            jumps_per_day,
            jump_sd,
            drift_per_sec: 0.0,
            last_cum: 0.0,
            earnings_nights: false,
            last: start,
        }
    }

    /// Moves the factor to `to`; `shock` draws the unit-variance return shock.
    fn advance<R: Rng + ?Sized>(
        &mut self,
        day: &TradingDay,
        to: MarketNs,
        cum_to: f64,
        shock: impl FnOnce(&mut R) -> f64,
        rng: &mut R,
    ) {
        if to <= self.last {
            return;
        }
        let span = Span::of(day, self.last, to, self.last_cum, cum_to);
        self.last = to;
        self.last_cum = cum_to;
        let m2 = self.vol.multiplier().powi(2);
        let var = self.daily_var
            * m2
            * (self.budget.regular * span.regular_var + self.budget.extended * span.extended_var);
        if var <= 0.0 {
            return;
        }
        let z = shock(rng);
        self.level += var.sqrt() * z + self.drift_per_sec * span.trading_secs;
        if self.jumps_per_day > 0.0 && span.trading_secs > 0.0 {
            let hazard = self.jumps_per_day * span.trading_secs / SESSION_SECS;
            if rng.random::<f64>() < 1.0 - (-hazard).exp() {
                let j: f64 = StandardNormal.sample(rng);
                self.level += self.jump_sd * self.vol.multiplier() * j;
            }
        }
        self.vol.step(span.trading_secs, z, rng);
    }

    /// The overnight gap, then a jump of the clock to `next_start`.
    fn overnight<R: Rng + ?Sized>(&mut self, earnings: bool, next_start: MarketNs, rng: &mut R) {
        let ordinary = 1.0 / (1.0 + EARNINGS_SHARE * (EARNINGS_GAP_RATIO.powi(2) - 1.0)).sqrt();
        let ratio = match (self.earnings_nights, earnings) {
            (true, true) => ordinary * EARNINGS_GAP_RATIO,
            (true, false) => ordinary,
            (false, _) => 1.0,
        };
        let z: f64 = StandardNormal.sample(rng);
        let sd = (self.daily_var * self.budget.gap).sqrt() * self.vol.multiplier() * ratio;
        self.level += sd * z;
        self.vol.step(OVERNIGHT_TRADING_SECS, z, rng);
        self.last = next_start;
        self.last_cum = 0.0;
    }
}

/// What one symbol's price remembers between its updates.
#[derive(Debug, Clone)]
struct SymbolPrice {
    log_price: f64,
    beta: f64,
    sector: Option<usize>,
    own: Factor,
    /// Market and sector levels when this symbol last moved.
    seen_market: f64,
    seen_sector: f64,
    /// Variances of the three parts at unit multipliers, for [`PriceModel::vol_ratio`].
    market_var: f64,
    sector_var: f64,
    own_var: f64,
    /// Lowest log price: one tick.
    floor: f64,
}

/// The efficient prices of all symbols.
#[derive(Debug, Clone)]
pub struct PriceModel {
    market: Factor,
    sectors: Vec<Factor>,
    symbols: Vec<SymbolPrice>,
    shape: IntradayShape,
    shocks: Shocks,
}

impl PriceModel {
    /// Sets up every factor at market time `start`, with prices at the CSV's reference prices.
    pub fn new<R: Rng + ?Sized>(specs: &[SymbolSpec], start: MarketNs, rng: &mut R) -> PriceModel {
        let market = Factor::new(
            MARKET_VOL * MARKET_VOL,
            Budget::MARKET,
            MARKET_JUMPS_PER_DAY,
            start,
            rng,
        );
        let mut sector_names: Vec<&str> = Vec::new();
        let mut sector_vars: Vec<f64> = Vec::new();
        let mut parts = Vec::with_capacity(specs.len());
        for spec in specs {
            let total = spec.volatility * spec.volatility;
            let market_var = spec.beta * spec.beta * MARKET_VOL * MARKET_VOL;
            let idio = (total - market_var).max(IDIO_FLOOR * total);
            let sector = (!spec.sector.is_index()).then(|| {
                let name = spec.sector.as_str();
                match sector_names.iter().position(|n| *n == name) {
                    Some(i) => i,
                    None => {
                        sector_names.push(name);
                        sector_vars.push(0.0);
                        sector_names.len() - 1
                    }
                }
            });
            let sector_var = if sector.is_some() {
                SECTOR_SHARE * idio
            } else {
                0.0
            };
            if let Some(s) = sector {
                // A sector factor's variance: the mean of its members' sector parts, each member
                // then loads on it by sqrt(own part / factor variance).
                sector_vars[s] += sector_var;
            }
            parts.push((market_var, sector, sector_var, idio - sector_var));
        }
        let counts: Vec<usize> = (0..sector_names.len())
            .map(|s| parts.iter().filter(|p| p.1 == Some(s)).count())
            .collect();
        let sectors = sector_vars
            .iter()
            .zip(&counts)
            .map(|(v, n)| Factor::new(1.0, Budget::SECTOR, 0.0, start, rng).with_var(v / *n as f64))
            .collect::<Vec<_>>();
        let symbols = specs
            .iter()
            .zip(parts)
            .map(|(spec, (market_var, sector, sector_var, own_var))| {
                let jumps = if spec.sector.is_index() {
                    0.0
                } else {
                    OWN_JUMPS_PER_DAY
                };
                let budget = if jumps > 0.0 {
                    Budget::OWN
                } else {
                    Budget {
                        regular: Budget::OWN.regular + Budget::OWN.jumps,
                        jumps: 0.0,
                        ..Budget::OWN
                    }
                };
                let mut own = Factor::new(own_var, budget, jumps, start, rng);
                let total = spec.volatility * spec.volatility;
                own.earnings_nights = jumps > 0.0;
                own.drift_per_sec = (spec.drift - total / 2.0) / TRADING_DAYS / SESSION_SECS;
                let tick = spec.tick_size.to_string().parse::<f64>().unwrap_or(0.01);
                let reference = spec
                    .reference_price
                    .to_string()
                    .parse::<f64>()
                    .unwrap_or(1.0);
                SymbolPrice {
                    log_price: reference.max(tick).ln(),
                    beta: spec.beta,
                    sector,
                    own,
                    seen_market: 0.0,
                    seen_sector: 0.0,
                    market_var,
                    sector_var,
                    own_var,
                    floor: tick.ln(),
                }
            })
            .collect();
        PriceModel {
            market,
            sectors,
            symbols,
            shape: IntradayShape::new(),
            shocks: Shocks::default(),
        }
    }

    /// Moves symbol `index` to market time `to` (within `day`) and returns its efficient price.
    pub fn advance<R: Rng + ?Sized>(
        &mut self,
        index: usize,
        day: &TradingDay,
        to: MarketNs,
        rng: &mut R,
    ) -> f64 {
        let cum_to = cumulative_shape(day, &self.shape, to);
        let normal = |r: &mut R| -> f64 { StandardNormal.sample(r) };
        self.market.advance(day, to, cum_to, normal, rng);
        let symbol = &mut self.symbols[index];
        let mut change = symbol.beta * (self.market.level - symbol.seen_market);
        symbol.seen_market = self.market.level;
        if let Some(s) = symbol.sector {
            let sector = &mut self.sectors[s];
            sector.advance(day, to, cum_to, normal, rng);
            // Members load on the sector factor so that each gets its own sector variance.
            let loading = (symbol.sector_var / sector.daily_var / TRADING_DAYS).sqrt();
            change += loading * (sector.level - symbol.seen_sector);
            symbol.seen_sector = sector.level;
        }
        let before = symbol.own.level;
        let shocks = &self.shocks;
        symbol
            .own
            .advance(day, to, cum_to, |r| shocks.sample(r), rng);
        change += symbol.own.level - before;
        symbol.log_price = (symbol.log_price + change).max(symbol.floor);
        symbol.log_price.exp()
    }

    /// The efficient price of symbol `index` as of its last advance.
    pub fn price(&self, index: usize) -> f64 {
        self.symbols[index].log_price.exp()
    }

    /// Moves every factor to `day`'s post-market close, then through the night to `next`'s
    /// pre-market open: the overnight gap, wider on a stock's earnings nights.
    pub fn overnight<R: Rng + ?Sized>(&mut self, day: &TradingDay, next: &TradingDay, rng: &mut R) {
        let end = ns_of_ms(day.post_close);
        let start = ns_of_ms(next.pre_open);
        for index in 0..self.symbols.len() {
            self.advance(index, day, end, rng);
        }
        self.market.overnight(false, start, rng);
        for sector in &mut self.sectors {
            sector.overnight(false, start, rng);
        }
        for index in 0..self.symbols.len() {
            let earnings = rng.random::<f64>() < EARNINGS_SHARE;
            self.symbols[index].own.overnight(earnings, start, rng);
        }
        // Everyone takes the gap now, so the pre-market opens on the new prices.
        for index in 0..self.symbols.len() {
            self.advance(index, next, start, rng);
        }
    }

    /// A symbol's current volatility relative to its long-run average (about 1; 2 in a storm).
    pub fn vol_ratio(&self, index: usize) -> f64 {
        let s = &self.symbols[index];
        let m2 = |f: &Factor| f.vol.multiplier().powi(2);
        let sector_now = s
            .sector
            .map_or(0.0, |i| s.sector_var * m2(&self.sectors[i]));
        let now = s.beta * s.beta * MARKET_VOL * MARKET_VOL * m2(&self.market)
            + sector_now
            + s.own_var * m2(&s.own);
        let mean = s.market_var + s.sector_var + s.own_var;
        (now / mean).sqrt()
    }

    /// Sets symbol `index`'s efficient price outright: a run continued from a price it
    /// reached before starts there.
    pub fn set_price(&mut self, index: usize, price: f64) {
        let s = &mut self.symbols[index];
        if price.is_finite() && price > 0.0 {
            s.log_price = price.ln().max(s.floor);
        }
    }

    /// Moves symbol `index`'s efficient price by `log_move` at once (news, a scenario).
    pub fn jump(&mut self, index: usize, log_move: f64) {
        let s = &mut self.symbols[index];
        s.log_price = (s.log_price + log_move).max(s.floor);
    }
}

impl Factor {
    fn with_var(mut self, annual_var: f64) -> Factor {
        self.daily_var = annual_var / TRADING_DAYS;
        self
    }
}
