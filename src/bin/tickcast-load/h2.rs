//! `--h2`: streams multiplexed over HTTP/2 connections, `--streams-per-conn` to each, over TLS
//! (ALPN `h2`) for `https://` or with prior knowledge (h2c) for `http://`.
//!
//! A client here is still one stream: stream *i* uses connection *i / streams-per-conn*, which
//! the first of its streams to start opens. Each stream's DATA frames go through the same SSE
//! decoding, id checks and latency recording as an HTTP/1.1 body, so the reports of the two
//! modes compare field for field.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use h2::client::SendRequest;
use tokio::sync::OnceCell;
use tokio::task::AbortHandle;

use crate::conn::{self, Failure, OpenGuard, Shared, Socket, Step, Stream};
use crate::http::Framing;

/// Receive window per stream: a few batches of a busy feed, so the server never waits on
/// window updates while the client keeps up.
const STREAM_WINDOW: u32 = 1 << 20;
/// Receive window per connection: room for every stream's window at 16 streams, so a few slow
/// streams do not stall the others.
const CONNECTION_WINDOW: u32 = 16 << 20;

/// A connection's request handle, or why it could not be opened (reason, detail).
type Opened = Result<SendRequest<Bytes>, (String, String)>;

/// The HTTP/2 connections of a run.
#[derive(Debug)]
pub struct Pool {
    streams_per_conn: usize,
    uri: http::Uri,
    /// `Bearer <--token>`, if given.
    authorization: Option<String>,
    user_agent: String,
    conns: Vec<OnceCell<Opened>>,
    /// The tasks driving each connection, ended by [`Pool::close`].
    drivers: Mutex<Vec<AbortHandle>>,
}

impl Pool {
    /// Room for `clients` streams, `streams_per_conn` to a connection, each requesting `uri`.
    pub fn new(clients: u64, streams_per_conn: usize, uri: http::Uri, token: Option<&str>) -> Pool {
        let conns = clients.div_ceil(streams_per_conn as u64) as usize;
        Pool {
            streams_per_conn,
            uri,
            authorization: token.map(|t| format!("Bearer {t}")),
            user_agent: format!("tickcast-load/{}", env!("CARGO_PKG_VERSION")),
            conns: (0..conns).map(|_| OnceCell::new()).collect(),
            drivers: Mutex::new(Vec::new()),
        }
    }

    /// Connections the run opens at most.
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Streams per connection.
    pub fn streams_per_conn(&self) -> usize {
        self.streams_per_conn
    }

    /// Connections that completed their handshake.
    pub fn opened(&self) -> usize {
        self.conns
            .iter()
            .filter(|c| matches!(c.get(), Some(Ok(_))))
            .count()
    }

    /// Ends every connection.
    pub fn close(&self) {
        for driver in crate::stats::lock(&self.drivers).drain(..) {
            driver.abort();
        }
    }
}

/// Runs stream number `index` until the server ends it or the task is cancelled.
pub async fn run(index: usize, shared: Arc<Shared>) {
    let counters = &shared.counters;
    let opened = tokio::time::timeout(shared.timeout, open(index, &shared)).await;
    let mut body = match opened {
        Ok(Ok(body)) => body,
        Ok(Err(f)) => return counters.fail(f.reason, f.detail),
        Err(_) => return counters.fail("timeout".into(), conn::timeout_detail(&shared)),
    };
    counters.connected.fetch_add(1, Relaxed);
    counters.open.fetch_add(1, Relaxed);
    let _open = OpenGuard(counters);
    let mut stream = Stream::new(Framing::UntilEof);
    let mut step = Step::More;
    while step == Step::More {
        step = match body.data().await {
            Some(Ok(data)) => {
                let _ = body.flow_control().release_capacity(data.len());
                crate::conn::with_shard(|shard| stream.process(&data, shard, counters))
            }
            // The server ended the stream (shutdown) or the connection broke.
            Some(Err(_)) | None => Step::Closed,
        };
    }
    conn::ended(counters, step);
}

/// Opens the stream: its connection first if it is the first of its group.
async fn open(index: usize, shared: &Shared) -> Result<h2::RecvStream, Failure> {
    let pool = shared.h2.as_ref().expect("h2 mode has a pool");
    let group = index / pool.streams_per_conn;
    let opened = pool.conns[group]
        .get_or_init(|| connect(group, shared))
        .await
        .clone();
    let send = opened.map_err(|(reason, detail)| Failure::new(reason, detail))?;
    let target = shared.target;
    let h2_failure = |what: &str, e: h2::Error| {
        Failure::new(
            format!("h2 {what}: {}", short(&e)),
            format!("h2 {what} {target}: {e}"),
        )
    };
    let mut send = send.ready().await.map_err(|e| h2_failure("ready", e))?;
    let mut request = http::Request::get(pool.uri.clone())
        .header("accept", "text/event-stream")
        .header("cache-control", "no-cache")
        .header("user-agent", &pool.user_agent);
    if let Some(authorization) = &pool.authorization {
        request = request.header("authorization", authorization);
    }
    let request = request.body(()).expect("a valid request");
    let (response, _) = send
        .send_request(request, true)
        .map_err(|e| h2_failure("request", e))?;
    let response = response.await.map_err(|e| h2_failure("response", e))?;
    let status = response.status().as_u16();
    if status != 200 {
        return Err(Failure::new(
            format!("http {status}"),
            format!("{target} answered {status}"),
        ));
    }
    let event_stream = response
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if !event_stream {
        return Err(Failure::new(
            "not text/event-stream",
            format!("{target} answered 200 but not with Content-Type: text/event-stream"),
        ));
    }
    Ok(response.into_body())
}

/// Opens connection `group`: TCP (and TLS with ALPN `h2`), then the HTTP/2 handshake; spawns
/// the task that drives it.
async fn connect(group: usize, shared: &Shared) -> Opened {
    let target = shared.target;
    let fail = |f: Failure| (f.reason, f.detail);
    let socket = conn::connect(shared, conn::source_for(shared, group))
        .await
        .map_err(fail)?;
    let mut builder = h2::client::Builder::new();
    builder
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW);
    let handshake_failed = |e: h2::Error| {
        (
            format!("h2 handshake: {}", short(&e)),
            format!("h2 handshake with {target}: {e}"),
        )
    };
    let (send, driver) = match socket {
        Socket::Plain(tcp) => {
            let (send, connection) = builder.handshake(tcp).await.map_err(handshake_failed)?;
            (send, tokio::spawn(async move { drop(connection.await) }))
        }
        Socket::Tls(tls) => {
            if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
                return Err((
                    "no h2 over tls".into(),
                    format!("{target} did not negotiate HTTP/2 (ALPN h2)"),
                ));
            }
            let (send, connection) = builder.handshake(tls).await.map_err(handshake_failed)?;
            (send, tokio::spawn(async move { drop(connection.await) }))
        }
    };
    let pool = shared.h2.as_ref().expect("h2 mode has a pool");
    crate::stats::lock(&pool.drivers).push(driver.abort_handle());
    Ok(send)
}

/// An h2 error in a few words, for grouping failures.
fn short(e: &h2::Error) -> String {
    e.to_string().to_lowercase()
}
