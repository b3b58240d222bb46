//! Rejection causes and the single place where every rejection becomes a JSON reply.
//!
//! A 4xx body says what was wrong with the request; a 5xx says little, and the details go to
//! the log. Every error body is `{"error": <snake_case code>, "message": <text>, ...}`.

use std::convert::Infallible;

use serde_json::json;
use warp::http::header::{ALLOW, RETRY_AFTER, WWW_AUTHENTICATE};
use warp::http::{HeaderName, HeaderValue, StatusCode};
use warp::reject::Reject;
use warp::reply::Response;
use warp::{Rejection, Reply};

/// Methods the read-only routes accept (all but `/scenario`).
pub const ALLOWED_METHODS: &str = "GET, HEAD, OPTIONS";
/// Methods `/scenario` accepts.
pub const SCENARIO_METHODS: &str = "POST, OPTIONS";

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    #[error("unknown symbol(s): {}", .0.join(", "))]
    UnknownSymbols(Vec<String>),
    #[error("{0}")]
    BadRequest(String),
    #[error("more than {max} symbols requested; at most {max} are allowed per request")]
    TooManySymbols { max: usize },
    #[error("{max} streams are open, the most this server allows; retry later")]
    TooManyClients { max: usize, retry_after_secs: u64 },
    #[error("method not allowed; this resource allows {ALLOWED_METHODS}")]
    MethodNotAllowed,
    #[error("method not allowed; this resource allows {0}")]
    MethodNotAllowedHere(&'static str),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{}", forbidden_message(.0))]
    Forbidden(Vec<String>),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("request body larger than {0} bytes")]
    PayloadTooLarge(u64),
    #[error("no resource at {0}")]
    NotFound(String),
}

impl Reject for ApiError {}

impl ApiError {
    /// The HTTP status for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::UnknownSymbols(_) | ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) | ApiError::TooManySymbols { .. } => StatusCode::BAD_REQUEST,
            ApiError::TooManyClients { .. } | ApiError::Unavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::MethodNotAllowed | ApiError::MethodNotAllowedHere(_) => {
                StatusCode::METHOD_NOT_ALLOWED
            }
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        }
    }

    /// The short machine-readable code in the `error` field.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::UnknownSymbols(_) => "unknown_symbol",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::TooManySymbols { .. } => "too_many_symbols",
            ApiError::TooManyClients { .. } => "too_many_clients",
            ApiError::MethodNotAllowed | ApiError::MethodNotAllowedHere(_) => "method_not_allowed",
            ApiError::NotFound(_) => "not_found",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::Conflict(_) => "conflict",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
        }
    }

    /// The JSON body: `error`, `message` and any details.
    pub fn body_json(&self) -> serde_json::Value {
        let mut body = error_json(self.code(), &self.to_string());
        match self {
            ApiError::UnknownSymbols(unknown) => body["unknown"] = json!(unknown),
            ApiError::TooManySymbols { max, .. } => body["max"] = json!(max),
            ApiError::Forbidden(symbols) => body["forbidden"] = json!(symbols),
            _ => {}
        }
        body
    }

    /// The JSON body as bytes, exactly as [`ApiError::into_response`] sends it.
    pub fn body(&self) -> Vec<u8> {
        serde_json::to_vec(&self.body_json()).expect("JSON values serialise")
    }

    /// Headers this error adds: `Allow` on 405, `WWW-Authenticate` on 401, `Retry-After` on 503.
    pub fn extra_headers(&self) -> Vec<(HeaderName, HeaderValue)> {
        match self {
            ApiError::MethodNotAllowed => {
                vec![(ALLOW, HeaderValue::from_static(ALLOWED_METHODS))]
            }
            ApiError::MethodNotAllowedHere(allow) => vec![(ALLOW, HeaderValue::from_static(allow))],
            ApiError::Unauthorized(_) => {
                vec![(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))]
            }
            ApiError::TooManyClients {
                retry_after_secs, ..
            } => vec![(RETRY_AFTER, HeaderValue::from(*retry_after_secs))],
            _ => Vec::new(),
        }
    }

    /// The JSON reply with its [extra headers](ApiError::extra_headers).
    pub fn into_response(self) -> Response {
        let mut response =
            warp::reply::with_status(warp::reply::json(&self.body_json()), self.status())
                .into_response();
        let headers = response.headers_mut();
        for (name, value) in self.extra_headers() {
            headers.insert(name, value);
        }
        response
    }
}

/// The message of a 403: the refused symbols, or that the token allows none of the server's.
fn forbidden_message(symbols: &[String]) -> String {
    if symbols.is_empty() {
        "the token allows none of this server's symbols".to_owned()
    } else {
        format!("the token does not allow symbol(s): {}", symbols.join(", "))
    }
}

/// The shape of every error body: `{"error": <code>, "message": <text>}`, for the replies
/// routed through warp and for those the direct path writes itself.
pub fn error_json(code: &str, message: &str) -> serde_json::Value {
    json!({ "error": code, "message": message })
}

/// Turns any rejection into a JSON error reply.
pub async fn handle(err: Rejection) -> Result<Response, Infallible> {
    if let Some(api) = err.find::<ApiError>() {
        return Ok(api.clone().into_response());
    }
    if err.is_not_found() {
        return Ok(ApiError::NotFound("this path".into()).into_response());
    }
    if err.find::<warp::reject::MethodNotAllowed>().is_some() {
        return Ok(ApiError::MethodNotAllowed.into_response());
    }
    if err.find::<warp::reject::LengthRequired>().is_some() {
        let message = "send the body with a Content-Length header".to_owned();
        let body = json!({ "error": "length_required", "message": message });
        return Ok(
            warp::reply::with_status(warp::reply::json(&body), StatusCode::LENGTH_REQUIRED)
                .into_response(),
        );
    }
    if err.find::<warp::reject::PayloadTooLarge>().is_some() {
        return Ok(ApiError::PayloadTooLarge(super::scenario::MAX_BODY).into_response());
    }
    tracing::error!(?err, "unhandled rejection");
    let body = json!({ "error": "internal", "message": "internal server error" });
    Ok(
        warp::reply::with_status(warp::reply::json(&body), StatusCode::INTERNAL_SERVER_ERROR)
            .into_response(),
    )
}
