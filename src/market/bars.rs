//! Bars: the open, high, low, close, volume, trade count and VWAP of a symbol's trades over an
//! interval of market time.
//!
//! One-minute bars are built from trades; every larger interval is an exact aggregate of
//! one-minute bars (first open, highest high, lowest low, last close, summed volume and trades,
//! volume-weighted VWAP). Intervals are aligned in US Eastern time: minutes and hours on the
//! clock, days at midnight of the trading date, so that a daily bar covers the whole trading day
//! (pre- and post-market included) and aggregates that day's minute bars exactly.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::clock::{et_date_of, et_time, MarketMs, MINUTE_MS};

/// Decimal places of a bar's VWAP (an average, so finer than the tick).
pub const VWAP_DECIMALS: u32 = 4;

/// One bar. Prices are on the symbol's tick grid, except `vwap`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bar {
    /// Market time at which the interval starts, epoch milliseconds.
    pub start: MarketMs,
    pub open: Decimal,
    pub high: Decimal,
    pub low: Decimal,
    pub close: Decimal,
    /// Shares traded.
    pub volume: u64,
    /// Number of trades.
    pub trades: u64,
    /// Volume-weighted average price, [`VWAP_DECIMALS`] places.
    pub vwap: Decimal,
}

impl Bar {
    /// A bar of one trade.
    pub fn of_trade(start: MarketMs, price: Decimal, size: u64) -> Bar {
        Bar {
            start,
            open: price,
            high: price,
            low: price,
            close: price,
            volume: size,
            trades: 1,
            vwap: round_vwap(price),
        }
    }

    /// Adds the later bar `next` (same or later interval) to this one: the aggregate of both.
    pub fn merge(&mut self, next: &Bar) {
        let volume = self.volume + next.volume;
        if volume > 0 {
            let notional =
                self.vwap * Decimal::from(self.volume) + next.vwap * Decimal::from(next.volume);
            self.vwap = round_vwap(notional / Decimal::from(volume));
        }
        self.high = self.high.max(next.high);
        self.low = self.low.min(next.low);
        self.close = next.close;
        self.volume = volume;
        self.trades += next.trades;
    }
}

fn round_vwap(value: Decimal) -> Decimal {
    let mut v = value.round_dp(VWAP_DECIMALS);
    v.rescale(VWAP_DECIMALS);
    v
}

/// Builds one symbol's one-minute bar from its trades, with an exact VWAP.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MinuteBar {
    bar: Option<Bar>,
    /// Sum of price times size, exact.
    notional: Decimal,
}

impl MinuteBar {
    /// Adds a trade at market time `at`. A trade in a later minute than the open bar starts a
    /// new bar and returns the finished one (callers normally [`MinuteBar::finish`] first).
    pub fn add(&mut self, at: MarketMs, price: Decimal, size: u64) -> Option<Bar> {
        let start = Interval::M1.start_of(at);
        let finished = match &self.bar {
            Some(bar) if bar.start != start => self.finish(),
            _ => None,
        };
        let notional = price * Decimal::from(size);
        match &mut self.bar {
            Some(bar) => {
                bar.high = bar.high.max(price);
                bar.low = bar.low.min(price);
                bar.close = price;
                bar.volume += size;
                bar.trades += 1;
                self.notional += notional;
                if bar.volume > 0 {
                    bar.vwap = round_vwap(self.notional / Decimal::from(bar.volume));
                }
            }
            None => {
                self.bar = Some(Bar::of_trade(start, price, size));
                self.notional = notional;
            }
        }
        finished
    }

    /// The bar so far, if the minute has had a trade.
    pub fn current(&self) -> Option<&Bar> {
        self.bar.as_ref()
    }

    /// Closes the bar: returns it and starts empty.
    pub fn finish(&mut self) -> Option<Bar> {
        self.notional = Decimal::ZERO;
        self.bar.take()
    }
}

/// A bar length offered by `/bars`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Interval {
    M1,
    M5,
    M15,
    H1,
    D1,
}

/// An interval name that is not one of 1m, 5m, 15m, 1h, 1d.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("interval must be one of 1m, 5m, 15m, 1h, 1d")]
pub struct UnknownInterval;

impl Interval {
    /// Every interval, shortest first.
    pub const ALL: [Interval; 5] = [
        Interval::M1,
        Interval::M5,
        Interval::M15,
        Interval::H1,
        Interval::D1,
    ];

    /// The name used in URLs and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Interval::M1 => "1m",
            Interval::M5 => "5m",
            Interval::M15 => "15m",
            Interval::H1 => "1h",
            Interval::D1 => "1d",
        }
    }

    /// Start of the interval holding market time `at`. Minutes and hours divide epoch time
    /// evenly (US Eastern offsets are whole hours); days start at midnight ET.
    pub fn start_of(self, at: MarketMs) -> MarketMs {
        let fixed = |len: i64| at - at.rem_euclid(len);
        match self {
            Interval::M1 => fixed(MINUTE_MS),
            Interval::M5 => fixed(5 * MINUTE_MS),
            Interval::M15 => fixed(15 * MINUTE_MS),
            Interval::H1 => fixed(60 * MINUTE_MS),
            Interval::D1 => et_time(et_date_of(at), 0, 0),
        }
    }
}

impl FromStr for Interval {
    type Err = UnknownInterval;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Interval::ALL
            .into_iter()
            .find(|i| i.as_str().eq_ignore_ascii_case(s))
            .ok_or(UnknownInterval)
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Interval {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Interval {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn minute_bars_follow_their_trades_exactly() {
        let t0 = et_time(NaiveDate::from_ymd_opt(2024, 3, 4).unwrap(), 10, 0);
        let mut m = MinuteBar::default();
        assert!(m.add(t0 + 1_000, d("10.00"), 100).is_none());
        assert!(m.add(t0 + 2_000, d("10.05"), 300).is_none());
        assert!(m.add(t0 + 59_999, d("9.98"), 100).is_none());
        let bar = m.current().unwrap().clone();
        assert_eq!(bar.start, t0);
        assert_eq!(
            (bar.open, bar.high, bar.low, bar.close),
            (d("10.00"), d("10.05"), d("9.98"), d("9.98"))
        );
        assert_eq!((bar.volume, bar.trades), (500, 3));
        // (1000 + 3015 + 998) / 500 = 10.026
        assert_eq!(bar.vwap.to_string(), "10.0260");
        let finished = m.add(t0 + 60_000, d("10.01"), 50).unwrap();
        assert_eq!(finished, bar);
        assert_eq!(m.current().unwrap().start, t0 + 60_000);
    }

    #[test]
    fn merging_aggregates_bars() {
        let mut a = Bar::of_trade(0, d("10.00"), 100);
        let b = Bar {
            start: 60_000,
            open: d("10.10"),
            high: d("10.20"),
            low: d("9.90"),
            close: d("10.00"),
            volume: 300,
            trades: 4,
            vwap: d("10.1000"),
        };
        a.merge(&b);
        assert_eq!(a.start, 0);
        assert_eq!(a.open, d("10.00"));
        assert_eq!(
            (a.high, a.low, a.close),
            (d("10.20"), d("9.90"), d("10.00"))
        );
        assert_eq!((a.volume, a.trades), (400, 5));
        assert_eq!(a.vwap.to_string(), "10.0750");
    }

    #[test]
    fn intervals_align_in_eastern_time() {
        let date = NaiveDate::from_ymd_opt(2024, 3, 4).unwrap();
        let at = et_time(date, 10, 47) + 12_345;
        assert_eq!(Interval::M1.start_of(at), et_time(date, 10, 47));
        assert_eq!(Interval::M5.start_of(at), et_time(date, 10, 45));
        assert_eq!(Interval::M15.start_of(at), et_time(date, 10, 45));
        assert_eq!(Interval::H1.start_of(at), et_time(date, 10, 0));
        assert_eq!(Interval::D1.start_of(at), et_time(date, 0, 0));
        assert_eq!("15M".parse::<Interval>(), Ok(Interval::M15));
        assert_eq!("2m".parse::<Interval>(), Err(UnknownInterval));
    }
}
