//! What the market tells the world: a symbol's trading status and the trades it prints.
//!
//! Each market event (a trade or a change of the best bid and offer) is published as the
//! symbol's [`Quote`](super::Quote) summary; a trade also carries its own [`Trade`] record.

use rust_decimal::Decimal;
use serde::{Serialize, Serializer};

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
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
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
