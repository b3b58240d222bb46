//! Finding and running chromium through chromedriver, for the browser tests
//! (`#[path]`-included by each of them).
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};
use tokio::time::Instant;

/// Longest wait for chromedriver to start answering.
const WAIT: Duration = Duration::from_secs(15);

/// Where chromium and chromedriver are.
pub struct Tools {
    pub chromium: PathBuf,
    pub chromedriver: PathBuf,
}

/// The browser binaries, or `None` after a loud SKIPPED line; under `CI=true` their absence
/// fails the test instead.
pub fn browser_tools() -> Option<Tools> {
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

/// `env` if set, else the first of `names` on the PATH.
pub fn find_binary(env: &str, names: &[&str]) -> Option<PathBuf> {
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
pub struct Driver {
    pub child: Child,
    pub profile: PathBuf,
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
pub fn processes_using(path: &Path) -> Vec<u32> {
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

/// Waits until chromedriver answers on `webdriver`.
pub async fn wait_until_serving(webdriver: &str) {
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

/// A loopback port free at the time of asking.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// `target/` of this build (the parent of Cargo's per-build temporary directory).
pub fn target_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("CARGO_TARGET_TMPDIR is inside target/")
        .to_path_buf();
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Prints to the real stdout, so the line shows even when the test harness captures output.
pub fn shout(text: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}

/// Longest any single browser command may take.
pub const COMMAND: Duration = Duration::from_secs(15);

/// A headless chromium session through a chromedriver of its own; both end when it is dropped.
pub struct Browser {
    pub client: Client,
    _driver: Driver,
}

impl Browser {
    /// Starts chromedriver (its log in `target/browser-tests/chromedriver-{name}.log`) and a
    /// chromium session with a window of `size`; `insecure` accepts any certificate (a
    /// `--tls-self-signed` server).
    pub async fn launch(
        tools: &Tools,
        name: &str,
        (width, height): (u32, u32),
        insecure: bool,
    ) -> Browser {
        use std::os::unix::process::CommandExt as _;
        let port = free_port();
        let profile =
            std::env::temp_dir().join(format!("tickcast-browser-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&profile);
        std::fs::create_dir_all(&profile).unwrap();
        let logs = target_dir().join("browser-tests");
        std::fs::create_dir_all(&logs).unwrap();
        let log = logs.join(format!("chromedriver-{name}.log"));
        let child = Command::new(&tools.chromedriver)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", tools.chromedriver.display()));
        let driver = Driver { child, profile };
        let webdriver = format!("http://127.0.0.1:{port}");
        wait_until_serving(&webdriver).await;

        let mut args = vec![
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--no-default-browser-check".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-extensions".into(),
            "--hide-scrollbars".into(),
            "--force-device-scale-factor=1".into(),
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", driver.profile.display()),
        ];
        if insecure {
            args.push("--ignore-certificate-errors".into());
        }
        let caps = json!({
            "browserName": "chrome",
            "acceptInsecureCerts": insecure,
            "goog:chromeOptions": {
                "binary": tools.chromium,
                "args": args,
            },
            "goog:loggingPrefs": {"browser": "ALL"},
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

    pub async fn close(self) {
        let _ = tokio::time::timeout(COMMAND, self.client.close()).await;
    }
}

/// A browser command, bounded in time.
pub async fn cmd<T>(
    command: impl std::future::Future<Output = Result<T, fantoccini::error::CmdError>>,
) -> T {
    tokio::time::timeout(COMMAND, command)
        .await
        .expect("browser command within the time limit")
        .unwrap_or_else(|e| panic!("browser command failed: {e}"))
}

/// Runs `script` in the page (a function body; `return` a value).
pub async fn js(c: &Client, script: &str) -> Value {
    cmd(c.execute(script, vec![])).await
}

/// Polls `script` until `ready` accepts its value; after `wait` fails with the last value, the
/// page's recorded errors and a screenshot in `target/browser-tests/failure.png`.
pub async fn wait_js(
    c: &Client,
    what: &str,
    script: &str,
    wait: Duration,
    ready: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + wait;
    loop {
        let value = js(c, script).await;
        if ready(&value) {
            return value;
        }
        if Instant::now() >= deadline {
            let errors = js(c, "return window.__errors || []").await;
            // What the page looked like, for whoever reads the failure.
            let shot = target_dir().join("browser-tests/failure.png");
            if let Ok(Ok(png)) = tokio::time::timeout(COMMAND, c.screenshot()).await {
                let _ = std::fs::write(&shot, png);
            }
            panic!(
                "timed out after {wait:?} waiting for {what}; last value: {value}; \
                 page errors: {errors}; screenshot: {}",
                shot.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
