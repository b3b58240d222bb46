//! Microstructure: the quoted spread, displayed sizes, trade prices, signs and sizes.
//!
//! The quote follows the efficient price with hysteresis: the mid moves only when the efficient
//! price is a whole tick away from it, and then lands on it (give or take half a tick). A crossing
//! is then equally likely to be followed by one either way, so the mid-quote shows no bounce.
//! Trades do: they hit the bid or lift the ask, with signs that persist (order splitting), and
//! some print inside the spread, so trade-to-trade changes revert (lag-1 autocorrelation around
//! -0.2). Sizes are heavy-tailed, with odd lots and occasional blocks; their mean is set by the
//! caller so that daily volume matches the symbol's average daily volume at any speed.

use rand::Rng;

/// Chance that a trade keeps the previous trade's side (buy after buy): real order flow is
/// split into many child orders, so signs are positively autocorrelated.
const SIGN_PERSISTENCE: f64 = 0.65;
/// Chance that a trade prints strictly inside a spread of two ticks or more (hidden or midpoint
/// liquidity).
const INSIDE_SHARE: f64 = 0.2;
/// Share of trades under a round lot of 100 shares: about 45% in US equities.
const ODD_LOT_SHARE: f64 = 0.45;
/// Tail index of round-lot trade sizes (Pareto): heavy, with a finite mean.
const SIZE_TAIL: f64 = 1.6;
/// Chance that a round-lot trade is a block, twenty times a typical size.
const BLOCK_SHARE: f64 = 0.003;
/// Largest trade, in lots: keeps one freak draw from dwarfing a whole day.
const MAX_LOTS: f64 = 1_000_000.0;

/// A quote in ticks with displayed sizes in shares, and the side of the last trade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Book {
    pub bid: i64,
    pub ask: i64,
    pub bid_size: u64,
    pub ask_size: u64,
    /// +1 after a buy, -1 after a sell.
    last_sign: i8,
}

/// The spread in ticks a symbol quotes: its typical spread, at least one tick, wider when
/// volatility is high (`widen` > 1).
pub fn spread_ticks(price: f64, spread_bp: f64, tick: f64, widen: f64) -> i64 {
    let ticks = (price * spread_bp * 1e-4 * widen / tick).round();
    if ticks.is_finite() {
        ticks.clamp(1.0, 1e6) as i64
    } else {
        1
    }
}

impl Book {
    /// A quote of `spread` ticks centred on `price` (in ticks), never below one tick.
    pub fn new(price: f64, spread: i64) -> Book {
        let spread = spread.max(1);
        let bid = ((price - spread as f64 / 2.0).round() as i64).max(1);
        Book {
            bid,
            ask: bid + spread,
            bid_size: 100,
            ask_size: 100,
            last_sign: 1,
        }
    }

    /// Moves the quote toward the efficient `price` (ticks) with `spread` ticks, inside the
    /// LULD band `[down, up]` (ticks) when there is one. Returns whether bid or ask changed.
    pub fn requote<R: Rng + ?Sized>(
        &mut self,
        price: f64,
        spread: i64,
        band: Option<(i64, i64)>,
        rng: &mut R,
    ) -> bool {
        let before = (self.bid, self.ask);
        let spread = spread.max(1);
        // Mid and price in half ticks, so a mid between two ticks is exact.
        let twice_price = 2.0 * price;
        while self.ask - self.bid < spread {
            if twice_price > (self.bid + self.ask) as f64 || self.bid <= 1 {
                self.ask += 1;
            } else {
                self.bid -= 1;
            }
        }
        while self.ask - self.bid > spread {
            if twice_price > (self.bid + self.ask) as f64 {
                self.bid += 1;
            } else {
                self.ask -= 1;
            }
        }
        // Distance of the efficient price from the mid, in ticks.
        let away = (twice_price - (self.bid + self.ask) as f64) / 2.0;
        if away.abs() >= 1.0 {
            // Move by n = floor(|away|) ticks, or n + 1 with probability p = n f / (n + 1 - f)
            // (f the fraction left over). That p makes E[shift * (shift - away)] zero: the
            // mid's next move, which on average undoes the gap (shift - away), is then
            // uncorrelated with this one. Plain rounding leaves the mid behind a move (momentum);
            // rounding at random in proportion to f overshoots it (bounce).
            let n = away.abs().floor();
            let f = away.abs() - n;
            let p = n * f / (n + 1.0 - f);
            let ticks = n + f64::from(u8::from(rng.random::<f64>() < p));
            let shift = (away.signum() * ticks) as i64;
            let shift = shift.max(1 - self.bid);
            self.bid += shift;
            self.ask += shift;
        }
        if let Some((down, up)) = band {
            if self.ask > up {
                let shift = self.ask - up;
                self.bid -= shift;
                self.ask -= shift;
            }
            if self.bid < down {
                let shift = down - self.bid;
                self.bid += shift;
                self.ask += shift;
            }
        }
        (self.bid, self.ask) != before
    }

    /// Draws new displayed sizes: round lots, a typical depth of `depth_lots` lots.
    pub fn refresh_sizes<R: Rng + ?Sized>(&mut self, depth_lots: f64, rng: &mut R) {
        self.bid_size = displayed_size(depth_lots, rng);
        self.ask_size = displayed_size(depth_lots, rng);
    }

    /// The price in ticks of the next trade: at the bid or the ask, the side persisting from the
    /// last trade, or now and then inside the spread.
    pub fn next_print<R: Rng + ?Sized>(&mut self, rng: &mut R) -> i64 {
        if rng.random::<f64>() >= SIGN_PERSISTENCE {
            self.last_sign = -self.last_sign;
        }
        let spread = self.ask - self.bid;
        if spread >= 2 && rng.random::<f64>() < INSIDE_SHARE {
            return rng.random_range(self.bid + 1..self.ask);
        }
        if self.last_sign > 0 {
            self.ask
        } else {
            self.bid
        }
    }

    /// Takes `size` shares off the side the trade at `price` hit; an emptied side is refilled
    /// with a fresh size (new orders arrive at the same price).
    pub fn consume<R: Rng + ?Sized>(
        &mut self,
        price: i64,
        size: u64,
        depth_lots: f64,
        rng: &mut R,
    ) {
        let side = if price >= self.ask {
            &mut self.ask_size
        } else if price <= self.bid {
            &mut self.bid_size
        } else {
            return;
        };
        *side = side.saturating_sub(size);
        if *side < 100 {
            *side = displayed_size(depth_lots, rng);
        }
    }
}

/// A displayed size: whole lots, geometric around `depth_lots`.
fn displayed_size<R: Rng + ?Sized>(depth_lots: f64, rng: &mut R) -> u64 {
    let u: f64 = rng.random::<f64>().max(1e-12);
    let lots = (-u.ln() * depth_lots).ceil().clamp(1.0, 100_000.0);
    100 * lots as u64
}

/// Trade sizes with a given mean: odd lots, heavy-tailed round lots, occasional blocks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TradeSizes {
    /// Pareto scale of round-lot sizes, in lots.
    scale_lots: f64,
}

impl TradeSizes {
    /// Sizes whose mean is about `mean_shares` (never below what odd lots and single lots give).
    pub fn with_mean(mean_shares: f64) -> TradeSizes {
        // E[size] = odd * 50 + (1 - odd) * 100 * E[lots], E[lots] ~ scale * a/(a-1) * (1 + 19 * block).
        let pareto_mean = SIZE_TAIL / (SIZE_TAIL - 1.0) * (1.0 + 19.0 * BLOCK_SHARE);
        let round_mean = (mean_shares - ODD_LOT_SHARE * 50.0) / (1.0 - ODD_LOT_SHARE) / 100.0;
        TradeSizes {
            scale_lots: (round_mean / pareto_mean).max(1.0 / pareto_mean),
        }
    }

    /// One trade's size in shares.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> u64 {
        if rng.random::<f64>() < ODD_LOT_SHARE {
            return rng.random_range(1..100);
        }
        let u: f64 = rng.random::<f64>().max(1e-12);
        let mut lots = self.scale_lots * u.powf(-1.0 / SIZE_TAIL);
        if rng.random::<f64>() < BLOCK_SHARE {
            lots *= 20.0;
        }
        100 * lots.round().clamp(1.0, MAX_LOTS) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::market::facts::correlation;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use rand_distr::{Distribution, StandardNormal};

    fn lag1(x: &[f64]) -> f64 {
        correlation(&x[..x.len() - 1], &x[1..])
    }

    /// Runs a book over a random-walk efficient price and returns (trade prices, mids).
    fn run(seed: u64, step_ticks: f64, spread: i64) -> (Vec<f64>, Vec<f64>) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut price = 10_000.0;
        let mut book = Book::new(price, spread);
        let (mut trades, mut mids) = (Vec::new(), Vec::new());
        for _ in 0..200_000 {
            let z: f64 = StandardNormal.sample(&mut rng);
            price += step_ticks * z;
            book.requote(price, spread, None, &mut rng);
            mids.push((book.bid + book.ask) as f64 / 2.0);
            if rng.random::<f64>() < 0.35 {
                let print = book.next_print(&mut rng);
                assert!(book.bid <= print && print <= book.ask);
                trades.push(print as f64);
            }
        }
        (trades, mids)
    }

    #[test]
    fn trades_bounce_and_the_mid_does_not() {
        for (spread, step) in [(1, 0.3), (2, 0.3), (3, 0.5), (5, 1.0)] {
            let (trades, mids) = run(spread as u64, step, spread);
            let dt: Vec<f64> = trades.windows(2).map(|w| w[1] - w[0]).collect();
            let dm: Vec<f64> = mids
                .windows(2)
                .map(|w| w[1] - w[0])
                .filter(|d| *d != 0.0)
                .collect();
            let (bounce, mid) = (lag1(&dt), lag1(&dm));
            assert!(
                (-0.5..=-0.1).contains(&bounce),
                "spread {spread}: trade lag-1 {bounce}"
            );
            assert!(mid.abs() < 0.05, "spread {spread}: mid lag-1 {mid}");
        }
    }

    #[test]
    fn a_naively_rounded_mid_would_bounce() {
        // The check above can fail: rounding the mid to the nearest tick at every step (no
        // hysteresis) makes its changes revert.
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut price = 100.0;
        let mut mids = Vec::new();
        for _ in 0..200_000 {
            let z: f64 = StandardNormal.sample(&mut rng);
            price += 0.3 * z;
            mids.push(price.round());
        }
        let dm: Vec<f64> = mids
            .windows(2)
            .map(|w| w[1] - w[0])
            .filter(|d| *d != 0.0)
            .collect();
        assert!(lag1(&dm) < -0.1, "{}", lag1(&dm));
    }

    #[test]
    fn requote_keeps_spread_band_and_a_positive_bid() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let mut book = Book::new(5.0, 2);
        assert!(book.requote(5.0, 4, None, &mut rng));
        assert_eq!(book.ask - book.bid, 4);
        book.requote(0.2, 4, None, &mut rng);
        assert!(book.bid >= 1);
        let mut book = Book::new(1000.0, 2);
        book.requote(1100.0, 2, Some((950, 1050)), &mut rng);
        assert_eq!((book.bid, book.ask), (1048, 1050));
        book.requote(900.0, 2, Some((950, 1050)), &mut rng);
        assert_eq!((book.bid, book.ask), (950, 952));
    }

    #[test]
    fn sizes_have_odd_lots_heavy_tails_and_the_asked_mean() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for mean in [150.0, 2_000.0, 50_000.0] {
            let sizes = TradeSizes::with_mean(mean);
            let draws: Vec<u64> = (0..400_000).map(|_| sizes.sample(&mut rng)).collect();
            let odd = draws.iter().filter(|s| **s < 100).count() as f64 / draws.len() as f64;
            let avg = draws.iter().sum::<u64>() as f64 / draws.len() as f64;
            assert!((0.40..=0.50).contains(&odd), "odd-lot share {odd}");
            assert!((avg / mean - 1.0).abs() < 0.2, "mean {avg} for {mean}");
            let max = *draws.iter().max().unwrap() as f64;
            assert!(max > 30.0 * mean, "largest {max} for mean {mean}");
        }
    }
}
