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
    // Well within the 10 s header timeout that a missed end of head would wait for.
    let n = tokio::time::timeout(Duration::from_secs(3), socket.read(&mut buf))
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
        let mut buf = [0u8; 256];
        // The header timeout is 10 s; the connection must be closed soon after it.
        let read = tokio::time::timeout(Duration::from_secs(15), socket.read(&mut buf))
            .await
            .unwrap_or_else(|_| {
                panic!("{:?} still open after 15 s", String::from_utf8_lossy(start))
            });
        assert!(
            matches!(read, Ok(0) | Err(_)),
            "closed without an answer: {read:?}"
        );
    }
    server.stop().await;
}
