//! The whole market on the wire: every kind of event in one sequence, the `?events=` filter
//! (live and in replay), `/bars` and `/scenario`, over real sockets.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use common::{get_json, http1, SseClient};
use serde_json::Value;

/// 15:59:40 ET at 20x: the 16:00 close (session change, closing prints, status events) comes
/// after about a second, and minute bars close on the way.
const NEAR_CLOSE: [&str; 8] = [
    "--start",
    "2024-03-04T15:59:40-05:00",
    "--speed",
    "20",
    "--rate",
    "20",
    "--seed",
    "5",
];

fn num(v: &Value) -> f64 {
    v.as_str()
        .unwrap_or_else(|| panic!("a decimal string: {v}"))
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_arrives_in_one_gapless_sequence_with_its_fields() {
    let server = common::start(&NEAR_CLOSE).await;
    let mut sse = SseClient::connect(&http1(), &server.url("/quotes"), &[]).await;
    let snapshot = sse.next_named("snapshot").await;
    let mut expected = snapshot.id_num() + 1;
    let mut kinds = BTreeSet::new();
    // Trades of each (symbol, minute), to check each bar against.
    let mut minutes: HashMap<(String, i64), Vec<(f64, u64)>> = HashMap::new();
    let mut bars_checked = 0;
    while kinds.len() < 5 || bars_checked < 20 {
        let event = sse.next_with_id().await;
        assert_eq!(event.id_num(), expected, "one sequence for every kind");
        expected += 1;
        let data = event.json();
        assert_eq!(data["seq"].as_u64(), Some(event.id_num()));
        assert!(data["ts"].as_u64().unwrap() > 1_600_000_000_000);
        let market_ts = data["market_ts"].as_i64().unwrap();
        kinds.insert(event.event.clone());
        match event.event.as_str() {
            "quote" => {
                assert!(data["status"].is_string() && data["bid"].is_string());
            }
            "trade" => {
                let price = num(&data["price"]);
                let size = data["size"].as_u64().unwrap();
                let conditions = data["conditions"].as_array().unwrap();
                assert_eq!(
                    conditions.iter().any(|c| c == "I"),
                    size < 100,
                    "odd lots are marked: {data}"
                );
                let minute = market_ts - market_ts.rem_euclid(60_000);
                let symbol = data["symbol"].as_str().unwrap().to_string();
                minutes
                    .entry((symbol, minute))
                    .or_default()
                    .push((price, size));
            }
            "bar" => {
                assert_eq!(data["interval"], "1m");
                let start = data["start"].as_i64().unwrap();
                assert_eq!(market_ts, start + 60_000, "sent when the minute closes");
                let symbol = data["symbol"].as_str().unwrap().to_string();
                // Bars of the minute the stream started in also hold earlier trades.
                if let Some(trades) = minutes.remove(&(symbol, start)) {
                    if start > snapshot_minute(&snapshot) {
                        let prices: Vec<f64> = trades.iter().map(|t| t.0).collect();
                        assert_eq!(num(&data["open"]), prices[0]);
                        assert_eq!(num(&data["close"]), *prices.last().unwrap());
                        let high = prices.iter().cloned().fold(f64::MIN, f64::max);
                        let low = prices.iter().cloned().fold(f64::MAX, f64::min);
                        assert_eq!(num(&data["high"]), high);
                        assert_eq!(num(&data["low"]), low);
                        let volume: u64 = trades.iter().map(|t| t.1).sum();
                        assert_eq!(data["volume"].as_u64(), Some(volume));
                        assert_eq!(data["trades"].as_u64(), Some(trades.len() as u64));
                        let vwap = num(&data["vwap"]);
                        assert!(low <= vwap && vwap <= high);
                        bars_checked += 1;
                    }
                }
            }
            "status" => {
                assert!(["trading", "halted", "closed"].contains(&data["status"].as_str().unwrap()));
                assert!(data["reason"].is_string());
                assert!(data.get("limit_up").is_some() && data.get("limit_down").is_some());
            }
            "session" => {
                assert!(data.get("symbol").is_none(), "market-wide");
                assert_eq!(data["state"], "post", "16:00: the post-market starts");
                assert!(data["next_open"].as_i64().unwrap() > market_ts);
                assert!(data["next_close"].as_i64().unwrap() > market_ts);
            }
            other => panic!("unexpected event {other}"),
        }
    }
    server.stop().await;
}

/// The minute (market time) of a snapshot: the newest `market_ts` among its quotes.
fn snapshot_minute(snapshot: &common::Event) -> i64 {
    let newest = snapshot
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["market_ts"].as_i64().unwrap())
        .max()
        .unwrap();
    newest - newest.rem_euclid(60_000)
}

/// `(event name, id)` of the next `n` events with an id.
async fn next_ids(sse: &mut SseClient, n: usize) -> Vec<(String, u64)> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let e = sse.next_with_id().await;
        out.push((e.event.clone(), e.id_num()));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_events_filter_selects_kinds_live_and_in_replay() {
    let server = common::start(&NEAR_CLOSE).await;
    let client = http1();
    let mut all = SseClient::connect(&client, &server.url("/quotes"), &[]).await;
    let start = all.next_named("snapshot").await.id_num();
    // Past the close: the session change and minute bars are in.
    let mut everything = Vec::new();
    while !everything
        .iter()
        .any(|(k, _): &(String, u64)| k == "session")
    {
        everything.extend(next_ids(&mut all, 100).await);
    }
    everything.extend(next_ids(&mut all, 300).await);
    let seen: BTreeSet<&str> = everything.iter().map(|(k, _)| k.as_str()).collect();
    assert!(seen.contains("bar"), "{seen:?}");

    // A replay of trades and bars (and the session change) from the same point.
    let mut replay = SseClient::connect(
        &client,
        &server.url("/quotes?events=TRADE,bar"),
        &[("last-event-id", &start.to_string())],
    )
    .await;
    let expected: Vec<(String, u64)> = everything
        .iter()
        .filter(|(k, _)| ["trade", "bar", "session"].contains(&k.as_str()))
        .cloned()
        .collect();
    let got = next_ids(&mut replay, expected.len()).await;
    assert_eq!(got, expected, "a replay holds exactly the selected kinds");

    // One symbol's status events, live: the close announces each symbol's new status.
    let mut status = SseClient::connect(
        &client,
        &server.url("/quotes/aapl?events=status"),
        &[("last-event-id", &start.to_string())],
    )
    .await;
    let first = status.next_with_id().await;
    let kinds: BTreeSet<String> = std::iter::once(first)
        .chain([status.next_with_id().await])
        .map(|e| {
            if e.event == "status" {
                assert_eq!(e.json()["symbol"], "AAPL");
            }
            e.event
        })
        .collect();
    assert!(
        kinds.iter().all(|k| k == "status" || k == "session"),
        "{kinds:?}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_event_lists_are_400() {
    let server = common::start(&["--seed", "1"]).await;
    for path in [
        "/quotes?events=",
        "/quotes?events=,",
        "/quotes?events=quote,trades",
        "/quotes?events=session",
        "/quotes/AAPL?events=heartbeat",
    ] {
        let (status, headers, body) = get_json(&server.url(path)).await;
        assert_eq!(status, 400, "{path}");
        assert_eq!(body["error"], "bad_request", "{path}");
        assert!(
            body["message"].as_str().unwrap().contains("event"),
            "{body}"
        );
        assert!(headers.contains_key("access-control-allow-origin"));
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bars_backfill_aggregate_and_mark_the_open_bar() {
    let server = common::start(&["--seed", "3", "--speed", "60", "--rate", "20"]).await;
    // Three market minutes.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let url = |q: &str| server.url(&format!("/bars?symbols=AAPL,msft{q}"));
    let (status, headers, minutes) = get_json(&url("&limit=10000")).await;
    assert_eq!(status, 200);
    assert!(headers.contains_key("access-control-allow-origin"));
    let keys: BTreeSet<&str> = minutes
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, BTreeSet::from(["AAPL", "MSFT"]));
    let aapl = minutes["AAPL"].as_array().unwrap();
    assert!(
        aapl.len() > 390,
        "yesterday's minutes and today's: {}",
        aapl.len()
    );
    let starts: Vec<i64> = aapl.iter().map(|b| b["start"].as_i64().unwrap()).collect();
    assert!(starts.windows(2).all(|w| w[0] < w[1]), "ascending");
    for bar in &aapl[..aapl.len() - 1] {
        assert!(bar.get("partial").is_none(), "{bar}");
    }
    // The hour bars aggregate those minutes exactly.
    let (_, hours) = (0, get_json(&url("&interval=1h&limit=10000")).await.2);
    let mut by_hour: BTreeMap<i64, Vec<&Value>> = BTreeMap::new();
    for m in aapl {
        let start = m["start"].as_i64().unwrap();
        by_hour
            .entry(start - start.rem_euclid(3_600_000))
            .or_default()
            .push(m);
    }
    let hours = hours["AAPL"].as_array().unwrap();
    assert_eq!(hours.len(), by_hour.len());
    // The hour in progress moves on between the two requests: compare the finished ones.
    for (h, (start, inside)) in hours.iter().zip(&by_hour).take(hours.len() - 1) {
        assert_eq!(h["start"].as_i64(), Some(*start));
        assert_eq!(h["open"], inside[0]["open"]);
        assert_eq!(h["close"], inside.last().unwrap()["close"]);
        let volume: u64 = inside.iter().map(|m| m["volume"].as_u64().unwrap()).sum();
        assert_eq!(h["volume"].as_u64(), Some(volume));
        let trades: u64 = inside.iter().map(|m| m["trades"].as_u64().unwrap()).sum();
        assert_eq!(h["trades"].as_u64(), Some(trades));
    }
    assert_eq!(
        hours.last().unwrap()["partial"],
        true,
        "the hour in progress"
    );
    // Daily bars: the generated history, then today.
    let days = get_json(&url("&interval=1d")).await.2;
    let days = days["AAPL"].as_array().unwrap();
    assert_eq!(days.len(), 31, "30 days of history and today");
    assert_eq!(days.last().unwrap()["partial"], true);
    // Limit and range.
    let last5 = get_json(&url("&limit=5")).await.2;
    assert_eq!(last5["MSFT"].as_array().unwrap().len(), 5);
    let from = starts[starts.len() - 3];
    let ranged = get_json(&url(&format!("&start={from}&end={}", from + 60_000)))
        .await
        .2;
    let ranged = ranged["AAPL"].as_array().unwrap();
    assert_eq!(ranged.len(), 1);
    assert_eq!(ranged[0]["start"].as_i64(), Some(from));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bar_requests_are_clear_errors() {
    let server = common::start(&["--seed", "1"]).await;
    for (path, status, code) in [
        ("/bars", 400, "bad_request"),
        ("/bars?symbols=", 400, "bad_request"),
        ("/bars?symbols=AAPL&interval=2m", 400, "bad_request"),
        ("/bars?symbols=AAPL&limit=0", 400, "bad_request"),
        ("/bars?symbols=AAPL&limit=10001", 400, "bad_request"),
        ("/bars?symbols=AAPL&start=x", 400, "bad_request"),
        ("/bars?symbols=AAPL&start=5&end=5", 400, "bad_request"),
        ("/bars?symbols=AAPL,ZZZZ", 404, "unknown_symbol"),
    ] {
        let (got, headers, body) = get_json(&server.url(path)).await;
        assert_eq!(got, status, "{path}: {body}");
        assert_eq!(body["error"], code, "{path}");
        assert!(body["message"].is_string());
        assert!(headers.contains_key("access-control-allow-origin"));
    }
    let (_, _, body) = get_json(&server.url("/bars?symbols=AAPL,ZZZZ")).await;
    assert_eq!(body["unknown"], serde_json::json!(["ZZZZ"]));
    server.stop().await;
}

const TOKEN: &str = "test-admin-token-0123456789";

async fn post(
    url: &str,
    auth: Option<&str>,
    body: &str,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut request = http1()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(auth) = auth {
        request = request.header("authorization", auth);
    }
    let resp = tokio::time::timeout(common::STEP, request.send())
        .await
        .unwrap()
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.json().await.expect("JSON body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenarios_need_the_admin_token() {
    let off = common::start(&["--seed", "1"]).await;
    let body = r#"{"kind":"halt","symbols":["AAPL"],"minutes":1}"#;
    let (status, _, json) = post(&off.url("/scenario"), Some("Bearer x"), body).await;
    assert_eq!((status, json["error"].as_str()), (404, Some("not_found")));
    off.stop().await;

    let on = common::start(&["--seed", "1", "--admin-token", TOKEN]).await;
    let url = on.url("/scenario");
    let (status, headers, json) = post(&url, None, body).await;
    assert_eq!(
        (status, json["error"].as_str()),
        (401, Some("unauthorized"))
    );
    assert_eq!(headers["www-authenticate"], "Bearer");
    let (status, _, _) = post(&url, Some("Bearer wrong-token-wrong-token-00"), body).await;
    assert_eq!(status, 401);
    let (status, headers, json) = get_json(&url).await;
    assert_eq!(
        (status.as_u16(), json["error"].as_str()),
        (405, Some("method_not_allowed"))
    );
    assert_eq!(headers["allow"], "POST, OPTIONS");
    let auth = format!("Bearer {TOKEN}");
    for (bad, needle) in [
        ("{", "invalid scenario"),
        (r#"{"kind":"halt","symbols":["AAPL"]}"#, "minutes"),
        (
            r#"{"kind":"halt","symbols":["AAPL"],"minutes":-1}"#,
            "minutes",
        ),
        (r#"{"kind":"melt","symbols":["AAPL"],"minutes":1}"#, "kind"),
        (r#"{"kind":"news","symbols":["AAPL"]}"#, "move_pct"),
        (r#"{"kind":"news","symbols":[],"move_pct":3}"#, "symbols"),
        (
            r#"{"kind":"news","symbols":["AAPL","*"],"move_pct":3}"#,
            "*",
        ),
        (
            r#"{"kind":"news","symbols":["AAPL"],"move_pct":3,"x":1}"#,
            "unknown field",
        ),
    ] {
        let (status, _, json) = post(&url, Some(&auth), bad).await;
        assert_eq!(status, 400, "{bad}");
        assert_eq!(json["error"], "bad_request");
        assert!(
            json["message"].as_str().unwrap().contains(needle),
            "{bad}: {json}"
        );
    }
    let (status, _, json) = post(
        &url,
        Some(&auth),
        r#"{"kind":"news","symbols":["QQQQ"],"move_pct":3}"#,
    )
    .await;
    assert_eq!(
        (status, json["error"].as_str()),
        (404, Some("unknown_symbol"))
    );
    on.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requested_halt_shows_on_the_stream_and_ends() {
    let server = common::start(&[
        "--seed",
        "2",
        "--speed",
        "30",
        "--rate",
        "5",
        "--admin-token",
        TOKEN,
    ])
    .await;
    let mut sse = SseClient::connect(&http1(), &server.url("/quotes/AAPL"), &[]).await;
    sse.next_named("snapshot").await;
    let (status, _, json) = post(
        &server.url("/scenario"),
        Some(&format!("Bearer {TOKEN}")),
        r#"{"kind":"halt","symbols":["aapl"],"minutes":1}"#,
    )
    .await;
    assert_eq!(status, 202, "{json}");
    assert_eq!(json["halted"], serde_json::json!(["AAPL"]));
    assert_eq!(json["scheduled"]["kind"], "halt");
    let at = json["market_ts"].as_i64().unwrap();
    let halted = loop {
        let e = sse.next_named("status").await;
        let data = e.json();
        if data["status"] == "halted" {
            break data;
        }
    };
    assert_eq!(halted["reason"], "requested");
    assert_eq!(
        halted["resumes_at"].as_i64(),
        Some(at + 60_000),
        "one minute"
    );
    assert_eq!(halted["market_ts"].as_i64(), Some(at));
    // One market minute at 30x: two seconds; nothing trades meanwhile.
    loop {
        let e = sse.next_with_id().await;
        let data = e.json();
        if e.event == "trade" {
            assert!(
                data["conditions"].as_array().unwrap().contains(&"R".into()),
                "the first trade is the reopening print: {data}"
            );
            assert_eq!(data["market_ts"].as_i64(), Some(at + 60_000));
        }
        if e.event == "status" {
            assert_eq!(data["status"], "trading");
            assert_eq!(data["reason"], "resumed");
            assert_eq!(data["market_ts"].as_i64(), Some(at + 60_000));
            break;
        }
    }
    server.stop().await;
}
