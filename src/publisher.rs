//! The tasks that drive the feed: the market, paced by tokio's clock, and the heartbeat.
//!
//! Feed time is the time since the simulator started, read from tokio's clock (so tests can
//! pause it). The simulator decides *what* happens and *when* in feed time; this module only
//! decides when to publish: what is due, as one encoded batch. While the server has time to
//! spare it publishes each event as soon as it is due (at most every [`MIN_PUBLISH_INTERVAL`]);
//! as it gets busy, it batches like the clients do, up to [`MAX_PUBLISH_INTERVAL`]. How often each client
//! is written to is the stream's business ([`Feed::write_gap`]). If the task runs late it
//! simply publishes a bigger batch: the events are the same either way.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep_until, Instant, MissedTickBehavior};

use crate::bar_store::BarStore;
use crate::feed::Feed;
use crate::market::clock::ClockAnchor;
use crate::market::scenario::{Applied, Scenario, ScenarioError};
use crate::market::{Event, Simulator};
use crate::shutdown::Shutdown;
use crate::sse::{self, Batch};

/// A scenario for the market task to apply, and where to send what it did.
#[derive(Debug)]
pub struct ScenarioRequest {
    pub scenario: Scenario,
    pub reply: oneshot::Sender<Result<Applied, ScenarioError>>,
}

/// Scenarios waiting for the market task; more than this many in flight are refused.
const SCENARIO_QUEUE: usize = 16;

/// The channel that carries scenarios from the HTTP layer to the market task.
pub fn scenario_channel() -> (
    mpsc::Sender<ScenarioRequest>,
    mpsc::Receiver<ScenarioRequest>,
) {
    mpsc::channel(SCENARIO_QUEUE)
}

/// Where the market task publishes: the encoded feed, the bars for charts, and (in a
/// cluster's simulator) the channel to the Redis stream.
#[derive(Debug, Clone)]
pub struct Outlets {
    pub feed: Feed,
    pub bars: Arc<BarStore>,
    /// Each encoded batch also goes here, bounded: when it is full (Redis away for long),
    /// the market waits, and what falls due meanwhile is published together afterwards.
    pub upstream: Option<mpsc::Sender<Published>>,
}

/// One encoded batch on its way to a cluster's stream, with the market clock after it.
#[derive(Debug, Clone)]
pub struct Published {
    pub batch: Batch,
    pub clock: ClockAnchor,
    /// Wall-clock time of the publish, epoch µs: edges measure their delay from it.
    pub at_us: u64,
}

impl Outlets {
    /// Publishes `events`: bars first, so a client that sees a `bar` event can fetch it.
    /// Returns the batch for the upstream channel, if there is one.
    fn publish(&self, events: &[Event], clock: ClockAnchor) -> Option<Published> {
        if events.is_empty() {
            return None;
        }
        self.bars.record(events);
        let batch = Batch::encode(events);
        let upstream = self.upstream.as_ref().map(|_| Published {
            batch: batch.clone(),
            clock,
            at_us: epoch_us(),
        });
        self.feed.publish(batch);
        upstream
    }
}

/// Longest time between two publishes: short enough that a client whose flush timer fires gets
/// quotes at most this old, long enough that a batch usually holds several updates.
pub const MAX_PUBLISH_INTERVAL: Duration = Duration::from_millis(10);
/// Shortest time between two publishes: each wakes every waiting client, so even an idle
/// server publishes at most a thousand times a second.
pub const MIN_PUBLISH_INTERVAL: Duration = Duration::from_millis(1);

/// Wall-clock now, epoch milliseconds.
pub fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Microseconds since the Unix epoch, by the wall clock: the publish time a cluster's edges
/// measure their delay from.
pub fn epoch_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Publishes everything the simulator generates after its opening quotes, until shutdown.
///
/// The caller publishes the opening quotes first (see [`publish_opening`]), before it serves
/// anyone, so no client ever sees an empty snapshot. `started` is feed time 0: the instant
/// matching the simulator's `start_epoch_ms`.
///
/// Scenarios from `scenarios` are applied as they come: the market is first brought up to the
/// moment, then the scenario's events (halts) are published with what was due.
pub async fn run_market(
    out: Outlets,
    mut sim: Simulator,
    started: Instant,
    flush: Duration,
    mut scenarios: mpsc::Receiver<ScenarioRequest>,
    mut shutdown: Shutdown,
) {
    let mut events = Vec::new();
    let mut last_publish = started;
    loop {
        events.clear();
        // Idle, publish each event when it is due; busy, as clients' writes batch up, publish
        // in batches too (at most every MAX_PUBLISH_INTERVAL).
        let interval = out
            .feed
            .write_gap(flush.min(MAX_PUBLISH_INTERVAL))
            .max(MIN_PUBLISH_INTERVAL);
        let next_due = started + Duration::from_nanos(sim.next_update_ns());
        let wake = next_due.max(last_publish + interval);
        let mut request = None;
        tokio::select! {
            biased;
            () = shutdown.wait() => return,
            Some(r) = scenarios.recv() => request = Some(r),
            () = sleep_until(wake) => {}
        }
        let now = Instant::now();
        let feed_ns = now.saturating_duration_since(started).as_nanos() as u64;
        sim.advance_to(feed_ns, &mut events);
        if let Some(ScenarioRequest { scenario, reply }) = request {
            let result = sim.apply(&scenario, feed_ns, &mut events);
            match &result {
                Ok(applied) => tracing::info!(?scenario, ?applied, "scenario applied"),
                Err(e) => tracing::info!(?scenario, "scenario refused: {e}"),
            }
            let _ = reply.send(result);
        }
        let clock = sim.anchor(feed_ns);
        let upstream = out.publish(&events, clock);
        out.feed.set_clock(clock);
        last_publish = now;
        if let (Some(tx), Some(published)) = (&out.upstream, upstream) {
            tokio::select! {
                biased;
                () = shutdown.wait() => return,
                sent = tx.send(published) => if sent.is_err() { return },
            }
        }
    }
}

/// Runs [`run_market`] on a thread of its own, with its own single-threaded runtime, and
/// returns a handle that completes when it does.
///
/// Client streams keep the main runtime busy in waves (each batch wakes every client); on the
/// same runtime the market task would queue behind a wave and publish late, adding up to a
/// wave's length to every event's latency. On its own thread the operating system runs it
/// when its timer fires.
pub fn spawn_market(
    out: Outlets,
    sim: Simulator,
    started: Instant,
    flush: Duration,
    scenarios: mpsc::Receiver<ScenarioRequest>,
    shutdown: Shutdown,
) -> tokio::task::JoinHandle<Option<()>> {
    spawn_dedicated(
        "market",
        run_market(out, sim, started, flush, scenarios, shutdown),
    )
}

/// Runs `task` on a thread of its own, in a single-threaded runtime with timers and I/O: the
/// source of a node's events (the market, an edge's reader of the stream) must not queue
/// behind a wave of client tasks, as [`spawn_market`] explains. Measured for an edge's reader
/// with 10,000 clients on one core: docs/BENCHMARKS.md, "Cluster". `None` if the runtime could
/// not be built (logged).
pub fn spawn_dedicated<T: Send + 'static>(
    what: &'static str,
    task: impl Future<Output = T> + Send + 'static,
) -> tokio::task::JoinHandle<Option<T>> {
    tokio::task::spawn_blocking(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build();
        match runtime {
            Ok(runtime) => Some(runtime.block_on(task)),
            Err(e) => {
                tracing::error!("cannot start the {what}'s runtime: {e}");
                None
            }
        }
    })
}

/// Publishes every symbol's opening quote (seq 1..=N) as the first batch.
/// Returns the batch for the upstream channel, if there is one.
pub fn publish_opening(out: &Outlets, sim: &Simulator) -> Option<Published> {
    let published = out.publish(&sim.opening_quotes(), sim.anchor(0));
    out.feed.set_clock(sim.anchor(0));
    published
}

/// How often the runtime's load is sampled for pacing.
const LOAD_SAMPLE: Duration = Duration::from_millis(50);

/// Measures, every [`LOAD_SAMPLE`], the share of time the runtime's workers spent working and
/// hands it to the feed, which paces client writes by it ([`Feed::write_gap`]). The workers'
/// busy time includes the system calls they make, so it is the server's CPU as clients see it.
pub async fn run_load_meter(feed: Feed, mut shutdown: Shutdown) {
    let metrics = tokio::runtime::Handle::current().metrics();
    let workers = metrics.num_workers().max(1);
    let busy = || -> Duration {
        (0..workers)
            .map(|w| metrics.worker_total_busy_duration(w))
            .sum()
    };
    let mut last = (Instant::now(), busy());
    let mut smoothed = 0.0;
    let mut ticks = every(Instant::now(), LOAD_SAMPLE);
    while next_tick(&mut ticks, &mut shutdown).await {
        let now = (Instant::now(), busy());
        let wall = now.0.saturating_duration_since(last.0).as_secs_f64() * workers as f64;
        if wall > 0.0 {
            let share = now.1.saturating_sub(last.1).as_secs_f64() / wall;
            // Half of each new sample: follows a change within a few samples, ignores a blip.
            smoothed = 0.5 * smoothed + 0.5 * share.min(1.0);
            feed.set_busy(smoothed);
        }
        last = now;
    }
}

/// Publishes a heartbeat frame every `every`, encoded once for all streams.
pub async fn run_heartbeat(feed: Feed, period: Duration, mut shutdown: Shutdown) {
    let mut ticks = every(Instant::now() + period, period);
    while next_tick(&mut ticks, &mut shutdown).await {
        let (market_ms, _) = feed.market_now();
        feed.publish_heartbeat(sse::heartbeat_frame(
            epoch_ms(),
            market_ms,
            feed.newest_seq(),
        ));
    }
}

/// Ticks every `period` from `start`; a late tick delays the next ones instead of bunching.
fn every(start: Instant, period: Duration) -> tokio::time::Interval {
    let mut ticks = tokio::time::interval_at(start, period);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ticks
}

/// Waits for the next tick: true, or false once `shutdown` fires.
async fn next_tick(ticks: &mut tokio::time::Interval, shutdown: &mut Shutdown) -> bool {
    tokio::select! {
        biased;
        () = shutdown.wait() => false,
        _ = ticks.tick() => true,
    }
}
