//! Fat-tailed unit shocks and the tick grid that every price lies on.
//!
//! Nothing here knows about tokio or time sources.

use rand::Rng;
use rand_distr::{Distribution, StudentT};
use rust_decimal::Decimal;

/// Degrees of freedom of the Student-t shock of each event: heavy tails at the finest scale,
/// with finite kurtosis. Tails that survive aggregation come from stochastic volatility and jumps.
pub const TAIL_DEGREES_OF_FREEDOM: f64 = 5.0;

/// Largest shock in standard deviations: a t draw beyond this is so rare that it would only
/// produce absurd prices in a long demo, so it is clipped.
const MAX_SHOCK: f64 = 10.0;

/// Invalid price-grid parameters.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid walk parameters: {0}")]
pub struct InvalidWalk(&'static str);

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
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng as StdRng;
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
        // A normal variable exceeds 4 sd with probability 6e-5; a unit-variance t(5), ~5e-4.
        assert!(beyond_4 > 3e-4, "tail share {beyond_4}");
    }

    #[test]
    fn invalid_parameters_are_refused() {
        assert!(TickGrid::try_new(Decimal::ZERO).is_err());
    }
}
