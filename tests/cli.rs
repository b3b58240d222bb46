//! The binary itself: bad input exits non-zero with one line, SIGTERM exits 0, and a client that
//! stops reading costs bounded memory.

mod common;

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_tickcast");

async fn run_to_end(args: &[&str]) -> (i32, String) {
    let out = tokio::time::timeout(
        common::STEP,
        Command::new(BIN)
            .args(args)
            .env("RUST_LOG", "warn")
            .output(),
    )
    .await
    .expect("exits in time")
    .expect("runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn write_csv(name: &str, body: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tickcast-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            "symbol,name,price,volatility,drift,tick_size,beta,sector,adv,spread_bp,tier\n{body}"
        ),
    )
    .unwrap();
    path
}

#[tokio::test]
async fn bad_symbol_files_are_refused_with_file_line_and_column() {
    let cases = [
        (
            "dup.csv",
            "A,A,1.00,0.2,0.1,0.01,1,Energy,1000,1.0,1\nA,B,2.00,0.2,0.1,0.01,1,Energy,1000,1.0,1\n",
            ":3: column 'symbol': duplicate symbol A",
        ),
        (
            "neg.csv",
            "A,A,-1.00,0.2,0.1,0.01,1,Energy,1000,1.0,1\n",
            ":2: column 'price': price must be positive",
        ),
        (
            "tick.csv",
            "A,A,1.00,0.2,0.1,0,1,Energy,1000,1.0,1\n",
            ":2: column 'tick_size': tick size must be positive",
        ),
        (
            "nan.csv",
            "A,A,1.00,x,0.1,0.01,1,Energy,1000,1.0,1\n",
            ":2: column 'volatility': 'x' is not a number",
        ),
    ];
    for (name, body, expected) in cases {
        let path = write_csv(name, body);
        let (code, stderr) =
            run_to_end(&["--symbols", path.to_str().unwrap(), "--addr", "127.0.0.1:0"]).await;
        assert_ne!(code, 0, "{name}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
        assert!(
            stderr.contains(path.to_str().unwrap()) && stderr.contains(expected),
            "{stderr}"
        );
    }
    let (code, stderr) = run_to_end(&["--symbols", "/no/such/file.csv"]).await;
    assert_eq!(code, 1);
    assert_eq!(
        stderr.trim(),
        "tickcast: error: /no/such/file.csv: cannot read file: No such file or directory (os error 2)"
    );
}

#[tokio::test]
async fn bad_flags_are_refused_with_one_line() {
    // Values that parse but make no sense and values that do not parse: one line, exit 2.
    let (code, stderr) = run_to_end(&["--rate", "0", "--symbols", "data/symbols.csv"]).await;
    assert_eq!(code, 2);
    assert_eq!(
        stderr.trim(),
        "tickcast: error: --rate must be > 0 and <= 100000, got 0"
    );
    let (code, stderr) = run_to_end(&["--rate", "fast"]).await;
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(
        stderr.trim(),
        "tickcast: error: invalid value 'fast' for '--rate <RATE>': invalid float literal"
    );
    let (code, stderr) = run_to_end(&["--start", "2024-07-04"]).await;
    assert_eq!(code, 2);
    assert_eq!(
        stderr.trim(),
        "tickcast: error: --start 2024-07-04 is not a trading day (NYSE holiday or weekend)"
    );
}

#[tokio::test]
async fn port_in_use_is_one_line_and_non_zero() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let symbols = concat!(env!("CARGO_MANIFEST_DIR"), "/data/symbols.csv");
    let (code, stderr) = run_to_end(&["--addr", &addr, "--symbols", symbols]).await;
    assert_ne!(code, 0);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")),
        "{stderr}"
    );
}

#[tokio::test]
async fn logs_are_plain_text_off_a_terminal_or_json_on_request() {
    let symbols = concat!(env!("CARGO_MANIFEST_DIR"), "/data/symbols.csv");
    for format in ["text", "json"] {
        let mut child = Command::new(BIN)
            .args([
                "--addr",
                "127.0.0.1:0",
                "--symbols",
                symbols,
                "--log-format",
                format,
            ])
            .env("RUST_LOG", "info")
            .env_remove("NO_COLOR")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let line = tokio::time::timeout(common::STEP, lines.next_line())
            .await
            .expect("a log line in time")
            .unwrap()
            .expect("a log line");
        assert!(
            !line.contains('\x1b'),
            "no ANSI colours on a pipe: {line:?}"
        );
        if format == "json" {
            let v: serde_json::Value = serde_json::from_str(&line).expect("one JSON object a line");
            assert_eq!(v["level"], "INFO", "{v}");
            assert!(v["fields"]["message"].is_string(), "{v}");
        }
        sigterm(&child);
        child.wait().await.unwrap();
    }
}

/// Sends SIGTERM and checks the server exits 0 in time.
async fn stop_cleanly(child: &mut Child) {
    sigterm(child);
    let status = tokio::time::timeout(common::STEP, child.wait())
        .await
        .expect("exits in time")
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

fn sigterm(child: &Child) {
    let pid = child.id().expect("running").to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_open_streams_and_exits_zero() {
    let (mut child, addr) = common::spawn_server(&["--seed", "1"]).await;
    let mut sse =
        common::SseClient::connect(&common::http1(), &format!("http://{addr}/quotes"), &[]).await;
    sse.next_named("snapshot").await;
    stop_cleanly(&mut child).await;
    while sse.next().await.is_some() {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_costs_bounded_memory_then_gets_latest_quotes() {
    // 120 symbols x 100 updates/s ~ 4 MB/s of frames; the history holds only 500 updates.
    // Midday, so the rate is the average one (the open is 2.5 times as busy).
    let (mut child, addr) = common::spawn_server(&[
        "--seed",
        "1",
        "--start",
        "2024-03-04T12:00:00-05:00",
        "--rate",
        "100",
        "--history",
        "500",
        "--flush-ms",
        "20",
    ])
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before =
        common::metric(&format!("http://{addr}"), "process_resident_memory_bytes ").await;

    let mut socket = tokio::net::TcpStream::connect(&addr).await.unwrap();
    socket
        .write_all(b"GET /quotes HTTP/1.1\r\nHost: test\r\nAccept: text/event-stream\r\n\r\n")
        .await
        .unwrap();
    // Do not read for 6 seconds while ~24 MB of updates flow.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let rss_stalled =
        common::metric(&format!("http://{addr}"), "process_resident_memory_bytes ").await;
    let growth = rss_stalled.saturating_sub(rss_before);
    assert!(
        growth < 8 << 20,
        "RSS grew {growth} bytes while the client was stalled"
    );

    // Now read: after what the socket buffers held, the client is conflated to fresh quotes.
    let newest_at_resume = common::metric(&format!("http://{addr}"), "tickcast_seq ").await;
    let mut buf = vec![0u8; 1 << 16];
    let mut text = String::new();
    let fresh = tokio::time::timeout(common::STEP, async {
        loop {
            let n = socket.read(&mut buf).await.unwrap();
            assert!(n > 0, "stream closed");
            text.push_str(&String::from_utf8_lossy(&buf[..n]));
            let max_id = text
                .lines()
                .filter_map(|l| l.strip_prefix("id: ").and_then(|v| v.parse::<u64>().ok()))
                .max()
                .unwrap_or(0);
            if max_id >= newest_at_resume {
                return max_id;
            }
            if text.len() > 1 << 20 {
                text.drain(..text.len() - 4096);
            }
        }
    })
    .await
    .expect("the client catches up to the newest quotes");
    assert!(fresh >= newest_at_resume);
    assert!(
        common::metric(
            &format!("http://{addr}"),
            "tickcast_updates_conflated_total "
        )
        .await
            > 0
    );
    sigterm(&child);
    let _ = tokio::time::timeout(common::STEP, child.wait()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_threaded_runtime_streams_and_resumes() {
    let (mut child, addr) = common::spawn_server(&[
        "--seed",
        "1",
        "--threads",
        "1",
        "--rate",
        "20",
        "--flush-ms",
        "20",
    ])
    .await;
    let client = common::http1();
    let mut sse = common::SseClient::connect(&client, &format!("http://{addr}/quotes"), &[]).await;
    let snapshot = sse.next_named("snapshot").await;
    let mut expected = snapshot.id_num() + 1;
    while expected < snapshot.id_num() + 200 {
        assert_eq!(sse.next_with_id().await.id_num(), expected);
        expected += 1;
    }
    let mut resumed = common::SseClient::connect(
        &client,
        &format!("http://{addr}/quotes"),
        &[("last-event-id", &snapshot.id_num().to_string())],
    )
    .await;
    assert_eq!(
        resumed.next().await.unwrap().id_num(),
        snapshot.id_num() + 1
    );
    stop_cleanly(&mut child).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copied_binary_runs_anywhere_with_its_built_in_symbols_and_page() {
    // No --symbols and no web/ in the working directory: both come from the binary.
    let (mut child, addr) = common::spawn_server_in(&std::env::temp_dir(), &["--seed", "1"]).await;
    let (status, _, health) = common::get_json(&format!("http://{addr}/healthz")).await;
    assert_eq!(status, 200);
    assert_eq!(health["symbols"], 120);
    let page = common::http1()
        .get(format!("http://{addr}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("<html"));
    stop_cleanly(&mut child).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn addr_takes_a_host_name() {
    // `localhost:0` is resolved to a loopback address, not refused as bad syntax.
    let (mut child, addr) = common::spawn_server(&["--addr", "localhost:0"]).await;
    let ip: std::net::SocketAddr = addr.parse().expect("the log names the address it bound");
    assert!(ip.ip().is_loopback(), "{addr}");
    let (status, _, health) = common::get_json(&format!("http://{addr}/healthz")).await;
    assert_eq!(status, 200);
    assert_eq!(health["status"], "ok");
    stop_cleanly(&mut child).await;
}

/// Connections arriving together (the clients of a node that died, reconnecting in the same
/// millisecond) all complete their handshake while the server is not accepting: its listen
/// backlog is 4,096 (capped by `net.core.somaxconn`), not tokio's 1,024, past which the kernel
/// drops SYNs and the clients wait a second for the retransmit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_connections_waits_in_the_listen_backlog() {
    let somaxconn: usize = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    let burst = 1_500;
    if somaxconn <= burst {
        // The kernel caps every backlog at somaxconn; this machine cannot show the difference.
        // (4,096 by default since Linux 5.4.)
        eprintln!("SKIPPED: net.core.somaxconn is {somaxconn}, at most the burst of {burst}");
        return;
    }
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let (mut child, addr) = common::spawn_server(&["--seed", "1"]).await;
    let pid = child.id().expect("running").to_string();
    // Stopped, the server accepts nothing: the burst can only wait in the backlog.
    let stop = |signal: &str| {
        let ok = std::process::Command::new("kill")
            .args([signal, &pid])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {signal}");
    };
    stop("-STOP");
    let connects = (0..burst).map(|_| {
        let addr = addr.clone();
        tokio::spawn(async move {
            tokio::time::timeout(
                Duration::from_millis(800),
                tokio::net::TcpStream::connect(addr),
            )
            .await
        })
    });
    let results = futures_util::future::join_all(connects).await;
    stop("-CONT");
    let mut sockets = Vec::new();
    let mut late = 0;
    for r in results {
        match r.unwrap() {
            Ok(Ok(socket)) => sockets.push(socket),
            _ => late += 1,
        }
    }
    assert_eq!(
        late, 0,
        "{late} of {burst} connections were not taken within 0.8 s"
    );
    drop(sockets);
    stop_cleanly(&mut child).await;
}
