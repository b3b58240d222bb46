//! The JSON and text endpoints: `/symbols`, `/snapshot`, `/clock` (token required when tokens
//! are on), `/healthz`, `/metrics` (open unless `--metrics-token` is set).

use bytes::{Bytes, BytesMut};
use serde_json::json;
use warp::http::{header, HeaderValue};
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use super::params::{self, query_pairs};
use super::{guard, json_bytes, raw_query, read_only, with_app, App};
use crate::auth::Grant;
use crate::market::clock;
use crate::metrics::Gauges;
use crate::sse;

/// GET /symbols — the symbol table.
pub fn symbols(app: App) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("symbols")
        .and(read_only())
        .and(guard::token(app.clone()))
        .and(with_app(app))
        .map(|_: Option<Grant>, app: App| json_bytes(app.symbols_json.clone()))
}

/// GET /snapshot?symbols=AAPL,MSFT — current quotes of all or the listed symbols.
pub fn snapshot(app: App) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("snapshot")
        .and(read_only())
        .and(guard::token(app.clone()))
        .and(raw_query())
        .and(with_app(app))
        .and_then(current_quotes)
}

/// GET /healthz — liveness with a few numbers.
pub fn healthz(app: App) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("healthz")
        .and(read_only())
        .and(guard::metrics_token(app.clone()))
        .and(with_app(app))
        .map(|app: App| {
            // Not ready (a cluster node whose upstream is down) is a 503, so that a load
            // balancer's readiness check stops sending clients here; the body says why.
            let (ready, upstream) = app.upstream.health();
            let body = json!({
                "status": if ready { "ok" } else { "degraded" },
                "role": app.upstream.role().as_str(),
                "upstream": upstream,
                "symbols": app.feed.specs().len(),
                "clients": app.feed.clients(),
                "seq": app.feed.newest_seq(),
                "first_seq": app.feed.first_seq(),
                "uptime_s": app.feed.uptime().as_secs(),
            });
            let mut response = json_bytes(Bytes::from(body.to_string()));
            if !ready {
                *response.status_mut() = warp::http::StatusCode::SERVICE_UNAVAILABLE;
            }
            response
        })
}

/// GET /clock — the market's time, session and next open and close (market epoch ms).
pub fn clock(app: App) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("clock")
        .and(read_only())
        .and(guard::token(app.clone()))
        .and(with_app(app))
        .map(|_: Option<Grant>, app: App| {
            let (market_ts, speed) = app.feed.market_now();
            let body = json!({
                "market_ts": market_ts,
                "state": clock::session_state(market_ts),
                "next_open": clock::next_open(market_ts),
                "next_close": clock::next_close(market_ts),
                "speed": speed,
                "timezone": "America/New_York",
            });
            json_bytes(Bytes::from(body.to_string()))
        })
}

/// GET /metrics — Prometheus text format.
pub fn metrics(app: App) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("metrics")
        .and(read_only())
        .and(guard::metrics_token(app.clone()))
        .and(with_app(app))
        .map(|app: App| {
            let feed = &app.feed;
            let mut text = feed.metrics().render(Gauges {
                clients: feed.clients(),
                seq: feed.newest_seq(),
                symbols: feed.specs().len(),
                uptime_secs: feed.uptime().as_secs(),
                history_len: feed.history_len(),
                write_gap_us: feed.write_gap(app.config.flush()).as_micros() as u64,
            });
            app.upstream.render_into(&mut text);
            let mut response = text.into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            response
        })
}

async fn current_quotes(
    grant: Option<Grant>,
    query: String,
    app: App,
) -> Result<Response, Rejection> {
    let pairs = query_pairs(&query);
    let mut sub = params::subscription(&app.feed, &pairs, app.max_symbols())?;
    guard::restrict(&app, &mut sub, grant.as_ref())?;
    let (_, quotes, _) = app.feed.snapshot(&sub);
    let mut body = BytesMut::with_capacity(quotes.len() * 340 + 2);
    sse::json_array_into(&mut body, quotes.iter().map(|q| &q.json[..]));
    Ok(json_bytes(body.freeze()))
}
