//! `tickcast-load`: opens many Server-Sent-Events streams against one URL, ramps them up,
//! measures a steady window (events/s, bytes/s, latency from each event's JSON `ts`, id order),
//! then closes everything and prints a table and one JSON line.
//!
//! It works against any SSE server whose event data is JSON with an epoch `ts`; it does not use
//! the tickcast library. Each connection is one task on a raw `TcpStream` with hand-written
//! HTTP/1.1 and SSE decoding, so one core can read millions of events per second. Targets must
//! be loopback unless `--allow-remote` is given, and every run ends by itself.

mod conn;
mod h2;
mod http;
mod sse;
mod stats;
mod target;
mod tls;

use std::io::{IsTerminal, Write};
use std::pin::pin;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU8, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use tokio::task::JoinSet;
use tokio::time::Instant;

use conn::Shared;
use stats::{Counters, Report};
use target::Url;

/// Most connections one run may open.
const MAX_CLIENTS: u64 = 50_000;
/// Longest steady window, seconds.
const MAX_DURATION: f64 = 3600.0;
/// Longest ramp, seconds.
const MAX_RAMP: f64 = 600.0;
/// Longest connect timeout, seconds.
const MAX_TIMEOUT: f64 = 300.0;
/// File descriptors needed besides the connections (stdio, epoll, runtime, slack).
const FD_RESERVE: u64 = 64;
/// Longest wait for the connection tasks to end once they are cancelled.
const DRAIN: Duration = Duration::from_secs(5);
/// How often the controller checks for Ctrl-C, failures and dead connections.
const CHECK_EVERY: Duration = Duration::from_millis(250);

/// Load generator for Server-Sent-Events servers such as tickcast: opens --clients streams over
/// --ramp seconds, measures a steady window of --duration seconds, then closes them and
/// prints a table and one JSON line. Only loopback targets unless --allow-remote.
#[derive(Debug, Parser)]
#[command(name = "tickcast-load", version)]
struct Args {
    /// SSE endpoint, e.g. http://127.0.0.1:3000/quotes or https://localhost:3443/quotes
    /// (https needs --cacert or --insecure). Repeat it to spread the clients over several
    /// servers, such as the edges of a cluster: client i starts on URL i mod N (HTTP/1.1
    /// only, not with --h2).
    #[arg(long, required = true)]
    url: Vec<String>,

    /// When a stream ends, open it again after --retry-ms on another URL with
    /// `Last-Event-ID: <last id received>`, as a browser's EventSource does; ids are checked
    /// for gaps and order across the reconnection (HTTP/1.1 only, not with --h2).
    #[arg(long)]
    reconnect: bool,

    /// Milliseconds to wait before reconnecting (--reconnect), like the `retry:` field a
    /// browser obeys.
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    retry_ms: u64,

    /// Multiplex the streams over HTTP/2 connections (ALPN h2 for https://, prior knowledge
    /// h2c for http://), --streams-per-conn to each.
    #[arg(long)]
    h2: bool,

    /// Streams per HTTP/2 connection with --h2 (1 to 1000; tickcast allows 100).
    #[arg(long, default_value_t = 100, value_name = "N")]
    streams_per_conn: usize,

    /// For https://: trust the certificates (or CA) in this PEM file, such as the server's
    /// own --tls-cert.
    #[arg(long, value_name = "PEM", conflicts_with = "insecure")]
    cacert: Option<std::path::PathBuf>,

    /// For https://: accept any certificate (a --tls-self-signed server). The connection is
    /// encrypted but the server is not authenticated.
    #[arg(long)]
    insecure: bool,

    /// A token for a server with --jwt-secret or --jwt-public-key, sent on every request as
    /// `Authorization: Bearer` (a `?token=` in the --url works as well).
    #[arg(long, value_name = "JWT")]
    token: Option<String>,

    /// Streams to open (at most 50000).
    #[arg(long, default_value_t = 100)]
    clients: u64,

    /// Seconds of steady measurement after the ramp (at most 3600).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,

    /// Seconds over which the streams are opened, evenly spaced (at most 600).
    #[arg(long, default_value_t = 2.0)]
    ramp: f64,

    /// Spread connections over the source addresses 127.0.0.1..127.0.0.N (IPv4 loopback
    /// targets only) [default: one per 25000 clients].
    #[arg(long, value_name = "N")]
    source_ips: Option<u32>,

    /// Print only the JSON line on stdout.
    #[arg(long)]
    json_only: bool,

    /// No progress line or start-up notes on stderr.
    #[arg(long)]
    quiet: bool,

    /// Allow a target that is not loopback (127.0.0.0/8, ::1, localhost).
    #[arg(long)]
    allow_remote: bool,

    /// End the run once more than this many connections have failed [default: never].
    #[arg(long, value_name = "N")]
    max_connect_failures: Option<u64>,

    /// Seconds allowed to connect and receive the response head.
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    timeout: f64,
}

/// A validated run.
#[derive(Debug)]
struct Plan {
    /// Every --url, space-separated, for the report.
    all_urls: String,
    shared: Arc<Shared>,
    clients: u64,
    ramp: Duration,
    duration: Duration,
    json_only: bool,
    quiet: bool,
    max_failures: Option<u64>,
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            return usage_error(&one_line(&e.render().to_string()));
        }
    };
    let plan = match plan(args) {
        Ok(plan) => plan,
        Err(msg) => return usage_error(&msg),
    };
    let sockets = plan
        .shared
        .h2
        .as_ref()
        .map_or(plan.clients, |pool| pool.connections() as u64);
    let fd_limit = match raise_fd_limit(sockets) {
        Ok(limit) => limit,
        Err(msg) => return usage_error(&msg),
    };
    if !plan.quiet {
        eprintln!(
            "tickcast-load: {} clients -> {} (ramp {:.1} s, steady {:.1} s, {} source address{}, open-file limit {})",
            plan.clients,
            plan.shared.target,
            plan.ramp.as_secs_f64(),
            plan.duration.as_secs_f64(),
            plan.shared.sources.len().max(1),
            if plan.shared.sources.len() > 1 { "es" } else { "" },
            fd_limit
        );
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tickcast-load: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let json_only = plan.json_only;
    let (report, interrupted) = runtime.block_on(run(plan));
    runtime.shutdown_timeout(Duration::from_secs(1));

    let mut out = std::io::stdout().lock();
    if !json_only {
        let _ = writeln!(out, "tickcast-load results");
        let _ = write!(out, "{}", report.table());
    }
    let _ = writeln!(out, "{}", report.json());
    let _ = out.flush();

    if interrupted {
        ExitCode::from(130)
    } else if report.connected == 0 || report.ended_early.is_some() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Prints a one-line error and returns exit code 2.
fn usage_error(msg: &str) -> ExitCode {
    eprintln!("tickcast-load: {msg}");
    ExitCode::from(2)
}

/// A clap error on one line: its lines up to the first blank one, joined.
fn one_line(rendered: &str) -> String {
    let text: Vec<&str> = rendered
        .lines()
        .map(str::trim)
        .take_while(|l| !l.is_empty())
        .collect();
    let text = text.join(" ");
    let text = text.strip_prefix("error: ").unwrap_or(&text);
    format!("{text} (see --help)")
}

fn plan(args: Args) -> Result<Plan, String> {
    if !(1..=MAX_CLIENTS).contains(&args.clients) {
        return Err(format!(
            "--clients must be 1 to {MAX_CLIENTS}, got {}",
            args.clients
        ));
    }
    if !(args.duration > 0.0 && args.duration <= MAX_DURATION) {
        return Err(format!(
            "--duration must be > 0 and <= {MAX_DURATION} seconds, got {}",
            args.duration
        ));
    }
    if !(args.ramp >= 0.0 && args.ramp <= MAX_RAMP) {
        return Err(format!(
            "--ramp must be 0 to {MAX_RAMP} seconds, got {}",
            args.ramp
        ));
    }
    if !(args.timeout > 0.0 && args.timeout <= MAX_TIMEOUT) {
        return Err(format!(
            "--timeout must be > 0 and <= {MAX_TIMEOUT} seconds, got {}",
            args.timeout
        ));
    }
    if args.retry_ms > 60_000 {
        return Err(format!(
            "--retry-ms must be at most 60000, got {}",
            args.retry_ms
        ));
    }
    if args.h2 && (args.url.len() > 1 || args.reconnect) {
        return Err("several --url and --reconnect need HTTP/1.1 (without --h2)".to_string());
    }
    let url = Url::parse(&args.url[0])?;
    let addr = url.resolve(args.allow_remote)?;
    let token = args.token.as_deref();
    if let Some(bad) = token.and_then(|t| t.chars().find(|c| !c.is_ascii_graphic())) {
        return Err(format!(
            "--token has a character a header cannot carry: {bad:?}"
        ));
    }
    let mut targets = Vec::new();
    for text in &args.url {
        let other = Url::parse(text)?;
        if other.tls != url.tls {
            return Err("every --url must be http:// or every one https://".to_string());
        }
        targets.push(conn::Target {
            addr: other.resolve(args.allow_remote)?,
            request: other.request(token),
        });
    }
    let all_urls = args.url.join(" ");
    if !(1..=1000).contains(&args.streams_per_conn) {
        return Err(format!(
            "--streams-per-conn must be 1 to 1000, got {}",
            args.streams_per_conn
        ));
    }
    let tls = if url.tls {
        let trust = match (&args.cacert, args.insecure) {
            (Some(path), _) => tls::Trust::File(path),
            (None, true) => tls::Trust::Anything,
            (None, false) => {
                return Err(format!(
                "--url {}: https needs --cacert PEM (the server's certificate or CA) or --insecure",
                args.url[0]
            ))
            }
        };
        let alpn: &[u8] = if args.h2 { b"h2" } else { b"http/1.1" };
        let config = tls::client_config(trust, alpn)?;
        Some((config, tls::server_name(&url.host)?))
    } else {
        if args.cacert.is_some() || args.insecure {
            return Err("--cacert and --insecure are for https:// URLs".to_string());
        }
        None
    };
    let h2 = match args.h2 {
        true => Some(h2::Pool::new(
            args.clients,
            args.streams_per_conn,
            url.uri()?,
            token,
        )),
        false => None,
    };
    let sources = target::source_ips(addr, args.clients, args.source_ips)?;
    let shared = Arc::new(Shared {
        target: addr,
        sources,
        targets,
        reconnect: args.reconnect.then(|| Duration::from_millis(args.retry_ms)),
        timeout: Duration::from_secs_f64(args.timeout),
        counters: Counters::default(),
        tls,
        h2,
    });
    Ok(Plan {
        all_urls,
        shared,
        clients: args.clients,
        ramp: Duration::from_secs_f64(args.ramp),
        duration: Duration::from_secs_f64(args.duration),
        json_only: args.json_only,
        quiet: args.quiet,
        max_failures: args.max_connect_failures,
    })
}

/// Raises the soft open-file limit to the hard one; refuses if `clients` cannot fit.
fn raise_fd_limit(clients: u64) -> Result<u64, String> {
    let limit = rlimit::increase_nofile_limit(u64::MAX)
        .map_err(|e| format!("cannot read or raise the open-file limit: {e}"))?;
    let need = clients + FD_RESERVE;
    if limit < need {
        return Err(format!(
            "--clients {clients} needs about {need} open files but the limit is {limit} (the hard limit); raise it (ulimit -Hn, LimitNOFILE) or use fewer clients"
        ));
    }
    Ok(limit)
}

/// Phases shown on the progress line.
const RAMP: u8 = 0;
const STEADY: u8 = 1;
const CLOSING: u8 = 2;

/// Runs the whole load; returns the report and whether Ctrl-C ended it.
async fn run(plan: Plan) -> (Report, bool) {
    let shared = plan.shared.clone();
    let counters = &shared.counters;
    let t0 = Instant::now();
    let phase = Arc::new(AtomicU8::new(RAMP));
    let tty = std::io::stderr().is_terminal();
    let progress =
        (!plan.quiet).then(|| tokio::spawn(progress(shared.clone(), phase.clone(), t0, tty)));
    let mut ctrl_c = pin!(tokio::signal::ctrl_c());
    let mut tasks = JoinSet::new();
    let mut ended_early: Option<String> = None;
    let mut interrupted = false;
    let too_many_failures = || {
        plan.max_failures
            .filter(|&max| counters.failed.load(Relaxed) > max)
            .map(|max| format!("more than {max} connections failed"))
    };

    // Ramp: connection i starts at t0 + ramp * i / clients.
    for i in 0..plan.clients {
        let at = t0 + plan.ramp.mul_f64(i as f64 / plan.clients as f64);
        if at > Instant::now() {
            tokio::select! {
                _ = tokio::time::sleep_until(at) => {}
                _ = &mut ctrl_c => {
                    interrupted = true;
                    break;
                }
            }
        }
        if let Some(why) = too_many_failures() {
            ended_early = Some(why);
            break;
        }
        tasks.spawn(conn::run(i as usize, shared.clone()));
        while tasks.try_join_next().is_some() {}
    }

    // Until the end of the ramp, then the steady window.
    let mut window = Duration::ZERO;
    if !interrupted && ended_early.is_none() {
        let result = watch(t0 + plan.ramp, &mut tasks, &mut ctrl_c, &too_many_failures).await;
        match result {
            Watch::Reached => {
                counters.measuring.store(true, Relaxed);
                phase.store(STEADY, Relaxed);
                let start = Instant::now();
                let result = watch(
                    start + plan.duration,
                    &mut tasks,
                    &mut ctrl_c,
                    &too_many_failures,
                )
                .await;
                counters.measuring.store(false, Relaxed);
                window = start.elapsed();
                match result {
                    Watch::Reached => {}
                    Watch::Interrupted => interrupted = true,
                    Watch::Ended(why) => ended_early = Some(why),
                }
            }
            Watch::Interrupted => interrupted = true,
            Watch::Ended(why) => ended_early = Some(why),
        }
    }
    if interrupted {
        ended_early = Some("interrupted".into());
    }

    // Close every connection.
    phase.store(CLOSING, Relaxed);
    tasks.abort_all();
    let _ = tokio::time::timeout(DRAIN, async { while tasks.join_next().await.is_some() {} }).await;
    // Only now: a stream still running would count its connection's end as a disconnect.
    if let Some(pool) = &shared.h2 {
        pool.close();
    }
    if let Some(p) = progress {
        p.abort();
        let _ = p.await;
        if tty && t0.elapsed() >= Duration::from_secs(1) {
            eprintln!(); // ends the line the progress kept rewriting
        }
    }
    if let Some(first) = stats::lock(&counters.first_failure).as_ref() {
        if !plan.quiet {
            eprintln!("tickcast-load: first failure: {first}");
        }
    }

    let merged = stats::merged();
    let (protocol, connections) = match &shared.h2 {
        Some(pool) => (
            format!("HTTP/2, {} streams per connection", pool.streams_per_conn()),
            pool.opened() as u64,
        ),
        None => ("HTTP/1.1".to_string(), counters.connected.load(Relaxed)),
    };
    let reconnect = Report::reconnect_from(&merged, counters.reconnect_max_us.load(Relaxed));
    let report = Report {
        reconnect,
        protocol,
        connections,
        url: plan.all_urls.clone(),
        clients: plan.clients,
        source_ips: shared.sources.len().max(1) as u32,
        connected: counters.connected.load(Relaxed),
        failed: counters.failed.load(Relaxed),
        failures: stats::lock(&counters.failures).clone(),
        disconnects: counters.disconnects.load(Relaxed),
        protocol_errors: counters.protocol_errors.load(Relaxed),
        ramp_s: plan.ramp.as_secs_f64(),
        duration_s: window.as_secs_f64(),
        events: counters.window_events.load(Relaxed),
        bytes: counters.window_bytes.load(Relaxed),
        events_total: counters.events.load(Relaxed),
        bytes_total: counters.bytes.load(Relaxed),
        latency: Report::latency_from(&merged),
        event_counts: merged.names,
        order_errors: counters.order_errors.load(Relaxed),
        reconnects: counters.reconnects.load(Relaxed),
        reconnect_snapshots: counters.reconnect_snapshots.load(Relaxed),
        reconnect_max_ms: counters.reconnect_max_us.load(Relaxed) as f64 / 1000.0,
        id_jumps: counters.id_jumps.load(Relaxed),
        run_time_s: t0.elapsed().as_secs_f64(),
        ended_early,
    };
    (report, interrupted)
}

enum Watch {
    Reached,
    Interrupted,
    Ended(String),
}

/// Waits until `deadline`, checking for Ctrl-C, too many failures, and every connection
/// having ended.
async fn watch(
    deadline: Instant,
    tasks: &mut JoinSet<()>,
    ctrl_c: &mut std::pin::Pin<&mut impl std::future::Future<Output = std::io::Result<()>>>,
    too_many_failures: &impl Fn() -> Option<String>,
) -> Watch {
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Watch::Reached;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(deadline.min(now + CHECK_EVERY)) => {}
            _ = ctrl_c.as_mut() => return Watch::Interrupted,
        }
        if let Some(why) = too_many_failures() {
            return Watch::Ended(why);
        }
        while tasks.try_join_next().is_some() {}
        if tasks.is_empty() {
            return Watch::Ended("every connection has ended".into());
        }
    }
}

/// Prints a status line on stderr every second: over itself on a terminal, one per line
/// otherwise.
async fn progress(shared: Arc<Shared>, phase: Arc<AtomicU8>, t0: Instant, tty: bool) {
    let c = &shared.counters;
    let mut tick = tokio::time::interval_at(t0 + Duration::from_secs(1), Duration::from_secs(1));
    let (mut last_t, mut last_events, mut last_bytes) = (t0, 0u64, 0u64);
    loop {
        let now = tick.tick().await;
        let (events, bytes) = (c.events.load(Relaxed), c.bytes.load(Relaxed));
        let dt = now.duration_since(last_t).as_secs_f64().max(1e-3);
        let ev_s = (events - last_events) as f64 / dt;
        let mb_s = (bytes - last_bytes) as f64 / dt / 1e6;
        (last_t, last_events, last_bytes) = (now, events, bytes);
        let p99 = stats::p99_so_far().map_or("-".to_string(), |us| {
            format!("{:.1} ms", us as f64 / 1000.0)
        });
        let label = match phase.load(Relaxed) {
            RAMP => "ramp",
            STEADY => "steady",
            _ => "closing",
        };
        let line = format!(
            "[{:>6.1}s {label:<7}] open {:>6}  failed {:>5}  events/s {:>11}  MB/s {:>7.1}  p99 {p99}",
            now.duration_since(t0).as_secs_f64(),
            c.open.load(Relaxed),
            c.failed.load(Relaxed),
            stats::group(ev_s.round() as u64),
            mb_s,
        );
        let mut err = std::io::stderr().lock();
        let _ = if tty {
            write!(err, "\r{line}\x1b[K")
        } else {
            writeln!(err, "{line}")
        };
        let _ = err.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Plan, String> {
        let mut argv = vec!["tickcast-load"];
        argv.extend_from_slice(args);
        plan(Args::try_parse_from(argv).map_err(|e| one_line(&e.render().to_string()))?)
    }

    #[test]
    fn validates_arguments() {
        let url = "http://127.0.0.1:3000/quotes";
        let p = parse(&["--url", url]).unwrap();
        assert_eq!(p.clients, 100);
        assert_eq!(p.duration, Duration::from_secs(10));
        assert_eq!(p.ramp, Duration::from_secs(2));
        assert!(parse(&["--url", url, "--clients", "0"])
            .unwrap_err()
            .contains("--clients"));
        assert!(parse(&["--url", url, "--clients", "50001"]).is_err());
        assert!(parse(&["--url", url, "--duration", "3601"]).is_err());
        assert!(parse(&["--url", url, "--duration", "0"]).is_err());
        assert!(parse(&["--url", url, "--ramp", "-1"]).is_err());
        let two = parse(&[
            "--url",
            url,
            "--url",
            "http://127.0.0.2:3001/quotes",
            "--reconnect",
        ]);
        let two = two.unwrap();
        assert_eq!(two.shared.targets.len(), 2);
        assert_eq!(two.shared.reconnect, Some(Duration::from_secs(1)));
        assert!(parse(&["--url", url, "--retry-ms", "60001"]).is_err());
        assert!(parse(&["--url", url, "--reconnect", "--h2"]).is_err());
        assert!(parse(&["--url", url, "--timeout", "0"]).is_err());
        assert!(parse(&["--url", "http://10.0.0.1:80/quotes"])
            .unwrap_err()
            .contains("refusing non-loopback"));
        assert!(parse(&["--url", "https://127.0.0.1/quotes"]).is_err());
        let missing = parse(&[]).unwrap_err();
        assert!(!missing.contains('\n'), "{missing}");
        assert!(missing.contains("--url"), "{missing}");
    }
}
