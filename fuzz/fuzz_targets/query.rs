//! The query-string parsers of the stream and REST routes (`src/http/params.rs`) and the ticker
//! parser they use: any query resolves to a bounded, duplicate-free list of known symbols or
//! to an error, never a panic.
#![no_main]

use std::collections::HashSet;
use std::str::FromStr;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use tickcast::feed::Feed;
use tickcast::http::params::{
    kinds, last_event_id, query_pairs, resolve_path_symbol, resolve_symbols, symbols_param,
};
use tickcast::http::rejection::ApiError;
use tickcast::market::{symbols, Symbol, MAX_SYMBOL_LEN};

/// The built-in table: 120 symbols, so lists mix known, unknown and malformed ones.
static FEED: LazyLock<Feed> =
    LazyLock::new(|| Feed::new(symbols::built_in().expect("the built-in table is valid"), 1));

fuzz_target!(|data: &[u8]| {
    // The first byte picks `--max-symbols`, the rest is the query string.
    let Some((&max, rest)) = data.split_first() else {
        return;
    };
    let max = usize::from(max % 8) + 1;
    let raw = String::from_utf8_lossy(rest);
    let pairs = query_pairs(&raw);
    if let Some(list) = symbols_param(&pairs) {
        check_list(&list, max);
    }
    check_list(&raw, max);
    let _ = kinds(&pairs);
    match resolve_path_symbol(&FEED, &raw) {
        Ok(index) => assert!(usize::from(index) < FEED.specs().len()),
        Err(e) => assert!(!matches!(e, ApiError::TooManySymbols { .. }), "{e:?}"),
    }
    if let Some(id) = last_event_id(None, &pairs) {
        assert_eq!(
            last_event_id(Some(id.to_string().as_bytes()), &[]),
            Some(id)
        );
    }
    let _ = last_event_id(Some(rest), &pairs);
    for item in raw.split(',') {
        if let Ok(symbol) = Symbol::from_str(item) {
            let text = symbol.as_str();
            assert!(!text.is_empty() && text.len() <= MAX_SYMBOL_LEN, "{text:?}");
            assert!(text.eq_ignore_ascii_case(item) && text == text.to_ascii_uppercase());
            assert_eq!(
                Symbol::from_str(text).as_ref(),
                Ok(&symbol),
                "parse, render, parse"
            );
        }
    }
});

/// A resolved list is at most `max` distinct known symbols; resolving their names again gives
/// the same list; too many is reported only when the list names more than `max`.
fn check_list(list: &str, max: usize) {
    match resolve_symbols(&FEED, list, max) {
        Ok(indexes) => {
            assert!(!indexes.is_empty() && indexes.len() <= max, "{indexes:?}");
            let distinct: HashSet<u16> = indexes.iter().copied().collect();
            assert_eq!(distinct.len(), indexes.len(), "duplicates in {indexes:?}");
            let names: Vec<&str> = indexes
                .iter()
                .map(|&i| FEED.specs()[usize::from(i)].symbol.as_str())
                .collect();
            let again = resolve_symbols(&FEED, &names.join(","), max);
            assert_eq!(again.as_ref(), Ok(&indexes));
        }
        Err(ApiError::TooManySymbols { max: reported }) => {
            assert_eq!(reported, max);
            let distinct: HashSet<String> = list
                .split(',')
                .map(|s| s.trim().to_ascii_uppercase())
                .collect();
            assert!(distinct.len() > max, "{list:?}");
        }
        Err(_) => {}
    }
}
