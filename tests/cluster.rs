//! A cluster of real processes: a `redis-server` of the test's own on a free loopback port, one
//! `--role simulator` and three `--role edge` processes of the binary, and SSE clients over
//! TCP. Without `redis-server` the tests skip loudly, except under `CI=true`, where they fail.
//!
//! The tests run one at a time (they share two cores with everything else) and each is
//! bounded: the feed runs at about 1,600 events a second so that thousands pass in seconds.

mod common;

use std::collections::HashMap;
use std::net::TcpListener;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_tickcast");
const SYMBOLS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/symbols.csv");
/// Longest any single wait may take before the test fails instead of hanging.
const STEP: Duration = Duration::from_secs(15);

/// The cluster tests run one after the other.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A free loopback port (bound, then released for the process that will use it).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `redis-server` of the test's own, without persistence.
struct Redis {
    port: u16,
    child: Option<Child>,
    /// Certificate and key files: TLS only, on `port`.
    tls: Option<(String, String)>,
}

impl Redis {
    /// Starts one, or `None` (with a loud message) if `redis-server` is not installed; under
    /// `CI=true` a missing one fails the test.
    async fn start() -> Option<Redis> {
        Redis::start_with(None).await
    }

    /// Starts one that speaks only TLS on its port (`cert` and `key`: PEM files), or `None`
    /// as [`Redis::start`].
    async fn start_tls(cert: &str, key: &str) -> Option<Redis> {
        Redis::start_with(Some((cert.to_owned(), key.to_owned()))).await
    }

    async fn start_with(tls: Option<(String, String)>) -> Option<Redis> {
        let found = std::process::Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("redis-server is not installed (CI=true): apt-get install redis-server");
            }
            eprintln!("SKIPPED: redis-server is not installed; the cluster tests did not run");
            return None;
        }
        let mut redis = Redis {
            port: free_port(),
            child: None,
            tls,
        };
        redis.spawn().await;
        Some(redis)
    }

    async fn spawn(&mut self) {
        let port = self.port.to_string();
        let mut command = Command::new("redis-server");
        match &self.tls {
            None => command.args(["--port", &port]),
            Some((cert, key)) => command
                .args(["--port", "0", "--tls-port", &port])
                .args(["--tls-cert-file", cert, "--tls-key-file", key])
                .args(["--tls-auth-clients", "no"]),
        };
        let child = command
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let addr = format!("127.0.0.1:{}", self.port);
        tokio::time::timeout(STEP, async {
            while tokio::net::TcpStream::connect(&addr).await.is_err() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("redis-server listens in time");
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills it (all data lost: no persistence) and starts it again on the same port.
    async fn restart(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.unwrap();
        }
        self.spawn().await;
    }
}

/// One tickcast process.
struct Node {
    child: Child,
    addr: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Node {
    /// Starts the binary with `args` and waits until it listens.
    async fn start(args: &[&str]) -> Node {
        let addr = format!("127.0.0.1:{}", free_port());
        let mut child = tickcast(&addr, args, "info").spawn().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let kept = log.clone();
        tokio::spawn(async move {
            let mut tx = Some(tx);
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains("listening on http://") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(());
                    }
                }
                kept.lock().unwrap().push(line);
            }
        });
        let node = Node { child, addr, log };
        if tokio::time::timeout(Duration::from_secs(30), rx)
            .await
            .is_err()
        {
            panic!("{args:?} did not start: {}", node.log_text());
        }
        node
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.id().expect("running").to_string();
        let ok = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{signal} {pid}");
    }

    async fn kill(mut self) {
        self.signal("KILL");
        let _ = self.child.wait().await;
    }

    /// `/healthz`: status code and body.
    async fn health(&self) -> (u16, serde_json::Value) {
        let resp = tokio::time::timeout(STEP, reqwest::get(self.url("/healthz")))
            .await
            .expect("healthz in time")
            .expect("healthz answers");
        let status = resp.status().as_u16();
        (status, resp.json().await.expect("healthz JSON"))
    }

    async fn seq(&self) -> u64 {
        self.health().await.1["seq"].as_u64().unwrap()
    }

    /// The value of a /metrics sample (its line starts with `name`).
    async fn metric(&self, name: &str) -> u64 {
        sample(&self.metrics().await, name)
    }

    /// The /metrics page.
    async fn metrics(&self) -> String {
        reqwest::get(self.url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Waits until /healthz says `state` (and its status code matches readiness).
    async fn wait_state(&self, state: &str) {
        let deadline = tokio::time::Instant::now() + STEP;
        loop {
            let (code, body) = self.health().await;
            if body["upstream"]["state"] == state {
                assert_eq!(code == 200, state == "up", "{body}");
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "upstream never became {state}: {body}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The binary on `addr` with the test symbols, `args` and `RUST_LOG=log`, its log on a pipe.
fn tickcast(addr: &str, args: &[&str], log: &str) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(["--addr", addr, "--symbols", SYMBOLS])
        .args(args)
        .env("RUST_LOG", log)
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// The value of the sample of a /metrics page whose line starts with `name`.
fn sample(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("{name} missing from /metrics:\n{metrics}"))
}

/// A simulator, three edges and their Redis.
struct Cluster {
    redis: Redis,
    simulator: Option<Node>,
    edges: Vec<Node>,
}

/// The simulator's flags: a fast feed (about 1,600 events a second at midday).
fn simulator_args(redis: &str, extra: &[&'static str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "--role",
        "simulator",
        "--redis",
        redis,
        "--seed",
        "7",
        "--rate",
        "10",
        "--speed",
        "60",
        "--start",
        "2024-03-04T12:00:00-05:00",
        "--history-days",
        "1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

async fn start_simulator(redis: &str, extra: &[&'static str]) -> Node {
    let args = simulator_args(redis, extra);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Node::start(&args).await
}

async fn start_edge(redis: &str) -> Node {
    let edge = Node::start(&[
        "--role",
        "edge",
        "--redis",
        redis,
        "--heartbeat-secs",
        "1",
        "--history",
        "20000",
    ])
    .await;
    edge.wait_state("up").await;
    edge
}

impl Cluster {
    /// Starts everything, or `None` without redis-server (outside CI).
    async fn start(simulator_extra: &[&'static str]) -> Option<Cluster> {
        let redis = Redis::start().await?;
        let simulator = start_simulator(&redis.url(), simulator_extra).await;
        simulator.wait_state("up").await;
        let mut edges = Vec::new();
        for _ in 0..3 {
            edges.push(start_edge(&redis.url()).await);
        }
        Some(Cluster {
            redis,
            simulator: Some(simulator),
            edges,
        })
    }

    fn simulator(&self) -> &Node {
        self.simulator.as_ref().expect("simulator running")
    }

    /// Waits until the simulator has published `n` more events.
    async fn pass(&self, n: u64) {
        let node = &self.edges[0];
        let target = node.seq().await + n;
        tokio::time::timeout(STEP, async {
            while node.seq().await < target {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .expect("the feed moves");
    }
}

/// One parsed SSE event.
#[derive(Debug, Clone, Default, PartialEq)]
struct Event {
    event: String,
    id: Option<u64>,
    data: String,
}

/// An SSE client that, unlike the other tests' one, takes a dying server as the end of the
/// stream (`None`), as a browser does.
struct Sse {
    body: futures_util::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buf: Vec<u8>,
}

impl Sse {
    async fn connect(url: &str, last_event_id: Option<u64>) -> Sse {
        let client = reqwest::Client::builder().http1_only().build().unwrap();
        let mut req = client.get(url).header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id.to_string());
        }
        let resp = tokio::time::timeout(STEP, req.send())
            .await
            .expect("response in time")
            .expect("stream opens");
        assert_eq!(resp.status(), 200);
        Sse {
            body: resp.bytes_stream().boxed(),
            buf: Vec::new(),
        }
    }

    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(pos) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.buf.drain(..pos + 2).collect();
                let mut event = Event::default();
                for line in String::from_utf8(block).unwrap().lines() {
                    let (field, value) = line.split_once(": ").unwrap_or((line, ""));
                    match field {
                        "event" => event.event = value.to_string(),
                        "id" => event.id = value.parse().ok(),
                        "data" => event.data = value.to_string(),
                        _ => {}
                    }
                }
                if event.event.is_empty() && event.id.is_none() {
                    continue; // a lone `retry:` line
                }
                return Some(event);
            }
            match tokio::time::timeout(STEP, self.body.next())
                .await
                .expect("next event in time")
            {
                Some(Ok(chunk)) => self.buf.extend_from_slice(&chunk),
                Some(Err(_)) | None => return None,
            }
        }
    }

    /// The next event with an id; panics at the end of the stream.
    async fn next_with_id(&mut self) -> Event {
        loop {
            let e = self.next().await.expect("stream open");
            if e.id.is_some() {
                return e;
            }
        }
    }
}

/// Ids of `events` from `from` to `to`, inclusive.
fn ids_between(events: &[(u64, String)], from: u64, to: u64) -> Vec<u64> {
    events
        .iter()
        .map(|(id, _)| *id)
        .filter(|id| (from..=to).contains(id))
        .collect()
}

/// Test 1: one client per edge: the same ids, strictly increasing, byte-identical data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_edge_sends_the_same_ids_and_bytes() {
    let _serial = SERIAL.lock().await;
    let Some(cluster) = Cluster::start(&[]).await else {
        return;
    };
    let mut clients = Vec::new();
    for edge in &cluster.edges {
        clients.push(Sse::connect(&edge.url("/quotes"), None).await);
    }
    let mut seen: Vec<Vec<(u64, String)>> = Vec::new();
    for client in &mut clients {
        let first = client.next().await.unwrap();
        assert_eq!(first.event, "snapshot");
        seen.push(Vec::new());
    }
    // Read on each, interleaved so no client falls behind, until every one has passed the
    // same point, 1,200 events after the latest start.
    for (client, seen) in clients.iter_mut().zip(&mut seen) {
        let e = client.next_with_id().await;
        seen.push((e.id.unwrap(), e.data));
    }
    let target = seen.iter().map(|s| s[0].0).max().unwrap() + 1200;
    while seen.iter().any(|s| s.last().unwrap().0 < target) {
        for (client, seen) in clients.iter_mut().zip(&mut seen) {
            if seen.last().unwrap().0 < target {
                let e = client.next_with_id().await;
                seen.push((e.id.unwrap(), e.data));
            }
        }
    }
    for s in &seen {
        assert!(s.windows(2).all(|w| w[0].0 < w[1].0), "strictly increasing");
    }
    let from = seen.iter().map(|s| s[0].0).max().unwrap();
    let to = seen.iter().map(|s| s.last().unwrap().0).min().unwrap();
    assert!(to > from + 1000, "a long common span: {from}..{to}");
    let by_id: Vec<HashMap<u64, &String>> = seen
        .iter()
        .map(|s| s.iter().map(|(id, d)| (*id, d)).collect())
        .collect();
    let reference = ids_between(&seen[0], from, to);
    assert_eq!(
        reference,
        (from..=to).collect::<Vec<_>>(),
        "every event, no gap"
    );
    for (i, s) in seen.iter().enumerate().skip(1) {
        assert_eq!(ids_between(s, from, to), reference, "edge {i}: same ids");
        for id in &reference {
            assert_eq!(
                by_id[i][id], by_id[0][id],
                "edge {i}: same data for id {id}"
            );
        }
    }
    // Each edge timed every batch it read from the simulator's publish: a histogram whose
    // count is the batches read, nearly all under a second on loopback.
    for edge in &cluster.edges {
        let metrics = edge.metrics().await;
        let read = sample(&metrics, "tickcast_upstream_batches_total ");
        let timed = sample(&metrics, "tickcast_upstream_delay_seconds_count ");
        let under_a_second = sample(
            &metrics,
            "tickcast_upstream_delay_seconds_bucket{le=\"1\"} ",
        );
        // One read of the stream (at most 1,000 entries) may be timed and not yet counted.
        assert!(
            timed > 100 && (read..=read + 1000).contains(&timed),
            "{timed} timed, {read} read"
        );
        assert!(
            under_a_second * 10 >= timed * 9,
            "{under_a_second} of {timed}"
        );
    }
}

/// A subscription of test 2's clients, and whether it starts with `?lastEventId=`.
fn subscription(i: usize) -> &'static str {
    [
        "/quotes",
        "/quotes?symbols=AAPL,MSFT",
        "/quotes?symbols=NVDA,TSLA,AMZN&events=trade,quote",
        "/quotes?events=trade",
        "/quotes?symbols=SPY,QQQ,JPM,XOM",
    ][i % 5]
}

/// Test 2: SIGKILL an edge with 50 clients on it; each resumes on another edge with its last
/// id and gets exactly what a client that stayed connected elsewhere got.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_of_a_killed_edge_resume_elsewhere_without_a_gap() {
    let _serial = SERIAL.lock().await;
    let Some(mut cluster) = Cluster::start(&[]).await else {
        return;
    };
    let stop_at = Arc::new(std::sync::atomic::AtomicU64::new(u64::MAX));
    // One reference client per subscription on edge 2, connected first.
    let mut references = Vec::new();
    for i in 0..5 {
        let mut sse = Sse::connect(&cluster.edges[2].url(subscription(i)), None).await;
        assert_eq!(sse.next().await.unwrap().event, "snapshot");
        let stop_at = stop_at.clone();
        references.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            loop {
                let e = sse.next_with_id().await;
                let id = e.id.unwrap();
                ids.push(id);
                if id >= stop_at.load(std::sync::atomic::Ordering::Relaxed) {
                    return ids;
                }
            }
        }));
    }
    let victim = cluster.edges.remove(0);
    let survivors: Vec<String> = cluster.edges.iter().map(|e| e.addr.clone()).collect();
    let resume_from = victim.seq().await.saturating_sub(200);
    let ready = Arc::new(tokio::sync::Semaphore::new(0));
    let mut flaky = Vec::new();
    for i in 0..50 {
        let path = subscription(i);
        // Every third client opens with ?lastEventId= (a replay), the others with a snapshot.
        let url = if i % 3 == 0 {
            let sep = if path.contains('?') { '&' } else { '?' };
            victim.url(&format!("{path}{sep}lastEventId={resume_from}"))
        } else {
            victim.url(path)
        };
        let other = format!("http://{}{}", survivors[i % 2], path);
        let ready = ready.clone();
        flaky.push(tokio::spawn(async move {
            let mut sse = Sse::connect(&url, None).await;
            let mut ids = Vec::new();
            let mut announced = false;
            while let Some(e) = sse.next().await {
                // A snapshot's id is a position in the feed, not an event of the subscription.
                if let (Some(id), false) = (e.id, e.event == "snapshot") {
                    ids.push(id);
                }
                if ids.len() >= 5 && !announced {
                    ready.add_permits(1);
                    announced = true;
                }
            }
            assert!(announced, "client {i} read events before the kill");
            let last = *ids.last().unwrap();
            let mut sse = Sse::connect(&other, Some(last)).await;
            let first = sse.next_with_id().await;
            assert_ne!(
                first.event, "snapshot",
                "client {i}: a replay, not a snapshot"
            );
            ids.push(first.id.unwrap());
            let target = last + 1500;
            while *ids.last().unwrap() < target {
                let e = sse.next().await.expect("resumed stream open");
                assert_ne!(e.event, "snapshot", "client {i}: no snapshot");
                if let Some(id) = e.id {
                    ids.push(id);
                }
            }
            (i, ids)
        }));
    }
    let _ = tokio::time::timeout(STEP, ready.acquire_many(50))
        .await
        .expect("every client reads before the kill");
    victim.kill().await;
    let mut results = Vec::new();
    for task in flaky {
        results.push(tokio::time::timeout(STEP * 2, task).await.unwrap().unwrap());
    }
    let top = results
        .iter()
        .map(|(_, ids)| *ids.last().unwrap())
        .max()
        .unwrap();
    stop_at.store(top, std::sync::atomic::Ordering::Relaxed);
    let mut reference_ids = Vec::new();
    for r in references {
        reference_ids.push(tokio::time::timeout(STEP, r).await.unwrap().unwrap());
    }
    let mut compared = 0;
    for (i, ids) in &results {
        // Compare where both were connected (a replayed client may start before the
        // reference did).
        let reference = &reference_ids[i % 5];
        let (from, to) = (ids[0].max(reference[0]), *ids.last().unwrap());
        let ids: Vec<u64> = ids.iter().copied().filter(|id| *id >= from).collect();
        let expected: Vec<u64> = reference
            .iter()
            .copied()
            .filter(|id| (from..=to).contains(id))
            .collect();
        assert_eq!(
            ids,
            expected,
            "client {i} ({}) got exactly the reference's ids",
            subscription(*i)
        );
        if *i % 5 == 0 {
            assert!(to - from >= 1000, "1,000+ events across the failover");
        }
        compared += ids.len();
    }
    assert!(compared > 10_000, "{compared} ids compared");
}

/// Test 5: SIGKILL the simulator: clients keep their heartbeats; a restarted simulator
/// continues at last + 1 with the prices where they were.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_simulator_continues_the_sequence_and_the_prices() {
    let _serial = SERIAL.lock().await;
    let Some(mut cluster) = Cluster::start(&[]).await else {
        return;
    };
    let mut sse = Sse::connect(&cluster.edges[0].url("/quotes"), None).await;
    assert_eq!(sse.next().await.unwrap().event, "snapshot");
    let mut price: HashMap<String, String> = HashMap::new();
    let mut last = 0;
    for _ in 0..500 {
        let e = sse.next_with_id().await;
        last = e.id.unwrap();
    }
    cluster.simulator.take().unwrap().kill().await;
    // Whatever was in flight arrives; then only heartbeats.
    let mut heartbeats = 0;
    let quiet = tokio::time::Instant::now() + Duration::from_millis(2500);
    while tokio::time::Instant::now() < quiet {
        let e = tokio::time::timeout(Duration::from_secs(3), sse.next())
            .await
            .expect("heartbeats keep coming")
            .expect("stream stays open");
        match e.id {
            Some(id) => {
                assert_eq!(id, last + 1, "no gap before the kill");
                last = id;
                if e.event == "quote" {
                    let v: serde_json::Value = serde_json::from_str(&e.data).unwrap();
                    price.insert(
                        v["symbol"].as_str().unwrap().into(),
                        v["price"].as_str().unwrap().into(),
                    );
                }
            }
            None => {
                assert_eq!(e.event, "heartbeat");
                heartbeats += 1;
            }
        }
    }
    assert!(heartbeats >= 1, "heartbeats while the simulator is away");
    cluster.edges[0].wait_state("simulator_down").await;
    // Before the kill, the last quotes of each symbol: take them from the edge's snapshot.
    let snapshot: Vec<serde_json::Value> = reqwest::get(cluster.edges[0].url("/snapshot"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for q in &snapshot {
        price.insert(
            q["symbol"].as_str().unwrap().into(),
            q["price"].as_str().unwrap().into(),
        );
    }
    let simulator = start_simulator(&cluster.redis.url(), &[]).await;
    let mut continued = 0;
    let mut next = last + 1;
    while continued < 120 {
        let e = sse.next().await.expect("stream open");
        let Some(id) = e.id else { continue };
        assert_ne!(e.event, "snapshot");
        assert_eq!(id, next, "the sequence continues at last + 1");
        next += 1;
        // The restarted simulator opens with every symbol's quote where it was.
        let v: serde_json::Value = serde_json::from_str(&e.data).unwrap();
        assert_eq!(e.event, "quote");
        let symbol = v["symbol"].as_str().unwrap();
        assert_eq!(
            v["price"].as_str().unwrap(),
            price[symbol],
            "{symbol} continues from its price"
        );
        continued += 1;
    }
    for _ in 0..500 {
        let e = sse.next_with_id().await;
        assert_eq!(e.id.unwrap(), next, "no gap, no duplicate");
        next += 1;
    }
    cluster.edges[0].wait_state("up").await;
    simulator.kill().await;
}

/// Test 6: a second simulator exits with a one-line error; the first keeps writing and the
/// edges see no gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_simulator_is_refused_and_the_feed_has_no_gap() {
    let _serial = SERIAL.lock().await;
    let Some(cluster) = Cluster::start(&[]).await else {
        return;
    };
    let mut sse = Sse::connect(&cluster.edges[1].url("/quotes"), None).await;
    assert_eq!(sse.next().await.unwrap().event, "snapshot");
    let reading = tokio::spawn(async move {
        let mut ids = Vec::new();
        while ids.len() < 6000 {
            ids.push(sse.next_with_id().await.id.unwrap());
        }
        ids
    });
    let args = simulator_args(&cluster.redis.url(), &[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let addr = format!("127.0.0.1:{}", free_port());
    let second = tickcast(&addr, &args, "warn").output();
    let out = tokio::time::timeout(STEP, second)
        .await
        .expect("the second simulator gives up in time")
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last_line = stderr.lines().last().unwrap_or_default();
    assert!(
        last_line.starts_with("tickcast: error: another simulator")
            && last_line.contains("exactly one"),
        "{stderr}"
    );
    let ids = tokio::time::timeout(STEP, reading).await.unwrap().unwrap();
    assert!(
        ids.windows(2).all(|w| w[1] == w[0] + 1),
        "one writer: no gap, no duplicate"
    );
    let (code, body) = cluster.simulator().health().await;
    assert_eq!(code, 200, "{body}");
}

/// Test 9 (the rest of it is the whole suite, which runs without Redis): `--role all` shows
/// its role and no upstream; a bad --redis is one line and exit 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_all_needs_no_redis_and_bad_urls_are_one_line() {
    let node = Node::start(&["--history-days", "1"]).await;
    let (code, body) = node.health().await;
    assert_eq!(code, 200);
    assert_eq!(body["role"], "all");
    assert_eq!(body["upstream"]["state"], "none");
    assert_eq!(node.metric("tickcast_role{role=\"all\"}").await, 1);
    assert_eq!(node.metric("tickcast_upstream_up ").await, 1);
    node.kill().await;
    for (args, says) in [
        (
            vec!["--role", "edge", "--redis", "http://127.0.0.1:1"],
            "--redis is not a Redis URL",
        ),
        (
            vec!["--role", "simulator"],
            "--role simulator needs --redis",
        ),
        (
            vec!["--redis", "redis://127.0.0.1:1"],
            "--redis is only for",
        ),
    ] {
        let out = std::process::Command::new(BIN)
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(says), "{stderr}");
    }
}

/// Test 3: SIGSTOP an edge for 500 ms, then resume on it with an id taken from another edge:
/// it waits to catch up, then replays: no snapshot, no gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_on_an_edge_that_is_behind_waits_for_it() {
    let _serial = SERIAL.lock().await;
    let Some(cluster) = Cluster::start(&[]).await else {
        return;
    };
    let mut other = Sse::connect(&cluster.edges[1].url("/quotes"), None).await;
    assert_eq!(other.next().await.unwrap().event, "snapshot");
    let behind = &cluster.edges[0];
    behind.signal("STOP");
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Drain what the other edge sent meanwhile; its newest id is ahead of the stopped edge.
    let mut ids = vec![other.next_with_id().await.id.unwrap()];
    let mark = cluster.edges[1].seq().await;
    while *ids.last().unwrap() < mark {
        ids.push(other.next_with_id().await.id.unwrap());
    }
    let last = *ids.last().unwrap();
    behind.signal("CONT");
    let mut resumed = Sse::connect(&behind.url("/quotes"), Some(last)).await;
    let mut got = Vec::new();
    while got.len() < 1000 {
        let e = resumed.next().await.expect("stream open");
        assert_ne!(e.event, "snapshot", "a replay, not a snapshot");
        if let Some(id) = e.id {
            got.push(id);
        }
    }
    assert_eq!(
        got,
        (last + 1..last + 1001).collect::<Vec<_>>(),
        "exactly what follows the id"
    );
    assert_eq!(behind.metric("tickcast_replays_served_total ").await, 1);
}

/// Test 4: a restarted edge at once replays 5,000 events back, and its /snapshot equals
/// another edge's at the same seq.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_edge_replays_and_snapshots_like_the_others() {
    let _serial = SERIAL.lock().await;
    let Some(mut cluster) = Cluster::start(&[]).await else {
        return;
    };
    cluster.pass(8000).await;
    cluster.edges.remove(0).kill().await;
    let edge = start_edge(&cluster.redis.url()).await;
    let id = edge.seq().await - 5000;
    let mut resumed = Sse::connect(&edge.url("/quotes"), Some(id)).await;
    for expected in id + 1..id + 1001 {
        let e = resumed.next_with_id().await;
        assert_ne!(e.event, "snapshot", "a replay");
        assert_eq!(e.id, Some(expected));
    }
    // Hold the feed still for a moment (well inside the simulator's lease) and compare.
    cluster.simulator().signal("STOP");
    let mut same = false;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (a, b) = (edge.seq().await, cluster.edges[0].seq().await);
        if a == b {
            let body = |n: &Node| {
                let url = n.url("/snapshot");
                async move { reqwest::get(url).await.unwrap().text().await.unwrap() }
            };
            let (x, y) = (body(&edge).await, body(&cluster.edges[0]).await);
            if edge.seq().await == a {
                assert_eq!(x, y, "the same snapshot at seq {a}");
                same = true;
                break;
            }
        }
    }
    cluster.simulator().signal("CONT");
    assert!(same, "both edges reached the same seq");
    edge.kill().await;
}

/// Test 7: Redis restarts without persistence: live clients see no duplicate and no
/// reordering, edges count the new epoch, and a pre-restart id on a fresh edge gets a
/// snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_is_a_new_epoch_and_nothing_repeats() {
    let _serial = SERIAL.lock().await;
    let Some(mut cluster) = Cluster::start(&[]).await else {
        return;
    };
    let mut live = Sse::connect(&cluster.edges[0].url("/quotes"), None).await;
    assert_eq!(live.next().await.unwrap().event, "snapshot");
    let old_id = live.next_with_id().await.id.unwrap();
    let mut ids = vec![old_id];
    while ids.len() < 500 {
        ids.push(live.next_with_id().await.id.unwrap());
    }
    let old_epoch = cluster.edges[0].health().await.1["upstream"]["epoch"].clone();
    cluster.redis.restart().await;
    // The simulator starts a new epoch; every edge notices and rebuilds.
    for edge in &cluster.edges {
        let deadline = tokio::time::Instant::now() + STEP;
        while edge
            .metric("tickcast_upstream_rebuilds_total{reason=\"epoch\"}")
            .await
            < 1
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{}",
                edge.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        edge.wait_state("up").await;
    }
    let new_epoch = cluster.edges[0].health().await.1["upstream"]["epoch"].clone();
    assert_ne!(old_epoch, new_epoch);
    let mark = cluster.edges[0].seq().await + 1000;
    while *ids.last().unwrap() < mark {
        let e = live.next().await.expect("the live stream stays open");
        if let Some(id) = e.id {
            if e.event != "snapshot" {
                ids.push(id);
            }
        }
    }
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "no duplicate, no reordering"
    );
    let fresh = start_edge(&cluster.redis.url()).await;
    let mut resumed = Sse::connect(&fresh.url("/quotes"), Some(old_id)).await;
    assert_eq!(
        resumed.next().await.unwrap().event,
        "snapshot",
        "an id of a lost epoch is never replayed"
    );
    fresh.kill().await;
}

/// Test 8: an edge stopped past the stream's retention rebuilds; its client is conflated
/// (counted), ids keep increasing, and a resume from before the break gets a snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_behind_the_retention_rebuilds_and_conflates() {
    let _serial = SERIAL.lock().await;
    let Some(cluster) = Cluster::start(&["--stream-retention", "1000"]).await else {
        return;
    };
    let edge = &cluster.edges[0];
    let mut live = Sse::connect(&edge.url("/quotes?symbols=AAPL,MSFT"), None).await;
    assert_eq!(live.next().await.unwrap().event, "snapshot");
    let before = live.next_with_id().await.id.unwrap();
    edge.signal("STOP");
    let stopped_at = cluster.edges[1].seq().await;
    let deadline = tokio::time::Instant::now() + STEP;
    while cluster.edges[1].seq().await < stopped_at + 6000 {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    edge.signal("CONT");
    let deadline = tokio::time::Instant::now() + STEP;
    while edge
        .metric("tickcast_upstream_rebuilds_total{reason=\"retention\"}")
        .await
        < 1
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{}",
            edge.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut ids = vec![before];
    let mark = edge.seq().await + 500;
    while *ids.last().unwrap() < mark {
        let e = live.next_with_id().await;
        ids.push(e.id.unwrap());
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids keep increasing");
    assert!(
        edge.metric("tickcast_updates_conflated_total ").await > 0,
        "conflation is counted"
    );
    let mut resumed = Sse::connect(&edge.url("/quotes"), Some(before)).await;
    assert_eq!(resumed.next().await.unwrap().event, "snapshot");
}

/// `tickcast-load` over three edges with `--reconnect`: one edge is killed mid-run; its
/// clients resume on the others with no id gap, no order error and no snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_generator_fails_over_without_a_gap() {
    let _serial = SERIAL.lock().await;
    let Some(mut cluster) = Cluster::start(&[]).await else {
        return;
    };
    let urls: Vec<String> = cluster.edges.iter().map(|e| e.url("/quotes")).collect();
    let load = Command::new(env!("CARGO_BIN_EXE_tickcast-load"))
        .args(["--url", &urls[0], "--url", &urls[1], "--url", &urls[2]])
        .args(["--clients", "30", "--ramp", "0.5", "--duration", "4"])
        .args(["--reconnect", "--retry-ms", "200", "--json-only", "--quiet"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.edges.remove(0).kill().await;
    let out = tokio::time::timeout(STEP, load.wait_with_output())
        .await
        .expect("the load run ends in time")
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["reconnects"], 10, "{report}");
    assert_eq!(report["reconnect_snapshots"], 0, "{report}");
    assert_eq!(report["id_jumps"], 0, "{report}");
    assert_eq!(report["order_errors"], 0, "{report}");
    assert!(
        report["reconnect_max_ms"].as_f64().unwrap() < 1200.0,
        "{report}"
    );
    let times = &report["reconnect_ms"];
    assert_eq!(times["samples"], 10, "{report}");
    let (p50, max) = (
        times["p50"].as_f64().unwrap(),
        times["max"].as_f64().unwrap(),
    );
    assert!(
        (200.0..=max).contains(&p50),
        "after the 200 ms retry: {report}"
    );
    assert!(report["events"].as_u64().unwrap() > 100_000, "{report}");
}

/// The simulator serves only /healthz and /metrics, with the connection bounds of every node:
/// a stream request is a JSON 404 (not a stream of the simulator's own feed), and connections
/// past `--max-connections-per-ip` are refused with a JSON 429 before their request is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulator_serves_status_only_within_its_connection_caps() {
    let _serial = SERIAL.lock().await;
    let Some(redis) = Redis::start().await else {
        return;
    };
    let simulator = start_simulator(&redis.url(), &["--max-connections-per-ip", "2"]).await;
    simulator.wait_state("up").await;
    let get = |path: &str| format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    let ask = |request: String| {
        let addr = simulator.addr.clone();
        async move {
            let mut socket = tokio::net::TcpStream::connect(&addr).await.unwrap();
            socket.write_all(request.as_bytes()).await.unwrap();
            let mut answer = String::new();
            tokio::time::timeout(STEP, socket.read_to_string(&mut answer))
                .await
                .expect("an answer in time")
                .unwrap();
            answer
        }
    };
    for path in ["/quotes", "/quotes/AAPL", "/snapshot", "/"] {
        let answer = ask(get(path)).await;
        assert!(answer.starts_with("HTTP/1.1 404"), "{path}: {answer}");
        assert!(
            answer.contains(r#""error":"not_found""#),
            "{path}: {answer}"
        );
    }
    assert!(ask(get("/healthz")).await.starts_with("HTTP/1.1 200"));
    // Two kept-alive connections take the address's two places (each answered once, so it is
    // surely admitted, not refused while earlier connections were still being let go); the
    // third is refused.
    let mut held = Vec::new();
    let deadline = tokio::time::Instant::now() + STEP;
    while held.len() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "two connections admitted in time"
        );
        let mut socket = tokio::net::TcpStream::connect(&simulator.addr)
            .await
            .unwrap();
        socket
            .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        let admitted = loop {
            if answer.starts_with(b"HTTP/1.1 200") && answer.ends_with(b"}") {
                break true;
            }
            match tokio::time::timeout(STEP, socket.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => answer.extend_from_slice(&buf[..n]),
                // Refused while an earlier connection was still being let go: try again.
                _ => break false,
            }
        };
        if admitted {
            held.push(socket);
        } else {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let refused = ask(get("/healthz")).await;
    assert!(refused.starts_with("HTTP/1.1 429"), "{refused}");
    assert!(refused.contains("too_many_connections"), "{refused}");
}

/// SIGTERM on an edge ends its open streams cleanly (the chunked body's last chunk), however
/// quickly its reader of the stream stops, and the edge exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_an_edges_streams_cleanly() {
    let _serial = SERIAL.lock().await;
    let Some(mut cluster) = Cluster::start(&[]).await else {
        return;
    };
    let mut edge = cluster.edges.remove(0);
    let mut streams = Vec::new();
    for _ in 0..20 {
        let mut socket = tokio::net::TcpStream::connect(&edge.addr).await.unwrap();
        socket
            .write_all(b"GET /quotes HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        streams.push(socket);
    }
    // Clients that read, as browsers do, each on its own task.
    let readers: Vec<_> = streams
        .into_iter()
        .map(|mut socket| {
            tokio::spawn(async move {
                let mut body = Vec::new();
                tokio::time::timeout(STEP, socket.read_to_end(&mut body))
                    .await
                    .expect("the stream ends in time")
                    .expect("the stream ends without a reset");
                body
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    edge.signal("TERM");
    for (i, reader) in readers.into_iter().enumerate() {
        let body = reader.await.unwrap();
        let text = String::from_utf8_lossy(&body);
        assert!(text.starts_with("HTTP/1.1 200"), "stream {i}: {text:.200}");
        assert!(
            body.ends_with(b"\r\n0\r\n\r\n"),
            "stream {i} ends with the last chunk; {} bytes ending {:?}",
            body.len(),
            String::from_utf8_lossy(&body[body.len().saturating_sub(80)..]),
        );
    }
    let status = tokio::time::timeout(STEP, edge.child.wait())
        .await
        .expect("the edge exits in time")
        .unwrap();
    assert_eq!(status.code(), Some(0), "{}", edge.log_text());
}

/// `rediss://`: a simulator and an edge reach a redis-server that speaks only TLS, trusting
/// its self-signed certificate with `--redis-ca`, and the edge streams the feed; an edge
/// without `--redis-ca` cannot verify the server (not in the system's store), says so, and
/// never becomes ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_reaches_redis_over_tls() {
    let _serial = SERIAL.lock().await;
    let (dir, cert, key) = common::write_cert("tickcast-rediss");
    let cert: &'static str = Box::leak(cert.into_boxed_str());
    let Some(redis) = Redis::start_tls(cert, &key).await else {
        return;
    };
    let url = format!("rediss://127.0.0.1:{}", redis.port);
    let simulator = start_simulator(&url, &["--redis-ca", cert]).await;
    simulator.wait_state("up").await;
    let edge = Node::start(&["--role", "edge", "--redis", &url, "--redis-ca", cert]).await;
    edge.wait_state("up").await;
    let mut sse = Sse::connect(&edge.url("/quotes"), None).await;
    assert_eq!(sse.next().await.unwrap().event, "snapshot");
    let mut last = 0;
    for _ in 0..200 {
        let id = sse.next_with_id().await.id.unwrap();
        assert!(id > last, "ids increase");
        last = id;
    }

    let addr = format!("127.0.0.1:{}", free_port());
    let mut untrusting = tickcast(&addr, &["--role", "edge", "--redis", &url], "warn")
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(untrusting.stderr.take().unwrap()).lines();
    let refused = tokio::time::timeout(STEP, async {
        while let Ok(Some(line)) = lines.next_line().await {
            assert!(
                !line.contains("listening"),
                "an edge that cannot verify Redis serves nothing"
            );
            if line.contains("Redis unavailable") {
                return line;
            }
        }
        panic!("the untrusting edge exited");
    })
    .await
    .expect("the untrusting edge says why it cannot start");
    assert!(refused.to_lowercase().contains("certificate"), "{refused}");
    let _ = untrusting.kill().await;
    let _ = std::fs::remove_dir_all(&dir);
}
