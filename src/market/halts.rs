//! Limit up-limit down: price bands around a reference price, limit states and trading pauses.
//!
//! As in the US plan: the band is 5% around the reference price for tier 1 symbols and 10% for
//! tier 2 (20% under $3), doubled in the first 15 and last 25 minutes of the session. A symbol
//! whose efficient price sits beyond a band has its quote pinned to the band (a limit state); if
//! that lasts [`LIMIT_STATE_SECS`] it is halted for [`HALT_SECS`] and reopens with an auction.
//! The reference price follows trades with a five-minute average. Bands apply only during the
//! regular session.

use super::clock::REGULAR_SESSION_MS;
use super::price::MarketNs;

/// Seconds a limit state may last before the symbol is halted.
pub const LIMIT_STATE_SECS: f64 = 15.0;
/// Length of a trading pause, seconds.
pub const HALT_SECS: f64 = 300.0;
/// Time constant of the reference price's average of trade prices, seconds.
const REFERENCE_SECS: f64 = 300.0;
/// The bands move only when the average has moved this much from the reference they were
/// computed from, as in the plan: bands that follow every trade would be news every second.
const REFERENCE_UPDATE: f64 = 0.01;
/// Bands are doubled this long after the open...
const OPEN_DOUBLED_SECS: f64 = 15.0 * 60.0;
/// ...and this long before the close.
const CLOSE_DOUBLED_SECS: f64 = 25.0 * 60.0;
/// Below this price the band is [`LOW_PRICE_FRACTION`] whatever the tier.
const LOW_PRICE: f64 = 3.0;
const LOW_PRICE_FRACTION: f64 = 0.20;

/// One symbol's LULD state.
#[derive(Debug, Clone, PartialEq)]
pub struct Luld {
    /// Band fraction of the symbol's tier (0.05 or 0.10).
    tier_fraction: f64,
    /// Five-minute average of trade prices, in currency.
    average: f64,
    /// Reference price of the bands: the average when it last moved [`REFERENCE_UPDATE`].
    reference: f64,
    /// Market time of the last reference update.
    updated: MarketNs,
    /// Since when the efficient price has been beyond a band, if it is.
    pub limit_since: Option<MarketNs>,
    /// Until when the symbol is halted, if it is.
    pub halted: Option<MarketNs>,
}

impl Luld {
    /// A state with `reference` as the reference price.
    pub fn new(tier_fraction: f64, reference: f64, now: MarketNs) -> Luld {
        Luld {
            tier_fraction,
            average: reference,
            reference,
            updated: now,
            limit_since: None,
            halted: None,
        }
    }

    /// Sets the reference price outright: at an opening or reopening print.
    pub fn reset(&mut self, reference: f64, now: MarketNs) {
        self.average = reference;
        self.reference = reference;
        self.updated = now;
        self.limit_since = None;
    }

    /// Moves the reference price toward a trade at `price`.
    pub fn on_trade(&mut self, price: f64, now: MarketNs) {
        let dt = (now - self.updated).max(0) as f64 / 1e9;
        let weight = 1.0 - (-dt / REFERENCE_SECS).exp();
        self.average += weight * (price - self.average);
        self.updated = now;
        if (self.average / self.reference - 1.0).abs() >= REFERENCE_UPDATE {
            self.reference = self.average;
        }
    }

    /// The band fraction `tau_secs` seconds into the regular session.
    pub fn fraction(&self, tau_secs: f64) -> f64 {
        let base = if self.reference < LOW_PRICE {
            LOW_PRICE_FRACTION
        } else {
            self.tier_fraction
        };
        let session = REGULAR_SESSION_MS as f64 / 1000.0;
        if tau_secs < OPEN_DOUBLED_SECS || tau_secs >= session - CLOSE_DOUBLED_SECS {
            2.0 * base
        } else {
            base
        }
    }

    /// The band `(limit_down, limit_up)` in ticks of size `tick`.
    pub fn band(&self, tau_secs: f64, tick: f64) -> (i64, i64) {
        let f = self.fraction(tau_secs);
        let down = (self.reference * (1.0 - f) / tick).ceil().max(1.0) as i64;
        let up = (self.reference * (1.0 + f) / tick).floor() as i64;
        (down, up.max(down + 2))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bands_follow_tier_and_time_of_day() {
        let luld = Luld::new(0.05, 100.0, 0);
        assert_eq!(luld.band(3600.0, 0.01), (9500, 10500));
        // Doubled in the first 15 and last 25 minutes.
        assert_eq!(luld.band(60.0, 0.01), (9000, 11000));
        assert_eq!(luld.band(23_400.0 - 60.0, 0.01), (9000, 11000));
        let tier2 = Luld::new(0.10, 100.0, 0);
        assert_eq!(tier2.band(3600.0, 0.01), (9000, 11000));
        let cheap = Luld::new(0.05, 2.0, 0);
        assert_eq!(cheap.band(3600.0, 0.01), (160, 240));
    }

    #[test]
    fn reference_follows_trades_over_minutes() {
        let mut luld = Luld::new(0.05, 100.0, 0);
        luld.on_trade(110.0, 1_000_000_000);
        assert!(luld.average < 100.1, "one second moves it little");
        assert_eq!(luld.reference, 100.0, "bands move only after a 1% move");
        luld.on_trade(110.0, 3600 * 1_000_000_000);
        assert!(luld.average > 109.9, "an hour later it has caught up");
        assert_eq!(luld.reference, luld.average);
    }
}
