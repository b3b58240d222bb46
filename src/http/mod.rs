//! The HTTP API as warp filters: one small function per route, joined in [`routes`].
//!
//! Every response, errors included, carries the CORS headers of the `--cors-origin` allow-list
//! (`crate::cors`); every rejection becomes a JSON error in [`rejection::handle`]. The stream
//! and data routes check the request's token in [`guard`] when tokens are required.

pub mod assets;
pub mod bars;
pub mod guard;
pub mod params;
pub mod quotes;
pub mod rejection;
pub mod rest;
pub mod scenario;

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use warp::http::{header, HeaderValue, Method, StatusCode};
use warp::{Filter, Rejection, Reply};

use crate::auth::Verifier;
use crate::bar_store::BarStore;
use crate::config::Config;
use crate::cors::Cors;
use crate::feed::Feed;
use crate::market::SymbolSpec;
use crate::publisher::ScenarioRequest;
use crate::shutdown::ShutdownTrigger;
use assets::Assets;
use rejection::{ApiError, ALLOWED_METHODS};

/// What the handlers share: the feed and the validated configuration.
#[derive(Debug, Clone)]
pub struct App {
    pub feed: Feed,
    pub config: Arc<Config>,
    /// Streams subscribe to it to end on shutdown.
    pub shutdown: ShutdownTrigger,
    pub assets: Arc<Assets>,
    /// `GET /symbols` never changes, so it is encoded once.
    pub symbols_json: Bytes,
    /// Bar history for `GET /bars`.
    pub bars: Arc<BarStore>,
    /// Where `POST /scenario` sends scenarios for the market task.
    pub scenarios: tokio::sync::mpsc::Sender<ScenarioRequest>,
    /// Checks tokens when `--jwt-secret` or `--jwt-public-key` is set.
    pub auth: Option<Arc<Verifier>>,
    /// The `--cors-origin` allow-list.
    pub cors: Arc<Cors>,
    /// The role and, in a cluster, the upstream's state (for /healthz and /metrics).
    pub upstream: Arc<crate::cluster::Status>,
}

impl App {
    /// The shared state for `specs` under `config`, with an empty feed and bar store;
    /// scenarios go to `scenarios`.
    ///
    /// # Errors
    /// A `--web-dir` that cannot be opened; an invalid `--cors-origin` or JWT key (which
    /// [`Config::validate`] refuses earlier, at start-up).
    pub fn new(
        config: Config,
        specs: Vec<SymbolSpec>,
        shutdown: ShutdownTrigger,
        scenarios: tokio::sync::mpsc::Sender<ScenarioRequest>,
    ) -> std::io::Result<App> {
        let assets = Assets::new(config.web_dir.as_deref())?;
        let invalid = |e: crate::config::ConfigError| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string())
        };
        let auth = config.jwt_verifier().map_err(invalid)?.map(Arc::new);
        let cors = Arc::new(config.cors().map_err(invalid)?);
        let symbols_json = Bytes::from(serde_json::to_vec(&specs).expect("symbol specs serialise"));
        Ok(App {
            upstream: Arc::new(crate::cluster::Status::new(config.role)),
            bars: Arc::new(BarStore::new(specs.len())),
            scenarios,
            feed: Feed::new(specs, config.history),
            config: Arc::new(config),
            shutdown,
            assets: Arc::new(assets),
            symbols_json,
            auth,
            cors,
        })
    }

    /// Whether this node serves clients (streams, REST, the dashboard): every role but the
    /// simulator, which serves only `/healthz` and `/metrics`.
    pub fn serves_clients(&self) -> bool {
        self.config.role != crate::config::Role::Simulator
    }

    /// Most symbols one request may name.
    pub fn max_symbols(&self) -> usize {
        self.config.max_symbols.unwrap_or(self.feed.specs().len())
    }
}

/// All routes, with CORS on every response and errors as JSON.
pub fn routes(app: App) -> impl Filter<Extract = (impl Reply,), Error = Infallible> + Clone {
    with_cors(app.cors.clone(), routes_without_cors(app))
}

/// The routes of a node that serves no clients (`--role simulator`): `/healthz` and
/// `/metrics`, with the same preflight, CONNECT and error answers as [`routes`].
pub fn status_routes(app: App) -> impl Filter<Extract = (impl Reply,), Error = Infallible> + Clone {
    let routes = preflight()
        .or(connect())
        .or(rest::healthz(app.clone()))
        .or(rest::metrics(app.clone()))
        .recover(rejection::handle);
    with_cors(app.cors.clone(), routes)
}

/// `routes` with the CORS headers the request's `Origin` earns.
fn with_cors<R: Reply + Send>(
    cors: Arc<Cors>,
    routes: impl Filter<Extract = (R,), Error = Infallible> + Clone + Send + Sync + 'static,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Infallible> + Clone {
    request_origin()
        .and(routes)
        .map(move |origin: Option<HeaderValue>, reply: R| {
            let mut response = Reply::into_response(reply);
            cors.apply(origin.as_ref(), response.headers_mut());
            response
        })
}

/// The request's `Origin` header, if any.
fn request_origin() -> impl Filter<Extract = (Option<HeaderValue>,), Error = Infallible> + Clone {
    warp::header::value(header::ORIGIN.as_str())
        .map(Some)
        .or(warp::any().map(|| None))
        .unify()
}

fn routes_without_cors(
    app: App,
) -> impl Filter<Extract = (impl Reply,), Error = Infallible> + Clone {
    preflight()
        .or(connect())
        .or(quotes::quotes(app.clone()))
        .or(quotes::quote_one(app.clone()))
        .or(rest::symbols(app.clone()))
        .or(rest::snapshot(app.clone()))
        .or(rest::healthz(app.clone()))
        .or(rest::clock(app.clone()))
        .or(bars::bars(app.clone()))
        .or(scenario::scenario(app.clone()))
        .or(rest::metrics(app.clone()))
        .or(assets::assets(app))
        .recover(rejection::handle)
}

/// OPTIONS on any path: the CORS preflight for cross-origin `fetch` with `Last-Event-ID`.
fn preflight() -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    method_is(Method::OPTIONS).map(|| {
        let mut response = StatusCode::NO_CONTENT.into_response();
        let headers = response.headers_mut();
        headers.insert(header::ALLOW, HeaderValue::from_static(ALLOWED_METHODS));
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, HEAD, POST, OPTIONS"),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(
                "Last-Event-ID, Cache-Control, Accept, Authorization, Content-Type",
            ),
        );
        headers.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("86400"),
        );
        response
    })
}

/// CONNECT (`CONNECT host:443`): a 405 like any other method no route takes. Answered before
/// the routes, whose path filters expect a request target with a path.
fn connect() -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    method_is(Method::CONNECT).map(|| ApiError::MethodNotAllowed.into_response())
}

/// Passes requests with `method`; others are rejected as not found, so that they fall through
/// to the other routes.
fn method_is(method: Method) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::method()
        .and_then(move |m: Method| {
            let ok = m == method;
            async move {
                if ok {
                    Ok(())
                } else {
                    Err(warp::reject::not_found())
                }
            }
        })
        .untuple_one()
}

/// Passes GET and HEAD; any other method on a matched path is a 405 with `Allow`.
pub fn read_only() -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::method()
        .and_then(|m: Method| async move {
            if m == Method::GET || m == Method::HEAD {
                Ok(())
            } else {
                Err(warp::reject::custom(ApiError::MethodNotAllowed))
            }
        })
        .untuple_one()
}

/// The raw query string, empty when there is none.
pub fn raw_query() -> impl Filter<Extract = (String,), Error = Infallible> + Clone {
    warp::query::raw().or(warp::any().map(String::new)).unify()
}

/// Injects the shared state.
pub fn with_app(app: App) -> impl Filter<Extract = (App,), Error = Infallible> + Clone {
    warp::any().map(move || app.clone())
}

/// A JSON reply from already-encoded bytes.
pub fn json_bytes(body: Bytes) -> warp::reply::Response {
    let mut response = warp::reply::Response::new(body.into());
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
