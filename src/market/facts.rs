//! Stylized facts of returns: the statistics that say whether simulated prices behave like a
//! real equity market (heavy tails, volatility clustering, the intraday U-shape, comovement).
//!
//! Everything here is a pure function of log prices sampled on a 5-minute market-time grid.
//! The simulator's unit tests feed its coarse path in, and `tickcast-facts` feeds in what it
//! sampled from the served stream, so both report the same numbers under the same definitions.
//! A statistic that lacks data (too few days, a constant series) is `NaN`, which fails its
//! check and serialises as JSON `null`.
//!
//! Conventions used by every definition below:
//! - a *5-min return* is `days[d][k + 1] - days[d][k]`, `k` in `0..78` (the *slot*); returns
//!   never span the overnight gap;
//! - a *daily return* is the close-to-close `days[d][78] - days[d - 1][78]`;
//! - *standardised per symbol* means `(r - mean) / sd` with that symbol's own mean and
//!   population sd, so that symbols of different volatility can be pooled; a symbol whose
//!   returns are constant is left out of the pooled statistics;
//! - *pooled* statistics sum over symbols before dividing, and never pair values of two
//!   different symbols.

use super::price::{IDIO_FLOOR, MARKET_VOL, SECTOR_SHARE, TRADING_DAYS};
use std::ops::Range;

use serde::Serialize;

/// Grid instants per regular session: 09:30, 09:35, ..., 16:00.
pub const GRID_POINTS: usize = 79;
/// 5-minute returns per regular session (390 minutes / 5).
pub const INTERVALS_PER_DAY: usize = GRID_POINTS - 1;
/// 5-minute intervals in one 65-minute interval; 65 minutes divides the 390-minute session
/// into 6 equal parts, the coarsest intraday scale that still has more than one slot.
pub const INTERVALS_PER_65M: usize = 13;
/// 65-minute returns per session.
pub const SLOTS_65M: usize = INTERVALS_PER_DAY / INTERVALS_PER_65M;
/// The sector name of index funds; they have no sector factor, only the market.
pub const INDEX_SECTOR: &str = "Index";
/// Midday slots 12:00-13:30, the bottom of the intraday U that the open and close are compared with.
pub const MIDDAY_SLOTS: Range<usize> = 30..48;
/// Lags of the return autocorrelation that must be indistinguishable from zero.
pub const ACF_LAGS: usize = 10;
/// Lags of the |return| autocorrelation curve kept for the plot (about 2.5 sessions).
pub const ACF_ABS_CURVE_LAGS: usize = 200;
/// Bins of the return histogram; odd, so that one bin is centred on zero.
pub const HISTOGRAM_BINS: usize = 81;
/// The histogram covers `-HISTOGRAM_LIMIT..HISTOGRAM_LIMIT` standard deviations.
pub const HISTOGRAM_LIMIT: f64 = 8.0;

/// One symbol's regular sessions sampled on a 5-minute market-time grid.
#[derive(Debug, Clone, PartialEq)]
pub struct SymbolSeries {
    /// Index into the caller's symbol list.
    pub symbol: usize,
    /// One entry per trading day in order: the 79 last-trade log prices at 09:30, 09:35, ...,
    /// 16:00 (09:30 = the opening auction print, 16:00 = the closing auction print). A day is
    /// included only if complete. Days are assumed consecutive, and `days[d]` is assumed to be
    /// the same trading day for every symbol (daily correlations pair returns by index).
    pub days: Vec<[f64; GRID_POINTS]>,
}

/// The measured stylized facts; see [`compute`] and the module documentation for conventions.
#[derive(Debug, Clone, Serialize)]
pub struct Facts {
    /// Symbols with at least one day.
    pub symbols: usize,
    /// Fewest days of any symbol with at least one day.
    pub days: usize,
    /// Number of 5-minute returns pooled.
    pub five_min_returns: usize,
    /// Excess kurtosis of the pooled 5-min returns, each standardised per symbol and then
    /// deseasonalised: divided by `shape[slot]`, the RMS of all standardised returns of that slot
    /// divided by the RMS of all of them. Deseasonalising keeps the intraday U-shape (a mixture
    /// of variances) from passing for heavy tails.
    pub kurtosis_5m: f64,
    /// The same for 65-min returns (sums of 13 consecutive 5-min returns within a day, 6 per
    /// day), deseasonalised by their own 6-slot shape.
    pub kurtosis_65m: f64,
    /// Excess kurtosis of the pooled daily close-to-close returns, standardised per symbol.
    pub kurtosis_daily: f64,
    /// Max over lags 1..=10 of |pooled autocorrelation| of the deseasonalised 5-min returns `x`,
    /// each divided by its symbol-day's RMS. Each symbol's days are concatenated into one
    /// series and demeaned; the pooled autocorrelation at lag `k` is
    /// `sum_s sum_t x_t x_(t+k) / sum_s sum_t x_t^2`.
    ///
    /// Why per day: `3 / sqrt(n)` is three standard errors for returns of constant variance.
    /// With volatility clustering the standard error of a raw autocorrelation is about twice
    /// that (it is `sqrt(sum x_t^2 x_(t+k)^2) / sum x_t^2`), so a martingale would fail the
    /// bound by chance; dividing by each day's volatility makes the series homoskedastic enough
    /// for the bound to mean what it says. The sign of each return is untouched, so any linear
    /// dependence still shows.
    pub acf_5m_max_abs_lags_1_10: f64,
    /// `3 / sqrt(n)` with `n` the length of one symbol's series (the shortest): three standard
    /// errors of one series' autocorrelation under white noise. Not the pooled count: the pooled
    /// series are far from independent (they share the market and sector factors, and index
    /// funds are near-copies of each other), so the pooled estimate is about as noisy as a few
    /// series, not as all of them. Measured: with the pooled count, six seeds of the model gave
    /// 0.005-0.012 against a bound of 0.0045, with random signs across lags.
    pub acf_bound: f64,
    /// Pooled autocorrelation of `x` at lags 1..=10 (for the plot).
    pub acf_5m_curve: Vec<f64>,
    /// Pooled autocorrelation of `|x|` (demeaned per symbol) at lag 1 (5 minutes).
    pub acf_abs_5m_lag1: f64,
    /// Pooled autocorrelation of `|x|` at lag 78 (one session later).
    pub acf_abs_5m_lag78: f64,
    /// Pooled autocorrelation of `|x|` at lags 1..=200 (for the plot).
    pub acf_abs_curve: Vec<f64>,
    /// Pooled `corr(y_d, |y_(d+1)|)` of the standardised daily returns `y` (`|y|` demeaned per
    /// symbol): `sum y_d a_(d+1) / sqrt(sum y^2 * sum a^2)`. Negative when falls raise volatility.
    pub leverage: f64,
    /// Mean |standardised 5-min return| (not deseasonalised) in slot 0 (09:30-09:35), divided by
    /// the mean over the midday slots 30..48 (12:00-13:30).
    pub u_first: f64,
    /// The same for slot 77 (15:55-16:00).
    pub u_last: f64,
    /// 78 values: mean |standardised 5-min return| per slot divided by the mean over all slots.
    pub intraday_shape: Vec<f64>,
    /// `sqrt(mean over symbols of var(daily returns) * 252 / csv_vol^2)`: realised over
    /// configured volatility; 1.0 is perfect. Symbols with a non-positive `csv_vol` are left out.
    pub calibration: f64,
    /// OLS slope of the measured correlation of daily returns on the implied correlation,
    /// over all symbol pairs.
    pub comovement_slope: f64,
    /// OLS intercept of the same regression.
    pub comovement_intercept: f64,
    /// Pairs in the regression.
    pub comovement_pairs: usize,
    /// Smallest measured correlation of daily returns over the ETF pairs (`NaN` if none).
    pub etf_min_corr: f64,
    /// ETF pairs measured (both symbols present).
    pub etf_pairs: usize,
    /// `(bin centre, density)` of the standardised deseasonalised 5-min returns, 81 bins on
    /// `[-8, 8]`; density is `count / (n * bin width)` with `n` counting all returns.
    pub return_histogram: Vec<(f64, f64)>,
    /// Width of one histogram bin.
    pub return_histogram_bin_width: f64,
    /// Returns below `-8` (not in any bin).
    pub returns_below_histogram: usize,
    /// Returns at or above `8` (not in any bin).
    pub returns_above_histogram: usize,
}

/// One stylized fact compared with its target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// The stylized fact.
    pub name: &'static str,
    /// What is measured.
    pub statistic: &'static str,
    /// The measured value, formatted.
    pub value: String,
    /// The target, as text.
    pub target: &'static str,
    pub pass: bool,
}

/// Computes every statistic of [`Facts`].
///
/// `csv_vol[s]` is the configured annualised volatility of symbol `s` (indexed by
/// [`SymbolSeries::symbol`]), `implied_corr(i, j)` the correlation of daily returns of symbols
/// `i` and `j` that the factor model implies (see [`implied_correlation`]), and `etf_pairs` pairs
/// of symbol indices that track the same index.
///
/// # Panics
///
/// If a series' `symbol` is out of range of `csv_vol`.
pub fn compute(
    series: &[SymbolSeries],
    csv_vol: &[f64],
    implied_corr: &dyn Fn(usize, usize) -> f64,
    etf_pairs: &[(usize, usize)],
) -> Facts {
    let series: Vec<&SymbolSeries> = series.iter().filter(|s| !s.days.is_empty()).collect();
    let days = series.iter().map(|s| s.days.len()).min().unwrap_or(0);

    // 5-minute returns, standardised per symbol, day-major.
    let z5: Vec<Vec<f64>> = series
        .iter()
        .filter_map(|s| standardise(&interval_returns(&s.days, 1)))
        .collect();
    let x5 = deseasonalise(&z5, INTERVALS_PER_DAY);
    let n5: usize = x5.iter().map(Vec::len).sum();
    let pooled_x5: Vec<f64> = x5.iter().flatten().copied().collect();

    let z65: Vec<Vec<f64>> = series
        .iter()
        .filter_map(|s| standardise(&interval_returns(&s.days, INTERVALS_PER_65M)))
        .collect();
    let x65 = deseasonalise(&z65, SLOTS_65M);

    let raw_daily: Vec<Vec<f64>> = series.iter().map(|s| daily_returns(&s.days)).collect();
    let y: Vec<Vec<f64>> = raw_daily.iter().filter_map(|r| standardise(r)).collect();

    let x5_demeaned: Vec<Vec<f64>> = x5.iter().map(|x| demeaned(x)).collect();
    let abs_x5: Vec<Vec<f64>> = x5
        .iter()
        .map(|x| demeaned(&x.iter().map(|v| v.abs()).collect::<Vec<_>>()))
        .collect();
    let x5_daily: Vec<Vec<f64>> = x5_demeaned
        .iter()
        .map(|x| demeaned(&per_day_scaled(x, INTERVALS_PER_DAY)))
        .collect();
    let acf_5m_curve: Vec<f64> = (1..=ACF_LAGS)
        .map(|k| pooled_lagged_correlation(&x5_daily, &x5_daily, k))
        .collect();
    let acf_abs_curve: Vec<f64> = (1..=ACF_ABS_CURVE_LAGS)
        .map(|k| pooled_lagged_correlation(&abs_x5, &abs_x5, k))
        .collect();
    let abs_y: Vec<Vec<f64>> = y
        .iter()
        .map(|y| demeaned(&y.iter().map(|v| v.abs()).collect::<Vec<_>>()))
        .collect();

    let intraday_shape = mean_abs_by_slot(&z5, INTERVALS_PER_DAY);
    let midday = mean(&intraday_shape[MIDDAY_SLOTS]);

    let (comovement_slope, comovement_intercept, comovement_pairs) =
        comovement(&series, &raw_daily, implied_corr);
    let etf: Vec<f64> = etf_pairs
        .iter()
        .filter_map(|&(a, b)| {
            let ia = series.iter().position(|s| s.symbol == a)?;
            let ib = series.iter().position(|s| s.symbol == b)?;
            Some(correlation(&raw_daily[ia], &raw_daily[ib]))
        })
        .collect();
    let etf_min_corr = if etf.is_empty() {
        f64::NAN
    } else {
        etf.iter().copied().fold(f64::INFINITY, f64::min)
    };

    let (return_histogram, below, above) = histogram(&pooled_x5);

    Facts {
        symbols: series.len(),
        days,
        five_min_returns: n5,
        kurtosis_5m: excess_kurtosis(&pooled_x5),
        kurtosis_65m: excess_kurtosis(&x65.concat()),
        kurtosis_daily: excess_kurtosis(&y.concat()),
        acf_5m_max_abs_lags_1_10: acf_5m_curve
            .iter()
            .map(|v| v.abs())
            .fold(f64::NAN, f64::max),
        acf_bound: 3.0 / ((days * INTERVALS_PER_DAY) as f64).sqrt(),
        acf_5m_curve,
        acf_abs_5m_lag1: acf_abs_curve[0],
        acf_abs_5m_lag78: acf_abs_curve[INTERVALS_PER_DAY - 1],
        acf_abs_curve,
        leverage: pooled_lagged_correlation(&y, &abs_y, 1),
        u_first: intraday_shape[0] / midday,
        u_last: intraday_shape[INTERVALS_PER_DAY - 1] / midday,
        intraday_shape,
        calibration: calibration(&series, &raw_daily, csv_vol),
        comovement_slope,
        comovement_intercept,
        comovement_pairs,
        etf_min_corr,
        etf_pairs: etf.len(),
        return_histogram,
        return_histogram_bin_width: 2.0 * HISTOGRAM_LIMIT / HISTOGRAM_BINS as f64,
        returns_below_histogram: below,
        returns_above_histogram: above,
    }
}

/// The correlation of daily returns of two symbols implied by the factor model, each symbol
/// given as `(vol, beta, sector)` with `vol` annualised.
///
/// The covariance is the market part `beta_a * beta_b * MARKET_VOL^2`, plus, for two symbols of
/// the same sector other than [`INDEX_SECTOR`] (and not empty), the sector part
/// `SECTOR_SHARE * sqrt(idio_a * idio_b)` (see [`idiosyncratic_variance`]). It is divided by the
/// model's volatilities `sqrt(model_variance)`, which equal `vol` unless `beta * MARKET_VOL`
/// exceeds `vol`; dividing by the model's own volatilities keeps the result within [-1, 1].
/// `NaN` if a volatility is not positive.
pub fn implied_correlation(a: (f64, f64, &str), b: (f64, f64, &str)) -> f64 {
    let (vol_a, beta_a, sector_a) = a;
    let (vol_b, beta_b, sector_b) = b;
    if !(vol_a > 0.0 && vol_b > 0.0) {
        return f64::NAN;
    }
    let mut cov = beta_a * beta_b * MARKET_VOL * MARKET_VOL;
    if sector_a == sector_b && sector_a != INDEX_SECTOR && !sector_a.is_empty() {
        cov += SECTOR_SHARE
            * (idiosyncratic_variance(vol_a, beta_a) * idiosyncratic_variance(vol_b, beta_b))
                .sqrt();
    }
    cov / (model_variance(vol_a, beta_a) * model_variance(vol_b, beta_b)).sqrt()
}

/// Annualised variance not explained by the market:
/// `max(vol^2 - beta^2 * MARKET_VOL^2, IDIO_FLOOR * vol^2)`. The sector factor's share of it is
/// [`SECTOR_SHARE`] (for symbols in a sector), the symbol's own noise the rest.
pub fn idiosyncratic_variance(vol: f64, beta: f64) -> f64 {
    let total = vol * vol;
    (total - beta * beta * MARKET_VOL * MARKET_VOL).max(IDIO_FLOOR * total)
}

/// Total annualised variance in the factor model: `beta^2 * MARKET_VOL^2 + idio`. It is `vol^2`
/// unless `beta * MARKET_VOL > vol` (an index fund listed at 15 % with beta 1), where the idio
/// floor adds to the market part.
pub fn model_variance(vol: f64, beta: f64) -> f64 {
    beta * beta * MARKET_VOL * MARKET_VOL + idiosyncratic_variance(vol, beta)
}

/// Arithmetic mean; `NaN` for an empty slice.
pub fn mean(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    xs.iter().sum::<f64>() / xs.len() as f64
}

/// Population variance (divides by `n`); `NaN` for an empty slice.
pub fn variance(xs: &[f64]) -> f64 {
    let m = mean(xs);
    xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / xs.len() as f64
}

/// Excess kurtosis `m4 / m2^2 - 3` with population moments about the mean: 0 for a Gaussian,
/// -2 for a symmetric two-point distribution. `NaN` when empty or constant.
pub fn excess_kurtosis(xs: &[f64]) -> f64 {
    let m = mean(xs);
    let (mut m2, mut m4) = (0.0, 0.0);
    for x in xs {
        let d2 = (x - m) * (x - m);
        m2 += d2;
        m4 += d2 * d2;
    }
    if m2 == 0.0 {
        return f64::NAN;
    }
    let n = xs.len() as f64;
    n * m4 / (m2 * m2) - 3.0
}

/// Pearson correlation of the first `min(a.len(), b.len())` pairs; `NaN` when either side is
/// constant or there are fewer than two pairs.
pub fn correlation(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    if n < 2 {
        return f64::NAN;
    }
    let (a, b) = (&a[..n], &b[..n]);
    let (ma, mb) = (mean(a), mean(b));
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        let (dx, dy) = (x - ma, y - mb);
        sab += dx * dy;
        saa += dx * dx;
        sbb += dy * dy;
    }
    if saa == 0.0 || sbb == 0.0 {
        return f64::NAN;
    }
    sab / (saa * sbb).sqrt()
}

// === impl Facts ===

impl Facts {
    /// Each stylized fact against its target.
    pub fn checks(&self) -> Vec<Check> {
        let mut checks = vec![
            Check {
                name: "heavy tails",
                statistic: "excess kurtosis, 5-min returns (deseasonalised)",
                value: num(self.kurtosis_5m, 2),
                target: "> 2.5",
                pass: self.kurtosis_5m > 2.5,
            },
            Check {
                name: "aggregational Gaussianity",
                statistic: "excess kurtosis, 5 min > 65 min > daily",
                value: format!(
                    "{} > {} > {}",
                    num(self.kurtosis_5m, 2),
                    num(self.kurtosis_65m, 2),
                    num(self.kurtosis_daily, 2)
                ),
                target: "decreasing",
                pass: self.kurtosis_5m > self.kurtosis_65m
                    && self.kurtosis_65m > self.kurtosis_daily,
            },
            Check {
                name: "no linear autocorrelation",
                statistic: "max |acf| of 5-min returns, lags 1-10",
                value: format!(
                    "{} (bound {})",
                    num(self.acf_5m_max_abs_lags_1_10, 4),
                    num(self.acf_bound, 4)
                ),
                target: "< 3/sqrt(n)",
                pass: self.acf_5m_max_abs_lags_1_10 < self.acf_bound,
            },
            Check {
                name: "volatility clustering",
                statistic: "acf of |5-min return|, lag 1",
                value: num(self.acf_abs_5m_lag1, 3),
                target: "0.12 to 0.40",
                pass: (0.12..=0.40).contains(&self.acf_abs_5m_lag1),
            },
            Check {
                name: "slow decay of volatility",
                statistic: "acf of |5-min return|, lag 78 (1 day)",
                value: num(self.acf_abs_5m_lag78, 3),
                target: "> 0.04",
                pass: self.acf_abs_5m_lag78 > 0.04,
            },
            Check {
                name: "leverage effect",
                statistic: "corr(daily r, next day |r|)",
                value: num(self.leverage, 3),
                target: "< -0.03",
                pass: self.leverage < -0.03,
            },
            Check {
                name: "intraday U-shape, open",
                statistic: "mean |r| 09:30-09:35 / 12:00-13:30",
                value: num(self.u_first, 2),
                target: "1.8 to 3.0",
                pass: (1.8..=3.0).contains(&self.u_first),
            },
            Check {
                name: "intraday U-shape, close",
                statistic: "mean |r| 15:55-16:00 / 12:00-13:30",
                value: num(self.u_last, 2),
                target: "1.2 to 1.9",
                pass: (1.2..=1.9).contains(&self.u_last),
            },
            Check {
                name: "volatility calibration",
                statistic: "realised / configured annual volatility",
                value: num(self.calibration, 3),
                target: "0.85 to 1.15",
                pass: (0.85..=1.15).contains(&self.calibration),
            },
            Check {
                name: "comovement",
                statistic: "slope of measured on implied daily correlation",
                value: format!(
                    "{} (intercept {})",
                    num(self.comovement_slope, 3),
                    num(self.comovement_intercept, 3)
                ),
                target: "0.8 to 1.2",
                pass: (0.8..=1.2).contains(&self.comovement_slope),
            },
        ];
        if self.etf_pairs > 0 {
            checks.push(Check {
                name: "index funds track each other",
                statistic: "min daily correlation of ETF pairs",
                value: num(self.etf_min_corr, 4),
                target: ">= 0.99",
                pass: self.etf_min_corr >= 0.99,
            });
        }
        checks
    }

    /// The checks as a Markdown table.
    pub fn markdown_table(&self) -> String {
        let mut out = String::from(
            "| stylized fact | statistic | measured | target | ok |\n|---|---|---:|---|:---:|\n",
        );
        for c in self.checks() {
            let ok = if c.pass { "yes" } else { "**no**" };
            // A `|` inside a cell (as in `|r|`) would end the cell.
            let cell = |text: &str| text.replace('|', "\\|");
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} |\n",
                cell(c.name),
                cell(c.statistic),
                cell(&c.value),
                cell(c.target),
                ok
            ));
        }
        out
    }
}

/// `v` with `decimals` decimals, or `n/a` when it is not finite.
fn num(v: f64, decimals: usize) -> String {
    if v.is_finite() {
        format!("{v:.decimals$}")
    } else {
        "n/a".to_string()
    }
}

/// Returns over `step` consecutive 5-min intervals within each day, day-major.
fn interval_returns(days: &[[f64; GRID_POINTS]], step: usize) -> Vec<f64> {
    days.iter()
        .flat_map(|day| {
            (0..INTERVALS_PER_DAY / step).map(move |j| day[(j + 1) * step] - day[j * step])
        })
        .collect()
}

/// Close-to-close returns: one fewer than the days.
fn daily_returns(days: &[[f64; GRID_POINTS]]) -> Vec<f64> {
    days.windows(2)
        .map(|w| w[1][INTERVALS_PER_DAY] - w[0][INTERVALS_PER_DAY])
        .collect()
}

/// `(x - mean) / sd`, or `None` when `xs` is empty or constant (nothing to standardise by).
fn standardise(xs: &[f64]) -> Option<Vec<f64>> {
    let m = mean(xs);
    let sd = variance(xs).sqrt();
    (sd > 0.0 && sd.is_finite()).then(|| xs.iter().map(|x| (x - m) / sd).collect())
}

/// Divides each day's `per_day` values by their RMS (a day of zeros stays zero).
fn per_day_scaled(xs: &[f64], per_day: usize) -> Vec<f64> {
    xs.chunks(per_day)
        .flat_map(|day| {
            let rms = (day.iter().map(|v| v * v).sum::<f64>() / day.len() as f64).sqrt();
            day.iter()
                .map(move |v| if rms > 0.0 { v / rms } else { 0.0 })
        })
        .collect()
}

fn demeaned(xs: &[f64]) -> Vec<f64> {
    let m = mean(xs);
    xs.iter().map(|x| x - m).collect()
}

/// Divides each value by the RMS of its slot (position modulo `slots`) over all symbols,
/// relative to the RMS of all values.
fn deseasonalise(series: &[Vec<f64>], slots: usize) -> Vec<Vec<f64>> {
    let mut sum_sq = vec![0.0; slots];
    let mut count = vec![0usize; slots];
    for xs in series {
        for (t, x) in xs.iter().enumerate() {
            sum_sq[t % slots] += x * x;
            count[t % slots] += 1;
        }
    }
    let overall = sum_sq.iter().sum::<f64>() / count.iter().sum::<usize>().max(1) as f64;
    let shape: Vec<f64> = sum_sq
        .iter()
        .zip(&count)
        .map(|(s, &c)| (s / c.max(1) as f64 / overall).sqrt())
        .collect();
    series
        .iter()
        .map(|xs| {
            xs.iter()
                .enumerate()
                // A slot with no variation at all holds only zeros: they stay zero.
                .map(|(t, x)| {
                    if shape[t % slots] > 0.0 {
                        x / shape[t % slots]
                    } else {
                        0.0
                    }
                })
                .collect()
        })
        .collect()
}

/// Mean |value| per slot over all symbols, divided by the mean |value| over everything.
fn mean_abs_by_slot(series: &[Vec<f64>], slots: usize) -> Vec<f64> {
    let mut sum = vec![0.0; slots];
    let mut count = vec![0usize; slots];
    for xs in series {
        for (t, x) in xs.iter().enumerate() {
            sum[t % slots] += x.abs();
            count[t % slots] += 1;
        }
    }
    let overall = sum.iter().sum::<f64>() / count.iter().sum::<usize>() as f64;
    sum.iter()
        .zip(&count)
        .map(|(s, &c)| s / c as f64 / overall)
        .collect()
}

/// `sum_s sum_t a_t b_(t+lag) / sqrt(sum_s sum_t a_t^2 * sum_s sum_t b_t^2)` over symbols `s`,
/// for series already demeaned per symbol. With `a == b` this is the pooled autocorrelation.
fn pooled_lagged_correlation(a: &[Vec<f64>], b: &[Vec<f64>], lag: usize) -> f64 {
    let (mut cross, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (xa, xb) in a.iter().zip(b) {
        if xb.len() > lag {
            cross += xa.iter().zip(&xb[lag..]).map(|(p, q)| p * q).sum::<f64>();
        }
        saa += xa.iter().map(|v| v * v).sum::<f64>();
        sbb += xb.iter().map(|v| v * v).sum::<f64>();
    }
    if saa == 0.0 || sbb == 0.0 {
        return f64::NAN;
    }
    cross / (saa * sbb).sqrt()
}

/// `sqrt(mean over symbols of var(daily) * 252 / csv_vol^2)`.
fn calibration(series: &[&SymbolSeries], daily: &[Vec<f64>], csv_vol: &[f64]) -> f64 {
    let ratios: Vec<f64> = series
        .iter()
        .zip(daily)
        .filter(|(s, r)| csv_vol[s.symbol] > 0.0 && r.len() >= 2)
        .map(|(s, r)| variance(r) * TRADING_DAYS / (csv_vol[s.symbol] * csv_vol[s.symbol]))
        .collect();
    mean(&ratios).sqrt()
}

/// OLS of the measured on the implied daily correlation over all pairs: (slope, intercept, pairs).
fn comovement(
    series: &[&SymbolSeries],
    daily: &[Vec<f64>],
    implied_corr: &dyn Fn(usize, usize) -> f64,
) -> (f64, f64, usize) {
    let mut implied = Vec::new();
    let mut measured = Vec::new();
    for i in 0..series.len() {
        for j in i + 1..series.len() {
            let x = implied_corr(series[i].symbol, series[j].symbol);
            let y = correlation(&daily[i], &daily[j]);
            if x.is_finite() && y.is_finite() {
                implied.push(x);
                measured.push(y);
            }
        }
    }
    let slope = covariance(&implied, &measured) / variance(&implied);
    let intercept = mean(&measured) - slope * mean(&implied);
    (slope, intercept, implied.len())
}

fn covariance(a: &[f64], b: &[f64]) -> f64 {
    let (ma, mb) = (mean(a), mean(b));
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - ma) * (y - mb))
        .sum::<f64>()
        / a.len() as f64
}

/// Density histogram on `[-HISTOGRAM_LIMIT, HISTOGRAM_LIMIT)`: (bins, below, above).
fn histogram(xs: &[f64]) -> (Vec<(f64, f64)>, usize, usize) {
    let width = 2.0 * HISTOGRAM_LIMIT / HISTOGRAM_BINS as f64;
    let mut counts = vec![0usize; HISTOGRAM_BINS];
    let (mut below, mut above) = (0, 0);
    for &x in xs {
        if x < -HISTOGRAM_LIMIT {
            below += 1;
        } else if x >= HISTOGRAM_LIMIT {
            above += 1;
        } else {
            let bin = ((x + HISTOGRAM_LIMIT) / width) as usize;
            counts[bin.min(HISTOGRAM_BINS - 1)] += 1;
        }
    }
    let n = xs.len().max(1) as f64;
    let bins = counts
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            let centre = -HISTOGRAM_LIMIT + (i as f64 + 0.5) * width;
            (centre, c as f64 / (n * width))
        })
        .collect();
    (bins, below, above)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use rand_distr::StandardNormal;

    /// Annual volatility → standard deviation of one 5-min return.
    fn five_min_sd(annual: f64) -> f64 {
        annual / (TRADING_DAYS * INTERVALS_PER_DAY as f64).sqrt()
    }

    /// A series whose 5-min returns are `ret(day, slot)`; the overnight return is zero, so
    /// daily returns are sums of the day's 78 returns.
    fn series(
        symbol: usize,
        days: usize,
        mut ret: impl FnMut(usize, usize) -> f64,
    ) -> SymbolSeries {
        let mut price = 100f64.ln();
        let days = (0..days)
            .map(|d| {
                let mut day = [0.0; GRID_POINTS];
                day[0] = price;
                for k in 0..INTERVALS_PER_DAY {
                    price += ret(d, k);
                    day[k + 1] = price;
                }
                day
            })
            .collect();
        SymbolSeries { symbol, days }
    }

    fn gaussian(rng: &mut StdRng) -> f64 {
        rng.sample(StandardNormal)
    }

    fn no_comovement(_: usize, _: usize) -> f64 {
        0.0
    }

    #[test]
    fn moments_of_known_samples() {
        assert_eq!(mean(&[1.0, 2.0, 3.0, 6.0]), 3.0);
        assert_eq!(variance(&[1.0, 2.0, 3.0, 6.0]), 3.5);
        assert_eq!(excess_kurtosis(&[-1.0, 1.0, -1.0, 1.0]), -2.0);
        assert_eq!(excess_kurtosis(&[5.0, 7.0]), -2.0);
        assert!(mean(&[]).is_nan());
        assert!(excess_kurtosis(&[3.0, 3.0, 3.0]).is_nan());
    }

    #[test]
    fn correlation_of_linear_series_is_one() {
        let a: Vec<f64> = (0..50).map(|i| (i as f64).sin()).collect();
        let up: Vec<f64> = a.iter().map(|x| 3.0 * x + 1.0).collect();
        let down: Vec<f64> = a.iter().map(|x| 2.0 - 0.5 * x).collect();
        assert!((correlation(&a, &up) - 1.0).abs() < 1e-12);
        assert!((correlation(&a, &down) + 1.0).abs() < 1e-12);
        assert!(correlation(&a, &[1.0; 50]).is_nan());
        assert!(correlation(&[1.0], &[2.0]).is_nan());
    }

    #[test]
    fn gaussian_returns_have_no_tails_memory_or_shape() {
        let mut rng = StdRng::seed_from_u64(7);
        let vols = [0.2, 0.3, 0.45, 0.6, 0.25, 0.35];
        let sample: Vec<SymbolSeries> = vols
            .iter()
            .enumerate()
            .map(|(s, &vol)| series(s, 250, |_, _| five_min_sd(vol) * gaussian(&mut rng)))
            .collect();
        let facts = compute(&sample, &vols, &no_comovement, &[]);
        assert_eq!((facts.symbols, facts.days), (6, 250));
        assert_eq!(facts.five_min_returns, 6 * 250 * 78);
        assert!(facts.kurtosis_5m.abs() < 0.1, "{facts:?}");
        assert!(facts.kurtosis_65m.abs() < 0.15, "{facts:?}");
        assert!(facts.kurtosis_daily.abs() < 0.5, "{facts:?}");
        assert!(
            facts.acf_5m_max_abs_lags_1_10 < facts.acf_bound,
            "{facts:?}"
        );
        assert!(facts.acf_abs_5m_lag1.abs() < 0.02, "{facts:?}");
        assert!(facts.acf_abs_5m_lag78.abs() < 0.02, "{facts:?}");
        assert!(facts.leverage.abs() < 0.1, "{facts:?}");
        assert!((facts.u_first - 1.0).abs() < 0.1, "{facts:?}");
        assert!((facts.calibration - 1.0).abs() < 0.06, "{facts:?}");
        assert_eq!(facts.intraday_shape.len(), INTERVALS_PER_DAY);
        assert_eq!(facts.acf_abs_curve.len(), ACF_ABS_CURVE_LAGS);
        let mass: f64 = facts
            .return_histogram
            .iter()
            .map(|(_, d)| d * facts.return_histogram_bin_width)
            .sum();
        assert!((mass - 1.0).abs() < 1e-9, "{mass}");
        let centre = facts.return_histogram[HISTOGRAM_BINS / 2];
        assert!(centre.0.abs() < 1e-12);
        // The standard normal density at 0 is 0.399.
        assert!((centre.1 - 0.399).abs() < 0.02, "{centre:?}");
        assert!(!facts.checks()[0].pass);
    }

    /// The acf and calibration checks can fail: returns with a bid-ask-like reversal (MA(1),
    /// lag-1 autocorrelation about -0.1) break the bound, and a symbol table that states 30%
    /// less volatility than the returns have breaks the calibration.
    #[test]
    fn reverting_or_miscalibrated_returns_fail_their_checks() {
        let mut rng = StdRng::seed_from_u64(11);
        let vols = [0.2, 0.3, 0.45, 0.6, 0.25, 0.35];
        let sample: Vec<SymbolSeries> = vols
            .iter()
            .enumerate()
            .map(|(s, &vol)| {
                let mut previous = 0.0;
                series(s, 250, |_, _| {
                    let shock = gaussian(&mut rng);
                    let r = five_min_sd(vol) * (shock - 0.1 * previous);
                    previous = shock;
                    r
                })
            })
            .collect();
        let facts = compute(&sample, &vols, &no_comovement, &[]);
        assert!(
            facts.acf_5m_max_abs_lags_1_10 > facts.acf_bound,
            "{facts:?}"
        );
        let understated: Vec<f64> = vols.iter().map(|v| v * 0.7).collect();
        let facts = compute(&sample, &understated, &no_comovement, &[]);
        assert!(facts.calibration > 1.15, "{}", facts.calibration);
    }

    #[test]
    fn garch_returns_cluster() {
        let mut rng = StdRng::seed_from_u64(11);
        let (omega, alpha, beta): (f64, f64, f64) = (0.05, 0.15, 0.8);
        let sample: Vec<SymbolSeries> = (0..4)
            .map(|s| {
                let mut var = omega / (1.0 - alpha - beta);
                series(s, 250, |_, _| {
                    let r = var.sqrt() * gaussian(&mut rng);
                    var = omega + alpha * r * r + beta * var;
                    r
                })
            })
            .collect();
        let facts = compute(&sample, &[0.3; 4], &no_comovement, &[]);
        assert!(facts.acf_abs_5m_lag1 > 0.1, "{facts:?}");
        assert!(facts.kurtosis_5m > 1.0, "{facts:?}");
        assert!(
            facts.acf_5m_max_abs_lags_1_10 < facts.acf_bound,
            "{facts:?}"
        );
    }

    #[test]
    fn planted_u_shape_is_measured_and_deseasonalised_away() {
        let mut rng = StdRng::seed_from_u64(3);
        let scale = |k: usize| match k {
            0 => 2.4,
            77 => 1.5,
            _ => 1.0,
        };
        let sample: Vec<SymbolSeries> = (0..5)
            .map(|s| series(s, 400, |_, k| 0.001 * scale(k) * gaussian(&mut rng)))
            .collect();
        let facts = compute(&sample, &[0.3; 5], &no_comovement, &[]);
        assert!((facts.u_first - 2.4).abs() < 0.1, "{}", facts.u_first);
        assert!((facts.u_last - 1.5).abs() < 0.08, "{}", facts.u_last);
        // The mixture of slot variances has heavy tails; per-slot scaling removes them.
        let z: Vec<f64> = sample
            .iter()
            .flat_map(|s| interval_returns(&s.days, 1))
            .collect();
        assert!(excess_kurtosis(&z) > 0.5);
        assert!(facts.kurtosis_5m.abs() < 0.1, "{}", facts.kurtosis_5m);
    }

    #[test]
    fn falls_that_raise_volatility_show_leverage() {
        let mut rng = StdRng::seed_from_u64(5);
        let sample: Vec<SymbolSeries> = (0..4)
            .map(|s| {
                let mut day_scale = 1.0;
                let mut day_return: f64 = 0.0;
                series(s, 500, |_, k| {
                    if k == 0 {
                        // Yesterday's fall raises today's volatility.
                        day_scale = (1.0 - 20.0 * day_return).clamp(0.3, 3.0);
                        day_return = 0.0;
                    }
                    let r = 0.002 * day_scale * gaussian(&mut rng);
                    day_return += r;
                    r
                })
            })
            .collect();
        let facts = compute(&sample, &[0.3; 4], &no_comovement, &[]);
        assert!(facts.leverage < -0.1, "{}", facts.leverage);
    }

    #[test]
    fn implied_correlation_follows_the_factor_model() {
        let spy = (0.15, 1.0, INDEX_SECTOR);
        let voo = (0.15, 1.0, INDEX_SECTOR);
        let vti = (0.16, 1.02, INDEX_SECTOR);
        for (a, b) in [(spy, voo), (spy, vti)] {
            let c = implied_correlation(a, b);
            assert!(c > 0.99 && c <= 1.0, "{c}");
        }
        assert!((model_variance(0.30, 1.2) - 0.09).abs() < 1e-15);
        let aapl = (0.30, 1.2, "Technology");
        let msft = (0.28, 1.1, "Technology");
        let xom = (0.30, 0.8, "Energy");
        let market_only = 1.2 * 0.8 * MARKET_VOL * MARKET_VOL / (0.30 * 0.30);
        assert!((implied_correlation(aapl, xom) - market_only).abs() < 1e-12);
        let same_sector = implied_correlation(aapl, msft);
        assert!((same_sector - implied_correlation(msft, aapl)).abs() < 1e-15);
        let idio = idiosyncratic_variance(0.30, 1.2) * idiosyncratic_variance(0.28, 1.1);
        let expected =
            (1.2 * 1.1 * MARKET_VOL * MARKET_VOL + SECTOR_SHARE * idio.sqrt()) / (0.30 * 0.28);
        assert!((same_sector - expected).abs() < 1e-12);
        assert!((idiosyncratic_variance(0.1, 1.0) - IDIO_FLOOR * 0.01).abs() < 1e-15);
        assert!(implied_correlation((0.0, 1.0, "X"), aapl).is_nan());
    }

    #[test]
    fn factor_model_returns_match_implied_comovement() {
        let table = [
            (0.16, 1.0, INDEX_SECTOR),
            (0.16, 1.0, INDEX_SECTOR),
            (0.30, 1.2, "Technology"),
            (0.35, 1.3, "Technology"),
            (0.45, 1.5, "Technology"),
            (0.25, 0.8, "Energy"),
            (0.40, 1.0, "Energy"),
            (0.20, 0.6, "Utilities"),
            (0.22, 0.5, "Utilities"),
            (0.60, 1.8, "Biotech"),
        ];
        let sectors = ["Technology", "Energy", "Utilities", "Biotech"];
        let days = 400;
        let sd = five_min_sd(1.0);
        let mut rng = StdRng::seed_from_u64(9);
        // Factor draws per (day, slot): market, then one per sector.
        let factors: Vec<Vec<f64>> = (0..days * INTERVALS_PER_DAY)
            .map(|_| (0..=sectors.len()).map(|_| gaussian(&mut rng)).collect())
            .collect();
        let sample: Vec<SymbolSeries> = table
            .iter()
            .enumerate()
            .map(|(s, &(vol, beta, sector))| {
                let idio = idiosyncratic_variance(vol, beta);
                let sector_index = sectors.iter().position(|&x| x == sector);
                let sector_var = if sector_index.is_some() {
                    SECTOR_SHARE * idio
                } else {
                    0.0
                };
                series(s, days, |d, k| {
                    let f = &factors[d * INTERVALS_PER_DAY + k];
                    let sector_part = sector_index.map_or(0.0, |i| sector_var.sqrt() * f[i + 1]);
                    let own = (idio - sector_var).sqrt() * gaussian(&mut rng);
                    sd * (beta * MARKET_VOL * f[0] + sector_part + own)
                })
            })
            .collect();
        let vols: Vec<f64> = table.iter().map(|t| t.0).collect();
        let implied = |i: usize, j: usize| implied_correlation(table[i], table[j]);
        let facts = compute(&sample, &vols, &implied, &[(0, 1)]);
        assert_eq!(facts.comovement_pairs, 45);
        assert!((facts.comovement_slope - 1.0).abs() < 0.1, "{facts:?}");
        assert!(facts.comovement_intercept.abs() < 0.08, "{facts:?}");
        assert!(facts.etf_min_corr >= 0.99, "{}", facts.etf_min_corr);
        assert!(
            (facts.calibration - 1.0).abs() < 0.06,
            "{}",
            facts.calibration
        );
    }

    #[test]
    fn too_little_data_is_nan_not_a_panic() {
        let facts = compute(&[], &[], &no_comovement, &[(0, 1)]);
        assert_eq!(
            (facts.symbols, facts.days, facts.five_min_returns),
            (0, 0, 0)
        );
        assert!(facts.kurtosis_5m.is_nan() && facts.calibration.is_nan());
        assert!(facts.etf_min_corr.is_nan());
        let one_day = series(0, 1, |_, k| if k % 2 == 0 { 0.001 } else { -0.001 });
        let facts = compute(&[one_day], &[0.2], &no_comovement, &[]);
        assert!(facts.kurtosis_daily.is_nan() && facts.leverage.is_nan());
        assert!(
            facts.checks().iter().all(|c| !c.pass),
            "{:?}",
            facts.checks()
        );
    }

    #[test]
    fn checks_render_as_a_markdown_table() {
        let mut rng = StdRng::seed_from_u64(1);
        let sample = vec![series(0, 20, |_, _| 0.001 * gaussian(&mut rng))];
        let mut facts = compute(&sample, &[0.2], &no_comovement, &[]);
        assert_eq!(facts.checks().len(), 10);
        facts.etf_pairs = 1;
        facts.etf_min_corr = 0.995;
        let checks = facts.checks();
        assert_eq!(checks.len(), 11);
        assert!(checks[10].pass);
        let table = facts.markdown_table();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines[0],
            "| stylized fact | statistic | measured | target | ok |"
        );
        assert_eq!(lines.len(), 2 + 11);
        assert!(lines[12].starts_with("| index funds track each other |"));
        assert!(lines[12].ends_with("| 0.9950 | >= 0.99 | yes |"));
        // Cells that mention |r| keep their pipes escaped.
        let mut rows = lines.iter().enumerate().filter(|&(i, _)| i != 1);
        assert!(rows.all(|(_, l)| l.matches(" | ").count() == 4), "{table}");
        assert!(table.contains(r"max \|acf\| of 5-min returns"));
    }
}
