//! Scenarios: market moves and halts requested from outside, for demos and front-end tests.
//!
//! A scenario names symbols by index; the HTTP layer resolves tickers and validates input.
//! Applying one draws nothing from the simulator's generator, so a run without scenarios is the
//! same as it always was for its seed.

use serde::Serialize;

use super::clock::MarketMs;

/// Longest halt a scenario may request, minutes (a trading day is 960 minutes long).
pub const MAX_HALT_MINUTES: f64 = 960.0;
/// Largest price move a scenario may request, percent either way.
pub const MAX_MOVE_PCT: f64 = 90.0;

/// One requested scenario.
#[derive(Debug, Clone, PartialEq)]
pub enum Scenario {
    /// Halt the symbols for `minutes` of market time; they reopen with an auction.
    Halt { symbols: Vec<u16>, minutes: f64 },
    /// Move every listed symbol's price by `move_pct` times its beta at once. With every
    /// symbol listed it is a market-wide shock: LULD pauses follow, and the market-wide circuit
    /// breaker if the index funds fall 7% or more.
    Shock { symbols: Vec<u16>, move_pct: f64 },
    /// Move the listed symbols' prices by `move_pct` at once, as company news would.
    News { symbols: Vec<u16>, move_pct: f64 },
}

impl Scenario {
    /// The symbols the scenario concerns.
    pub fn symbols(&self) -> &[u16] {
        match self {
            Scenario::Halt { symbols, .. }
            | Scenario::Shock { symbols, .. }
            | Scenario::News { symbols, .. } => symbols,
        }
    }
}

/// What applying a scenario did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Applied {
    /// Market time it took effect, epoch ms.
    pub market_ts: MarketMs,
    /// Symbols it halted at once (by index).
    pub halted: Vec<u16>,
    /// The market-wide circuit breaker level it tripped, if any.
    pub circuit_breaker: Option<u8>,
}

/// Why a scenario was not applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScenarioError {
    #[error("the market is closed; scenarios apply from the pre-market (04:00 ET) to the post-market's end (20:00 ET)")]
    MarketClosed,
    #[error("no symbol has index {0}")]
    UnknownSymbol(u16),
}
