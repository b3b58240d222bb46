//! HTTP/2 bounds over real sockets, with the `h2` crate as a raw client: a peer that advertises
//! a huge window and never reads costs little memory and is evicted after the write timeout;
//! a connection that opens no stream, or keeps none open, is pinged and closed.

mod common;

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// The largest flow-control window HTTP/2 allows (RFC 9113, section 6.9.1).
const HUGE_WINDOW: u32 = (1 << 31) - 1;

/// A socket whose reads can be stopped: once `paused`, reads stay pending for good while
/// writes go on, like a client that has stopped reading.
struct Pausable {
    inner: TcpStream,
    paused: Arc<AtomicBool>,
}

impl AsyncRead for Pausable {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.paused.load(Relaxed) {
            return Poll::Pending;
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Pausable {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A client that stops reading: opens up to `wanted` `/quotes` streams over one h2c
/// connection with the largest windows, waits for their heads, then stops reading. Returns
/// how many streams are open (answered 200), and what keeps the connection alive.
async fn slow_reader(
    addr: &str,
    wanted: usize,
) -> (
    usize,
    Arc<AtomicBool>,
    Vec<warp::http::Response<h2::RecvStream>>,
) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    // A small receive buffer, so what the server cannot send stays in the server.
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(addr.parse().unwrap()).await.unwrap();
    let paused = Arc::new(AtomicBool::new(false));
    let io = Pausable {
        inner: tcp,
        paused: paused.clone(),
    };
    let (mut client, connection) = h2::client::Builder::new()
        .initial_window_size(HUGE_WINDOW)
        .initial_connection_window_size(HUGE_WINDOW)
        .handshake::<_, bytes::Bytes>(io)
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    // One request first, so the server's SETTINGS (its stream limit) are known.
    client = client.ready().await.unwrap();
    let request = warp::http::Request::get(format!("http://{addr}/healthz"))
        .body(())
        .unwrap();
    let (health, _) = client.send_request(request, true).unwrap();
    assert_eq!(health.await.unwrap().status(), 200);
    let mut responses = Vec::new();
    for _ in 0..wanted {
        // The server's stream limit makes `ready` wait once it is reached.
        match tokio::time::timeout(Duration::from_secs(2), client.clone().ready()).await {
            Ok(Ok(ready)) => client = ready,
            _ => break,
        }
        let request = warp::http::Request::get(format!("http://{addr}/quotes"))
            .body(())
            .unwrap();
        let (response, _) = client.send_request(request, true).unwrap();
        responses.push(response);
    }
    // Let the heads and a little data arrive, then stop reading.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut streaming = Vec::new();
    for response in responses {
        use futures_util::FutureExt;
        // Kept: dropping a response (its body) would cancel its stream.
        if let Some(Ok(head)) = response.now_or_never() {
            if head.status() == 200 {
                streaming.push(head);
            }
        }
    }
    paused.store(true, Relaxed);
    (streaming.len(), paused, streaming)
}

/// Resident memory of `pid`, bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS in /proc/PID/status");
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_reader_with_a_huge_window_that_never_reads_costs_bounded_memory() {
    // A busy feed (about 6,000 events/s), so an unread stream has plenty to buffer.
    let (child, addr) =
        common::spawn_server(&["--start", common::MIDDAY, "--seed", "1", "--rate", "50"]).await;
    let pid = child.id().unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = rss(pid);
    let (opened, _paused, _streams) = slow_reader(&addr, 256).await;
    assert!(
        (1..=100).contains(&opened),
        "at most 100 concurrent streams per connection, got {opened}"
    );
    // With hyper's defaults (256 streams allowed here before, 400 KiB each) this grew by
    // 62 MiB for the 170 streams the debug build opened in time; bounded (100 streams,
    // 16 KiB each) it grows by about 12 MiB, snapshots and stream state included.
    let mut peak = before;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        peak = peak.max(rss(pid));
    }
    let grown = peak.saturating_sub(before);
    assert!(
        grown < 24 << 20,
        "{opened} unread streams grew the server by {} MiB (from {} MiB)",
        grown >> 20,
        before >> 20
    );
    drop(child);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_stream_left_unread_is_evicted_and_counted() {
    let server = common::start(&["--seed", "1", "--rate", "50", "--write-timeout-secs", "1"]).await;
    let addr = server.addr.to_string();
    let (opened, _paused, _streams) = slow_reader(&addr, 3).await;
    assert_eq!(opened, 3);
    let deadline = tokio::time::Instant::now() + common::STEP * 2;
    loop {
        let evicted = common::metric(&server.url(""), "tickcast_streams_evicted_total ").await;
        let (_, _, health) = common::get_json(&server.url("/healthz")).await;
        if evicted == 3 && health["clients"] == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not evicted: {evicted} evicted, {health}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    server.stop().await;
}

/// The client half of an HTTP/2 connection: the preface and an empty SETTINGS frame.
const PREFACE_AND_SETTINGS: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0";

/// Reads HTTP/2 frames until the server closes; returns the frame types seen, or `None` if the
/// connection was still open after `within`.
async fn frames_until_closed(socket: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    let read_all = async {
        let mut types = Vec::new();
        let mut header = [0u8; 9];
        loop {
            if socket.read_exact(&mut header).await.is_err() {
                return types;
            }
            types.push(header[3]);
            let len = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
            let mut payload = vec![0u8; len];
            if socket.read_exact(&mut payload).await.is_err() {
                return types;
            }
        }
    };
    tokio::time::timeout(within, read_all).await.ok()
}

/// HTTP/2 frame types (RFC 9113, section 6).
const PING: u8 = 6;
const GOAWAY: u8 = 7;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_connection_that_opens_no_stream_is_closed_after_the_header_timeout() {
    let server = common::start(&["--seed", "1"]).await;
    let mut socket = TcpStream::connect(server.addr).await.unwrap();
    socket.write_all(PREFACE_AND_SETTINGS).await.unwrap();
    // The header timeout is 10 s; pings (every 30 s by default) do not come into it.
    let frames = frames_until_closed(&mut socket, Duration::from_secs(16))
        .await
        .expect("closed within the header timeout");
    assert!(frames.contains(&GOAWAY), "frames: {frames:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_peer_that_does_not_answer_pings_is_closed() {
    let server = common::start(&["--seed", "1", "--idle-timeout-secs", "2"]).await;
    let mut socket = TcpStream::connect(server.addr).await.unwrap();
    socket.write_all(PREFACE_AND_SETTINGS).await.unwrap();
    // Pings every second, each to be answered within a second; long before the header timeout.
    let frames = frames_until_closed(&mut socket, Duration::from_secs(6))
        .await
        .expect("closed for the unanswered ping, before the 10 s header timeout");
    assert!(frames.contains(&PING), "frames: {frames:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_connection_without_open_streams_is_closed_after_the_idle_timeout() {
    let server = common::start(&["--seed", "1", "--idle-timeout-secs", "2"]).await;
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    let connection = tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let request = warp::http::Request::get(format!("http://{}/healthz", server.addr))
        .body(())
        .unwrap();
    let (response, _) = client.send_request(request, true).unwrap();
    let response = tokio::time::timeout(common::STEP, response)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), 200);
    drop(response);
    // The client answers pings, so only the idle timeout can end the connection.
    let started = tokio::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(8), connection)
        .await
        .expect("closed after the idle timeout")
        .unwrap()
        .expect("closed cleanly with a GOAWAY");
    assert!(started.elapsed() >= Duration::from_millis(1500));
    drop(client);
    server.stop().await;
}
