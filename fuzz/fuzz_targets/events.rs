//! `?events=` lists: any text parses to a set of kinds that always holds session events and
//! renders back to itself, or to a short error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tickcast::feed::{Kinds, KindsError};
use tickcast::http::params::{kinds, query_pairs};
use tickcast::market::Kind;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match text.parse::<Kinds>() {
        Ok(parsed) => {
            assert!(parsed.contains(Kind::Session), "session events always come");
            // Rendered without `session` (which a client may not ask for), it parses back.
            let rendered = parsed.to_string();
            let selectable: Vec<&str> = rendered.split(',').filter(|k| *k != "session").collect();
            assert_eq!(
                selectable.join(",").parse::<Kinds>(),
                Ok(parsed),
                "{rendered}"
            );
        }
        Err(KindsError::Empty) => {
            assert!(text.split(',').all(|k| k.trim().is_empty()), "{text:?}");
        }
        Err(KindsError::Unknown(name)) => {
            assert!(!name.is_empty() && name.chars().count() <= 32, "{name:?}");
        }
    }
    // The same text as a query string, where `events` may repeat.
    let pairs = query_pairs(&text);
    if let Ok(parsed) = kinds(&pairs) {
        assert!(parsed.contains(Kind::Session));
    }
});
