//! `POST /scenario`: halts, shocks and news on request, for demos and front-end tests.
//!
//! Off unless `--admin-token` is set (then the route answers 404 like any unknown path); on,
//! it needs `Authorization: Bearer <token>`. The body is checked here; the market task applies
//! the scenario at once and says what it did, which is the 202 reply.

use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::oneshot;
use warp::http::{HeaderMap, Method, StatusCode};
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use super::rejection::{ApiError, SCENARIO_METHODS};
use super::{with_app, App};
use crate::market::scenario::{Scenario, ScenarioError, MAX_HALT_MINUTES, MAX_MOVE_PCT};
use crate::publisher::ScenarioRequest;

/// Largest request body accepted, bytes.
pub const MAX_BODY: u64 = 16 * 1024;
/// Longest wait for the market task to apply a scenario.
const APPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// A scenario as clients write it.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioBody {
    pub kind: String,
    pub symbols: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minutes: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub move_pct: Option<f64>,
}

/// POST /scenario.
pub fn scenario(app: App) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("scenario")
        .and(with_app(app))
        .and_then(|app: App| async move {
            match app.config.admin_token.is_some() {
                true => Ok(app),
                false => Err(warp::reject::not_found()),
            }
        })
        .and(warp::method())
        .and_then(|app: App, method: Method| async move {
            if method == Method::POST {
                Ok(app)
            } else {
                Err(warp::reject::custom(ApiError::MethodNotAllowedHere(
                    SCENARIO_METHODS,
                )))
            }
        })
        .and(warp::header::headers_cloned())
        .and_then(|app: App, headers: HeaderMap| async move {
            authorize(&app, &headers)
                .map(|()| app)
                .map_err(warp::reject::custom)
        })
        .and(warp::body::content_length_limit(MAX_BODY))
        .and(warp::body::bytes())
        .and_then(|app: App, body: Bytes| async move {
            apply(&app, &body).await.map_err(warp::reject::custom)
        })
}

/// Checks `Authorization: Bearer <admin token>`, in time independent of where they differ.
fn authorize(app: &App, headers: &HeaderMap) -> Result<(), ApiError> {
    let expected = app.config.admin_token.as_deref().unwrap_or_default();
    let given = headers
        .get(warp::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            ApiError::Unauthorized("send the admin token as Authorization: Bearer <token>".into())
        })?;
    let same = given.len() == expected.len()
        && given
            .bytes()
            .zip(expected.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if same {
        Ok(())
    } else {
        Err(ApiError::Unauthorized("the admin token is wrong".into()))
    }
}

async fn apply(app: &App, body: &[u8]) -> Result<Response, ApiError> {
    let parsed: ScenarioBody = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("invalid scenario: {e}")))?;
    let scenario = validate(app, &parsed)?;
    let (reply, answer) = oneshot::channel();
    app.scenarios
        .try_send(ScenarioRequest { scenario, reply })
        .map_err(|_| ApiError::Unavailable("the market is busy; retry in a moment".into()))?;
    let applied = match tokio::time::timeout(APPLY_TIMEOUT, answer).await {
        Ok(Ok(result)) => result,
        _ => return Err(ApiError::Unavailable("the market is not running".into())),
    };
    let applied = applied.map_err(|e| match e {
        ScenarioError::MarketClosed => ApiError::Conflict(e.to_string()),
        ScenarioError::UnknownSymbol(_) => ApiError::BadRequest(e.to_string()),
    })?;
    let name = |i: &u16| app.feed.specs()[*i as usize].symbol.to_string();
    let body = json!({
        "scheduled": parsed,
        "market_ts": applied.market_ts,
        "halted": applied.halted.iter().map(name).collect::<Vec<_>>(),
        "circuit_breaker": applied.circuit_breaker,
    });
    Ok(warp::reply::with_status(warp::reply::json(&body), StatusCode::ACCEPTED).into_response())
}

/// The scenario a body asks for, with symbols resolved.
fn validate(app: &App, body: &ScenarioBody) -> Result<Scenario, ApiError> {
    let bad = |m: String| Err(ApiError::BadRequest(m));
    let symbols: Vec<u16> = match body.symbols.as_slice() {
        [] => return bad("symbols must list at least one symbol, or [\"*\"] for all".into()),
        [all] if all == "*" => (0..app.feed.specs().len() as u16).collect(),
        list => {
            if list.iter().any(|s| s == "*") {
                return bad("\"*\" stands for every symbol and must be alone".into());
            }
            super::params::resolve_symbols(&app.feed, &list.join(","), app.max_symbols())?
        }
    };
    let pct = |kind: &str| -> Result<f64, ApiError> {
        if body.minutes.is_some() {
            return Err(ApiError::BadRequest(format!(
                "minutes is for halts; a {kind} takes move_pct"
            )));
        }
        match body.move_pct {
            Some(p) if p.is_finite() && p != 0.0 && p.abs() <= MAX_MOVE_PCT => Ok(p),
            Some(p) => Err(ApiError::BadRequest(format!(
                "move_pct must be a non-zero percentage within ±{MAX_MOVE_PCT}, got {p}"
            ))),
            None => Err(ApiError::BadRequest(format!(
                "a {kind} needs move_pct, e.g. {{\"kind\":\"{kind}\",\"symbols\":[\"AAPL\"],\"move_pct\":-7}}"
            ))),
        }
    };
    match body.kind.as_str() {
        "halt" => {
            if body.move_pct.is_some() {
                return bad("move_pct is for shocks and news; a halt takes minutes".into());
            }
            match body.minutes {
                Some(m) if m.is_finite() && m > 0.0 && m <= MAX_HALT_MINUTES => {
                    Ok(Scenario::Halt { symbols, minutes: m })
                }
                Some(m) => bad(format!(
                    "minutes must be more than 0 and at most {MAX_HALT_MINUTES}, got {m}"
                )),
                None => bad(
                    "a halt needs minutes, e.g. {\"kind\":\"halt\",\"symbols\":[\"AAPL\"],\"minutes\":5}"
                        .into(),
                ),
            }
        }
        "shock" => Ok(Scenario::Shock {
            move_pct: pct("shock")?,
            symbols,
        }),
        "news" => Ok(Scenario::News {
            move_pct: pct("news")?,
            symbols,
        }),
        other => bad(format!(
            "kind must be halt, shock or news, got {:?}",
            super::params::truncate(other)
        )),
    }
}
