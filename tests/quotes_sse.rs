//! The SSE contract over real TCP: headers, frame order, snapshot, quotes, heartbeats, subsets.

mod common;

use std::collections::HashSet;

use common::{http1, SseClient};
use serde_json::Value;

const PRICE_FIELDS: [&str; 8] = [
    "price",
    "bid",
    "ask",
    "open",
    "high",
    "low",
    "prev_close",
    "change",
];

/// A decimal string with exactly `decimals` decimals ("185.00", "-0.29").
fn has_decimals(value: &Value, decimals: usize) -> bool {
    let Some(s) = value.as_str() else {
        return false;
    };
    let s = s.strip_prefix('-').unwrap_or(s);
    match s.split_once('.') {
        Some((int, frac)) => {
            !int.is_empty()
                && int.bytes().all(|b| b.is_ascii_digit())
                && frac.len() == decimals
                && frac.bytes().all(|b| b.is_ascii_digit())
        }
        None => false,
    }
}

fn check_quote(q: &Value) {
    for field in PRICE_FIELDS {
        assert!(has_decimals(&q[field], 2), "{field} = {} in {q}", q[field]);
    }
    assert!(has_decimals(&q["change_pct"], 2), "change_pct in {q}");
    let num = |f: &str| q[f].as_str().unwrap().parse::<f64>().unwrap();
    assert!(num("bid") < num("ask"), "{q}");
    // `price` is the last trade: inside the quote when it printed, but the quote moves on.
    let status = q["status"].as_str().unwrap();
    assert!(["trading", "halted", "closed"].contains(&status), "{q}");
    assert!(q["market_ts"].as_i64().unwrap() > 0, "{q}");
    assert!(
        num("low") <= num("price") && num("price") <= num("high"),
        "{q}"
    );
    assert!(num("price") > 0.0);
    for f in ["seq", "ts", "bid_size", "ask_size", "last_size", "volume"] {
        assert!(q[f].is_u64(), "{f} in {q}");
    }
    // Odd lots (under 100 shares) are real trades too; the last trade is part of the volume.
    assert!(
        q["last_size"].as_u64().unwrap() <= q["volume"].as_u64().unwrap(),
        "{q}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_has_headers_retry_snapshot_then_ascending_quotes() {
    let server = common::start(&["--seed", "1", "--rate", "20", "--flush-ms", "20"]).await;
    let mut sse = SseClient::connect(&http1(), &server.url("/quotes?symbols=AAPL,msft"), &[]).await;
    assert_eq!(sse.status, 200);
    let h = &sse.response_headers;
    assert_eq!(h["content-type"], "text/event-stream");
    assert_eq!(h["cache-control"], "no-cache");
    assert_eq!(h["x-accel-buffering"], "no");
    assert_eq!(h["access-control-allow-origin"], "*");

    // `retry:` opens the stream inside the snapshot's block, not as an empty event of its own.
    let snapshot = sse.next().await.unwrap();
    assert_eq!(snapshot.event, "snapshot");
    assert_eq!(
        snapshot.retry,
        Some(3000),
        "retry opens the stream: {snapshot:?}"
    );
    let snapshot_id = snapshot.id_num();
    let quotes = snapshot.json();
    let quotes = quotes.as_array().unwrap();
    let symbols: HashSet<&str> = quotes
        .iter()
        .map(|q| q["symbol"].as_str().unwrap())
        .collect();
    assert_eq!(symbols, HashSet::from(["AAPL", "MSFT"]));
    for q in quotes {
        check_quote(q);
        assert!(
            q["seq"].as_u64().unwrap() <= snapshot_id,
            "snapshot id >= every seq in it"
        );
    }

    let mut last = snapshot_id;
    for _ in 0..20 {
        let event = sse.next_named("quote").await;
        let q = event.json();
        check_quote(&q);
        assert!(["AAPL", "MSFT"].contains(&q["symbol"].as_str().unwrap()));
        assert_eq!(event.id_num(), q["seq"].as_u64().unwrap());
        assert!(
            event.id_num() > last,
            "ids ascend: {} after {last}",
            event.id_num()
        );
        last = event.id_num();
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_symbol_stream_carries_every_event_without_gaps() {
    let server = common::start(&["--seed", "2", "--rate", "5", "--flush-ms", "50"]).await;
    let mut sse = SseClient::connect(&http1(), &server.url("/quotes"), &[]).await;
    let snapshot = sse.next_named("snapshot").await;
    assert_eq!(snapshot.json().as_array().unwrap().len(), 120);
    let first = snapshot.id_num() + 1;
    for expected in first..first + 300 {
        let event = sse.next_with_id().await;
        assert_eq!(event.id_num(), expected, "no gap, no duplicate, every kind");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_symbol_path_is_case_insensitive() {
    let server = common::start(&["--seed", "3", "--rate", "20", "--flush-ms", "20"]).await;
    let mut sse = SseClient::connect(&http1(), &server.url("/quotes/nvda"), &[]).await;
    assert_eq!(sse.status, 200);
    let snapshot = sse.next_named("snapshot").await;
    let quotes = snapshot.json();
    assert_eq!(quotes.as_array().unwrap().len(), 1);
    assert_eq!(quotes[0]["symbol"], "NVDA");
    for _ in 0..5 {
        assert_eq!(sse.next_named("quote").await.json()["symbol"], "NVDA");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_come_on_time_without_id_even_with_no_traffic() {
    // One quiet symbol at a very low rate: the heartbeat must come anyway.
    let server = common::start(&["--seed", "4", "--rate", "0.01", "--heartbeat-secs", "1"]).await;
    let mut sse = SseClient::connect(&http1(), &server.url("/quotes/AAPL"), &[]).await;
    sse.next_named("snapshot").await;
    let started = tokio::time::Instant::now();
    let first = sse.next_named("heartbeat").await;
    let second = sse.next_named("heartbeat").await;
    assert!(started.elapsed() < std::time::Duration::from_secs(4));
    for hb in [&first, &second] {
        assert_eq!(hb.id, None, "heartbeats carry no id");
        let data = hb.json();
        assert!(data["ts"].as_u64().unwrap() > 1_600_000_000_000);
        assert!(data["seq"].as_u64().unwrap() >= 120, "global seq");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_seed_gives_same_updates_on_two_servers() {
    // The same first seq too: by default ids start from the start-up time.
    let args = |seed| {
        [
            "--seed",
            seed,
            "--first-seq",
            "1",
            "--rate",
            "10",
            "--flush-ms",
            "10",
        ]
    };
    let a = common::start(&args("42")).await;
    let b = common::start(&args("42")).await;
    let c = common::start(&args("43")).await;
    // Give the servers time to generate, then replay from the start on each.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let first_updates = |server: &common::TestServer| {
        let url = server.url("/quotes");
        async move {
            let mut sse = SseClient::connect(&http1(), &url, &[("last-event-id", "0")]).await;
            let mut out = Vec::new();
            while out.len() < 400 {
                let event = sse.next_named("quote").await;
                let mut q = event.json();
                q.as_object_mut().unwrap().remove("ts");
                out.push(q);
            }
            out
        }
    };
    let (ua, ub, uc) = (
        first_updates(&a).await,
        first_updates(&b).await,
        first_updates(&c).await,
    );
    assert_eq!(ua[0]["seq"], 1);
    assert_eq!(ua, ub, "same seed, same updates");
    assert_ne!(ua, uc, "another seed, other updates");
    a.stop().await;
    b.stop().await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_server_writes_events_as_they_come_instead_of_batching() {
    // One client and ~720 events/s: the server keeps up, so the write gap stays near zero and
    // events go out in many small writes, not one write per --flush-ms (which would be ~8).
    let server = common::start(&["--seed", "8", "--rate", "5", "--flush-ms", "300"]).await;
    let mut sse = SseClient::connect(&http1(), &server.url("/quotes"), &[]).await;
    let snapshot = sse.next_named("snapshot").await;
    let writes_before = common::metric(&server.url(""), "tickcast_writes_total ").await;
    let first = snapshot.id_num() + 1;
    for expected in first..first + 1_500 {
        assert_eq!(sse.next_with_id().await.id_num(), expected, "lossless");
    }
    let writes = common::metric(&server.url(""), "tickcast_writes_total ").await - writes_before;
    assert!(
        writes >= 100,
        "{writes} writes for 1,500 events: batched while idle"
    );
    let gap = common::metric(&server.url(""), "tickcast_write_gap_microseconds ").await;
    assert!(gap <= 300_000, "the gap never exceeds --flush-ms: {gap} µs");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fast_feed_never_makes_a_paced_client_fall_behind() {
    // 6,000 updates/s: a 300 ms window holds more than one chunk (64 KiB); the rest must follow
    // at once instead of waiting for the next window, or the client would fall out of history.
    let server = common::start(&["--seed", "8", "--rate", "50", "--flush-ms", "300"]).await;
    let mut sse = SseClient::connect(&http1(), &server.url("/quotes"), &[]).await;
    let snapshot = sse.next_named("snapshot").await;
    let first = snapshot.id_num() + 1;
    for expected in first..first + 20_000 {
        assert_eq!(sse.next_with_id().await.id_num(), expected, "lossless");
    }
    assert_eq!(
        common::metric(&server.url(""), "tickcast_updates_conflated_total ").await,
        0
    );
    server.stop().await;
}
