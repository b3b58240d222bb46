//! HTTP/2 lifts the browser's six-connections-per-origin limit: one page opens 12 EventSources
//! to one origin in Debian's headless chromium (through chromedriver and fantoccini). Over
//! plain HTTP/1.1 exactly six of them receive events and the rest wait for a connection; over
//! HTTPS the browser negotiates HTTP/2 and all 12 stream over one connection.
//!
//! Like `tests/browser.rs`: without chromium the test prints a loud SKIPPED line and passes,
//! except under `CI=true`, where it fails.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};
use tokio::time::Instant;

/// Longest any single browser command may take.
const COMMAND: Duration = Duration::from_secs(15);
/// Longest a condition on the page may take to become true.
const WAIT: Duration = Duration::from_secs(15);

/// Opens 12 EventSources to this origin and counts, per source, the events received.
const OPEN_TWELVE_JS: &str = r#"
window.__streams = { events: Array(12).fill(0), sources: [] };
for (let i = 0; i < 12; i++) {
  const es = new EventSource('/quotes?symbols=AAPL,MSFT');
  for (const kind of ['snapshot', 'quote', 'trade', 'heartbeat']) {
    es.addEventListener(kind, () => { window.__streams.events[i]++; });
  }
  window.__streams.sources.push(es);
}
return 12;
"#;

/// How many of the 12 sources have received an event, and the page's protocol.
const COUNT_JS: &str = r#"
return {
  receiving: window.__streams.events.filter((n) => n > 0).length,
  protocol: performance.getEntriesByType('navigation')[0].nextHopProtocol,
};
"#;

const CLOSE_JS: &str = "window.__streams.sources.forEach((es) => es.close()); return 0;";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_over_tls_lifts_the_six_streams_per_origin_limit() {
    let Some(tools) = browser_tools() else { return };
    let flags = ["--seed", "1", "--rate", "5"];
    let plain = common::start(&flags).await;
    let mut tls_flags = flags.to_vec();
    tls_flags.push("--tls-self-signed");
    let tls = common::start(&tls_flags).await;
    let browser = launch(&tools).await;
    let c = &browser.client;

    // Plain HTTP/1.1: six connections per origin, so six streams; the others wait.
    let page = plain.url("/healthz");
    cmd(c.goto(&page)).await;
    js(c, OPEN_TWELVE_JS).await;
    let six = wait_js(c, "six streams over HTTP/1.1", COUNT_JS, |v| {
        v["receiving"] == 6
    })
    .await;
    assert_eq!(six["protocol"], "http/1.1", "{six}");
    // The others are still waiting a few seconds later (each open stream sends heartbeats,
    // quotes and trades, so none of the six frees its connection).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let still = js(c, COUNT_JS).await;
    assert_eq!(still["receiving"], 6, "HTTP/1.1 stays at six: {still}");
    js(c, CLOSE_JS).await;

    // HTTPS: the browser negotiates h2, and all twelve stream over one connection.
    let page = format!("https://localhost:{}/healthz", tls.addr.port());
    cmd(c.goto(&page)).await;
    js(c, OPEN_TWELVE_JS).await;
    let twelve = wait_js(c, "twelve streams over HTTP/2", COUNT_JS, |v| {
        v["receiving"] == 12
    })
    .await;
    assert_eq!(twelve["protocol"], "h2", "{twelve}");
    js(c, CLOSE_JS).await;

    let _ = tokio::time::timeout(COMMAND, browser.client.close()).await;
    plain.stop().await;
    tls.stop().await;
}

struct Browser {
    client: Client,
    _driver: Driver,
}

/// Starts chromedriver and a chromium session that accepts the self-signed certificate.
async fn launch(tools: &Tools) -> Browser {
    use std::os::unix::process::CommandExt as _;
    let port = free_port();
    let profile =
        std::env::temp_dir().join(format!("tickcast-h2-browser-{}-{port}", std::process::id()));
    let _ = std::fs::remove_dir_all(&profile);
    std::fs::create_dir_all(&profile).unwrap();
    let logs = target_dir().join("browser-tests");
    std::fs::create_dir_all(&logs).unwrap();
    let child = Command::new(&tools.chromedriver)
        .arg(format!("--port={port}"))
        .arg(format!(
            "--log-path={}",
            logs.join("chromedriver-h2.log").display()
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", tools.chromedriver.display()));
    let driver = Driver { child, profile };
    let webdriver = format!("http://127.0.0.1:{port}");
    wait_until_serving(&webdriver).await;
    let args = [
        "--headless=new".to_string(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--disable-dev-shm-usage".into(),
        "--disable-quic".into(),
        "--no-first-run".into(),
        "--disable-background-networking".into(),
        "--disable-extensions".into(),
        "--ignore-certificate-errors".into(),
        format!("--user-data-dir={}", driver.profile.display()),
    ];
    let caps = json!({
        "browserName": "chrome",
        "acceptInsecureCerts": true,
        "goog:chromeOptions": { "binary": tools.chromium, "args": args },
    });
    let Value::Object(caps) = caps else {
        unreachable!()
    };
    let client = tokio::time::timeout(
        Duration::from_secs(30),
        ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&webdriver),
    )
    .await
    .expect("chromium starts within 30 s")
    .unwrap_or_else(|e| panic!("start a chromium session through chromedriver: {e}"));
    Browser {
        client,
        _driver: driver,
    }
}

/// A browser command, bounded in time.
async fn cmd<T>(
    command: impl std::future::Future<Output = Result<T, fantoccini::error::CmdError>>,
) -> T {
    tokio::time::timeout(COMMAND, command)
        .await
        .expect("browser command within the time limit")
        .unwrap_or_else(|e| panic!("browser command failed: {e}"))
}

/// Runs `script` in the page (a function body; `return` a value).
async fn js(c: &Client, script: &str) -> Value {
    cmd(c.execute(script, vec![])).await
}

/// Polls `script` until `ready` accepts its value; fails with the last value after [`WAIT`].
async fn wait_js(c: &Client, what: &str, script: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let value = js(c, script).await;
        if ready(&value) {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "waited {WAIT:?} for {what}; last: {value}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Where chromium and chromedriver are.
struct Tools {
    chromium: PathBuf,
    chromedriver: PathBuf,
}

/// The browser binaries, or `None` after a loud SKIPPED line; under `CI=true` their absence
/// fails the test instead.
fn browser_tools() -> Option<Tools> {
    let chromium = find_binary(
        "TICKCAST_CHROMIUM",
        &["chromium", "chromium-browser", "google-chrome"],
    );
    let chromedriver = find_binary("TICKCAST_CHROMEDRIVER", &["chromedriver"]);
    match (chromium, chromedriver) {
        (Some(chromium), Some(chromedriver)) => Some(Tools {
            chromium,
            chromedriver,
        }),
        (chromium, chromedriver) => {
            let missing: Vec<&str> = [
                chromium.is_none().then_some("chromium"),
                chromedriver.is_none().then_some("chromedriver"),
            ]
            .into_iter()
            .flatten()
            .collect();
            let why = format!(
                "{} not found (apt-get install chromium chromium-driver)",
                missing.join(" and ")
            );
            if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
                panic!("CI=true: the browser tests must run, but {why}");
            }
            let banner = "=".repeat(78);
            shout(&format!(
                "{banner}\nSKIPPED: chromium not installed: {why}\n{banner}"
            ));
            None
        }
    }
}

fn find_binary(env: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(env) {
        let path = PathBuf::from(path);
        return path.is_file().then_some(path);
    }
    let dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    names
        .iter()
        .flat_map(|name| dirs.iter().map(move |d| d.join(name)))
        .find(|p| p.is_file())
}

/// A chromedriver process (and the chromium it starts), killed when dropped, also on panic.
struct Driver {
    child: Child,
    profile: PathBuf,
}

impl Drop for Driver {
    fn drop(&mut self) {
        // chromedriver runs in its own process group with the browser it started: end the
        // group, then any process still using this test's profile directory.
        let group = self.child.id();
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{group}")])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        for pid in processes_using(&self.profile) {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// Ids of the processes whose command line mentions `path`.
fn processes_using(path: &Path) -> Vec<u32> {
    let needle = path.to_string_lossy().into_owned();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&needle))
        })
        .collect()
}

async fn wait_until_serving(webdriver: &str) {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + WAIT;
    let status = format!("{webdriver}/status");
    loop {
        if let Ok(Ok(r)) =
            tokio::time::timeout(Duration::from_secs(2), http.get(&status).send()).await
        {
            if r.status().is_success() {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "chromedriver did not answer on {status} within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// `target/` of this build (the parent of Cargo's per-build temporary directory).
fn target_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("CARGO_TARGET_TMPDIR is inside target/")
        .to_path_buf();
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Prints to the real stdout, so the line shows even when the test harness captures output.
fn shout(text: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}
