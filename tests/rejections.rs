//! Every error of the contract: JSON body, status, CORS, Allow and Retry-After; and the REST
//! endpoints around the streams.

mod common;

use common::{get_json, http1, SseClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_symbol_requests_get_json_errors() {
    let server = common::start(&["--seed", "1", "--max-symbols", "3"]).await;
    let cases: &[(&str, u16, &str)] = &[
        ("/quotes?symbols=ZZZZ", 404, "unknown_symbol"),
        ("/quotes?symbols=AAPL,zzzz", 404, "unknown_symbol"),
        ("/quotes/zzzz", 404, "unknown_symbol"),
        ("/snapshot?symbols=zzzz", 404, "unknown_symbol"),
        ("/quotes?symbols=", 400, "bad_request"),
        ("/quotes?symbols=,", 400, "bad_request"),
        ("/quotes?symbols=%20", 400, "bad_request"),
        ("/quotes?symbols=A,,B", 400, "bad_request"),
        ("/quotes?symbols=AA$PL", 400, "bad_request"),
        ("/snapshot?symbols=", 400, "bad_request"),
        ("/quotes/%20", 400, "bad_request"),
        (
            "/quotes?symbols=AAPL,MSFT,NVDA,TSLA",
            400,
            "too_many_symbols",
        ),
        (
            "/snapshot?symbols=AAPL,MSFT,NVDA,TSLA",
            400,
            "too_many_symbols",
        ),
        ("/nope", 404, "not_found"),
        ("/quotes/AAPL/extra", 404, "not_found"),
    ];
    for (path, status, code) in cases {
        let (got, headers, body) = get_json(&server.url(path)).await;
        assert_eq!(got.as_u16(), *status, "{path}: {body}");
        assert_eq!(body["error"], *code, "{path}: {body}");
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{path}"
        );
        assert_eq!(headers["access-control-allow-origin"], "*", "{path}");
        assert_eq!(headers["content-type"], "application/json", "{path}");
    }
    let (_, _, body) = get_json(&server.url("/quotes?symbols=aapl,zzzz,qqqq1")).await;
    assert_eq!(body["unknown"], serde_json::json!(["ZZZZ", "QQQQ1"]));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_method_is_405_with_allow() {
    let server = common::start(&["--seed", "1"]).await;
    for path in [
        "/quotes",
        "/quotes/AAPL",
        "/symbols",
        "/snapshot",
        "/healthz",
        "/metrics",
        "/clock",
        "/",
    ] {
        let resp = http1().post(server.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 405, "{path}");
        assert_eq!(resp.headers()["allow"], "GET, HEAD, OPTIONS");
        assert_eq!(resp.headers()["access-control-allow-origin"], "*");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "method_not_allowed");
    }
    let resp = http1()
        .delete(server.url("/no/such/path"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        404,
        "unknown path stays 404 whatever the method"
    );
    let resp = http1()
        .request(reqwest::Method::OPTIONS, server.url("/quotes"))
        .header("origin", "http://example.test")
        .header("access-control-request-headers", "last-event-id")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert!(resp.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .contains("Last-Event-ID"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_clients_gives_503_with_retry_after_and_slots_free_on_close() {
    let server = common::start(&[
        "--seed",
        "1",
        "--max-clients",
        "2",
        "--flush-ms",
        "20",
        "--rate",
        "20",
    ])
    .await;
    let client = http1();
    let mut a = SseClient::connect(&client, &server.url("/quotes/AAPL"), &[]).await;
    let mut b = SseClient::connect(&client, &server.url("/quotes"), &[]).await;
    a.next_named("snapshot").await;
    b.next_named("snapshot").await;
    let (_, _, health) = get_json(&server.url("/healthz")).await;
    assert_eq!(health["clients"], 2);
    let resp = client.get(server.url("/quotes")).send().await.unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "3");
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "too_many_clients");

    drop(a);
    drop(b);
    // Closed clients free their slot as soon as the server notices (next write).
    let deadline = tokio::time::Instant::now() + common::STEP;
    loop {
        let (_, _, health) = get_json(&server.url("/healthz")).await;
        if health["clients"] == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "clients never returned to 0: {health}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let mut again = SseClient::connect(&client, &server.url("/quotes"), &[]).await;
    assert_eq!(again.status, 200);
    again.next_named("snapshot").await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_endpoints_describe_the_market() {
    let server = common::start(&["--seed", "1"]).await;
    let (status, headers, symbols) = get_json(&server.url("/symbols")).await;
    assert_eq!(status, 200);
    assert_eq!(headers["access-control-allow-origin"], "*");
    let symbols = symbols.as_array().unwrap();
    assert_eq!(symbols.len(), 120);
    assert_eq!(symbols[0]["symbol"], "AAPL");
    for key in ["name", "price", "volatility", "drift", "tick_size", "beta"] {
        assert!(!symbols[0][key].is_null(), "{key}");
    }

    let (_, _, all) = get_json(&server.url("/snapshot")).await;
    assert_eq!(all.as_array().unwrap().len(), 120);
    let (_, _, some) = get_json(&server.url("/snapshot?symbols=msft,%20aapl%20,MSFT")).await;
    let names: Vec<&str> = some
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["symbol"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2);
    assert!(names.contains(&"AAPL") && names.contains(&"MSFT"));

    let (_, _, health) = get_json(&server.url("/healthz")).await;
    assert_eq!(health["status"], "ok");
    assert_eq!(health["symbols"], 120);
    assert!(health["seq"].as_u64().unwrap() >= 120);
    assert!(health["clients"].is_u64() && health["uptime_s"].is_u64());

    let resp = http1().get(server.url("/metrics")).send().await.unwrap();
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = resp.text().await.unwrap();
    for name in [
        "tickcast_clients_connected",
        "tickcast_events_sent_total{event=\"quote\"}",
        "tickcast_bytes_sent_total{event=\"snapshot\"}",
        "tickcast_updates_generated_total",
        "tickcast_replays_served_total",
        "tickcast_updates_conflated_total",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_and_favicon_are_served() {
    let server = common::start(&["--seed", "1"]).await;
    let resp = http1().get(server.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/html; charset=utf-8");
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");
    let etag = resp.headers()["etag"].clone();
    assert!(resp.text().await.unwrap().contains("<html"));
    let cached = http1()
        .get(server.url("/"))
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(cached.status(), 304);
    let icon = http1()
        .get(server.url("/favicon.ico"))
        .send()
        .await
        .unwrap();
    assert_eq!(icon.status(), 200);
    assert_eq!(icon.headers()["content-type"], "image/x-icon");
    assert_not_served(
        &server,
        &[
            "/..%2fCargo.toml",
            "/%2e%2e/Cargo.toml",
            "/.hidden",
            "/web/../Cargo.toml",
        ],
    )
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arbitrary_bytes_in_requests_never_break_the_server() {
    let server = common::start(&["--seed", "1"]).await;
    let junk: Vec<Vec<u8>> = vec![
        b"GET /quotes?symbols=%FF%FE%00 HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        b"GET /quotes/%C0%AF HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        b"GET /snapshot?symbols=%%%%&&&=== HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        b"GET /quotes?lastEventId=%FF HTTP/1.1\r\nHost: x\r\nLast-Event-ID: \xff\xfe\x80\r\n\r\n".to_vec(),
        b"GET /%FF%FF HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        b"\x00\x01\x02garbage\r\n\r\n".to_vec(),
        b"GET /quotes?symbols=AAPL HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 99999999999999999999999999\r\n\r\n".to_vec(),
    ];
    for request in junk {
        let mut socket = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        socket.write_all(&request).await.unwrap();
        let mut buf = vec![0u8; 512];
        let n = tokio::time::timeout(common::STEP, socket.read(&mut buf))
            .await
            .unwrap()
            .unwrap_or(0);
        let head = String::from_utf8_lossy(&buf[..n]);
        assert!(!head.contains(" 500 "), "{head}");
    }
    let (status, _, health) = get_json(&server.url("/healthz")).await;
    assert_eq!(status, 200, "server still healthy: {health}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_dir_from_disk_serves_files_and_nothing_outside_it() {
    let web = concat!(env!("CARGO_MANIFEST_DIR"), "/web");
    let server = common::start(&["--seed", "1", "--web-dir", web]).await;
    let page = http1().get(server.url("/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["cache-control"], "no-cache");
    let js = http1().get(server.url("/app.js")).send().await.unwrap();
    assert_eq!(js.status(), 200);
    assert_eq!(
        js.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    // Cargo.toml sits next to web/: none of these may reach it.
    assert_not_served(
        &server,
        &[
            "/..%2fCargo.toml",
            "/%2e%2e/Cargo.toml",
            "/%2e%2e%2fCargo.toml",
            "/..%5cCargo.toml",
            "/.%2e/Cargo.toml",
        ],
    )
    .await;
    server.stop().await;
}

/// Each path is a 404 that does not leak the file next to `web/`.
async fn assert_not_served(server: &common::TestServer, paths: &[&str]) {
    for path in paths {
        let resp = http1().get(server.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 404, "{path}");
        assert!(!resp.text().await.unwrap().contains("[package]"), "{path}");
    }
}

/// Sends `request` on a new connection and returns what the server answers (until it closes
/// the connection or `STEP` passes).
async fn raw(server: &common::TestServer, request: &[u8]) -> String {
    let mut socket = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    socket.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    // The first bytes may take a while on a busy machine; after them, a pause ends the answer.
    let mut wait = common::STEP;
    while let Ok(Ok(n)) = tokio::time::timeout(wait, socket.read(&mut buf)).await {
        wait = std::time::Duration::from_millis(500);
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_is_a_json_405() {
    let server = common::start(&["--seed", "1"]).await;
    let answer = raw(&server, b"CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 405"), "{answer}");
    assert!(
        answer.contains("\"error\":\"method_not_allowed\""),
        "{answer}"
    );
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("allow: get, head, options"),
        "{answer}"
    );
    let (status, _, _) = get_json(&server.url("/healthz")).await;
    assert_eq!(status, 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_on_a_stream_gets_its_headers_and_opens_nothing() {
    let server = common::start(&["--seed", "1", "--max-clients", "1"]).await;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    for client in [http1(), h2] {
        let resp =
            tokio::time::timeout(common::STEP, client.head(server.url("/quotes/AAPL")).send())
                .await
                .expect("HEAD answers at once")
                .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        let body = tokio::time::timeout(common::STEP, resp.bytes())
            .await
            .unwrap()
            .unwrap();
        assert!(body.is_empty());
        let resp = client
            .head(server.url("/quotes?symbols=ZZZZ"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 404, "the same checks as GET");
    }
    let (_, _, health) = get_json(&server.url("/healthz")).await;
    assert_eq!(health["clients"], 0, "HEAD holds no client slot");
    // Over the direct HTTP/1.1 path too, and the one slot is still free for a GET.
    let answer = raw(&server, b"HEAD /quotes HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(!answer.contains("event: snapshot"), "{answer}");
    let mut sse = SseClient::connect(&http1(), &server.url("/quotes"), &[]).await;
    assert_eq!(sse.status, 200);
    sse.next_named("snapshot").await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_stream_is_counted_once() {
    let server = common::start(&["--seed", "1", "--max-clients", "1"]).await;
    let mut held = SseClient::connect(&http1(), &server.url("/quotes"), &[]).await;
    held.next_named("snapshot").await;
    // A GET over HTTP/1.1 first goes to the direct path, then to warp for the error.
    let answer = raw(&server, b"GET /quotes HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert_eq!(
        common::metric(&server.url(""), "tickcast_streams_refused_total ").await,
        1
    );
    server.stop().await;
}
