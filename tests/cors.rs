//! The CORS allow-list over real sockets, on both HTTP paths (the direct HTTP/1.1 stream path
//! and hyper), for streams, REST routes, errors and preflights.

mod common;

use reqwest::header::HeaderMap;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ALLOWED: &str = "http://allowed.example:8080";
const ALSO: &str = "https://also.example";
const DENIED: &str = "http://denied.example:8080";
const SECRET: &str = "test-secret-0123456789";

fn h2c() -> reqwest::Client {
    reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap()
}

async fn headers_of(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    origin: Option<&str>,
) -> (u16, HeaderMap) {
    let mut request = client.request(method, url);
    if let Some(origin) = origin {
        request = request
            .header("origin", origin)
            .header("access-control-request-method", "GET");
    }
    let resp = tokio::time::timeout(common::STEP, request.send())
        .await
        .expect("answered in time")
        .expect("request succeeds");
    (resp.status().as_u16(), resp.headers().clone())
}

/// The response head of a request written by hand on a fresh connection (so a stream request
/// takes the direct path), read up to the blank line.
async fn raw_head(addr: std::net::SocketAddr, request: &str) -> String {
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    tokio::time::timeout(common::STEP, async {
        while !head.ends_with(b"\r\n\r\n") {
            socket.read_exact(&mut byte).await.unwrap();
            head.push(byte[0]);
        }
    })
    .await
    .expect("a response head in time");
    String::from_utf8(head).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listed_origins_are_echoed_and_others_get_no_allow_origin_on_both_paths() {
    let list = format!("{ALLOWED}, {ALSO}");
    let server = common::start(&["--seed", "1", "--cors-origin", &list]).await;
    let routes = [
        "/quotes?symbols=AAPL", // a stream: direct path over a fresh HTTP/1.1 connection
        "/quotes/AAPL",
        "/quotes?symbols=ZZZZ", // a refused stream, answered by the direct path itself
        "/snapshot",
        "/healthz",
        "/nope",
        "/",
    ];
    for route in routes {
        let url = server.url(route);
        for (name, client) in [("http1", common::http1()), ("h2c", h2c())] {
            let context = format!("{name} {route}");
            for origin in [ALLOWED, ALSO] {
                let (_, h) = headers_of(&client, reqwest::Method::GET, &url, Some(origin)).await;
                assert_eq!(h["access-control-allow-origin"], origin, "{context}");
                assert_eq!(h["vary"], "origin", "{context}");
                // No tokens, so no credentials.
                assert!(
                    !h.contains_key("access-control-allow-credentials"),
                    "{context}"
                );
            }
            // Case differences in scheme and host do not matter; the request's form is echoed.
            let upper = ALLOWED.to_uppercase();
            let (_, h) = headers_of(&client, reqwest::Method::GET, &url, Some(&upper)).await;
            assert_eq!(
                h["access-control-allow-origin"],
                upper.as_str(),
                "{context}"
            );
            for origin in [
                Some(DENIED),
                Some("null"),
                Some("http://allowed.example"),
                None,
            ] {
                let (_, h) = headers_of(&client, reqwest::Method::GET, &url, origin).await;
                assert!(
                    !h.contains_key("access-control-allow-origin"),
                    "{context} {origin:?}: {h:?}"
                );
                assert_eq!(h["vary"], "origin", "{context}");
            }
            // Preflight, likewise.
            let (status, h) =
                headers_of(&client, reqwest::Method::OPTIONS, &url, Some(ALLOWED)).await;
            assert_eq!(status, 204, "{context}");
            assert_eq!(h["access-control-allow-origin"], ALLOWED, "{context}");
            assert!(h.contains_key("access-control-allow-methods"), "{context}");
            let (_, h) = headers_of(&client, reqwest::Method::OPTIONS, &url, Some(DENIED)).await;
            assert!(!h.contains_key("access-control-allow-origin"), "{context}");
        }
    }
    // The direct path's own response heads, read off the socket.
    let allowed = raw_head(
        server.addr,
        &format!("GET /quotes?symbols=AAPL HTTP/1.1\r\nHost: x\r\nOrigin: {ALLOWED}\r\n\r\n"),
    )
    .await;
    assert!(allowed.starts_with("HTTP/1.1 200 OK\r\n"), "{allowed}");
    assert!(
        allowed.contains(&format!("\r\naccess-control-allow-origin: {ALLOWED}\r\n")),
        "{allowed}"
    );
    assert!(allowed.contains("\r\nvary: origin\r\n"), "{allowed}");
    let denied = raw_head(
        server.addr,
        &format!("GET /quotes?symbols=AAPL HTTP/1.1\r\nHost: x\r\nOrigin: {DENIED}\r\n\r\n"),
    )
    .await;
    assert!(denied.starts_with("HTTP/1.1 200 OK\r\n"), "{denied}");
    assert!(!denied.contains("access-control-allow-origin"), "{denied}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_tokens_echoed_origins_may_send_credentials_and_star_stays_star() {
    let server = common::start(&[
        "--seed",
        "1",
        "--cors-origin",
        ALLOWED,
        "--jwt-secret",
        SECRET,
    ])
    .await;
    for route in ["/quotes?symbols=AAPL", "/snapshot"] {
        let url = server.url(route);
        for (name, client) in [("http1", common::http1()), ("h2c", h2c())] {
            // Refused (no token) but readable by the allowed page, which can then say why.
            let (status, h) = headers_of(&client, reqwest::Method::GET, &url, Some(ALLOWED)).await;
            assert_eq!(status, 401, "{name} {route}");
            assert_eq!(h["access-control-allow-origin"], ALLOWED, "{name} {route}");
            assert_eq!(
                h["access-control-allow-credentials"], "true",
                "{name} {route}"
            );
            let (_, h) = headers_of(&client, reqwest::Method::OPTIONS, &url, Some(ALLOWED)).await;
            assert_eq!(
                h["access-control-allow-credentials"], "true",
                "{name} {route}"
            );
            let (_, h) = headers_of(&client, reqwest::Method::GET, &url, Some(DENIED)).await;
            assert!(
                !h.contains_key("access-control-allow-origin"),
                "{name} {route}"
            );
            assert!(
                !h.contains_key("access-control-allow-credentials"),
                "{name} {route}"
            );
        }
    }
    server.stop().await;

    // The default, *, answers * to everyone (never with credentials) on both paths.
    let server = common::start(&["--seed", "1", "--jwt-secret", SECRET]).await;
    let head = raw_head(
        server.addr,
        &format!("GET /quotes HTTP/1.1\r\nHost: x\r\nOrigin: {DENIED}\r\n\r\n"),
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
    assert!(
        head.contains("\r\naccess-control-allow-origin: *\r\n"),
        "{head}"
    );
    assert!(!head.contains("credentials"), "{head}");
    assert!(!head.contains("vary"), "{head}");
    let (_, h) = headers_of(
        &h2c(),
        reqwest::Method::GET,
        &server.url("/quotes"),
        Some(DENIED),
    )
    .await;
    assert_eq!(h["access-control-allow-origin"], "*");
    assert!(!h.contains_key("access-control-allow-credentials"));
    server.stop().await;
}
