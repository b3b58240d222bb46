//! The direct path (a stream request as the first request on a connection) and hyper (the same
//! request after another one on a keep-alive connection) must give the same answer: status,
//! headers and body.

mod common;

use std::collections::BTreeMap;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// One response as read off the wire: status, headers (names lower-cased) and the body, or for
/// a chunked stream its first line.
#[derive(Debug, PartialEq, Eq)]
struct Answer {
    status: u16,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

async fn read_answer(reader: &mut BufReader<TcpStream>) -> Answer {
    let mut status_line = String::new();
    reader.read_line(&mut status_line).await.unwrap();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {status_line:?}"));
    let mut headers = BTreeMap::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).await.unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').expect("a header line");
        let previous = headers.insert(name.to_ascii_lowercase(), value.trim().to_owned());
        assert!(previous.is_none(), "{name} sent twice");
    }
    let body = if let Some(length) = headers.get("content-length") {
        let mut body = vec![0; length.parse().unwrap()];
        reader.read_exact(&mut body).await.unwrap();
        body
    } else {
        assert_eq!(
            headers.get("transfer-encoding").map(String::as_str),
            Some("chunked")
        );
        // The first line of the stream (`retry:`): how it is cut into chunks may differ,
        // and what follows changes with the market.
        let mut body = Vec::new();
        while !body.contains(&b'\n') {
            let mut size = String::new();
            reader.read_line(&mut size).await.unwrap();
            let mut chunk = vec![0; usize::from_str_radix(size.trim(), 16).unwrap() + 2];
            reader.read_exact(&mut chunk).await.unwrap();
            body.extend_from_slice(&chunk[..chunk.len() - 2]);
        }
        let line = body.iter().position(|&b| b == b'\n').unwrap();
        body.truncate(line + 1);
        body
    };
    Answer {
        status,
        headers,
        body,
    }
}

/// `request` as the first request on a new connection: the direct path.
async fn first(server: &common::TestServer, request: &str) -> Answer {
    let mut socket = TcpStream::connect(server.addr).await.unwrap();
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut reader = BufReader::new(socket);
    tokio::time::timeout(common::STEP, read_answer(&mut reader))
        .await
        .expect("an answer")
}

/// `request` after a `GET /healthz` on the same keep-alive connection: hyper.
async fn second(server: &common::TestServer, request: &str) -> Answer {
    let mut socket = TcpStream::connect(server.addr).await.unwrap();
    socket
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut reader = BufReader::new(socket);
    let health = read_answer(&mut reader).await;
    assert_eq!(health.status, 200);
    reader
        .get_mut()
        .write_all(request.as_bytes())
        .await
        .unwrap();
    tokio::time::timeout(common::STEP, read_answer(&mut reader))
        .await
        .expect("an answer")
}

/// Compares the two answers, `date` by presence only (its value changes by the second).
fn assert_same(request: &str, mut direct: Answer, mut hyper: Answer) {
    for answer in [&mut direct, &mut hyper] {
        let date = answer.headers.remove("date");
        assert!(date.is_some(), "no date header in {answer:?} for {request}");
    }
    assert_eq!(
        direct, hyper,
        "direct path (left) and hyper (right) differ for {request}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_direct_path_and_hyper_answer_alike() {
    let server = common::start(&["--seed", "1", "--rate", "1", "--max-symbols", "2"]).await;
    for request in [
        "GET /quotes?symbols=NOPE HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /quotes/NOPE HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /quotes?events=bogus HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /quotes?symbols=AAPL,MSFT,IBM HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /quotes?symbols= HTTP/1.1\r\nHost: x\r\n\r\n",
    ] {
        let direct = first(&server, request).await;
        assert!(direct.status >= 400, "{request}: {direct:?}");
        assert_same(request, direct, second(&server, request).await);
    }
    // A stream: the same headers, and the same first chunk (the `retry:` field) on both.
    let request = "GET /quotes/AAPL HTTP/1.1\r\nHost: x\r\n\r\n";
    let direct = first(&server, request).await;
    assert_eq!(direct.status, 200);
    assert!(direct.body.starts_with(b"retry: "), "{direct:?}");
    assert_same(request, direct, second(&server, request).await);
    server.stop().await;

    // A refusal at --max-clients, with its Retry-After.
    let server = common::start(&["--seed", "1", "--rate", "1", "--max-clients", "1"]).await;
    let mut held = TcpStream::connect(server.addr).await.unwrap();
    held.write_all(b"GET /quotes HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 256];
    let n = held.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let request = "GET /quotes HTTP/1.1\r\nHost: x\r\n\r\n";
    let direct = first(&server, request).await;
    assert_eq!(direct.status, 503, "{direct:?}");
    assert!(direct.headers.contains_key("retry-after"));
    assert_same(request, direct, second(&server, request).await);
    assert_eq!(
        common::metric(&server.url(""), "tickcast_streams_refused_total ").await,
        2,
        "each refusal counted once"
    );
    drop(held);
    server.stop().await;
}
