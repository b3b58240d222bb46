//! Token auth over real sockets, on both HTTP paths: the direct HTTP/1.1 stream path (the first
//! request on a fresh HTTP/1.1 connection) and hyper (h2c). Every source of token, every
//! refusal, symbols subsets, expiry mid-stream, `nbf`, public keys, `--metrics-token` and
//! `tickcast token`.

mod common;

use std::time::Duration;

use futures_util::StreamExt;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tickcast::auth::Verifier;
use tokio::time::Instant;

const SECRET: &str = "test-secret-0123456789";
const BIN: &str = env!("CARGO_BIN_EXE_tickcast");

fn now() -> u64 {
    tickcast::auth::unix_now()
}

fn hs256(claims: Value) -> String {
    sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(SECRET.as_bytes()),
        claims,
    )
}

fn sign(alg: Algorithm, key: &EncodingKey, claims: Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), &claims, key).unwrap()
}

/// A token for `symbols` valid for an hour.
fn valid(symbols: &[&str]) -> String {
    hs256(json!({"exp": now() + 3600, "symbols": symbols}))
}

/// Which of the server's two HTTP paths a request takes.
#[derive(Debug, Clone, Copy)]
enum Path {
    /// The first request on a fresh HTTP/1.1 connection: `src/direct.rs` for streams.
    Direct,
    /// HTTP/2 with prior knowledge: hyper and warp.
    Hyper,
}

const PATHS: [Path; 2] = [Path::Direct, Path::Hyper];

fn client(path: Path) -> reqwest::Client {
    match path {
        // A new client is a new connection, so its first request is a connection's first.
        Path::Direct => common::http1(),
        Path::Hyper => reqwest::Client::builder()
            .http2_prior_knowledge()
            .build()
            .unwrap(),
    }
}

/// GET `url` with `headers`: the status, the headers, and the JSON body of a non-stream answer
/// (`Null` for a stream, whose body is not read).
async fn get(path: Path, url: &str, headers: &[(&str, &str)]) -> (StatusCode, HeaderMap, Value) {
    let mut request = client(path).get(url);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let resp = tokio::time::timeout(common::STEP, request.send())
        .await
        .expect("answered in time")
        .expect("request succeeds");
    let status = resp.status();
    let headers = resp.headers().clone();
    let stream = headers
        .get("content-type")
        .is_some_and(|v| v == "text/event-stream");
    let body = if stream {
        Value::Null
    } else {
        let text = resp.text().await.unwrap();
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, headers, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_from_header_query_or_cookie_opens_streams_on_both_paths() {
    let server = common::start(&["--seed", "1", "--jwt-secret", SECRET]).await;
    let token = valid(&["*"]);
    let bearer = format!("Bearer {token}");
    let cookie = format!("theme=dark; tickcast_token={token}");
    for path in PATHS {
        let plain = server.url("/quotes?symbols=AAPL");
        let with_query = server.url(&format!("/quotes?symbols=AAPL&token={token}"));
        for (how, url, headers) in [
            ("header", &plain, vec![("authorization", bearer.as_str())]),
            ("query", &with_query, vec![]),
            ("cookie", &plain, vec![("cookie", cookie.as_str())]),
        ] {
            let mut sse = common::SseClient::connect(&client(path), url, &headers).await;
            assert_eq!(sse.status, 200, "{path:?} {how}");
            let snapshot = sse.next_named("snapshot").await.json();
            assert_eq!(snapshot[0]["symbol"], "AAPL", "{path:?} {how}");
        }
        // The REST data routes take the same sources.
        for route in [
            "/snapshot?symbols=AAPL",
            "/symbols",
            "/clock",
            "/bars?symbols=AAPL",
        ] {
            let (status, _, body) =
                get(path, &server.url(route), &[("authorization", &bearer)]).await;
            assert_eq!(status, 200, "{path:?} {route}: {body}");
            let sep = if route.contains('?') { '&' } else { '?' };
            let url = server.url(&format!("{route}{sep}token={token}"));
            assert_eq!(get(path, &url, &[]).await.0, 200, "{path:?} {route}");
            let (status, _, _) = get(path, &server.url(route), &[("cookie", &cookie)]).await;
            assert_eq!(status, 200, "{path:?} {route}");
        }
        // What stays open: health, metrics, the dashboard and its files.
        for route in ["/healthz", "/metrics", "/", "/app.js"] {
            assert_eq!(
                get(path, &server.url(route), &[]).await.0,
                200,
                "{path:?} {route}"
            );
        }
    }
    server.stop().await;
}

/// What a refused request is, the headers it sends, and what the 401's message says.
type Case<'a> = (&'a str, Vec<(&'a str, String)>, &'a str);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_are_401_with_the_reason_on_both_paths() {
    let server = common::start(&["--seed", "1", "--jwt-secret", SECRET]).await;
    let other_key = EncodingKey::from_secret(b"another-secret-0123456789");
    let forged = sign(
        Algorithm::HS256,
        &other_key,
        json!({"exp": now() + 3600, "symbols": ["*"]}),
    );
    let expired = hs256(json!({"exp": now() - 10, "symbols": ["*"]}));
    let early = hs256(json!({"exp": now() + 3600, "nbf": now() + 600, "symbols": ["*"]}));
    let no_exp = hs256(json!({"symbols": ["*"]}));
    let cases: Vec<Case> = vec![
        ("missing", vec![], "a token is required"),
        (
            "malformed",
            vec![("authorization", "Bearer not-a-jwt".into())],
            "malformed token",
        ),
        (
            "not bearer",
            vec![("authorization", "Basic dXNlcjpwYXNz".into())],
            "must be Bearer",
        ),
        (
            "badly signed",
            vec![("authorization", format!("Bearer {forged}"))],
            "signature",
        ),
        (
            "expired",
            vec![("cookie", format!("tickcast_token={expired}"))],
            "expired",
        ),
        (
            "not yet valid",
            vec![("authorization", format!("Bearer {early}"))],
            "not valid before",
        ),
        (
            "no exp",
            vec![("authorization", format!("Bearer {no_exp}"))],
            "exp claim is required",
        ),
    ];
    for path in PATHS {
        for route in [
            "/quotes?symbols=AAPL",
            "/quotes/AAPL",
            "/snapshot",
            "/bars?symbols=AAPL",
        ] {
            for (why, headers, message) in &cases {
                let headers: Vec<(&str, &str)> =
                    headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
                let (status, got, body) = get(path, &server.url(route), &headers).await;
                let context = format!("{path:?} {route} {why}: {body}");
                assert_eq!(status, 401, "{context}");
                assert_eq!(body["error"], "unauthorized", "{context}");
                assert!(
                    body["message"].as_str().unwrap().contains(message),
                    "{context}"
                );
                assert_eq!(got["www-authenticate"], "Bearer", "{context}");
                assert_eq!(got["content-type"], "application/json", "{context}");
            }
        }
        // A query token that is not a token, and HEAD, are refused the same way.
        let (status, _, body) = get(path, &server.url("/quotes?token=x.y.z"), &[]).await;
        assert_eq!(
            (status.as_u16(), &body["error"]),
            (401, &json!("unauthorized"))
        );
        let head = client(path)
            .head(server.url("/quotes"))
            .send()
            .await
            .unwrap();
        assert_eq!(head.status(), 401, "{path:?} HEAD");
    }
    // nbf within the leeway is accepted (an issuer whose clock runs a little ahead).
    let soon = hs256(json!({"exp": now() + 3600, "nbf": now() + 5, "symbols": ["*"]}));
    let bearer = format!("Bearer {soon}");
    for path in PATHS {
        let (status, _, body) = get(
            path,
            &server.url("/quotes?symbols=AAPL"),
            &[("authorization", &bearer)],
        )
        .await;
        assert_eq!(status, 200, "{path:?}: {body}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_limits_the_symbols_and_403_lists_the_refused_ones() {
    let server = common::start(&["--seed", "1", "--jwt-secret", SECRET]).await;
    let token = valid(&["AAPL", "msft"]);
    let bearer = format!("Bearer {token}");
    let auth = [("authorization", bearer.as_str())];
    for path in PATHS {
        for (route, forbidden) in [
            ("/quotes?symbols=AAPL,NVDA,TSLA", json!(["NVDA", "TSLA"])),
            ("/quotes/nvda", json!(["NVDA"])),
            ("/snapshot?symbols=MSFT,SPY", json!(["SPY"])),
            ("/bars?symbols=TSLA", json!(["TSLA"])),
        ] {
            let (status, headers, body) = get(path, &server.url(route), &auth).await;
            assert_eq!(status, 403, "{path:?} {route}: {body}");
            assert_eq!(body["error"], "forbidden", "{path:?} {route}");
            assert_eq!(body["forbidden"], forbidden, "{path:?} {route}");
            assert!(body["message"].as_str().unwrap().contains("does not allow"));
            assert!(!headers.contains_key("www-authenticate"));
        }
        // Asking for every symbol gets the allowed ones.
        let mut sse =
            common::SseClient::connect(&client(path), &server.url("/quotes"), &auth).await;
        assert_eq!(sse.status, 200);
        let snapshot = sse.next_named("snapshot").await.json();
        let mut symbols: Vec<&str> = snapshot
            .as_array()
            .unwrap()
            .iter()
            .map(|q| q["symbol"].as_str().unwrap())
            .collect();
        symbols.sort_unstable();
        assert_eq!(symbols, ["AAPL", "MSFT"], "{path:?}");
        for _ in 0..5 {
            let event = sse.next_with_id().await.json();
            if let Some(symbol) = event.get("symbol").and_then(Value::as_str) {
                assert!(["AAPL", "MSFT"].contains(&symbol), "{path:?}: {event}");
            }
        }
        let (status, _, body) = get(path, &server.url("/snapshot"), &auth).await;
        assert_eq!(status, 200);
        assert_eq!(body.as_array().unwrap().len(), 2, "{body}");
        let (status, _, _) = get(path, &server.url("/quotes?symbols=msft"), &auth).await;
        assert_eq!(status, 200);
    }
    // A token for symbols this server does not have allows nothing.
    let stranger = valid(&["ZZZZ"]);
    let (status, _, body) = get(
        Path::Direct,
        &server.url(&format!("/quotes?token={stranger}")),
        &[],
    )
    .await;
    assert_eq!(
        (status.as_u16(), &body["forbidden"]),
        (403, &json!([])),
        "{body}"
    );
    server.stop().await;
}

/// Reads a stream's body to its end (bounded).
async fn read_to_end(response: reqwest::Response, limit: Duration) -> Vec<u8> {
    let mut body = response.bytes_stream();
    let mut bytes = Vec::new();
    let deadline = Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, body.next()).await {
            Ok(Some(Ok(chunk))) => bytes.extend_from_slice(&chunk),
            Ok(Some(Err(e))) => panic!("stream error: {e}"),
            Ok(None) => return bytes,
            Err(_) => panic!("the stream did not end within {limit:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_stream_ends_cleanly_when_its_token_expires() {
    let server = common::start(&["--seed", "1", "--jwt-secret", SECRET]).await;
    let exp = now() + 3;
    let token = hs256(json!({"exp": exp, "symbols": ["*"]}));
    let bearer = format!("Bearer {token}");
    let mut open = Vec::new();
    for path in PATHS {
        let resp = client(path)
            .get(server.url("/quotes?symbols=AAPL,MSFT"))
            .header("authorization", &bearer)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path:?}");
        open.push((
            path,
            tokio::spawn(read_to_end(resp, Duration::from_secs(20))),
        ));
    }
    for (path, reading) in open {
        let bytes = reading.await.unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("event: snapshot"), "{path:?}");
        assert!(
            text.ends_with("\n\n: token expired\n\n"),
            "{path:?} ends with the comment: {:?}",
            &text[text.len().saturating_sub(200)..]
        );
        // It ended at exp, give or take scheduling (generous margins for a busy machine).
        let wall = tickcast::auth::unix_now();
        assert!(
            wall >= exp && wall <= exp + 5,
            "{path:?} ended at {wall}, exp {exp}"
        );
    }
    // Reconnecting with the expired token is refused, saying so.
    for path in PATHS {
        let (status, _, body) = get(
            path,
            &server.url("/quotes?symbols=AAPL"),
            &[("authorization", &bearer)],
        )
        .await;
        assert_eq!(status, 401, "{path:?}");
        assert!(
            body["message"].as_str().unwrap().contains("expired"),
            "{body}"
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_keys_verify_rs256_and_es256_tokens() {
    let keys = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys");
    for (kind, alg, other_alg) in [
        ("rsa", Algorithm::RS256, "ec"),
        ("ec", Algorithm::ES256, "rsa"),
    ] {
        let public = format!("{keys}/{kind}-public.pem");
        let server = common::start(&["--seed", "1", "--jwt-public-key", &public]).await;
        let private = std::fs::read(format!("{keys}/{kind}-private.pem")).unwrap();
        let key = match alg {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(&private).unwrap(),
            _ => EncodingKey::from_ec_pem(&private).unwrap(),
        };
        let claims = json!({"exp": now() + 3600, "symbols": ["AAPL"]});
        let good = sign(alg, &key, claims.clone());
        for path in PATHS {
            let url = server.url(&format!("/quotes?symbols=AAPL&token={good}"));
            assert_eq!(get(path, &url, &[]).await.0, 200, "{kind} {path:?}");
        }
        // A token signed by the other kind of key, or with the HS256 "secret" being the public
        // key (the classic confusion attack), is refused.
        let wrong = std::fs::read(format!("{keys}/{other_alg}-private.pem")).unwrap();
        let wrong_token = match alg {
            Algorithm::RS256 => sign(
                Algorithm::ES256,
                &EncodingKey::from_ec_pem(&wrong).unwrap(),
                claims.clone(),
            ),
            _ => sign(
                Algorithm::RS256,
                &EncodingKey::from_rsa_pem(&wrong).unwrap(),
                claims.clone(),
            ),
        };
        let confused = sign(
            Algorithm::HS256,
            &EncodingKey::from_secret(&std::fs::read(&public).unwrap()),
            claims.clone(),
        );
        for (why, token) in [("other key", wrong_token), ("hs256 confusion", confused)] {
            for path in PATHS {
                let url = server.url(&format!("/quotes?token={token}"));
                let (status, _, body) = get(path, &url, &[]).await;
                assert_eq!(status, 401, "{kind} {why} {path:?}: {body}");
                assert!(
                    body["message"]
                        .as_str()
                        .unwrap()
                        .contains("this server accepts"),
                    "{kind} {why}: {body}"
                );
            }
        }
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_token_guards_health_and_metrics_only() {
    let token = "metrics-token-0123456789";
    let server = common::start(&["--seed", "1", "--metrics-token", token]).await;
    let bearer = format!("Bearer {token}");
    for path in PATHS {
        for route in ["/healthz", "/metrics"] {
            let (status, headers, body) = get(path, &server.url(route), &[]).await;
            assert_eq!(status, 401, "{path:?} {route}");
            assert_eq!(body["error"], "unauthorized");
            assert_eq!(headers["www-authenticate"], "Bearer");
            let wrong = get(
                path,
                &server.url(route),
                &[("authorization", "Bearer metrics-token-wrong-00000")],
            )
            .await;
            assert_eq!(wrong.0, 401, "{path:?} {route}");
            assert!(wrong.2["message"].as_str().unwrap().contains("wrong"));
            let ok = get(path, &server.url(route), &[("authorization", &bearer)]).await;
            assert_eq!(ok.0, 200, "{path:?} {route}");
        }
        // Without --jwt-secret the data routes stay open.
        assert_eq!(
            get(path, &server.url("/quotes?symbols=AAPL"), &[]).await.0,
            200
        );
        assert_eq!(get(path, &server.url("/snapshot"), &[]).await.0, 200);
    }
    server.stop().await;
}

async fn run(args: &[&str]) -> (i32, String, String) {
    let out = tokio::time::timeout(
        common::STEP,
        tokio::process::Command::new(BIN).args(args).output(),
    )
    .await
    .expect("exits in time")
    .expect("runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tickcast_token_prints_a_token_the_server_accepts() {
    let (code, out, err) = run(&[
        "token",
        "--jwt-secret",
        SECRET,
        "--symbols",
        "AAPL,MSFT",
        "--ttl",
        "1h",
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    let token = out.trim();
    let grant = Verifier::hs256(SECRET.as_bytes())
        .unwrap()
        .verify(token, now())
        .unwrap();
    assert!(grant.exp >= now() + 3590 && grant.exp <= now() + 3600);
    assert!(grant.symbols.allows("MSFT") && !grant.symbols.allows("NVDA"));
    let server = common::start(&["--seed", "1", "--jwt-secret", SECRET]).await;
    let url = server.url(&format!("/quotes?symbols=AAPL&token={token}"));
    assert_eq!(get(Path::Direct, &url, &[]).await.0, 200);
    let url = server.url(&format!("/quotes?symbols=NVDA&token={token}"));
    assert_eq!(get(Path::Direct, &url, &[]).await.0, 403);
    server.stop().await;

    // Bad input: one line on stderr, exit 2.
    for (args, says) in [
        (vec!["--ttl", "1x"], "--ttl"),
        (vec!["--ttl", "0s"], "--ttl"),
        (vec!["--ttl", "400d"], "--ttl"),
        (vec!["--symbols", "AA$"], "--symbols"),
    ] {
        let mut argv = vec!["token", "--jwt-secret", SECRET];
        argv.extend(args.iter().copied());
        let (code, out, err) = run(&argv).await;
        assert_eq!(code, 2, "{argv:?}: {err}");
        assert!(out.is_empty());
        assert_eq!(err.trim_end().lines().count(), 1, "{argv:?}: {err}");
        assert!(err.contains(says), "{argv:?}: {err}");
    }
    let (code, _, err) = run(&["token", "--jwt-secret", "short"]).await;
    assert_eq!(code, 2);
    assert!(err.contains("at least 16 bytes"), "{err}");
    let (code, _, err) = run(&["token"]).await;
    assert_eq!(code, 2, "{err}");
    // The server refuses bad auth and CORS flags at start-up the same way.
    for (args, says) in [
        (vec!["--jwt-secret", "short"], "--jwt-secret"),
        (
            vec!["--jwt-public-key", "/nonexistent/key.pem"],
            "--jwt-public-key",
        ),
        (
            vec![
                "--jwt-public-key",
                concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"),
            ],
            "--jwt-public-key",
        ),
        (
            vec!["--jwt-secret", SECRET, "--jwt-public-key", "x.pem"],
            "cannot be used with",
        ),
        (vec!["--metrics-token", "short"], "--metrics-token"),
        (vec!["--cors-origin", "http://a,nope"], "--cors-origin"),
        (vec!["--cors-origin", "*,http://a"], "--cors-origin"),
        (vec!["--cors-origin", "http://a/path"], "--cors-origin"),
    ] {
        let (code, _, err) = run(&args).await;
        assert_eq!(code, 2, "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}
