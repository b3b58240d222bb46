//! Loading and validating the symbol table (`data/symbols.csv`).
//!
//! The file is read once at start-up. Every problem is reported with the file, the line and the
//! column, because a person fixing a CSV by hand needs exactly that and nothing else.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde::{Serialize, Serializer};

use super::Symbol;

/// The columns `data/symbols.csv` must have, in any order.
pub const COLUMNS: [&str; 11] = [
    "symbol",
    "name",
    "price",
    "volatility",
    "drift",
    "tick_size",
    "beta",
    "sector",
    "adv",
    "spread_bp",
    "tier",
];

/// One tradable instrument and the parameters of its random walk.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SymbolSpec {
    /// Ticker, upper case.
    pub symbol: Symbol,
    /// Human-readable name for the dashboard.
    pub name: String,
    /// Reference price: the previous close that the simulated session starts from.
    #[serde(rename = "price")]
    pub reference_price: Decimal,
    /// Annualised volatility as a fraction (0.30 = 30 %).
    pub volatility: f64,
    /// Annualised drift as a fraction.
    pub drift: f64,
    /// Price grid: every price of this symbol is a multiple of it and has its decimals.
    pub tick_size: Decimal,
    /// Sensitivity to the shared market factor.
    pub beta: f64,
    /// Group whose members share a sector factor; [`Sector::is_index`] symbols get none.
    pub sector: Sector,
    /// Average daily volume in shares (> 0): scales trade sizes and the volume of a session.
    pub adv: u64,
    /// Typical quoted spread in basis points of price (finite, > 0, <= 10000). The table keeps
    /// it at least one tick; the parser does not enforce that, so a test file may go below.
    pub spread_bp: f64,
    /// Limit Up-Limit Down tier, which sets the width of the price bands.
    pub tier: LuldTier,
}

/// The longest sector name accepted; the GICS names written as one word fit easily.
pub const MAX_SECTOR_LEN: usize = 32;

/// A sector name such as `Technology` or `HealthCare`: 1 to [`MAX_SECTOR_LEN`] ASCII letters,
/// digits, `-` or `_`, kept as written (so `Energy` and `energy` are different sectors).
/// Shared text (`Arc<str>`) because symbols of one sector carry the same name and clone it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sector(Arc<str>);

/// Why a string is not a sector name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SectorError {
    #[error("sector is empty")]
    Empty,
    #[error("sector is longer than {MAX_SECTOR_LEN} characters")]
    TooLong,
    #[error("sector may contain only ASCII letters, digits, '-' and '_'")]
    BadCharacter,
}

// === impl Sector ===

impl Sector {
    /// The name of the pseudo-sector of broad index funds, which have no sector factor.
    pub const INDEX: &'static str = "Index";

    /// The sector name as written in the file.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is [`Sector::INDEX`] (compared exactly, like every sector name): a broad
    /// index fund moves with the market factor alone.
    pub fn is_index(&self) -> bool {
        &*self.0 == Self::INDEX
    }
}

impl FromStr for Sector {
    type Err = SectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(SectorError::Empty);
        }
        if s.len() > MAX_SECTOR_LEN {
            return Err(SectorError::TooLong);
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(SectorError::BadCharacter);
        }
        Ok(Sector(s.into()))
    }
}

impl fmt::Display for Sector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Sector {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

/// The Limit Up-Limit Down tier of a symbol, written `1` or `2` in the file and on the wire.
///
/// The plan puts the S&P 500, the Russell 1000 and selected ETPs in Tier 1; the shipped table
/// marks S&P 500 members and the broad and sector ETFs as Tier 1 and the rest as Tier 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LuldTier {
    Tier1,
    Tier2,
}

/// Why a string is not a LULD tier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tier must be 1 or 2, got '{0}'")]
pub struct LuldTierError(String);

// === impl LuldTier ===

impl LuldTier {
    /// The tier number, 1 or 2.
    pub fn number(self) -> u8 {
        match self {
            LuldTier::Tier1 => 1,
            LuldTier::Tier2 => 2,
        }
    }

    /// Half-width of the price band as a fraction of the reference price: 5 % for Tier 1 and
    /// 10 % for Tier 2. These are the plan's values for reference prices above $3.00 during
    /// regular hours; the doubled bands of the first and last minutes and the wider bands of
    /// cheap stocks are not included.
    pub fn band_fraction(self) -> f64 {
        match self {
            LuldTier::Tier1 => 0.05,
            LuldTier::Tier2 => 0.10,
        }
    }
}

impl FromStr for LuldTier {
    type Err = LuldTierError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "1" => Ok(LuldTier::Tier1),
            "2" => Ok(LuldTier::Tier2),
            _ => Err(LuldTierError(shown(s))),
        }
    }
}

impl fmt::Display for LuldTier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.number())
    }
}

impl Serialize for LuldTier {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u8(self.number())
    }
}

/// Why a symbol file was refused. The message is one line naming file, line and column.
#[derive(Debug, thiserror::Error)]
pub enum SymbolsError {
    /// The OS reason is the source: `{:#}` (as the binary prints errors) shows it once.
    #[error("{path}: cannot read file")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Malformed {
        path: PathBuf,
        line: u64,
        message: String,
    },
    #[error("{path}:{line}: column '{column}': {message}")]
    BadValue {
        path: PathBuf,
        line: u64,
        column: &'static str,
        message: String,
    },
    #[error("{path}: header is missing column '{column}'")]
    MissingColumn { path: PathBuf, column: &'static str },
    #[error("{path}: no symbols in file")]
    Empty { path: PathBuf },
    #[error("{path}: too many symbols ({count}); at most {max} are supported")]
    TooMany {
        path: PathBuf,
        count: usize,
        max: usize,
    },
}

/// The most symbols one feed carries; symbol indexes are stored as `u16`.
pub const MAX_SYMBOLS: usize = 4096;

/// `data/symbols.csv` as it was when the binary was built, so a copied binary runs anywhere.
pub const BUILT_IN: &str = include_str!("../../data/symbols.csv");

/// The built-in symbol table (see [`BUILT_IN`]).
///
/// # Errors
/// Never for the file shipped with the crate (a unit test checks it), but the type says so.
pub fn built_in() -> Result<Vec<SymbolSpec>, SymbolsError> {
    parse(Path::new("data/symbols.csv (built in)"), BUILT_IN)
}

/// The symbols from `path`, or the built-in table when `path` is `None`.
///
/// # Errors
/// See [`load`].
pub fn load_or_built_in(path: Option<&Path>) -> Result<Vec<SymbolSpec>, SymbolsError> {
    match path {
        Some(path) => load(path),
        None => built_in(),
    }
}

/// Reads and validates a symbol file.
///
/// # Errors
/// Any I/O problem, a missing column, a value that does not parse or is out of range, or a
/// duplicate symbol.
pub fn load(path: &Path) -> Result<Vec<SymbolSpec>, SymbolsError> {
    let text = std::fs::read_to_string(path).map_err(|source| SymbolsError::Io {
        path: path.to_owned(),
        source,
    })?;
    parse(path, &text)
}

/// Parses the text of a symbol file; `path` is used only in error messages.
///
/// # Errors
/// See [`load`].
pub fn parse(path: &Path, text: &str) -> Result<Vec<SymbolSpec>, SymbolsError> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .from_reader(text.as_bytes());
    let malformed = |line: u64, message: String| SymbolsError::Malformed {
        path: path.to_owned(),
        line,
        message,
    };
    let headers = reader
        .headers()
        .map_err(|e| malformed(1, e.to_string()))?
        .clone();
    let mut positions = [0usize; COLUMNS.len()];
    for (slot, column) in positions.iter_mut().zip(COLUMNS) {
        *slot = headers
            .iter()
            .position(|h| h.eq_ignore_ascii_case(column))
            .ok_or(SymbolsError::MissingColumn {
                path: path.to_owned(),
                column,
            })?;
    }

    let mut specs = Vec::new();
    let mut seen = HashSet::new();
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line());
            malformed(line, e.to_string())
        })?;
        let line = record.position().map_or(0, |p| p.line());
        let field = |index: usize| -> Result<&str, SymbolsError> {
            let column = COLUMNS[index];
            match record.get(positions[index]) {
                Some(value) if !value.is_empty() => Ok(value),
                _ => Err(SymbolsError::BadValue {
                    path: path.to_owned(),
                    line,
                    column,
                    message: "value is missing".into(),
                }),
            }
        };
        let bad = |index: usize, message: String| SymbolsError::BadValue {
            path: path.to_owned(),
            line,
            column: COLUMNS[index],
            message,
        };

        let symbol = Symbol::from_str(field(0)?).map_err(|e| bad(0, e.to_string()))?;
        if !seen.insert(symbol.clone()) {
            return Err(bad(0, format!("duplicate symbol {symbol}")));
        }
        let name = field(1)?.to_owned();
        let reference_price = parse_decimal(field(2)?).map_err(|m| bad(2, m))?;
        if reference_price <= Decimal::ZERO {
            return Err(bad(
                2,
                format!("price must be positive, got {reference_price}"),
            ));
        }
        let volatility = parse_f64(field(3)?).map_err(|m| bad(3, m))?;
        if !(0.0..=5.0).contains(&volatility) {
            return Err(bad(
                3,
                format!("volatility must be in 0..=5, got {volatility}"),
            ));
        }
        let drift = parse_f64(field(4)?).map_err(|m| bad(4, m))?;
        if !(-1.0..=1.0).contains(&drift) {
            return Err(bad(4, format!("drift must be in -1..=1, got {drift}")));
        }
        let tick_size = parse_decimal(field(5)?).map_err(|m| bad(5, m))?;
        if tick_size <= Decimal::ZERO {
            return Err(bad(
                5,
                format!("tick size must be positive, got {tick_size}"),
            ));
        }
        if tick_size.scale() > 8 {
            return Err(bad(5, "tick size has more than 8 decimals".into()));
        }
        if reference_price < tick_size {
            return Err(bad(
                2,
                format!("price {reference_price} is below the tick size {tick_size}"),
            ));
        }
        // Checked: a price near Decimal's maximum over a tick of 1e-8 overflows the division.
        if reference_price
            .checked_div(tick_size)
            .and_then(|ticks| ticks.to_u64())
            .is_none_or(|t| t > 1 << 50)
        {
            return Err(bad(2, "price is too large for its tick size".into()));
        }
        if !(reference_price % tick_size).is_zero() {
            return Err(bad(
                2,
                format!("price {reference_price} is not a multiple of the tick size {tick_size}"),
            ));
        }
        let beta = parse_f64(field(6)?).map_err(|m| bad(6, m))?;
        if !(-5.0..=5.0).contains(&beta) {
            return Err(bad(6, format!("beta must be in -5..=5, got {beta}")));
        }
        let sector = Sector::from_str(field(7)?).map_err(|e| bad(7, e.to_string()))?;
        let adv = field(8)?;
        let adv = match adv.parse::<u64>() {
            Ok(0) => return Err(bad(8, "adv must be positive, got 0".into())),
            Ok(adv) => adv,
            Err(_) => {
                return Err(bad(
                    8,
                    format!("'{}' is not a whole number of shares", shown(adv)),
                ))
            }
        };
        let spread_bp = parse_f64(field(9)?).map_err(|m| bad(9, m))?;
        if !(spread_bp > 0.0 && spread_bp <= 10_000.0) {
            return Err(bad(
                9,
                format!("spread must be above 0 and at most 10000 bp, got {spread_bp}"),
            ));
        }
        let tier = LuldTier::from_str(field(10)?).map_err(|e| bad(10, e.to_string()))?;
        specs.push(SymbolSpec {
            symbol,
            name,
            reference_price,
            volatility,
            drift,
            tick_size: tick_size.normalize(),
            beta,
            sector,
            adv,
            spread_bp,
            tier,
        });
        if specs.len() > MAX_SYMBOLS {
            return Err(SymbolsError::TooMany {
                path: path.to_owned(),
                count: specs.len(),
                max: MAX_SYMBOLS,
            });
        }
    }
    if specs.is_empty() {
        return Err(SymbolsError::Empty {
            path: path.to_owned(),
        });
    }
    Ok(specs)
}

fn parse_decimal(value: &str) -> Result<Decimal, String> {
    Decimal::from_str(value).map_err(|_| format!("'{}' is not a decimal number", shown(value)))
}

fn parse_f64(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(format!("'{}' is not a number", shown(value))),
    }
}

/// A value from the file as an error message shows it: at most 32 characters, control
/// characters escaped, so the message stays one short line whatever the file holds (a quoted
/// CSV field may span lines).
fn shown(value: &str) -> String {
    value
        .chars()
        .take(32)
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str =
        "symbol,name,price,volatility,drift,tick_size,beta,sector,adv,spread_bp,tier\n";

    /// Valid values for the columns after `beta`, for rows that test something else.
    const TAIL: &str = "Technology,1000000,1.0,1";

    fn parse_str(body: &str) -> Result<Vec<SymbolSpec>, SymbolsError> {
        parse(Path::new("syms.csv"), &format!("{HEADER}{body}"))
    }

    fn error_of(body: &str) -> String {
        parse_str(body).unwrap_err().to_string()
    }

    /// The error for one row made of `head` (the first seven columns) and `tail`.
    fn row_error(head: &str, tail: &str) -> String {
        error_of(&format!("{head},{tail}\n"))
    }

    fn shipped() -> Vec<SymbolSpec> {
        load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("data/symbols.csv")).unwrap()
    }

    #[test]
    fn parses_a_valid_row() {
        let specs =
            parse_str("aapl,Apple Inc,187.23,0.25,0.08,0.01,1.2,Technology,55000000,1.0,1\n")
                .unwrap();
        assert_eq!(specs.len(), 1);
        assert_eq!(specs[0].symbol.as_str(), "AAPL");
        assert_eq!(specs[0].reference_price.to_string(), "187.23");
        assert_eq!(specs[0].tick_size.to_string(), "0.01");
        assert_eq!(specs[0].sector.as_str(), "Technology");
        assert!(!specs[0].sector.is_index());
        assert_eq!(specs[0].adv, 55_000_000);
        assert_eq!(specs[0].spread_bp, 1.0);
        assert_eq!(specs[0].tier, LuldTier::Tier1);
    }

    #[test]
    fn new_columns_parse_in_any_order() {
        let text = "tier,spread_bp,adv,sector,symbol,name,price,volatility,drift,tick_size,beta\n\
                    2,10.5,35000000,Index,RIVN,Rivian,11.60,0.65,-0.05,0.01,2.0\n";
        let spec = parse(Path::new("x.csv"), text).unwrap().remove(0);
        assert!(spec.sector.is_index());
        assert_eq!(spec.sector.to_string(), "Index");
        assert_eq!(spec.adv, 35_000_000);
        assert_eq!(spec.spread_bp, 10.5);
        assert_eq!(spec.tier, LuldTier::Tier2);
        assert_eq!(spec.tier.band_fraction(), 0.10);
        assert_eq!(LuldTier::Tier1.band_fraction(), 0.05);
    }

    #[test]
    fn new_fields_serialise_for_the_symbols_endpoint() {
        let spec =
            parse_str("F,Ford,12.35,0.38,0.02,0.01,1.5,ConsumerDiscretionary,55000000,8.1,2\n")
                .unwrap()
                .remove(0);
        let json = serde_json::to_value(&spec).unwrap();
        assert_eq!(json["sector"], "ConsumerDiscretionary");
        assert_eq!(json["adv"], 55_000_000);
        assert_eq!(json["spread_bp"], 8.1);
        assert_eq!(json["tier"], 2);
        assert_eq!(json["price"], "12.35");
    }

    #[test]
    fn missing_column_is_named() {
        let err = parse(Path::new("x.csv"), "symbol,name,price\nA,B,1\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "x.csv: header is missing column 'volatility'"
        );
        let old_header =
            "symbol,name,price,volatility,drift,tick_size,beta\nA,A,1.00,0.2,0.1,0.01,1\n";
        let err = parse(Path::new("x.csv"), old_header).unwrap_err();
        assert_eq!(err.to_string(), "x.csv: header is missing column 'sector'");
    }

    #[test]
    fn non_numeric_value_names_line_and_column() {
        let err = error_of(&format!(
            "AAPL,Apple,187.23,0.25,0.08,0.01,1.2,{TAIL}\nMSFT,Microsoft,abc,0.2,0.1,0.01,1,{TAIL}\n"
        ));
        assert_eq!(
            err,
            "syms.csv:3: column 'price': 'abc' is not a decimal number"
        );
    }

    #[test]
    fn duplicate_symbol_is_refused() {
        let err = error_of(&format!(
            "AAPL,A,1.00,0.2,0.1,0.01,1,{TAIL}\naapl,B,2.00,0.2,0.1,0.01,1,{TAIL}\n"
        ));
        assert_eq!(err, "syms.csv:3: column 'symbol': duplicate symbol AAPL");
    }

    #[test]
    fn negative_price_and_zero_tick_are_refused() {
        assert!(row_error("A,A,-1.00,0.2,0.1,0.01,1", TAIL)
            .contains("column 'price': price must be positive"));
        assert!(row_error("A,A,1.00,0.2,0.1,0,1", TAIL)
            .contains("column 'tick_size': tick size must be positive"));
    }

    #[test]
    fn off_grid_price_is_refused() {
        assert_eq!(
            row_error("A,A,10.005,0.2,0.1,0.01,1", TAIL),
            "syms.csv:2: column 'price': price 10.005 is not a multiple of the tick size 0.01"
        );
        assert_eq!(
            row_error("A,A,10.12,0.2,0.1,0.05,1", TAIL),
            "syms.csv:2: column 'price': price 10.12 is not a multiple of the tick size 0.05"
        );
        // Extra trailing zeros do not make an on-grid price off-grid.
        assert!(parse_str(&format!("A,A,10.1500,0.2,0.1,0.05,1,{TAIL}\n")).is_ok());
    }

    #[test]
    fn huge_price_over_a_tiny_tick_is_refused_not_a_panic() {
        // Found by the symbols_csv fuzz target: the division overflowed and panicked.
        let e = row_error(
            "A,A,79228162514264337593543950335,0.2,0.1,0.00000001,1",
            TAIL,
        );
        assert_eq!(
            e,
            "syms.csv:2: column 'price': price is too large for its tick size"
        );
    }

    #[test]
    fn errors_stay_one_short_line_whatever_the_value() {
        // Found by the symbols_csv fuzz target: a quoted field spanning lines made the
        // message (and the command line's error) several lines long.
        let e = row_error("A,A,\"1\n2\",0.2,0.1,0.01,1", TAIL);
        assert_eq!(
            e,
            "syms.csv:2: column 'price': '1\\n2' is not a decimal number"
        );
        let long = "9".repeat(40) + "x";
        let e = row_error("A,A,1.00,0.2,0.1,0.01,1", &format!("Energy,{long},1.0,1"));
        assert_eq!(
            e,
            format!(
                "syms.csv:2: column 'adv': '{}' is not a whole number of shares",
                &long[..32]
            )
        );
        let e = row_error("A,A,1.00,0.2,0.1,0.01,1", "Energy,1000,1.0,\"\u{7}\"");
        assert_eq!(
            e,
            "syms.csv:2: column 'tier': tier must be 1 or 2, got '\\u{7}'"
        );
    }

    #[test]
    fn missing_value_and_short_row_are_refused() {
        assert!(row_error("A,A,1.00,,0.1,0.01,1", TAIL)
            .contains(":2: column 'volatility': value is missing"));
        assert!(error_of("A,A,1.00\n").contains("syms.csv:2:"));
        assert_eq!(
            row_error("A,A,1.00,0.2,0.1,0.01,1", ",1000,1.0,1"),
            "syms.csv:2: column 'sector': value is missing"
        );
    }

    #[test]
    fn bad_sector_names_line_and_column() {
        let head = "A,A,1.00,0.2,0.1,0.01,1";
        let cases = [
            (
                "Health Care",
                "sector may contain only ASCII letters, digits, '-' and '_'",
            ),
            (
                "Énergie",
                "sector may contain only ASCII letters, digits, '-' and '_'",
            ),
            (
                "Tech/Media",
                "sector may contain only ASCII letters, digits, '-' and '_'",
            ),
            (
                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefg",
                "sector is longer than 32 characters",
            ),
        ];
        for (sector, message) in cases {
            assert_eq!(
                row_error(head, &format!("{sector},1000,1.0,1")),
                format!("syms.csv:2: column 'sector': {message}"),
                "{sector}"
            );
        }
        assert_eq!(Sector::from_str(""), Err(SectorError::Empty));
        assert!(Sector::from_str("Real_Estate-2").is_ok());
        assert!(Sector::from_str(&"A".repeat(MAX_SECTOR_LEN)).is_ok());
        assert!(!Sector::from_str("index").unwrap().is_index());
    }

    #[test]
    fn bad_adv_names_line_and_column() {
        let head = "A,A,1.00,0.2,0.1,0.01,1";
        let cases = [
            ("0", "adv must be positive, got 0"),
            ("1.5", "'1.5' is not a whole number of shares"),
            ("-5", "'-5' is not a whole number of shares"),
            ("1e6", "'1e6' is not a whole number of shares"),
            ("lots", "'lots' is not a whole number of shares"),
        ];
        for (adv, message) in cases {
            assert_eq!(
                row_error(head, &format!("Energy,{adv},1.0,1")),
                format!("syms.csv:2: column 'adv': {message}"),
                "{adv}"
            );
        }
    }

    #[test]
    fn bad_spread_names_line_and_column() {
        let head = "A,A,1.00,0.2,0.1,0.01,1";
        let cases = [
            ("0", "spread must be above 0 and at most 10000 bp, got 0"),
            (
                "-1.5",
                "spread must be above 0 and at most 10000 bp, got -1.5",
            ),
            (
                "10000.1",
                "spread must be above 0 and at most 10000 bp, got 10000.1",
            ),
            ("NaN", "'NaN' is not a number"),
            ("inf", "'inf' is not a number"),
            ("wide", "'wide' is not a number"),
        ];
        for (spread, message) in cases {
            assert_eq!(
                row_error(head, &format!("Energy,1000,{spread},1")),
                format!("syms.csv:2: column 'spread_bp': {message}"),
                "{spread}"
            );
        }
        assert!(parse_str(&format!("{head},Energy,1000,10000,1\n")).is_ok());
    }

    #[test]
    fn bad_tier_names_line_and_column() {
        let head = "A,A,1.00,0.2,0.1,0.01,1";
        for tier in ["3", "0", "1.0", "Tier1"] {
            assert_eq!(
                row_error(head, &format!("Energy,1000,1.0,{tier}")),
                format!("syms.csv:2: column 'tier': tier must be 1 or 2, got '{tier}'"),
            );
        }
    }

    #[test]
    fn bad_symbol_and_empty_file_are_refused() {
        assert!(row_error("A$B,A,1.00,0.2,0.1,0.01,1", TAIL).contains("column 'symbol'"));
        assert_eq!(error_of(""), "syms.csv: no symbols in file");
    }

    #[test]
    fn built_in_table_matches_the_shipped_file() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/symbols.csv");
        assert_eq!(built_in().unwrap(), load(&path).unwrap());
    }

    #[test]
    fn shipped_symbol_file_is_valid() {
        let specs = shipped();
        assert!(specs.len() >= 100, "only {} symbols", specs.len());
    }

    #[test]
    fn shipped_spreads_are_at_least_one_tick_and_sectors_are_valid() {
        for spec in shipped() {
            let tick_bp = (spec.tick_size / spec.reference_price).to_f64().unwrap() * 1e4;
            assert!(
                spec.spread_bp >= tick_bp - 1e-9,
                "{}: spread {} bp is below one tick ({tick_bp:.2} bp)",
                spec.symbol,
                spec.spread_bp
            );
            let sector = spec.sector.as_str();
            assert_eq!(Sector::from_str(sector).as_ref(), Ok(&spec.sector));
            assert!(
                sector
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_uppercase()),
                "{}: sector {sector} is not written like the others",
                spec.symbol
            );
        }
    }

    #[test]
    fn shipped_index_funds_have_no_sector() {
        let specs = shipped();
        let index: Vec<&str> = specs
            .iter()
            .filter(|s| s.sector.is_index())
            .map(|s| s.symbol.as_str())
            .collect();
        assert_eq!(
            index,
            ["SPY", "QQQ", "IWM", "DIA", "VOO", "VTI", "EFA", "EEM"]
        );
    }
}
