//! The `tickcast-load` binary against a real tickcast server running in this process, and its
//! refusals of bad arguments and non-loopback targets.

mod common;

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::process::Command;

const LOAD: &str = env!("CARGO_BIN_EXE_tickcast-load");

/// Longest a whole load run may take (ramp + duration + drain, with slack for a busy machine).
const RUN_LIMIT: Duration = Duration::from_secs(60);

struct Output {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs the load binary with `args`, bounded in time.
async fn load(args: &[&str]) -> Output {
    let child = Command::new(LOAD)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the load binary starts");
    let out = tokio::time::timeout(RUN_LIMIT, child.wait_with_output())
        .await
        .expect("the load run ends within its time limit")
        .expect("waiting for the load binary");
    Output {
        code: out.status.code(),
        stdout: String::from_utf8(out.stdout).expect("UTF-8 stdout"),
        stderr: String::from_utf8(out.stderr).expect("UTF-8 stderr"),
    }
}

/// The single JSON line of a `--json-only` run.
/// A quiet, JSON-only run of `clients` connections to `url`.
async fn measure(url: &str, clients: u32, ramp_s: u32, duration_s: u32) -> Output {
    let (clients, ramp, duration) = (
        clients.to_string(),
        ramp_s.to_string(),
        duration_s.to_string(),
    );
    load(&[
        "--url",
        url,
        "--clients",
        &clients,
        "--ramp",
        &ramp,
        "--duration",
        &duration,
        "--json-only",
        "--quiet",
    ])
    .await
}

fn json_line(out: &Output) -> Value {
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "--json-only prints exactly one line; stdout: {:?}, stderr: {:?}",
        out.stdout,
        out.stderr
    );
    serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("bad JSON {:?}: {e}", lines[0]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn measures_fifty_streams_of_a_real_server() {
    let server = common::start(&["--seed", "1", "--rate", "5", "--flush-ms", "50"]).await;
    let url = server.url("/quotes");
    let out = measure(&url, 50, 1, 2).await;
    server.stop().await;
    assert_eq!(out.code, Some(0), "stderr: {}", out.stderr);
    let v = json_line(&out);
    assert_eq!(v["clients"], 50, "{v}");
    assert_eq!(v["connected"], 50, "{v}");
    assert_eq!(v["failed"], 0, "{v}");
    assert_eq!(v["disconnects"], 0, "{v}");
    assert_eq!(v["order_errors"], 0, "{v}");
    assert!(v["events"].as_u64().unwrap() > 0, "{v}");
    assert!(v["events_per_s"].as_f64().unwrap() > 0.0, "{v}");
    assert!(v["bytes_per_s"].as_f64().unwrap() > 0.0, "{v}");
    let duration = v["duration_s"].as_f64().unwrap();
    // The 2 s window, measured by the tool's own clock: on a machine busy with other tests it
    // may close a little late, never early.
    assert!((1.9..5.0).contains(&duration), "{v}");
    let p99 = v["latency_ms"]["p99"]
        .as_f64()
        .expect("latency p99 present");
    let p50 = v["latency_ms"]["p50"].as_f64().unwrap();
    let max = v["latency_ms"]["max"].as_f64().unwrap();
    assert!(p50 >= 0.0 && p50 <= p99 && p99 <= max, "{v}");
    assert!(max < 10_000.0, "latency is in milliseconds: {v}");
    // Every stream opens with one snapshot, then quotes.
    assert_eq!(v["event_counts"]["snapshot"], 50, "{v}");
    assert!(v["event_counts"]["quote"].as_u64().unwrap() > 0, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subset_subscription_has_id_jumps_but_no_order_errors() {
    let server = common::start(&["--seed", "2", "--rate", "20", "--flush-ms", "0"]).await;
    let url = server.url("/quotes?symbols=AAPL,MSFT");
    let out = measure(&url, 5, 0, 1).await;
    server.stop().await;
    assert_eq!(out.code, Some(0), "stderr: {}", out.stderr);
    let v = json_line(&out);
    assert_eq!(v["connected"], 5, "{v}");
    assert_eq!(v["order_errors"], 0, "{v}");
    assert!(v["id_jumps"].as_u64().unwrap() > 0, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_that_is_not_an_event_stream_fails_every_client() {
    let server = common::start(&["--seed", "1"]).await;
    let url = server.url("/healthz");
    let out = measure(&url, 3, 0, 1).await;
    server.stop().await;
    assert_eq!(out.code, Some(1), "no client connected: exit 1");
    let v = json_line(&out);
    assert_eq!(v["connected"], 0, "{v}");
    assert_eq!(v["failed"], 3, "{v}");
    assert_eq!(v["failures"]["not text/event-stream"], 3, "{v}");
    assert!(v["latency_ms"]["p99"].is_null(), "{v}");
}

/// `--token` is sent as `Authorization: Bearer` on every stream: a server that requires tokens
/// lets the run in; the same run without it is refused (401) on every client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_opens_the_streams_of_a_server_that_requires_one() {
    let secret = "load-test-secret-0123456789";
    let server = common::start(&["--seed", "3", "--rate", "5", "--jwt-secret", secret]).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let token = tickcast::auth::mint(secret.as_bytes(), &["*".to_string()], now, now + 600)
        .expect("a token");
    let url = server.url("/quotes");
    let common_args = [
        "--url",
        &url,
        "--clients",
        "3",
        "--ramp",
        "0",
        "--duration",
        "1",
    ];
    let with = load(
        &[
            &common_args[..],
            &["--token", &token, "--json-only", "--quiet"],
        ]
        .concat(),
    )
    .await;
    let without = load(&[&common_args[..], &["--json-only", "--quiet"]].concat()).await;
    let h2 = load(
        &[
            &common_args[..],
            &["--h2", "--token", &token, "--json-only", "--quiet"],
        ]
        .concat(),
    )
    .await;
    server.stop().await;
    for (name, out) in [("HTTP/1.1", &with), ("h2c", &h2)] {
        assert_eq!(out.code, Some(0), "{name}: {}", out.stderr);
        let v = json_line(out);
        assert_eq!(v["connected"], 3, "{name}: {v}");
        assert_eq!(v["event_counts"]["snapshot"], 3, "{name}: {v}");
    }
    assert_eq!(without.code, Some(1), "{}", without.stderr);
    let v = json_line(&without);
    assert_eq!(v["connected"], 0, "{v}");
    assert_eq!(v["failed"], 3, "{v}");
}

/// Asserts a refusal: exit code 2, nothing on stdout, one line on stderr containing `needle`.
fn assert_refused(out: &Output, needle: &str) {
    assert_eq!(out.code, Some(2), "stderr: {}", out.stderr);
    assert!(out.stdout.is_empty(), "stdout: {}", out.stdout);
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one-line error, got {:?}", out.stderr);
    assert!(lines[0].starts_with("tickcast-load: "), "{}", lines[0]);
    assert!(lines[0].contains(needle), "{:?} lacks {needle:?}", lines[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_a_non_loopback_target_before_connecting() {
    let started = tokio::time::Instant::now();
    let out = load(&["--url", "http://10.0.0.1:80/quotes", "--clients", "1"]).await;
    assert_refused(&out, "non-loopback");
    // A connection attempt to an unroutable address would take seconds.
    assert!(started.elapsed() < Duration::from_secs(5));
    let out = load(&["--url", "http://example.com/quotes", "--quiet"]).await;
    assert_refused(&out, "non-loopback");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_bad_arguments() {
    let url = "http://127.0.0.1:9/quotes";
    assert_refused(&load(&["--url", url, "--clients", "0"]).await, "--clients");
    assert_refused(
        &load(&["--url", url, "--clients", "50001"]).await,
        "--clients",
    );
    assert_refused(
        &load(&["--url", url, "--duration", "3601"]).await,
        "--duration",
    );
    assert_refused(&load(&["--url", url, "--clients", "x"]).await, "--clients");
    assert_refused(
        &load(&["--url", "https://127.0.0.1:9/quotes"]).await,
        "https",
    );
    assert_refused(&load(&["--clients", "1"]).await, "--url");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn measures_the_same_way_over_https_http2_and_h2c() {
    let (dir, cert, key) = common::write_cert("tickcast-load-tls");
    let flags = ["--seed", "1", "--rate", "5", "--flush-ms", "50"];
    let mut tls_flags = flags.to_vec();
    tls_flags.extend_from_slice(&["--tls-cert", &cert, "--tls-key", &key]);
    let tls = common::start(&tls_flags).await;
    let plain = common::start(&flags).await;
    let https = format!("https://localhost:{}/quotes", tls.addr.port());
    let h2c = plain.url("/quotes");
    let runs: [(&str, &[&str], &str, u64); 4] = [
        (&https, &["--cacert", &cert], "HTTP/1.1", 30),
        (
            &https,
            &["--insecure", "--h2"],
            "HTTP/2, 10 streams per connection",
            3,
        ),
        (
            &https,
            &["--cacert", &cert, "--h2"],
            "HTTP/2, 10 streams per connection",
            3,
        ),
        (&h2c, &["--h2"], "HTTP/2, 10 streams per connection", 3),
    ];
    for (url, extra, protocol, connections) in runs {
        let mut args = vec![
            "--url",
            url,
            "--clients",
            "30",
            "--streams-per-conn",
            "10",
            "--ramp",
            "1",
            "--duration",
            "2",
            "--json-only",
            "--quiet",
        ];
        args.extend_from_slice(extra);
        let out = load(&args).await;
        assert_eq!(out.code, Some(0), "{extra:?}: {}", out.stderr);
        let v = json_line(&out);
        assert_eq!(v["protocol"], protocol, "{v}");
        assert_eq!(v["connections"], connections, "{v}");
        assert_eq!(v["connected"], 30, "{v}");
        assert_eq!(v["failed"], 0, "{v}");
        assert_eq!(v["disconnects"], 0, "{v}");
        assert_eq!(v["order_errors"], 0, "{v}");
        assert_eq!(v["event_counts"]["snapshot"], 30, "{v}");
        assert!(v["event_counts"]["quote"].as_u64().unwrap() > 0, "{v}");
        assert!(v["latency_ms"]["p99"].as_f64().is_some(), "{v}");
    }
    // Without a trust choice, or trusting nothing that signed the server's certificate.
    let other = write_other_cert(&dir);
    let out = load(&[
        "--url",
        &https,
        "--clients",
        "2",
        "--duration",
        "1",
        "--quiet",
    ])
    .await;
    assert_refused(&out, "--cacert");
    let out = load(&[
        "--url",
        &https,
        "--cacert",
        &other,
        "--clients",
        "2",
        "--duration",
        "1",
        "--ramp",
        "0",
    ])
    .await;
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(out.stderr.contains("tls handshake"), "{}", out.stderr);
    tls.stop().await;
    plain.stop().await;
    std::fs::remove_dir_all(dir).unwrap();
}

/// A certificate that signed nothing the server has.
fn write_other_cert(dir: &std::path::Path) -> String {
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let path = dir.join("other.pem");
    std::fs::write(&path, other.cert.pem()).unwrap();
    path.to_str().unwrap().to_string()
}
