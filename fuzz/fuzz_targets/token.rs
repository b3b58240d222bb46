//! Tokens: whatever a request carries in `Authorization`, `?token=` and the cookie, finding
//! and verifying its token never panics and refuses with a one-line reason; a token this
//! server mints verifies to what it was minted with.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tickcast::auth::{find_token, mint, AuthError, SymbolGrant, TokenSources, Verifier};

const SECRET: &[u8] = b"fuzzing-secret-0123456789";
const NOW: u64 = 1_700_000_000;

fuzz_target!(|data: &[u8]| {
    let verifier = Verifier::hs256(SECRET).expect("a long enough secret");
    let one_line = |e: &AuthError| {
        let text = e.to_string();
        assert!(!text.contains('\n'), "{text:?}");
    };
    // The input split into the three places a token may come from.
    let mut parts = data.splitn(3, |&b| b == 0xff);
    let authorization = parts.next();
    let query = parts.next().map(String::from_utf8_lossy);
    let cookie = parts.next();
    let sources = TokenSources {
        authorization,
        query: query.as_deref(),
        cookie,
    };
    match find_token(&sources) {
        Ok(token) => match verifier.verify(token, NOW) {
            Ok(grant) => assert!(grant.exp > NOW),
            Err(e) => one_line(&e),
        },
        Err(e) => one_line(&e),
    }
    // The whole input as a token.
    if let Err(e) = verifier.verify(&String::from_utf8_lossy(data), NOW) {
        one_line(&e);
    }
    // A token minted with symbols from the input verifies, or names a symbol that is not one.
    // (The first 512 bytes: escaped and encoded, the whole input could pass MAX_TOKEN_LEN.)
    let symbols: Vec<String> = String::from_utf8_lossy(&data[..data.len().min(512)])
        .split(',')
        .take(8)
        .map(str::to_owned)
        .collect();
    let token = mint(SECRET, &symbols, NOW, NOW + 60).expect("a long enough secret");
    match verifier.verify(&token, NOW) {
        Ok(grant) => {
            assert_eq!(grant.exp, NOW + 60);
            if let SymbolGrant::Only(set) = grant.symbols {
                assert!(set.len() <= symbols.len());
            }
        }
        Err(AuthError::Malformed(why)) => assert!(why.contains("symbols claim item"), "{why}"),
        Err(e) => panic!("a token minted here was refused: {e}"),
    }
});
