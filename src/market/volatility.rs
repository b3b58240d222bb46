//! Calm and storm: stochastic log-volatility with clustering and leverage, and the intraday shape.
//!
//! A factor's volatility is `sigma_bar * m(t)` with the multiplier
//! `m = exp(sum h_k - sum w_k^2)`, where each `h_k` is an Ornstein-Uhlenbeck process in *trading
//! time* (seconds of regular session) with its own half-life and stationary deviation `w_k`.
//! Subtracting `sum w_k^2` makes `E[m^2] = 1`, so the CSV's volatility is the long-run average.
//! A fast component (half-life 20 minutes) gives intraday bursts and fat 5-minute tails; two
//! slow ones (2 and 30 trading days) give clustering that lasts for days and weeks. The slow ones
//! move against the return shock (correlation [`LEVERAGE_RHO`]): a fall raises volatility, the
//! leverage effect. Each step uses the exact OU transition, so any step size gives the same
//! process (the event path and the coarse test path agree).
//!
//! The intraday shape `s(tau)` makes volatility and activity U-shaped over the regular session;
//! its square averages 1 over the session, so it moves variance around the day without adding any.

use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

use super::clock::REGULAR_SESSION_MS;

/// Seconds of one regular session: the unit of trading time.
pub const SESSION_SECS: f64 = REGULAR_SESSION_MS as f64 / 1000.0;

/// Half-lives of the log-volatility components, in seconds of trading time: 20 minutes,
/// 2 trading days and 30 trading days.
pub const HALF_LIVES_SECS: [f64; 3] = [20.0 * 60.0, 2.0 * SESSION_SECS, 30.0 * SESSION_SECS];

/// Stationary standard deviations of the components. Together they give 5-minute returns an
/// excess kurtosis of about 5 before jumps, as observed in large caps.
pub const COMPONENT_SD: [f64; 3] = [0.30, 0.25, 0.30];

/// Correlation of each component's shock with the return shock. Only the slow components carry
/// the leverage effect: a fast one would make 5-minute returns visibly skewed.
pub const LEVERAGE_RHO: [f64; 3] = [0.0, -0.6, -0.6];

/// Trading seconds that the volatility clock advances over a night: volatility mean-reverts a
/// little between sessions, about as much as in a quarter of a session.
pub const OVERNIGHT_TRADING_SECS: f64 = 0.25 * SESSION_SECS;

/// Weight of the opening burst in the intraday shape (before normalisation).
const SHAPE_OPEN: f64 = 1.6;
/// Weight of the closing burst.
const SHAPE_CLOSE: f64 = 0.6;
/// Decay time of both bursts, seconds.
const SHAPE_DECAY_SECS: f64 = 20.0 * 60.0;

/// The multi-component log-volatility of one factor.
#[derive(Debug, Clone, PartialEq)]
pub struct LogVol {
    h: [f64; 3],
}

impl Default for LogVol {
    fn default() -> Self {
        Self::new()
    }
}

impl LogVol {
    /// Starts at the long-run level (every component at 0).
    pub fn new() -> LogVol {
        LogVol { h: [0.0; 3] }
    }

    /// Starts from the stationary distribution, so a simulation does not open unusually calm.
    pub fn stationary<R: Rng + ?Sized>(rng: &mut R) -> LogVol {
        let mut h = [0.0; 3];
        for (k, hk) in h.iter_mut().enumerate() {
            let z: f64 = StandardNormal.sample(rng);
            *hk = COMPONENT_SD[k] * z;
        }
        LogVol { h }
    }

    /// The volatility multiplier `m`, with `E[m^2] = 1`.
    pub fn multiplier(&self) -> f64 {
        let sum_h: f64 = self.h.iter().sum();
        (sum_h - TOTAL_COMPONENT_VAR).exp()
    }

    /// Advances the components by `dt` seconds of trading time. `shock` is the return shock of
    /// the same step (unit variance): the slow components move against it (leverage).
    pub fn step<R: Rng + ?Sized>(&mut self, dt: f64, shock: f64, rng: &mut R) {
        if dt <= 0.0 {
            return;
        }
        for k in 0..3 {
            let decay = (-dt * std::f64::consts::LN_2 / HALF_LIVES_SECS[k]).exp();
            let spread = COMPONENT_SD[k] * (1.0 - decay * decay).max(0.0).sqrt();
            let rho = LEVERAGE_RHO[k];
            let own: f64 = StandardNormal.sample(rng);
            let innovation = rho * shock + (1.0 - rho * rho).sqrt() * own;
            self.h[k] = self.h[k] * decay + spread * innovation;
        }
    }
}

/// `sum w_k^2`: subtracting it from the log makes the mean square multiplier 1.
const TOTAL_COMPONENT_VAR: f64 = COMPONENT_SD[0] * COMPONENT_SD[0]
    + COMPONENT_SD[1] * COMPONENT_SD[1]
    + COMPONENT_SD[2] * COMPONENT_SD[2];

/// The U-shape of the regular session: `s(tau) = (1 + a e^(-tau/L) + b e^(-(T-tau)/L)) / c`,
/// normalised so that the mean of `s^2` over the session is 1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IntradayShape {
    /// `1 / c`.
    scale: f64,
}

impl Default for IntradayShape {
    fn default() -> Self {
        Self::new()
    }
}

impl IntradayShape {
    /// The shape with this module's constants.
    pub fn new() -> IntradayShape {
        let raw = IntradayShape { scale: 1.0 };
        let mean_sq = raw.raw_sq_integral(0.0, SESSION_SECS) / SESSION_SECS;
        IntradayShape {
            scale: 1.0 / mean_sq.sqrt(),
        }
    }

    /// `s(tau)` at `tau` seconds after the open.
    pub fn at(&self, tau: f64) -> f64 {
        let t = tau.clamp(0.0, SESSION_SECS);
        self.scale
            * (1.0
                + SHAPE_OPEN * (-t / SHAPE_DECAY_SECS).exp()
                + SHAPE_CLOSE * (-(SESSION_SECS - t) / SHAPE_DECAY_SECS).exp())
    }

    /// `integral of s(tau)^2` over `[a, b]` seconds after the open (clamped to the session),
    /// exact: the variance a unit-volatility factor accumulates over that span.
    pub fn sq_integral(&self, a: f64, b: f64) -> f64 {
        self.scale * self.scale * self.raw_sq_integral(a, b)
    }

    /// `integral of s(tau)` over `[a, b]`, exact: the activity accumulated over that span.
    pub fn integral(&self, a: f64, b: f64) -> f64 {
        let (a, b) = clamp_span(a, b);
        let l = SHAPE_DECAY_SECS;
        let t = SESSION_SECS;
        let open = SHAPE_OPEN * l * ((-a / l).exp() - (-b / l).exp());
        let close = SHAPE_CLOSE * l * ((-(t - b) / l).exp() - (-(t - a) / l).exp());
        self.scale * ((b - a) + open + close)
    }

    /// The mean of `s` over the session (about 0.95): activity proportional to `s` is divided
    /// by it so that the session's mean activity is exactly the requested rate.
    pub fn mean(&self) -> f64 {
        self.integral(0.0, SESSION_SECS) / SESSION_SECS
    }

    fn raw_sq_integral(&self, a: f64, b: f64) -> f64 {
        let (a, b) = clamp_span(a, b);
        let l = SHAPE_DECAY_SECS;
        let t = SESSION_SECS;
        // (1 + A x + B y)^2 with x = e^(-tau/L), y = e^(-(T-tau)/L); x y = e^(-T/L) is constant.
        let ex = |k: f64| (l / k) * ((-k * a / l).exp() - (-k * b / l).exp());
        let ey = |k: f64| (l / k) * ((-k * (t - b) / l).exp() - (-k * (t - a) / l).exp());
        let (ca, cb) = (SHAPE_OPEN, SHAPE_CLOSE);
        (b - a)
            + 2.0 * ca * ex(1.0)
            + 2.0 * cb * ey(1.0)
            + ca * ca * ex(2.0)
            + cb * cb * ey(2.0)
            + 2.0 * ca * cb * (-t / l).exp() * (b - a)
    }
}

fn clamp_span(a: f64, b: f64) -> (f64, f64) {
    let a = a.clamp(0.0, SESSION_SECS);
    (a, b.clamp(a, SESSION_SECS))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn shape_squares_average_to_one_and_integrals_are_exact() {
        let shape = IntradayShape::new();
        let full = shape.sq_integral(0.0, SESSION_SECS) / SESSION_SECS;
        assert!((full - 1.0).abs() < 1e-12, "{full}");
        // Numerical check of both integrals on a sub-span.
        let (a, b) = (100.0, 5000.0);
        let n = 100_000;
        let h = (b - a) / n as f64;
        let (mut sq, mut lin) = (0.0, 0.0);
        for i in 0..n {
            let s = shape.at(a + (i as f64 + 0.5) * h);
            sq += s * s * h;
            lin += s * h;
        }
        assert!((sq / shape.sq_integral(a, b) - 1.0).abs() < 1e-6);
        assert!((lin / shape.integral(a, b) - 1.0).abs() < 1e-6);
        // The open is about 2.4 times as volatile as midday, the close about 1.5 times.
        let mid = shape.at(SESSION_SECS / 2.0);
        assert!((2.2..2.7).contains(&(shape.at(0.0) / mid)));
        assert!((1.4..1.7).contains(&(shape.at(SESSION_SECS) / mid)));
    }

    #[test]
    fn multiplier_has_unit_mean_square_and_clusters() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut vol = LogVol::stationary(&mut rng);
        let step = 300.0;
        let n = 200_000;
        let mut m2 = Vec::with_capacity(n);
        for _ in 0..n {
            let z: f64 = StandardNormal.sample(&mut rng);
            vol.step(step, z, &mut rng);
            m2.push(vol.multiplier().powi(2));
        }
        let mean = m2.iter().sum::<f64>() / n as f64;
        assert!((mean - 1.0).abs() < 0.15, "E[m^2] = {mean}");
        // Half an hour apart the multiplier is still clearly related.
        let logs: Vec<f64> = m2.iter().map(|x| x.ln()).collect();
        let acf = crate::market::facts::correlation(&logs[..n - 6], &logs[6..]);
        assert!(acf > 0.6, "log-vol autocorrelation at 30 min {acf}");
    }

    #[test]
    fn slow_components_move_against_the_return_shock() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let mut vol = LogVol::new();
        let (mut shocks, mut changes) = (Vec::new(), Vec::new());
        for _ in 0..50_000 {
            let z: f64 = StandardNormal.sample(&mut rng);
            let before = vol.multiplier().ln();
            vol.step(SESSION_SECS, z, &mut rng);
            shocks.push(z);
            changes.push(vol.multiplier().ln() - before);
        }
        let corr = crate::market::facts::correlation(&shocks, &changes);
        assert!(corr < -0.3, "leverage correlation {corr}");
    }
}
