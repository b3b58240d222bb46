//! `--role edge`: follows the feed's stream and serves every client route from its own feed.
//!
//! Before it serves anyone the edge bootstraps: the metadata and the latest state (one
//! transaction), then the last `--history` events from the stream, all into the feed at once
//! ([`Feed::replace`]). Then it follows with a blocking `XREAD` from its newest seq on a
//! connection of its own (one reader per edge, not per client) and publishes each entry's
//! bytes and frame index into the feed as they are: nothing is re-encoded. Bars for `/bars`
//! come from the same events (the JSON of trades and bars is read) on top of the history
//! generated from the run's seed, as the simulator would.
//!
//! An entry of another run identity (Redis lost the stream and a simulator started it again)
//! or one that does not follow the edge's newest seq (it fell behind the stream's retention)
//! makes the edge rebuild from Redis; its clients go on, from the new history if it still
//! covers them and through conflation otherwise, and /metrics counts the rebuild by reason.
//! While Redis or the simulator is away the edge keeps serving what it has, heartbeats go on,
//! and /healthz answers 503 so that a load balancer can send new clients elsewhere.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use rust_decimal::Decimal;
use tokio::net::TcpListener;

use super::stream::{self, Entry, Keys};
use super::{ClusterError, Rebuild, Status, UpstreamState};
use crate::bar_store::BarStore;
use crate::config::Config;
use crate::feed::Feed;
use crate::http::App;
use crate::market::bars::Bar;
use crate::market::clock::TradingDay;
use crate::market::{history, Kind, SymbolSpec};
use crate::publisher;
use crate::server;
use crate::shutdown::{self, Shutdown};
use crate::sse::Batch;

/// How long a client resuming with an id this edge has not got yet waits for it.
pub const RESUME_WAIT: Duration = Duration::from_secs(1);
/// How long one blocking read waits before the edge checks the run identity and the lease.
const BLOCK: Duration = Duration::from_secs(1);
/// Entries read at once.
const READ_COUNT: usize = 1000;
/// Longest pause between two attempts to reach Redis.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Runs the edge role until `shutdown_signal`.
///
/// # Errors
/// An invalid Redis URL, a feed published with other symbols, or an invalid web directory.
pub async fn run(
    listener: TcpListener,
    config: Config,
    specs: Vec<SymbolSpec>,
    shutdown_signal: impl Future<Output = ()>,
) -> Result<(), ClusterError> {
    let client = stream::client_for(&config)?;
    let (trigger, stop) = shutdown::channel();
    // Scenarios are the simulator's business; an edge answers POST /scenario with 503.
    let (scenarios, _none) = publisher::scenario_channel();
    let history = config.history;
    let app = App::new(config, specs.clone(), trigger.clone(), scenarios)
        .map_err(ClusterError::WebDir)?;
    app.feed.set_resume_wait(RESUME_WAIT);
    let mut follower = Follower {
        client,
        cmd: None,
        block: None,
        keys: Keys::new(&app.config.feed),
        feed: app.feed.clone(),
        bars: app.bars.clone(),
        status: app.upstream.clone(),
        specs,
        history,
        epoch: String::new(),
        newest: 0,
        bars_loaded: false,
        lost_redis: false,
    };
    tokio::pin!(shutdown_signal);
    tokio::select! {
        biased;
        () = &mut shutdown_signal => return Ok(()),
        ready = follower.bootstrap(None) => ready?,
    }
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(
            %addr,
            seq = app.feed.newest_seq(),
            history = app.feed.history_len(),
            "edge listening on http://{addr}"
        );
    }
    // The reader gets a thread of its own (see `publisher::spawn_dedicated`); its Redis
    // connections are opened again there, so that their I/O is driven by that thread too.
    follower.cmd = None;
    follower.block = None;
    let following = publisher::spawn_dedicated("stream reader", follower.follow(stop.clone()));
    let load_meter = tokio::spawn(publisher::run_load_meter(app.feed.clone(), stop.clone()));
    let heartbeat = tokio::spawn(publisher::run_heartbeat(
        app.feed.clone(),
        app.config.heartbeat(),
        stop,
    ));
    let serving = server::serve(listener, app, &mut shutdown_signal);
    tokio::pin!(serving);
    let (served, outcome) = tokio::select! {
        () = &mut serving => (true, Ok(())),
        done = following => {
            let outcome = match done {
                Ok(Some(outcome)) => outcome,
                Ok(None) => Err(ClusterError::Reader("its runtime could not start".into())),
                Err(e) => Err(ClusterError::Reader(e.to_string())),
            };
            trigger.fire();
            (false, outcome)
        }
    };
    if !served {
        // The reader stopped first, on shutdown or for good: the server still ends its
        // streams and lets connections close (its own grace), instead of being dropped.
        let _ = tokio::time::timeout(Duration::from_secs(6), serving).await;
    }
    let _ = tokio::join!(heartbeat, load_meter);
    tracing::info!("stopped");
    outcome
}

/// The task that keeps an edge's feed in step with the stream.
struct Follower {
    client: redis::Client,
    /// For ordinary commands.
    cmd: Option<MultiplexedConnection>,
    /// For the blocking read alone: its answers may take up to [`BLOCK`].
    block: Option<MultiplexedConnection>,
    keys: Keys,
    feed: Feed,
    bars: Arc<BarStore>,
    status: Arc<Status>,
    specs: Vec<SymbolSpec>,
    history: usize,
    /// The run identity of what the feed holds.
    epoch: String,
    /// Newest seq in the feed; also how far the bar store has followed.
    newest: u64,
    bars_loaded: bool,
    /// Redis failed since the last connection was opened: the next one is a reconnection.
    lost_redis: bool,
}

impl Follower {
    /// Builds the feed from Redis, retrying until it can; `why` counts a rebuild.
    async fn bootstrap(&mut self, why: Option<Rebuild>) -> Result<(), ClusterError> {
        let mut backoff = Duration::from_millis(50);
        loop {
            match self.try_bootstrap().await {
                Ok(true) => {
                    if let Some(why) = why {
                        self.status.rebuilt(why);
                    }
                    return Ok(());
                }
                Ok(false) => self.status.set_state(UpstreamState::NoFeed),
                Err(Failure::Fatal(e)) => return Err(e),
                Err(Failure::Redis(e)) => self.redis_down(&e),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// One attempt: false if Redis holds no such feed.
    async fn try_bootstrap(&mut self) -> Result<bool, Failure> {
        let keys = self.keys.clone();
        let ours = super::simulator::symbol_names(&self.specs);
        let history = self.history as u64;
        let con = self.cmd().await?;
        let Some((meta, latest)) = stream::read_state(con, &keys).await? else {
            return Ok(false);
        };
        if meta.run.symbols != ours {
            return Err(Failure::Fatal(ClusterError::Symbols {
                feed: keys.feed.clone(),
                detail: "start the edge with the simulator's --symbols".into(),
            }));
        }
        let from = meta.last.saturating_sub(history).max(meta.first).max(1);
        let mut batches: Vec<Batch> = Vec::new();
        let mut clock = meta.clock;
        let mut next = from;
        loop {
            let page = stream::range(con, &keys, next, READ_COUNT).await?;
            let full = page.len() == READ_COUNT;
            for entry in page {
                match entry {
                    Ok(entry) if entry.epoch == meta.epoch => {
                        next = entry.batch.last_seq() + 1;
                        clock = entry.clock.or(clock);
                        batches.push(entry.batch);
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!("skipping a stream entry: {e}"),
                }
            }
            if !full {
                break;
            }
        }
        if !self.bars_loaded {
            self.load_bar_history(meta.run.seed, meta.run.market_start, meta.run.history_days);
        }
        for batch in &batches {
            self.record_bars(batch);
        }
        self.feed.replace(meta.first, meta.last, latest, batches);
        if let Some(clock) = clock {
            self.feed.set_clock(clock);
        }
        self.newest = self.feed.newest_seq();
        self.epoch = meta.epoch.clone();
        self.status.set_epoch(&meta.epoch);
        self.status.set_stream_last(meta.last.max(self.newest));
        self.status
            .set_lag(meta.last.saturating_sub(self.newest), 0);
        self.status.set_state(UpstreamState::Up);
        tracing::info!(
            epoch = meta.epoch,
            seq = self.newest,
            history = self.feed.history_len(),
            "edge state built from Redis"
        );
        Ok(true)
    }

    /// The run's generated bar history, as the simulator's `--role all` would load it.
    fn load_bar_history(&mut self, seed: u64, market_start: i64, days: usize) {
        let first_day = TradingDay::current_or_next(market_start);
        let generated = history::generate(&self.specs, seed, &first_day, days);
        for (index, symbol) in generated.iter().enumerate() {
            self.bars.load_history(index, &symbol.minutes, &symbol.days);
        }
        self.bars_loaded = true;
    }

    /// Follows trades and bars of `batch` newer than what the bar store has seen.
    fn record_bars(&mut self, batch: &Batch) {
        #[derive(serde::Deserialize)]
        struct TradeJson {
            market_ts: i64,
            price: Decimal,
            size: u64,
        }
        for (i, f) in batch.frames.iter().enumerate() {
            let seq = batch.first_seq + i as u64;
            if seq <= self.newest {
                continue;
            }
            let json = &batch.bytes[f.json_start as usize..f.json_end as usize];
            match f.kind {
                Kind::Trade => {
                    if let Ok(t) = serde_json::from_slice::<TradeJson>(json) {
                        self.bars
                            .record_trade(f.symbol as usize, t.market_ts, t.price, t.size);
                    }
                }
                Kind::Bar => {
                    if let Ok(bar) = serde_json::from_slice::<Bar>(json) {
                        self.bars.record_bar(f.symbol as usize, bar);
                    }
                }
                _ => {}
            }
        }
    }

    /// Follows the stream until `shutdown`.
    async fn follow(mut self, mut shutdown: Shutdown) -> Result<(), ClusterError> {
        let mut backoff = Duration::from_millis(50);
        loop {
            let step = tokio::select! {
                biased;
                () = shutdown.wait() => return Ok(()),
                step = self.step() => step,
            };
            match step {
                Ok(Some(why)) => {
                    tracing::warn!(reason = ?why, seq = self.newest, "rebuilding the edge's state");
                    tokio::select! {
                        biased;
                        () = shutdown.wait() => return Ok(()),
                        done = self.bootstrap(Some(why)) => done?,
                    }
                }
                Ok(None) => backoff = Duration::from_millis(50),
                Err(Failure::Fatal(e)) => return Err(e),
                Err(Failure::Redis(e)) => {
                    self.redis_down(&e);
                    tokio::select! {
                        biased;
                        () = shutdown.wait() => return Ok(()),
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// One blocking read and what follows from it: `Some(reason)` if the state must be
    /// rebuilt.
    async fn step(&mut self) -> Result<Option<Rebuild>, Failure> {
        let keys = self.keys.clone();
        if self.block.is_none() {
            let con = stream::connect(&self.client, BLOCK + stream::RESPONSE_TIMEOUT).await?;
            self.block = Some(con);
        }
        let Some(block) = self.block.as_mut() else {
            return Ok(None);
        };
        let entries = stream::read_after(block, &keys, self.newest, BLOCK, READ_COUNT).await?;
        if entries.is_empty() {
            return self.check().await;
        }
        let caught_up = entries.len() < READ_COUNT;
        let mut published = 0;
        let mut lag_ms = 0;
        for entry in entries {
            let entry: Entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    // The next entry then shows a gap and the edge rebuilds.
                    tracing::warn!("skipping a stream entry: {e}");
                    continue;
                }
            };
            if entry.epoch != self.epoch {
                return Ok(Some(Rebuild::Epoch));
            }
            let batch = entry.batch;
            if batch.last_seq() <= self.newest {
                continue;
            }
            if batch.first_seq != self.newest + 1 {
                return Ok(Some(Rebuild::Retention));
            }
            self.record_bars(&batch);
            self.newest = batch.last_seq();
            self.feed.publish(batch);
            if let Some(clock) = entry.clock {
                self.feed.set_clock(clock);
            }
            if entry.published_us > 0 {
                let delay_us = publisher::epoch_us().saturating_sub(entry.published_us);
                self.status.delays.record(delay_us);
                lag_ms = delay_us / 1000;
            }
            published += 1;
        }
        self.status.add_batches(published);
        let last = self.status.stream_last().max(self.newest);
        self.status.set_stream_last(last);
        let lag_seq = if caught_up {
            0
        } else {
            last.saturating_sub(self.newest)
        };
        self.status.set_lag(lag_seq, lag_ms);
        self.status.set_state(UpstreamState::Up);
        Ok(None)
    }

    /// Nothing new came: is the run the same, is a simulator writing?
    async fn check(&mut self) -> Result<Option<Rebuild>, Failure> {
        let keys = self.keys.clone();
        let con = self.cmd().await?;
        let probe = stream::probe(con, &keys).await?;
        let Some(epoch) = probe.epoch else {
            // Redis lost the feed; until a simulator starts it again there is nothing to do.
            self.status.set_state(UpstreamState::NoFeed);
            return Ok(None);
        };
        if epoch != self.epoch {
            return Ok(Some(Rebuild::Epoch));
        }
        let last = probe.last.unwrap_or(self.newest);
        self.status.set_stream_last(last);
        let (_, lag_ms) = self.status.lag();
        self.status
            .set_lag(last.saturating_sub(self.newest), lag_ms);
        self.status.set_state(if probe.writer_alive {
            UpstreamState::Up
        } else {
            UpstreamState::SimulatorDown
        });
        Ok(None)
    }

    async fn cmd(&mut self) -> Result<&mut MultiplexedConnection, Failure> {
        if self.cmd.is_none() {
            let con = stream::connect(&self.client, stream::RESPONSE_TIMEOUT).await?;
            if std::mem::take(&mut self.lost_redis) {
                self.status.reconnected();
            }
            self.cmd = Some(con);
        }
        self.cmd
            .as_mut()
            .ok_or(Failure::Redis(redis::RedisError::from((
                redis::ErrorKind::Io,
                "no connection",
            ))))
    }

    fn redis_down(&mut self, e: &redis::RedisError) {
        if self.status.state() != UpstreamState::RedisDown {
            tracing::warn!("Redis unavailable: {e}; serving what the edge has");
        }
        self.status.set_state(UpstreamState::RedisDown);
        self.cmd = None;
        self.block = None;
        self.lost_redis = true;
    }
}

/// Why a step failed.
enum Failure {
    /// Redis failed: retry.
    Redis(redis::RedisError),
    /// The edge cannot follow this feed.
    Fatal(ClusterError),
}

impl From<redis::RedisError> for Failure {
    fn from(e: redis::RedisError) -> Failure {
        Failure::Redis(e)
    }
}
