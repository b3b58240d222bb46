//! One client's SSE stream: a cursor, a subscription and the time of its next allowed write.
//!
//! The stream sleeps until the feed announces a new batch, then writes everything pending for
//! the client in one chunk, and then waits at least `flush` before its next write; updates that
//! come in between go out together in that next write. Each client's writes are paced from its
//! own last write, so at 10,000 clients the writes spread evenly over the flush interval instead
//! of all 10,000 queueing behind one publish. A client that is scheduled late finds more pending
//! and writes it at once, so writes grow under load by themselves. Nothing is queued per client:
//! what is pending lives in the shared history, and a client that falls out of it is conflated
//! to the latest quotes.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use tokio::sync::watch;
use tokio::time::{sleep_until, Instant};

use crate::feed::{add_counts, ClientGuard, Cursor, Feed, KindCounts, Subscription};
use crate::metrics::EventKind;
use crate::shutdown::Shutdown;
use crate::sse;

/// One write to a client: pieces of shared frame buffers, and how many events they hold.
#[derive(Debug, Clone)]
pub struct Chunk {
    /// Written back to back in one (vectored) write.
    pub parts: Vec<Bytes>,
    pub events: u64,
}

impl Chunk {
    fn one(bytes: Bytes, events: u64) -> Chunk {
        Chunk {
            parts: vec![bytes],
            events,
        }
    }

    /// Total bytes.
    pub fn len(&self) -> usize {
        self.parts.iter().map(Bytes::len).sum()
    }

    /// Whether the chunk holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How a new stream starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// With a snapshot of the current quotes.
    Snapshot,
    /// By replaying the updates after this id, if the history still holds them; otherwise
    /// with a snapshot.
    Resume(u64),
}

/// Settings every stream shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pacing {
    /// `retry:` value, milliseconds.
    pub retry_ms: u64,
    /// Minimum time between two writes of quotes to one client (`--flush-ms`).
    pub flush: Duration,
}

/// The state of one SSE client.
#[derive(Debug)]
pub struct QuoteStream {
    feed: Feed,
    sub: Subscription,
    cursor: Cursor,
    flush: Duration,
    /// Earliest time of the next write of quotes.
    next_write: Instant,
    /// Frames to send before anything else (`retry:` and the snapshot).
    prelude: Option<Chunk>,
    /// A resume id beyond the newest event, the deadline to wait for it, and the `retry:`
    /// value: the stream starts in [`QuoteStream::next_chunk`] once the id has arrived.
    ahead: Option<(u64, Instant, u64)>,
    newest: watch::Receiver<u64>,
    heartbeat: watch::Receiver<Bytes>,
    shutdown: Shutdown,
    /// Writes not yet added to the shared counters.
    tally: Tally,
    /// When the client's token expires: the stream ends then.
    expires: Option<Instant>,
    /// The token expired and the final comment went out: the stream is over.
    expired: bool,
    _slot: ClientGuard,
}

/// The last frame of a stream whose token expired: an SSE comment, which `EventSource` ignores;
/// the stream then ends, and the client's reconnection with the same token gets a 401.
pub const TOKEN_EXPIRED_FRAME: &[u8] = b": token expired\n\n";

/// Waits until `deadline`, or forever when there is none.
async fn until(deadline: Option<Instant>) {
    match deadline {
        Some(t) => sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Writes a stream adds up before it updates the shared counters.
const TALLY_WRITES: u64 = 16;

/// A stream's writes of market events since it last updated the shared counters.
#[derive(Debug, Default)]
struct Tally {
    events: KindCounts,
    bytes: KindCounts,
    writes: u64,
}

impl Tally {
    fn add(&mut self, collected: &crate::feed::Collected) {
        add_counts(&mut self.events, &collected.counts);
        add_counts(&mut self.bytes, &collected.bytes);
        self.writes += 1;
    }

    fn flush(&mut self, metrics: &crate::metrics::Metrics) {
        if self.writes > 0 {
            metrics.wrote_market(&self.events, &self.bytes, self.writes);
        }
        *self = Tally::default();
    }
}

impl QuoteStream {
    /// Opens a stream for `sub`. `slot` is the client's `--max-clients` slot, held until the
    /// stream is dropped.
    pub fn open(
        feed: Feed,
        sub: Subscription,
        start: Start,
        pacing: Pacing,
        shutdown: Shutdown,
        slot: ClientGuard,
    ) -> QuoteStream {
        let metrics = feed.metrics();
        let retry = sse::retry_frame(pacing.retry_ms);
        metrics.sent(EventKind::Retry, 1, retry.len() as u64);
        // Subscribe before reading the state, so a batch published in between still wakes us.
        let newest = feed.subscribe_newest();
        let mut heartbeat = feed.subscribe_heartbeat();
        heartbeat.mark_unchanged();
        // An id beyond our newest event, on a node that follows a feed published elsewhere:
        // another node may have delivered it a moment before this one got it. The stream
        // starts once it arrives (or with a snapshot after the wait); see `Feed::resume_wait`.
        let wait = feed.resume_wait();
        let ahead = match start {
            Start::Resume(id) if id > feed.newest_seq() && !wait.is_zero() => {
                Some((id, Instant::now() + wait))
            }
            _ => None,
        };
        let (cursor, prelude) = match ahead {
            Some(_) => (Cursor::default(), None),
            None => {
                let (cursor, prelude) = Self::start_at(&feed, &sub, start, retry);
                (cursor, Some(prelude))
            }
        };
        tracing::debug!(
            clients = feed.clients(),
            ?sub,
            cursor = cursor.seq,
            "stream opened"
        );
        QuoteStream {
            feed,
            sub,
            cursor,
            flush: pacing.flush,
            next_write: Instant::now(),
            prelude,
            ahead: ahead.map(|(id, until)| (id, until, pacing.retry_ms)),
            newest,
            heartbeat,
            shutdown,
            tally: Tally::default(),
            expires: None,
            expired: false,
            _slot: slot,
        }
    }

    /// Ends the stream at `exp` (Unix seconds, wall clock), the expiry of the client's token.
    pub fn expiring_at(mut self, exp: Option<u64>) -> QuoteStream {
        self.expires = exp.map(|exp| {
            let now_ms = crate::publisher::epoch_ms();
            Instant::now() + Duration::from_millis(exp.saturating_mul(1000).saturating_sub(now_ms))
        });
        self
    }

    /// The final comment of a stream whose token expired; the next call ends the stream.
    fn expire(&mut self) -> Option<Chunk> {
        self.expired = true;
        tracing::debug!(cursor = self.cursor.seq, "token expired; ending the stream");
        Some(Chunk::one(Bytes::from_static(TOKEN_EXPIRED_FRAME), 0))
    }

    /// The cursor and the first frames of a stream that starts as `start` says, now.
    fn start_at(feed: &Feed, sub: &Subscription, start: Start, retry: Bytes) -> (Cursor, Chunk) {
        let metrics = feed.metrics();
        let resumed = match start {
            Start::Resume(id) => feed.resume_from(id, sub),
            Start::Snapshot => None,
        };
        match resumed {
            Some(cursor) => {
                metrics
                    .replays_served
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                (cursor, Chunk::one(retry, 1))
            }
            None => {
                let (seq, quotes, cursor) = feed.snapshot(sub);
                let snapshot = sse::snapshot_frame(seq, quotes.iter().map(|q| &q.json[..]));
                metrics.sent(EventKind::Snapshot, 1, snapshot.len() as u64);
                let prelude = Chunk {
                    parts: vec![retry, snapshot],
                    events: 2,
                };
                (cursor, prelude)
            }
        }
    }

    /// Waits (until the deadline) for the feed to reach `id`, then starts the stream there.
    async fn start_when_caught_up(
        &mut self,
        id: u64,
        until: Instant,
        retry_ms: u64,
    ) -> Option<Chunk> {
        while *self.newest.borrow_and_update() < id {
            tokio::select! {
                biased;
                () = self.shutdown.wait() => return None,
                () = sleep_until(until) => break,
                changed = self.newest.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                }
            }
        }
        let (cursor, prelude) = Self::start_at(
            &self.feed,
            &self.sub,
            Start::Resume(id),
            sse::retry_frame(retry_ms),
        );
        self.cursor = cursor;
        Some(prelude)
    }

    /// The next chunk to write, or `None` when the stream ends (shutdown, or after the final
    /// comment of an expired token).
    pub async fn next_chunk(&mut self) -> Option<Chunk> {
        if let Some((id, until, retry_ms)) = self.ahead.take() {
            return self.start_when_caught_up(id, until, retry_ms).await;
        }
        if let Some(prelude) = self.prelude.take() {
            return Some(prelude);
        }
        loop {
            if self.shutdown.is_fired() || self.expired {
                return None;
            }
            if self.expires.is_some_and(|t| Instant::now() >= t) {
                return self.expire();
            }
            let newest = *self.newest.borrow_and_update();
            if newest > self.cursor.seq {
                // Something is pending: wait out the flush interval (heartbeats still go out).
                if Instant::now() < self.next_write {
                    tokio::select! {
                        biased;
                        () = self.shutdown.wait() => return None,
                        () = until(self.expires) => return self.expire(),
                        () = sleep_until(self.next_write) => {}
                        changed = self.heartbeat.changed() => return self.heartbeat_chunk(changed.is_ok()),
                    }
                }
                let collected = self.feed.collect(&mut self.cursor, &self.sub);
                if collected.parts.is_empty() {
                    continue;
                }
                self.tally.add(&collected);
                if self.tally.writes >= TALLY_WRITES {
                    self.tally.flush(self.feed.metrics());
                }
                let now = Instant::now();
                let chunk = Chunk {
                    events: collected.events(),
                    parts: collected.parts,
                };
                // A chunk cut at the size limit leaves more pending: write it right away, so
                // pacing never makes a client fall behind. Otherwise wait out the gap, which
                // is zero when the server keeps up and grows to `flush` when it does not.
                let caught_up = self.cursor.seq >= newest;
                self.next_write = if caught_up {
                    now + self.feed.write_gap(self.flush)
                } else {
                    now
                };
                return Some(chunk);
            }
            tokio::select! {
                biased;
                () = self.shutdown.wait() => return None,
                () = until(self.expires) => return self.expire(),
                changed = self.newest.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                }
                changed = self.heartbeat.changed() => return self.heartbeat_chunk(changed.is_ok()),
            }
        }
    }

    fn heartbeat_chunk(&mut self, open: bool) -> Option<Chunk> {
        if !open {
            return None;
        }
        let frame = self.heartbeat.borrow_and_update().clone();
        let metrics = self.feed.metrics();
        metrics.wrote(EventKind::Heartbeat, 1, frame.len() as u64);
        Some(Chunk::one(frame, 1))
    }

    /// A listener for the shutdown that ends this stream.
    pub fn shutdown_signal(&self) -> Shutdown {
        self.shutdown.clone()
    }

    /// The stream as the body of an HTTP response (served by hyper: HTTP/2, and HTTP/1.x
    /// that the direct path does not take).
    ///
    /// Each part of a chunk is its own body frame, a slice of the shared frame buffers, never
    /// a copy. hyper stops polling a body whose HTTP/2 stream has no send capacity (see
    /// `crate::guard::MAX_SEND_BUF`), so what it holds for a client that reads slowly is that
    /// buffer plus one part, not a whole catch-up chunk copied into one buffer.
    pub fn into_body(
        self,
    ) -> impl Stream<Item = Result<Bytes, Infallible>> + Send + Sync + 'static {
        use futures_util::StreamExt as _;
        // Each part goes to hyper as it is, shared, never joined into a copy: a chunk can be a
        // whole snapshot, and hyper queues what it is given behind a blocked socket.
        futures_util::stream::unfold(self, |mut stream| async move {
            let chunk = stream.next_chunk().await?;
            Some((
                futures_util::stream::iter(chunk.parts.into_iter().map(Ok)),
                stream,
            ))
        })
        .flatten()
    }
}

impl Drop for QuoteStream {
    fn drop(&mut self) {
        self.tally.flush(self.feed.metrics());
        tracing::debug!(cursor = self.cursor.seq, "stream closed");
    }
}
