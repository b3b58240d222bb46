//! `GET /clock` and the market time on heartbeats, over real sockets.

mod common;

use common::{get_json, SseClient};

/// Monday 2024-03-04 12:00 ET, 16:00 ET and Tuesday 09:30 ET, epoch ms.
const NOON: i64 = 1_709_571_600_000;
const CLOSE: i64 = 1_709_586_000_000;
const NEXT_OPEN: i64 = 1_709_649_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clock_reports_market_time_session_and_next_open_and_close() {
    let server = common::start(&["--seed", "1", "--speed", "60"]).await;
    let before = tokio::time::Instant::now();
    let (status, headers, clock) = get_json(&server.url("/clock")).await;
    let waited_ms = before.elapsed().as_millis() as i64 + 1_000;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["access-control-allow-origin"], "*");
    let market_ts = clock["market_ts"].as_i64().unwrap();
    // The server started at noon and runs 60 market seconds a second.
    assert!(
        (NOON..=NOON + 60 * waited_ms + 60_000).contains(&market_ts),
        "{clock}"
    );
    assert_eq!(clock["state"], "open");
    assert_eq!(clock["next_close"], CLOSE);
    assert_eq!(clock["next_open"], NEXT_OPEN);
    assert_eq!(clock["speed"], 60.0);
    assert_eq!(clock["timezone"], "America/New_York");

    // Market time moves on between two reads.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (_, _, later) = get_json(&server.url("/clock")).await;
    let moved = later["market_ts"].as_i64().unwrap() - market_ts;
    assert!(
        (10_000..=120_000).contains(&moved),
        "moved {moved} ms in 0.3 s at 60x"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_market_says_so_and_names_the_next_open() {
    // Saturday noon, closed time kept: the market waits for Monday.
    let server = common::start(&[
        "--seed",
        "1",
        "--start",
        "2024-03-09T12:00:00-05:00",
        "--keep-closed-time",
    ])
    .await;
    let (_, _, clock) = get_json(&server.url("/clock")).await;
    assert_eq!(clock["state"], "closed");
    // Monday 2024-03-11 09:30 EDT and 16:00 EDT.
    assert_eq!(clock["next_open"], 1_710_163_800_000i64);
    assert_eq!(clock["next_close"], 1_710_187_200_000i64);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_carry_market_time() {
    let server = common::start(&["--seed", "1", "--heartbeat-secs", "1"]).await;
    let mut sse = SseClient::connect(&common::http1(), &server.url("/quotes/AAPL"), &[]).await;
    let heartbeat = sse.next_named("heartbeat").await.json();
    let market_ts = heartbeat["market_ts"].as_i64().unwrap();
    assert!((NOON..NOON + 60_000).contains(&market_ts), "{heartbeat}");
    assert!(heartbeat["ts"].as_u64().unwrap() > 0);
    server.stop().await;
}
