//! The SSE routes: `GET /quotes`, `GET /quotes?symbols=..` and `GET /quotes/{symbol}`.

use warp::http::{header, HeaderMap, HeaderValue};
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use super::params::{self, query_pairs};
use super::rejection::ApiError;
use super::{raw_query, read_only, with_app, App};
use crate::feed::Subscription;
use crate::stream::{QuoteStream, Start};

/// GET /quotes?symbols=AAPL,MSFT&lastEventId=N — all symbols, or the listed ones.
pub fn quotes(app: App) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path("quotes")
        .and(warp::path::end())
        .and(read_only())
        .and(raw_query())
        .and(warp::header::headers_cloned())
        .and(with_app(app))
        .and_then(stream_quotes)
}

/// GET /quotes/{symbol} — one symbol (case-insensitive).
pub fn quote_one(app: App) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("quotes" / String)
        .and(read_only())
        .and(raw_query())
        .and(warp::header::headers_cloned())
        .and(with_app(app))
        .and_then(stream_one)
}

async fn stream_quotes(query: String, headers: HeaderMap, app: App) -> Result<Response, Rejection> {
    let pairs = query_pairs(&query);
    let sub = params::subscription(&app.feed, &pairs, app.max_symbols())?;
    open(app, sub, params::last_event_id(&headers, &pairs))
}

async fn stream_one(
    segment: String,
    query: String,
    headers: HeaderMap,
    app: App,
) -> Result<Response, Rejection> {
    let index = params::resolve_path_symbol(&app.feed, &segment)?;
    let pairs = query_pairs(&query);
    open(
        app,
        Subscription::some([index]),
        params::last_event_id(&headers, &pairs),
    )
}

fn open(app: App, sub: Subscription, last_event_id: Option<u64>) -> Result<Response, Rejection> {
    let max = app.config.max_clients;
    let Some(slot) = app.feed.try_register_client(max) else {
        return Err(warp::reject::custom(ApiError::TooManyClients {
            max,
            retry_after_secs: app.config.retry_ms.div_ceil(1000).max(1),
        }));
    };
    let start = last_event_id.map_or(Start::Snapshot, Start::Resume);
    let stream = QuoteStream::open(
        app.feed.clone(),
        sub,
        start,
        app.config.retry_ms,
        app.shutdown.subscribe(),
        slot,
    );
    let mut response = warp::reply::stream(stream.into_body()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}
