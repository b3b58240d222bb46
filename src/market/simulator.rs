//! One deterministic simulator for all symbols.
//!
//! Each symbol updates at the times of its own Poisson process (mean `rate` per second of feed
//! time). A seeded queue of those times decides which symbol updates next, so the order of
//! updates, and with it every `seq`, is fixed by the seed. Feed time is passed in by the caller
//! (the publisher derives it from tokio's clock); wall-clock timestamps are the only part of a
//! quote that depends on when the program runs.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Exp};
use rust_decimal::Decimal;

use super::walk::{self, Shocks, TickGrid, WalkParams};
use super::{Quote, SymbolSpec, Update};

const NANOS_PER_SEC: f64 = 1e9;

/// Settings of a simulation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimConfig {
    /// Seed of every random draw.
    pub seed: u64,
    /// Mean updates per second of feed time, per symbol.
    pub rate: f64,
    /// Market seconds per second of feed time: 60 moves prices as much in one second as a
    /// real market does in a minute. It does not change how often updates come.
    pub speed: f64,
    /// Wall-clock time of feed time 0, epoch milliseconds (only used for `ts`).
    pub start_epoch_ms: u64,
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
}

/// What the simulator remembers about one symbol between its updates.
#[derive(Debug, Clone)]
struct SymbolState {
    params: WalkParams,
    grid: TickGrid,
    /// Unrounded log price, so that rounding to ticks does not bias the walk.
    log_price: f64,
    /// Feed time of the last update, nanoseconds.
    last_ns: u64,
    /// Market factor level at the last update.
    last_market: f64,
    /// Quote of the last update; the next one is derived from it.
    quote: Quote,
}

/// The market simulator: owns all symbols' state and the seeded random stream.
#[derive(Debug)]
pub struct Simulator {
    states: Vec<SymbolState>,
    rng: StdRng,
    shocks: Shocks,
    gaps: Exp<f64>,
    /// Next update time of each symbol, earliest first; ties break on the symbol index.
    queue: BinaryHeap<Reverse<(u64, u16)>>,
    market_level: f64,
    market_ns: u64,
    seq: u64,
    config: SimConfig,
}

impl Simulator {
    /// Sets up the simulation and draws every symbol's opening quote (seq 1..=N, in symbol
    /// order): call [`Simulator::opening_quotes`] to take them.
    ///
    /// # Errors
    /// A rate or speed out of range, no symbols, or a symbol with invalid walk parameters.
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
        let mut rng = StdRng::seed_from_u64(config.seed);
        let shocks = Shocks::default();
        let gaps = Exp::new(config.rate).map_err(|_| SimError::Rate(config.rate))?;
        let mut states = Vec::with_capacity(specs.len());
        let mut seq = 0;
        for spec in specs {
            let walk_error = |source| SimError::Walk {
                symbol: spec.symbol.to_string(),
                source,
            };
            let params =
                WalkParams::try_new(spec.volatility, spec.drift, spec.beta).map_err(walk_error)?;
            let grid = TickGrid::try_new(spec.tick_size).map_err(walk_error)?;
            let prev_close = grid.round(decimal_to_f64(spec.reference_price));
            // Overnight gap: about a tenth of a day's volatility.
            let gap = spec.volatility * (1.0 / 252f64).sqrt() * 0.1 * shocks.sample(&mut rng);
            let log_price = decimal_to_f64(prev_close).ln() + gap;
            let open = grid.round(log_price.exp());
            seq += 1;
            let last_size = round_lots(&mut rng, 10);
            let mut quote = Quote {
                symbol: spec.symbol.clone(),
                seq,
                ts: config.start_epoch_ms,
                price: open,
                bid: open,
                ask: open,
                bid_size: 0,
                ask_size: 0,
                last_size,
                volume: last_size,
                open,
                high: open,
                low: open,
                prev_close,
                change: Decimal::ZERO,
                change_pct: Decimal::ZERO,
            };
            fill_book(&mut quote, &grid, &mut rng);
            states.push(SymbolState {
                params,
                grid,
                log_price,
                last_ns: 0,
                last_market: 0.0,
                quote,
            });
        }
        let mut queue = BinaryHeap::with_capacity(specs.len());
        for index in 0..specs.len() {
            let at = next_gap_ns(&gaps, &mut rng);
            queue.push(Reverse((at, index as u16)));
        }
        Ok(Simulator {
            states,
            rng,
            shocks,
            gaps,
            queue,
            market_level: 0.0,
            market_ns: 0,
            seq,
            config,
        })
    }

    /// The opening quote of every symbol, in symbol order (seq 1..=N).
    pub fn opening_quotes(&self) -> Vec<Update> {
        self.states
            .iter()
            .enumerate()
            .map(|(i, s)| Update {
                symbol_index: i as u16,
                quote: s.quote.clone(),
            })
            .collect()
    }

    /// Feed time of the next update, nanoseconds.
    pub fn next_update_ns(&self) -> u64 {
        self.queue.peek().map_or(u64::MAX, |Reverse((at, _))| *at)
    }

    /// Generates, in time order, every update due at or before feed time `until_ns`, appending
    /// them to `out`.
    pub fn advance_to(&mut self, until_ns: u64, out: &mut Vec<Update>) {
        while let Some(&Reverse((at, index))) = self.queue.peek() {
            if at > until_ns {
                break;
            }
            self.queue.pop();
            out.push(self.update(index, at));
            let next = at.saturating_add(next_gap_ns(&self.gaps, &mut self.rng));
            self.queue.push(Reverse((next, index)));
        }
    }

    /// Moves symbol `index` to feed time `at_ns` and returns its new quote.
    fn update(&mut self, index: u16, at_ns: u64) -> Update {
        let speed = self.config.speed;
        let to_years = |ns: u64| ns as f64 / NANOS_PER_SEC * speed / walk::TRADING_YEAR_SECS;
        // The market factor is one path shared by all symbols, advanced in time order.
        let since_market = at_ns.saturating_sub(self.market_ns);
        if since_market > 0 {
            self.market_level = walk::market_step(
                self.market_level,
                to_years(since_market),
                &self.shocks,
                &mut self.rng,
            );
            self.market_ns = at_ns;
        }
        let state = &mut self.states[index as usize];
        let years = to_years(at_ns.saturating_sub(state.last_ns));
        let market_move = self.market_level - state.last_market;
        state.log_price = walk::step(
            state.log_price,
            &state.params,
            years,
            market_move,
            &self.shocks,
            &mut self.rng,
        );
        // Keep the unrounded price within the grid so it cannot drift far below one tick.
        state.log_price = state.log_price.max(state.grid.tick_f64().ln());
        state.last_ns = at_ns;
        state.last_market = self.market_level;

        self.seq += 1;
        let quote = &mut state.quote;
        quote.seq = self.seq;
        quote.ts = self.config.start_epoch_ms + at_ns / 1_000_000;
        quote.price = state.grid.round(state.log_price.exp());
        quote.last_size = round_lots(&mut self.rng, 10);
        quote.volume += quote.last_size;
        quote.high = quote.high.max(quote.price);
        quote.low = quote.low.min(quote.price);
        fill_book(quote, &state.grid, &mut self.rng);
        Update {
            symbol_index: index,
            quote: quote.clone(),
        }
    }
}

/// Sets bid, ask, their sizes, change and change percent around `quote.price`.
///
/// The spread is 1 to 3 ticks and the last trade lies within it, so `bid <= price <= ask` and
/// `bid < ask`; the bid never goes below the price when that would make it non-positive.
fn fill_book(quote: &mut Quote, grid: &TickGrid, rng: &mut StdRng) {
    let price_ticks = grid.ticks_of(decimal_to_f64(quote.price));
    let spread: i64 = rng.random_range(1..=3);
    let below = rng.random_range(0..=spread).min(price_ticks - 1);
    quote.bid = grid.price_of(price_ticks - below);
    quote.ask = grid.price_of(price_ticks - below + spread);
    quote.bid_size = round_lots(rng, 20);
    quote.ask_size = round_lots(rng, 20);
    quote.change = quote.price - quote.prev_close;
    let mut pct = (quote.change * Decimal::ONE_HUNDRED / quote.prev_close).round_dp(2);
    pct.rescale(2);
    quote.change_pct = pct;
}

/// A size in round lots of 100 shares: 1 to `max_lots` lots, small sizes more likely.
fn round_lots(rng: &mut StdRng, max_lots: u64) -> u64 {
    let a = rng.random_range(1..=max_lots);
    let b = rng.random_range(1..=max_lots);
    100 * a.min(b)
}

fn next_gap_ns(gaps: &Exp<f64>, rng: &mut StdRng) -> u64 {
    let secs: f64 = gaps.sample(rng);
    ((secs * NANOS_PER_SEC) as u64).max(1)
}

fn decimal_to_f64(value: Decimal) -> f64 {
    use rust_decimal::prelude::ToPrimitive;
    value.to_f64().unwrap_or(f64::NAN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::market::symbols;
    use std::path::Path;

    fn specs() -> Vec<SymbolSpec> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/symbols.csv");
        symbols::load(&path).unwrap()
    }

    fn config(seed: u64) -> SimConfig {
        SimConfig {
            seed,
            rate: 2.0,
            speed: 500.0,
            start_epoch_ms: 1_700_000_000_000,
        }
    }

    fn run(seed: u64, seconds: u64) -> Vec<Update> {
        let mut sim = Simulator::try_new(&specs(), config(seed)).unwrap();
        let mut out = sim.opening_quotes();
        sim.advance_to(seconds * 1_000_000_000, &mut out);
        out
    }

    #[test]
    fn invariants_hold_over_many_steps_and_seeds() {
        let specs = specs();
        for seed in [1, 2, 3, 42, 9001] {
            let updates = run(seed, 60);
            assert!(
                updates.len() > specs.len() * 100,
                "{} updates",
                updates.len()
            );
            let mut last_volume = vec![0u64; specs.len()];
            for (n, update) in updates.iter().enumerate() {
                let q = &update.quote;
                let spec = &specs[update.symbol_index as usize];
                let scale = spec.tick_size.scale();
                assert_eq!(q.seq, n as u64 + 1, "seq is global and gapless");
                assert_eq!(q.symbol, spec.symbol);
                for p in [
                    q.price,
                    q.bid,
                    q.ask,
                    q.open,
                    q.high,
                    q.low,
                    q.prev_close,
                    q.change,
                ] {
                    assert_eq!(p.scale(), scale, "{p} keeps the tick's decimals");
                    assert!((p % spec.tick_size).is_zero(), "{p} on the tick grid");
                }
                assert_eq!(q.change_pct.scale(), 2);
                assert!(q.price > Decimal::ZERO && q.bid > Decimal::ZERO);
                assert!(q.bid < q.ask, "{} < {}", q.bid, q.ask);
                assert!(q.bid <= q.price && q.price <= q.ask);
                assert!(q.low <= q.price && q.price <= q.high);
                assert_eq!(q.change, q.price - q.prev_close);
                assert!(q.last_size > 0 && q.last_size % 100 == 0);
                assert!(q.bid_size % 100 == 0 && q.ask_size % 100 == 0);
                let last = &mut last_volume[update.symbol_index as usize];
                assert!(q.volume >= *last + q.last_size.min(1));
                *last = q.volume;
            }
        }
    }

    #[test]
    fn same_seed_same_updates() {
        let strip_ts = |u: &Update| {
            (
                u.symbol_index,
                u.quote.seq,
                u.quote.price,
                u.quote.volume,
                u.quote.bid,
            )
        };
        let a: Vec<_> = run(7, 5).iter().map(strip_ts).collect();
        let b: Vec<_> = run(7, 5).iter().map(strip_ts).collect();
        let c: Vec<_> = run(8, 5).iter().map(strip_ts).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn batch_boundaries_do_not_change_the_updates() {
        let mut sim = Simulator::try_new(&specs(), config(3)).unwrap();
        let mut stepped = Vec::new();
        for ms in (0..=3000).step_by(7) {
            sim.advance_to(ms * 1_000_000, &mut stepped);
        }
        let mut sim = Simulator::try_new(&specs(), config(3)).unwrap();
        let mut at_once = Vec::new();
        sim.advance_to(3000 * 1_000_000, &mut at_once);
        assert_eq!(stepped, at_once);
    }

    #[test]
    fn rate_is_respected_on_average() {
        let updates = run(11, 100);
        let n = specs().len() as f64;
        let per_symbol_per_sec = (updates.len() as f64 - n) / n / 100.0;
        assert!(
            (per_symbol_per_sec - 2.0).abs() < 0.1,
            "{per_symbol_per_sec}"
        );
    }

    #[test]
    fn bad_settings_are_refused() {
        let specs = specs();
        let mut bad = config(1);
        bad.rate = 0.0;
        assert_eq!(
            Simulator::try_new(&specs, bad).unwrap_err(),
            SimError::Rate(0.0)
        );
        bad = config(1);
        bad.speed = f64::NAN;
        assert!(matches!(
            Simulator::try_new(&specs, bad),
            Err(SimError::Speed(_))
        ));
        assert_eq!(
            Simulator::try_new(&[], config(1)).unwrap_err(),
            SimError::NoSymbols
        );
    }
}
