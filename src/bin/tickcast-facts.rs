//! `tickcast-facts`: measures the stylized facts of the quotes a tickcast server really serves.
//!
//! It reads the symbol table (`GET /symbols`: volatility, beta, sector), then one
//! `GET /quotes` stream over a raw HTTP/1.1 connection. Every symbol's last-trade price is
//! sampled on the 5-minute grid 09:30, 09:35, ..., 16:00 New York time of each regular session,
//! using each quote's `market_ts` (never its wall-clock `ts`). After `--days` complete sessions,
//! or `--max-seconds`, it runs [`tickcast::market::facts::compute`] on the grids, prints the
//! Markdown table of checks on stdout and writes the facts as JSON to `--out`.
//!
//! Sampling rules (see [`Sampler`]):
//! - a quote is a *trade* when its cumulative `volume` is non-zero and differs from the
//!   previous quote's (volume resets to 0 at the daily rollover); snapshot quotes never are;
//! - 09:30 is the first trade at or after 09:30:00.000 (the opening auction print); if it comes
//!   at or after 09:35 the symbol-day is skipped (late open);
//! - 09:35 ... 16:00 take the `price` of the last quote with `market_ts` at or before the grid
//!   instant, so 16:00 is the closing auction print at exactly 16:00:00.000;
//! - a symbol-day whose last quote at or before 16:00 has a halt or pause status is skipped;
//! - a session counts only if every symbol has a complete grid for it, because daily
//!   correlations pair symbols day by day; other sessions are dropped and counted.
//!
//! The stream must be in market-time order, as tickcast publishes it: a session is closed as
//! soon as any quote later than its 16:00:00.000 arrives.

// Shared with tickcast-load, which uses all of them; this tool needs only part.
#[allow(dead_code)]
#[path = "tickcast-load/http.rs"]
mod http;
#[allow(dead_code)]
#[path = "tickcast-load/target.rs"]
mod target;

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, ensure, Context};
use chrono::{DateTime, NaiveDate, TimeZone};
use chrono_tz::America::New_York;
use clap::Parser;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use tickcast::market::facts::{self, Facts, SymbolSeries, GRID_POINTS, INTERVALS_PER_DAY};

use http::{Body, Head};
use target::Url;

/// Milliseconds between grid instants.
const GRID_STEP_MS: i64 = 5 * 60 * 1000;
/// Limit on connecting and on reading a response head.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the progress line is printed.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// Bytes read from the socket at once.
const READ_BUF: usize = 64 * 1024;
/// Longest SSE line accepted (a snapshot of every quote is one `data:` line).
const MAX_LINE: usize = 16 * 1024 * 1024;
/// Pairs of index funds that track the same index; used when both are listed.
const ETF_PAIRS: [(&str, &str); 3] = [("SPY", "VOO"), ("SPY", "VTI"), ("VOO", "VTI")];

/// Measures the stylized facts of a tickcast server's quote stream: samples --days regular
/// sessions of every symbol on a 5-minute market-time grid, then prints a Markdown table of
/// checks and writes the statistics as JSON.
#[derive(Debug, Parser)]
#[command(name = "tickcast-facts", version)]
struct Args {
    /// Base URL of the server, e.g. http://127.0.0.1:3000 (http:// only).
    #[arg(long)]
    url: String,

    /// Complete trading days to capture (at least 2: daily returns need two closes).
    #[arg(long, default_value_t = 250)]
    days: usize,

    /// Path of the symbol table, appended to --url.
    #[arg(long, default_value = "/symbols")]
    symbols_url_path: String,

    /// Where to write the JSON report.
    #[arg(long, default_value = "target/market-facts.json")]
    out: PathBuf,

    /// Stop after this many seconds of wall time and report on the days captured so far.
    #[arg(long, default_value_t = 1800.0)]
    max_seconds: f64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tickcast-facts: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tickcast-facts: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    ensure!(
        args.days >= 2,
        "--days must be at least 2, got {}",
        args.days
    );
    ensure!(
        args.max_seconds.is_finite() && args.max_seconds > 0.0,
        "--max-seconds must be positive, got {}",
        args.max_seconds
    );
    ensure!(
        args.symbols_url_path.starts_with('/'),
        "--symbols-url-path must start with '/', got {:?}",
        args.symbols_url_path
    );
    let url = Url::parse(&args.url).map_err(anyhow::Error::msg)?;
    let addr = url.resolve(true).map_err(anyhow::Error::msg)?;
    let base = url.path.trim_end_matches('/').to_string();

    let table = fetch_symbols(&url, addr, &format!("{base}{}", args.symbols_url_path)).await?;
    if table.iter().all(|s| s.sector.is_none()) {
        eprintln!(
            "tickcast-facts: warning: the symbol table has no sectors; implied correlations use the market factor only"
        );
    }
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(args.max_seconds);
    let mut capture = Capture::new(&table);
    let stop = stream_quotes(
        &url,
        addr,
        &format!("{base}/quotes"),
        &mut capture,
        args.days,
        deadline,
    )
    .await?;
    let seconds = started.elapsed().as_secs_f64();
    let sampler = &capture.sampler;
    match stop {
        Stop::Days => {}
        Stop::Deadline => eprintln!(
            "tickcast-facts: stopped after --max-seconds {} with {} of {} days; the statistics use what was captured",
            args.max_seconds, sampler.days_captured, args.days
        ),
        Stop::StreamEnded => eprintln!(
            "tickcast-facts: the server ended the stream after {} of {} days; the statistics use what was captured",
            sampler.days_captured, args.days
        ),
    }

    let facts = measure(&table, &sampler.series());
    let report = Report {
        command_line: std::env::args().collect(),
        url: &args.url,
        days_requested: args.days,
        stopped_by: stop.as_str(),
        seconds,
        quotes: capture.quotes,
        quotes_missed: capture.quotes_missed,
        unknown_symbol_quotes: capture.unknown_symbol_quotes,
        sampling: sampler.counts(),
        symbols: table.iter().map(|s| s.symbol.as_str()).collect(),
        etf_pairs: etf_pairs(&table)
            .into_iter()
            .map(|(a, b)| (table[a].symbol.as_str(), table[b].symbol.as_str()))
            .collect(),
        checks: facts.checks(),
        facts: &facts,
    };
    print!("{}", facts.markdown_table());
    write_report(&args.out, &report)?;
    eprintln!("tickcast-facts: wrote {}", args.out.display());
    ensure!(
        sampler.days_captured >= 2,
        "only {} complete trading days captured; daily statistics need at least 2",
        sampler.days_captured
    );
    Ok(())
}

/// Why the capture stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Days,
    Deadline,
    StreamEnded,
}

impl Stop {
    fn as_str(self) -> &'static str {
        match self {
            Stop::Days => "days",
            Stop::Deadline => "max-seconds",
            Stop::StreamEnded => "stream-ended",
        }
    }
}

/// The JSON written to `--out`.
#[derive(Debug, Serialize)]
struct Report<'a> {
    command_line: Vec<String>,
    url: &'a str,
    days_requested: usize,
    /// `days`, `max-seconds` or `stream-ended`.
    stopped_by: &'static str,
    seconds: f64,
    quotes: u64,
    /// Sum of the gaps in `seq`: quotes the server conflated away because the reader fell behind.
    quotes_missed: u64,
    unknown_symbol_quotes: u64,
    sampling: SamplingCounts,
    symbols: Vec<&'a str>,
    etf_pairs: Vec<(&'a str, &'a str)>,
    checks: Vec<facts::Check>,
    facts: &'a Facts,
}

fn write_report(path: &Path, report: &Report<'_>) -> anyhow::Result<()> {
    let json = serde_json::to_vec_pretty(report).context("encoding the report")?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))
}

// === the symbol table ===

/// One row of `GET /symbols`; other fields are ignored.
#[derive(Debug, Clone, Deserialize)]
struct SymbolRow {
    symbol: String,
    /// Annualised volatility, a fraction.
    volatility: f64,
    beta: f64,
    #[serde(default)]
    sector: Option<String>,
}

/// Runs [`facts::compute`] with the table's volatilities, implied correlations and ETF pairs.
fn measure(table: &[SymbolRow], series: &[SymbolSeries]) -> Facts {
    let csv_vol: Vec<f64> = table.iter().map(|s| s.volatility).collect();
    let loadings = |i: usize| {
        let s = &table[i];
        (s.volatility, s.beta, s.sector.as_deref().unwrap_or(""))
    };
    let implied = |i: usize, j: usize| facts::implied_correlation(loadings(i), loadings(j));
    facts::compute(series, &csv_vol, &implied, &etf_pairs(table))
}

/// Indices of the [`ETF_PAIRS`] present in the table.
fn etf_pairs(table: &[SymbolRow]) -> Vec<(usize, usize)> {
    let index = |name: &str| table.iter().position(|s| s.symbol == name);
    ETF_PAIRS
        .iter()
        .filter_map(|&(a, b)| Some((index(a)?, index(b)?)))
        .collect()
}

// === HTTP ===

/// Connects, sends a GET for `path`, and reads the response head: returns the stream, the head
/// and the body bytes that came with it.
async fn get(
    url: &Url,
    addr: SocketAddr,
    path: &str,
    accept: &str,
) -> anyhow::Result<(TcpStream, Head, Vec<u8>)> {
    let mut stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| anyhow::anyhow!("cannot connect to {addr}: timed out"))?
        .with_context(|| format!("cannot connect to {addr}"))?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nAccept: {accept}\r\nCache-Control: no-cache\r\nUser-Agent: tickcast-facts/{}\r\n\r\n",
        url.authority,
        env!("CARGO_PKG_VERSION")
    );
    stream
        .write_all(request.as_bytes())
        .await
        .with_context(|| format!("sending GET {path}"))?;
    let mut buf = Vec::with_capacity(READ_BUF);
    let read_head = async {
        loop {
            if let Some(n) = http::head_len(&buf) {
                return Ok(n);
            }
            ensure!(
                buf.len() <= http::MAX_HEAD,
                "GET {path}: response head too long"
            );
            let mut chunk = [0u8; 4096];
            let n = stream
                .read(&mut chunk)
                .await
                .with_context(|| format!("GET {path}: reading the response"))?;
            ensure!(n > 0, "GET {path}: connection closed before a response");
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    let head_len = tokio::time::timeout(CONNECT_TIMEOUT, read_head)
        .await
        .map_err(|_| anyhow::anyhow!("GET {path}: no response within {CONNECT_TIMEOUT:?}"))??;
    let head = http::parse_head(&buf[..head_len]).with_context(|| format!("GET {path}"))?;
    ensure!(
        head.status == 200,
        "GET {path} answered HTTP {} (expected 200)",
        head.status
    );
    Ok((stream, head, buf.split_off(head_len)))
}

/// `GET path` of the symbol table.
async fn fetch_symbols(url: &Url, addr: SocketAddr, path: &str) -> anyhow::Result<Vec<SymbolRow>> {
    let (mut stream, head, first) = get(url, addr, path, "application/json").await?;
    let mut body = Body::new(head.framing);
    let mut json = Vec::new();
    let mut input = first;
    loop {
        let done = body
            .decode(&input, &mut |s| json.extend_from_slice(s))
            .with_context(|| format!("GET {path}: bad body"))?;
        if done {
            break;
        }
        input.resize(READ_BUF, 0);
        let n = tokio::time::timeout(CONNECT_TIMEOUT, stream.read(&mut input))
            .await
            .map_err(|_| {
                anyhow::anyhow!("GET {path}: body not complete within {CONNECT_TIMEOUT:?}")
            })?
            .with_context(|| format!("GET {path}: reading the body"))?;
        if n == 0 {
            ensure!(
                matches!(body, Body::UntilEof),
                "GET {path}: connection closed inside the body"
            );
            break;
        }
        input.truncate(n);
    }
    let table: Vec<SymbolRow> = serde_json::from_slice(&json)
        .with_context(|| format!("GET {path}: not a JSON array of symbols"))?;
    ensure!(!table.is_empty(), "GET {path}: the symbol table is empty");
    Ok(table)
}

/// Reads `GET path` (the quote stream) into `capture` until `days` sessions are captured, the
/// deadline passes or the server ends the stream.
async fn stream_quotes(
    url: &Url,
    addr: SocketAddr,
    path: &str,
    capture: &mut Capture,
    days: usize,
    deadline: Instant,
) -> anyhow::Result<Stop> {
    let (mut stream, head, first) = get(url, addr, path, "text/event-stream").await?;
    ensure!(
        head.event_stream,
        "GET {path}: the response is not text/event-stream"
    );
    capture.start(head);
    let mut ended = capture.feed(&first)?;
    let mut buf = vec![0u8; READ_BUF];
    let mut progress = Progress::new();
    loop {
        if capture.sampler.days_captured >= days {
            return Ok(Stop::Days);
        }
        if ended {
            return Ok(Stop::StreamEnded);
        }
        let wake = deadline.min(progress.next);
        match tokio::time::timeout_at(wake, stream.read(&mut buf)).await {
            Ok(read) => {
                let n = read.with_context(|| format!("GET {path}: reading the stream"))?;
                ended = n == 0 || capture.feed(&buf[..n])?;
            }
            Err(_) if Instant::now() >= deadline => return Ok(Stop::Deadline),
            Err(_) => {}
        }
        progress.maybe_print(capture);
    }
}

/// The progress line on stderr.
#[derive(Debug)]
struct Progress {
    next: Instant,
    last: Instant,
    last_quotes: u64,
}

impl Progress {
    fn new() -> Progress {
        let now = Instant::now();
        Progress {
            next: now + PROGRESS_EVERY,
            last: now,
            last_quotes: 0,
        }
    }

    fn maybe_print(&mut self, capture: &Capture) {
        let now = Instant::now();
        if now < self.next {
            return;
        }
        let rate = (capture.quotes - self.last_quotes) as f64 / (now - self.last).as_secs_f64();
        let market = capture
            .sampler
            .market_ts
            .and_then(DateTime::from_timestamp_millis)
            .map(|t| {
                t.with_timezone(&New_York)
                    .format("%Y-%m-%d %H:%M ET")
                    .to_string()
            })
            .unwrap_or_else(|| "-".to_string());
        eprintln!(
            "tickcast-facts: {} days captured ({} dropped), {:.0} quotes/s, market time {market}",
            capture.sampler.days_captured, capture.sampler.sessions_dropped, rate
        );
        self.next = now + PROGRESS_EVERY;
        self.last = now;
        self.last_quotes = capture.quotes;
    }
}

// === decoding the stream ===

/// One quote as served; other fields are ignored. Prices are JSON strings.
#[derive(Debug, Deserialize)]
struct WireQuote<'a> {
    #[serde(borrow)]
    symbol: Cow<'a, str>,
    #[serde(default)]
    seq: Option<u64>,
    /// Market time, epoch ms; optional here only to name it in the error when it is missing.
    #[serde(default)]
    market_ts: Option<i64>,
    /// Last trade price.
    #[serde(borrow)]
    price: Cow<'a, str>,
    /// Shares traded since the daily rollover.
    volume: u64,
    #[serde(borrow, default)]
    status: Option<Cow<'a, str>>,
}

/// Turns one quote into a [`Tick`], or `None` for a symbol not in the table.
fn to_tick(q: &WireQuote<'_>, index: &HashMap<String, usize>) -> anyhow::Result<Option<Tick>> {
    let Some(&symbol) = index.get(q.symbol.as_ref()) else {
        return Ok(None);
    };
    let Some(market_ts) = q.market_ts else {
        bail!(
            "quote for {} has no market_ts (the server predates market time)",
            q.symbol
        );
    };
    let price: f64 = q
        .price
        .parse()
        .ok()
        .filter(|p: &f64| *p > 0.0 && p.is_finite())
        .with_context(|| format!("quote for {} has a bad price {:?}", q.symbol, q.price))?;
    let halted = q.status.as_deref().is_some_and(is_halt_status);
    Ok(Some(Tick {
        symbol,
        market_ts,
        log_price: price.ln(),
        volume: q.volume,
        halted,
    }))
}

/// Whether a quote `status` means trading is stopped: it names a halt or a pause.
fn is_halt_status(status: &str) -> bool {
    let s = status.to_ascii_lowercase();
    s.contains("halt") || s.contains("pause")
}

/// The whole response body after the head: chunked decoding, SSE framing, quote JSON, sampling.
#[derive(Debug)]
struct Capture {
    body: Body,
    sse: SseDecoder,
    index: HashMap<String, usize>,
    sampler: Sampler,
    quotes: u64,
    unknown_symbol_quotes: u64,
    quotes_missed: u64,
    last_seq: Option<u64>,
}

impl Capture {
    fn new(table: &[SymbolRow]) -> Capture {
        Capture {
            body: Body::new(http::Framing::UntilEof),
            sse: SseDecoder::default(),
            index: table
                .iter()
                .enumerate()
                .map(|(i, s)| (s.symbol.clone(), i))
                .collect(),
            sampler: Sampler::new(table.len()),
            quotes: 0,
            unknown_symbol_quotes: 0,
            quotes_missed: 0,
            last_seq: None,
        }
    }

    /// Sets the body framing from the response head.
    fn start(&mut self, head: Head) {
        self.body = Body::new(head.framing);
    }

    /// Decodes body bytes; returns `true` once the body has ended.
    fn feed(&mut self, input: &[u8]) -> anyhow::Result<bool> {
        let mut text = Vec::new();
        let ended = self
            .body
            .decode(input, &mut |s| text.extend_from_slice(s))
            .context("bad chunked encoding in the stream")?;
        let mut sse = std::mem::take(&mut self.sse);
        let result = sse.feed(&text, &mut |name, data| self.event(name, data));
        self.sse = sse;
        result?;
        Ok(ended)
    }

    fn event(&mut self, name: &str, data: &[u8]) -> anyhow::Result<()> {
        match name {
            "snapshot" => {
                let quotes: Vec<WireQuote<'_>> =
                    serde_json::from_slice(data).context("malformed snapshot JSON")?;
                for q in &quotes {
                    self.quote(q, true)?;
                }
            }
            "quote" => {
                let q: WireQuote<'_> = serde_json::from_slice(data).with_context(|| {
                    format!("malformed quote JSON: {}", String::from_utf8_lossy(data))
                })?;
                self.quote(&q, false)?;
            }
            _ => {}
        }
        Ok(())
    }

    fn quote(&mut self, q: &WireQuote<'_>, from_snapshot: bool) -> anyhow::Result<()> {
        if !from_snapshot {
            self.quotes += 1;
            if let Some(seq) = q.seq {
                if let Some(last) = self.last_seq {
                    self.quotes_missed += seq.saturating_sub(last + 1);
                }
                self.last_seq = Some(seq);
            }
        }
        match to_tick(q, &self.index)? {
            Some(tick) => self.sampler.quote(tick, from_snapshot),
            None => self.unknown_symbol_quotes += 1,
        }
        Ok(())
    }
}

/// Incremental Server-Sent-Events decoding: lines end with LF or CRLF; an event is dispatched
/// at a blank line if it had `data:`, with its `event:` name (`message` when absent) and its
/// data lines joined by LF.
#[derive(Debug, Default)]
struct SseDecoder {
    /// Start of a line cut by the end of the previous input.
    carry: Vec<u8>,
    name: String,
    data: Vec<u8>,
    has_data: bool,
}

impl SseDecoder {
    fn feed(
        &mut self,
        mut input: &[u8],
        on_event: &mut impl FnMut(&str, &[u8]) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        while let Some(end) = memchr::memchr(b'\n', input) {
            if self.carry.is_empty() {
                self.line(&input[..end], on_event)?;
            } else {
                let mut line = std::mem::take(&mut self.carry);
                line.extend_from_slice(&input[..end]);
                self.line(&line, on_event)?;
                line.clear();
                self.carry = line;
            }
            input = &input[end + 1..];
        }
        ensure!(
            self.carry.len() + input.len() <= MAX_LINE,
            "an SSE line is longer than {MAX_LINE} bytes"
        );
        self.carry.extend_from_slice(input);
        Ok(())
    }

    fn line(
        &mut self,
        line: &[u8],
        on_event: &mut impl FnMut(&str, &[u8]) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            if self.has_data {
                let name = if self.name.is_empty() {
                    "message"
                } else {
                    &self.name
                };
                on_event(name, &self.data)?;
            }
            self.name.clear();
            self.data.clear();
            self.has_data = false;
            return Ok(());
        }
        if line[0] == b':' {
            return Ok(()); // comment
        }
        let (field, value) = tickcast::sse::split_field(line);
        match field {
            b"data" => {
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(value);
                self.has_data = true;
            }
            b"event" => self.name = String::from_utf8_lossy(value).into_owned(),
            _ => {}
        }
        Ok(())
    }
}

// === sampling on the market-time grid ===

/// What the sampler needs from one quote.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Tick {
    /// Index into the symbol table.
    symbol: usize,
    /// Market time, epoch ms.
    market_ts: i64,
    /// Natural log of the last trade price.
    log_price: f64,
    /// Cumulative volume since the daily rollover.
    volume: u64,
    /// The status says trading is halted or paused.
    halted: bool,
}

/// The previous quote of a symbol.
#[derive(Debug, Clone, Copy)]
struct LastQuote {
    market_ts: i64,
    log_price: f64,
    volume: u64,
    halted: bool,
    trade: bool,
}

/// One symbol's grid for one New York date.
#[derive(Debug, Clone)]
struct DayGrid {
    date: NaiveDate,
    /// Epoch ms of 09:30 New York time on `date`.
    open_ms: i64,
    grid: [f64; GRID_POINTS],
    /// Next grid index to fill: 0 while waiting for the opening print, `GRID_POINTS` when full.
    next: usize,
    /// The first trade came at or after 09:35: this symbol-day is skipped.
    late_open: bool,
    /// The last quote at or before 16:00 had a halt or pause status.
    halted_at_close: bool,
    /// The 16:00 value is a trade at exactly 16:00:00.000.
    closing_print: bool,
}

impl DayGrid {
    fn new(date: NaiveDate) -> DayGrid {
        DayGrid {
            date,
            open_ms: open_ms(date),
            grid: [f64::NAN; GRID_POINTS],
            next: 0,
            late_open: false,
            halted_at_close: false,
            closing_print: false,
        }
    }

    /// Epoch ms of grid point `k`. The session never spans a daylight-saving change (those
    /// happen at 02:00), so the points are evenly spaced in epoch time.
    fn time(&self, k: usize) -> i64 {
        self.open_ms + k as i64 * GRID_STEP_MS
    }

    fn close_ms(&self) -> i64 {
        self.time(INTERVALS_PER_DAY)
    }

    /// Fills the grid points strictly before `t` with `last`, the latest quote before `t`.
    fn fill_before(&mut self, last: &LastQuote, t: i64) {
        while self.next > 0 && self.next < GRID_POINTS && self.time(self.next) < t {
            self.grid[self.next] = last.log_price;
            if self.next == INTERVALS_PER_DAY {
                self.halted_at_close = last.halted;
                self.closing_print = last.trade && last.market_ts == self.close_ms();
            }
            self.next += 1;
        }
    }
}

/// Epoch ms of 09:30 New York time on `date`.
fn open_ms(date: NaiveDate) -> i64 {
    let local = date
        .and_hms_opt(9, 30, 0)
        .expect("09:30:00 is a valid time of day");
    New_York
        .from_local_datetime(&local)
        .single()
        .expect("09:30 is never skipped or repeated by New York's daylight-saving changes")
        .timestamp_millis()
}

/// The New York date of an epoch-ms instant.
fn ny_date(market_ts: i64) -> NaiveDate {
    DateTime::from_timestamp_millis(market_ts)
        .unwrap_or_default()
        .with_timezone(&New_York)
        .date_naive()
}

#[derive(Debug, Default)]
struct SymbolState {
    last: Option<LastQuote>,
    day: Option<DayGrid>,
}

/// Counts of what the sampler saw and skipped, for the report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
struct SamplingCounts {
    /// Sessions in which every symbol has a complete grid.
    days_captured: usize,
    /// Sessions left out because some symbol's grid was incomplete.
    sessions_dropped: usize,
    /// Symbol-days without a trade between 09:30 and 16:00.
    symbol_days_without_open: usize,
    /// Symbol-days whose first trade came at or after 09:35.
    symbol_days_late_open: usize,
    /// Symbol-days halted or paused across 16:00.
    symbol_days_halted_at_close: usize,
    /// Complete symbol-days whose 16:00 value is not a trade at exactly 16:00:00.000.
    symbol_days_without_closing_print: usize,
    /// Quotes older than the symbol's previous quote, ignored.
    out_of_order_quotes: u64,
}

/// Samples every symbol's last-trade log price on the 5-minute grid of each regular session.
#[derive(Debug)]
struct Sampler {
    states: Vec<SymbolState>,
    /// The session being sampled (its date and 16:00 in epoch ms), from the first opening print.
    session: Option<(NaiveDate, i64)>,
    /// Complete days per symbol, only for sessions complete for every symbol.
    days: Vec<Vec<[f64; GRID_POINTS]>>,
    /// Latest market time seen.
    market_ts: Option<i64>,
    days_captured: usize,
    sessions_dropped: usize,
    without_open: usize,
    late_open: usize,
    halted_at_close: usize,
    without_closing_print: usize,
    out_of_order: u64,
}

impl Sampler {
    fn new(symbols: usize) -> Sampler {
        Sampler {
            states: (0..symbols).map(|_| SymbolState::default()).collect(),
            session: None,
            days: vec![Vec::new(); symbols],
            market_ts: None,
            days_captured: 0,
            sessions_dropped: 0,
            without_open: 0,
            late_open: 0,
            halted_at_close: 0,
            without_closing_print: 0,
            out_of_order: 0,
        }
    }

    /// Takes one quote. Snapshot quotes set the state but are never trades: the volume they
    /// carry has no predecessor to compare with.
    fn quote(&mut self, tick: Tick, from_snapshot: bool) {
        let t = tick.market_ts;
        self.market_ts = Some(self.market_ts.map_or(t, |m| m.max(t)));
        if let Some((date, close)) = self.session {
            if t > close {
                self.close_session(date);
            }
        }
        let state = &mut self.states[tick.symbol];
        if state.last.is_some_and(|last| t < last.market_ts) {
            self.out_of_order += 1;
            return;
        }
        let trade = !from_snapshot
            && state
                .last
                .is_some_and(|last| tick.volume > 0 && tick.volume != last.volume);
        if let (Some(day), Some(last)) = (&mut state.day, &state.last) {
            day.fill_before(last, t);
        }
        let date = ny_date(t);
        let day = match &mut state.day {
            Some(day) if day.date == date => day,
            slot => slot.insert(DayGrid::new(date)),
        };
        if day.next == 0 && !day.late_open && trade && t >= day.open_ms && t <= day.close_ms() {
            if t < day.time(1) {
                day.grid[0] = tick.log_price;
                day.next = 1;
                if self.session.is_none() {
                    self.session = Some((date, day.close_ms()));
                }
            } else {
                day.late_open = true;
            }
        }
        state.last = Some(LastQuote {
            market_ts: t,
            log_price: tick.log_price,
            volume: tick.volume,
            halted: tick.halted,
            trade,
        });
    }

    /// Completes every symbol's grid for `date` and keeps the session if all are complete.
    fn close_session(&mut self, date: NaiveDate) {
        let mut grids = Vec::with_capacity(self.states.len());
        for state in &mut self.states {
            let Some(day) = state.day.as_mut().filter(|d| d.date == date) else {
                self.without_open += 1;
                continue;
            };
            if day.next == 0 {
                if day.late_open {
                    self.late_open += 1;
                } else {
                    self.without_open += 1;
                }
                continue;
            }
            if let Some(last) = &state.last {
                day.fill_before(last, i64::MAX);
            }
            if day.halted_at_close {
                self.halted_at_close += 1;
                continue;
            }
            if !day.closing_print {
                self.without_closing_print += 1;
            }
            grids.push(day.grid);
        }
        if grids.len() == self.states.len() {
            for (days, grid) in self.days.iter_mut().zip(grids) {
                days.push(grid);
            }
            self.days_captured += 1;
        } else {
            self.sessions_dropped += 1;
        }
        self.session = None;
    }

    /// The captured days as [`SymbolSeries`], one per symbol.
    fn series(&self) -> Vec<SymbolSeries> {
        self.days
            .iter()
            .enumerate()
            .map(|(symbol, days)| SymbolSeries {
                symbol,
                days: days.clone(),
            })
            .collect()
    }

    fn counts(&self) -> SamplingCounts {
        SamplingCounts {
            days_captured: self.days_captured,
            sessions_dropped: self.sessions_dropped,
            symbol_days_without_open: self.without_open,
            symbol_days_late_open: self.late_open,
            symbol_days_halted_at_close: self.halted_at_close,
            symbol_days_without_closing_print: self.without_closing_print,
            out_of_order_quotes: self.out_of_order,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Epoch ms of a New York local time.
    fn ny(date: &str, time: &str) -> i64 {
        let date: NaiveDate = date.parse().unwrap();
        let (h, rest) = time.split_once(':').unwrap();
        let (m, s) = rest.split_once(':').unwrap_or((rest, "0"));
        let (s, ms) = s.split_once('.').unwrap_or((s, "0"));
        let local = date
            .and_hms_milli_opt(
                h.parse().unwrap(),
                m.parse().unwrap(),
                s.parse().unwrap(),
                ms.parse().unwrap(),
            )
            .unwrap();
        New_York
            .from_local_datetime(&local)
            .single()
            .unwrap()
            .timestamp_millis()
    }

    fn tick(symbol: usize, at: i64, price: f64, volume: u64) -> Tick {
        Tick {
            symbol,
            market_ts: at,
            log_price: price.ln(),
            volume,
            halted: false,
        }
    }

    /// Feeds `ticks` (not from a snapshot) to `sampler`.
    fn feed(sampler: &mut Sampler, ticks: &[Tick]) {
        for &t in ticks {
            sampler.quote(t, false);
        }
    }

    /// A plain session for `symbol`: rollover, opening print at `open`, then a trade every
    /// 5 minutes at 09:32:30, 09:37:30, ... rising by 1, and the closing print `close` at 16:00.
    fn plain_day(symbol: usize, date: &str, open: f64, close: f64) -> Vec<Tick> {
        let mut ticks = vec![
            tick(symbol, ny(date, "04:00"), open - 1.0, 0),
            tick(symbol, ny(date, "09:30:00.000"), open, 100),
        ];
        let mut volume = 100;
        for k in 0..77 {
            volume += 10;
            let at = ny(date, "09:32:30") + k * GRID_STEP_MS;
            ticks.push(tick(symbol, at, open + 1.0 + k as f64, volume));
        }
        ticks.push(tick(symbol, ny(date, "16:00:00.000"), close, volume + 500));
        ticks
    }

    /// Interleaves per-symbol tick lists by market time, as the server's stream is ordered.
    fn merged(lists: Vec<Vec<Tick>>) -> Vec<Tick> {
        let mut all: Vec<Tick> = lists.into_iter().flatten().collect();
        all.sort_by_key(|t| t.market_ts);
        all
    }

    #[test]
    fn grid_instants_follow_new_york_time() {
        let winter: NaiveDate = "2024-01-02".parse().unwrap();
        let summer: NaiveDate = "2024-07-01".parse().unwrap();
        // 09:30 EST = 14:30 UTC, 09:30 EDT = 13:30 UTC.
        assert_eq!(open_ms(winter), 1_704_205_800_000);
        assert_eq!(open_ms(summer), 1_719_840_600_000);
        assert_eq!(ny_date(open_ms(summer)), summer);
        // 20:00 EDT is already the next day in UTC but still July 1st in New York.
        assert_eq!(ny_date(ny("2024-07-01", "20:00")), summer);
        let day = DayGrid::new(summer);
        assert_eq!(day.close_ms() - day.open_ms, 390 * 60 * 1000);
    }

    #[test]
    fn grid_takes_the_last_trade_at_or_before_each_instant() {
        let d = "2024-07-01";
        let mut s = Sampler::new(2);
        // Yesterday's state from the snapshot: never a trade.
        s.quote(tick(0, ny("2024-06-28", "15:59"), 99.0, 5_000), true);
        s.quote(tick(1, ny("2024-06-28", "15:59"), 49.0, 7_000), true);
        feed(
            &mut s,
            &[
                tick(0, ny(d, "04:00"), 99.0, 0),
                // A pre-market trade is not the opening print.
                tick(0, ny(d, "08:00"), 101.0, 100),
                // A quote at 09:30 without a trade (volume unchanged) is not either.
                tick(0, ny(d, "09:30:00.000"), 101.0, 100),
                tick(0, ny(d, "09:30:00.000"), 102.0, 600),
                tick(1, ny(d, "09:30:00.000"), 50.0, 300),
                tick(0, ny(d, "09:32"), 103.0, 700),
                tick(0, ny(d, "09:35:00.000"), 104.0, 800),
                tick(0, ny(d, "09:35:00.001"), 105.0, 900),
                tick(1, ny(d, "12:00:00.000"), 51.0, 400),
                tick(1, ny(d, "12:00:00.001"), 51.5, 400),
                tick(0, ny(d, "16:00:00.000"), 110.0, 2_000),
                tick(1, ny(d, "16:00:00.000"), 52.0, 900),
                // A later quote stamped 16:00:00.000 still counts; one after it does not.
                tick(1, ny(d, "16:00:00.000"), 52.5, 900),
            ],
        );
        assert_eq!(
            s.days_captured, 0,
            "the close is not final before a later quote"
        );
        feed(&mut s, &[tick(0, ny(d, "16:05"), 111.0, 2_100)]);
        assert_eq!(s.days_captured, 1);
        let series = s.series();
        let a = &series[0].days[0];
        let b = &series[1].days[0];
        assert_eq!(a[0], 102f64.ln());
        assert_eq!(a[1], 104f64.ln());
        assert!(a[2..78].iter().all(|&v| v == 105f64.ln()));
        assert_eq!(a[78], 110f64.ln());
        assert_eq!(b[0], 50f64.ln());
        assert_eq!(b[29], 50f64.ln()); // 11:55
        assert_eq!(b[30], 51f64.ln()); // 12:00
        assert_eq!(b[31], 51.5f64.ln()); // 12:05
        assert_eq!(b[78], 52.5f64.ln());
        let counts = s.counts();
        assert_eq!(counts.symbol_days_without_closing_print, 1); // B's last quote is no trade
        assert_eq!(counts.sessions_dropped, 0);
    }

    #[test]
    fn sessions_complete_for_every_symbol_are_kept() {
        let mut s = Sampler::new(2);
        let mut ticks = Vec::new();
        for (i, d) in ["2024-07-01", "2024-07-02", "2024-07-03"]
            .iter()
            .enumerate()
        {
            let open = 100.0 + i as f64;
            ticks.extend(merged(vec![
                plain_day(0, d, open, open + 90.0),
                plain_day(1, d, open + 10.0, open + 5.0),
            ]));
        }
        feed(&mut s, &ticks);
        // The third session closes only when a later quote arrives.
        assert_eq!(s.days_captured, 2);
        feed(&mut s, &[tick(1, ny("2024-07-05", "04:00"), 1.0, 0)]);
        assert_eq!(s.days_captured, 3);
        let series = s.series();
        assert_eq!(series[0].days.len(), 3);
        let day = &series[0].days[1];
        assert_eq!(day[0], 101f64.ln());
        // 09:35 sees the 09:32:30 trade (open + 1), 15:55 the 15:52:30 one (open + 77).
        assert_eq!(day[1], 102f64.ln());
        assert_eq!(day[77], 178f64.ln());
        assert_eq!(day[78], 191f64.ln());
        let counts = s.counts();
        assert_eq!(counts.symbol_days_without_closing_print, 0);
        assert_eq!(counts.sessions_dropped, 0);
    }

    #[test]
    fn halted_and_late_symbol_days_drop_the_session() {
        let d1 = "2024-07-01";
        let d2 = "2024-07-02";
        let d3 = "2024-07-03";
        let mut halted = plain_day(0, d1, 100.0, 101.0);
        // Halted from 15:58 through the close: the closing print never comes.
        halted.retain(|t| t.market_ts < ny(d1, "15:58"));
        halted.push(Tick {
            halted: true,
            ..tick(0, ny(d1, "15:58"), 99.0, 10_000)
        });
        let mut late = plain_day(1, d2, 50.0, 51.0);
        late.retain(|t| t.market_ts < ny(d2, "09:30") || t.market_ts > ny(d2, "09:40"));
        let mut s = Sampler::new(2);
        feed(
            &mut s,
            &merged(vec![
                halted,
                plain_day(1, d1, 50.0, 51.0),
                plain_day(0, d2, 100.0, 101.0),
                late,
                plain_day(0, d3, 100.0, 101.0),
                plain_day(1, d3, 50.0, 51.0),
                vec![tick(0, ny(d3, "17:00"), 101.0, 1)],
            ]),
        );
        let counts = s.counts();
        assert_eq!(counts.days_captured, 1);
        assert_eq!(counts.sessions_dropped, 2);
        assert_eq!(counts.symbol_days_halted_at_close, 1);
        assert_eq!(counts.symbol_days_late_open, 1);
        assert_eq!(s.series()[1].days.len(), 1);
    }

    #[test]
    fn out_of_order_quotes_are_ignored() {
        let d = "2024-07-01";
        let mut s = Sampler::new(1);
        feed(
            &mut s,
            &[
                tick(0, ny(d, "04:00"), 10.0, 0),
                tick(0, ny(d, "09:30"), 11.0, 5),
                tick(0, ny(d, "09:31"), 12.0, 6),
                tick(0, ny(d, "09:20"), 99.0, 7),
            ],
        );
        assert_eq!(s.counts().out_of_order_quotes, 1);
    }

    const QUOTE: &str = r#"{"symbol":"AAPL","seq":123,"ts":1700000000000,"market_ts":1719840600000,"status":"trading","price":"187.23","bid":"187.22","ask":"187.24","bid_size":300,"ask_size":200,"last_size":100,"volume":12345,"open":"187.00","high":"188.00","low":"186.00","prev_close":"186.50","change":"0.73","change_pct":"0.39"}"#;

    fn table() -> Vec<SymbolRow> {
        serde_json::from_str(
            r#"[{"symbol":"AAPL","name":"Apple","volatility":0.26,"beta":1.2,"sector":"Technology"},
                {"symbol":"SPY","volatility":0.15,"beta":1.0,"sector":"Index"},
                {"symbol":"VTI","volatility":0.15,"beta":1.02,"sector":"Index"}]"#,
        )
        .unwrap()
    }

    #[test]
    fn quotes_decode_with_market_time() {
        let index: HashMap<String, usize> = [("AAPL".to_string(), 0)].into();
        let q: WireQuote<'_> = serde_json::from_str(QUOTE).unwrap();
        let t = to_tick(&q, &index).unwrap().unwrap();
        assert_eq!(t.symbol, 0);
        assert_eq!(t.market_ts, 1_719_840_600_000);
        assert_eq!(t.log_price, 187.23f64.ln());
        assert_eq!(t.volume, 12345);
        assert!(!t.halted);
        let old = QUOTE.replace(r#""market_ts":1719840600000,"#, "");
        let q: WireQuote<'_> = serde_json::from_str(&old).unwrap();
        let err = to_tick(&q, &index).unwrap_err().to_string();
        assert!(err.contains("no market_ts"), "{err}");
        let other: HashMap<String, usize> = HashMap::new();
        assert!(to_tick(&q, &other).unwrap().is_none());
        assert!(is_halt_status("halted") && is_halt_status("LULD_PAUSE"));
        assert!(!is_halt_status("trading") && !is_halt_status("closed"));
    }

    #[test]
    fn symbol_table_gives_etf_pairs_and_implied_correlations() {
        let table = table();
        assert_eq!(etf_pairs(&table), vec![(1, 2)]);
        let facts = measure(&table, &[]);
        assert_eq!(facts.symbols, 0);
        assert!(facts.etf_min_corr.is_nan());
    }

    /// A chunked SSE response body carrying a snapshot and the quotes of `ticks`.
    fn chunked_body(ticks: &[Tick], symbols: &[&str]) -> Vec<u8> {
        let mut sse = String::from("retry: 3000\n\nevent: snapshot\nid: 1\ndata: [");
        let yesterday = ny("2024-06-28", "15:00").to_string();
        sse.push_str(&QUOTE.replace("1719840600000", &yesterday));
        sse.push_str("]\n\n");
        for (i, t) in ticks.iter().enumerate() {
            sse.push_str(&format!(
                "event: quote\r\nid: {seq}\r\ndata: {{\"symbol\":\"{}\",\"seq\":{seq},\"ts\":1,\"market_ts\":{},\"status\":\"trading\",\"price\":\"{:.4}\",\"volume\":{}}}\r\n\r\n",
                symbols[t.symbol],
                t.market_ts,
                t.log_price.exp(),
                t.volume,
                seq = i as u64 + 2 + u64::from(i >= 10),
            ));
            if i % 50 == 0 {
                sse.push_str("event: heartbeat\ndata: {\"ts\":5,\"seq\":3}\n\n: comment\n");
            }
        }
        let mut body = Vec::new();
        for chunk in sse.as_bytes().chunks(777) {
            body.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            body.extend_from_slice(chunk);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"0\r\n\r\n");
        body
    }

    #[test]
    fn captures_a_chunked_stream_read_in_pieces() {
        let table = table();
        let names: Vec<&str> = table.iter().map(|s| s.symbol.as_str()).collect();
        let mut ticks = Vec::new();
        for d in ["2024-07-01", "2024-07-02"] {
            ticks.extend(merged(
                (0..3)
                    .map(|s| plain_day(s, d, 100.0 + s as f64, 102.0))
                    .collect(),
            ));
        }
        ticks.push(tick(0, ny("2024-07-02", "16:30"), 101.0, 1));
        let body = chunked_body(&ticks, &names);
        for piece in [1, 7, 4096, body.len()] {
            let mut capture = Capture::new(&table);
            capture.start(Head {
                status: 200,
                framing: http::Framing::Chunked,
                event_stream: true,
            });
            let mut ended = false;
            for part in body.chunks(piece) {
                assert!(!ended);
                ended = capture.feed(part).unwrap();
            }
            assert!(ended, "piece {piece}");
            assert_eq!(capture.sampler.days_captured, 2, "piece {piece}");
            assert_eq!(capture.quotes, ticks.len() as u64);
            assert_eq!(capture.quotes_missed, 1);
            assert_eq!(capture.unknown_symbol_quotes, 0);
            let series = capture.sampler.series();
            assert!((series[2].days[1][0] - 102f64.ln()).abs() < 1e-9);
            assert!((series[2].days[1][78] - 102f64.ln()).abs() < 1e-9);
        }
    }

    #[test]
    fn malformed_quote_json_is_an_error() {
        let table = table();
        let mut capture = Capture::new(&table);
        let err = capture
            .feed(b"event: quote\ndata: {\"symbol\":\"AAPL\",\n\n")
            .unwrap_err();
        assert!(
            format!("{err:#}").starts_with("malformed quote JSON"),
            "{err:#}"
        );
    }

    #[test]
    fn sse_data_lines_join_and_unnamed_events_are_messages() {
        let mut sse = SseDecoder::default();
        let mut got = Vec::new();
        let mut collect = |name: &str, data: &[u8]| {
            got.push((name.to_string(), String::from_utf8(data.to_vec()).unwrap()));
            Ok(())
        };
        sse.feed(b"data: a\ndata: b\r\n\r\nevent: x\nda", &mut collect)
            .unwrap();
        sse.feed(b"ta:c\n\nevent: lonely\n\n", &mut collect)
            .unwrap();
        assert_eq!(
            got,
            vec![
                ("message".to_string(), "a\nb".to_string()),
                ("x".to_string(), "c".to_string())
            ]
        );
    }
}
