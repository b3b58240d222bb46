//! The dashboard in a real browser: Debian's headless `chromium`, driven through `chromedriver`
//! with fantoccini, against the real server on an ephemeral port.
//!
//! Without chromium/chromedriver the tests print a loud `SKIPPED: chromium not installed` line
//! and pass, except under `CI=true`, where they fail: CI must never skip them silently.
//! `TICKCAST_CHROMIUM` and `TICKCAST_CHROMEDRIVER` override where the binaries are looked for.
//!
//! The first test loads the copy of `web/` built into the binary (what ships); the restart test
//! serves `web/` from disk with `--web-dir`, the way the page is edited.
//!
//! Artefacts for people to look at: `target/dashboard.png` (dark), `target/dashboard-light.png`,
//! `target/dashboard-phone.png` (`docs/dashboard.png` is a copy of a dark one, made by hand),
//! and `target/dashboard-bench.txt` with the 10,000-event measurement.

mod common;

use std::fmt::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};
use tokio::time::Instant;
use warp::http::Method;

/// Longest any single browser command may take.
const COMMAND: Duration = Duration::from_secs(15);
/// Longest a condition on the page may take to become true.
const WAIT: Duration = Duration::from_secs(12);

/// The server flags of both tests: prices that visibly move, and quick reconnects.
const SERVER_FLAGS: &[&str] = &["--seed", "1", "--speed", "600", "--retry-ms", "500"];

/// The browser tests share the machine's two cores: they run one after the other.
static ONE_BROWSER_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_streams_quotes_and_resubscribes_on_one_event_source() {
    let Some(tools) = browser_tools() else { return };
    let _turn = ONE_BROWSER_AT_A_TIME.lock().await;
    let server = common::start(&server_args(false)).await;
    let browser = Browser::launch(&tools, "dashboard", (1600, 1000)).await;
    let c = &browser.client;

    // 1. The page loads, and a row with a price appears for each requested symbol.
    let requested = [
        "AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META", "TSLA", "JPM", "V", "NFLX", "AMD", "SPY",
    ];
    let page = server.url(&format!("/?symbols={}", requested.join(",")));
    step(&format!("open {page}"));
    cmd(c.goto(&page)).await;
    let opened = Instant::now();
    let title = cmd(c.title()).await;
    assert!(title.contains("tickcast"), "page title {title:?}");
    let shown = wait_js(
        c,
        "a row with a price for each requested symbol",
        ROWS_JS,
        |v| {
            v.as_array().is_some_and(|rows| {
                rows.len() == requested.len() && rows.iter().all(|r| r["price"] != "—")
            })
        },
    )
    .await;
    let symbols: Vec<&str> = shown
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["symbol"].as_str().unwrap())
        .collect();
    assert_eq!(symbols, requested, "rows in the requested order");
    for row in shown.as_array().unwrap() {
        let price = row["price"].as_str().unwrap();
        assert!(
            is_decimal(price),
            "{}: price {price:?} is shown as sent",
            row["symbol"]
        );
    }
    // The semantic structure the page promises.
    let structure = js(
        c,
        r#"return {
            table: !!document.querySelector('table#quotes > thead th[scope=col]'),
            rowHeaders: document.querySelectorAll('#quotes tbody th[scope=row]').length,
            pickerLabel: document.querySelector('label[for=picker-input]')?.textContent.trim(),
            combobox: document.querySelector('#picker-input').getAttribute('role'),
            removeLabel: document.querySelector('#quotes tbody .remove').getAttribute('aria-label'),
        }"#,
    )
    .await;
    assert_eq!(structure["table"], true, "{structure}");
    assert_eq!(structure["rowHeaders"], requested.len(), "{structure}");
    assert_eq!(structure["pickerLabel"], "Add symbol", "{structure}");
    assert_eq!(structure["combobox"], "combobox", "{structure}");
    assert_eq!(
        structure["removeLabel"], "Remove AAPL from the watchlist",
        "{structure}"
    );

    // 2. Prices change within a few seconds; the indicator says live, with a fresh event age.
    let before = prices(&shown);
    wait_js(c, "prices of 3 rows to change", ROWS_JS, |v| {
        let now = prices(v);
        before
            .iter()
            .filter(|&(s, p)| now.get(s) != Some(p))
            .count()
            >= 3
    })
    .await;
    let conn = wait_js(c, "the indicator to show live", CONN_JS, |v| {
        v["state"] == "live" && v["age"] != "no events yet"
    })
    .await;
    step(&format!("indicator: {conn}"));
    let es = event_sources(c).await;
    assert_eq!(es["open"], 1, "exactly one EventSource is open: {es}");
    assert_eq!(es["created"], 1, "one EventSource so far: {es}");
    let url = es["urls"][0].as_str().unwrap();
    assert!(
        url.ends_with(&format!("/quotes?symbols={}", requested.join(","))),
        "one stream for all the rows: {url}"
    );
    assert_no_console_errors(&browser, false).await;

    // 3. The picker adds a symbol by type-ahead and the page re-subscribes on ONE EventSource.
    step("add COST with the picker (type-ahead, Enter)");
    let input = cmd(c.find(Locator::Css("#picker-input"))).await;
    cmd(input.click()).await;
    cmd(input.send_keys("cos")).await;
    wait_js(
        c,
        "the picker to suggest COST",
        "return [...document.querySelectorAll('#picker-list [role=option]')].map(o => o.dataset.symbol)",
        |v| v.as_array().is_some_and(|o| o.iter().any(|s| s == "COST")),
    )
    .await;
    let expanded = js(
        c,
        "return document.querySelector('#picker-input').getAttribute('aria-expanded')",
    )
    .await;
    assert_eq!(expanded, "true");
    cmd(input.send_keys("\u{E007}")).await; // Enter
    wait_js(c, "a COST row with a price", ROWS_JS, |v| {
        v.as_array().is_some_and(|rows| {
            rows.iter()
                .any(|r| r["symbol"] == "COST" && r["price"] != "—")
        })
    })
    .await;
    let es = wait_js(
        c,
        "the re-subscription",
        "return window.__es.summary()",
        |v| v["created"] == 2,
    )
    .await;
    assert_eq!(es["open"], 1, "still exactly one open EventSource: {es}");
    let url = es["urls"][1].as_str().unwrap();
    assert!(
        url.ends_with(&format!("/quotes?symbols={},COST", requested.join(","))),
        "the new stream carries the whole list: {url}"
    );
    let kept = js(
        c,
        "return {search: location.search, stored: localStorage.getItem('tickcast.watchlist')}",
    )
    .await;
    assert!(
        kept["search"].as_str().unwrap().contains(",SPY,COST"),
        "the URL holds the selection: {kept}"
    );
    assert!(
        kept["stored"].as_str().unwrap().contains("\"COST\""),
        "localStorage holds the selection: {kept}"
    );

    // Removing a row (its button) re-subscribes the same way.
    step("remove V with its row button");
    cmd(cmd(c.find(Locator::Css("tr[data-symbol='V'] .remove")))
        .await
        .click())
    .await;
    let es = wait_js(
        c,
        "the re-subscription after a removal",
        "return window.__es.summary()",
        |v| v["created"] == 3,
    )
    .await;
    assert_eq!(es["open"], 1, "still exactly one open EventSource: {es}");
    assert!(!es["urls"][2].as_str().unwrap().contains(",V,"), "{es}");
    let rows = js(c, ROWS_JS).await;
    assert_eq!(rows.as_array().unwrap().len(), requested.len());

    // 4. Selecting a row charts it; the chart can switch to candles, by keyboard too.
    step("select NVDA and switch the chart to candles");
    cmd(cmd(c.find(Locator::Css("tr[data-symbol='NVDA'] .sym-btn")))
        .await
        .click())
    .await;
    cmd(cmd(c.find(Locator::Css("label[for=mode-candles]")))
        .await
        .click())
    .await;
    let chart = wait_js(
        c,
        "the chart to show NVDA candles",
        "const s = window.tickcast.state(); return {selected: s.selected, mode: s.chartMode, \
         title: document.querySelector('#chart-symbol').textContent, \
         label: document.querySelector('#chart').getAttribute('aria-label')}",
        |v| {
            v["selected"] == "NVDA"
                && v["mode"] == "candles"
                && v["title"] == "NVDA"
                && v["label"]
                    .as_str()
                    .is_some_and(|l| l.starts_with("NVDA 5-second candle chart"))
        },
    )
    .await;
    step(&format!("chart: {chart}"));
    cmd(cmd(c.find(Locator::Css("label[for=mode-line]")))
        .await
        .click())
    .await;

    // 5. Screenshots: dark (for the README), light, and at phone width.
    let target = target_dir();
    cdp(
        c,
        "Emulation.setEmulatedMedia",
        json!({"features": [{"name": "prefers-color-scheme", "value": "dark"}]}),
    )
    .await;
    // Some history for the charts to draw (the page keeps its own; nothing is back-filled).
    tokio::time::sleep_until(opened + Duration::from_secs(15)).await;
    let png = target.join("dashboard.png");
    screenshot(c, &png).await;
    cdp(
        c,
        "Emulation.setEmulatedMedia",
        json!({"features": [{"name": "prefers-color-scheme", "value": "light"}]}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    screenshot(c, &target.join("dashboard-light.png")).await;

    cdp(
        c,
        "Emulation.setDeviceMetricsOverride",
        json!({"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": true}),
    )
    .await;
    let fit = wait_js(
        c,
        "the page to fit a phone's width",
        "return {inner: innerWidth, scroll: document.documentElement.scrollWidth,
            wide: [...document.querySelectorAll('body *')]
                .filter(e => e.getBoundingClientRect().right > 391)
                .slice(0, 8).map(e => e.tagName + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right))}",
        |v| v["inner"] == 390,
    )
    .await;
    assert!(
        fit["scroll"].as_u64() <= fit["inner"].as_u64(),
        "no horizontal scrolling at phone width: {fit}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    screenshot(c, &target.join("dashboard-phone.png")).await;
    cdp(c, "Emulation.clearDeviceMetricsOverride", json!({})).await;

    // 6. 10,000 quote events through the live handler, with 120 symbols on the page.
    step("watch all symbols for the measurement");
    js(
        c,
        "fetch('symbols').then(r => r.json()).then(all => window.tickcast.setWatchlist(all.map(s => s.symbol)))",
    )
    .await;
    wait_js(
        c,
        "120 rows with quotes",
        "return Object.keys(window.tickcast.quotes()).length",
        |v| v.as_u64() == Some(120),
    )
    .await;
    let es = event_sources(c).await;
    assert_eq!(es["open"], 1, "120 symbols, still one EventSource: {es}");
    let bench = js(c, BENCH_JS).await;
    step(&format!("bench: {bench}"));
    assert_eq!(
        bench["applied"], 10_000,
        "every event reached a row: {bench}"
    );
    assert_eq!(
        bench["shown"], bench["expected"],
        "the last event is on screen: {bench}"
    );
    let ms = bench["ms"].as_f64().unwrap();
    let chunked = bench["chunkedMs"].as_f64().unwrap();
    let laid_out = bench["layoutMs"].as_f64().unwrap();
    let mut report = String::new();
    writeln!(
        report,
        "dashboard: applied 10000 quote events in {ms:.1} ms"
    )
    .unwrap();
    writeln!(
        report,
        "dashboard: applied 10000 quote events in {chunked:.1} ms rendering every 100 events \
         (100 renders), {laid_out:.1} ms with the browser's style and layout after each"
    )
    .unwrap();
    writeln!(
        report,
        "# 120 symbols on the page; events replayed through window.tickcast.applyEvents (the \
         EventSource handler) after a 1,000-event warm-up; headless {}; \
         command: cargo test --test browser -- --nocapture",
        bench["ua"].as_str().unwrap_or("chromium")
    )
    .unwrap();
    std::fs::write(target.join("dashboard-bench.txt"), &report).unwrap();
    shout(report.trim_end());
    assert!(
        ms < 5000.0,
        "10,000 events should apply in well under 5 s, took {ms} ms"
    );

    assert_no_console_errors(&browser, false).await;
    browser.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_reconnects_after_server_restart_without_reload() {
    let Some(tools) = browser_tools() else { return };
    let _turn = ONE_BROWSER_AT_A_TIME.lock().await;
    let server = common::start(&server_args(true)).await;
    let addr = server.addr;
    let browser = Browser::launch(&tools, "restart", (1280, 900)).await;
    let c = &browser.client;

    // Lower case is fine, an unknown symbol is left out (and said so), duplicates collapse.
    cmd(c.goto(&server.url("/?symbols=AAPL,msft,ZZZZ,TSLA,AAPL"))).await;
    wait_js(c, "three rows with prices", ROWS_JS, |v| {
        v.as_array()
            .is_some_and(|rows| rows.len() == 3 && rows.iter().all(|r| r["price"] != "—"))
    })
    .await;
    let hint = js(
        c,
        "return document.querySelector('#picker-hint').textContent",
    )
    .await;
    assert!(
        hint.as_str().unwrap().contains("ZZZZ"),
        "the unknown symbol is reported: {hint}"
    );
    let search = js(c, "return location.search").await;
    assert_eq!(search, "?symbols=AAPL,MSFT,TSLA", "the URL is normalised");
    wait_js(c, "live", CONN_JS, |v| v["state"] == "live").await;
    js(c, "window.__marker = 'same page'; return null").await;

    step("stop the server");
    server.stop().await;
    let conn = wait_js(c, "the indicator to show reconnecting", CONN_JS, |v| {
        v["state"] == "reconnecting"
    })
    .await;
    step(&format!("indicator: {conn}"));
    // Let the browser fail a reconnection attempt or two against the closed port.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let conn = js(c, CONN_JS).await;
    assert_eq!(conn["state"], "reconnecting", "still down: {conn}");

    step(&format!("restart the server on {addr}"));
    let applied = js(c, "return window.tickcast.state().applied").await;
    let server = common::start_on(addr, &server_args(true)).await;
    let conn = wait_js(c, "the indicator to show live again", CONN_JS, |v| {
        v["state"] == "live"
    })
    .await;
    step(&format!("indicator: {conn}"));
    let applied = applied.as_u64().unwrap();
    wait_js(
        c,
        "quotes from the restarted server",
        "return window.tickcast.state().applied",
        |v| v.as_u64() > Some(applied + 3),
    )
    .await;
    let marker = js(c, "return window.__marker || null").await;
    assert_eq!(marker, "same page", "the page was not reloaded");
    let es = event_sources(c).await;
    step(&format!("event sources: {es}"));
    assert_eq!(es["open"], 1, "one EventSource: {es}");
    assert_eq!(
        es["created"], 1,
        "EventSource's own reconnection was used, not a new EventSource: {es}"
    );
    let rows = js(c, ROWS_JS).await;
    assert!(
        rows.as_array()
            .unwrap()
            .iter()
            .all(|r| is_decimal(r["price"].as_str().unwrap())),
        "the table is whole again: {rows}"
    );

    // Refused connections while the server was down are logged by the browser as network
    // errors; nothing else may be.
    assert_no_console_errors(&browser, true).await;
    browser.close().await;
    server.stop().await;
}

// ---- page scripts ----------------------------------------------------------------------------

/// Each row's symbol and shown price, in table order.
const ROWS_JS: &str = "return [...document.querySelectorAll('#quotes tbody tr')].map(tr => ({
    symbol: tr.dataset.symbol, price: tr.querySelector('.c-last').textContent }))";

/// What the connection indicator shows.
const CONN_JS: &str = "const c = document.querySelector('#conn'); return {
    state: c.dataset.state, label: document.querySelector('#conn-label').textContent,
    age: document.querySelector('#conn-age').textContent,
    rate: document.querySelector('#conn-rate').textContent }";

/// Installed before any page script: counts EventSource objects, and records uncaught errors.
const HOOKS_JS: &str = r#"(() => {
  const Native = window.EventSource;
  const made = [];
  window.EventSource = class extends Native {
    constructor(url, init) { super(url, init); made.push({ url: String(url), es: this }); }
  };
  window.__es = {
    summary: () => ({
      created: made.length,
      open: made.filter(m => m.es.readyState !== Native.CLOSED).length,
      urls: made.map(m => m.url),
    }),
  };
  window.__errors = [];
  window.addEventListener('error', e => window.__errors.push(String(e.message || e)));
  window.addEventListener('unhandledrejection', e => window.__errors.push('unhandled rejection: ' + e.reason));
})();"#;

/// 10,000 quote events made from the page's current quotes (a random walk per symbol, the
/// exact JSON shape of the stream), replayed through the handler the EventSource uses.
const BENCH_JS: &str = r#"
const N = 10000;
const base = Object.values(window.tickcast.quotes());
let seed = 42;
const rand = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
function record(n, from, spanMs) {
  const walk = base.map(q => ({ q, p: parseFloat(q.price), hi: parseFloat(q.high),
    lo: parseFloat(q.low), vol: q.volume, prev: parseFloat(q.prev_close) }));
  const out = new Array(n);
  let seq = 1e9 + from;
  const t0 = Date.now() - spanMs;
  for (let i = 0; i < n; i++) {
    const s = walk[Math.floor(rand() * walk.length)];
    s.p = Math.max(0.01, s.p * (1 + (rand() - 0.5) * 0.002));
    s.hi = Math.max(s.hi, s.p);
    s.lo = Math.min(s.lo, s.p);
    s.vol += 100;
    const change = s.p - s.prev;
    const q = { ...s.q, seq: seq++, ts: Math.round(t0 + (i / n) * spanMs), price: s.p.toFixed(2),
      bid: (s.p - 0.01).toFixed(2), ask: (s.p + 0.01).toFixed(2), last_size: 100, volume: s.vol,
      high: s.hi.toFixed(2), low: s.lo.toFixed(2), change: change.toFixed(2),
      change_pct: (change / s.prev * 100).toFixed(2) };
    out[i] = { event: 'quote', id: String(q.seq), data: JSON.stringify(q) };
  }
  return out;
}
window.tickcast.applyEvents(record(1000, 0, 5000));
const events = record(N, 1000, 60000);
const timed = window.tickcast.applyEvents(events);
const chunked = window.tickcast.applyEvents(events, { chunk: 100 });
// The same, with the style and layout work a real frame would do after each render.
const t0 = performance.now();
for (let i = 0; i < N; i += 100) {
  window.tickcast.applyEvents(events.slice(i, i + 100));
  void document.body.offsetHeight;
}
const layoutMs = performance.now() - t0;
const last = JSON.parse(events[N - 1].data);
return { ms: timed.ms, applied: timed.applied, renders: timed.renders, chunkedMs: chunked.ms, layoutMs,
  expected: last.price, shown: document.querySelector(`tr[data-symbol="${last.symbol}"] .c-last`).textContent,
  ua: navigator.userAgent.match(/(HeadlessChrome|Chrome)\/[\d.]+/)?.[0] };
"#;

// ---- browser ---------------------------------------------------------------------------------

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

struct Browser {
    client: Client,
    _driver: Driver,
}

impl Browser {
    /// Starts chromedriver and a chromium session; `name` names chromedriver's log in
    /// `target/browser-tests/`.
    async fn launch(tools: &Tools, name: &str, (width, height): (u32, u32)) -> Browser {
        use std::os::unix::process::CommandExt as _;
        let port = free_port();
        let target = target_dir();
        let profile =
            std::env::temp_dir().join(format!("tickcast-browser-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&profile);
        std::fs::create_dir_all(&profile).unwrap();
        let logs = target.join("browser-tests");
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

        let args = [
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
        let caps = json!({
            "browserName": "chrome",
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
        let browser = Browser {
            client,
            _driver: driver,
        };
        cdp(
            &browser.client,
            "Page.addScriptToEvaluateOnNewDocument",
            json!({ "source": HOOKS_JS }),
        )
        .await;
        browser
    }

    async fn close(self) {
        let _ = tokio::time::timeout(COMMAND, self.client.close()).await;
    }
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

/// [`SERVER_FLAGS`], serving `web/` from disk (`--web-dir`) or from the binary.
fn server_args(from_disk: bool) -> Vec<&'static str> {
    let mut args = SERVER_FLAGS.to_vec();
    if from_disk {
        args.extend(["--web-dir", concat!(env!("CARGO_MANIFEST_DIR"), "/web")]);
    }
    args
}

/// Prints to the real stdout, so the line shows even when the test harness captures output.
fn shout(text: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}

fn step(what: &str) {
    println!("browser: {what}");
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
        if Instant::now() >= deadline {
            let errors = js(c, "return window.__errors || []").await;
            // What the page looked like, for whoever reads the failure.
            let shot = target_dir().join("browser-tests/failure.png");
            if let Ok(Ok(png)) = tokio::time::timeout(COMMAND, c.screenshot()).await {
                let _ = std::fs::write(&shot, png);
            }
            panic!(
                "timed out after {WAIT:?} waiting for {what}; last value: {value}; \
                 page errors: {errors}; screenshot: {}",
                shot.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn event_sources(c: &Client) -> Value {
    js(c, "return window.__es.summary()").await
}

async fn screenshot(c: &Client, path: &Path) {
    let png = cmd(c.screenshot()).await;
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    std::fs::write(path, png).unwrap();
    step(&format!("screenshot {}", path.display()));
}

/// Symbol -> shown price.
fn prices(rows: &Value) -> std::collections::HashMap<String, String> {
    rows.as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            (
                r["symbol"].as_str().unwrap_or_default().to_string(),
                r["price"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// A decimal string as the server sends it: digits, one dot, digits.
fn is_decimal(s: &str) -> bool {
    let (int, frac) = s.split_once('.').unwrap_or((s, "0"));
    !int.is_empty()
        && !frac.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit())
}

/// Fails on anything the page logged at error level, and on uncaught errors. With
/// `allow_network`, failed requests (the server being down on purpose) are let through.
async fn assert_no_console_errors(browser: &Browser, allow_network: bool) {
    let c = &browser.client;
    let errors = js(c, "return window.__errors").await;
    assert_eq!(errors, json!([]), "uncaught errors in the page");
    let log = cmd(c.issue_cmd(BrowserLog)).await;
    let severe: Vec<&Value> = log
        .as_array()
        .expect("the browser log is a list")
        .iter()
        .filter(|e| e["level"] == "SEVERE")
        .filter(|e| !(allow_network && e["source"] == "network"))
        .collect();
    assert!(severe.is_empty(), "console errors: {severe:#?}");
}

/// chromedriver's browser log (console messages and failed requests since the last read).
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (Method, Option<String>) {
        (Method::POST, Some(json!({"type": "browser"}).to_string()))
    }
}

/// A Chrome DevTools Protocol command through chromedriver.
#[derive(Debug)]
struct Cdp {
    cmd: &'static str,
    params: Value,
}

impl WebDriverCompatibleCommand for Cdp {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!(
            "session/{}/goog/cdp/execute",
            session.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (Method, Option<String>) {
        let body = json!({"cmd": self.cmd, "params": self.params});
        (Method::POST, Some(body.to_string()))
    }
}

async fn cdp(c: &Client, command: &'static str, params: Value) -> Value {
    cmd(c.issue_cmd(Cdp {
        cmd: command,
        params,
    }))
    .await
}
