//! The tasks that drive the feed: the simulator, paced by tokio's clock, and the heartbeat.
//!
//! Feed time is the time since the simulator started, read from tokio's clock (so tests can
//! pause it). The simulator decides *what* happens and *when* in feed time; this module only
//! decides when to publish: what is due, as one encoded batch, at most every
//! [`MAX_PUBLISH_INTERVAL`] (or `flush`, if shorter), and as soon as each update is due when
//! `flush` is zero. How often each client is written to is the stream's business (it paces
//! itself by `flush`); publishing finely keeps the quotes a client gets at its own write time
//! fresh. If the task runs late it simply publishes a bigger batch: the updates are the same
//! either way.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::{sleep_until, Instant, MissedTickBehavior};

use crate::feed::Feed;
use crate::market::Simulator;
use crate::shutdown::Shutdown;
use crate::sse::{self, Batch};

/// Longest time between two publishes: short enough that a client whose flush timer fires gets
/// quotes at most this old, long enough that a batch usually holds several updates.
pub const MAX_PUBLISH_INTERVAL: Duration = Duration::from_millis(10);

/// Wall-clock now, epoch milliseconds.
pub fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Publishes everything the simulator generates after its opening quotes, until shutdown.
///
/// The caller publishes the opening quotes first (see [`publish_opening`]), before it serves
/// anyone, so no client ever sees an empty snapshot. `started` is feed time 0: the instant
/// matching the simulator's `start_epoch_ms`.
pub async fn run_market(
    feed: Feed,
    mut sim: Simulator,
    started: Instant,
    flush: Duration,
    mut shutdown: Shutdown,
) {
    let mut updates = Vec::new();
    let mut last_publish = started;
    let interval = flush.min(MAX_PUBLISH_INTERVAL);
    loop {
        updates.clear();
        let next_due = started + Duration::from_nanos(sim.next_update_ns());
        let wake = next_due.max(last_publish + interval);
        tokio::select! {
            biased;
            () = shutdown.wait() => return,
            () = sleep_until(wake) => {}
        }
        let now = Instant::now();
        let feed_ns = now.saturating_duration_since(started).as_nanos() as u64;
        sim.advance_to(feed_ns, &mut updates);
        if !updates.is_empty() {
            feed.publish(Batch::encode(&updates));
        }
        feed.set_clock(sim.anchor(feed_ns));
        last_publish = now;
    }
}

/// Publishes every symbol's opening quote (seq 1..=N) as the first batch.
pub fn publish_opening(feed: &Feed, sim: &Simulator) {
    feed.publish(Batch::encode(&sim.opening_quotes()));
    feed.set_clock(sim.anchor(0));
}

/// Publishes a heartbeat frame every `every`, encoded once for all streams.
pub async fn run_heartbeat(feed: Feed, every: Duration, mut shutdown: Shutdown) {
    let mut ticks = tokio::time::interval_at(Instant::now() + every, every);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            () = shutdown.wait() => return,
            _ = ticks.tick() => {}
        }
        let (market_ms, _) = feed.market_now();
        feed.publish_heartbeat(sse::heartbeat_frame(
            epoch_ms(),
            market_ms,
            feed.newest_seq(),
        ));
    }
}
