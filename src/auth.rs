//! Token auth: which JWTs open the data routes, and what they allow.
//!
//! A token arrives in one of three places, taken from the request head by whichever path serves
//! the request (hyper and warp, or the direct HTTP/1.1 stream path): `Authorization: Bearer`,
//! the `token` query parameter (an `EventSource` cannot set headers) or the `tickcast_token`
//! cookie. [`find_token`] picks it, [`Verifier::verify`] checks it; both are pure functions of
//! their inputs (the time is a parameter), so tests and fuzzers can call them directly.
//!
//! Claims: `exp` (required, Unix seconds, strict: a stream is ended at that moment, so a token
//! must not outlive it by a leeway), `nbf` (optional, honoured with [`NBF_LEEWAY_SECS`] for an
//! issuer whose clock runs ahead) and `symbols` (required, a list of symbols or `["*"]`).

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::market::Symbol;

/// The query parameter that carries a token.
pub const TOKEN_PARAM: &str = "token";

/// The cookie that carries a token.
pub const TOKEN_COOKIE: &str = "tickcast_token";

/// Seconds an `nbf` may lie in the future and the token still be accepted: room for an issuer
/// whose clock runs ahead of ours, and for a token used the moment it is minted.
pub const NBF_LEEWAY_SECS: u64 = 30;

/// Longest token looked at, in bytes. A JWT with a short list of symbols is a few hundred
/// bytes; a list of every symbol of a large table fits too. Longer input is refused before any
/// decoding, so a hostile client cannot make the server decode megabytes.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// The `symbols` entry that grants every symbol.
pub const ALL_SYMBOLS: &str = "*";

/// Why a request's token was refused (all become 401 with `WWW-Authenticate: Bearer`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("a token is required: send Authorization: Bearer <token>, ?token=<token> or a tickcast_token cookie")]
    Missing,
    #[error("malformed token: {0}")]
    Malformed(String),
    #[error("the token's signature does not verify with this server's key")]
    BadSignature,
    #[error("the token is signed with {0}; this server accepts {1}")]
    WrongAlgorithm(String, String),
    #[error("the token expired at {0} (Unix seconds)")]
    Expired(u64),
    #[error("the token is not valid before {0} (Unix seconds)")]
    NotYetValid(u64),
}

/// A key that cannot verify tokens.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("--jwt-secret must be at least {MIN_SECRET_LEN} bytes")]
    ShortSecret,
    #[error("--jwt-public-key is neither an RSA nor an EC public key in PEM")]
    NotAPublicKey,
}

/// Shortest HS256 secret accepted: 128 bits, if it is random.
pub const MIN_SECRET_LEN: usize = 16;

/// What a valid token allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub symbols: SymbolGrant,
    /// Expiry, Unix seconds: the stream opened with this token ends then.
    pub exp: u64,
}

/// The symbols a token allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SymbolGrant {
    /// `"*"`: every symbol.
    All,
    /// These symbols (upper-case, as the feed names them).
    Only(HashSet<String>),
}

impl SymbolGrant {
    /// Whether `symbol` (upper-case) may be subscribed.
    pub fn allows(&self, symbol: &str) -> bool {
        match self {
            SymbolGrant::All => true,
            SymbolGrant::Only(set) => set.contains(symbol),
        }
    }
}

/// The claims tickcast reads; others are ignored.
#[derive(Debug, Deserialize)]
struct Claims {
    exp: Option<u64>,
    nbf: Option<u64>,
    symbols: Option<Vec<String>>,
}

/// The claims [`mint`] writes.
#[derive(Debug, Serialize)]
struct MintedClaims<'a> {
    exp: u64,
    iat: u64,
    symbols: &'a [String],
}

/// Checks tokens against one key.
#[derive(Clone)]
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("algorithms", &self.validation.algorithms)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// HS256 with a shared secret.
    ///
    /// # Errors
    /// A secret shorter than [`MIN_SECRET_LEN`].
    pub fn hs256(secret: &[u8]) -> Result<Verifier, KeyError> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(KeyError::ShortSecret);
        }
        Ok(Verifier::new(
            DecodingKey::from_secret(secret),
            &[Algorithm::HS256],
        ))
    }

    /// RS256 for an RSA public key, ES256 for an EC (P-256) public key, in PEM: the algorithm
    /// comes from the key, never from the token, so a token cannot pick a weaker one.
    ///
    /// # Errors
    /// PEM that holds neither kind of public key.
    pub fn from_public_pem(pem: &[u8]) -> Result<Verifier, KeyError> {
        if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
            return Ok(Verifier::new(key, &[Algorithm::RS256]));
        }
        if let Ok(key) = DecodingKey::from_ec_pem(pem) {
            return Ok(Verifier::new(key, &[Algorithm::ES256]));
        }
        Err(KeyError::NotAPublicKey)
    }

    fn new(key: DecodingKey, algorithms: &[Algorithm]) -> Verifier {
        let mut validation = Validation::new(algorithms[0]);
        validation.algorithms = algorithms.to_vec();
        // Times are checked in `verify` against the `now` it is given, so the check is a pure
        // function; the library is left to the signature and the decoding.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims = HashSet::new();
        Verifier { key, validation }
    }

    /// Verifies `token` at `now` (Unix seconds): signature, algorithm, `exp`, `nbf` and the
    /// shape of `symbols`. Never panics, whatever the input.
    ///
    /// # Errors
    /// Why the token is refused.
    pub fn verify(&self, token: &str, now: u64) -> Result<Grant, AuthError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(AuthError::Malformed(format!(
                "longer than {MAX_TOKEN_LEN} bytes"
            )));
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(
            |e| match e.kind() {
                ErrorKind::InvalidSignature => AuthError::BadSignature,
                ErrorKind::InvalidAlgorithm => {
                    let given = jsonwebtoken::decode_header(token)
                        .map(|h| format!("{:?}", h.alg))
                        .unwrap_or_else(|_| "another algorithm".into());
                    AuthError::WrongAlgorithm(given, format!("{:?}", self.validation.algorithms[0]))
                }
                _ => AuthError::Malformed(e.to_string()),
            },
        )?;
        let claims = data.claims;
        let exp = claims
            .exp
            .ok_or_else(|| AuthError::Malformed("the exp claim is required".into()))?;
        if now >= exp {
            return Err(AuthError::Expired(exp));
        }
        if let Some(nbf) = claims.nbf {
            if now.saturating_add(NBF_LEEWAY_SECS) < nbf {
                return Err(AuthError::NotYetValid(nbf));
            }
        }
        let list = claims.symbols.ok_or_else(|| {
            AuthError::Malformed(
                "the symbols claim is required (a list, or [\"*\"] for all)".into(),
            )
        })?;
        Ok(Grant {
            symbols: symbol_grant(&list)?,
            exp,
        })
    }
}

fn symbol_grant(list: &[String]) -> Result<SymbolGrant, AuthError> {
    if list.iter().any(|s| s == ALL_SYMBOLS) {
        return Ok(SymbolGrant::All);
    }
    let mut set = HashSet::with_capacity(list.len());
    for item in list {
        let symbol = Symbol::from_str(item.trim()).map_err(|e| {
            AuthError::Malformed(format!(
                "symbols claim item {:?} is not a symbol: {e}",
                item.chars().take(32).collect::<String>()
            ))
        })?;
        set.insert(symbol.to_string());
    }
    Ok(SymbolGrant::Only(set))
}

/// Where a request may carry its token, as found in its head.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokenSources<'a> {
    /// The `Authorization` header's value.
    pub authorization: Option<&'a [u8]>,
    /// The decoded `token` query parameter.
    pub query: Option<&'a str>,
    /// The `Cookie` header's value.
    pub cookie: Option<&'a [u8]>,
}

/// The request's token: from `Authorization: Bearer` first, then `?token=`, then the cookie.
/// An `Authorization` header of another scheme (a proxy's `Basic`) is passed over when the
/// query or the cookie has a token.
///
/// # Errors
/// [`AuthError::Missing`] when there is none; [`AuthError::Malformed`] for an `Authorization`
/// header that is not `Bearer <token>` and no other token, or a token that is not visible ASCII.
pub fn find_token<'a>(sources: &TokenSources<'a>) -> Result<&'a str, AuthError> {
    let from_header = sources.authorization.map(bearer);
    let token = match from_header {
        Some(Some(token)) => token,
        _ => match sources
            .query
            .map(str::as_bytes)
            .or_else(|| sources.cookie.and_then(cookie_value))
        {
            Some(token) => token,
            None if from_header.is_some() => {
                return Err(AuthError::Malformed(
                    "the Authorization header must be Bearer <token>".into(),
                ))
            }
            None => return Err(AuthError::Missing),
        },
    };
    if token.is_empty() {
        return Err(AuthError::Missing);
    }
    if !token.iter().all(u8::is_ascii_graphic) {
        return Err(AuthError::Malformed(
            "a token is visible ASCII characters".into(),
        ));
    }
    Ok(std::str::from_utf8(token).expect("visible ASCII is UTF-8"))
}

/// The token of `Bearer <token>` (scheme case-insensitive, RFC 9110 section 11.1).
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| rest.trim_ascii())
}

/// The value of the [`TOKEN_COOKIE`] cookie in a `Cookie` header (`a=1; tickcast_token=x`),
/// without surrounding double quotes (RFC 6265 section 4.2.1).
fn cookie_value(header: &[u8]) -> Option<&[u8]> {
    header.split(|&b| b == b';').find_map(|pair| {
        let pair = pair.trim_ascii();
        let eq = pair.iter().position(|&b| b == b'=')?;
        let (name, value) = (&pair[..eq], &pair[eq + 1..]);
        if name.trim_ascii() != TOKEN_COOKIE.as_bytes() {
            return None;
        }
        let value = value.trim_ascii();
        Some(
            value
                .strip_prefix(b"\"")
                .and_then(|v| v.strip_suffix(b"\""))
                .unwrap_or(value),
        )
    })
}

/// An HS256 token for `symbols` (`["*"]` for all) expiring at `exp`, issued at `now` (Unix
/// seconds): what `tickcast token` prints.
///
/// # Errors
/// A secret shorter than [`MIN_SECRET_LEN`].
pub fn mint(secret: &[u8], symbols: &[String], now: u64, exp: u64) -> Result<String, KeyError> {
    if secret.len() < MIN_SECRET_LEN {
        return Err(KeyError::ShortSecret);
    }
    let claims = MintedClaims {
        exp,
        iat: now,
        symbols,
    };
    Ok(jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .expect("HS256 encoding of plain claims cannot fail"))
}

/// Seconds since the Unix epoch, by the wall clock (tokens carry wall-clock times).
pub fn unix_now() -> u64 {
    crate::publisher::epoch_ms() / 1000
}

/// Compares two secrets in time independent of where they differ.
pub fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn arbitrary_input_never_panics(
            bytes in proptest::collection::vec(any::<u8>(), 0..400),
            text in ".{0,300}",
        ) {
            let v = Verifier::hs256(SECRET).unwrap();
            let _ = v.verify(&text, 1000);
            let sources = TokenSources {
                authorization: Some(&bytes),
                query: None,
                cookie: Some(&bytes),
            };
            if let Ok(token) = find_token(&sources) {
                let _ = v.verify(token, 1000);
            }
            // Base64url parts that decode to arbitrary bytes.
            let part = |b: &[u8]| {
                use base64::Engine as _;
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
            };
            let forged = format!("{}.{}.{}", part(&bytes), part(text.as_bytes()), part(&bytes));
            let _ = v.verify(&forged, 1000);
        }
    }

    const SECRET: &[u8] = b"0123456789abcdef-test";

    fn token(claims: serde_json::Value) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap()
    }

    #[test]
    fn a_minted_token_verifies_until_it_expires() {
        let v = Verifier::hs256(SECRET).unwrap();
        let t = mint(SECRET, &["AAPL".into(), "msft".into()], 1000, 2000).unwrap();
        let grant = v.verify(&t, 1999).unwrap();
        assert_eq!(grant.exp, 2000);
        assert!(grant.symbols.allows("MSFT") && !grant.symbols.allows("NVDA"));
        assert_eq!(v.verify(&t, 2000), Err(AuthError::Expired(2000)));
        let all = mint(SECRET, &["*".into()], 1000, 2000).unwrap();
        assert_eq!(v.verify(&all, 1500).unwrap().symbols, SymbolGrant::All);
    }

    #[test]
    fn each_refusal_says_why() {
        let v = Verifier::hs256(SECRET).unwrap();
        let other = Verifier::hs256(b"another-secret-of-16").unwrap();
        let t = token(serde_json::json!({"exp": 2000, "symbols": ["*"]}));
        assert_eq!(other.verify(&t, 1000), Err(AuthError::BadSignature));
        assert!(matches!(
            v.verify("abc", 1000),
            Err(AuthError::Malformed(_))
        ));
        let no_exp = token(serde_json::json!({"symbols": ["*"]}));
        assert!(
            matches!(v.verify(&no_exp, 1000), Err(AuthError::Malformed(m)) if m.contains("exp"))
        );
        let no_symbols = token(serde_json::json!({"exp": 2000}));
        assert!(
            matches!(v.verify(&no_symbols, 1000), Err(AuthError::Malformed(m)) if m.contains("symbols"))
        );
        let bad_symbol = token(serde_json::json!({"exp": 2000, "symbols": ["A$"]}));
        assert!(matches!(
            v.verify(&bad_symbol, 1000),
            Err(AuthError::Malformed(_))
        ));
        let nbf = token(serde_json::json!({"exp": 9000, "nbf": 2000, "symbols": ["*"]}));
        assert_eq!(v.verify(&nbf, 1000), Err(AuthError::NotYetValid(2000)));
        assert!(v.verify(&nbf, 2000 - NBF_LEEWAY_SECS).is_ok());
        let huge = "a".repeat(MAX_TOKEN_LEN + 1);
        assert!(matches!(
            v.verify(&huge, 1000),
            Err(AuthError::Malformed(_))
        ));
        assert_eq!(
            Verifier::hs256(b"short").unwrap_err(),
            KeyError::ShortSecret
        );
        assert_eq!(
            Verifier::from_public_pem(b"-----BEGIN NOTHING-----").unwrap_err(),
            KeyError::NotAPublicKey
        );
    }

    #[test]
    fn tokens_are_found_in_header_then_query_then_cookie() {
        let all = TokenSources {
            authorization: Some(b"Bearer h.h.h"),
            query: Some("q.q.q"),
            cookie: Some(b"tickcast_token=c.c.c"),
        };
        assert_eq!(find_token(&all), Ok("h.h.h"));
        let lower = TokenSources {
            authorization: Some(b"bearer  h.h.h "),
            ..Default::default()
        };
        assert_eq!(find_token(&lower), Ok("h.h.h"));
        let query = TokenSources {
            authorization: None,
            ..all
        };
        assert_eq!(find_token(&query), Ok("q.q.q"));
        for (cookie, found) in [
            (&b"a=1; tickcast_token=c.c.c; b=2"[..], Ok("c.c.c")),
            (b"tickcast_token=\"c.c.c\"", Ok("c.c.c")),
            (b"other_token=x", Err(AuthError::Missing)),
            (b"tickcast_token=", Err(AuthError::Missing)),
            (b";;=;tickcast_token", Err(AuthError::Missing)),
        ] {
            let s = TokenSources {
                cookie: Some(cookie),
                ..Default::default()
            };
            assert_eq!(find_token(&s), found, "{}", String::from_utf8_lossy(cookie));
        }
        let basic = TokenSources {
            authorization: Some(b"Basic dXNlcjpwYXNz"),
            ..Default::default()
        };
        assert!(matches!(find_token(&basic), Err(AuthError::Malformed(_))));
        let basic_and_query = TokenSources {
            query: Some("q.q.q"),
            ..basic
        };
        assert_eq!(find_token(&basic_and_query), Ok("q.q.q"));
        let binary = TokenSources {
            authorization: Some(b"Bearer a\xffb"),
            ..Default::default()
        };
        assert!(matches!(find_token(&binary), Err(AuthError::Malformed(_))));
        assert_eq!(
            find_token(&TokenSources::default()),
            Err(AuthError::Missing)
        );
    }
}
