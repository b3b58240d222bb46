//! `--role simulator`: runs the market and appends every encoded batch to the feed's stream.
//!
//! At start it registers with Redis (waiting at most one lease for a simulator that died to
//! free the feed; a live one keeps it, and this one exits with a one-line error). If the feed
//! exists it continues the run: the next seq is the stream's last + 1, the market clock and
//! every symbol's price, open, high, low and volume come from the latest state in Redis.
//!
//! The market publishes into a bounded channel; the writer task appends in order, one script
//! call per entry, merging what queued up while it waited. While Redis is away the writer keeps
//! what it has and retries; when the channel is full the market waits, and the events that
//! fall due meanwhile come out together afterwards, so nothing is lost. If Redis comes back
//! without the feed (a restart without persistence), the writer starts a new run identity
//! (epoch) that continues the same seqs and writes its whole latest state first.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::stream::{self, AppendError, Keys, Registered, RunInfo};
use super::{ClusterError, Status, UpstreamState};
use crate::config::Config;
use crate::http::App;
use crate::market::simulator::{Continued, SimConfig, Simulator};
use crate::market::{Kind, SymbolSpec};
use crate::publisher::{self, Published};
use crate::server;
use crate::shutdown::{self, Shutdown};
use crate::sse::Batch;

/// Most batches merged into one stream entry when a backlog is sent.
const MAX_MERGE: usize = 256;
/// Longest pause between two attempts to reach Redis.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Runs the simulator role until `shutdown_signal`, or until it must stop (another simulator
/// holds or took over the feed).
///
/// # Errors
/// Redis cannot be used, another simulator holds the feed, or the settings are invalid.
pub async fn run(
    listener: TcpListener,
    config: Config,
    specs: Vec<SymbolSpec>,
    shutdown_signal: impl Future<Output = ()>,
) -> Result<(), ClusterError> {
    let client = stream::client_for(&config)?;
    let keys = Keys::new(&config.feed);
    let writer = format!("{}-{:08x}", std::process::id(), rand::random::<u32>());
    let (trigger, stop) = shutdown::channel();
    let (scenarios, _no_scenarios) = publisher::scenario_channel();
    // The simulator keeps no replay window of its own: it serves no clients.
    let mut app_config = config.clone();
    app_config.history = 1;
    let app = App::new(app_config, specs.clone(), trigger.clone(), scenarios)
        .map_err(ClusterError::WebDir)?;
    let status = app.upstream.clone();
    if let Ok(addr) = listener.local_addr() {
        let scheme = if app.config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        tracing::info!(%addr, "simulator listening on {scheme}://{addr} (/healthz and /metrics only)");
    }
    // The status routes get the same connection bounds as any node's ([`server::serve`]).
    let http = {
        let mut stop = stop.clone();
        tokio::spawn(server::serve(listener, app.clone(), async move {
            stop.wait().await
        }))
    };
    tokio::pin!(shutdown_signal);

    let now = publisher::epoch_ms();
    let fresh_run = RunInfo {
        seed: config.seed.unwrap_or_else(rand::random),
        market_start: config
            .market_start(now as i64)
            .map_err(ClusterError::Start)?,
        history_days: config.history_days,
        symbols: symbol_names(&specs),
    };
    let fresh_epoch = stream::new_epoch();
    let first_seq = config.first_seq_at(now);
    let registered = tokio::select! {
        biased;
        () = &mut shutdown_signal => None,
        r = register(&client, &keys, &writer, &fresh_epoch, first_seq, &fresh_run, &status) => Some(r?),
    };
    let Some((con, registered)) = registered else {
        trigger.fire();
        let _ = http.await;
        return Ok(());
    };
    let (run, market_start, epoch, first_seq, last, continued) = match registered {
        Registered::Continue(meta, latest) => {
            if meta.run.symbols != fresh_run.symbols {
                return Err(ClusterError::Symbols {
                    feed: keys.feed.clone(),
                    detail: "restart the feed with the same --symbols".into(),
                });
            }
            let run = meta.run.clone();
            // The market goes on from where it was; bar history still starts from the run's
            // first day.
            let market_now = meta.clock.map_or(run.market_start, |c| c.market_ms);
            let continued: Vec<(usize, Continued)> = latest
                .iter()
                .filter(|r| r.kind == Kind::Quote && (r.symbol as usize) < specs.len())
                .filter_map(|r| Some((r.symbol as usize, serde_json::from_slice(&r.json).ok()?)))
                .collect();
            tracing::info!(
                epoch = meta.epoch,
                next_seq = meta.last + 1,
                market_ms = market_now,
                symbols = continued.len(),
                "continuing the feed's run"
            );
            let seq_from = meta.last + 1;
            (run, market_now, meta.epoch, seq_from, meta.last, continued)
        }
        _ => {
            tracing::info!(
                epoch = fresh_epoch,
                first_seq,
                "starting a new run of the feed"
            );
            let market_start = fresh_run.market_start;
            (
                fresh_run.clone(),
                market_start,
                fresh_epoch,
                first_seq,
                first_seq - 1,
                Vec::new(),
            )
        }
    };
    status.set_epoch(&epoch);
    status.set_stream_last(last);

    let started = tokio::time::Instant::now();
    let mut sim = Simulator::try_new(
        &specs,
        SimConfig {
            seed: run.seed,
            rate: config.rate,
            speed: config.speed,
            start_epoch_ms: publisher::epoch_ms(),
            market_start,
            skip_closed: !config.keep_closed_time,
            first_seq,
        },
    )?;
    for (index, last) in &continued {
        sim.continue_from(*index, last);
    }
    let (tx, rx) = mpsc::channel(config.upstream_buffer);
    let outlets = publisher::Outlets {
        feed: app.feed.clone(),
        bars: app.bars.clone(),
        upstream: Some(tx.clone()),
    };
    if let Some(opening) = publisher::publish_opening(&outlets, &sim) {
        let _ = tx.try_send(opening);
    }
    drop(tx);
    let market = publisher::spawn_market(
        outlets,
        sim,
        started,
        config.flush(),
        // Scenarios need the admin route, which a simulator does not serve.
        publisher::scenario_channel().1,
        stop.clone(),
    );
    let writer_task = Writer {
        client,
        con: Some(con),
        keys,
        writer,
        epoch,
        run,
        last,
        retention: config.stream_retention,
        status: status.clone(),
        latest: BTreeMap::new(),
        buffered: Vec::new(),
    };
    let writing = tokio::spawn(writer_task.run(rx, stop.clone()));
    let outcome = tokio::select! {
        () = &mut shutdown_signal => Ok(()),
        done = writing => done.unwrap_or(Ok(())),
    };
    trigger.fire();
    let _ = tokio::join!(market, http);
    tracing::info!("stopped");
    outcome
}

/// The symbol names in table order, comma-separated.
pub fn symbol_names(specs: &[SymbolSpec]) -> String {
    specs
        .iter()
        .map(|s| s.symbol.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// Connects and registers; waits up to one lease (plus a margin) for a dead simulator's lease
/// to expire.
async fn register(
    client: &redis::Client,
    keys: &Keys,
    writer: &str,
    epoch: &str,
    first_seq: u64,
    run: &RunInfo,
    status: &Status,
) -> Result<(MultiplexedConnection, Registered), ClusterError> {
    let mut backoff = Duration::from_millis(50);
    let mut busy_since: Option<tokio::time::Instant> = None;
    loop {
        let attempt = async {
            let mut con = stream::connect(client, stream::RESPONSE_TIMEOUT).await?;
            let r = stream::register(&mut con, keys, writer, epoch, first_seq, run, &[]).await?;
            Ok::<_, redis::RedisError>((con, r))
        };
        match attempt.await {
            Ok((_, Registered::Busy(holder))) => {
                status.set_state(UpstreamState::Starting);
                let since = *busy_since.get_or_insert_with(tokio::time::Instant::now);
                if since.elapsed() > stream::LEASE + Duration::from_millis(1500) {
                    return Err(ClusterError::Busy {
                        holder,
                        feed: keys.feed.clone(),
                    });
                }
                tracing::info!(
                    holder,
                    "another simulator holds the feed; waiting for its lease"
                );
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Ok((con, registered)) => {
                status.set_state(UpstreamState::Up);
                return Ok((con, registered));
            }
            Err(e) => {
                status.set_state(UpstreamState::RedisDown);
                tracing::warn!("cannot register with Redis: {e}; retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// The task that appends published batches, in order.
struct Writer {
    client: redis::Client,
    con: Option<MultiplexedConnection>,
    keys: Keys,
    writer: String,
    epoch: String,
    run: RunInfo,
    /// Last seq in the stream.
    last: u64,
    retention: u64,
    status: Arc<Status>,
    /// The latest frame per symbol and kind that Redis has: written whole when a new epoch
    /// starts, so edges that bootstrap then have every symbol's quote.
    latest: BTreeMap<String, Vec<u8>>,
    /// Batches taken from the channel and not appended yet.
    buffered: Vec<Published>,
}

impl Writer {
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Published>,
        mut shutdown: Shutdown,
    ) -> Result<(), ClusterError> {
        let mut renew = tokio::time::interval(stream::LEASE / 4);
        renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut backoff = Duration::from_millis(20);
        loop {
            if self.buffered.is_empty() {
                tokio::select! {
                    biased;
                    () = shutdown.wait() => return Ok(()),
                    next = rx.recv() => match next {
                        Some(p) => self.buffered.push(p),
                        None => return Ok(()),
                    },
                    _ = renew.tick() => {
                        self.renew().await?;
                        continue;
                    }
                }
            }
            while self.buffered.len() < MAX_MERGE {
                match rx.try_recv() {
                    Ok(p) => self.buffered.push(p),
                    Err(_) => break,
                }
            }
            self.report(rx.len());
            match self.append().await {
                Ok(()) => {
                    backoff = Duration::from_millis(20);
                    renew.reset();
                }
                Err(Retry::Later) => {
                    tokio::select! {
                        biased;
                        () = shutdown.wait() => return Ok(()),
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                Err(Retry::Now) => {}
                Err(Retry::Stop(e)) => return Err(e),
            }
        }
    }

    /// Publishes lag and buffer gauges.
    fn report(&self, queued: usize) {
        let waiting = (self.buffered.len() + queued) as u64;
        self.status.set_buffered(waiting);
        let behind = self
            .buffered
            .last()
            .map_or(0, |p| p.batch.last_seq().saturating_sub(self.last));
        let age = self
            .buffered
            .first()
            .map_or(0, |p| publisher::epoch_us().saturating_sub(p.at_us) / 1000);
        self.status.set_lag(behind, age);
    }

    async fn connection(&mut self) -> Result<&mut MultiplexedConnection, Retry> {
        if self.con.is_none() {
            match stream::connect(&self.client, stream::RESPONSE_TIMEOUT).await {
                Ok(con) => {
                    self.status.reconnected();
                    self.con = Some(con);
                }
                Err(e) => {
                    self.redis_down(&e);
                    return Err(Retry::Later);
                }
            }
        }
        self.con.as_mut().ok_or(Retry::Later)
    }

    fn redis_down(&mut self, e: &redis::RedisError) {
        if self.status.state() != UpstreamState::RedisDown {
            tracing::warn!("Redis unavailable: {e}; holding batches and retrying");
        }
        self.status.set_state(UpstreamState::RedisDown);
        self.con = None;
    }

    async fn renew(&mut self) -> Result<(), ClusterError> {
        let (keys, writer) = (self.keys.clone(), self.writer.clone());
        let Ok(con) = self.connection().await else {
            return Ok(());
        };
        let renewed = stream::renew(con, &keys, &writer).await;
        match renewed {
            Ok(()) => Ok(()),
            Err(AppendError::Fenced(holder)) => Err(ClusterError::Fenced {
                holder,
                feed: self.keys.feed.clone(),
            }),
            // A lost feed is noticed (and started again) at the next append.
            Err(AppendError::NoMeta | AppendError::Epoch(_) | AppendError::Seq(_)) => Ok(()),
            Err(AppendError::Redis(e)) => {
                self.redis_down(&e);
                Ok(())
            }
        }
    }

    async fn append(&mut self) -> Result<(), Retry> {
        let batches: Vec<Batch> = self.buffered.iter().map(|p| p.batch.clone()).collect();
        let Some(merged) = Batch::merge(&batches) else {
            return Ok(());
        };
        let newest = self.buffered.last().map(|p| (p.clock, p.at_us));
        let Some((clock, published_us)) = newest else {
            return Ok(());
        };
        // The last frame of each symbol and kind in the batch.
        let mut touched: BTreeMap<(u16, u8), usize> = BTreeMap::new();
        for (i, f) in merged.frames.iter().enumerate() {
            touched.insert((f.symbol, f.kind as u8), i);
        }
        let latest: Vec<(String, Vec<u8>)> = touched
            .values()
            .map(|&i| stream::latest_entry(&merged, i))
            .collect();
        let keys = self.keys.clone();
        let writer = self.writer.clone();
        let epoch = self.epoch.clone();
        let retention = self.retention;
        let con = self.connection().await?;
        let outcome = stream::append(
            con,
            &keys,
            &stream::Append {
                writer: &writer,
                epoch: &epoch,
                batch: &merged,
                clock,
                published_us,
                retention,
                latest: &latest,
            },
        )
        .await;
        let done = match outcome {
            Ok(()) => true,
            // An earlier attempt went through but its answer was lost.
            Err(AppendError::Seq(ref at)) if at.parse() == Ok(merged.last_seq()) => true,
            Err(AppendError::Seq(at)) => {
                return Err(Retry::Stop(ClusterError::Sequence {
                    feed: keys.feed,
                    stream_last: at,
                    ours: merged.first_seq - 1,
                }))
            }
            Err(AppendError::Fenced(holder) | AppendError::Epoch(holder)) => {
                return Err(Retry::Stop(ClusterError::Fenced {
                    holder,
                    feed: keys.feed,
                }))
            }
            Err(AppendError::NoMeta) => {
                self.start_new_epoch(merged.first_seq).await?;
                return Err(Retry::Now);
            }
            Err(AppendError::Redis(e)) => {
                self.redis_down(&e);
                return Err(Retry::Later);
            }
        };
        if done {
            self.last = merged.last_seq();
            self.latest.extend(latest);
            self.status.add_batches(1);
            self.status.set_stream_last(self.last);
            self.status.set_state(UpstreamState::Up);
            self.buffered.clear();
            self.status.set_buffered(0);
            self.status.set_lag(0, 0);
        }
        Ok(())
    }

    /// Redis lost the feed: start a new run identity that continues at `first_seq`, with the
    /// whole latest state.
    async fn start_new_epoch(&mut self, first_seq: u64) -> Result<(), Retry> {
        let epoch = stream::new_epoch();
        let latest: Vec<(String, Vec<u8>)> = self
            .latest
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let keys = self.keys.clone();
        let writer = self.writer.clone();
        let run = self.run.clone();
        let con = self.connection().await?;
        match stream::register(con, &keys, &writer, &epoch, first_seq, &run, &latest).await {
            Ok(Registered::Fresh) => {
                tracing::warn!(
                    epoch,
                    first_seq,
                    "Redis lost the feed; started a new run identity"
                );
                self.status.set_epoch(&epoch);
                self.epoch = epoch;
                self.last = first_seq - 1;
                Ok(())
            }
            // Someone else recreated it meanwhile; the next append finds out who.
            Ok(_) => Err(Retry::Later),
            Err(e) => {
                self.redis_down(&e);
                Err(Retry::Later)
            }
        }
    }
}

/// What the writer does after a failed append.
enum Retry {
    /// Wait (backing off), then try again.
    Later,
    /// Try again at once.
    Now,
    /// Stop the simulator.
    Stop(ClusterError),
}
