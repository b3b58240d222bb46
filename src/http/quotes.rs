//! The SSE routes: `GET /quotes`, `GET /quotes?symbols=..` and `GET /quotes/{symbol}`.
//!
//! [`open_stream`] turns a request into a client stream; both the warp route here (HTTP/2 and
//! HTTP/1.1 connections that hyper serves) and the direct HTTP/1.1 path in `crate::direct`
//! call it, so the two cannot disagree on the contract.

use warp::http::{HeaderMap, HeaderValue, Method};
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use super::params::{self, query_pairs};
use super::rejection::ApiError;
use super::{guard, raw_query, read_only, with_app, App};
use crate::auth::{Grant, TokenSources};
use crate::feed::Subscription;
use crate::stream::{Pacing, QuoteStream, Start};

/// Headers of every SSE response, besides `Access-Control-Allow-Origin`.
pub const SSE_HEADERS: [(&str, &str); 3] = [
    ("content-type", "text/event-stream"),
    ("cache-control", "no-cache"),
    ("x-accel-buffering", "no"),
];

/// GET /quotes?symbols=AAPL,MSFT&lastEventId=N — all symbols, or the listed ones.
pub fn quotes(app: App) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path("quotes")
        .and(warp::path::end())
        .and(read_only())
        .and(warp::method())
        .and(raw_query())
        .and(warp::header::headers_cloned())
        .and(with_app(app))
        .and_then(
            |method: Method, query: String, headers: HeaderMap, app: App| async move {
                respond(&app, &method, None, &query, &headers)
            },
        )
}

/// GET /quotes/{symbol} — one symbol (case-insensitive).
pub fn quote_one(app: App) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("quotes" / String)
        .and(read_only())
        .and(warp::method())
        .and(raw_query())
        .and(warp::header::headers_cloned())
        .and(with_app(app))
        .and_then(
            |segment: String, method: Method, query: String, headers: HeaderMap, app: App| async move {
                respond(&app, &method, Some(&segment), &query, &headers)
            },
        )
}

/// A stream for GET; for HEAD the same checks and headers with no body, and no stream opened.
fn respond(
    app: &App,
    method: &Method,
    segment: Option<&str>,
    query: &str,
    headers: &HeaderMap,
) -> Result<Response, Rejection> {
    let sources = guard::header_sources(headers);
    if method == Method::HEAD {
        let pairs = query_pairs(query);
        let grant = guard::authorize(app, sources, &pairs)?;
        subscription(app, segment, &pairs, grant.as_ref())?;
        return Ok(with_sse_headers(Response::new(bytes::Bytes::new().into())));
    }
    match open_stream(app, segment, query, last_event_id_header(headers), sources) {
        Ok(stream) => reply(stream),
        Err(e) => Err(warp::reject::custom(e)),
    }
}

fn last_event_id_header(headers: &HeaderMap) -> Option<&[u8]> {
    headers.get("last-event-id").map(HeaderValue::as_bytes)
}

/// Opens a client stream for a request to `/quotes` (`segment` is `None`) or
/// `/quotes/{segment}`, with its raw query string, `Last-Event-ID` header and the token sources
/// of its head (the `token` query parameter is read from `query`). With tokens on, the stream
/// ends when its token expires.
///
/// # Errors
/// 401 for a missing or invalid token, 403 for symbols the token does not allow, the request's
/// symbol errors, or 503 when `--max-clients` streams are open.
pub fn open_stream(
    app: &App,
    segment: Option<&str>,
    query: &str,
    last_event_id_header: Option<&[u8]>,
    tokens: TokenSources<'_>,
) -> Result<QuoteStream, ApiError> {
    let pairs = query_pairs(query);
    let grant = guard::authorize(app, tokens, &pairs)?;
    let sub = subscription(app, segment, &pairs, grant.as_ref())?;
    let last_event_id = params::last_event_id(last_event_id_header, &pairs);
    let max = app.config.max_clients;
    let slot = app.feed.try_register_client(max).ok_or_else(|| {
        // Counted here, where both HTTP paths pass, so each refusal counts once.
        app.feed
            .metrics()
            .streams_refused
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        ApiError::TooManyClients {
            max,
            retry_after_secs: app.config.retry_ms.div_ceil(1000).max(1),
        }
    })?;
    Ok(QuoteStream::open(
        app.feed.clone(),
        sub,
        last_event_id.map_or(Start::Snapshot, Start::Resume),
        Pacing {
            retry_ms: app.config.retry_ms,
            flush: app.config.flush(),
        },
        app.shutdown.subscribe(),
        slot,
    )
    .expiring_at(grant.map(|g| g.exp)))
}

/// What a request to `/quotes` (`segment` is `None`) or `/quotes/{segment}` subscribes to,
/// within what its token's `grant` allows.
fn subscription(
    app: &App,
    segment: Option<&str>,
    pairs: &[(String, String)],
    grant: Option<&Grant>,
) -> Result<Subscription, ApiError> {
    let mut sub = match segment {
        None => params::subscription(&app.feed, pairs, app.max_symbols())?,
        Some(segment) => Subscription::some([params::resolve_path_symbol(&app.feed, segment)?])
            .with_kinds(params::kinds(pairs)?),
    };
    guard::restrict(app, &mut sub, grant)?;
    Ok(sub)
}

fn reply(stream: QuoteStream) -> Result<Response, Rejection> {
    Ok(with_sse_headers(
        warp::reply::stream(stream.into_body()).into_response(),
    ))
}

fn with_sse_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in SSE_HEADERS {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}
