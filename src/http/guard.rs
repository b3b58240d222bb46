//! Who may use a route: the JWT check of the stream and data routes, the symbols a token
//! allows, and the bearer token of `/healthz` and `/metrics` (`--metrics-token`).
//!
//! [`authorize`] is the one check of a request's token. The warp routes call it through
//! [`token`] (REST) or `quotes::open_stream` (streams); the direct HTTP/1.1 path calls
//! `open_stream` with the token sources it read from the request head, so both paths refuse
//! and allow exactly the same requests.

use warp::http::header::{AUTHORIZATION, COOKIE};
use warp::http::HeaderMap;
use warp::{Filter, Rejection};

use super::params::query_pairs;
use super::rejection::ApiError;
use super::{raw_query, with_app, App};
use crate::auth::{self, find_token, Grant, SymbolGrant, TokenSources, TOKEN_PARAM};
use crate::feed::{Subscription, Symbols};

/// The grant of the request's token, or `None` when the server requires no token.
///
/// `sources.query` is ignored: the `token` parameter is looked up in `pairs`, the request's
/// decoded query.
///
/// # Errors
/// 401 for a missing, malformed, badly signed, expired or not-yet-valid token.
pub fn authorize(
    app: &App,
    sources: TokenSources<'_>,
    pairs: &[(String, String)],
) -> Result<Option<Grant>, ApiError> {
    let Some(verifier) = app.auth.as_deref() else {
        return Ok(None);
    };
    let query = pairs
        .iter()
        .find(|(k, _)| k == TOKEN_PARAM)
        .map(|(_, v)| v.as_str());
    let sources = TokenSources { query, ..sources };
    let token = find_token(&sources).map_err(unauthorized)?;
    verifier
        .verify(token, auth::unix_now())
        .map(Some)
        .map_err(unauthorized)
}

fn unauthorized(e: auth::AuthError) -> ApiError {
    ApiError::Unauthorized(e.to_string())
}

/// The token sources in a request's headers (the first `Authorization` and `Cookie`).
pub fn header_sources(headers: &HeaderMap) -> TokenSources<'_> {
    TokenSources {
        authorization: headers.get(AUTHORIZATION).map(|v| v.as_bytes()),
        query: None,
        cookie: headers.get(COOKIE).map(|v| v.as_bytes()),
    }
}

/// Narrows `sub` to what `grant` allows: a request for every symbol gets every symbol the
/// token allows; a request that names symbols must name only allowed ones.
///
/// # Errors
/// 403 listing the requested symbols the token does not allow, or when it allows none of this
/// server's symbols.
pub fn restrict(app: &App, sub: &mut Subscription, grant: Option<&Grant>) -> Result<(), ApiError> {
    let Some(SymbolGrant::Only(allowed)) = grant.map(|g| &g.symbols) else {
        return Ok(());
    };
    let specs = app.feed.specs();
    match &sub.symbols {
        Symbols::All => {
            let indexes: Vec<u16> = specs
                .iter()
                .enumerate()
                .filter(|(_, s)| allowed.contains(s.symbol.as_str()))
                .map(|(i, _)| i as u16)
                .collect();
            if indexes.is_empty() {
                return Err(ApiError::Forbidden(Vec::new()));
            }
            sub.symbols = Symbols::some(indexes);
        }
        Symbols::Some { list, .. } => check_indexes(app, list, grant)?,
    }
    Ok(())
}

/// Checks that `grant` allows every symbol index in `indexes`.
///
/// # Errors
/// 403 listing the symbols it does not allow, in the order given.
pub fn check_indexes(app: &App, indexes: &[u16], grant: Option<&Grant>) -> Result<(), ApiError> {
    let Some(grant) = grant else { return Ok(()) };
    let specs = app.feed.specs();
    let refused: Vec<String> = indexes
        .iter()
        .filter_map(|&i| specs.get(i as usize))
        .map(|s| s.symbol.as_str())
        .filter(|s| !grant.symbols.allows(s))
        .map(str::to_owned)
        .collect();
    if refused.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Forbidden(refused))
    }
}

/// The grant of a REST request's token (header, `?token=` or cookie); `None` when no token is
/// required.
pub fn token(app: App) -> impl Filter<Extract = (Option<Grant>,), Error = Rejection> + Clone {
    warp::header::headers_cloned()
        .and(raw_query())
        .and(with_app(app))
        .and_then(|headers: HeaderMap, query: String, app: App| async move {
            let pairs = if app.auth.is_some() {
                query_pairs(&query)
            } else {
                Vec::new()
            };
            authorize(&app, header_sources(&headers), &pairs).map_err(warp::reject::custom)
        })
}

/// Passes when `--metrics-token` is unset or the request sends it as a bearer token.
pub fn metrics_token(app: App) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::header::headers_cloned()
        .and(with_app(app))
        .and_then(|headers: HeaderMap, app: App| async move {
            check_metrics_token(&app, &headers).map_err(warp::reject::custom)
        })
        .untuple_one()
}

fn check_metrics_token(app: &App, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(expected) = app.config.metrics_token.as_deref() else {
        return Ok(());
    };
    let sources = TokenSources {
        authorization: headers.get(AUTHORIZATION).map(|v| v.as_bytes()),
        ..TokenSources::default()
    };
    let given = find_token(&sources).map_err(|_| {
        ApiError::Unauthorized("send the metrics token as Authorization: Bearer <token>".into())
    })?;
    if auth::same_secret(given.as_bytes(), expected.as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized("the metrics token is wrong".into()))
    }
}
