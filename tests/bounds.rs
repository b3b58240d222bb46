//! Socket bounds over real connections: a client that stops reading is evicted, bytes after a
//! stream request close it, and heads with bare-LF line endings are answered at once.

mod common;

use std::time::Duration;

use common::get_json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_evicted_and_counted() {
    let server = common::start(&[
        "--seed",
        "1",
        "--rate",
        "50",
        "--max-clients",
        "1",
        "--write-timeout-secs",
        "1",
    ])
    .await;
    // A small receive buffer so that the server's writes block soon.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stalled = socket.connect(server.addr).await.unwrap();
    stalled
        .write_all(b"GET /quotes HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // Never read. The slot frees once a write has been blocked for a second.
    let deadline = tokio::time::Instant::now() + common::STEP * 2;
    loop {
        let evicted = common::metric(&server.url(""), "tickcast_streams_evicted_total ").await;
        let (_, _, health) = get_json(&server.url("/healthz")).await;
        if evicted == 1 && health["clients"] == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never evicted: {health}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut next = common::SseClient::connect(&common::http1(), &server.url("/quotes"), &[]).await;
    assert_eq!(next.status, 200, "the slot is free again");
    next.next_named("snapshot").await;
    drop(stalled);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_after_a_stream_request_close_the_connection() {
    let server = common::start(&["--seed", "1", "--rate", "5"]).await;
    let mut socket = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    socket
        .write_all(b"GET /quotes HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let n = socket.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // Junk after the request: the server closes instead of reading on.
    let _ = socket.write_all(&vec![b'x'; 256 * 1024]).await;
    let closed = tokio::time::timeout(common::STEP, async {
        loop {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the connection stayed open");
    let (_, _, health) = get_json(&server.url("/healthz")).await;
    assert_eq!(health["clients"], 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_with_bare_lf_line_endings_is_answered_at_once() {
    let server = common::start(&["--seed", "1"]).await;
    let mut socket = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    socket
        .write_all(b"GET /healthz HTTP/1.1\nHost: x\n\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    // Before the 10 s header timeout that a missed end of head would wait for (with room for
    // a busy machine).
    let n = tokio::time::timeout(Duration::from_secs(8), socket.read(&mut buf))
        .await
        .expect("answered before the header timeout")
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_without_a_whole_head_in_time_is_closed() {
    let server = common::start(&["--seed", "1"]).await;
    // One byte of a request, or of an HTTP/2 preface, and then nothing; all at once.
    let starts = [
        &b"P"[..],
        b"PRI * HTTP/2.0\r\n",
        b"GET /quotes HTTP/1.1\r\nHost",
    ];
    let mut sockets = Vec::new();
    for start in starts {
        let mut socket = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        socket.write_all(start).await.unwrap();
        sockets.push(socket);
    }
    for (start, mut socket) in starts.into_iter().zip(sockets) {
        // The header timeout is 10 s; the connection must be closed soon after it. An HTTP/1
        // client is told why first; an HTTP/2 one (whose preface this may be) is not.
        let answer = tokio::time::timeout(Duration::from_secs(15), read_to_close(&mut socket))
            .await
            .unwrap_or_else(|_| {
                panic!("{:?} still open after 15 s", String::from_utf8_lossy(start))
            });
        if start.starts_with(b"GET") {
            let (status, body) = split_response(&answer);
            assert_eq!(status, 408, "{answer}");
            assert_eq!(body["error"], "request_timeout", "{answer}");
        } else {
            assert_eq!(answer, "", "closed without an answer");
        }
    }
    assert_eq!(
        common::metric(
            &server.url(""),
            "tickcast_connections_timed_out_total{deadline=\"header\"} "
        )
        .await,
        3
    );
    server.stop().await;
}

/// Reads until the server closes; the bytes as text.
async fn read_to_close(socket: &mut tokio::net::TcpStream) -> String {
    let mut all = Vec::new();
    let _ = socket.read_to_end(&mut all).await;
    String::from_utf8_lossy(&all).into_owned()
}

/// Status and JSON body of one whole HTTP/1.1 response with a content-length.
fn split_response(text: &str) -> (u16, serde_json::Value) {
    let (head, body) = text.split_once("\r\n\r\n").expect("a whole head");
    let status = head[9..12].parse().expect("a status code");
    let json = serde_json::from_str(body).unwrap_or(serde_json::Value::Null);
    (status, json)
}

/// Sends `request` on a new connection and reads the answer until the server closes.
async fn exchange(server: &common::TestServer, request: &[u8]) -> String {
    let mut socket = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    socket.write_all(request).await.unwrap();
    tokio::time::timeout(common::STEP, read_to_close(&mut socket))
        .await
        .expect("the server answers and closes")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heads_no_route_can_read_get_json_errors_and_a_close() {
    let server = common::start(&["--seed", "1", "--rate", "1"]).await;
    let long_target = format!("GET /{} HTTP/1.1\r\n", "a".repeat(9000));
    let many_headers = format!(
        "GET /quotes HTTP/1.1\r\n{}\r\n",
        "X-Padding: 0123456789012345678901234567890123456789\r\n".repeat(200)
    );
    let cases: [(&[u8], u16, &str); 5] = [
        (
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
            400,
            "bad_request",
        ),
        (
            b"GET /quotes HTTP/1.1\r\nBad Header\r\n\r\n",
            400,
            "bad_request",
        ),
        (b"GET /quotes HTTP/1.1\r\nHost: x\r\n", 400, "bad_request"),
        (long_target.as_bytes(), 414, "uri_too_long"),
        (many_headers.as_bytes(), 431, "headers_too_large"),
    ];
    for (request, status, code) in cases {
        let mut socket = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        socket.write_all(request).await.unwrap();
        // The client may close its side mid-head (the third case) and still read the answer.
        socket.shutdown().await.unwrap();
        let answer = tokio::time::timeout(common::STEP, read_to_close(&mut socket))
            .await
            .expect("answered and closed at once");
        let (got, body) = split_response(&answer);
        assert_eq!(got, status, "{answer}");
        assert_eq!(body["error"], code, "{answer}");
        assert!(
            answer.contains("access-control-allow-origin: *\r\n"),
            "{answer}"
        );
        assert!(answer.contains("\r\ndate: "), "{answer}");
        assert!(answer.contains("\r\nconnection: close\r\n"), "{answer}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_per_ip_and_total_caps_are_refused_at_once() {
    let server = common::start(&[
        "--seed",
        "1",
        "--rate",
        "1",
        "--max-connections-per-ip",
        "3",
    ])
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut stream =
            common::SseClient::connect(&common::http1(), &server.url("/quotes"), &[]).await;
        stream.next_named("snapshot").await;
        held.push(stream);
    }
    // The fourth from the same address: 429 at once, before the request is read.
    let answer = exchange(&server, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let (status, body) = split_response(&answer);
    assert_eq!(status, 429, "{answer}");
    assert_eq!(body["error"], "too_many_connections");
    assert!(answer.contains("retry-after: 1\r\n"), "{answer}");
    // Another loopback address is another client.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut from_other = socket.connect(server.addr).await.unwrap();
    from_other
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let answer = read_to_close(&mut from_other).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // A place frees when a connection closes.
    drop(held.pop());
    let deadline = tokio::time::Instant::now() + common::STEP;
    loop {
        let answer = exchange(
            &server,
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        if answer.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no place freed: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(held);
    let refused = common::metric(
        &server.url(""),
        "tickcast_connections_refused_total{limit=\"per_ip\"} ",
    )
    .await;
    assert!(refused >= 1, "refusals counted: {refused}");
    server.stop().await;

    let server = common::start(&["--seed", "1", "--rate", "1", "--max-connections", "2"]).await;
    let mut first = common::SseClient::connect(&common::http1(), &server.url("/quotes"), &[]).await;
    first.next_named("snapshot").await;
    let mut second = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    second
        .write_all(b"GET /quotes HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    let n = second.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let answer = exchange(&server, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let (status, body) = split_response(&answer);
    assert_eq!(status, 503, "{answer}");
    assert_eq!(body["error"], "too_many_connections");
    drop((first, second));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_served_by_hyper_that_stops_reading_is_closed_on_the_write_deadline() {
    let server = common::start(&[
        "--seed",
        "1",
        "--rate",
        "50",
        "--max-clients",
        "1",
        "--write-timeout-secs",
        "1",
    ])
    .await;
    // HTTP/1.0 is served by hyper, not the direct path. A small receive buffer so that the
    // server's writes block soon; never read.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stalled = socket.connect(server.addr).await.unwrap();
    stalled
        .write_all(b"GET /quotes HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + common::STEP * 3;
    loop {
        let timed_out = common::metric(
            &server.url(""),
            "tickcast_connections_timed_out_total{deadline=\"write\"} ",
        )
        .await;
        let (_, _, health) = get_json(&server.url("/healthz")).await;
        if timed_out == 1 && health["clients"] == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never closed: {health}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(stalled);
    server.stop().await;
}

/// A stream whose write is held up by a slow reader when shutdown begins still ends with the
/// last chunk once the reader catches up within the grace (a clean end of body, not a cut
/// connection); shutdown itself stays bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_blocked_in_a_write_at_shutdown_still_ends_cleanly() {
    // A fast feed, so that unread streams fill their socket buffers and the writes block.
    let server = common::start(&["--seed", "1", "--rate", "50", "--flush-ms", "0"]).await;
    let mut sockets = Vec::new();
    for _ in 0..10 {
        let mut socket = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        socket
            .write_all(b"GET /quotes HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        sockets.push(socket);
    }
    // Nobody reads for two seconds: every stream is blocked in a write by then.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let readers: Vec<_> = sockets
        .into_iter()
        .map(|mut socket| {
            tokio::spawn(async move {
                // The readers come back a moment after shutdown began.
                tokio::time::sleep(Duration::from_millis(300)).await;
                let mut body = Vec::new();
                tokio::time::timeout(common::STEP, socket.read_to_end(&mut body))
                    .await
                    .expect("the stream ends in time")
                    .expect("no reset");
                body
            })
        })
        .collect();
    server.stop().await;
    for (i, reader) in readers.into_iter().enumerate() {
        let body = reader.await.unwrap();
        assert!(
            body.ends_with(b"\r\n0\r\n\r\n"),
            "stream {i}: {} bytes, ending {:?}",
            body.len(),
            String::from_utf8_lossy(&body[body.len().saturating_sub(60)..])
        );
    }
}
