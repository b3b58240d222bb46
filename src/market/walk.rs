//! The pure random walk: one step of a symbol's log price, and rounding to the tick grid.
//!
//! Prices follow geometric Brownian motion in *market time* (a trading year of
//! [`TRADING_YEAR_SECS`] seconds). The shock has two parts: the symbol's beta times the move of a
//! market factor that all symbols share, so they move together, and an idiosyncratic part.
//! Both are Student-t with [`TAIL_DEGREES_OF_FREEDOM`] degrees of freedom, scaled to unit
//! variance, so large moves happen more often than a normal distribution allows (fat tails).
//! Nothing here knows about tokio or time sources: callers pass time spans in.

use rand::Rng;
use rand_distr::{Distribution, StudentT};
use rust_decimal::Decimal;

/// Seconds in a trading year (252 sessions of 6.5 hours): annual volatility refers to this.
pub const TRADING_YEAR_SECS: f64 = 252.0 * 6.5 * 3600.0;

/// Degrees of freedom of the Student-t shocks: 4 gives the excess kurtosis seen in daily equity
/// returns while keeping a finite variance.
pub const TAIL_DEGREES_OF_FREEDOM: f64 = 4.0;

/// Annual volatility of the shared market factor (roughly a broad index's).
pub const MARKET_VOLATILITY: f64 = 0.16;

/// Largest shock in standard deviations: a t(4) draw beyond this is so rare that it would only
/// produce absurd prices in a long demo, so it is clipped.
const MAX_SHOCK: f64 = 10.0;

/// Parameters of one symbol's walk, derived once from its spec.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WalkParams {
    /// Annual drift of the log price, Itô-corrected: `mu - sigma^2 / 2`.
    log_drift: f64,
    /// Annual volatility left after the market factor's share: `sqrt(sigma^2 - beta^2 sigma_m^2)`.
    idiosyncratic_vol: f64,
    beta: f64,
}

/// Invalid walk parameters.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid walk parameters: {0}")]
pub struct InvalidWalk(&'static str);

impl WalkParams {
    /// Builds the parameters of a symbol with total annual `volatility`, annual `drift` and
    /// `beta` to the market factor. When beta alone explains more variance than the total, a
    /// floor of a tenth of the volatility keeps some idiosyncratic movement.
    ///
    /// # Errors
    /// Non-finite or negative volatility, non-finite drift or beta.
    pub fn try_new(volatility: f64, drift: f64, beta: f64) -> Result<Self, InvalidWalk> {
        if !volatility.is_finite() || volatility < 0.0 {
            return Err(InvalidWalk("volatility must be finite and >= 0"));
        }
        if !drift.is_finite() || !beta.is_finite() {
            return Err(InvalidWalk("drift and beta must be finite"));
        }
        let total_var = volatility * volatility;
        let market_var = beta * beta * MARKET_VOLATILITY * MARKET_VOLATILITY;
        let floor = 0.01 * total_var;
        Ok(WalkParams {
            log_drift: drift - total_var / 2.0,
            idiosyncratic_vol: (total_var - market_var).max(floor).sqrt(),
            beta,
        })
    }
}

/// Draws unit-variance fat-tailed shocks.
#[derive(Debug, Clone)]
pub struct Shocks {
    student: StudentT<f64>,
    /// `sqrt((nu - 2) / nu)`: a t variable has variance `nu / (nu - 2)`.
    scale: f64,
}

impl Default for Shocks {
    fn default() -> Self {
        let nu = TAIL_DEGREES_OF_FREEDOM;
        Shocks {
            student: StudentT::new(nu).expect("a positive constant is valid degrees of freedom"),
            scale: ((nu - 2.0) / nu).sqrt(),
        }
    }
}

impl Shocks {
    /// One shock with mean 0 and variance 1, clipped to +-[`MAX_SHOCK`].
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> f64 {
        (self.student.sample(rng) * self.scale).clamp(-MAX_SHOCK, MAX_SHOCK)
    }
}

/// Moves the market factor over `years` of market time.
pub fn market_step<R: Rng + ?Sized>(level: f64, years: f64, shocks: &Shocks, rng: &mut R) -> f64 {
    level + MARKET_VOLATILITY * years.sqrt() * shocks.sample(rng)
}

/// Moves a log price over `years` of market time, given the market factor's move over the same
/// span. Returns the new log price.
pub fn step<R: Rng + ?Sized>(
    log_price: f64,
    params: &WalkParams,
    years: f64,
    market_move: f64,
    shocks: &Shocks,
    rng: &mut R,
) -> f64 {
    log_price
        + params.log_drift * years
        + params.beta * market_move
        + params.idiosyncratic_vol * years.sqrt() * shocks.sample(rng)
}

/// A symbol's price grid: rounds a real price to the nearest tick, never below one tick.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TickGrid {
    tick: Decimal,
    tick_f64: f64,
}

impl TickGrid {
    /// A grid with step `tick` (> 0). Prices keep the tick's number of decimals.
    ///
    /// # Errors
    /// A tick that is not positive.
    pub fn try_new(tick: Decimal) -> Result<Self, InvalidWalk> {
        if tick <= Decimal::ZERO {
            return Err(InvalidWalk("tick size must be positive"));
        }
        let tick_f64 = tick
            .to_string()
            .parse::<f64>()
            .map_err(|_| InvalidWalk("tick size"))?;
        Ok(TickGrid { tick, tick_f64 })
    }

    /// The grid step.
    pub fn tick(&self) -> Decimal {
        self.tick
    }

    /// Number of ticks nearest to `price`, at least 1.
    pub fn ticks_of(&self, price: f64) -> i64 {
        let ticks = (price / self.tick_f64).round();
        if ticks.is_finite() && ticks >= 1.0 {
            // Saturating: the loader caps prices far below i64::MAX ticks.
            ticks.min(i64::MAX as f64 / 2.0) as i64
        } else {
            1
        }
    }

    /// The price of `ticks` ticks, with exactly the tick's decimals.
    pub fn price_of(&self, ticks: i64) -> Decimal {
        Decimal::from(ticks) * self.tick
    }

    /// `price` rounded to the grid, at least one tick.
    pub fn round(&self, price: f64) -> Decimal {
        self.price_of(self.ticks_of(price))
    }

    /// The tick as `f64`.
    pub fn tick_f64(&self) -> f64 {
        self.tick_f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use std::str::FromStr;

    #[test]
    fn grid_rounds_to_tick_and_keeps_decimals() {
        let grid = TickGrid::try_new(Decimal::from_str("0.01").unwrap()).unwrap();
        assert_eq!(grid.round(185.0).to_string(), "185.00");
        assert_eq!(grid.round(185.004).to_string(), "185.00");
        assert_eq!(grid.round(185.006).to_string(), "185.01");
        assert_eq!(grid.round(0.0001).to_string(), "0.01");
        assert_eq!(grid.round(-3.0).to_string(), "0.01");
        assert_eq!(grid.round(f64::NAN).to_string(), "0.01");
        let quarter = TickGrid::try_new(Decimal::from_str("0.25").unwrap()).unwrap();
        assert_eq!(quarter.round(10.13).to_string(), "10.25");
    }

    #[test]
    fn shocks_have_unit_variance_and_fat_tails() {
        let shocks = Shocks::default();
        let mut rng = StdRng::seed_from_u64(7);
        let n = 200_000;
        let draws: Vec<f64> = (0..n).map(|_| shocks.sample(&mut rng)).collect();
        let mean = draws.iter().sum::<f64>() / n as f64;
        let var = draws.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        let beyond_4 = draws.iter().filter(|x| x.abs() > 4.0).count() as f64 / n as f64;
        assert!(mean.abs() < 0.02, "mean {mean}");
        assert!((var - 1.0).abs() < 0.1, "variance {var}");
        // A normal variable exceeds 4 sd with probability 6e-5; a unit-variance t(4), ~1e-3.
        assert!(beyond_4 > 5e-4, "tail share {beyond_4}");
    }

    #[test]
    fn walk_repeats_for_the_same_seed() {
        let params = WalkParams::try_new(0.3, 0.05, 1.2).unwrap();
        let shocks = Shocks::default();
        let run = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut x = 100f64.ln();
            for _ in 0..1000 {
                x = step(x, &params, 1e-6, 0.0, &shocks, &mut rng);
            }
            x
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
    }

    #[test]
    fn invalid_parameters_are_refused() {
        assert!(WalkParams::try_new(-0.1, 0.0, 1.0).is_err());
        assert!(WalkParams::try_new(f64::NAN, 0.0, 1.0).is_err());
        assert!(TickGrid::try_new(Decimal::ZERO).is_err());
    }
}
