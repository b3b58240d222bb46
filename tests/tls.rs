//! HTTPS over real sockets: ALPN gives HTTP/2 or HTTP/1.1 with a certificate from files or a
//! self-signed one, both carry streams, the handshake has a deadline, and bad PEM files are
//! refused with one line.

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_tickcast");

/// A fresh directory for this test's files.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tickcast-tls-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A certificate for localhost and 127.0.0.1 and its key, written as PEM files in `dir`;
/// returns (cert path, key path, cert PEM).
fn write_cert(dir: &std::path::Path) -> (PathBuf, PathBuf, String) {
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    let generated = rcgen::generate_simple_self_signed(names).unwrap();
    let pem = generated.cert.pem();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, &pem).unwrap();
    std::fs::write(&key, generated.key_pair.serialize_pem()).unwrap();
    (cert, key, pem)
}

/// A client that trusts only `pem`.
fn client_trusting(pem: &str, http1_only: bool) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).unwrap());
    if http1_only {
        builder = builder.http1_only();
    }
    builder.build().unwrap()
}

/// Reads `resp`'s body until it holds a whole SSE event named `name`.
async fn read_until_event(resp: reqwest::Response, name: &str) -> String {
    use futures_util::StreamExt;
    let mut body = resp.bytes_stream();
    let mut text = String::new();
    let needle = format!("event: {name}\n");
    tokio::time::timeout(common::STEP, async {
        while !text.contains(&needle) || !text[text.find(&needle).unwrap()..].contains("\n\n") {
            let chunk = body.next().await.expect("stream open").expect("readable");
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {name} event in time: {text:?}"));
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_negotiates_http2_or_http11_and_streams_over_both() {
    let dir = temp_dir("files");
    let (cert, key, pem) = write_cert(&dir);
    let server = common::start(&[
        "--seed",
        "1",
        "--rate",
        "20",
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ])
    .await;
    let port = server.addr.port();
    for (http1_only, version) in [
        (false, reqwest::Version::HTTP_2),
        (true, reqwest::Version::HTTP_11),
    ] {
        let client = client_trusting(&pem, http1_only);
        let health = client
            .get(format!("https://localhost:{port}/healthz"))
            .send()
            .await
            .unwrap();
        assert_eq!(health.status(), 200);
        assert_eq!(health.version(), version);
        let stream = client
            .get(format!("https://127.0.0.1:{port}/quotes?symbols=AAPL,MSFT"))
            .header("accept", "text/event-stream")
            .send()
            .await
            .unwrap();
        assert_eq!(stream.status(), 200);
        assert_eq!(stream.version(), version);
        assert_eq!(stream.headers()["content-type"], "text/event-stream");
        let text = read_until_event(stream, "quote").await;
        assert!(text.contains("event: snapshot\n"), "{text}");
    }
    // Plain HTTP on the HTTPS port is not answered as HTTP.
    let plain = common::http1()
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .send()
        .await;
    assert!(plain.is_err(), "plain HTTP got {plain:?}");
    server.stop().await;
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_self_signed_certificate_is_served_and_its_fingerprint_logged() {
    let symbols = concat!(env!("CARGO_MANIFEST_DIR"), "/data/symbols.csv");
    let mut child = Command::new(BIN)
        .args(["--addr", "127.0.0.1:0", "--symbols", symbols])
        .args(["--seed", "1", "--tls-self-signed"])
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let (fingerprint, addr) = tokio::time::timeout(common::STEP, async {
        let mut fingerprint = None;
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.split("SHA-256 ").nth(1) {
                fingerprint = rest.split_whitespace().next().map(str::to_owned);
            }
            if let Some(rest) = line.split("listening on https://").nth(1) {
                let addr = rest.split_whitespace().next().unwrap().to_string();
                return (fingerprint.expect("fingerprint logged first"), addr);
            }
        }
        panic!("server exited before listening");
    })
    .await
    .expect("server starts in time");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .tls_info(true)
        .build()
        .unwrap();
    let resp = client
        .get(format!("https://{addr}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    let served = resp
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|info| info.peer_certificate())
        .expect("peer certificate")
        .to_vec();
    assert_eq!(tickcast::tls::sha256_fingerprint(&served), fingerprint);
    // A client that checks certificates refuses it: it is self-signed.
    let strict = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .build()
        .unwrap();
    assert!(strict
        .get(format!("https://{addr}/healthz"))
        .send()
        .await
        .is_err());
    drop(child);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_without_a_tls_handshake_in_time_is_closed() {
    let server = common::start(&["--seed", "1", "--tls-self-signed"]).await;
    let mut silent = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let mut buf = [0u8; 64];
    // The header timeout is 10 s.
    let read = tokio::time::timeout(Duration::from_secs(15), silent.read(&mut buf))
        .await
        .expect("closed within the header timeout");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    server.stop().await;
}

#[tokio::test]
async fn bad_certificate_files_are_refused_with_one_line() {
    let dir = temp_dir("bad");
    let (cert, key, _) = write_cert(&dir);
    let junk = dir.join("junk.pem");
    std::fs::write(&junk, "not PEM\n").unwrap();
    let missing = dir.join("missing.pem");
    let (cert, key, junk, missing) = (
        cert.to_str().unwrap(),
        key.to_str().unwrap(),
        junk.to_str().unwrap(),
        missing.to_str().unwrap(),
    );
    let cases: [(&[&str], String); 4] = [
        (
            &["--tls-cert", junk, "--tls-key", key],
            format!("--tls-cert {junk}: no PEM certificate"),
        ),
        (
            &["--tls-cert", cert, "--tls-key", junk],
            format!("--tls-key {junk}: no PEM private key"),
        ),
        (
            &["--tls-cert", missing, "--tls-key", key],
            format!("--tls-cert {missing}: "),
        ),
        (
            &["--tls-cert", cert],
            "--tls-cert and --tls-key must be given together".to_string(),
        ),
    ];
    for (args, needle) in cases {
        let out = tokio::time::timeout(
            common::STEP,
            Command::new(BIN)
                .args(["--addr", "127.0.0.1:0"])
                .args(args)
                .output(),
        )
        .await
        .expect("exits in time")
        .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(&needle), "{args:?}: {stderr}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}
