//! Last-Event-ID resume: replay with no gap and no duplicate, and the fallbacks to a snapshot.

mod common;

use common::{http1, SseClient};

const FAST: [&str; 8] = [
    "--seed",
    "5",
    "--first-seq",
    "1",
    "--rate",
    "10",
    "--flush-ms",
    "20",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_replays_exactly_what_a_connected_client_saw() {
    let server = common::start(&FAST).await;
    let url = server.url("/quotes?symbols=AAPL,MSFT,NVDA,TSLA");
    let client = http1();
    let mut steady = SseClient::connect(&client, &url, &[]).await;
    let mut flaky = SseClient::connect(&client, &url, &[]).await;
    steady.next_named("snapshot").await;
    flaky.next_named("snapshot").await;

    // The flaky client reads a few quotes, disconnects, waits, and resumes.
    let mut flaky_ids = Vec::new();
    for _ in 0..5 {
        flaky_ids.push(flaky.next_with_id().await.id_num());
    }
    drop(flaky);
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    let last = flaky_ids.last().unwrap().to_string();
    let mut resumed = SseClient::connect(&client, &url, &[("last-event-id", &last)]).await;
    // `retry:` rides in the block of the first replayed event.
    let first = resumed.next().await.unwrap();
    assert_eq!(first.retry, Some(3000), "retry opens resumed streams too");
    assert_ne!(first.event, "snapshot", "{first:?}");
    flaky_ids.push(first.id_num());
    let mut saw_snapshot = false;
    while flaky_ids.len() < 60 {
        let event = resumed.next().await.unwrap();
        saw_snapshot |= event.event == "snapshot";
        if event.id.is_some() {
            flaky_ids.push(event.id_num());
        }
    }
    assert!(!saw_snapshot, "a replay has no snapshot");

    // The flaky client subscribed a moment after the steady one, so its snapshot may be a few
    // ids later: compare over the span the flaky client covered.
    let (from, to) = (flaky_ids[0], *flaky_ids.last().unwrap());
    let mut steady_ids = Vec::new();
    while steady_ids.last().is_none_or(|id| *id < to) {
        let id = steady.next_with_id().await.id_num();
        if id >= from {
            steady_ids.push(id);
        }
    }
    assert_eq!(
        flaky_ids, steady_ids,
        "no gap and no duplicate across the reconnect"
    );
    let metrics = reqwest::get(server.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("tickcast_replays_served_total 1\n"),
        "{metrics}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_parameter_resumes_and_header_wins() {
    let server = common::start(&FAST).await;
    // Both ids must have been published: a future id starts with a snapshot.
    let deadline = tokio::time::Instant::now() + common::STEP;
    while common::get_json(&server.url("/healthz")).await.2["seq"].as_u64() < Some(200) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the feed never reached 200"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let client = http1();
    // ?lastEventId= alone resumes.
    let mut by_query =
        SseClient::connect(&client, &server.url("/quotes?lastEventId=100"), &[]).await;
    assert_eq!(by_query.next().await.unwrap().id_num(), 101);
    // Both: the header wins.
    let mut both = SseClient::connect(
        &client,
        &server.url("/quotes?lastEventId=100"),
        &[("last-event-id", "150")],
    )
    .await;
    assert_eq!(both.next().await.unwrap().id_num(), 151);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_event_id_zero_replays_from_the_start() {
    let server = common::start(&["--seed", "5", "--rate", "10"]).await;
    let (_, _, health) = common::get_json(&server.url("/healthz")).await;
    let first = health["first_seq"].as_u64().unwrap();
    assert!(
        first > 1_700_000_000_000_000,
        "ids start from the start-up time: {first}"
    );
    let mut sse =
        SseClient::connect(&http1(), &server.url("/quotes"), &[("last-event-id", "0")]).await;
    for expected in first..first + 200 {
        let event = sse.next_with_id().await;
        assert_ne!(event.event, "snapshot");
        assert_eq!(event.id_num(), expected);
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_ids_start_with_a_snapshot() {
    let server = common::start(&[
        "--seed",
        "6",
        "--rate",
        "50",
        "--flush-ms",
        "20",
        "--history",
        "100",
    ])
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let client = http1();
    for id in ["1", "999999999", "abc", "-5", "", "12abc"] {
        let mut sse =
            SseClient::connect(&client, &server.url("/quotes"), &[("last-event-id", id)]).await;
        assert_eq!(sse.status, 200, "never an error for id {id:?}");
        let event = sse.next().await.unwrap();
        assert_eq!(
            event.event, "snapshot",
            "id {id:?} falls back to a snapshot"
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_from_an_earlier_run_starts_with_a_snapshot() {
    let client = http1();
    let before = common::start(&["--seed", "1", "--rate", "20"]).await;
    let mut sse = SseClient::connect(&client, &before.url("/quotes"), &[]).await;
    let mut last = 0;
    for _ in 0..500 {
        last = sse.next_with_id().await.id_num();
    }
    let addr = before.addr;
    before.stop().await;
    // Another run on the same address, with another seed, as after a redeploy.
    let after = common::start_on(addr, &["--seed", "99", "--rate", "20"]).await;
    let (_, _, health) = common::get_json(&after.url("/healthz")).await;
    let first = health["first_seq"].as_u64().unwrap();
    assert!(
        first > last,
        "the new run's ids ({first}..) are above the old run's ({last})"
    );
    assert!(first < 1 << 53, "JavaScript reads every id exactly");
    let mut resumed = SseClient::connect(
        &client,
        &after.url("/quotes"),
        &[("last-event-id", &last.to_string())],
    )
    .await;
    let event = resumed.next().await.unwrap();
    assert_eq!(
        event.event, "snapshot",
        "an id of another run is not replayed"
    );
    assert!(event.id_num() >= first);
    let next = resumed.next_with_id().await;
    assert!(next.id_num() > event.id_num());
    after.stop().await;
}
