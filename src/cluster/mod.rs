//! One simulator and many edge nodes on a Redis stream (docs/CLUSTER.md).
//!
//! The simulator role runs the market and appends each encoded batch, bytes and frame index,
//! to a Redis stream whose entry ids are the batches' last seqs; edges follow the stream and
//! publish the same bytes into their own [`Feed`](crate::feed::Feed), so every client route
//! works on an edge exactly as in `--role all`, and frames are encoded once, by the simulator.
//!
//! # Layout
//! - [`stream`]: everything that knows Redis: keys, the fencing Lua scripts, how a batch is
//!   laid out in a stream entry, and the commands each role sends.
//! - [`simulator`]: the simulator role: registration, continuing a run, the bounded buffer
//!   and in-order retries while Redis is away.
//! - [`edge`]: the edge role: bootstrap from the latest state and the stream, following with
//!   a blocking read, rebuilds after an epoch change or a fall past retention.
//! - [`Status`] (here): what /healthz and /metrics show of the upstream, in every role.

pub mod delay;
pub mod edge;
pub mod simulator;
pub mod stream;

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::Mutex;

use crate::config::Role;

/// Why a cluster role stopped.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot use Redis at {url}: {source}")]
    Redis {
        url: String,
        #[source]
        source: redis::RedisError,
    },
    #[error(
        "another simulator ({holder}) is writing feed '{feed}'; run exactly one simulator per feed"
    )]
    Busy { holder: String, feed: String },
    #[error("simulator {holder} took over feed '{feed}'; this one stops")]
    Fenced { holder: String, feed: String },
    #[error("feed '{feed}' in Redis ends at seq {stream_last}, not at {ours}; this one stops")]
    Sequence {
        feed: String,
        stream_last: String,
        ours: u64,
    },
    #[error("feed '{feed}' in Redis was published with other symbols than these ({detail})")]
    Symbols { feed: String, detail: String },
    #[error(transparent)]
    Start(#[from] crate::market::clock::ClockError),
    #[error("invalid simulation settings: {0}")]
    Simulation(#[from] crate::market::simulator::SimError),
    #[error("cannot open web directory: {0}")]
    WebDir(#[source] std::io::Error),
    #[error("the edge's reader of the stream stopped: {0}")]
    Reader(String),
    #[error("--redis-ca {}: {problem}", path.display())]
    RedisCa {
        path: std::path::PathBuf,
        problem: String,
    },
}

/// Where a node stands with its upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum UpstreamState {
    /// `--role all`: there is no upstream.
    None = 0,
    /// Connecting, registering or bootstrapping.
    Starting = 1,
    /// Redis answers and the simulator is writing.
    Up = 2,
    /// Redis does not answer.
    RedisDown = 3,
    /// Redis answers but no simulator holds the feed (it stopped or died).
    SimulatorDown = 4,
    /// Redis answers but holds no such feed (yet, or no longer: it lost its data).
    NoFeed = 5,
}

impl UpstreamState {
    const ALL: [UpstreamState; 6] = [
        UpstreamState::None,
        UpstreamState::Starting,
        UpstreamState::Up,
        UpstreamState::RedisDown,
        UpstreamState::SimulatorDown,
        UpstreamState::NoFeed,
    ];

    /// The state's name in /healthz and /metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamState::None => "none",
            UpstreamState::Starting => "starting",
            UpstreamState::Up => "up",
            UpstreamState::RedisDown => "redis_down",
            UpstreamState::SimulatorDown => "simulator_down",
            UpstreamState::NoFeed => "no_feed",
        }
    }
}

/// Why an edge threw its state away and rebuilt it from Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rebuild {
    /// The stream's run identity changed: Redis lost the stream (a restart without
    /// persistence) and a simulator started it again.
    Epoch = 0,
    /// The edge fell further behind than the stream keeps (`--stream-retention`).
    Retention = 1,
}

impl Rebuild {
    const ALL: [Rebuild; 2] = [Rebuild::Epoch, Rebuild::Retention];

    fn as_str(self) -> &'static str {
        match self {
            Rebuild::Epoch => "epoch",
            Rebuild::Retention => "retention",
        }
    }
}

/// The upstream as /healthz and /metrics show it: shared by the role's tasks and the HTTP
/// handlers, plain atomics.
#[derive(Debug)]
pub struct Status {
    role: Role,
    state: AtomicU8,
    /// Events behind the stream's end: an edge's newest against the stream's last seq; a
    /// simulator's published events not yet appended.
    lag_seq: AtomicU64,
    /// Milliseconds between the simulator's publish of the newest batch taken and its arrival
    /// (edge), or the age of the oldest batch not yet appended (simulator).
    lag_ms: AtomicU64,
    /// Last seq in the stream as this node last saw it.
    stream_last: AtomicU64,
    /// Batches appended (simulator) or read (edge).
    batches: AtomicU64,
    /// Connections to Redis opened after the first.
    reconnects: AtomicU64,
    /// Batches a simulator holds that Redis has not taken yet.
    buffered: AtomicU64,
    rebuilds: [AtomicU64; 2],
    /// The stream's run identity.
    epoch: Mutex<String>,
    /// Publish-to-edge delay of every batch an edge read.
    pub delays: delay::Delays,
}

impl Status {
    /// The status of a node in `role`: `--role all` has no upstream.
    pub fn new(role: Role) -> Status {
        let state = if role == Role::All {
            UpstreamState::None
        } else {
            UpstreamState::Starting
        };
        Status {
            role,
            state: AtomicU8::new(state as u8),
            lag_seq: AtomicU64::new(0),
            lag_ms: AtomicU64::new(0),
            stream_last: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            buffered: AtomicU64::new(0),
            rebuilds: Default::default(),
            epoch: Mutex::new(String::new()),
            delays: delay::Delays::default(),
        }
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn state(&self) -> UpstreamState {
        let n = self.state.load(Relaxed);
        UpstreamState::ALL
            .get(n as usize)
            .copied()
            .unwrap_or(UpstreamState::Starting)
    }

    pub fn set_state(&self, state: UpstreamState) {
        let before = self.state.swap(state as u8, Relaxed);
        if before != state as u8 {
            tracing::info!(upstream = state.as_str(), "upstream state");
        }
    }

    /// Whether a load balancer should send clients here: always in `--role all`, in a cluster
    /// only while the upstream is up.
    pub fn ready(&self) -> bool {
        matches!(self.state(), UpstreamState::None | UpstreamState::Up)
    }

    pub fn set_lag(&self, seq: u64, ms: u64) {
        self.lag_seq.store(seq, Relaxed);
        self.lag_ms.store(ms, Relaxed);
    }

    pub fn lag(&self) -> (u64, u64) {
        (self.lag_seq.load(Relaxed), self.lag_ms.load(Relaxed))
    }

    pub fn set_stream_last(&self, seq: u64) {
        self.stream_last.store(seq, Relaxed);
    }

    pub fn stream_last(&self) -> u64 {
        self.stream_last.load(Relaxed)
    }

    pub fn add_batches(&self, n: u64) {
        self.batches.fetch_add(n, Relaxed);
    }

    pub fn reconnected(&self) {
        self.reconnects.fetch_add(1, Relaxed);
    }

    pub fn set_buffered(&self, n: u64) {
        self.buffered.store(n, Relaxed);
    }

    pub fn rebuilt(&self, why: Rebuild) {
        self.rebuilds[why as usize].fetch_add(1, Relaxed);
    }

    pub fn rebuilds(&self, why: Rebuild) -> u64 {
        self.rebuilds[why as usize].load(Relaxed)
    }

    pub fn set_epoch(&self, epoch: &str) {
        let mut e = self.epoch.lock().unwrap_or_else(|e| e.into_inner());
        if *e != epoch {
            *e = epoch.to_owned();
        }
    }

    pub fn epoch(&self) -> String {
        self.epoch.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether the node is ready (see [`Status::ready`]) and the `upstream` object of
    /// /healthz, from one reading of the state.
    pub fn health(&self) -> (bool, serde_json::Value) {
        let (lag_seq, lag_ms) = self.lag();
        let state = self.state();
        let ready = matches!(state, UpstreamState::None | UpstreamState::Up);
        if self.role == Role::All {
            return (ready, serde_json::json!({ "state": state.as_str() }));
        }
        let json = serde_json::json!({
            "state": state.as_str(),
            "epoch": self.epoch(),
            "stream_last_seq": self.stream_last(),
            "lag_seq": lag_seq,
            "lag_ms": lag_ms,
            "buffered_batches": self.buffered.load(Relaxed),
            "rebuilds": {
                "epoch": self.rebuilds(Rebuild::Epoch),
                "retention": self.rebuilds(Rebuild::Retention),
            },
        });
        (ready, json)
    }

    /// Appends the role and upstream samples to a /metrics page.
    pub fn render_into(&self, out: &mut String) {
        let (lag_seq, lag_ms) = self.lag();
        let _ = writeln!(out, "# HELP tickcast_role What this process does (--role).");
        let _ = writeln!(out, "# TYPE tickcast_role gauge");
        let _ = writeln!(out, "tickcast_role{{role=\"{}\"}} 1", self.role.as_str());
        let _ = writeln!(
            out,
            "# HELP tickcast_upstream_up 1 while Redis answers and the simulator writes (always 1 in --role all)."
        );
        let _ = writeln!(out, "# TYPE tickcast_upstream_up gauge");
        let _ = writeln!(out, "tickcast_upstream_up {}", u8::from(self.ready()));
        let _ = writeln!(out, "# HELP tickcast_upstream_state The upstream's state.");
        let _ = writeln!(out, "# TYPE tickcast_upstream_state gauge");
        let current = self.state();
        for state in UpstreamState::ALL {
            let _ = writeln!(
                out,
                "tickcast_upstream_state{{state=\"{}\"}} {}",
                state.as_str(),
                u8::from(state == current)
            );
        }
        let gauges = [
            (
                "tickcast_upstream_lag_seq",
                "Events behind the end of the stream.",
                lag_seq,
            ),
            (
                "tickcast_upstream_lag_ms",
                "Milliseconds from the simulator's publish to this node (edge) or of the oldest batch not yet in Redis (simulator).",
                lag_ms,
            ),
            (
                "tickcast_upstream_stream_last_seq",
                "Last seq of the stream as last seen.",
                self.stream_last(),
            ),
            (
                "tickcast_upstream_buffered_batches",
                "Batches the simulator holds until Redis takes them.",
                self.buffered.load(Relaxed),
            ),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} gauge");
            let _ = writeln!(out, "{name} {value}");
        }
        let counters = [
            (
                "tickcast_upstream_batches_total",
                "Batches appended to (simulator) or read from (edge) the stream.",
                self.batches.load(Relaxed),
            ),
            (
                "tickcast_upstream_reconnects_total",
                "Connections to Redis opened again after a failure.",
                self.reconnects.load(Relaxed),
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            let _ = writeln!(out, "{name} {value}");
        }
        if self.role == Role::Edge {
            self.delays.render_into(
                out,
                "tickcast_upstream_delay_seconds",
                "Seconds from the simulator's publish of a batch to this edge's read of it (wall clocks: as exact as their sync across machines).",
            );
        }
        let _ = writeln!(
            out,
            "# HELP tickcast_upstream_rebuilds_total State rebuilt from Redis, by reason: epoch (Redis lost the stream), retention (fell behind what the stream keeps)."
        );
        let _ = writeln!(out, "# TYPE tickcast_upstream_rebuilds_total counter");
        for why in Rebuild::ALL {
            let _ = writeln!(
                out,
                "tickcast_upstream_rebuilds_total{{reason=\"{}\"}} {}",
                why.as_str(),
                self.rebuilds(why)
            );
        }
    }
}
