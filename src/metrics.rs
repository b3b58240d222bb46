//! Counters behind `GET /metrics`, rendered as Prometheus text.
//!
//! Plain relaxed atomics: each is a monotonic counter read only for reporting, so no ordering
//! between them is needed.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::market::Kind;

/// The kinds of SSE event a stream sends, for per-type counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Retry,
    Snapshot,
    Heartbeat,
    Quote,
    Trade,
    Bar,
    Status,
    Session,
}

/// Number of [`EventKind`]s.
const KINDS: usize = 8;

impl EventKind {
    const ALL: [EventKind; KINDS] = [
        EventKind::Retry,
        EventKind::Snapshot,
        EventKind::Heartbeat,
        EventKind::Quote,
        EventKind::Trade,
        EventKind::Bar,
        EventKind::Status,
        EventKind::Session,
    ];

    /// The counter of a kind of market event.
    pub fn of(kind: Kind) -> EventKind {
        match kind {
            Kind::Quote => EventKind::Quote,
            Kind::Trade => EventKind::Trade,
            Kind::Bar => EventKind::Bar,
            Kind::Status => EventKind::Status,
            Kind::Session => EventKind::Session,
        }
    }

    /// The Prometheus label set of this kind.
    fn labels(self) -> &'static str {
        match self {
            EventKind::Retry => "{event=\"retry\"}",
            EventKind::Snapshot => "{event=\"snapshot\"}",
            EventKind::Heartbeat => "{event=\"heartbeat\"}",
            EventKind::Quote => "{event=\"quote\"}",
            EventKind::Trade => "{event=\"trade\"}",
            EventKind::Bar => "{event=\"bar\"}",
            EventKind::Status => "{event=\"status\"}",
            EventKind::Session => "{event=\"session\"}",
        }
    }
}

/// Service-wide counters.
#[derive(Debug, Default)]
pub struct Metrics {
    events: [AtomicU64; KINDS],
    bytes: [AtomicU64; KINDS],
    /// Chunks handed to the HTTP layer: one write per client per wake-up.
    pub writes: AtomicU64,
    /// Events the simulator generated, of every kind (opening quotes included).
    pub updates_generated: AtomicU64,
    /// Encoded batches published to clients.
    pub batches_published: AtomicU64,
    /// SSE streams opened since start.
    pub streams_opened: AtomicU64,
    /// SSE streams refused with 503 because `--max-clients` streams were open.
    pub streams_refused: AtomicU64,
    /// Streams closed because a write stayed blocked for `--write-timeout-secs`.
    pub streams_evicted: AtomicU64,
    /// Streams that resumed from `Last-Event-ID` by replaying history.
    pub replays_served: AtomicU64,
    /// Events that slow clients skipped: they got the latest state instead.
    pub updates_conflated: AtomicU64,
    /// TCP connections accepted since start (an HTTP/2 connection carries many streams).
    pub connections_accepted: AtomicU64,
    /// TCP connections closed since start.
    pub connections_closed: AtomicU64,
    /// Connections refused at accept because `--max-connections` were open.
    pub connections_refused_total: AtomicU64,
    /// Connections refused at accept because their address held `--max-connections-per-ip`.
    pub connections_refused_per_ip: AtomicU64,
    /// Connections closed because a write to them stayed blocked for `--write-timeout-secs`
    /// (connections served by hyper; direct-path streams count as evicted streams).
    pub connections_write_timed_out: AtomicU64,
    /// Connections closed for sending no whole request within the header timeout.
    pub connections_header_timed_out: AtomicU64,
}

/// Values that live elsewhere but belong on the same page.
#[derive(Debug, Clone, Copy)]
pub struct Gauges {
    pub clients: usize,
    pub seq: u64,
    pub symbols: usize,
    pub uptime_secs: u64,
    pub history_len: usize,
    /// The gap each client now waits between writes (adaptive pacing), microseconds.
    pub write_gap_us: u64,
}

impl Metrics {
    /// Counts one write to a client: `events` events of `kind` in `bytes` bytes.
    pub fn wrote(&self, kind: EventKind, events: u64, bytes: u64) {
        self.sent(kind, events, bytes);
        self.writes.fetch_add(1, Relaxed);
    }

    /// Counts `writes` writes of market events: `events[k]` events of kind `k` in `bytes[k]`
    /// bytes. Streams add up several writes before they call this, so that thousands of
    /// clients do not all update the same counters at every write.
    pub fn wrote_market(&self, events: &[u64; 5], bytes: &[u64; 5], writes: u64) {
        for kind in Kind::ALL {
            let k = kind as usize;
            if events[k] > 0 {
                self.sent(EventKind::of(kind), events[k], bytes[k]);
            }
        }
        self.writes.fetch_add(writes, Relaxed);
    }

    /// Counts `events` events of `kind` in `bytes` bytes.
    pub fn sent(&self, kind: EventKind, events: u64, bytes: u64) {
        self.events[kind as usize].fetch_add(events, Relaxed);
        self.bytes[kind as usize].fetch_add(bytes, Relaxed);
    }

    /// The Prometheus text exposition of every counter and gauge.
    pub fn render(&self, gauges: Gauges) -> String {
        let mut out = String::with_capacity(2048);
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        let per_kind = |counters: &[AtomicU64; KINDS]| -> Vec<(&str, u64)> {
            EventKind::ALL
                .iter()
                .map(|k| (k.labels(), counters[*k as usize].load(Relaxed)))
                .collect()
        };
        let events = per_kind(&self.events);
        let bytes = per_kind(&self.bytes);
        let load = |c: &AtomicU64| c.load(Relaxed);

        metric(
            "tickcast_clients_connected",
            "gauge",
            "Open SSE streams.",
            &[("", gauges.clients as u64)],
        );
        metric(
            "tickcast_events_sent_total",
            "counter",
            "SSE events sent, by event type.",
            &events,
        );
        metric(
            "tickcast_bytes_sent_total",
            "counter",
            "SSE bytes sent, by event type.",
            &bytes,
        );
        metric(
            "tickcast_writes_total",
            "counter",
            "Chunks written to streams (one per client wake-up).",
            &[("", load(&self.writes))],
        );
        metric(
            "tickcast_updates_generated_total",
            "counter",
            "Market events generated by the simulator, every kind.",
            &[("", load(&self.updates_generated))],
        );
        metric(
            "tickcast_batches_published_total",
            "counter",
            "Encoded event batches published.",
            &[("", load(&self.batches_published))],
        );
        metric(
            "tickcast_streams_opened_total",
            "counter",
            "SSE streams opened.",
            &[("", load(&self.streams_opened))],
        );
        metric(
            "tickcast_streams_refused_total",
            "counter",
            "SSE streams refused at --max-clients.",
            &[("", load(&self.streams_refused))],
        );
        metric(
            "tickcast_streams_evicted_total",
            "counter",
            "SSE streams closed because the client stopped reading (a write blocked for --write-timeout-secs).",
            &[("", load(&self.streams_evicted))],
        );
        metric(
            "tickcast_replays_served_total",
            "counter",
            "Streams resumed from Last-Event-ID by replaying history.",
            &[("", load(&self.replays_served))],
        );
        metric(
            "tickcast_updates_conflated_total",
            "counter",
            "Events skipped by slow clients, which got the latest state instead.",
            &[("", load(&self.updates_conflated))],
        );
        let accepted = load(&self.connections_accepted);
        let open = accepted.saturating_sub(load(&self.connections_closed));
        metric(
            "tickcast_connections_accepted_total",
            "counter",
            "TCP connections accepted (an HTTP/2 connection carries many streams).",
            &[("", accepted)],
        );
        metric(
            "tickcast_connections_open",
            "gauge",
            "TCP connections open.",
            &[("", open)],
        );
        metric(
            "tickcast_connections_refused_total",
            "counter",
            "Connections refused at accept, by the limit that was full.",
            &[
                ("{limit=\"total\"}", load(&self.connections_refused_total)),
                ("{limit=\"per_ip\"}", load(&self.connections_refused_per_ip)),
            ],
        );
        metric(
            "tickcast_connections_timed_out_total",
            "counter",
            "Connections closed on a deadline: no whole request head in time (header), or a write blocked for --write-timeout-secs (write).",
            &[
                ("{deadline=\"header\"}", load(&self.connections_header_timed_out)),
                ("{deadline=\"write\"}", load(&self.connections_write_timed_out)),
            ],
        );
        metric(
            "tickcast_seq",
            "gauge",
            "Sequence number of the newest event.",
            &[("", gauges.seq)],
        );
        metric(
            "tickcast_symbols",
            "gauge",
            "Symbols simulated.",
            &[("", gauges.symbols as u64)],
        );
        metric(
            "tickcast_history_updates",
            "gauge",
            "Events held for Last-Event-ID replay.",
            &[("", gauges.history_len as u64)],
        );
        metric(
            "tickcast_write_gap_microseconds",
            "gauge",
            "Pause between two writes to one client: 0 while clients are written promptly, up to --flush-ms under load.",
            &[("", gauges.write_gap_us)],
        );
        metric(
            "tickcast_uptime_seconds",
            "gauge",
            "Seconds since start.",
            &[("", gauges.uptime_secs)],
        );
        if let Some(rss) = resident_memory_bytes() {
            metric(
                "process_resident_memory_bytes",
                "gauge",
                "Resident memory size in bytes.",
                &[("", rss)],
            );
        }
        out
    }
}

/// Resident set size of this process, from `/proc/self/statm` (Linux only).
pub fn resident_memory_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_with_labels() {
        let m = Metrics::default();
        m.sent(EventKind::Quote, 3, 300);
        m.updates_generated.fetch_add(5, Relaxed);
        let text = m.render(Gauges {
            clients: 2,
            seq: 9,
            symbols: 100,
            uptime_secs: 1,
            history_len: 9,
            write_gap_us: 0,
        });
        assert!(text.contains("tickcast_events_sent_total{event=\"quote\"} 3\n"));
        assert!(text.contains("tickcast_bytes_sent_total{event=\"quote\"} 300\n"));
        assert!(text.contains("tickcast_clients_connected 2\n"));
        assert!(text.contains("tickcast_updates_generated_total 5\n"));
        assert!(text.contains("# TYPE tickcast_seq gauge\n"));
    }
}
