//! HTTP/2 with prior knowledge (h2c), and graceful shutdown with streams open.

mod common;

use common::{get_json, SseClient};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_streams_share_one_h2c_connection() {
    let server = common::start(&["--seed", "1", "--rate", "10", "--flush-ms", "20"]).await;
    let accepted_before =
        common::metric(&server.url(""), "tickcast_connections_accepted_total ").await;

    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let symbols = [
        "AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META", "TSLA", "JPM", "V", "SPY",
    ];
    let mut streams = Vec::new();
    for _ in 0..3 {
        for symbol in symbols {
            streams.push((
                symbol,
                SseClient::connect(&h2, &server.url(&format!("/quotes/{symbol}")), &[]).await,
            ));
        }
    }
    for (symbol, sse) in &mut streams {
        assert_eq!(sse.status, 200);
        let snapshot = sse.next_named("snapshot").await;
        assert_eq!(snapshot.json()[0]["symbol"], *symbol);
        assert_eq!(sse.next_named("quote").await.json()["symbol"], *symbol);
    }
    let (_, _, health) = get_json(&server.url("/healthz")).await;
    assert_eq!(health["clients"], 30);
    // The two /metrics requests and /healthz each used a connection of their own.
    let accepted = common::metric(&server.url(""), "tickcast_connections_accepted_total ").await
        - accepted_before;
    assert_eq!(accepted, 1 + 1 + 1, "30 streams over one h2c connection");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_open_streams_and_the_server() {
    let server = common::start(&["--seed", "1", "--rate", "5"]).await;
    let client = common::http1();
    let mut a = SseClient::connect(&client, &server.url("/quotes"), &[]).await;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let mut b = SseClient::connect(&h2, &server.url("/quotes/AAPL"), &[]).await;
    a.next_named("snapshot").await;
    b.next_named("snapshot").await;
    server.stop().await; // fails if the server does not finish within the step timeout
    for sse in [&mut a, &mut b] {
        while let Some(_event) = sse.next().await {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_and_h2c_streams_carry_the_same_headers_and_frames() {
    let server = common::start(&[
        "--seed",
        "9",
        "--first-seq",
        "1",
        "--cors-origin",
        "https://dash.example",
    ])
    .await;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let url = server.url("/quotes?symbols=AAPL&lastEventId=3");
    let origin = [("origin", "https://dash.example")];
    let mut one = SseClient::connect(&common::http1(), &url, &origin).await;
    let mut two = SseClient::connect(&h2, &url, &origin).await;
    for name in [
        "content-type",
        "cache-control",
        "x-accel-buffering",
        "access-control-allow-origin",
        "vary",
    ] {
        assert_eq!(
            one.response_headers.get(name),
            two.response_headers.get(name),
            "{name}"
        );
    }
    assert_eq!(
        one.response_headers["access-control-allow-origin"],
        "https://dash.example"
    );
    // Both replay the same history after id 3: retry (in the first block), then AAPL's quotes after seq 3.
    for _ in 0..3 {
        assert_eq!(one.next().await, two.next().await);
    }
    server.stop().await;
}
