//! `GET /bars`: bar history for charts, from the bar store.

use bytes::Bytes;
use warp::reply::Response;
use warp::{Filter, Rejection};

use super::params::{self, query_pairs, truncate};
use super::rejection::ApiError;
use super::{guard, json_bytes, raw_query, read_only, with_app, App};
use crate::auth::Grant;
use crate::bar_store::BarQuery;
use crate::market::bars::Interval;

/// Bars returned per symbol when `limit` is not given: one regular session of minutes.
pub const DEFAULT_LIMIT: usize = 390;
/// Most bars per symbol one request may ask for.
pub const MAX_LIMIT: usize = 10_000;

/// GET /bars?symbols=AAPL,MSFT&interval=1m&limit=N&start=..&end=.. — bars keyed by symbol.
pub fn bars(app: App) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("bars")
        .and(read_only())
        .and(guard::token(app.clone()))
        .and(raw_query())
        .and(with_app(app))
        .and_then(|grant: Option<Grant>, query: String, app: App| async move {
            answer(&app, &query, grant.as_ref()).map_err(warp::reject::custom)
        })
}

fn answer(app: &App, query: &str, grant: Option<&Grant>) -> Result<Response, ApiError> {
    let pairs = query_pairs(query);
    let list = params::symbols_param(&pairs).ok_or_else(|| {
        ApiError::BadRequest("symbols is required, e.g. /bars?symbols=AAPL,MSFT".into())
    })?;
    let indexes = params::resolve_symbols(&app.feed, &list, app.max_symbols())?;
    guard::check_indexes(app, &indexes, grant)?;
    let query = bar_query(&pairs)?;
    let (now, _) = app.feed.market_now();
    // Written by hand so that symbols keep the request's order and bar fields their own.
    let mut body = Vec::with_capacity(indexes.len() * query.limit.min(1000) * 150 + 2);
    body.push(b'{');
    for (n, index) in indexes.into_iter().enumerate() {
        if n > 0 {
            body.push(b',');
        }
        let bars = app.bars.bars(index as usize, &query, now);
        let symbol = app.feed.specs()[index as usize].symbol.as_str();
        serde_json::to_writer(&mut body, symbol).expect("a symbol always serialises");
        body.push(b':');
        serde_json::to_writer(&mut body, &bars).expect("bars always serialise");
    }
    body.push(b'}');
    Ok(json_bytes(Bytes::from(body)))
}

/// The interval, limit and range of a `/bars` query.
fn bar_query(pairs: &[(String, String)]) -> Result<BarQuery, ApiError> {
    let one = |name: &str| -> Result<Option<&str>, ApiError> {
        let mut values = pairs
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.trim());
        let first = values.next();
        if values.next().is_some() {
            return Err(ApiError::BadRequest(format!(
                "{name} is given more than once"
            )));
        }
        Ok(first)
    };
    let interval = match one("interval")? {
        None => Interval::M1,
        Some(text) => text
            .parse()
            .map_err(|e| ApiError::BadRequest(format!("interval {:?}: {e}", truncate(text))))?,
    };
    let limit = match one("limit")? {
        None => DEFAULT_LIMIT,
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "limit must be a whole number from 1 to {MAX_LIMIT}, got {:?}",
                    truncate(text)
                )))
            }
        },
    };
    let time = |name: &str| -> Result<Option<i64>, ApiError> {
        one(name)?
            .map(|text| {
                text.parse::<i64>().map_err(|_| {
                    ApiError::BadRequest(format!(
                        "{name} must be market time in epoch milliseconds, got {:?}",
                        truncate(text)
                    ))
                })
            })
            .transpose()
    };
    let (start, end) = (time("start")?, time("end")?);
    if let (Some(s), Some(e)) = (start, end) {
        if s >= e {
            return Err(ApiError::BadRequest(format!(
                "start ({s}) must be before end ({e})"
            )));
        }
    }
    Ok(BarQuery {
        interval,
        limit,
        start,
        end,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(raw: &str) -> Result<BarQuery, ApiError> {
        bar_query(&query_pairs(raw))
    }

    #[test]
    fn defaults_and_values() {
        let d = q("").unwrap();
        assert_eq!(
            (d.interval, d.limit, d.start, d.end),
            (Interval::M1, 390, None, None)
        );
        let v = q("interval=1H&limit=5&start=10&end=20").unwrap();
        assert_eq!(
            (v.interval, v.limit, v.start, v.end),
            (Interval::H1, 5, Some(10), Some(20))
        );
    }

    #[test]
    fn bad_values_are_400() {
        for bad in [
            "interval=2m",
            "interval=",
            "limit=0",
            "limit=10001",
            "limit=-1",
            "limit=x",
            "start=abc",
            "start=20&end=10",
            "limit=1&limit=2",
        ] {
            assert!(matches!(q(bad), Err(ApiError::BadRequest(_))), "{bad}");
        }
    }
}
