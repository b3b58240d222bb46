//! The market: a simulated exchange with its clock, prices, order book and halts.
//!
//! Layers, each ignorant of the ones above: [`clock`] (calendar and sessions), [`volatility`]
//! (calm and storm), [`price`] (the efficient price), [`book`] and [`halts`] (microstructure),
//! [`events`] (what is published) and [`simulator`], which drives them in market time from one
//! seeded generator. [`coarse`] drives the same price model on a fixed grid, for statistics;
//! [`facts`] measures the stylized facts; [`history`] generates the bars of the days before the
//! simulation starts, so charts open with context. Nothing here knows about tokio, HTTP or the
//! wire format.

pub mod bars;
pub mod book;
pub mod clock;
pub mod coarse;
pub mod events;
pub mod facts;
pub mod halts;
pub mod history;
pub mod price;
pub mod scenario;
pub mod simulator;
pub mod symbols;
pub mod volatility;
pub mod walk;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use rust_decimal::Decimal;
use serde::{Serialize, Serializer};

pub use events::{Conditions, Event, Kind, Status, Trade};
pub use simulator::Simulator;
pub use symbols::SymbolSpec;

/// The longest ticker accepted; real tickers are at most 5-6 characters plus a class suffix.
pub const MAX_SYMBOL_LEN: usize = 10;

/// A ticker such as `AAPL` or `BRK.B`: upper-case ASCII letters and digits, with `.` or `-`
/// inside, 1 to [`MAX_SYMBOL_LEN`] characters. Parsing upper-cases, so `msft` is `MSFT`.
/// Shared text (`Arc<str>`) because every quote carries its symbol: cloning must not allocate.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Symbol(Arc<str>);

/// Why a string is not a ticker.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SymbolError {
    #[error("symbol is empty")]
    Empty,
    #[error("symbol is longer than {MAX_SYMBOL_LEN} characters")]
    TooLong,
    #[error("symbol may contain only letters, digits, '.' and '-'")]
    BadCharacter,
}

impl FromStr for Symbol {
    type Err = SymbolError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(SymbolError::Empty);
        }
        if s.len() > MAX_SYMBOL_LEN {
            return Err(SymbolError::TooLong);
        }
        let bytes = s.as_bytes();
        let inner_ok = |b: &u8| b.is_ascii_alphanumeric() || *b == b'.' || *b == b'-';
        if !bytes.iter().all(inner_ok)
            || !bytes[0].is_ascii_alphanumeric()
            || !bytes[bytes.len() - 1].is_ascii_alphanumeric()
        {
            return Err(SymbolError::BadCharacter);
        }
        Ok(Symbol(s.to_ascii_uppercase().into()))
    }
}

impl Symbol {
    /// The ticker text, upper case.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Symbol {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

/// The state of one symbol after an update: what every client receives.
///
/// Prices are exact decimals on the symbol's tick grid and keep the tick's number of decimals,
/// so they serialise as `"185.00"`, never `185` or `185.000`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Quote {
    pub symbol: Symbol,
    /// Global sequence number of this update (all symbols share one counter).
    pub seq: u64,
    /// Wall-clock time of publication, epoch milliseconds: what latency is measured on.
    pub ts: u64,
    /// Market time of the event, epoch milliseconds: what charts are drawn on.
    pub market_ts: i64,
    /// Whether the symbol is trading, halted or closed.
    pub status: Status,
    /// LULD bands in the regular session (`null` outside it), so a chart can draw them from
    /// the first snapshot on; `status` events announce when they move.
    pub limit_up: Option<Decimal>,
    pub limit_down: Option<Decimal>,
    pub price: Decimal,
    pub bid: Decimal,
    pub ask: Decimal,
    pub bid_size: u64,
    pub ask_size: u64,
    pub last_size: u64,
    /// Shares traded since the trading day began (pre-market included); 0 after the rollover.
    pub volume: u64,
    /// The official open (the opening auction print); the previous close until then.
    pub open: Decimal,
    pub high: Decimal,
    pub low: Decimal,
    pub prev_close: Decimal,
    /// `price - prev_close`.
    pub change: Decimal,
    /// `change / prev_close` in percent, two decimals.
    pub change_pct: Decimal,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols_parse_case_insensitively() {
        assert_eq!(Symbol::from_str("msft").unwrap().as_str(), "MSFT");
        assert_eq!(Symbol::from_str("brk.b").unwrap().as_str(), "BRK.B");
    }

    #[test]
    fn bad_symbols_are_refused() {
        assert_eq!(Symbol::from_str(""), Err(SymbolError::Empty));
        assert_eq!(Symbol::from_str("ABCDEFGHIJK"), Err(SymbolError::TooLong));
        assert_eq!(Symbol::from_str("A B"), Err(SymbolError::BadCharacter));
        assert_eq!(Symbol::from_str(".A"), Err(SymbolError::BadCharacter));
        assert_eq!(Symbol::from_str("é"), Err(SymbolError::BadCharacter));
    }
}
