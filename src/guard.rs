//! Bounds for the connections that hyper serves: every HTTP/2 connection (h2c, and h2 over
//! TLS), and HTTP/1.1 connections that the direct path hands on.
//!
//! hyper bounds an HTTP/1.1 request head in time, but an HTTP/2 connection that sends its
//! preface and then nothing, or that keeps no stream open, would stay forever; and its default
//! send buffer of 400 KiB per stream let one client that advertises a huge window and never
//! reads grow the server by ~480 KiB per stream. So each connection is driven by [`serve`],
//! which watches three deadlines that hyper does not have:
//!
//! - **first request**: a connection with no request within the header timeout is closed;
//! - **idle**: a connection with no open request for `--idle-timeout-secs` is closed
//!   (HTTP/2 gets a GOAWAY), and HTTP/2 peers are pinged meanwhile;
//! - **write timeout**: a response body whose last frame has not been taken by hyper for
//!   `--write-timeout-secs` (the peer stopped reading, or gave the stream no window) ends the
//!   connection and counts its SSE streams in `tickcast_streams_evicted_total`. hyper offers
//!   no way to reset one stream from outside, so the whole connection goes; a peer that reads
//!   nothing blocks all of its streams anyway.
//!
//! [`bound_http2`] sets the per-stream buffer and stream limits, so what the server holds for
//! a slow HTTP/2 reader stays near what it holds for a slow HTTP/1.1 one.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::{Request, Response};
use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::time::Instant;

use crate::http::{self, App};
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;

/// Streams one HTTP/2 connection may have open at once. Browsers open ~6 EventSources per
/// page in practice and load tests 100; hyper's default is 200, which only multiplies what a
/// single slow connection can hold.
pub const MAX_CONCURRENT_STREAMS: u32 = 100;

/// Bytes hyper buffers per HTTP/2 stream beyond what the peer's window lets it send (hyper's
/// default is 400 KiB). A stream that has this much unsent is not polled for more, so its
/// client's cursor falls behind instead and catches up (or conflates) when it reads again:
/// the same bound as the kernel's socket buffer on the direct HTTP/1.1 path. One SSE batch is
/// a few KiB, so 16 KiB keeps a live stream flowing.
pub const MAX_SEND_BUF: usize = 16 * 1024;

/// Longest interval between HTTP/2 pings on a connection that receives nothing.
const MAX_PING_INTERVAL: Duration = Duration::from_secs(30);

/// How long a connection closed by a deadline gets to finish its GOAWAY before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// The deadlines [`serve`] enforces.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// From the start of [`serve`] to the first request.
    pub first_request: Duration,
    /// Longest stretch without an open request.
    pub idle: Duration,
    /// Longest a response frame may wait for hyper to take the next one.
    pub write_timeout: Duration,
}

impl Limits {
    /// How often the deadlines are checked: a quarter of the shortest, between 50 ms and 1 s.
    fn tick(&self) -> Duration {
        (self.first_request.min(self.idle).min(self.write_timeout) / 4)
            .clamp(Duration::from_millis(50), Duration::from_secs(1))
    }
}

/// Applies the HTTP/2 bounds to `builder`: [`MAX_CONCURRENT_STREAMS`], [`MAX_SEND_BUF`], and
/// pings every half of `idle` (at most 30 s), each to be answered within the same time.
pub fn bound_http2(builder: &mut auto::Builder<TokioExecutor>, idle: Duration) {
    let ping = (idle / 2).clamp(Duration::from_millis(500), MAX_PING_INTERVAL);
    builder
        .http2()
        .timer(hyper_util::rt::TokioTimer::new())
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .max_send_buf_size(MAX_SEND_BUF)
        .keep_alive_interval(ping)
        .keep_alive_timeout(ping);
}

/// The body type of warp's responses, which warp does not name.
type WarpBody = <warp::reply::Response as HasBody>::Body;

/// Names the body type of a response.
trait HasBody {
    type Body;
}

impl<B> HasBody for Response<B> {
    type Body = B;
}

/// A future of one routed response.
type Routed = Pin<Box<dyn Future<Output = warp::reply::Response> + Send>>;

/// warp's routes as a hyper service with a type that can be named and cloned cheaply.
#[derive(Clone)]
pub struct Routes(Arc<dyn Fn(Request<Incoming>) -> Routed + Send + Sync>);

impl std::fmt::Debug for Routes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Routes")
    }
}

impl Routes {
    /// The routes `app`'s role serves: every route, or only the status routes of a simulator.
    pub fn new(app: App) -> Routes {
        if app.serves_clients() {
            Routes::of(http::routes(app))
        } else {
            Routes::of(http::status_routes(app))
        }
    }

    fn of<R>(routes: R) -> Routes
    where
        R: warp::Filter<Error = std::convert::Infallible> + Clone + Send + Sync + 'static,
        R::Extract: warp::Reply,
    {
        let service = TowerToHyperService::new(warp::service(routes));
        Routes(Arc::new(move |request| {
            let response = hyper::service::Service::call(&service, request);
            Box::pin(async move {
                match response.await {
                    Ok(response) => response,
                    Err(never) => match never {},
                }
            })
        }))
    }
}

/// Serves `io` with `routes` through `builder` until the peer leaves, a deadline of `limits`
/// passes, or `shutdown` fires (then the connection is closed gracefully).
///
/// `write_timed_out` is set by the socket's own write deadline
/// ([`crate::write_deadline::WriteDeadline`]); when it ends the connection, the SSE streams
/// still on it count as evicted, as if this guard had caught them.
pub async fn serve<I>(
    builder: &auto::Builder<TokioExecutor>,
    io: I,
    routes: Routes,
    limits: Limits,
    mut shutdown: Shutdown,
    metrics: &Metrics,
    write_timed_out: &AtomicBool,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let state = Arc::new(ConnState::new());
    let service = Tracked {
        routes,
        state: state.clone(),
    };
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    let mut tick = tokio::time::interval(limits.tick());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut closing: Option<Instant> = None;
    loop {
        tokio::select! {
            ended = connection.as_mut() => {
                if let Err(e) = ended {
                    tracing::debug!("connection ended: {e}");
                }
                if write_timed_out.load(Relaxed) {
                    metrics.streams_evicted.fetch_add(state.sse_streams_left(), Relaxed);
                }
                return;
            }
            () = shutdown.wait(), if closing.is_none() => {
                connection.as_mut().graceful_shutdown();
                closing = Some(Instant::now());
                continue;
            }
            _ = tick.tick() => {}
        }
        match state.check(&limits) {
            Verdict::Keep => {}
            Verdict::Close(why) => {
                if closing.is_none() {
                    tracing::debug!("closing connection: {why}");
                    connection.as_mut().graceful_shutdown();
                    closing = Some(Instant::now());
                }
            }
            Verdict::Stuck { sse_streams } => {
                tracing::debug!(
                    sse_streams,
                    "closing connection: a response stayed unsent past the write timeout"
                );
                metrics.streams_evicted.fetch_add(sse_streams, Relaxed);
                return;
            }
        }
        if closing.is_some_and(|at| at.elapsed() > CLOSE_GRACE) && !shutdown.is_fired() {
            return;
        }
    }
}

/// What the deadlines say about a connection.
#[derive(Debug, PartialEq)]
enum Verdict {
    Keep,
    /// Close gracefully, for this reason.
    Close(&'static str),
    /// A response is stuck: drop the connection; it carried this many SSE streams.
    Stuck {
        sse_streams: u64,
    },
}

/// What one connection's requests tell its watcher.
#[derive(Debug)]
struct ConnState {
    /// Time zero of the millisecond clocks below.
    start: Instant,
    /// Requests whose response has not been fully handed to hyper (or dropped).
    open: AtomicUsize,
    /// Whether any request has arrived.
    served: AtomicBool,
    /// When `open` last fell to zero, ms since `start`.
    idle_since_ms: AtomicU64,
    /// The response bodies alive on this connection.
    bodies: Mutex<Vec<Arc<BodyClock>>>,
}

/// When a response body last handed hyper a frame that hyper has not yet come back for.
#[derive(Debug, Default)]
struct BodyClock {
    /// ms since the connection's start, plus one; 0 while hyper is polling for more.
    waiting_since: AtomicU64,
    /// Whether the body is an SSE stream (counted when evicted).
    sse: bool,
}

impl ConnState {
    fn new() -> ConnState {
        ConnState {
            start: Instant::now(),
            open: AtomicUsize::new(0),
            served: AtomicBool::new(false),
            idle_since_ms: AtomicU64::new(0),
            bodies: Mutex::new(Vec::new()),
        }
    }

    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// SSE streams not yet ended: alive, or with a frame hyper never came back for.
    fn sse_streams_left(&self) -> u64 {
        let bodies = self
            .bodies
            .lock()
            .expect("no panics while holding the lock");
        bodies
            .iter()
            .filter(|c| c.sse && (Arc::strong_count(c) > 1 || c.waiting_since.load(Relaxed) != 0))
            .count() as u64
    }

    fn check(&self, limits: &Limits) -> Verdict {
        let now = self.now_ms();
        let ms = |d: Duration| d.as_millis() as u64;
        let mut sse_streams = 0;
        let mut stuck = false;
        {
            let mut bodies = self
                .bodies
                .lock()
                .expect("no panics while holding the lock");
            bodies.retain(|clock| Arc::strong_count(clock) > 1);
            for clock in bodies.iter() {
                let since = clock.waiting_since.load(Relaxed);
                if since != 0 && now.saturating_sub(since - 1) > ms(limits.write_timeout) {
                    stuck = true;
                    sse_streams += u64::from(clock.sse);
                }
            }
        }
        if stuck {
            return Verdict::Stuck { sse_streams };
        }
        if !self.served.load(Relaxed) {
            if now > ms(limits.first_request) {
                return Verdict::Close("no request within the header timeout");
            }
        } else if self.open.load(Relaxed) == 0
            && now.saturating_sub(self.idle_since_ms.load(Relaxed)) > ms(limits.idle)
        {
            return Verdict::Close("idle");
        }
        Verdict::Keep
    }
}

/// Counts a request as open until its response body is dropped.
#[derive(Debug)]
struct OpenRequest(Arc<ConnState>);

impl OpenRequest {
    fn new(state: Arc<ConnState>) -> OpenRequest {
        state.served.store(true, Relaxed);
        state.open.fetch_add(1, Relaxed);
        OpenRequest(state)
    }
}

impl Drop for OpenRequest {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Relaxed) == 1 {
            self.0.idle_since_ms.store(self.0.now_ms(), Relaxed);
        }
    }
}

/// The routes, with each request and response body tracked for the connection's watcher.
#[derive(Debug, Clone)]
struct Tracked {
    routes: Routes,
    state: Arc<ConnState>,
}

impl hyper::service::Service<Request<Incoming>> for Tracked {
    type Response = Response<TrackedBody>;
    type Error = std::convert::Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let open = OpenRequest::new(self.state.clone());
        let response = (self.routes.0)(request);
        Box::pin(async move {
            let response = response.await;
            let sse = response
                .headers()
                .get(hyper::header::CONTENT_TYPE)
                .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
            let clock = Arc::new(BodyClock {
                waiting_since: AtomicU64::new(0),
                sse,
            });
            open.0
                .bodies
                .lock()
                .expect("no panics while holding the lock")
                .push(clock.clone());
            Ok(response.map(|inner| TrackedBody { inner, clock, open }))
        })
    }
}

/// A response body that notes when hyper stops coming back for frames.
#[derive(Debug)]
struct TrackedBody {
    inner: WarpBody,
    clock: Arc<BodyClock>,
    open: OpenRequest,
}

impl Body for TrackedBody {
    type Data = bytes::Bytes;
    type Error = warp::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        self.clock.waiting_since.store(0, Relaxed);
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(_))) = &polled {
            let now = self.open.0.now_ms();
            self.clock.waiting_since.store(now + 1, Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
