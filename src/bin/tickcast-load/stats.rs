//! Counters shared by all connections, per-thread latency histograms, and the final report.
//!
//! Connections never keep numbers of their own that would be lost if they were cancelled: after
//! each read they add what they saw to the atomic [`Counters`] and, under the lock of their
//! worker thread's [`Shard`] (never contended but by the once-a-second progress line), to a
//! latency histogram and per-event-name counts. So the run can end by simply dropping the
//! connection tasks.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use serde_json::{json, Map, Value};

/// Largest latency tracked (larger ones count as this), microseconds: one hour.
const MAX_LATENCY_US: u64 = 3_600_000_000;
/// Distinct event names counted; further names are counted as [`OTHER_NAME`].
const MAX_NAMES: usize = 64;
const OTHER_NAME: &[u8] = b"(other)";

/// Locks a mutex, ignoring poisoning (the data is plain counters).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Microseconds since the Unix epoch.
pub fn now_epoch_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// An epoch timestamp in seconds, milliseconds, microseconds or nanoseconds (told apart by
/// magnitude), as microseconds.
pub fn ts_to_us(ts: u64) -> u64 {
    match ts {
        0..100_000_000_000 => ts.saturating_mul(1_000_000),
        100_000_000_000..100_000_000_000_000 => ts * 1_000,
        100_000_000_000_000..100_000_000_000_000_000 => ts,
        _ => ts / 1_000,
    }
}

/// Numbers of one worker thread.
#[derive(Debug)]
pub struct Shard {
    /// Latency of events received in the steady window, microseconds.
    pub latency: Histogram<u64>,
    pub max_latency_us: u64,
    /// Events per name over the whole run.
    pub names: Vec<(Box<[u8]>, u64)>,
    /// Time from a stream's end to the first event after its reconnection, microseconds.
    pub reconnect: Histogram<u64>,
}

impl Default for Shard {
    fn default() -> Self {
        Shard {
            latency: new_histogram(),
            max_latency_us: 0,
            names: Vec::new(),
            reconnect: new_histogram(),
        }
    }
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds")
}

impl Shard {
    pub fn record_latency(&mut self, us: u64) {
        self.latency.saturating_record(us);
        self.max_latency_us = self.max_latency_us.max(us);
    }

    pub fn record_reconnect(&mut self, us: u64) {
        self.reconnect.saturating_record(us);
    }

    pub fn count_name(&mut self, name: &[u8]) {
        if let Some((_, n)) = self.names.iter_mut().find(|(k, _)| **k == *name) {
            *n += 1;
            return;
        }
        let name = if self.names.len() < MAX_NAMES {
            name
        } else {
            OTHER_NAME
        };
        match self.names.iter_mut().find(|(k, _)| **k == *name) {
            Some((_, n)) => *n += 1,
            None => self.names.push((name.into(), 1)),
        }
    }
}

/// All shards ever created, for merging.
static SHARDS: Mutex<Vec<Arc<Mutex<Shard>>>> = Mutex::new(Vec::new());

/// A new shard, registered for [`merged`].
pub fn new_shard() -> Arc<Mutex<Shard>> {
    let shard = Arc::new(Mutex::new(Shard::default()));
    lock(&SHARDS).push(shard.clone());
    shard
}

/// Latency and name counts of all shards.
#[derive(Debug)]
pub struct Merged {
    pub latency: Histogram<u64>,
    pub reconnect: Histogram<u64>,
    pub max_latency_us: u64,
    pub names: BTreeMap<String, u64>,
}

pub fn merged() -> Merged {
    let mut out = Merged {
        latency: new_histogram(),
        reconnect: new_histogram(),
        max_latency_us: 0,
        names: BTreeMap::new(),
    };
    for shard in lock(&SHARDS).iter() {
        let shard = lock(shard);
        out.latency
            .add(&shard.latency)
            .expect("shards share the histogram bounds");
        out.reconnect
            .add(&shard.reconnect)
            .expect("shards share the histogram bounds");
        out.max_latency_us = out.max_latency_us.max(shard.max_latency_us);
        for (name, n) in &shard.names {
            *out.names
                .entry(String::from_utf8_lossy(name).into_owned())
                .or_default() += n;
        }
    }
    out
}

/// The 99th percentile of latency recorded so far, microseconds.
pub fn p99_so_far() -> Option<u64> {
    let mut h = new_histogram();
    for shard in lock(&SHARDS).iter() {
        h.add(&lock(shard).latency).ok()?;
    }
    (!h.is_empty()).then(|| h.value_at_quantile(0.99))
}

/// Counters updated by every connection.
#[derive(Debug, Default)]
pub struct Counters {
    /// In the steady window: latency and the window counters are recorded.
    pub measuring: AtomicBool,
    /// Streams open now.
    pub open: AtomicU64,
    /// Connections that got a 200 `text/event-stream` response.
    pub connected: AtomicU64,
    /// Connections that never got one.
    pub failed: AtomicU64,
    /// Streams that ended (closed by the server, or broken) before the run ended.
    pub disconnects: AtomicU64,
    /// Streams whose body could not be decoded (also counted in `disconnects`).
    pub protocol_errors: AtomicU64,
    pub events: AtomicU64,
    pub bytes: AtomicU64,
    pub window_events: AtomicU64,
    pub window_bytes: AtomicU64,
    /// Events whose id was not greater than the previous id on the same stream.
    pub order_errors: AtomicU64,
    /// Sum over id'd events of `id - previous id - 1` when positive.
    pub id_jumps: AtomicU64,
    /// Streams opened again after they ended (`--reconnect`).
    pub reconnects: AtomicU64,
    /// Reconnected streams that began with a snapshot instead of a replay.
    pub reconnect_snapshots: AtomicU64,
    /// Longest time from a stream's end to the first event after its reconnection, µs.
    pub reconnect_max_us: AtomicU64,
    /// Failure counts by reason.
    pub failures: Mutex<BTreeMap<String, u64>>,
    /// Message of the first failure, shown once.
    pub first_failure: Mutex<Option<String>>,
}

impl Counters {
    /// Counts a connection that failed for `reason` (short, for grouping) with `detail`.
    pub fn fail(&self, reason: String, detail: String) {
        self.failed.fetch_add(1, Relaxed);
        *lock(&self.failures).entry(reason).or_default() += 1;
        lock(&self.first_failure).get_or_insert(detail);
    }
}

/// What happened in one read, added to [`Counters`] afterwards.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tally {
    pub events: u64,
    pub order_errors: u64,
    pub id_jumps: u64,
    /// A reconnected stream's first event came this long after the previous stream ended.
    pub reconnect_us: Option<u64>,
    pub reconnect_snapshots: u64,
}

impl Tally {
    pub fn add_to(&self, c: &Counters, bytes: u64, measuring: bool) {
        c.bytes.fetch_add(bytes, Relaxed);
        if measuring {
            c.window_bytes.fetch_add(bytes, Relaxed);
        }
        if self.events > 0 {
            c.events.fetch_add(self.events, Relaxed);
            if measuring {
                c.window_events.fetch_add(self.events, Relaxed);
            }
        }
        if self.order_errors > 0 {
            c.order_errors.fetch_add(self.order_errors, Relaxed);
        }
        if self.id_jumps > 0 {
            c.id_jumps.fetch_add(self.id_jumps, Relaxed);
        }
        if let Some(us) = self.reconnect_us {
            c.reconnect_max_us.fetch_max(us, Relaxed);
        }
        if self.reconnect_snapshots > 0 {
            c.reconnect_snapshots
                .fetch_add(self.reconnect_snapshots, Relaxed);
        }
    }
}

/// Latency percentiles, milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    pub samples: u64,
}

/// Everything the run prints at the end.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub url: String,
    /// `HTTP/1.1`, or `HTTP/2 (N streams per connection)`.
    pub protocol: String,
    /// TCP (and TLS) connections opened: one per stream over HTTP/1.1.
    pub connections: u64,
    pub clients: u64,
    pub source_ips: u32,
    pub connected: u64,
    pub failed: u64,
    pub failures: BTreeMap<String, u64>,
    pub disconnects: u64,
    pub protocol_errors: u64,
    pub ramp_s: f64,
    /// Length of the steady window actually measured.
    pub duration_s: f64,
    pub events: u64,
    pub bytes: u64,
    pub events_total: u64,
    pub bytes_total: u64,
    pub latency: Option<Latency>,
    pub event_counts: BTreeMap<String, u64>,
    pub order_errors: u64,
    pub id_jumps: u64,
    pub reconnects: u64,
    pub reconnect_snapshots: u64,
    pub reconnect_max_ms: f64,
    /// Percentiles of the reconnection times (`max` is `reconnect_max_ms`).
    pub reconnect: Option<Latency>,
    pub run_time_s: f64,
    /// Why the run ended early, if it did.
    pub ended_early: Option<String>,
}

fn ms(us: u64) -> f64 {
    round3(us as f64 / 1000.0)
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn per_s(n: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        (n as f64 / secs * 10.0).round() / 10.0
    } else {
        0.0
    }
}

impl Report {
    /// Latency percentiles from a merged histogram.
    pub fn latency_from(merged: &Merged) -> Option<Latency> {
        let h = &merged.latency;
        (!h.is_empty()).then(|| Latency {
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            max: ms(merged.max_latency_us),
            samples: h.len(),
        })
    }

    /// Reconnection-time percentiles from a merged histogram, with the exact longest.
    pub fn reconnect_from(merged: &Merged, max_us: u64) -> Option<Latency> {
        let h = &merged.reconnect;
        (!h.is_empty()).then(|| Latency {
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            max: ms(max_us),
            samples: h.len(),
        })
    }

    pub fn events_per_s(&self) -> f64 {
        per_s(self.events, self.duration_s)
    }

    pub fn bytes_per_s(&self) -> f64 {
        per_s(self.bytes, self.duration_s)
    }

    /// The single-line JSON summary.
    pub fn json(&self) -> String {
        let latency = match self.latency {
            Some(l) => {
                json!({"p50": l.p50, "p90": l.p90, "p99": l.p99, "max": l.max, "samples": l.samples})
            }
            None => json!({"p50": null, "p90": null, "p99": null, "max": null, "samples": 0}),
        };
        let counts: Map<String, Value> = self
            .event_counts
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        let failures: Map<String, Value> = self
            .failures
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        json!({
            "url": self.url,
            "protocol": self.protocol,
            "connections": self.connections,
            "clients": self.clients,
            "connected": self.connected,
            "failed": self.failed,
            "duration_s": round3(self.duration_s),
            "events": self.events,
            "events_per_s": self.events_per_s(),
            "bytes": self.bytes,
            "bytes_per_s": self.bytes_per_s(),
            "latency_ms": latency,
            "event_counts": counts,
            "order_errors": self.order_errors,
            "id_jumps": self.id_jumps,
            "disconnects": self.disconnects,
            "reconnects": self.reconnects,
            "reconnect_snapshots": self.reconnect_snapshots,
            "reconnect_max_ms": round3(self.reconnect_max_ms),
            "reconnect_ms": self.reconnect.map(|r| {
                json!({"p50": r.p50, "p90": r.p90, "p99": r.p99, "max": r.max, "samples": r.samples})
            }),
            "protocol_errors": self.protocol_errors,
            "failures": failures,
            "events_total": self.events_total,
            "bytes_total": self.bytes_total,
            "ramp_s": round3(self.ramp_s),
            "run_time_s": round3(self.run_time_s),
            "source_ips": self.source_ips,
            "ended_early": self.ended_early,
        })
        .to_string()
    }

    /// The human-readable table.
    pub fn table(&self) -> String {
        let mut t = String::new();
        let mut row = |k: &str, v: String| {
            let _ = writeln!(t, "  {k:<20} {v}");
        };
        row("target", self.url.clone());
        row(
            "protocol",
            format!("{} ({} connections)", self.protocol, self.connections),
        );
        row(
            "clients",
            format!("{} (source addresses: {})", self.clients, self.source_ips),
        );
        row("connected", self.connected.to_string());
        let mut failed = self.failed.to_string();
        if !self.failures.is_empty() {
            let reasons: Vec<String> = self
                .failures
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect();
            let _ = write!(failed, " ({})", reasons.join(", "));
        }
        row("failed", failed);
        row(
            "disconnects",
            format!(
                "{} (protocol errors: {})",
                self.disconnects, self.protocol_errors
            ),
        );
        row("steady window", format!("{:.2} s", self.duration_s));
        row("events", group(self.events));
        row("events/s", group(self.events_per_s().round() as u64));
        row(
            "bytes/s",
            format!(
                "{} ({:.2} MB/s)",
                group(self.bytes_per_s().round() as u64),
                self.bytes_per_s() / 1e6
            ),
        );
        match self.latency {
            Some(l) => {
                row("latency p50", format!("{:.3} ms", l.p50));
                row("latency p90", format!("{:.3} ms", l.p90));
                row("latency p99", format!("{:.3} ms", l.p99));
                row("latency max", format!("{:.3} ms", l.max));
                row("latency samples", group(l.samples));
            }
            None => row("latency", "no samples (no event with a JSON ts)".into()),
        }
        if self.event_counts.is_empty() {
            row("events by name", "none".into());
        }
        for (name, n) in &self.event_counts {
            row(&format!("event {name:?}"), group(*n));
        }
        row("order errors", group(self.order_errors));
        row("id jumps", group(self.id_jumps));
        if self.reconnects > 0 {
            row(
                "reconnects",
                format!(
                    "{} (began with a snapshot: {}; end to first event {})",
                    group(self.reconnects),
                    group(self.reconnect_snapshots),
                    self.reconnect.map_or("-".to_string(), |r| format!(
                        "p50 {:.1} / p99 {:.1} / max {:.1} ms",
                        r.p50, r.p99, r.max
                    )),
                ),
            );
        }
        row("run time", format!("{:.2} s", self.run_time_s));
        if let Some(why) = &self.ended_early {
            row("ended early", why.clone());
        }
        t
    }
}

/// `1234567` as `1,234,567`.
pub fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Report {
        Report {
            protocol: "HTTP/1.1".into(),
            connections: 1,
            url: "http://127.0.0.1:3000/quotes".into(),
            clients: 10,
            source_ips: 1,
            connected: 9,
            failed: 1,
            failures: [("http 503".to_string(), 1)].into(),
            disconnects: 0,
            protocol_errors: 0,
            ramp_s: 1.0,
            duration_s: 2.0,
            events: 1000,
            bytes: 300_000,
            events_total: 1500,
            bytes_total: 450_000,
            latency: Some(Latency {
                p50: 1.0,
                p90: 2.0,
                p99: 3.0,
                max: 4.5,
                samples: 990,
            }),
            event_counts: [("quote".to_string(), 1490), ("snapshot".to_string(), 10)].into(),
            order_errors: 0,
            id_jumps: 7,
            reconnects: 0,
            reconnect_snapshots: 0,
            reconnect_max_ms: 0.0,
            reconnect: None,
            run_time_s: 3.2,
            ended_early: None,
        }
    }

    #[test]
    fn json_is_one_line_with_the_documented_keys() {
        let line = sample().json();
        assert!(!line.contains('\n'));
        let v: Value = serde_json::from_str(&line).unwrap();
        for key in [
            "clients",
            "connected",
            "failed",
            "duration_s",
            "events",
            "events_per_s",
            "bytes_per_s",
            "latency_ms",
            "event_counts",
            "order_errors",
            "id_jumps",
            "disconnects",
        ] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        assert_eq!(v["events_per_s"], json!(500.0));
        assert_eq!(v["bytes_per_s"], json!(150000.0));
        assert_eq!(v["latency_ms"]["p99"], json!(3.0));
        assert_eq!(v["event_counts"]["snapshot"], json!(10));
        let table = sample().table();
        assert!(table.contains("events/s             500"), "{table}");
    }

    #[test]
    fn json_without_latency_has_nulls() {
        let mut r = sample();
        r.latency = None;
        let v: Value = serde_json::from_str(&r.json()).unwrap();
        assert!(v["latency_ms"]["p99"].is_null());
    }

    #[test]
    fn shard_counts_names_and_caps_them() {
        let mut s = Shard::default();
        s.count_name(b"quote");
        s.count_name(b"quote");
        for i in 0..100 {
            s.count_name(format!("n{i}").as_bytes());
        }
        assert_eq!(s.names[0], (b"quote"[..].into(), 2));
        assert_eq!(s.names.len(), MAX_NAMES + 1);
        let other = s.names.iter().find(|(k, _)| **k == *OTHER_NAME).unwrap();
        assert_eq!(other.1, 100 - (MAX_NAMES as u64 - 1));
    }

    #[test]
    fn timestamps_of_any_unit() {
        assert_eq!(ts_to_us(1_732_480_000), 1_732_480_000_000_000);
        assert_eq!(ts_to_us(1_732_480_000_123), 1_732_480_000_123_000);
        assert_eq!(ts_to_us(1_732_480_000_123_456), 1_732_480_000_123_456);
        assert_eq!(ts_to_us(1_732_480_000_123_456_789), 1_732_480_000_123_456);
    }

    #[test]
    fn groups_digits() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1000), "1,000");
        assert_eq!(group(1234567), "1,234,567");
    }
}
