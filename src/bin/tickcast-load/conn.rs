//! One connection: a raw TCP socket (or TLS over it), a hand-written GET, the response head,
//! then the body read into a per-thread buffer and parsed in place. Nothing is allocated per
//! event. HTTP/2 streams ([`crate::h2`]) reuse the same decoding and counting.

use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

use crate::http::{self, Body, Framing, ProtocolError};
use crate::sse::{self, Event, Sink};
use crate::stats::{self, Counters, Shard, Tally};

/// Bytes read from a socket at once.
const READ_BUF: usize = 64 * 1024;

/// Bytes read from a TLS stream at once: one TLS record's worth, per connection (a TLS read
/// decrypts into the caller's buffer across awaits, so the per-thread buffer cannot serve).
const TLS_READ_BUF: usize = 16 * 1024;

/// One URL: where to connect and the request to send (ending in the blank line).
#[derive(Debug)]
pub struct Target {
    pub addr: SocketAddr,
    pub request: Vec<u8>,
}

impl Target {
    /// The request, resuming after `last_id` if there is one.
    fn request(&self, last_id: Option<u64>) -> Vec<u8> {
        match last_id {
            None => self.request.clone(),
            Some(id) => {
                let mut r = self.request[..self.request.len() - 2].to_vec();
                r.extend_from_slice(format!("Last-Event-ID: {id}\r\n\r\n").as_bytes());
                r
            }
        }
    }
}

/// What every connection shares.
#[derive(Debug)]
pub struct Shared {
    /// The first URL's address (the only one with --h2).
    pub target: SocketAddr,
    /// Local addresses to bind, round-robin; empty lets the kernel choose.
    pub sources: Vec<IpAddr>,
    /// Every URL: client `i` starts on target `i mod N` and moves to another one when it
    /// reconnects (HTTP/1.1; see [`target_for`]).
    pub targets: Vec<Target>,
    /// Reconnect after this delay when a stream ends (`--reconnect`).
    pub reconnect: Option<Duration>,
    /// Limit on connecting, sending the request and reading the response head.
    pub timeout: Duration,
    pub counters: Counters,
    /// For `https://`: the connector and the name the certificate must carry.
    pub tls: Option<(Arc<tokio_rustls::rustls::ClientConfig>, ServerName<'static>)>,
    /// For `--h2`: the shared HTTP/2 connections.
    pub h2: Option<crate::h2::Pool>,
}

/// Per worker thread: the read buffer and the statistics shard.
struct Local {
    buf: Box<[u8]>,
    shard: Arc<Mutex<Shard>>,
}

thread_local! {
    static LOCAL: RefCell<Local> = RefCell::new(Local {
        buf: vec![0; READ_BUF].into_boxed_slice(),
        shard: stats::new_shard(),
    });
}

/// Why a connection never became a stream: `reason` groups failures in the report.
#[derive(Debug)]
pub struct Failure {
    pub reason: String,
    pub detail: String,
}

impl Failure {
    pub fn io(what: &str, target: SocketAddr, e: &io::Error) -> Failure {
        let msg = e.to_string();
        let short = msg
            .split(" (os error")
            .next()
            .unwrap_or(&msg)
            .to_lowercase();
        Failure {
            reason: format!("{what}: {short}"),
            detail: format!("{what} {target}: {msg}"),
        }
    }

    pub fn new(reason: impl Into<String>, detail: impl Into<String>) -> Failure {
        Failure {
            reason: reason.into(),
            detail: detail.into(),
        }
    }
}

/// Decrements the open-stream gauge when the stream ends or its task is cancelled.
pub struct OpenGuard<'a>(pub &'a Counters);

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Relaxed);
    }
}

/// Runs `f` with this thread's statistics shard.
pub fn with_shard<T>(f: impl FnOnce(&Mutex<Shard>) -> T) -> T {
    LOCAL.with_borrow(|local| f(&local.shard))
}

/// A connected socket, plain or TLS.
pub enum Socket {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// Runs connection number `index` until the server ends it (and, with `--reconnect`, for
/// ever, resuming on the next target) or the task is cancelled.
pub async fn run(index: usize, shared: Arc<Shared>) {
    if shared.h2.is_some() {
        return crate::h2::run(index, shared).await;
    }
    let counters = &shared.counters;
    let source = source_for(&shared, index);
    let mut last_id = None;
    let mut ended_at: Option<u64> = None;
    for attempt in 0.. {
        let target = &shared.targets[target_for(index, attempt, shared.targets.len())];
        let request = target.request(last_id);
        let opened =
            tokio::time::timeout(shared.timeout, open(&shared, target.addr, &request, source))
                .await;
        let (socket, framing, rest) = match opened {
            Ok(Ok(opened)) => opened,
            Ok(Err(f)) => {
                counters.fail(f.reason, f.detail);
                match shared.reconnect {
                    Some(delay) if ended_at.is_some() => {
                        tokio::time::sleep(delay).await;
                        continue;
                    }
                    _ => return,
                }
            }
            Err(_) => {
                counters.fail("timeout".into(), timeout_detail(&shared));
                match shared.reconnect {
                    Some(delay) if ended_at.is_some() => {
                        tokio::time::sleep(delay).await;
                        continue;
                    }
                    _ => return,
                }
            }
        };
        counters.connected.fetch_add(1, Relaxed);
        counters.open.fetch_add(1, Relaxed);
        let open_guard = OpenGuard(counters);
        let mut stream = Stream::new(framing);
        stream.last_id = last_id;
        stream.ended_at = ended_at.take();
        if stream.ended_at.is_some() {
            counters.reconnects.fetch_add(1, Relaxed);
        }

        // Body bytes that came with the head.
        let mut step = LOCAL.with_borrow_mut(|local| stream.process(&rest, &local.shard, counters));
        drop(rest);
        match socket {
            Socket::Plain(socket) => {
                while step == Step::More {
                    if poll_fn(|cx| socket.poll_read_ready(cx)).await.is_err() {
                        step = Step::Closed;
                        break;
                    }
                    step = LOCAL.with_borrow_mut(|local| match socket.try_read(&mut local.buf) {
                        Ok(0) => Step::Closed,
                        Ok(n) => stream.process(&local.buf[..n], &local.shard, counters),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Step::More,
                        Err(_) => Step::Closed,
                    });
                }
            }
            Socket::Tls(mut socket) => {
                let mut buf = vec![0u8; TLS_READ_BUF];
                while step == Step::More {
                    step = match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => Step::Closed,
                        Ok(n) => LOCAL
                            .with_borrow(|local| stream.process(&buf[..n], &local.shard, counters)),
                    };
                }
            }
        }
        drop(open_guard);
        ended(counters, step);
        let Some(delay) = shared.reconnect else {
            return;
        };
        last_id = stream.last_id;
        ended_at = Some(stats::now_epoch_us());
        tokio::time::sleep(delay).await;
    }
}

/// Which of `n` targets connection `index` uses for its `attempt`-th connection: first
/// `index mod n`; then the next ones in turn, starting at an offset that differs among the
/// connections of one target, so that when a target dies its connections spread over all the
/// others, as a load balancer would spread them, instead of all moving to the next one.
fn target_for(index: usize, attempt: usize, n: usize) -> usize {
    if n <= 1 {
        return 0;
    }
    let offset = if attempt == 0 {
        0
    } else {
        (index / n) % (n - 1)
    };
    (index + attempt + offset) % n
}

/// Counts a stream that ended, and how.
pub fn ended(counters: &Counters, step: Step) {
    counters.disconnects.fetch_add(1, Relaxed);
    if step == Step::Protocol {
        counters.protocol_errors.fetch_add(1, Relaxed);
    }
}

/// The source address for connection `index`, round-robin; `None` lets the kernel choose.
pub fn source_for(shared: &Shared, index: usize) -> Option<IpAddr> {
    match shared.sources.len() {
        0 => None,
        n => Some(shared.sources[index % n]),
    }
}

/// The failure detail of a connection that ran out of `--timeout`.
pub fn timeout_detail(shared: &Shared) -> String {
    format!(
        "no response from {} within {:?}",
        shared.target, shared.timeout
    )
}

/// Connects to the target from `source`, with the TLS handshake for `https://`.
pub async fn connect(shared: &Shared, source: Option<IpAddr>) -> Result<Socket, Failure> {
    connect_to(shared, shared.target, source).await
}

/// Connects to `target` from `source`, with the TLS handshake for `https://`.
async fn connect_to(
    shared: &Shared,
    target: SocketAddr,
    source: Option<IpAddr>,
) -> Result<Socket, Failure> {
    let socket = match target {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(|e| Failure::io("socket", target, &e))?;
    if let Some(ip) = source {
        socket
            .bind(SocketAddr::new(ip, 0))
            .map_err(|e| Failure::io("bind", target, &e))?;
    }
    let socket = socket
        .connect(target)
        .await
        .map_err(|e| Failure::io("connect", target, &e))?;
    let _ = socket.set_nodelay(true);
    let Some((config, name)) = &shared.tls else {
        return Ok(Socket::Plain(socket));
    };
    let tls = TlsConnector::from(config.clone())
        .connect(name.clone(), socket)
        .await
        .map_err(|e| Failure::io("tls handshake", target, &e))?;
    Ok(Socket::Tls(Box::new(tls)))
}

/// Connects, sends the request and reads the head; returns the socket, the body framing and
/// any body bytes read with the head.
async fn open(
    shared: &Shared,
    target: SocketAddr,
    request_bytes: &[u8],
    source: Option<IpAddr>,
) -> Result<(Socket, Framing, Vec<u8>), Failure> {
    let mut socket = connect_to(shared, target, source).await?;
    let (framing, rest) = match &mut socket {
        Socket::Plain(plain) => request(plain, request_bytes, target).await?,
        Socket::Tls(tls) => request(tls.as_mut(), request_bytes, target).await?,
    };
    Ok((socket, framing, rest))
}

/// Sends the request on `socket` and reads the response head.
async fn request<S: AsyncRead + AsyncWrite + Unpin>(
    socket: &mut S,
    request: &[u8],
    target: SocketAddr,
) -> Result<(Framing, Vec<u8>), Failure> {
    socket
        .write_all(request)
        .await
        .map_err(|e| Failure::io("write", target, &e))?;
    socket
        .flush()
        .await
        .map_err(|e| Failure::io("write", target, &e))?;
    let mut buf = Vec::with_capacity(4096);
    loop {
        if buf.len() == buf.capacity() {
            buf.reserve(4096);
        }
        let n = socket
            .read_buf(&mut buf)
            .await
            .map_err(|e| Failure::io("read", target, &e))?;
        if n == 0 {
            return Err(Failure::new(
                "closed before the response",
                format!("{target} closed the connection before sending a response"),
            ));
        }
        if let Some(len) = http::head_len(&buf) {
            let head = http::parse_head(&buf[..len]).map_err(|e| {
                Failure::new("bad response", format!("bad response from {target}: {e}"))
            })?;
            if head.status != 200 {
                let line = buf.split(|&b| b == b'\n').next().unwrap_or_default();
                return Err(Failure::new(
                    format!("http {}", head.status),
                    format!(
                        "{target} answered {:?}",
                        String::from_utf8_lossy(line).trim()
                    ),
                ));
            }
            if !head.event_stream {
                return Err(Failure::new(
                    "not text/event-stream",
                    format!("{target} answered 200 but not with Content-Type: text/event-stream"),
                ));
            }
            let rest = buf.split_off(len);
            return Ok((head.framing, rest));
        }
        if buf.len() > http::MAX_HEAD {
            return Err(Failure::new(
                "bad response",
                format!(
                    "{target} sent a response head over {} bytes",
                    http::MAX_HEAD
                ),
            ));
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    More,
    /// The body ended, or the connection closed or broke.
    Closed,
    /// The body could not be decoded.
    Protocol,
}

/// Decoding state of one established stream.
#[derive(Debug)]
pub struct Stream {
    body: Body,
    sse: sse::Parser,
    last_id: Option<u64>,
    /// When the previous stream of this client ended (epoch µs), until the first event of
    /// this one: a reconnection being timed.
    ended_at: Option<u64>,
}

impl Stream {
    pub fn new(framing: Framing) -> Stream {
        Stream {
            body: Body::new(framing),
            sse: sse::Parser::default(),
            last_id: None,
            ended_at: None,
        }
    }

    /// Handles one read's bytes and adds what it saw to the counters and the shard.
    pub fn process(&mut self, bytes: &[u8], shard: &Mutex<Shard>, counters: &Counters) -> Step {
        if bytes.is_empty() {
            return Step::More;
        }
        let measuring = counters.measuring.load(Relaxed);
        let now_us = stats::now_epoch_us();
        let mut shard = stats::lock(shard);
        let result = self.feed(bytes, now_us, measuring, &mut shard);
        drop(shard);
        let (tally, step) = match result {
            Ok((tally, false)) => (tally, Step::More),
            Ok((tally, true)) => (tally, Step::Closed),
            Err((tally, _)) => (tally, Step::Protocol),
        };
        tally.add_to(counters, bytes.len() as u64, measuring);
        step
    }

    /// Decodes `bytes`; returns what was seen and whether the body ended.
    fn feed(
        &mut self,
        bytes: &[u8],
        now_us: u64,
        measuring: bool,
        shard: &mut Shard,
    ) -> Result<(Tally, bool), (Tally, ProtocolError)> {
        let mut sink = EventSink {
            shard,
            ended_at: &mut self.ended_at,
            last_id: &mut self.last_id,
            now_us,
            measuring,
            tally: Tally::default(),
        };
        let mut too_long = false;
        let sse = &mut self.sse;
        let result = self.body.decode(bytes, &mut |part| {
            if !too_long && sse.feed(part, &mut sink).is_err() {
                too_long = true;
            }
        });
        let tally = sink.tally;
        match result {
            Err(e) => Err((tally, e)),
            Ok(_) if too_long => Err((tally, ProtocolError("SSE line too long"))),
            Ok(done) => Ok((tally, done)),
        }
    }
}

/// Counts each event, checks id order, and records latency during the steady window.
struct EventSink<'a> {
    shard: &'a mut Shard,
    ended_at: &'a mut Option<u64>,
    last_id: &'a mut Option<u64>,
    now_us: u64,
    measuring: bool,
    tally: Tally,
}

impl Sink for EventSink<'_> {
    fn event(&mut self, event: Event<'_>) {
        self.tally.events += 1;
        if let Some(ended) = self.ended_at.take() {
            let us = self.now_us.saturating_sub(ended);
            self.tally.reconnect_us = Some(us);
            self.shard.record_reconnect(us);
            if event.name == b"snapshot" {
                self.tally.reconnect_snapshots += 1;
            }
        }
        self.shard.count_name(event.name);
        if let Some(id) = event.id {
            match *self.last_id {
                Some(last) if id <= last => self.tally.order_errors += 1,
                Some(last) => {
                    self.tally.id_jumps += id - last - 1;
                    *self.last_id = Some(id);
                }
                None => *self.last_id = Some(id),
            }
        }
        if self.measuring {
            if let Some(ts) = event.ts {
                self.shard
                    .record_latency(self.now_us.saturating_sub(stats::ts_to_us(ts)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_MS: u64 = 1_732_480_001_000;

    #[test]
    fn the_connections_of_a_dead_target_spread_over_the_others() {
        assert_eq!(target_for(5, 0, 1), 0);
        assert_eq!(target_for(5, 3, 1), 0);
        // Three targets: the connections that started on target 0 move to 1 and 2 in turn.
        let first: Vec<usize> = (0..12).map(|i| target_for(i, 0, 3)).collect();
        assert_eq!(first, [0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2]);
        let from_zero: Vec<usize> = (0..12).step_by(3).map(|i| target_for(i, 1, 3)).collect();
        assert_eq!(from_zero, [1, 2, 1, 2]);
        // Later attempts go on through every target, the first one included.
        for index in 0..12 {
            let mut seen: Vec<usize> = (1..=3).map(|a| target_for(index, a, 3)).collect();
            seen.sort_unstable();
            assert_eq!(seen, [0, 1, 2], "connection {index}");
        }
    }

    fn quote(id: u64, ts: u64) -> String {
        format!("event: quote\nid: {id}\ndata: {{\"symbol\":\"A\",\"seq\":{id},\"ts\":{ts}}}\n\n")
    }

    /// A chunked body: each frame in its own chunk.
    fn chunked(frames: &[String]) -> Vec<u8> {
        let mut out = Vec::new();
        for f in frames {
            out.extend_from_slice(format!("{:x}\r\n{f}\r\n", f.len()).as_bytes());
        }
        out
    }

    #[test]
    fn counts_events_ids_and_latency_across_every_split() {
        let frames = vec![
            "retry: 3000\n\n".to_string(),
            "event: snapshot\nid: 10\ndata: [{\"ts\":1}]\n\n".to_string(),
            quote(11, NOW_MS - 5),
            quote(14, NOW_MS - 7),
            quote(14, NOW_MS - 2),
            quote(12, NOW_MS - 3),
            "event: heartbeat\ndata: {\"ts\":1732480001000,\"seq\":14}\n\n".to_string(),
            quote(15, NOW_MS - 1),
        ];
        let body = chunked(&frames);
        for cut in 0..=body.len() {
            let mut stream = Stream::new(Framing::Chunked);
            let mut shard = Shard::default();
            let mut total = Tally::default();
            for part in [&body[..cut], &body[cut..]] {
                let (t, done) = stream.feed(part, NOW_MS * 1000, true, &mut shard).unwrap();
                assert!(!done);
                total.events += t.events;
                total.order_errors += t.order_errors;
                total.id_jumps += t.id_jumps;
            }
            assert_eq!(total.events, 7, "cut at {cut}");
            assert_eq!(total.order_errors, 2, "cut at {cut}");
            assert_eq!(total.id_jumps, 2, "cut at {cut}");
            assert_eq!(shard.latency.len(), 6, "cut at {cut}");
            assert_eq!(shard.max_latency_us, 7000);
            let names: Vec<(&[u8], u64)> = shard.names.iter().map(|(k, v)| (&**k, *v)).collect();
            assert_eq!(
                names,
                vec![(&b"snapshot"[..], 1), (b"quote", 5), (b"heartbeat", 1)]
            );
        }
    }

    #[test]
    fn no_latency_outside_the_window_and_end_of_body() {
        let mut body = chunked(&[quote(1, NOW_MS)]);
        body.extend_from_slice(b"0\r\n\r\n");
        let mut stream = Stream::new(Framing::Chunked);
        let mut shard = Shard::default();
        let (t, done) = stream
            .feed(&body, NOW_MS * 1000, false, &mut shard)
            .unwrap();
        assert!(done);
        assert_eq!(t.events, 1);
        assert!(shard.latency.is_empty());
    }

    #[test]
    fn reports_broken_framing() {
        let mut stream = Stream::new(Framing::Chunked);
        let mut shard = Shard::default();
        assert!(stream.feed(b"zz\r\n", 0, true, &mut shard).is_err());
    }
}
