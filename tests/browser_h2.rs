//! HTTP/2 lifts the browser's six-connections-per-origin limit: one page opens 12 EventSources
//! to one origin in Debian's headless chromium (through chromedriver and fantoccini). Over
//! plain HTTP/1.1 exactly six of them receive events and the rest wait for a connection; over
//! HTTPS the browser negotiates HTTP/2 and all 12 stream over one connection.
//!
//! Like `tests/browser.rs`: without chromium the test prints a loud SKIPPED line and passes,
//! except under `CI=true`, where it fails.

#[path = "common/browser.rs"]
mod browser_support;
mod common;
use browser_support::{browser_tools, cmd, js, Browser};

use std::time::Duration;

use fantoccini::Client;
use serde_json::Value;

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
    let browser = Browser::launch(&tools, "h2", (1280, 900), true).await;
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

    browser.close().await;
    plain.stop().await;
    tls.stop().await;
}

/// Polls `script` until `ready` accepts its value, for at most [`WAIT`].
async fn wait_js(c: &Client, what: &str, script: &str, ready: impl Fn(&Value) -> bool) -> Value {
    browser_support::wait_js(c, what, script, WAIT, ready).await
}
