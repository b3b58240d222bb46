//! The server around the filters: our own accept loop on hyper-util, for what `warp::serve`
//! does not give — HTTP/1.1 and HTTP/2 (prior knowledge, h2c, or ALPN `h2` over TLS) on one
//! port, `TCP_NODELAY`, deadlines and buffer bounds on every connection ([`crate::guard`]),
//! and a shutdown that ends open SSE streams instead of waiting for them forever.

use std::future::Future;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::cluster;
use crate::config::{Config, Role};
use crate::direct::{self, FirstRequest, Prefixed};
use crate::guard::{self, Limits, Routes};
use crate::http::App;
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

/// Connections the kernel queues for `accept` (it caps this at `net.core.somaxconn`, 4,096 on
/// current Linux). tokio's `TcpListener::bind` asks for 1,024: when an edge dies and thousands
/// of its clients reconnect to the others within a millisecond, the SYNs past that are dropped
/// and those clients wait for the retransmit, a second later (measured in
/// docs/BENCHMARKS.md, "Cluster").
pub const LISTEN_BACKLOG: u32 = 4096;

/// A listening socket on `addr` with [`LISTEN_BACKLOG`] (and `SO_REUSEADDR`, as std sets it,
/// so that a restarted node can listen again at once).
///
/// # Errors
/// The address cannot be bound.
pub fn listen(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

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
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
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
    mut config: Config,
    specs: Vec<SymbolSpec>,
    shutdown_signal: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    config.load_tls()?;
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
    if let Some(tls) = &app.config.tls {
        tracing::info!(
            fingerprint = %tls.fingerprint,
            self_signed = tls.self_signed_pem.is_some(),
            "TLS certificate SHA-256 {}",
            tls.fingerprint
        );
    }
    let scheme = if app.config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(
            %addr,
            symbols = app.feed.specs().len(),
            seed,
            rate = app.config.rate,
            flush_ms = app.config.flush_ms,
            "tickcast listening on {scheme}://{addr}"
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
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(HTTP1_MAX_BUF);
    guard::bound_http2(&mut builder, app.config.idle_timeout());
    let limits = connection_limits(&app.config);
    let lingering = Arc::new(tokio::sync::Semaphore::new(LINGERING_REFUSALS));
    tracing::debug!(
        max_connections = limits.max_total(),
        per_ip = app.config.max_connections_per_ip,
        "connection limits"
    );
    let shared = Arc::new(Shared {
        builder,
        routes: Routes::new(app.clone()),
        limits: Limits {
            first_request: HEADER_READ_TIMEOUT,
            idle: app.config.idle_timeout(),
            write_timeout: app.config.write_timeout(),
        },
        app: app.clone(),
    });
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
        let shared = shared.clone();
        let drain = drain_tx.clone();
        app.feed
            .metrics()
            .connections_accepted
            .fetch_add(1, Relaxed);
        tokio::spawn(async move {
            serve_socket(socket, &shared).await;
            shared
                .app
                .feed
                .metrics()
                .connections_closed
                .fetch_add(1, Relaxed);
            drop(permit);
            drop(drain);
        });
    }

    tracing::info!("shutting down: ending streams");
    drop(listener);
    trigger.fire();
    drop(drain_tx);
    // Connections see the trigger and close gracefully (crate::guard); streams end by it.
    let all_closed = async {
        let _ = drain_rx.recv().await;
    };
    if tokio::time::timeout(SHUTDOWN_GRACE, all_closed)
        .await
        .is_err()
    {
        tracing::warn!("connections still open after {SHUTDOWN_GRACE:?}; dropping them");
    }
}

/// What every connection task shares.
struct Shared {
    builder: auto::Builder<TokioExecutor>,
    routes: Routes,
    limits: Limits,
    app: App,
}

/// Serves one accepted socket: the TLS handshake first when TLS is on (within the header
/// timeout), then by protocol: HTTP/2 negotiated by ALPN goes straight to hyper; HTTP/1.1 and
/// plain connections have their first request read by the direct path.
async fn serve_socket(socket: TcpStream, shared: &Shared) {
    let Some(tls) = &shared.app.config.tls else {
        return serve_plain(socket, shared).await;
    };
    let stream =
        match tokio::time::timeout(HEADER_READ_TIMEOUT, tls.acceptor().accept(socket)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return tracing::debug!("TLS handshake failed: {e}"),
            Err(_) => return tracing::debug!("no TLS handshake within {HEADER_READ_TIMEOUT:?}"),
        };
    if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
        serve_hyper(stream, Bytes::new(), shared).await;
    } else {
        serve_plain(stream, shared).await;
    }
}

/// Reads the first request head: an HTTP/1.1 stream request is served by the direct path,
/// anything else by hyper.
async fn serve_plain<S>(mut socket: S, shared: &Shared)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let app = &shared.app;
    match direct::first_request(&mut socket, app, HEADER_READ_TIMEOUT).await {
        FirstRequest::Stream { stream, cors } => {
            direct::serve_stream(
                socket,
                *stream,
                &cors,
                app.config.write_timeout(),
                app.feed.metrics(),
            )
            .await;
        }
        FirstRequest::Other(head) => serve_hyper(socket, head, shared).await,
        FirstRequest::Gone => {}
    }
}

/// Serves the connection through hyper and warp, starting with the bytes already read.
async fn serve_hyper<S>(socket: S, head: Bytes, shared: &Shared)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let metrics = shared.app.feed.metrics();
    // A socket write blocked past the write timeout fails here; a stream that hyper stops
    // polling (no HTTP/2 window) is caught by `guard::serve`.
    let io = WriteDeadline::new(
        Prefixed::new(head, socket),
        shared.app.config.write_timeout(),
    );
    let timed_out = io.timed_out_flag();
    guard::serve(
        &shared.builder,
        TokioIo::new(io),
        shared.routes.clone(),
        shared.limits,
        shared.app.shutdown.subscribe(),
        metrics,
        &timed_out,
    )
    .await;
    if timed_out.load(Relaxed) {
        metrics.connections_write_timed_out.fetch_add(1, Relaxed);
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
