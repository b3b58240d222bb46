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
use crate::limits::{self, ConnectionLimits};
use crate::market::clock::TradingDay;
use crate::market::history;
use crate::market::simulator::{SimConfig, SimError, Simulator};
use crate::market::SymbolSpec;
use crate::publisher;
use crate::shutdown;
use crate::write_deadline::WriteDeadline;

/// How long open connections get to finish after shutdown before they are dropped.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Longest a client may take to send its request headers; ends idle or slow-loris sockets.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Most bytes hyper buffers per HTTP/1 connection, in each direction. hyper's default, about
/// 400 KiB, is what a stream whose client stops reading would queue behind the blocked socket
/// (measured: ~360 KiB per stalled HTTP/1.0 stream); 16 KiB also bounds a request head, as the
/// direct path does with 8 KiB. hyper's minimum is 8 KiB.
const HTTP1_MAX_BUF: usize = 16 * 1024;

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
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(HTTP1_MAX_BUF);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256);
    let builder = Arc::new(builder);
    let limits = connection_limits(&app.config);
    let lingering = Arc::new(tokio::sync::Semaphore::new(LINGERING_REFUSALS));
    tracing::debug!(
        max_connections = limits.max_total(),
        per_ip = app.config.max_connections_per_ip,
        "connection limits"
    );
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
        let permit = match limits.admit(peer.ip()) {
            Ok(permit) => permit,
            Err(refusal) => {
                refuse(socket, refusal, &lingering, app.feed.metrics());
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
                    let io =
                        WriteDeadline::new(Prefixed::new(head, socket), app.config.write_timeout());
                    let timed_out = io.timed_out_flag();
                    let connection = builder.serve_connection(TokioIo::new(io), service);
                    if let Err(e) = watcher.watch(connection).await {
                        tracing::debug!(%peer, "connection ended: {e}");
                    }
                    if timed_out.load(Relaxed) {
                        app.feed
                            .metrics()
                            .connections_write_timed_out
                            .fetch_add(1, Relaxed);
                    }
                }
                FirstRequest::Gone => {}
            }
            app.feed.metrics().connections_closed.fetch_add(1, Relaxed);
            drop(permit);
            drop(drain);
        });
    }

    tracing::info!("shutting down: ending streams");
    drop(limits);
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

/// The caps for this server: `--max-connections` or the open-file limit less headroom, and
/// `--max-connections-per-ip`.
fn connection_limits(config: &crate::config::Config) -> Arc<ConnectionLimits> {
    let max_total = config.max_connections.unwrap_or_else(|| {
        let nofile = rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft);
        limits::default_max_connections(nofile)
    });
    ConnectionLimits::new(max_total, config.max_connections_per_ip)
}

/// Refusals that may linger at once (see [`refuse`]); past this many, a refused socket is
/// closed at once, so a flood of refused connections cannot hold descriptors.
const LINGERING_REFUSALS: usize = 64;

/// How long a refused connection may linger to read the client's request before closing.
const REFUSAL_LINGER: Duration = Duration::from_secs(1);

/// Answers a connection refused at accept and closes it. Closing a socket whose request is
/// still unread makes the kernel send a reset, which can destroy the answer before the client
/// reads it; so, while few refusals are pending, the connection sends its answer, closes its
/// side, and reads what the client sent for up to [`REFUSAL_LINGER`] before closing.
fn refuse(
    socket: tokio::net::TcpStream,
    refusal: limits::Refusal,
    lingering: &Arc<tokio::sync::Semaphore>,
    metrics: &crate::metrics::Metrics,
) {
    let counter = match refusal {
        limits::Refusal::Total => &metrics.connections_refused_total,
        limits::Refusal::PerIp => &metrics.connections_refused_per_ip,
    };
    counter.fetch_add(1, Relaxed);
    // The reply is far smaller than an empty socket buffer: one write sends all of it.
    if socket.try_write(refusal.response()).is_err() {
        return;
    }
    let Ok(permit) = lingering.clone().try_acquire_owned() else {
        return;
    };
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut socket = socket;
        let _ = socket.shutdown().await;
        let mut sink = [0u8; 4096];
        let _ = tokio::time::timeout(REFUSAL_LINGER, async {
            while let Ok(1..) = socket.read(&mut sink).await {}
        })
        .await;
        drop(permit);
    });
}
