//! What the market tells the world: quotes, trades, bars, trading status and session changes.
//!
//! Every event takes the next number of one sequence, whatever its kind, so a client that
//! resumes after a given seq misses nothing of any kind. A trade is published as a `trade`
//! event followed by the symbol's updated [`Quote`] summary; a change of the best bid and offer
//! as the quote alone.

use rust_decimal::Decimal;
use serde::{Serialize, Serializer};

use super::bars::Bar;
use super::clock::{MarketMs, SessionState};
use super::{Quote, Symbol};

/// The kinds of market event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Kind {
    Quote = 0,
    Trade = 1,
    Bar = 2,
    Status = 3,
    /// Market-wide: concerns every symbol.
    Session = 4,
}

impl Kind {
    /// Every kind, in the order of their numbers.
    pub const ALL: [Kind; 5] = [
        Kind::Quote,
        Kind::Trade,
        Kind::Bar,
        Kind::Status,
        Kind::Session,
    ];

    /// The event's name (`event:` on the wire, `?events=` in URLs).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Quote => "quote",
            Kind::Trade => "trade",
            Kind::Bar => "bar",
            Kind::Status => "status",
            Kind::Session => "session",
        }
    }
}

/// Symbol index of market-wide events.
pub const MARKET_WIDE: u16 = u16::MAX;

/// One market event with its place in the sequence.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A symbol's summary after a trade or a change of its best bid and offer.
    Quote(u16, Quote),
    Trade(u16, TradeEvent),
    /// A one-minute bar, when its minute has closed.
    Bar(u16, BarEvent),
    Status(u16, StatusEvent),
    Session(SessionEvent),
}

impl Event {
    /// The event's kind.
    pub fn kind(&self) -> Kind {
        match self {
            Event::Quote(..) => Kind::Quote,
            Event::Trade(..) => Kind::Trade,
            Event::Bar(..) => Kind::Bar,
            Event::Status(..) => Kind::Status,
            Event::Session(..) => Kind::Session,
        }
    }

    /// Index of the symbol in the symbol table, or [`MARKET_WIDE`].
    pub fn symbol_index(&self) -> u16 {
        match self {
            Event::Quote(i, _) | Event::Trade(i, _) | Event::Bar(i, _) | Event::Status(i, _) => *i,
            Event::Session(_) => MARKET_WIDE,
        }
    }

    /// The event's seq.
    pub fn seq(&self) -> u64 {
        self.header().seq
    }

    /// The fields every event has.
    pub fn header(&self) -> Header {
        match self {
            Event::Quote(_, q) => Header {
                seq: q.seq,
                ts: q.ts,
                market_ts: q.market_ts,
            },
            Event::Trade(_, e) => e.header,
            Event::Bar(_, e) => e.header,
            Event::Status(_, e) => e.header,
            Event::Session(e) => e.header,
        }
    }

    /// The quote, if this is one.
    pub fn as_quote(&self) -> Option<&Quote> {
        match self {
            Event::Quote(_, q) => Some(q),
            _ => None,
        }
    }
}

/// The fields every event carries: its seq, its wall-clock publication time and its market
/// time (both epoch milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Header {
    pub seq: u64,
    pub ts: u64,
    pub market_ts: MarketMs,
}

/// `event: trade`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TradeEvent {
    pub symbol: Symbol,
    #[serde(flatten)]
    pub header: Header,
    #[serde(flatten)]
    pub trade: Trade,
}

/// `event: bar`: a one-minute bar, sent when its minute closes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BarEvent {
    pub symbol: Symbol,
    #[serde(flatten)]
    pub header: Header,
    /// Always `1m` on the stream; larger intervals come from `/bars`.
    pub interval: &'static str,
    #[serde(flatten)]
    pub bar: Bar,
}

/// Why a symbol's status event was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// 04:00 ET: pre-market trading starts.
    PreOpen,
    /// 09:30 ET: the opening auction; LULD bands apply.
    Open,
    /// 16:00 ET: the closing auction; post-market trading, no bands.
    Close,
    /// 20:00 ET: the symbol is closed until the next pre-market.
    Closed,
    /// Halted: the price stayed at a LULD band for 15 seconds.
    LuldPause,
    /// Halted: the market-wide circuit breaker (an index fell 7%, 13% or 20%).
    CircuitBreaker,
    /// Halted on request (`POST /scenario`).
    Requested,
    /// Trading again after a halt, with a reopening auction.
    Resumed,
    /// The LULD bands moved.
    Bands,
}

/// `event: status`: a halt, a resumption, a session change of the symbol or new LULD bands.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusEvent {
    pub symbol: Symbol,
    #[serde(flatten)]
    pub header: Header,
    pub status: Status,
    pub reason: Reason,
    /// LULD bands, in the regular session only (`null` otherwise).
    pub limit_up: Option<Decimal>,
    pub limit_down: Option<Decimal>,
    /// While halted: when trading resumes (market epoch ms), with a reopening auction in the
    /// regular session. `null` otherwise.
    pub resumes_at: Option<MarketMs>,
}

/// `event: session`: the market's session changed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionEvent {
    #[serde(flatten)]
    pub header: Header,
    pub state: SessionState,
    /// Next regular open and close after `market_ts`, market epoch ms.
    pub next_open: MarketMs,
    pub next_close: MarketMs,
}

/// Whether a symbol can trade right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Quotes and trades flow (pre-market, regular session or post-market).
    Trading,
    /// A trading pause (limit up-limit down or requested): no trades and no quote changes.
    Halted,
    /// Outside every session: nights, weekends and holidays.
    Closed,
}

impl Status {
    /// The name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Trading => "trading",
            Status::Halted => "halted",
            Status::Closed => "closed",
        }
    }
}

/// Sale conditions of a trade, as a small set. On the wire each is a one-letter code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Conditions(u8);

impl Conditions {
    /// `O`: the opening auction print at 09:30.
    pub const OPENING: Conditions = Conditions(1);
    /// `C`: the closing auction print at 16:00.
    pub const CLOSING: Conditions = Conditions(2);
    /// `R`: the auction print that reopens a halted symbol.
    pub const REOPENING: Conditions = Conditions(4);
    /// `I`: an odd lot, under 100 shares.
    pub const ODD_LOT: Conditions = Conditions(8);
    /// `T`: a trade outside the regular session (pre- or post-market).
    pub const EXTENDED: Conditions = Conditions(16);

    const CODES: [(Conditions, &'static str); 5] = [
        (Conditions::OPENING, "O"),
        (Conditions::CLOSING, "C"),
        (Conditions::REOPENING, "R"),
        (Conditions::ODD_LOT, "I"),
        (Conditions::EXTENDED, "T"),
    ];

    /// No condition: a regular trade.
    pub const NONE: Conditions = Conditions(0);

    /// Both sets together.
    pub fn with(self, other: Conditions) -> Conditions {
        Conditions(self.0 | other.0)
    }

    /// Whether every condition of `other` is in `self`.
    pub fn contains(self, other: Conditions) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether the trade is an auction print (opening, closing or reopening), which may lie
    /// outside the quote it follows.
    pub fn is_auction(self) -> bool {
        self.0 & (Conditions::OPENING.0 | Conditions::CLOSING.0 | Conditions::REOPENING.0) != 0
    }

    /// The one-letter codes, in a fixed order.
    pub fn codes(self) -> impl Iterator<Item = &'static str> {
        Conditions::CODES
            .into_iter()
            .filter(move |(c, _)| self.contains(*c))
            .map(|(_, code)| code)
    }
}

impl Serialize for Conditions {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.codes())
    }
}

/// One trade: price on the tick grid, size in shares and its conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Trade {
    pub price: Decimal,
    pub size: u64,
    pub conditions: Conditions,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_serialise_as_codes() {
        let c = Conditions::OPENING.with(Conditions::ODD_LOT);
        assert_eq!(serde_json::to_string(&c).unwrap(), r#"["O","I"]"#);
        assert_eq!(serde_json::to_string(&Conditions::NONE).unwrap(), "[]");
        assert!(c.is_auction() && !Conditions::ODD_LOT.is_auction());
        assert_eq!(
            serde_json::to_string(&Status::Halted).unwrap(),
            "\"halted\""
        );
    }
}
