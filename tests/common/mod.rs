//! Shared helpers for integration tests: a real server on an ephemeral port, and a small SSE
//! client over real TCP.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use futures_util::StreamExt;
use tickcast::market::symbols;
use tickcast::Config;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Longest any single await in a test may take before the test fails instead of hanging.
pub const STEP: Duration = Duration::from_secs(10);

/// A tickcast server running in this process.
pub struct TestServer {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<()>>,
}

/// Starts a server on 127.0.0.1 with an ephemeral port and the given extra flags.
pub async fn start(args: &[&str]) -> TestServer {
    start_on("127.0.0.1:0".parse().unwrap(), args).await
}

/// A fixed midday of a trading day: tests see the average event rate (the open is 2.5 times as
/// busy) and the same market whatever the hour they run at.
pub const MIDDAY: &str = "2024-03-04T12:00:00-05:00";

/// Starts a server on `addr` (port 0 for an ephemeral one) with the given extra flags; the
/// market starts at [`MIDDAY`] unless they say `--start`.
pub async fn start_on(addr: SocketAddr, args: &[&str]) -> TestServer {
    let symbols = concat!(env!("CARGO_MANIFEST_DIR"), "/data/symbols.csv");
    let mut argv = vec!["tickcast", "--symbols", symbols];
    if !args.contains(&"--start") {
        argv.extend_from_slice(&["--start", MIDDAY]);
    }
    argv.extend_from_slice(args);
    let config = Config::try_parse_from(argv).expect("test flags parse");
    config.validate().expect("test flags are valid");
    let specs = symbols::load_or_built_in(config.symbols.as_deref()).expect("symbols load");
    let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        tickcast::run(listener, config, specs, async {
            let _ = rx.await;
        })
        .await
        .expect("server runs");
    });
    TestServer {
        addr,
        stop: Some(tx),
        handle: Some(handle),
    }
}

impl TestServer {
    /// `http://addr{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Triggers shutdown and waits (bounded) for the server task to finish.
    pub async fn stop(mut self) {
        self.stop.take().map(|tx| tx.send(()));
        let handle = self.handle.take().unwrap();
        tokio::time::timeout(STEP, handle)
            .await
            .expect("server stops within the step timeout")
            .expect("server task does not panic");
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// One parsed SSE event.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Event {
    pub event: String,
    pub id: Option<String>,
    pub data: String,
    pub retry: Option<u64>,
}

impl Event {
    /// `data` parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("bad JSON {:?}: {e}", self.data))
    }

    /// `id` as a number.
    pub fn id_num(&self) -> u64 {
        self.id
            .as_deref()
            .expect("event has an id")
            .parse()
            .unwrap()
    }
}

/// An SSE client reading a real HTTP response.
pub struct SseClient {
    pub response_headers: reqwest::header::HeaderMap,
    pub status: reqwest::StatusCode,
    body: futures_util::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buf: Vec<u8>,
}

/// A reqwest client speaking HTTP/1.1 only.
pub fn http1() -> reqwest::Client {
    reqwest::Client::builder().http1_only().build().unwrap()
}

impl SseClient {
    /// Opens `url` with optional extra headers.
    pub async fn connect(
        client: &reqwest::Client,
        url: &str,
        headers: &[(&str, &str)],
    ) -> SseClient {
        let mut req = client.get(url).header("accept", "text/event-stream");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = tokio::time::timeout(STEP, req.send())
            .await
            .expect("response within the step timeout")
            .expect("request succeeds");
        SseClient {
            status: resp.status(),
            response_headers: resp.headers().clone(),
            body: resp.bytes_stream().boxed(),
            buf: Vec::new(),
        }
    }

    /// The next event (a block ending in a blank line), or `None` at end of stream.
    pub async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(pos) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.buf.drain(..pos + 2).collect();
                return Some(parse_event(
                    &String::from_utf8(block).expect("UTF-8 events"),
                ));
            }
            match tokio::time::timeout(STEP, self.body.next())
                .await
                .expect("next event within the step timeout")
            {
                Some(Ok(chunk)) => self.buf.extend_from_slice(&chunk),
                Some(Err(e)) => panic!("stream error: {e}"),
                None => return None,
            }
        }
    }

    /// The next event with an id (any kind of market event; heartbeats are skipped).
    pub async fn next_with_id(&mut self) -> Event {
        loop {
            let event = self.next().await.expect("stream still open");
            if event.id.is_some() {
                return event;
            }
        }
    }

    /// The next event whose type is `name`, skipping others.
    pub async fn next_named(&mut self, name: &str) -> Event {
        loop {
            let event = self.next().await.expect("stream still open");
            if event.event == name {
                return event;
            }
        }
    }
}

fn parse_event(block: &str) -> Event {
    let mut event = Event::default();
    let mut data = Vec::new();
    for line in block.lines() {
        let (field, value) = line.split_once(": ").unwrap_or((line, ""));
        match field {
            "event" => event.event = value.to_string(),
            "id" => event.id = Some(value.to_string()),
            "data" => data.push(value),
            "retry" => event.retry = value.parse().ok(),
            _ => {}
        }
    }
    event.data = data.join("\n");
    event
}

/// GET `url` and parse the body as JSON, returning the status too.
pub async fn get_json(
    url: &str,
) -> (
    reqwest::StatusCode,
    reqwest::header::HeaderMap,
    serde_json::Value,
) {
    let resp = tokio::time::timeout(STEP, http1().get(url).send())
        .await
        .expect("response in time")
        .expect("request succeeds");
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.json().await.expect("JSON body");
    (status, headers, body)
}

/// The value of the `/metrics` sample whose line starts with `name` (include a trailing space
/// for unlabelled metrics).
pub async fn metric(base_url: &str, name: &str) -> u64 {
    let text = http1()
        .get(format!("{base_url}/metrics"))
        .send()
        .await
        .expect("metrics request")
        .text()
        .await
        .expect("metrics body");
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("{name} missing from /metrics"))
}

/// A self-signed certificate for localhost and 127.0.0.1 written as PEM files in a fresh
/// directory of the temp dir named `name` and the process id: (dir, cert path, key path).
pub fn write_cert(name: &str) -> (std::path::PathBuf, String, String) {
    let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    let generated = rcgen::generate_simple_self_signed(names).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, generated.cert.pem()).unwrap();
    std::fs::write(&key, generated.key_pair.serialize_pem()).unwrap();
    let path = |p: std::path::PathBuf| p.to_str().unwrap().to_string();
    (dir, path(cert), path(key))
}

/// Starts the binary (a process of its own) on an ephemeral port with `data/symbols.csv` and
/// `extra` flags; returns it with its address, read from its log.
pub async fn spawn_server(extra: &[&str]) -> (tokio::process::Child, String) {
    let symbols = concat!(env!("CARGO_MANIFEST_DIR"), "/data/symbols.csv");
    let mut args = vec!["--symbols", symbols];
    args.extend_from_slice(extra);
    spawn_server_in(&std::env::temp_dir(), &args).await
}

/// Starts the binary in `dir` with only the given flags (plus an ephemeral port unless they
/// name an `--addr`).
pub async fn spawn_server_in(
    dir: &std::path::Path,
    args: &[&str],
) -> (tokio::process::Child, String) {
    let default_addr: &[&str] = if args.contains(&"--addr") {
        &[]
    } else {
        &["--addr", "127.0.0.1:0"]
    };
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tickcast"))
        .current_dir(dir)
        .args(default_addr)
        .args(args)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    use tokio::io::AsyncBufReadExt as _;
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = tokio::time::timeout(STEP, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.split("listening on http://").nth(1) {
                return rest.split_whitespace().next().unwrap().to_string();
            }
        }
        panic!("server exited before listening");
    })
    .await
    .expect("server starts in time");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, addr)
}
