//! Parsing of request inputs that users type by hand: symbol lists, event kinds and
//! `Last-Event-ID`.
//!
//! These parsers see arbitrary bytes from the network, so they never panic and never fail on
//! encoding: invalid UTF-8 is replaced, and what does not parse becomes a clear 400 or, for
//! the resume id, is ignored (a stream then starts with a snapshot).

use std::collections::HashSet;
use std::str::FromStr;

use super::rejection::ApiError;
use crate::feed::{Feed, Kinds, Subscription, Symbols};
use crate::market::Symbol;

/// The decoded `name=value` pairs of a raw query string (`+` and `%XX` decoded, lossy UTF-8).
pub fn query_pairs(raw: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(raw.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The values of parameter `name` in a query, if it is present (repeats are joined by commas).
pub fn list_param(pairs: &[(String, String)], name: &str) -> Option<String> {
    let values: Vec<&str> = pairs
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .collect();
    (!values.is_empty()).then(|| values.join(","))
}

/// The `symbols` values of a query, if the parameter is present (repeats are joined).
pub fn symbols_param(pairs: &[(String, String)]) -> Option<String> {
    list_param(pairs, "symbols")
}

/// The event kinds a query asks for: every kind without `events=`, else the listed ones.
///
/// # Errors
/// 400 for an empty list or an unknown kind.
pub fn kinds(pairs: &[(String, String)]) -> Result<Kinds, ApiError> {
    match list_param(pairs, "events") {
        None => Ok(Kinds::ALL),
        Some(list) => list
            .parse()
            .map_err(|e: crate::feed::KindsError| ApiError::BadRequest(e.to_string())),
    }
}

/// The subscription a query asks for: every symbol without `symbols=`, else the listed ones;
/// every kind of event without `events=`, else the listed ones.
///
/// # Errors
/// As [`resolve_symbols`] and [`kinds`].
pub fn subscription(
    feed: &Feed,
    pairs: &[(String, String)],
    max: usize,
) -> Result<Subscription, ApiError> {
    let symbols = match symbols_param(pairs) {
        None => Symbols::All,
        Some(list) => Symbols::some(resolve_symbols(feed, &list, max)?),
    };
    Ok(Subscription {
        symbols,
        kinds: kinds(pairs)?,
    })
}

/// Resolves a comma-separated symbol list to symbol indexes, in the order given.
///
/// Items are trimmed and case-insensitive; duplicates are ignored. Linear in the list's length,
/// and it stops at the first symbol beyond `max`, so a huge list costs little.
///
/// # Errors
/// 400 for an empty list, an empty item or a malformed symbol; 400 for more than `max`
/// distinct symbols; 404 listing every unknown symbol (upper-cased) if any is unknown.
pub fn resolve_symbols(feed: &Feed, list: &str, max: usize) -> Result<Vec<u16>, ApiError> {
    if list.trim().is_empty() {
        return Err(ApiError::BadRequest(
            "symbols must list at least one symbol, e.g. symbols=AAPL,MSFT".into(),
        ));
    }
    let mut symbols: Vec<Symbol> = Vec::new();
    let mut seen: HashSet<Symbol> = HashSet::new();
    for (position, item) in list.split(',').enumerate() {
        let item = item.trim();
        if item.is_empty() {
            return Err(ApiError::BadRequest(format!(
                "symbols item {} is empty; separate symbols with single commas",
                position + 1
            )));
        }
        let symbol = Symbol::from_str(item).map_err(|e| {
            ApiError::BadRequest(format!(
                "symbols item {} ({:?}) is malformed: {e}",
                position + 1,
                truncate(item)
            ))
        })?;
        if seen.insert(symbol.clone()) {
            symbols.push(symbol);
            if symbols.len() > max {
                return Err(ApiError::TooManySymbols { max });
            }
        }
    }
    resolve(feed, &symbols)
}

/// Resolves one symbol given in a path segment (percent-encoded), with the same rules.
///
/// # Errors
/// As [`resolve_symbols`].
pub fn resolve_path_symbol(feed: &Feed, segment: &str) -> Result<u16, ApiError> {
    let decoded = percent_encoding::percent_decode_str(segment).decode_utf8_lossy();
    let one = resolve_symbols(feed, &decoded, 1);
    match one {
        Err(ApiError::TooManySymbols { .. }) => Err(ApiError::BadRequest(
            "this path takes one symbol; use /quotes?symbols=A,B for several".into(),
        )),
        other => other.map(|v| v[0]),
    }
}

fn resolve(feed: &Feed, symbols: &[Symbol]) -> Result<Vec<u16>, ApiError> {
    let mut unknown = Vec::new();
    let mut indexes = Vec::with_capacity(symbols.len());
    for symbol in symbols {
        match feed.index_of(symbol) {
            Some(i) => indexes.push(i),
            None => unknown.push(symbol.to_string()),
        }
    }
    if unknown.is_empty() {
        Ok(indexes)
    } else {
        Err(ApiError::UnknownSymbols(unknown))
    }
}

/// The id a client wants to resume after: the `Last-Event-ID` header if present, else the
/// `lastEventId` query parameter. Anything that is not a plain decimal `u64` is ignored.
pub fn last_event_id(header: Option<&[u8]>, pairs: &[(String, String)]) -> Option<u64> {
    if let Some(value) = header {
        return parse_id(&String::from_utf8_lossy(value));
    }
    pairs
        .iter()
        .find(|(k, _)| k == "lastEventId")
        .and_then(|(_, v)| parse_id(v))
}

fn parse_id(text: &str) -> Option<u64> {
    let text = text.trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// At most 32 characters of user input, for error messages.
pub(super) fn truncate(s: &str) -> String {
    s.chars().take(32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::market::symbols;
    use proptest::prelude::*;
    use std::path::Path;

    fn feed() -> Feed {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/symbols.csv");
        Feed::new(symbols::load(&path).unwrap(), 10)
    }

    #[test]
    fn lists_are_trimmed_case_insensitive_and_deduplicated() {
        let f = feed();
        let got = resolve_symbols(&f, " aapl, MSFT ,Aapl", 10).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(f.specs()[got[0] as usize].symbol.as_str(), "AAPL");
    }

    #[test]
    fn bad_lists_are_400_or_404() {
        let f = feed();
        for bad in ["", ",", " ", "AAPL,,MSFT", "A B", "AAPL,"] {
            assert!(
                matches!(resolve_symbols(&f, bad, 10), Err(ApiError::BadRequest(_))),
                "{bad:?}"
            );
        }
        assert_eq!(
            resolve_symbols(&f, "AAPL,zzzz,qqqq", 10),
            Err(ApiError::UnknownSymbols(vec!["ZZZZ".into(), "QQQQ".into()]))
        );
        assert_eq!(
            resolve_symbols(&f, "AAPL,MSFT", 1),
            Err(ApiError::TooManySymbols { max: 1 })
        );
    }

    #[test]
    fn header_wins_over_query_and_junk_is_ignored() {
        let pairs = query_pairs("lastEventId=5");
        assert_eq!(last_event_id(None, &pairs), Some(5));
        assert_eq!(last_event_id(Some(b"9"), &pairs), Some(9));
        assert_eq!(last_event_id(Some(b" 9 "), &pairs), Some(9));
        assert_eq!(last_event_id(Some(b"-1"), &pairs), None);
        assert_eq!(last_event_id(Some(b"\xff\xfe"), &pairs), None);
        let huge = query_pairs("lastEventId=99999999999999999999999");
        assert_eq!(last_event_id(None, &huge), None);
    }

    proptest! {
        #[test]
        fn arbitrary_queries_never_panic(raw in ".{0,200}", bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            let f = feed();
            for text in [raw.clone(), String::from_utf8_lossy(&bytes).into_owned()] {
                let pairs = query_pairs(&text);
                if let Some(list) = symbols_param(&pairs) {
                    let _ = resolve_symbols(&f, &list, 5);
                }
                let _ = kinds(&pairs);
                let _ = resolve_path_symbol(&f, &text);
                let _ = last_event_id(None, &pairs);
            }
            let _ = last_event_id(Some(&bytes), &[]);
        }
    }
}
