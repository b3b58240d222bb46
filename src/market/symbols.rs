//! Loading and validating the symbol table (`data/symbols.csv`).
//!
//! The file is read once at start-up. Every problem is reported with the file, the line and the
//! column, because a person fixing a CSV by hand needs exactly that and nothing else.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde::Serialize;

use super::Symbol;

/// The columns `data/symbols.csv` must have, in any order.
pub const COLUMNS: [&str; 7] = [
    "symbol",
    "name",
    "price",
    "volatility",
    "drift",
    "tick_size",
    "beta",
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
}

/// Why a symbol file was refused. The message is one line naming file, line and column.
#[derive(Debug, thiserror::Error)]
pub enum SymbolsError {
    #[error("{path}: cannot read file: {source}")]
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
        if (reference_price / tick_size)
            .to_u64()
            .is_none_or(|t| t > 1 << 50)
        {
            return Err(bad(2, "price is too large for its tick size".into()));
        }
        let beta = parse_f64(field(6)?).map_err(|m| bad(6, m))?;
        if !(-5.0..=5.0).contains(&beta) {
            return Err(bad(6, format!("beta must be in -5..=5, got {beta}")));
        }
        specs.push(SymbolSpec {
            symbol,
            name,
            reference_price,
            volatility,
            drift,
            tick_size: tick_size.normalize(),
            beta,
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
    Decimal::from_str(value).map_err(|_| format!("'{value}' is not a decimal number"))
}

fn parse_f64(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(format!("'{value}' is not a number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "symbol,name,price,volatility,drift,tick_size,beta\n";

    fn parse_str(body: &str) -> Result<Vec<SymbolSpec>, SymbolsError> {
        parse(Path::new("syms.csv"), &format!("{HEADER}{body}"))
    }

    fn error_of(body: &str) -> String {
        parse_str(body).unwrap_err().to_string()
    }

    #[test]
    fn parses_a_valid_row() {
        let specs = parse_str("aapl,Apple Inc,187.23,0.25,0.08,0.01,1.2\n").unwrap();
        assert_eq!(specs.len(), 1);
        assert_eq!(specs[0].symbol.as_str(), "AAPL");
        assert_eq!(specs[0].reference_price.to_string(), "187.23");
        assert_eq!(specs[0].tick_size.to_string(), "0.01");
    }

    #[test]
    fn missing_column_is_named() {
        let err = parse(Path::new("x.csv"), "symbol,name,price\nA,B,1\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "x.csv: header is missing column 'volatility'"
        );
    }

    #[test]
    fn non_numeric_value_names_line_and_column() {
        let err =
            error_of("AAPL,Apple,187.23,0.25,0.08,0.01,1.2\nMSFT,Microsoft,abc,0.2,0.1,0.01,1\n");
        assert_eq!(
            err,
            "syms.csv:3: column 'price': 'abc' is not a decimal number"
        );
    }

    #[test]
    fn duplicate_symbol_is_refused() {
        let err = error_of("AAPL,A,1.00,0.2,0.1,0.01,1\naapl,B,2.00,0.2,0.1,0.01,1\n");
        assert_eq!(err, "syms.csv:3: column 'symbol': duplicate symbol AAPL");
    }

    #[test]
    fn negative_price_and_zero_tick_are_refused() {
        assert!(error_of("A,A,-1.00,0.2,0.1,0.01,1\n")
            .contains("column 'price': price must be positive"));
        assert!(error_of("A,A,1.00,0.2,0.1,0,1\n")
            .contains("column 'tick_size': tick size must be positive"));
    }

    #[test]
    fn missing_value_and_short_row_are_refused() {
        assert!(error_of("A,A,1.00,,0.1,0.01,1\n")
            .contains(":2: column 'volatility': value is missing"));
        assert!(error_of("A,A,1.00\n").contains("syms.csv:2:"));
    }

    #[test]
    fn bad_symbol_and_empty_file_are_refused() {
        assert!(error_of("A$B,A,1.00,0.2,0.1,0.01,1\n").contains("column 'symbol'"));
        assert_eq!(error_of(""), "syms.csv: no symbols in file");
    }

    #[test]
    fn built_in_table_matches_the_shipped_file() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/symbols.csv");
        assert_eq!(built_in().unwrap(), load(&path).unwrap());
    }

    #[test]
    fn shipped_symbol_file_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/symbols.csv");
        let specs = load(&path).unwrap();
        assert!(specs.len() >= 100, "only {} symbols", specs.len());
    }
}
