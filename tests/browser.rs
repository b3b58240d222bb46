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

#[path = "common/browser.rs"]
mod browser_support;
mod common;
use browser_support::{browser_tools, cmd, js, shout, target_dir, Browser, Tools, COMMAND};

use std::fmt::Write as _;
use std::path::Path;

use std::time::Duration;

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, Locator};
use serde_json::{json, Value};
use tokio::time::Instant;
use warp::http::Method;

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
    // Some minutes of bars for the page to load as history.
    wait_for_bars(&server, "AAPL", 5).await;
    let browser = launch(&tools, "dashboard", (1600, 1000)).await;
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
    // The chart of the first symbol was drawn from history, before any live bar.
    let chart = wait_js(c, "the AAPL chart from history", CHART_JS, |v| {
        v["ready"] == true && v["firstPaint"].is_object()
    })
    .await;
    step(&format!("chart: {chart}"));
    assert_chart_from_history(&chart, "AAPL", 5);
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

    // 4. Selecting a row charts it; the chart switches to a line and to 5-minute bars, which
    // load from /bars again.
    step("select NVDA, switch the chart to a line of 5-minute bars");
    cmd(cmd(c.find(Locator::Css("tr[data-symbol='NVDA'] .sym-btn")))
        .await
        .click())
    .await;
    cmd(cmd(c.find(Locator::Css("label[for=mode-line]")))
        .await
        .click())
    .await;
    cmd(cmd(c.find(Locator::Css("label[for=iv-5m]"))).await.click()).await;
    let chart = wait_js(
        c,
        "the chart to show a line of NVDA's 5-minute bars",
        "const s = window.tickcast.state(); return {selected: s.selected, mode: s.chartMode, \
         interval: s.interval, title: document.querySelector('#chart-symbol').textContent, \
         chart: window.tickcast.chart(), search: location.search, \
         label: document.querySelector('#chart').getAttribute('aria-label')}",
        |v| {
            v["selected"] == "NVDA"
                && v["mode"] == "line"
                && v["interval"] == "5m"
                && v["title"] == "NVDA"
                && v["chart"]["ready"] == true
                && v["label"].as_str().is_some_and(|l| {
                    l.starts_with("NVDA 5m line chart of closes: ") && l.contains(" ET, last ")
                })
        },
    )
    .await;
    step(&format!("chart: {chart}"));
    assert!(
        chart["chart"]["historyBars"].as_u64() >= Some(1),
        "5-minute bars from history: {chart}"
    );
    assert!(
        chart["search"]
            .as_str()
            .is_some_and(|s| s.contains("chart=NVDA") && s.contains("interval=5m")),
        "the URL keeps the chart: {chart}"
    );
    cmd(cmd(c.find(Locator::Css("label[for=mode-candles]")))
        .await
        .click())
    .await;
    cmd(cmd(c.find(Locator::Css("label[for=iv-1m]"))).await.click()).await;

    // 5. Screenshots: dark (for the README), light, and at phone width.
    let target = target_dir();
    cdp(
        c,
        "Emulation.setEmulatedMedia",
        json!({"features": [{"name": "prefers-color-scheme", "value": "dark"}]}),
    )
    .await;
    // A few more live minutes on top of the history the charts loaded.
    tokio::time::sleep_until(opened + Duration::from_secs(12)).await;
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
    let browser = launch(&tools, "restart", (1280, 900)).await;
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
    let before = js(c, "return window.tickcast.clock().marketTs").await;
    let before = before.as_f64().unwrap();
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
    // The new server's market starts at midday again: the clock follows it back, and the chart
    // is drawn from the new server's bars, not the old ones.
    let clock = wait_js(
        c,
        "the market clock to follow the restarted server",
        "return {clock: window.tickcast.clock(), chart: window.tickcast.chart(), \
         resets: window.tickcast.state().resets}",
        |v| {
            v["resets"] == 1
                && v["clock"]["marketTs"].as_f64().is_some_and(|t| t < before)
                && v["chart"]["ready"] == true
                && v["chart"]["newestStart"]
                    .as_f64()
                    .is_some_and(|t| t <= v["clock"]["marketTs"].as_f64().unwrap())
        },
    )
    .await;
    step(&format!("after the restart: {clock}"));

    // Refused connections while the server was down are logged by the browser as network
    // errors; nothing else may be.
    assert_no_console_errors(&browser, true).await;
    browser.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_halts_the_tape_and_the_market_clock() {
    let Some(tools) = browser_tools() else { return };
    let _turn = ONE_BROWSER_AT_A_TIME.lock().await;
    // Slower: a market minute is 2 s, so a halt of 2 minutes shows for 4 s.
    let server = common::start(&[
        "--seed",
        "1",
        "--speed",
        "30",
        "--retry-ms",
        "500",
        "--admin-token",
        ADMIN_TOKEN,
        "--web-dir",
        concat!(env!("CARGO_MANIFEST_DIR"), "/web"),
    ])
    .await;
    wait_for_bars(&server, "AAPL", 3).await;
    let browser = launch(&tools, "halt", (1400, 900)).await;
    let c = &browser.client;

    // 1. The chart is drawn from /bars before the first live bar, and its bars are the server's.
    cmd(c.goto(&server.url("/?symbols=AAPL,MSFT,SPY"))).await;
    let chart = wait_js(c, "the AAPL chart from history", CHART_JS, |v| {
        v["ready"] == true && v["firstPaint"].is_object()
    })
    .await;
    step(&format!("chart: {chart}"));
    assert_chart_from_history(&chart, "AAPL", 3);
    let chart = wait_js(c, "a live bar on the chart", CHART_JS, |v| {
        v["liveBars"].as_u64() >= Some(1)
    })
    .await;
    assert!(
        chart["barsAtFirstLiveBar"].as_u64() >= Some(3),
        "history was on the chart when the first live bar came: {chart}"
    );
    wait_bars_match_server(c, "1m").await;
    // 5-minute bars: the open one is aggregated in the page from the minutes, history and live.
    step("switch to 5-minute bars");
    cmd(cmd(c.find(Locator::Css("label[for=iv-5m]"))).await.click()).await;
    wait_js(c, "the 5-minute chart", CHART_JS, |v| {
        v["interval"] == "5m" && v["ready"] == true
    })
    .await;
    wait_js(c, "live minutes on the 5-minute chart", CHART_JS, |v| {
        v["liveBars"].as_u64() >= Some(2)
    })
    .await;
    wait_bars_match_server(c, "5m").await;

    // 2. The market clock: the session, ET time ticking in market time, the next close.
    let clock = wait_js(c, "the market clock", CLOCK_JS, |v| {
        v["state"] == "open" && v["label"] == "Market open"
    })
    .await;
    step(&format!("clock: {clock}"));
    assert!(
        clock["next"]
            .as_str()
            .is_some_and(|t| t.starts_with("closes in ")),
        "{clock}"
    );
    let (_, _, server_clock) = common::get_json(&server.url("/clock")).await;
    let drift =
        (clock["marketTs"].as_f64().unwrap() - server_clock["market_ts"].as_f64().unwrap()).abs();
    assert!(
        drift < 60_000.0,
        "the page's market time is within a market minute (2 s) of /clock: {drift} ms, {clock}, {server_clock}"
    );
    let shown = clock["time"].as_str().unwrap().to_string();
    assert!(shown.len() == 8 && shown.as_bytes()[2] == b':', "{clock}");
    wait_js(c, "the clock to tick", CLOCK_JS, |v| {
        v["time"] != shown.as_str()
    })
    .await;

    // 3. The time and sales of the charted symbol gets new rows, newest on top.
    let tape = wait_js(c, "trades on the tape", TAPE_JS, |v| {
        v.as_array().is_some_and(|rows| !rows.is_empty())
    })
    .await;
    let newest = tape[0]["seq"].as_str().unwrap().to_string();
    let tape = wait_js(c, "a new trade on the tape", TAPE_JS, |v| {
        v[0]["seq"].as_str().is_some_and(|s| s != newest)
    })
    .await;
    step(&format!("tape: {}", tape[0]));
    let seqs: Vec<u64> = tape
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["seq"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] > w[1]), "newest first: {tape}");
    assert!(seqs.len() <= 40, "the tape is bounded: {} rows", seqs.len());
    for row in tape.as_array().unwrap() {
        let time = row["time"].as_str().unwrap();
        assert!(time.len() == 8 && time.as_bytes()[5] == b':', "{row}");
        assert!(is_decimal(row["price"].as_str().unwrap()), "{row}");
    }

    // 4. A halt requested through /scenario: the badge comes within seconds, with its reason,
    // and goes when trading resumes, which the tape shows as a reopening print (R).
    step("halt AAPL for 2 market minutes through POST /scenario");
    let http = reqwest::Client::new();
    let response = http
        .post(server.url("/scenario"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"kind": "halt", "symbols": ["AAPL"], "minutes": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let applied: Value = response.json().await.unwrap();
    assert_eq!(applied["halted"], json!(["AAPL"]), "{applied}");
    let asked = Instant::now();
    let halt = wait_js(c, "the HALTED badge", HALT_JS, |v| {
        v["row"] == true && v["banner"] == true
    })
    .await;
    step(&format!("halt shown after {:?}: {halt}", asked.elapsed()));
    assert!(
        halt["text"]
            .as_str()
            .is_some_and(|t| t.contains("Requested halt") && t.contains("resumes in 1:5")),
        "reason and a countdown to the end the status event gives: {halt}"
    );
    assert_eq!(halt["others"], 0, "only AAPL is halted: {halt}");
    assert_eq!(halt["announced"], "AAPL trading halted: Requested halt.");
    let halt = wait_js(c, "the badge to clear on resumption", HALT_JS, |v| {
        v["row"] == false && v["banner"] == false
    })
    .await;
    step(&format!("halt cleared after {:?}: {halt}", asked.elapsed()));
    assert!(
        asked.elapsed() >= Duration::from_secs(3),
        "the halt lasted its 2 market minutes (4 s)"
    );
    assert_eq!(halt["announced"], "AAPL trading resumed.");
    wait_js(c, "the reopening print on the tape", TAPE_JS, |v| {
        v.as_array()
            .is_some_and(|rows| rows.iter().any(|r| r["conditions"] == "R"))
    })
    .await;

    assert_no_console_errors(&browser, false).await;
    browser.close().await;
    server.stop().await;
}

/// The admin token of the halt test's server.
const ADMIN_TOKEN: &str = "browser-test-admin-token";

/// Waits until the server has at least `n` bars of `symbol` (closed or open).
async fn wait_for_bars(server: &common::TestServer, symbol: &str, n: usize) {
    let url = server.url(&format!("/bars?symbols={symbol}&interval=1m"));
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, _, body) = common::get_json(&url).await;
        let have = body[symbol].as_array().map_or(0, Vec::len);
        if have >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the server has {have} bars of {symbol} after {WAIT:?}, wanted {n}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The chart's first paint showed at least `at_least` bars from history (live events that
/// came while it loaded may have joined them, never replaced them).
fn assert_chart_from_history(chart: &Value, symbol: &str, at_least: u64) {
    let first = &chart["firstPaint"];
    assert_eq!(first["symbol"], symbol, "{chart}");
    let history = first["historyBars"].as_u64().unwrap();
    assert!(
        history >= at_least,
        "at least {at_least} bars from /bars: {chart}"
    );
    assert!(
        first["bars"].as_u64().unwrap() >= history.min(10),
        "the first paint drew them: {chart}"
    );
    assert!(
        first["liveBars"].as_u64() <= Some(2),
        "drawn as soon as the history came: {chart}"
    );
    let at_live = chart["barsAtFirstLiveBar"].as_i64().unwrap();
    assert!(
        at_live == -1 || at_live >= at_least as i64,
        "history was there when the first live bar came: {chart}"
    );
}

/// Waits until the chart's bars, the open one included, are the server's: it may take a
/// moment for the page to see the events that /bars already counts.
async fn wait_bars_match_server(c: &Client, interval: &str) {
    let compare = BARS_MATCH_JS.replace("INTERVAL", interval);
    let result = wait_js(
        c,
        &format!("the {interval} bars to be the server's"),
        &compare,
        |v| {
            v["interval"] == interval
                && v["compared"].as_u64() >= Some(2)
                && v["different"] == json!([])
        },
    )
    .await;
    step(&format!("{interval} bars match /bars: {result}"));
}

// ---- token auth and CORS ---------------------------------------------------------------------

/// A `--jwt-secret` for the browser tests.
const JWT_SECRET: &str = "browser-test-secret-0123456789";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_works_with_a_token_required() {
    let Some(tools) = browser_tools() else { return };
    let _turn = ONE_BROWSER_AT_A_TIME.lock().await;
    let mut args = server_args(false);
    args.extend(["--jwt-secret", JWT_SECRET]);
    let server = common::start(&args).await;
    let browser = launch(&tools, "token", (1280, 900)).await;
    let c = &browser.client;

    // Without a token the page cannot even load the symbol table, and says why.
    cmd(c.goto(&server.url("/?symbols=AAPL,MSFT"))).await;
    let refused = wait_js(c, "the page to report the 401", CONN_JS, |v| {
        v["label"].as_str().is_some_and(|l| l.contains("401"))
    })
    .await;
    step(&format!("without a token: {refused}"));
    let rows = js(c, ROWS_JS).await;
    assert!(
        rows.as_array().unwrap().iter().all(|r| r["price"] == "—"),
        "no prices without a token: {rows}"
    );
    // Those 401s are in the browser's log; reading it clears it for the check at the end.
    cmd(c.issue_cmd(BrowserLog)).await;

    // With the token in the page URL: rows, live quotes, bars and the clock all load.
    let now = tickcast::auth::unix_now();
    let symbols = ["AAPL".to_owned(), "MSFT".to_owned()];
    let token = tickcast::auth::mint(JWT_SECRET.as_bytes(), &symbols, now, now + 600).unwrap();
    cmd(c.goto(&server.url(&format!("/?symbols=AAPL,MSFT&token={token}")))).await;
    wait_js(c, "two rows with prices", ROWS_JS, |v| {
        v.as_array()
            .is_some_and(|rows| rows.len() == 2 && rows.iter().all(|r| r["price"] != "—"))
    })
    .await;
    wait_js(c, "live", CONN_JS, |v| v["state"] == "live").await;
    let applied = js(c, "return window.tickcast.state().applied").await;
    wait_js(
        c,
        "more events to arrive",
        "return window.tickcast.state().applied",
        |v| v.as_u64() > applied.as_u64().map(|a| a + 3),
    )
    .await;
    let chart = wait_js(c, "the chart's bars to load", CHART_JS, |v| {
        v["ready"] == true
    })
    .await;
    step(&format!("chart with a token: {chart}"));
    let es = event_sources(c).await;
    assert!(
        es["urls"]
            .as_array()
            .unwrap()
            .iter()
            .all(|u| u.as_str().unwrap().contains(&format!("token={token}"))),
        "the EventSource carries the token: {es}"
    );
    // The shown stream URL leaves the token out.
    let shown = js(
        c,
        "return document.querySelector('#stream-url').textContent",
    )
    .await;
    assert!(!shown.as_str().unwrap_or("").contains("token"), "{shown}");
    assert_no_console_errors(&browser, false).await;
    browser.close().await;
    server.stop().await;
}

/// A page server for one origin: answers every request on `listener` with `page` as HTML.
fn serve_page(listener: tokio::net::TcpListener, page: String) -> tokio::task::JoinHandle<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let page = page.clone();
            tokio::spawn(async move {
                let mut head = Vec::with_capacity(1024);
                let mut buf = [0u8; 1024];
                let read = async {
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => return false,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    true
                };
                if !matches!(tokio::time::timeout(COMMAND, read).await, Ok(true)) {
                    return;
                }
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/html; charset=utf-8\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n{page}",
                    page.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_an_allowed_origin_reads_streams_and_json_cross_origin() {
    let Some(tools) = browser_tools() else { return };
    let _turn = ONE_BROWSER_AT_A_TIME.lock().await;
    // Two page origins on loopback; tickcast allows the first only.
    let allowed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let denied = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let allowed_origin = format!("http://127.0.0.1:{}", allowed.local_addr().unwrap().port());
    let denied_origin = format!("http://127.0.0.1:{}", denied.local_addr().unwrap().port());
    let list = format!("{allowed_origin},http://allowed.invalid");
    let mut args: Vec<&str> = server_args(false);
    args.extend(["--cors-origin", &list]);
    let server = common::start(&args).await;
    let page = format!(
        r#"<!doctype html><title>cross-origin</title><script>
window.result = {{ events: 0, esState: -1, fetch: null }};
const es = new EventSource('{base}/quotes?symbols=AAPL');
for (const type of ['snapshot', 'quote', 'trade']) es.addEventListener(type, () => window.result.events++);
es.addEventListener('error', () => {{ window.result.esState = es.readyState; }});
fetch('{base}/snapshot?symbols=AAPL').then(r => r.json()).then(
  j => {{ window.result.fetch = 'read ' + j.length; }},
  e => {{ window.result.fetch = 'blocked: ' + e; }});
</script>"#,
        base = format!("http://{}", server.addr)
    );
    let pages = [serve_page(allowed, page.clone()), serve_page(denied, page)];
    let browser = launch(&tools, "cors", (800, 600)).await;
    let c = &browser.client;
    let result = "return window.result";

    step(&format!(
        "open the page on the allowed origin {allowed_origin}"
    ));
    cmd(c.goto(&format!("{allowed_origin}/"))).await;
    let got = wait_js(
        c,
        "events and JSON read from the allowed origin",
        result,
        |v| v["events"].as_u64() >= Some(3) && v["fetch"] == "read 1",
    )
    .await;
    step(&format!("allowed: {got}"));

    step(&format!(
        "open the page on the other origin {denied_origin}"
    ));
    cmd(c.goto(&format!("{denied_origin}/"))).await;
    let got = wait_js(c, "the browser to block both requests", result, |v| {
        v["esState"] == 2
            && v["fetch"]
                .as_str()
                .is_some_and(|f| f.starts_with("blocked"))
    })
    .await;
    // Events would have come within the time the allowed page took; give them longer still.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let later = js(c, result).await;
    step(&format!("denied: {got}, then {later}"));
    assert_eq!(
        later["events"], 0,
        "no event reaches a page of another origin"
    );
    browser.close().await;
    for page in pages {
        page.abort();
    }
    server.stop().await;
}

// ---- page scripts ----------------------------------------------------------------------------

/// Each row's symbol and shown price, in table order.
const ROWS_JS: &str = "return [...document.querySelectorAll('#quotes tbody tr')].map(tr => ({
    symbol: tr.dataset.symbol, price: tr.querySelector('.c-last').textContent }))";

/// The chart's state (`window.tickcast.chart()`).
const CHART_JS: &str = "return window.tickcast.chart()";

/// The market clock as shown, and the page's market time.
const CLOCK_JS: &str = "const c = window.tickcast.clock(); return {
    state: document.querySelector('#clock').dataset.state,
    label: document.querySelector('#clock-state').textContent,
    time: document.querySelector('#clock-time').textContent,
    next: document.querySelector('#clock-next').textContent,
    marketTs: c.marketTs, speed: c.speed }";

/// The time-and-sales rows, newest first.
const TAPE_JS: &str = "return [...document.querySelectorAll('#tape-body tr')].map(tr => ({
    seq: tr.dataset.seq, time: tr.cells[0].textContent, price: tr.cells[1].textContent,
    size: tr.cells[2].textContent, conditions: tr.cells[3].textContent }))";

/// AAPL's halt badge in its row and above the chart, and what was announced.
const HALT_JS: &str = "const b = document.querySelector('#chart-halt'); return {
    row: !document.querySelector('tr[data-symbol=AAPL] .halt-badge').hidden,
    banner: !b.hidden, text: b.textContent.replace(/\\s+/g, ' ').trim(),
    others: document.querySelectorAll(
        '#quotes-body tr:not([data-symbol=AAPL]) .halt-badge:not([hidden])').length,
    announced: document.querySelector('#announcer').textContent }";

/// The chart's bars against `GET /bars` of the same interval, fetched by the page: the ones
/// that differ (a bar missing from the chart differs too).
const BARS_MATCH_JS: &str = r#"
const chart = window.tickcast.chart();
return fetch(`bars?symbols=${chart.symbol}&interval=INTERVAL&limit=100`)
  .then(r => r.json())
  .then(answer => {
    const server = answer[chart.symbol];
    const mine = new Map(window.tickcast.bars(400).map(b => [b.t, b]));
    const different = [];
    for (const b of server) {
      const m = mine.get(b.start);
      const same = m && m.o === parseFloat(b.open) && m.h === parseFloat(b.high)
        && m.l === parseFloat(b.low) && m.c === parseFloat(b.close)
        && m.v === b.volume && m.n === b.trades;
      if (!same) different.push({ server: b, page: m || null });
    }
    return { interval: chart.interval, compared: server.length, different: different.slice(0, 3) };
  });
"#;

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
    const q = { ...s.q, seq: seq++, ts: Math.round(t0 + (i / n) * spanMs),
      market_ts: s.q.market_ts + (from + i) * 50, price: s.p.toFixed(2),
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

/// A browser whose pages record their EventSources and errors ([`HOOKS_JS`]).
async fn launch(tools: &Tools, name: &str, size: (u32, u32)) -> Browser {
    let browser = Browser::launch(tools, name, size, false).await;
    cdp(
        &browser.client,
        "Page.addScriptToEvaluateOnNewDocument",
        json!({ "source": HOOKS_JS }),
    )
    .await;
    browser
}

/// [`SERVER_FLAGS`], serving `web/` from disk (`--web-dir`) or from the binary.
fn server_args(from_disk: bool) -> Vec<&'static str> {
    let mut args = SERVER_FLAGS.to_vec();
    if from_disk {
        args.extend(["--web-dir", concat!(env!("CARGO_MANIFEST_DIR"), "/web")]);
    }
    args
}

fn step(what: &str) {
    println!("browser: {what}");
}

/// Polls `script` until `ready` accepts its value, for at most [`WAIT`].
async fn wait_js(c: &Client, what: &str, script: &str, ready: impl Fn(&Value) -> bool) -> Value {
    browser_support::wait_js(c, what, script, WAIT, ready).await
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
