//! The server around the filters: our own accept loop on hyper-util, for what `warp::serve`
//! does not give — HTTP/1.1 and HTTP/2 (prior knowledge, h2c) on one port, `TCP_NODELAY`,
//! and a shutdown that ends open SSE streams instead of waiting for them forever.

use std::future::Future;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::cluster;
use crate::config::{Config, Role};
use crate::direct::{self, FirstRequest, Prefixed};
use crate::http::{self, App};
use crate::market::clock::TradingDay;
use crate::market::history;
use crate::market::simulator::{SimConfig, SimError, Simulator};
use crate::market::SymbolSpec;
use crate::publisher;
use crate::shutdown;

/// How long open connections get to finish after shutdown before they are dropped.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Longest a client may take to send its request headers; ends idle or slow-loris sockets.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("invalid simulation settings: {0}")]
    Simulation(#[from] SimError),
    #[error(transparent)]
    Start(#[from] crate::market::clock::ClockError),
    #[error("cannot open web directory: {0}")]
    WebDir(#[source] std::io::Error),
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
}

/// Runs tickcast on `listener` until `shutdown` completes, then ends every stream, waits for
/// connections to close (at most [`SHUTDOWN_GRACE`]) and returns.
///
/// `config` must have been validated; `specs` is the loaded symbol table.
///
/// # Errors
/// Invalid simulation settings or web directory.
pub async fn run(
    listener: TcpListener,
    config: Config,
    specs: Vec<SymbolSpec>,
    shutdown_signal: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    match config.role {
        Role::All => {}
        Role::Simulator => {
            return Ok(cluster::simulator::run(listener, config, specs, shutdown_signal).await?)
        }
        Role::Edge => {
            return Ok(cluster::edge::run(listener, config, specs, shutdown_signal).await?)
        }
    }
    let seed = config.seed.unwrap_or_else(rand::random);
    let market_start = config.market_start(publisher::epoch_ms() as i64)?;
    // Bar history first: feed time starts after it, so the market does not open with a burst
    // of everything that would have been due while it was generated.
    let generating = tokio::time::Instant::now();
    let first_day = TradingDay::current_or_next(market_start);
    let history = history::generate(&specs, seed, &first_day, config.history_days);
    tracing::debug!(
        days = config.history_days,
        ms = generating.elapsed().as_millis() as u64,
        "bar history generated"
    );
    let started = tokio::time::Instant::now();
    let sim = Simulator::try_new(
        &specs,
        SimConfig {
            seed,
            rate: config.rate,
            speed: config.speed,
            start_epoch_ms: publisher::epoch_ms(),
            market_start,
            skip_closed: !config.keep_closed_time,
            first_seq: config.first_seq_at(publisher::epoch_ms()),
        },
    )?;
    let (trigger, stop) = shutdown::channel();
    let (scenarios, scenario_rx) = publisher::scenario_channel();
    let app = App::new(config, specs, trigger, scenarios).map_err(ServeError::WebDir)?;
    for (index, symbol) in history.iter().enumerate() {
        app.bars.load_history(index, &symbol.minutes, &symbol.days);
    }
    let outlets = publisher::Outlets {
        feed: app.feed.clone(),
        bars: app.bars.clone(),
        upstream: None,
    };
    publisher::publish_opening(&outlets, &sim);
    let market = publisher::spawn_market(
        outlets,
        sim,
        started,
        app.config.flush(),
        scenario_rx,
        stop.clone(),
    );
    let load_meter = tokio::spawn(publisher::run_load_meter(app.feed.clone(), stop.clone()));
    let heartbeat = tokio::spawn(publisher::run_heartbeat(
        app.feed.clone(),
        app.config.heartbeat(),
        stop,
    ));
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(
            %addr,
            symbols = app.feed.specs().len(),
            seed,
            rate = app.config.rate,
            flush_ms = app.config.flush_ms,
            "tickcast listening on http://{addr}"
        );
    }
    serve(listener, app, shutdown_signal).await;
    let _ = tokio::join!(market, heartbeat, load_meter);
    tracing::info!("stopped");
    Ok(())
}

/// Serves `app`'s routes on `listener` until `shutdown_signal` completes; then fires the app's
/// shutdown trigger, which ends every stream, and waits for connections to close.
pub async fn serve(listener: TcpListener, app: App, shutdown_signal: impl Future<Output = ()>) {
    let trigger = app.shutdown.clone();
    let service = TowerToHyperService::new(warp::service(http::routes(app.clone())));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256);
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    // Every connection task holds a sender; when all are dropped, every connection is done.
    let (drain_tx, mut drain_rx) = mpsc::channel::<()>(1);

    tokio::pin!(shutdown_signal);
    let mut backoff = Duration::from_millis(5);
    loop {
        let accepted = tokio::select! {
            biased;
            () = &mut shutdown_signal => break,
            accepted = listener.accept() => accepted,
        };
        let (socket, peer) = match accepted {
            Ok(pair) => {
                backoff = Duration::from_millis(5);
                pair
            }
            Err(e) => {
                // Usually EMFILE: out of file descriptors. Back off instead of spinning, so
                // closing connections can free some.
                tracing::warn!("accept failed: {e}; retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        if let Err(e) = socket.set_nodelay(true) {
            tracing::debug!(%peer, "cannot set TCP_NODELAY: {e}");
        }
        let builder = builder.clone();
        let service = service.clone();
        let watcher = graceful.watcher();
        let app = app.clone();
        let drain = drain_tx.clone();
        app.feed
            .metrics()
            .connections_accepted
            .fetch_add(1, Relaxed);
        tokio::spawn(async move {
            let mut socket = socket;
            match direct::first_request(&mut socket, &app, HEADER_READ_TIMEOUT).await {
                FirstRequest::Stream(stream) => {
                    direct::serve_stream(
                        socket,
                        *stream,
                        &app.config.cors_origin,
                        app.config.write_timeout(),
                        app.feed.metrics(),
                    )
                    .await;
                }
                FirstRequest::Other(head) => {
                    let io = TokioIo::new(Prefixed::new(head, socket));
                    let connection = builder.serve_connection(io, service);
                    if let Err(e) = watcher.watch(connection).await {
                        tracing::debug!(%peer, "connection ended: {e}");
                    }
                }
                FirstRequest::Gone => {}
            }
            app.feed.metrics().connections_closed.fetch_add(1, Relaxed);
            drop(drain);
        });
    }

    tracing::info!("shutting down: ending streams");
    drop(listener);
    trigger.fire();
    drop(drain_tx);
    let all_closed = async {
        graceful.shutdown().await;
        let _ = drain_rx.recv().await;
    };
    if tokio::time::timeout(SHUTDOWN_GRACE, all_closed)
        .await
        .is_err()
    {
        tracing::warn!("connections still open after {SHUTDOWN_GRACE:?}; dropping them");
    }
}
