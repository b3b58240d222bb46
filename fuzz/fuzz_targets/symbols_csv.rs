//! The symbol-file parser (`--symbols`): any text is a valid table that writes back to the same
//! table, or one line of error naming the file.
#![no_main]

use std::collections::HashSet;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use rust_decimal::Decimal;
use tickcast::market::symbols::{parse, SymbolSpec, COLUMNS, MAX_SYMBOLS};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match parse(Path::new("fuzz.csv"), &text) {
        Ok(specs) => {
            assert!(!specs.is_empty() && specs.len() <= MAX_SYMBOLS);
            let distinct: HashSet<_> = specs.iter().map(|s| &s.symbol).collect();
            assert_eq!(distinct.len(), specs.len(), "duplicate symbols");
            for spec in &specs {
                check(spec);
            }
            let written = write(&specs);
            let again = parse(Path::new("again.csv"), &written).expect("a written table parses");
            assert_eq!(again, specs, "{written}");
        }
        Err(e) => {
            let message = e.to_string();
            assert!(message.starts_with("fuzz.csv"), "{message}");
            assert!(!message.contains(['\n', '\r']), "one line: {message:?}");
            assert!(message.len() <= 300, "short: {message:?}");
        }
    }
});

/// The ranges the parser promises (and the simulator relies on).
fn check(spec: &SymbolSpec) {
    let (price, tick) = (spec.reference_price, spec.tick_size);
    assert!(tick > Decimal::ZERO && tick.scale() <= 8, "{tick}");
    assert!(
        price >= tick && (price % tick).is_zero(),
        "{price} off the grid of {tick}"
    );
    assert!((0.0..=5.0).contains(&spec.volatility));
    assert!((-1.0..=1.0).contains(&spec.drift));
    assert!((-5.0..=5.0).contains(&spec.beta));
    assert!(spec.adv > 0);
    assert!(spec.spread_bp > 0.0 && spec.spread_bp <= 10_000.0);
    assert!(!spec.name.is_empty());
}

/// The table as a symbol file, columns in the order of [`COLUMNS`].
fn write(specs: &[SymbolSpec]) -> String {
    let mut out = csv::Writer::from_writer(Vec::new());
    out.write_record(COLUMNS).unwrap();
    for s in specs {
        out.write_record([
            s.symbol.to_string(),
            s.name.clone(),
            s.reference_price.to_string(),
            s.volatility.to_string(),
            s.drift.to_string(),
            s.tick_size.to_string(),
            s.beta.to_string(),
            s.sector.to_string(),
            s.adv.to_string(),
            s.spread_bp.to_string(),
            s.tier.to_string(),
        ])
        .unwrap();
    }
    String::from_utf8(out.into_inner().unwrap()).unwrap()
}
